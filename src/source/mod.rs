//! Upstream access: one trait, one real implementation over HTTP, an in-memory mock and a
//! fault-injecting wrapper.
//!
//! The trait has a single primitive, [`Upstream::fetch`]: a GET of a whole object or of a byte
//! range, answering headers first and then a body pulled chunk by chunk. Everything above (probing, block fetches, whole
//! downloads from hosts that ignore Range) is built on it, so the mock and the fault wrapper
//! exercise exactly the paths the HTTP client takes. Implementations are blocking: the FUSE
//! worker threads call them directly, and a slow download holds only its own thread.
//!
//! Invariants every implementation keeps:
//! - a ranged request answered with `206` reports [`Body::Partial`] only when the server's
//!   `Content-Range` is exactly the range asked for; any other answer is an error or `Full`;
//! - a body whose length differs from what the headers promised is an error, never data;
//! - an HTML page where bytes were expected is an error, never data;
//! - an answer in a content coding medimg did not ask for (`Content-Encoding: gzip` on a
//!   Range request) is an error, never data.

pub mod guestbook;
pub mod http;
pub mod limits;
pub mod mock;
pub mod stats;

use std::ops::Range;
use std::time::Duration;

use crate::block::BlockBuf;

/// Attempts per request before a transient failure is reported.
pub const ATTEMPTS: u32 = 4;
/// First retry delay; doubled each time, with jitter so that many readers who failed together
/// do not retry together.
const BACKOFF: Duration = Duration::from_millis(250);

/// How long a reader waits for an upstream unless the config says otherwise: a host that
/// accepts a connection and never answers fails a `stat` or a `read` after this long.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);

/// Run `f` until it succeeds, fails for good, has failed [`ATTEMPTS`] times with transient
/// errors, or would retry past `deadline` from now (waiting a jittered, doubling delay between
/// tries; a host that asked for a pause is waited for by the upstream itself).
pub fn retry<T>(
    deadline: Duration,
    mut f: impl FnMut() -> Result<T, SourceError>,
) -> Result<T, SourceError> {
    let started = std::time::Instant::now();
    let mut delay = BACKOFF;
    let mut attempt = 1;
    loop {
        match f() {
            Err(e)
                if e.is_transient()
                    && attempt < ATTEMPTS
                    && started.elapsed() + delay < deadline =>
            {
                let wait = delay.mul_f64(0.5 + jitter());
                tracing::warn!("{e}; retrying in {wait:?}");
                std::thread::sleep(wait);
                delay *= 2;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// A number in `[0, 1)` that differs between calls and threads.
pub fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// What to fetch.
#[derive(Debug, Clone)]
pub struct FetchRequest<'a> {
    /// The URL as the catalog or the index has it (mirror rules apply inside the implementation).
    pub url: &'a str,
    /// The byte range wanted, or the whole object.
    pub range: Option<Range<u64>>,
    /// A strong ETag the object must still have (sent as `If-Match`).
    pub if_match: Option<&'a str>,
}

/// What the server is sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// The range asked for (`206`); `total` is the object's size from `Content-Range`.
    Partial {
        /// Size of the whole object.
        total: u64,
    },
    /// The whole object (`200`): the server ignored the range or none was asked for.
    Full {
        /// `Content-Length`, when the server sent one.
        len: Option<u64>,
    },
}

/// Headers of a successful answer that the daemon keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Partial or whole.
    pub body: Body,
    /// The validator, if the server sent one.
    pub etag: Option<String>,
    /// `Last-Modified` as seconds since the epoch, if sent and parsable.
    pub last_modified: Option<i64>,
}

/// The body of an answer, pulled chunk by chunk. A body shorter or longer than its headers
/// promised ends in an error, not in `None`.
pub trait BodyStream {
    /// The next piece of the body, or `None` at its end.
    fn chunk(&mut self) -> Result<Option<Vec<u8>>, SourceError>;

    /// Append the rest of the body to `out`. Returns `false`, with the body not fully read, as
    /// soon as `out` would hold more than `max` bytes.
    fn read_rest(&mut self, out: &mut Vec<u8>, max: usize) -> Result<bool, SourceError> {
        while let Some(c) = self.chunk()? {
            if out.len() + c.len() > max {
                return Ok(false);
            }
            out.extend_from_slice(&c);
        }
        Ok(true)
    }
}

/// [`Response::read_to_vec`] allocates the bytes it may receive up front up to this size (a
/// block is 4 MiB by default, 64 MiB at most).
const PREALLOCATE_MAX: u64 = 64 << 20;

/// A successful answer: headers, then the body.
pub struct Response<'a> {
    /// The headers.
    pub reply: Reply,
    /// The body.
    pub body: Box<dyn BodyStream + 'a>,
}

