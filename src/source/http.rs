//! The HTTP upstream: reqwest on a small tokio runtime, called from blocking threads.
//!
//! Redirects are followed here, not by reqwest, so that mirror rules apply to every URL the
//! daemon requests, including `Location` headers. No transparent decompression is enabled (no
//! reqwest compression feature, `Accept-Encoding: identity`): a range of a gzip-encoded object
//! must be bytes of the object, not of its decoding. Every request carries [`USER_AGENT`].
//!
//! Shared behaviour of every host, written once here:
//! - each hop of a redirect chain is admitted against its own host's budget
//!   ([`super::limits`]), and `Retry-After` or an exhausted rate-limit window pauses that host;
//! - a credential is attached only to a hop whose host (before mirror rules) is its own, so a
//!   token for `www.kaggle.com` never reaches the signed storage URL it redirects to;
//! - the end of a byte URL's redirect chain (a signed object-store URL) is reused until its
//!   signature expires, and resolved again on 400/401/403/404/410;
//! - a redirect chain stops, as an error, when it comes back to a URL it asked (a loop), after
//!   `MAX_REDIRECTS` hops, at a scheme other than http(s), or at a loopback, private or
//!   link-local address that no mirror rule names (a public host may not point medimg at this
//!   machine or its network);
//! - an answer in a content coding (`Content-Encoding: gzip`, ...) is an error, never bytes;
//! - secrets and signatures in URLs are redacted from every message.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{
    ACCEPT, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG,
    HeaderMap, IF_MATCH, LAST_MODIFIED, LINK, LOCATION, RANGE, RETRY_AFTER,
};
use reqwest::{Method, StatusCode};

use super::guestbook::{self, Guestbook};
use super::limits::{Limiter, Permit};
use super::stats::{HostCounters, HostStats};
use super::{
    API_MAX, ApiReply, ApiRequest, Body, BodyStream, FetchRequest, Reply, Response, SourceError,
    Upstream,
};
use crate::config::Mirrors;
use crate::credentials::{Auth, Credentials, host_of};

/// Identifies medimg to hosts, as Zenodo asks of automated clients.
pub const USER_AGENT: &str = concat!(
    "medimg/",
    env!("CARGO_PKG_VERSION"),
    " (read-only dataset mount; +https://github.com/medimg)"
);

/// Redirect hops followed before giving up (browsers use 20; signed-URL chains take 1-3). A
/// chain that comes back to a URL it already asked stops there, as a loop.
const MAX_REDIRECTS: usize = 10;
/// Longest wait a host may ask for (`Retry-After`) that a read sits out; a longer one fails
/// the read with [`SourceError::Throttled`] rather than hang a process for minutes.
const MAX_WAIT: Duration = Duration::from_secs(120);
/// How long the end of a redirect chain without a signature's expiry is reused.
const UNSIGNED_REUSE: Duration = Duration::from_secs(600);
/// A signed URL is dropped this long before it expires, so a request never starts on one
/// that dies in flight.
const EXPIRY_MARGIN: Duration = Duration::from_secs(30);
/// Bytes of a body gathered per call into the runtime.
const BATCH: usize = 1 << 20;
/// Query parameters that carry secrets or signatures, redacted from every message.
const SECRET_PARAMS: [&str; 8] = [
    "key",
    "token",
    "access_token",
    "x-amz-signature",
    "x-amz-credential",
    "x-goog-signature",
    "signature",
    "sig",
];

/// The real upstream.
pub struct HttpUpstream {
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
    mirrors: Mirrors,
    credentials: Credentials,
    limiter: Limiter,
    /// Where a URL's redirects led (a signed object-store URL), and until when to reuse it.
    resolved: Mutex<HashMap<String, (String, SystemTime)>>,
    /// How long a request may go without an answer or a byte of one.
    deadline: Duration,
    /// What each host has been asked and has answered.
    stats: HostStats,
    /// Ask nothing of any host (`--offline`).
    offline: bool,
    /// Hosts found unreachable, and until when they are not asked again.
    down: Mutex<HashMap<String, Down>>,
    /// The user's answers to a Dataverse guestbook (`[guestbook]`), if given.
    guestbook: Option<Guestbook>,
}

/// A host found unreachable.
#[derive(Debug, Clone)]
struct Down {
    since: SystemTime,
    until: SystemTime,
    /// How long the next pause lasts if the trial after this one fails too.
    next: Duration,
    cause: String,
}

/// How long an unreachable host is left alone at first; each failed trial doubles it, up to
/// [`DOWN_MAX`].
const DOWN_FIRST: Duration = Duration::from_secs(10);
/// The longest an unreachable host is left alone before it is tried again.
const DOWN_MAX: Duration = Duration::from_secs(300);

impl std::fmt::Debug for HttpUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpUpstream").finish_non_exhaustive()
    }
}

/// An answer whose headers arrived, with its place in the host's budget.
struct Sent {
    resp: reqwest::Response,
    /// The URL requested last (after mirror rules), secrets redacted, for messages.
    url: String,
    /// Where the redirects led, when there were any (before mirror rules).
    redirected_to: Option<String>,
    /// The host that answered, as the catalog names it.
    host: String,
    permit: Permit,
}

