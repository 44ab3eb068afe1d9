//! An in-memory upstream with a request log, a wrapper that injects faults, and an upstream
//! of scripted API answers.
//!
//! Used by the core's unit tests: request counts asserted against [`MockUpstream::requests`]
//! prove laziness and single flight without a network. [`Faulty`] fails, corrupts or delays
//! chosen calls of any inner upstream. [`Scripted`] hands the resolvers any answers at all,
//! whatever they ask, so the fuzzers reach every host's answer parser.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::{
    ApiReply, ApiRequest, Body, BodyStream, FetchRequest, Reply, Response, SourceError, Upstream,
};

/// One object the mock serves.
#[derive(Debug, Clone)]
pub struct Object {
    /// Its bytes.
    pub data: Vec<u8>,
    /// Its ETag.
    pub etag: String,
    /// Whether it honours Range (false: every answer is the whole object).
    pub ranged: bool,
}

/// An upstream of objects in memory.
#[derive(Debug, Default)]
pub struct MockUpstream {
    objects: Mutex<HashMap<String, Object>>,
    log: Mutex<Vec<(String, Option<Range<u64>>)>>,
    delay: Mutex<Option<Duration>>,
}

impl MockUpstream {
    /// An empty upstream.
    pub fn new() -> MockUpstream {
        MockUpstream::default()
    }

    /// Serve `data` at `url`, with Range support.
    pub fn put(&self, url: &str, data: Vec<u8>) {
        self.put_object(
            url,
            Object {
                etag: format!("\"{:08x}\"", crc32fast::hash(&data)),
                data,
                ranged: true,
            },
        );
    }

    /// Serve an object with explicit properties (replaces any earlier one).
    pub fn put_object(&self, url: &str, obj: Object) {
        lock(&self.objects).insert(url.to_string(), obj);
    }

    /// Make every answer wait this long (to let concurrent callers pile up).
    pub fn set_delay(&self, d: Duration) {
        *lock(&self.delay) = Some(d);
    }

    /// Every request so far: URL and range asked for.
    pub fn requests(&self) -> Vec<(String, Option<Range<u64>>)> {
        lock(&self.log).clone()
    }