impl Response<'_> {
    /// The whole body, refusing more than `max` bytes.
    pub fn read_to_vec(mut self, url: &str, max: u64) -> Result<Vec<u8>, SourceError> {
        // A block's bytes land in one allocation of the size asked for: growing by doubling
        // would copy them twice more, into fresh pages each time.
        let mut buf = Vec::with_capacity(if max <= PREALLOCATE_MAX {
            max as usize
        } else {
            0
        });
        if !self
            .body
            .read_rest(&mut buf, usize::try_from(max).unwrap_or(usize::MAX))?
        {
            return Err(too_long(url, max));
        }
        Ok(buf)
    }

    /// The whole body as a cache block ([`BlockBuf`]: received straight into memory that the
    /// cache writes with `O_DIRECT` and the kernel reads from), refusing more than `max` bytes.
    pub fn read_to_block(mut self, url: &str, max: u64) -> Result<BlockBuf, SourceError> {
        let (buf, complete) = BlockBuf::fill(
            usize::try_from(max).unwrap_or(usize::MAX),
            PREALLOCATE_MAX as usize,
            |v, limit| self.body.read_rest(v, limit),
        )?;
        if !complete {
            return Err(too_long(url, max));
        }
        Ok(buf)
    }
}

fn too_long(url: &str, max: u64) -> SourceError {
    SourceError::BadAnswer {
        url: url.to_string(),
        message: format!("the server sent more than the {max} bytes asked for"),
    }
}

/// Why a fetch failed. Every variant names the URL (after mirror rules).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The host answered with an error status.
    #[error("{url}: the server answered HTTP {status}")]
    Status {
        /// URL requested.
        url: String,
        /// HTTP status.
        status: u16,
    },
    /// The object changed upstream since it was indexed (`412`, another size or validator).
    #[error(
        "{url}: the file changed upstream since medimg indexed it ({what}); its dataset is \
         marked changed, and a restart of medimg indexes the new version"
    )]
    Changed {
        /// URL requested.
        url: String,
        /// What tells: the host's answer to `If-Match`, or the sizes that differ.
        what: String,
    },
    /// No answer (or no byte of one) within the deadline.
    #[error(
        "{url}: no answer within {}s; the host may be down or overloaded (raise `deadline` in \
         the config or --deadline if it is just slow)",
        after.as_secs_f64()
    )]
    TimedOut {
        /// URL requested.
        url: String,
        /// The deadline.
        after: Duration,
    },
    /// The connection failed.
    #[error("{url}: {message}")]
    Network {
        /// URL requested.
        url: String,
        /// What the client said.
        message: String,
    },
    /// The host asks medimg to wait longer than a read can (`Retry-After`).
    #[error(
        "{url}: the host is rate-limiting medimg and asks it to wait {wait_secs} s; try again later"
    )]
    Throttled {
        /// URL requested.
        url: String,
        /// Seconds the host asked for.
        wait_secs: u64,
    },
    /// The answer is not the bytes asked for.
    #[error("{url}: bad answer: {message}")]
    BadAnswer {
        /// URL requested.
        url: String,
        /// What was wrong (HTML page, wrong length, wrong Content-Range).
        message: String,
    },
    /// The daemon runs `--offline`: nothing is asked of any host.
    #[error("{url}: not in the cache, and medimg runs --offline (nothing is fetched)")]
    Offline {
        /// URL that would have been requested.
        url: String,
    },
    /// The host wants something of the user before it serves the file (a Dataverse guestbook
    /// response the config does not give, or one the host refused).
    #[error("{url}: {what}")]
    Asks {
        /// URL requested.
        url: String,
        /// What the host wants, and where to give it.
        what: String,
    },
    /// The host could not be reached a moment ago, and is not asked again yet.
    #[error("{url}: {why} (cached files still read)")]
    Unreachable {
        /// URL that would have been requested.
        url: String,
        /// Which host, since when, why, and when it is tried again.
        why: String,
    },
}