impl HttpUpstream {
    /// A client that applies `mirrors` to every URL, attaches `credentials` to their own hosts
    /// only, and keeps every host within its budget in `limiter`.
    pub fn new(
        mirrors: Mirrors,
        credentials: Credentials,
        limiter: Limiter,
        deadline: Duration,
    ) -> std::io::Result<HttpUpstream> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            // Two workers drive all sockets; the FUSE threads block on their own requests.
            .worker_threads(2)
            .thread_name("medimg-http")
            .enable_all()
            .build()?;
        let client = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(deadline.min(Duration::from_secs(30)))
            // A stalled transfer (or a host that accepted the connection and never answers)
            // fails after this long without a byte; retries stop at the same deadline.
            .read_timeout(deadline)
            .pool_max_idle_per_host(32)
            .build()
            .map_err(std::io::Error::other)?;
        Ok(HttpUpstream {
            client,
            runtime,
            mirrors,
            credentials,
            limiter,
            resolved: Mutex::new(HashMap::new()),
            deadline,
            stats: HostStats::default(),
            offline: false,
            down: Mutex::new(HashMap::new()),
            guestbook: None,
        })
    }

    /// Answer a Dataverse guestbook with `guestbook` when a host asks for one.
    pub fn with_guestbook(mut self, guestbook: Option<Guestbook>) -> HttpUpstream {
        self.guestbook = guestbook;
        self
    }

    /// Ask nothing of any host: every fetch of what the cache lacks fails at once.
    pub fn offline(mut self) -> HttpUpstream {
        self.offline = true;
        self
    }

    /// Send one request, following redirects: every hop goes through the mirror rules, waits
    /// for its host's budget, and carries a credential only if the hop's own host has one.
    async fn send_chain(
        &self,
        start: &str,
        method: Method,
        json: Option<&str>,
        accept: Option<&str>,
        range: Option<&std::ops::Range<u64>>,
        if_match: Option<&str>,
    ) -> Result<Sent, SourceError> {
        let mut logical = start.to_string();
        let mut method = method;
        let mut hops = 0;
        // The URLs this chain has asked, to tell a loop from a long chain.
        let mut visited: Vec<String> = Vec::new();
        loop {
            let host = host_of(&logical).unwrap_or_default();
            let cred = self.credentials.for_host(&host);
            let mut physical = self.mirrors.rewrite(&logical);
            if let Some(Auth::Query { name, value }) = cred.map(|c| &c.auth) {
                let sep = if physical.contains('?') { '&' } else { '?' };
                physical = format!("{physical}{sep}{name}={}", value.expose());
            }
            let shown = redact(&physical);
            if self.offline {
                return Err(SourceError::Offline { url: shown });
            }
            self.check_reachable(&host, &shown)?;
            let asked = std::time::Instant::now();
            let permit = self.limiter.admit(&host).await;
            let waited = asked.elapsed();
            if waited >= Duration::from_millis(1) {
                self.stats.waited(&host, waited);
            }
            self.stats.request(&host);
            let mut rb = self
                .client
                .request(method.clone(), &physical)
                .header(ACCEPT_ENCODING, "identity");
            match cred.map(|c| &c.auth) {
                Some(Auth::Bearer(t)) => rb = rb.bearer_auth(t.expose()),
                Some(Auth::Basic { user, password }) => {
                    rb = rb.basic_auth(user, Some(password.expose()))
                }
                Some(Auth::Header { name, value }) => rb = rb.header(name.as_str(), value.expose()),
                // The shared cache's store keys are its own, never an upstream's.
                Some(Auth::Query { .. } | Auth::SigV4(_)) | None => {}
            }
            if let (Some(j), true) = (json, method == Method::POST) {
                rb = rb
                    .header(CONTENT_TYPE, "application/json")
                    .header(ACCEPT, accept.unwrap_or("application/json"))
                    .body(j.to_string());
            } else if let Some(a) = accept {
                rb = rb.header(ACCEPT, a);
            }
            if let Some(r) = range {
                rb = rb.header(RANGE, format!("bytes={}-{}", r.start, r.end - 1));
            }
            if let Some(tag) = if_match {
                rb = rb.header(IF_MATCH, tag);
            }
            let sent = std::time::Instant::now();
            let resp = rb.send().await.map_err(|e| {
                self.stats.failed(&host, true);
                // No connection at all (refused, no route, no name, no answer to SYN): the
                // network or the host is down; say so once and stop asking for a while.
                if e.is_connect() {
                    self.mark_down(&host, &e);
                }
                net_error(shown.clone(), &e, self.deadline)
            })?;
            self.stats.answered(&host, sent.elapsed());
            self.mark_up(&host);
            let status = resp.status();
            if status.is_client_error() || status.is_server_error() {
                let transient = status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
                self.stats.failed(&host, transient);
            }
            self.obey_limits(&host, status, resp.headers(), &shown)?;
            if !status.is_redirection() || status == StatusCode::NOT_MODIFIED {
                return Ok(Sent {
                    resp,
                    url: shown,
                    redirected_to: (hops > 0).then_some(logical),
                    host,
                    permit,
                });
            }
            hops += 1;
            let bad = |message: String| SourceError::BadAnswer {
                url: shown.clone(),
                message,
            };
            let next = resp
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|loc| reqwest::Url::parse(&logical).ok()?.join(loc).ok())
                .ok_or_else(|| bad(format!("redirect {status} without a usable Location")))?;
            if let Some(why) = self.refused_redirect(&logical, &next) {
                return Err(bad(why));
            }
            let next = next.to_string();
            if visited.contains(&next) {
                return Err(bad(format!(
                    "redirect loop: {} leads back to {} after {hops} redirects; the host is \
                     misconfigured (or wants a cookie, which medimg does not keep)",
                    redact(&logical),
                    redact(&next)
                )));
            }
            if hops > MAX_REDIRECTS {
                return Err(bad(format!(
                    "more than {MAX_REDIRECTS} redirects in a row (medimg's limit) without \
                     reaching the file; the host's redirects do not end"
                )));
            }
            // 301/302/303 turn a POST into a GET, as browsers and reqwest do.
            if !matches!(status.as_u16(), 307 | 308) {
                method = Method::GET;
            }
            visited.push(logical);
            logical = next;
        }
    }

    /// Why a redirect from `from` to `to` (both before mirror rules) is not followed, if it is
    /// not: a scheme other than http(s), or a loopback, private or link-local address that
    /// neither the mirror rules nor the redirecting host itself stand for. A public host could
    /// otherwise point medimg at a service on this machine or its network (a cloud metadata
    /// endpoint, a database's HTTP port) and have its answer served as a dataset's bytes.
    fn refused_redirect(&self, from: &str, to: &reqwest::Url) -> Option<String> {
        if !matches!(to.scheme(), "http" | "https") {
            return Some(format!(
                "a redirect to a {}: URL; medimg follows redirects to http and https only",
                to.scheme()
            ));
        }
        if is_public(to) || self.mirrors.names(to.as_str()) {
            return None;
        }
        // A server on the local network may redirect within itself.
        let from = reqwest::Url::parse(from).ok();
        let origin =
            |u: &reqwest::Url| (u.host_str().map(str::to_string), u.port_or_known_default());
        if from.as_ref().is_some_and(|f| origin(f) == origin(to)) {
            return None;
        }
        Some(format!(
            "{} redirects to {}, a loopback, private or link-local address that no mirror rule \
             names; refused, so that a remote host cannot point medimg at services on this \
             machine or its network (add a [[mirror]] rule naming it if the redirect is meant)",
            from.as_ref()
                .and_then(|f| f.host_str())
                .unwrap_or("the host"),
            redact(to.as_str())
        ))
    }

    /// Honour what the answer says about the host's budget: `Retry-After` on 429/503, and an
    /// exhausted rate-limit window (`X-RateLimit-Remaining: 0`, or the IETF `RateLimit-*`).
    fn obey_limits(
        &self,
        host: &str,
        status: StatusCode,
        h: &HeaderMap,
        url: &str,
    ) -> Result<(), SourceError> {
        let num = |name: &str| -> Option<u64> { h.get(name)?.to_str().ok()?.trim().parse().ok() };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let mut wait = None;
        if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
            wait = h
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| retry_after(v, now));
        }
        let exhausted = |r: &str| num(r) == Some(0);
        if exhausted("x-ratelimit-remaining") {
            // Zenodo and GitHub send the reset as epoch seconds; others as seconds from now.
            wait = wait.or(num("x-ratelimit-reset").map(|r| {
                if r > 1_000_000_000 {
                    r.saturating_sub(now)
                } else {
                    r
                }
            }));
        } else if exhausted("ratelimit-remaining") {
            wait = wait.or(num("ratelimit-reset"));
        }
        let Some(secs) = wait else { return Ok(()) };
        let refused =
            status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE;
        // A refusal that asks for longer than a reader may wait fails now, not after the pause.
        if refused && Duration::from_secs(secs) > MAX_WAIT.min(self.deadline) {
            return Err(SourceError::Throttled {
                url: url.to_string(),
                wait_secs: secs,
            });
        }
        // An answer that got through but emptied the window only slows what follows.
        let pause = Duration::from_secs(secs.max(1)).min(MAX_WAIT);
        tracing::info!(
            host,
            "the host asks for a pause of {secs} s; waiting {pause:?}"
        );
        self.limiter.pause(host, pause);
        Ok(())
    }

    /// A byte GET starting at `start`, with the answer's headers checked.
    async fn send_bytes(
        &self,
        req: &FetchRequest<'_>,
        start: &str,
    ) -> Result<(Reply, HttpBody<'_>, Option<String>), SourceError> {
        let sent = self
            .send_chain(
                start,
                Method::GET,
                None,
                None,
                req.range.as_ref(),
                req.if_match,
            )
            .await?;
        let Sent {
            resp,
            url,
            redirected_to,
            host,
            permit,
        } = sent;
        let status = resp.status();
        let h = resp.headers();
        let bad = |message: String| SourceError::BadAnswer {
            url: url.clone(),
            message,
        };
        let body = match status {
            StatusCode::PARTIAL_CONTENT => {
                let want = req
                    .range
                    .clone()
                    .ok_or_else(|| bad("206 to a request without Range".into()))?;
                let cr = h
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| bad("206 without Content-Range".into()))?;
                Body::Partial {
                    total: partial_total(&want, cr).map_err(bad)?,
                }
            }
            StatusCode::OK => Body::Full { len: None },
            StatusCode::PRECONDITION_FAILED => {
                return Err(SourceError::Changed {
                    url,
                    what: format!("HTTP 412 to If-Match {}", req.if_match.unwrap_or_default()),
                });
            }
            // An empty object satisfies no range; `Content-Range: bytes */0` says it is one.
            StatusCode::RANGE_NOT_SATISFIABLE
                if req.range.as_ref().is_some_and(|r| r.start == 0)
                    && h.get(CONTENT_RANGE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(unsatisfied_total)
                        == Some(0) =>
            {
                return Ok((
                    Reply {
                        body: Body::Full { len: Some(0) },
                        etag: None,
                        last_modified: None,
                    },
                    HttpBody {
                        runtime: &self.runtime,
                        resp,
                        url,
                        declared: Some(0),
                        got: 0,
                        deadline: self.deadline,
                        empty: true,
                        stats: &self.stats,
                        host,
                        _permit: permit,
                    },
                    redirected_to,
                ));
            }
            StatusCode::RANGE_NOT_SATISFIABLE => {
                return Err(SourceError::Changed {
                    url,
                    what: "HTTP 416: shorter than when indexed".to_string(),
                });
            }
            StatusCode::BAD_REQUEST if guestbook::is_datafile_url(start) => {
                let body = small_body(resp).await;
                return Err(match guestbook::demand(&body) {
                    Some(what) => SourceError::Asks { url, what },
                    None => SourceError::Status { url, status: 400 },
                });
            }
            s => {
                return Err(SourceError::Status {
                    url,
                    status: s.as_u16(),
                });
            }
        };
        if let Some(message) = not_bytes(h) {
            return Err(bad(message));
        }
        let declared: Option<u64> = h
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let body = match body {
            Body::Full { .. } => Body::Full { len: declared },
            partial => partial,
        };
        let etag = h
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let last_modified = h
            .get(LAST_MODIFIED)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_http_date);
        Ok((
            Reply {
                body,
                etag,
                last_modified,
            },
            HttpBody {
                runtime: &self.runtime,
                resp,
                url,
                declared,
                got: 0,
                deadline: self.deadline,
                empty: false,
                stats: &self.stats,
                host,
                _permit: permit,
            },
            redirected_to,
        ))
    }

    /// An error if `host` was found unreachable and its pause has not ended.
    fn check_reachable(&self, host: &str, url: &str) -> Result<(), SourceError> {
        let down = self.down.lock().unwrap_or_else(|p| p.into_inner());
        let Some(d) = down.get(host) else {
            return Ok(());
        };
        let now = SystemTime::now();
        match d.until.duration_since(now) {
            Ok(left) => Err(SourceError::Unreachable {
                url: url.to_string(),
                why: format!(
                    "{host} could not be reached {}s ago ({}); not asking it again for {}s",
                    now.duration_since(d.since).map_or(0, |s| s.as_secs()),
                    d.cause,
                    left.as_secs().max(1)
                ),
            }),
            // The pause is over: this request is the trial.
            Err(_) => Ok(()),
        }
    }

    fn mark_down(&self, host: &str, e: &reqwest::Error) {
        let mut down = self.down.lock().unwrap_or_else(|p| p.into_inner());
        let now = SystemTime::now();
        let (since, pause) = match down.get(host) {
            Some(d) => (d.since, d.next),
            None => (now, DOWN_FIRST),
        };
        let cause = std::error::Error::source(e).map_or_else(|| e.to_string(), |s| s.to_string());
        tracing::warn!(
            host,
            "cannot reach the host ({cause}); serving what is cached, and asking it again in {}s",
            pause.as_secs()
        );
        down.insert(
            host.to_string(),
            Down {
                since,
                until: now + pause,
                next: (pause * 2).min(DOWN_MAX),
                cause,
            },
        );
    }

    fn mark_up(&self, host: &str) {
        let mut down = self.down.lock().unwrap_or_else(|p| p.into_inner());
        if down.remove(host).is_some() {
            tracing::info!(host, "the host answers again");
        }
    }

    /// Answer the guestbook Dataverse asks for before serving `url` (its demand `what`, at
    /// `shown`): POST the user's `[guestbook]` to the same URL, and return the signed URL the
    /// answer gives, which must stay on the same host.
    fn answer_guestbook(
        &self,
        url: &str,
        shown: String,
        what: String,
    ) -> Result<String, SourceError> {
        let Some(g) = &self.guestbook else {
            return Err(SourceError::Asks {
                url: shown,
                what: format!(
                    "{what} This Dataverse dataset asks each downloader for a guestbook response \
                     (name and e-mail, and for some institution and position); give yours in \
                     `[guestbook]` of the config file (see config/medimg.toml), then restart \
                     medimg"
                ),
            });
        };
        let body = g.body();
        let (status, answer, url_shown) = self.runtime.block_on(async {
            let sent = self
                .send_chain(url, Method::POST, Some(&body), None, None, None)
                .await?;
            let status = sent.resp.status();
            Ok::<_, SourceError>((status, small_body(sent.resp).await, sent.url))
        })?;
        if !status.is_success() {
            return Err(SourceError::Asks {
                url: url_shown,
                what: format!(
                    "the host refused the guestbook response from `[guestbook]` (HTTP {}): {}; \
                     complete `[guestbook]` in the config file as the dataset's guestbook asks, \
                     then restart medimg",
                    status.as_u16(),
                    guestbook::refusal(&answer)
                ),
            });
        }
        let signed = guestbook::signed_url(&answer).map_err(|message| SourceError::BadAnswer {
            url: url_shown.clone(),
            message,
        })?;
        if host_of(&signed) != host_of(url) {
            return Err(SourceError::BadAnswer {
                url: url_shown,
                message: format!(
                    "the guestbook's signed URL leads to another host ({})",
                    redact(&signed)
                ),
            });
        }
        tracing::debug!("{}: guestbook response given", redact(url));
        Ok(signed)
    }

    fn lock_resolved(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, SystemTime)>> {
        self.resolved.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where `url` redirected to last time, while that is still good.
    fn reuse(&self, url: &str) -> Option<String> {
        let mut map = self.lock_resolved();
        match map.get(url) {
            Some((to, until)) if *until > SystemTime::now() => Some(to.clone()),
            Some(_) => {
                map.remove(url);
                None
            }
            None => None,
        }
    }
}

