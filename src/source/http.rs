//! The HTTP upstream: reqwest on a small tokio runtime, called from blocking threads.
//!
//! Redirects are followed here, not by reqwest, so that mirror rules apply to every URL the
//! daemon requests, including `Location` headers. No transparent decompression is enabled (no
//! reqwest compression feature, `Accept-Encoding: identity`): a range of a gzip-encoded object
//! must be bytes of the object, not of its decoding. Every request carries [`USER_AGENT`].

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{
    ACCEPT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG, IF_MATCH, LAST_MODIFIED,
    LOCATION, RANGE,
};

use super::{Body, BodyStream, FetchRequest, Reply, Response, SourceError, Upstream};
use crate::config::Mirrors;

/// Identifies medimg to hosts, as Zenodo asks of automated clients.
pub const USER_AGENT: &str = concat!(
    "medimg/",
    env!("CARGO_PKG_VERSION"),
    " (read-only dataset mount; +https://github.com/medimg)"
);

/// Redirect hops followed before giving up (browsers use 20; signed-URL chains take 1-3).
const MAX_REDIRECTS: usize = 10;

/// The real upstream.
pub struct HttpUpstream {
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
    mirrors: Mirrors,
}

impl std::fmt::Debug for HttpUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpUpstream").finish_non_exhaustive()
    }
}

impl HttpUpstream {
    /// A client that applies `mirrors` to every URL.
    pub fn new(mirrors: Mirrors) -> std::io::Result<HttpUpstream> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            // Two workers drive all sockets; the FUSE threads block on their own requests.
            .worker_threads(2)
            .thread_name("medimg-http")
            .enable_all()
            .build()?;
        let client = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(30))
            // A stalled transfer fails after this long without a byte, and is retried above.
            .read_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(32)
            .build()
            .map_err(std::io::Error::other)?;
        Ok(HttpUpstream {
            client,
            runtime,
            mirrors,
        })
    }

    /// Send the request, following redirects through the mirror rules, and check the headers.
    async fn send(&self, req: &FetchRequest<'_>) -> Result<(Reply, HttpBody<'_>), SourceError> {
        let mut url = self.mirrors.rewrite(req.url);
        let mut hops = 0;
        let resp = loop {
            let net = |e: reqwest::Error| SourceError::Network {
                url: url.clone(),
                message: error_chain(&e),
            };
            let mut rb = self.client.get(&url).header(ACCEPT_ENCODING, "identity");
            if let Some(r) = &req.range {
                rb = rb.header(RANGE, format!("bytes={}-{}", r.start, r.end - 1));
            }
            if let Some(tag) = req.if_match {
                rb = rb.header(IF_MATCH, tag);
            }
            let resp = rb.send().await.map_err(net)?;
            if !resp.status().is_redirection() {
                break resp;
            }
            hops += 1;
            let next = resp
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|loc| resp.url().join(loc).ok());
            match next {
                Some(next) if hops <= MAX_REDIRECTS => url = self.mirrors.rewrite(next.as_str()),
                _ => {
                    return Err(SourceError::BadAnswer {
                        url,
                        message: format!(
                            "redirect {} without a usable Location, or more than {MAX_REDIRECTS} hops",
                            resp.status()
                        ),
                    });
                }
            }
        };
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
                let (start, end, total) = parse_content_range(cr)
                    .ok_or_else(|| bad(format!("unparsable Content-Range {cr:?}")))?;
                if start != want.start || end + 1 != want.end.min(total) {
                    return Err(bad(format!(
                        "asked for bytes {}-{}, got Content-Range {cr:?}",
                        want.start,
                        want.end - 1
                    )));
                }
                Body::Partial { total }
            }
            StatusCode::OK => Body::Full { len: None },
            StatusCode::PRECONDITION_FAILED => return Err(SourceError::Changed { url }),
            StatusCode::RANGE_NOT_SATISFIABLE => return Err(SourceError::Changed { url }),
            s => {
                return Err(SourceError::Status {
                    url,
                    status: s.as_u16(),
                });
            }
        };
        if let Some(ct) = h.get(CONTENT_TYPE).and_then(|v| v.to_str().ok())
            && ct.to_ascii_lowercase().starts_with("text/html")
        {
            return Err(bad(format!(
                "got an HTML page (Content-Type {ct:?}) where file bytes were expected; \
                 the host may want a login, accepted terms, or a human"
            )));
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
            },
        ))
    }
}

/// A response body read on the runtime, one chunk per call.
struct HttpBody<'a> {
    runtime: &'a tokio::runtime::Runtime,
    resp: reqwest::Response,
    url: String,
    declared: Option<u64>,
    got: u64,
}

impl BodyStream for HttpBody<'_> {
    fn chunk(&mut self) -> Result<Option<Vec<u8>>, SourceError> {
        let next = self
            .runtime
            .block_on(self.resp.chunk())
            .map_err(|e| SourceError::Network {
                url: self.url.clone(),
                message: error_chain(&e),
            })?;
        match next {
            Some(c) => {
                self.got += c.len() as u64;
                Ok(Some(c.to_vec()))
            }
            None => match self.declared {
                Some(n) if n != self.got => Err(SourceError::Network {
                    url: self.url.clone(),
                    message: format!("the body ended after {} of {n} bytes", self.got),
                }),
                _ => Ok(None),
            },
        }
    }
}

impl Upstream for HttpUpstream {
    fn fetch(&self, req: &FetchRequest<'_>) -> Result<Response<'_>, SourceError> {
        let (reply, body) = self.runtime.block_on(self.send(req))?;
        Ok(Response {
            reply,
            body: Box::new(body),
        })
    }
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

/// `bytes START-END/TOTAL` as numbers.
fn parse_content_range(v: &str) -> Option<(u64, u64, u64)> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (span, total) = rest.split_once('/')?;
    let (a, b) = span.split_once('-')?;
    Some((
        a.trim().parse().ok()?,
        b.trim().parse().ok()?,
        total.trim().parse().ok()?,
    ))
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) as seconds since the epoch.
fn parse_http_date(v: &str) -> Option<i64> {
    let parts: Vec<&str> = v.split_whitespace().collect();
    if parts.len() != 6 || parts[5] != "GMT" {
        return None;
    }
    let day: i64 = parts[1].parse().ok()?;
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == parts[2])? as i64 + 1;
    let year: i64 = parts[3].parse().ok()?;
    let hms: Vec<i64> = parts[4]
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    if hms.len() != 3 {
        return None;
    }
    Some(
        crate::time::days_from_civil(year, month, day) * 86400
            + hms[0] * 3600
            + hms[1] * 60
            + hms[2],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_and_dates_parse() {
        assert_eq!(parse_content_range("bytes 0-0/1234"), Some((0, 0, 1234)));
        assert_eq!(parse_content_range("bytes */1234"), None);
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784111777)
        );
    }
}