impl SourceError {
    /// True for failures worth another try (timeouts, 5xx, 429, a body cut short).
    pub fn is_transient(&self) -> bool {
        match self {
            SourceError::Status { status, .. } => *status == 429 || *status >= 500,
            SourceError::Network { .. } | SourceError::TimedOut { .. } => true,
            _ => false,
        }
    }

    /// True when the host refused access (401, 403): missing or wrong credentials, terms not
    /// accepted, an expired signed URL that re-resolving did not fix, or something the host
    /// asks of the user first ([`SourceError::Asks`]).
    pub fn is_denied(&self) -> bool {
        matches!(self, SourceError::Status { status, .. } if *status == 401 || *status == 403)
            || matches!(self, SourceError::Asks { .. })
    }

    /// The HTTP status, for a status error.
    pub fn status(&self) -> Option<u16> {
        match self {
            SourceError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A call to a host's API (listing a record, a folder, a release) at index time.
#[derive(Debug, Clone)]
pub struct ApiRequest<'a> {
    /// The URL as the catalog or an earlier answer names it.
    pub url: &'a str,
    /// A JSON body to POST, or `None` for a GET.
    pub post_json: Option<&'a str>,
    /// The media type to ask for (`Accept`), where the host wants a versioned one.
    pub accept: Option<&'a str>,
}

/// A successful API answer.
#[derive(Debug, Clone, Default)]
pub struct ApiReply {
    /// The body.
    pub body: Vec<u8>,
    /// `Content-Type`, if sent.
    pub content_type: Option<String>,
    /// The `rel="next"` target of a `Link` header (paged APIs), if any.
    pub next: Option<String>,
}

/// Largest API answer accepted (the biggest listings, a few hundred thousand files, are tens of
/// MB of JSON).
pub const API_MAX: u64 = 256 << 20;

/// Access to upstream objects.
pub trait Upstream: Send + Sync {
    /// GET `req`; see the module invariants.
    fn fetch(&self, req: &FetchRequest<'_>) -> Result<Response<'_>, SourceError>;

    /// Call an API: GET (or POST JSON) `req.url` with the host's credentials, following
    /// redirects, and return the whole answer (at most [`API_MAX`] bytes). HTML is allowed here
    /// (directory listings are HTML); the caller parses what it expects.
    fn api(&self, req: &ApiRequest<'_>) -> Result<ApiReply, SourceError>;

    /// How long a caller waits for this upstream before giving up (retries stop at it).
    fn deadline(&self) -> Duration {
        DEFAULT_DEADLINE
    }

    /// What each host has been asked and has answered since start (none kept by default).
    fn host_stats(&self) -> std::collections::BTreeMap<String, stats::HostCounters> {
        std::collections::BTreeMap::new()
    }

    /// The same counters by the dataset the requests were made for ([`stats::on_behalf_of`]).
    fn dataset_stats(&self) -> std::collections::BTreeMap<String, stats::HostCounters> {
        std::collections::BTreeMap::new()
    }
}

/// Fetch exactly `range` of `url` into memory, checking the object's total size. Returns the
/// bytes and the answer's ETag.
pub fn fetch_range(
    up: &dyn Upstream,
    url: &str,
    range: Range<u64>,
    if_match: Option<&str>,
    total: u64,
) -> Result<(BlockBuf, Option<String>), SourceError> {
    let want = range.end - range.start;
    let resp = up.fetch(&FetchRequest {
        url,
        range: Some(range.clone()),
        if_match,
    })?;
    match resp.reply.body {
        Body::Partial { total: t } if t == total => {}
        Body::Partial { total: t } => {
            return Err(SourceError::Changed {
                url: url.to_string(),
                what: format!("{t} bytes now, {total} when indexed"),
            });
        }
        // A host may answer a range that covers the whole object with the whole object.
        Body::Full { len }
            if range.start == 0 && range.end == total && len.is_none_or(|n| n == total) => {}
        Body::Full { .. } => {
            return Err(SourceError::BadAnswer {
                url: url.to_string(),
                message: "the server stopped honouring Range requests".into(),
            });
        }
    }
    let etag = resp.reply.etag.clone();
    let buf = resp.read_to_block(url, want)?;
    if buf.len() as u64 != want {
        return Err(SourceError::BadAnswer {
            url: url.to_string(),
            message: format!(
                "asked for bytes {}-{}, got {} bytes",
                range.start,
                range.end - 1,
                buf.len()
            ),
        });
    }
    Ok((buf, etag))
}