/// A response body read on the runtime, one chunk per call.
struct HttpBody<'a> {
    runtime: &'a tokio::runtime::Runtime,
    resp: reqwest::Response,
    url: String,
    declared: Option<u64>,
    got: u64,
    deadline: Duration,
    /// The answer stands for an empty object whatever its body says (a 416 page).
    empty: bool,
    /// Where its bytes are counted.
    stats: &'a HostStats,
    host: String,
    /// The request keeps its place in the host's budget until its body is read or dropped.
    _permit: Permit,
}

impl BodyStream for HttpBody<'_> {
    fn chunk(&mut self) -> Result<Option<Vec<u8>>, SourceError> {
        if self.empty {
            return Ok(None);
        }
        let want = self
            .declared
            .map_or(BATCH, |n| (n.saturating_sub(self.got) as usize).min(BATCH))
            .max(1);
        let resp = &mut self.resp;
        // One trip into the runtime gathers up to BATCH bytes: hyper hands out pieces of a
        // few KiB, and a `block_on` per piece costs two thread wake-ups each (measured: a
        // 4 MiB block took 33 ms that way, 3 ms batched).
        let next = self.runtime.block_on(async {
            let mut buf: Vec<u8> = Vec::new();
            while buf.len() < want {
                match resp.chunk().await? {
                    Some(c) if buf.is_empty() && c.len() >= want => return Ok(Some(c.to_vec())),
                    Some(c) => {
                        if buf.is_empty() {
                            buf.reserve(want);
                        }
                        buf.extend_from_slice(&c);
                    }
                    None => break,
                }
            }
            Ok::<_, reqwest::Error>((!buf.is_empty()).then_some(buf))
        });
        let next = next.map_err(|e| net_error(self.url.clone(), &e, self.deadline))?;
        match next {
            Some(c) => {
                self.got += c.len() as u64;
                self.stats.bytes(&self.host, c.len() as u64);
                Ok(Some(c))
            }
            None => self.ended().map(|()| None),
        }
    }

    fn read_rest(&mut self, out: &mut Vec<u8>, max: usize) -> Result<bool, SourceError> {
        if self.empty {
            return Ok(true);
        }
        let (resp, start) = (&mut self.resp, out.len());
        // The whole rest in one trip into the runtime, straight into `out`.
        let fits = self.runtime.block_on(async {
            while let Some(c) = resp.chunk().await? {
                if out.len() + c.len() > max {
                    return Ok(false);
                }
                out.extend_from_slice(&c);
            }
            Ok::<_, reqwest::Error>(true)
        });
        self.got += (out.len() - start) as u64;
        self.stats.bytes(&self.host, (out.len() - start) as u64);
        let fits = fits.map_err(|e| net_error(self.url.clone(), &e, self.deadline))?;
        if fits {
            self.ended()?;
        }
        Ok(fits)
    }
}