    /// How many requests so far.
    pub fn request_count(&self) -> usize {
        lock(&self.log).len()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A body served from memory in 64 KiB pieces, as a network would deliver it.
struct VecBody {
    data: Vec<u8>,
    at: usize,
}

impl BodyStream for VecBody {
    fn chunk(&mut self) -> Result<Option<Vec<u8>>, SourceError> {
        if self.at >= self.data.len() {
            return Ok(None);
        }
        let end = (self.at + 64 * 1024).min(self.data.len());
        let c = self.data[self.at..end].to_vec();
        self.at = end;
        Ok(Some(c))
    }
}

impl Upstream for MockUpstream {
    fn fetch(&self, req: &FetchRequest<'_>) -> Result<Response<'_>, SourceError> {
        lock(&self.log).push((req.url.to_string(), req.range.clone()));
        let delay = *lock(&self.delay);
        if let Some(d) = delay {
            std::thread::sleep(d);
        }
        let obj = lock(&self.objects).get(req.url).cloned();
        let Some(obj) = obj else {
            return Err(SourceError::Status {
                url: req.url.to_string(),
                status: 404,
            });
        };
        if req.if_match.is_some_and(|tag| tag != obj.etag) {
            return Err(SourceError::Changed {
                url: req.url.to_string(),
                what: format!("HTTP 412 to If-Match {}", req.if_match.unwrap_or_default()),
            });
        }
        let total = obj.data.len() as u64;
        let (body, data) = match &req.range {
            Some(r) if obj.ranged => {
                if r.start >= total {
                    return Err(SourceError::Changed {
                        url: req.url.to_string(),
                        what: "HTTP 416: shorter than when indexed".to_string(),
                    });
                }
                let end = r.end.min(total);
                (
                    Body::Partial { total },
                    obj.data[r.start as usize..end as usize].to_vec(),
                )
            }
            _ => (Body::Full { len: Some(total) }, obj.data),
        };
        Ok(Response {
            reply: Reply {
                body,
                etag: Some(obj.etag),
                last_modified: Some(1_700_000_000),
            },
            body: Box::new(VecBody { data, at: 0 }),
        })
    }

    fn api(&self, req: &ApiRequest<'_>) -> Result<ApiReply, SourceError> {
        lock(&self.log).push((req.url.to_string(), None));
        match lock(&self.objects).get(req.url) {
            Some(obj) => Ok(ApiReply {
                body: obj.data.clone(),
                content_type: None,
                next: None,
            }),
            None => Err(SourceError::Status {
                url: req.url.to_string(),
                status: 404,
            }),
        }
    }
}

/// What [`Faulty`] does to a chosen call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer 503 without calling the inner upstream.
    Unavailable,
    /// Answer 403 without calling the inner upstream (terms not accepted, bad token).
    Denied,
    /// Flip one bit in the middle of the body.
    Corrupt,
    /// End the body after half of it, as if the connection closed cleanly.
    Truncate,
}

/// Wraps an upstream and applies `fault` to calls number `from..to` (0-based).
#[derive(Debug)]
pub struct Faulty<U> {
    inner: U,
    fault: Fault,
    calls: AtomicUsize,
    from: usize,
    to: usize,
}

impl<U: Upstream> Faulty<U> {
    /// Apply `fault` to the calls whose 0-based number is in `calls`.
    pub fn new(inner: U, fault: Fault, calls: Range<usize>) -> Faulty<U> {
        Faulty {
            inner,
            fault,
            calls: AtomicUsize::new(0),
            from: calls.start,
            to: calls.end,
        }
    }

    /// The wrapped upstream.
    pub fn inner(&self) -> &U {
        &self.inner
    }
}

impl<U> Faulty<U> {
    /// Whether this call is faulty, and the error it gets when the fault is a status.
    fn hit(&self, url: &str) -> (bool, Option<SourceError>) {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if !(self.from..self.to).contains(&n) {
            return (false, None);
        }
        let status = match self.fault {
            Fault::Unavailable => 503,
            Fault::Denied => 403,
            Fault::Corrupt | Fault::Truncate => return (true, None),
        };
        let e = SourceError::Status {
            url: url.to_string(),
            status,
        };
        (true, Some(e))
    }
}

impl<U: Upstream> Upstream for Faulty<U> {
    fn deadline(&self) -> std::time::Duration {
        self.inner.deadline()
    }

    fn api(&self, req: &ApiRequest<'_>) -> Result<ApiReply, SourceError> {
        match self.hit(req.url) {
            (_, Some(e)) => Err(e),
            _ => self.inner.api(req),
        }
    }

    fn fetch(&self, req: &FetchRequest<'_>) -> Result<Response<'_>, SourceError> {
        match self.hit(req.url) {
            (false, _) => return self.inner.fetch(req),
            (true, Some(e)) => return Err(e),
            (true, None) => {}
        }
        let resp = self.inner.fetch(req)?;
        let reply = resp.reply.clone();
        let mut data = resp.read_to_vec(req.url, u64::MAX)?;
        if self.fault == Fault::Corrupt {
            let mid = data.len() / 2;
            if let Some(b) = data.get_mut(mid) {
                *b ^= 0x10;
            }
        } else {
            data.truncate(data.len() / 2);
        }
        Ok(Response {
            reply,
            body: Box::new(VecBody { data, at: 0 }),
        })
    }
}

/// An upstream whose API calls get the given answers in order, whatever URL they ask; once
/// they are used up, every call fails with 404 (or, with [`Scripted::repeating`], gets the
/// last answer again, as a host stuck on one page would). Byte fetches always fail with 404.
#[derive(Debug)]
pub struct Scripted {
    replies: Mutex<VecDeque<ApiReply>>,
    repeat_last: bool,
    calls: AtomicUsize,
}

impl Scripted {
    /// Answer the API calls with `replies`, in order.
    pub fn new(replies: Vec<ApiReply>) -> Scripted {
        Scripted {
            replies: Mutex::new(replies.into()),
            repeat_last: false,
            calls: AtomicUsize::new(0),
        }
    }

    /// Keep answering with the last reply once the others are used up.
    pub fn repeating(mut self) -> Scripted {
        self.repeat_last = true;
        self
    }

    /// How many API calls have been made.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Upstream for Scripted {
    fn fetch(&self, req: &FetchRequest<'_>) -> Result<Response<'_>, SourceError> {
        Err(SourceError::Status {
            url: req.url.to_string(),
            status: 404,
        })
    }

    fn api(&self, req: &ApiRequest<'_>) -> Result<ApiReply, SourceError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut replies = lock(&self.replies);
        let reply = match replies.len() {
            1 if self.repeat_last => replies.front().cloned(),
            _ => replies.pop_front(),
        };
        reply.ok_or_else(|| SourceError::Status {
            url: req.url.to_string(),
            status: 404,
        })
    }
}