impl HttpBody<'_> {
    /// The body ended: an error if it is shorter than its declared length.
    fn ended(&self) -> Result<(), SourceError> {
        match self.declared {
            Some(n) if n != self.got => Err(SourceError::Network {
                url: self.url.clone(),
                message: format!("the body ended after {} of {n} bytes", self.got),
            }),
            _ => Ok(()),
        }
    }
}

/// A client error as the caller sees it: a timeout names the deadline, anything else the cause.
fn net_error(url: impl Into<String>, e: &reqwest::Error, deadline: Duration) -> SourceError {
    if e.is_timeout() {
        SourceError::TimedOut {
            url: url.into(),
            after: deadline,
        }
    } else {
        SourceError::Network {
            url: url.into(),
            message: redact(&error_chain(e)),
        }
    }
}

impl Upstream for HttpUpstream {
    fn deadline(&self) -> Duration {
        self.deadline
    }

    fn host_stats(&self) -> std::collections::BTreeMap<String, HostCounters> {
        self.stats.snapshot()
    }

    fn dataset_stats(&self) -> std::collections::BTreeMap<String, HostCounters> {
        self.stats.by_dataset()
    }

    fn fetch(&self, req: &FetchRequest<'_>) -> Result<Response<'_>, SourceError> {
        if let Some(to) = self.reuse(req.url) {
            match self.runtime.block_on(self.send_bytes(req, &to)) {
                // An expired or revoked signed URL: resolve the original URL again, once.
                Err(e) if matches!(e.status(), Some(400 | 401 | 403 | 404 | 410)) => {
                    tracing::debug!("{e}; resolving {} again", redact(req.url));
                    self.lock_resolved().remove(req.url);
                }
                Ok((reply, body, _)) => {
                    return Ok(Response {
                        reply,
                        body: Box::new(body),
                    });
                }
                Err(e) => return Err(e),
            }
        }
        let (reply, body, redirected_to) =
            match self.runtime.block_on(self.send_bytes(req, req.url)) {
                Err(SourceError::Asks { url, what }) => {
                    let signed = self.answer_guestbook(req.url, url, what)?;
                    let (reply, body, to) = self.runtime.block_on(self.send_bytes(req, &signed))?;
                    // Where the signed URL leads (Dataverse on S3 redirects to a presigned
                    // URL) is good for longer than the signed URL itself.
                    if to.is_none() {
                        self.lock_resolved().insert(
                            req.url.to_string(),
                            (signed, SystemTime::now() + guestbook::SIGNED_REUSE),
                        );
                    }
                    (reply, body, to)
                }
                other => other?,
            };
        if let Some(to) = redirected_to {
            let until = signed_expiry(&to)
                .map(|t| t.checked_sub(EXPIRY_MARGIN).unwrap_or(UNIX_EPOCH))
                .unwrap_or_else(|| SystemTime::now() + UNSIGNED_REUSE);
            self.lock_resolved()
                .insert(req.url.to_string(), (to, until));
        }
        Ok(Response {
            reply,
            body: Box::new(body),
        })
    }

    fn api(&self, req: &ApiRequest<'_>) -> Result<ApiReply, SourceError> {
        self.runtime.block_on(async {
            let method = if req.post_json.is_some() {
                Method::POST
            } else {
                Method::GET
            };
            let sent = self
                .send_chain(req.url, method, req.post_json, req.accept, None, None)
                .await?;
            let Sent {
                resp, url, host, ..
            } = sent;
            if !resp.status().is_success() {
                return Err(SourceError::Status {
                    url,
                    status: resp.status().as_u16(),
                });
            }
            let h = resp.headers();
            if let Some(message) = encoded(h) {
                return Err(SourceError::BadAnswer { url, message });
            }
            let content_type = h
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let next = h
                .get_all(LINK)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(link_next);
            let mut body = Vec::new();
            let mut resp = resp;
            while let Some(c) = resp
                .chunk()
                .await
                .map_err(|e| net_error(url.clone(), &e, self.deadline))?
            {
                if body.len() as u64 + c.len() as u64 > API_MAX {
                    return Err(SourceError::BadAnswer {
                        url,
                        message: format!("an API answer of more than {API_MAX} bytes"),
                    });
                }
                body.extend_from_slice(&c);
            }
            self.stats.bytes(&host, body.len() as u64);
            Ok(ApiReply {
                body,
                content_type,
                next,
            })
        })
    }
}

/// `url` with the values of secret or signature query parameters replaced by `REDACTED`.
pub fn redact(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    let mut rest = url;
    while let Some(i) = rest.find(['?', '&']) {
        out.push_str(&rest[..=i]);
        rest = &rest[i + 1..];
        let end = rest.find(['&', '#', ' ', '"', ')']).unwrap_or(rest.len());
        let (pair, tail) = rest.split_at(end);
        match pair.split_once('=') {
            Some((k, _)) if SECRET_PARAMS.contains(&k.to_ascii_lowercase().as_str()) => {
                out.push_str(k);
                out.push_str("=REDACTED");
            }
            _ => out.push_str(pair),
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// Seconds to wait that a `Retry-After` value asks for at `now` (seconds since the epoch):
/// a number of seconds, or an HTTP date (a date past is no wait).
pub fn retry_after(value: &str, now: u64) -> Option<u64> {
    value
        .trim()
        .parse::<u64>()
        .ok()
        .or_else(|| parse_http_date(value).map(|t| (t as u64).saturating_sub(now)))
}

/// Where a redirect from `current` with `Location: location` leads (a relative location is
/// resolved against `current`), or `None` when either does not make a URL.
pub fn redirect_target(current: &str, location: &str) -> Option<String> {
    Some(
        reqwest::Url::parse(current)
            .ok()?
            .join(location)
            .ok()?
            .to_string(),
    )
}

/// The first few KiB of an error answer's body (the rest is dropped).
async fn small_body(mut resp: reqwest::Response) -> Vec<u8> {
    let mut out = Vec::new();
    while let Ok(Some(c)) = resp.chunk().await {
        out.extend_from_slice(&c);
        if out.len() >= 16 << 10 {
            break;
        }
    }
    out
}

/// When a signed URL stops working: AWS SigV4 and Google V4 (`X-Amz-Date` + `X-Amz-Expires`,
/// `X-Goog-Date` + `X-Goog-Expires`), or an absolute `Expires=<epoch>` (AWS SigV2, Google V2,
/// CloudFront).
pub fn signed_expiry(url: &str) -> Option<SystemTime> {
    let query = url.split_once('?')?.1.split('#').next()?;
    let mut params = HashMap::new();
    for pair in query.split('&') {
        if let Some((k, v)) = pair.split_once('=') {
            params.insert(k.to_ascii_lowercase(), v);
        }
    }
    for (date, expires) in [
        ("x-amz-date", "x-amz-expires"),
        ("x-goog-date", "x-goog-expires"),
    ] {
        if let (Some(d), Some(e)) = (params.get(date), params.get(expires)) {
            let start = parse_iso_basic(d)?;
            let secs: u64 = e.parse().ok()?;
            return UNIX_EPOCH.checked_add(Duration::from_secs(start.checked_add(secs)?));
        }
    }
    let epoch: u64 = params.get("expires")?.parse().ok()?;
    // An expiry past what the clock can hold is no expiry (`SystemTime + Duration` panics).
    UNIX_EPOCH.checked_add(Duration::from_secs(epoch))
}

/// `20260101T000000Z` as seconds since the epoch.
fn parse_iso_basic(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let days = crate::time::days_from_civil(n(0..4)?, n(4..6)?, n(6..8)?);
    let t = days * 86400 + n(9..11)? * 3600 + n(11..13)? * 60 + n(13..15)?;
    u64::try_from(t).ok()
}

/// Why an answer with headers `h` is not the plain bytes of a file, if it is not: an HTML page
/// (a login, terms or bot-check page), or bytes in a content coding medimg did not ask for
/// (`Accept-Encoding: identity`), whose ranges are not ranges of the file.
fn not_bytes(h: &HeaderMap) -> Option<String> {
    if let Some(why) = encoded(h) {
        return Some(why);
    }
    let ct = h.get(CONTENT_TYPE).and_then(|v| v.to_str().ok())?;
    ct.to_ascii_lowercase().starts_with("text/html").then(|| {
        format!(
            "got an HTML page (Content-Type {ct:?}) where file bytes were expected; the host \
             may want a login, accepted terms, or a human (a captcha or firewall page)"
        )
    })
}

/// Why an answer with headers `h` is not usable as sent, if it is not: its body is in a
/// content coding (gzip, br, ...) although medimg asked for none (`Accept-Encoding:
/// identity`), so its bytes, and any range of them, are not those of the object.
fn encoded(h: &HeaderMap) -> Option<String> {
    let ce = String::from_utf8_lossy(h.get(CONTENT_ENCODING)?.as_bytes()).into_owned();
    let ce = ce.trim();
    (!ce.is_empty() && !ce.eq_ignore_ascii_case("identity")).then(|| {
        format!(
            "the answer is encoded (Content-Encoding: {ce}) although medimg asked for it \
             unencoded (Accept-Encoding: identity); its bytes are not the file's, so none is \
             used (the host, or a proxy in between, is misconfigured)"
        )
    })
}

/// Whether `url`'s host is a public address: not `localhost`, and not a loopback, private
/// (RFC 1918, shared 100.64/10, IPv6 unique local), link-local, unspecified or broadcast one.
/// Names are judged as written: one that resolves to a private address is not caught here.
fn is_public(url: &reqwest::Url) -> bool {
    use std::net::IpAddr;
    let Some(host) = url.host_str() else {
        return false;
    };
    // The URL parser writes every IPv4 form (`2130706433`, `0x7f.1`) as a dotted quad, and
    // IPv6 in brackets.
    let ip = match host.trim_start_matches('[').trim_end_matches(']').parse() {
        Ok(IpAddr::V6(v6)) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        Ok(ip) => ip,
        Err(_) => {
            let d = host.trim_end_matches('.').to_ascii_lowercase();
            return d != "localhost" && !d.ends_with(".localhost");
        }
    };
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || a == 0
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => {
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_unique_local()
                || v6.is_unicast_link_local())
        }
    }
}

/// The target of `rel="next"` in one `Link` header value.
pub fn link_next(v: &str) -> Option<String> {
    v.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| {
                let p = p.trim().replace(' ', "");
                p == "rel=\"next\"" || p == "rel=next"
            })
            .then(|| {
                target
                    .trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string()
            })
    })
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// `bytes START-END/TOTAL` (a `Content-Range` value) as numbers, when the range lies inside
/// the object (`START <= END < TOTAL`, as RFC 9110 requires).
pub fn parse_content_range(v: &str) -> Option<(u64, u64, u64)> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (span, total) = rest.split_once('/')?;
    let (a, b) = span.split_once('-')?;
    let (a, b, total): (u64, u64, u64) = (
        a.trim().parse().ok()?,
        b.trim().parse().ok()?,
        total.trim().parse().ok()?,
    );
    (a <= b && b < total).then_some((a, b, total))
}

/// The object's size from the `Content-Range` of a `206` answer to a request for `want`, when
/// it is exactly the range asked for (or its part up to the end of a shorter object).
pub fn partial_total(want: &std::ops::Range<u64>, content_range: &str) -> Result<u64, String> {
    let cr = content_range;
    let (start, end, total) =
        parse_content_range(cr).ok_or_else(|| format!("unparsable Content-Range {cr:?}"))?;
    if start != want.start || end + 1 != want.end.min(total) {
        return Err(format!(
            "asked for bytes {}-{}, got Content-Range {cr:?}",
            want.start,
            want.end - 1
        ));
    }
    Ok(total)
}

/// The size in an unsatisfied range's `Content-Range: bytes */<size>`.
pub fn unsatisfied_total(v: &str) -> Option<u64> {
    v.trim()
        .strip_prefix("bytes")?
        .trim_start()
        .strip_prefix("*/")?
        .trim()
        .parse()
        .ok()
}

/// An HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`, or the obsolete RFC 850 and asctime forms
/// RFC 9110 asks recipients to accept) as seconds since the epoch.
pub fn parse_http_date(v: &str) -> Option<i64> {
    let t = httpdate::parse_http_date(v.trim()).ok()?;
    i64::try_from(t.duration_since(UNIX_EPOCH).ok()?.as_secs()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_and_signed_urls_expire() {
        assert_eq!(
            redact("https://www.googleapis.com/drive/v3/files/x?alt=media&key=AIzaSECRET"),
            "https://www.googleapis.com/drive/v3/files/x?alt=media&key=REDACTED"
        );
        let s3 = "https://b.s3.amazonaws.com/o?X-Amz-Date=20260101T000000Z&X-Amz-Expires=300\
                  &X-Amz-Signature=abc";
        assert!(!redact(s3).contains("abc"));
        assert_eq!(
            signed_expiry(s3),
            Some(UNIX_EPOCH + Duration::from_secs(1_767_225_600 + 300))
        );
        assert_eq!(
            signed_expiry("https://storage.googleapis.com/o?GoogleAccessId=a&Expires=1800000000"),
            Some(UNIX_EPOCH + Duration::from_secs(1_800_000_000))
        );
        assert_eq!(signed_expiry("https://h/o?download=1"), None);
        // Found by fuzzing (`http_headers`): an expiry past what `SystemTime` holds panicked
        // (in release builds too), from a redirect's `Location`.
        assert_eq!(
            signed_expiry("https://s/o?GoogleAccessId=a&Expires=18000008001001000000"),
            None
        );
        assert_eq!(
            signed_expiry(
                "https://s/o?X-Amz-Date=20260101T000000Z&X-Amz-Expires=18446744073709551615"
            ),
            None
        );
        assert_eq!(
            link_next("<https://h/api?cursor=2>; rel=\"next\", <https://h/a>; rel=\"prev\"")
                .as_deref(),
            Some("https://h/api?cursor=2")
        );
    }

    #[test]
    fn local_and_private_addresses_are_not_public() {
        let public = |u: &str| is_public(&reqwest::Url::parse(u).unwrap());
        for u in [
            "http://127.0.0.1/",
            "http://127.9.9.9:8080/",
            "http://localhost/",
            "http://api.localhost./",
            "http://[::1]/",
            "http://[::ffff:10.0.0.1]/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://192.168.1.1/",
            "http://169.254.169.254/",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
            "http://2130706433/",
            "http://0x7f.1/",
        ] {
            assert!(!public(u), "{u}");
        }
        for u in [
            "https://zenodo.org/",
            "http://8.8.8.8/",
            "http://[2001:db8::1]/",
            "http://100.128.0.1/",
        ] {
            assert!(public(u), "{u}");
        }
    }

    #[test]
    fn content_range_and_dates_parse() {
        assert_eq!(parse_content_range("bytes 0-0/1234"), Some((0, 0, 1234)));
        assert_eq!(parse_content_range("bytes */1234"), None);
        // Found by fuzzing (`http_headers`): a range outside its total was taken, and an end
        // of u64::MAX overflowed `end + 1`.
        assert_eq!(parse_content_range("bytes 50-59/ 0"), None);
        assert_eq!(parse_content_range("bytes 9-5/10"), None);
        assert_eq!(
            partial_total(
                &(0..10),
                "bytes 0-18446744073709551615/18446744073709551615"
            ),
            Err(
                "unparsable Content-Range \"bytes 0-18446744073709551615/18446744073709551615\""
                    .into()
            )
        );
        // A 206 for bytes 50-99 of what it says is a 10-byte object is not that range.
        assert!(partial_total(&(50..100), "bytes 50-9/10").is_err());
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784111777)
        );
        assert_eq!(
            parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"),
            Some(784111777)
        );
        // Found by fuzzing (`http_headers`): out-of-range fields made a date before 1970 (or
        // overflowed, with a year of 19 digits).
        assert_eq!(parse_http_date("un, 006 Nov 994 08:49:337 GMT"), None);
        assert_eq!(
            parse_http_date("Sun, 06 Nov 9223372036854775807 08:49:37 GMT"),
            None
        );
    }
}
