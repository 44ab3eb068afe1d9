//! Reading byte ranges of blobs through the block cache.
//!
//! The only place that turns "bytes `[a, b)` of blob X" into upstream requests. A blob is one
//! or more parts (a split archive's `.001`, `.002`, ... or `.z01`, ..., `.zip` are one blob whose
//! bytes are the parts' concatenation). A read is cut into aligned blocks of each part; a missing
//! block costs one Range request (single flight: concurrent readers of a block share it), and the
//! whole block is cached, so the neighbours of what was read come along. A host that ignores
//! Range is downloaded once, whole, straight into the block files, then served from them.
//! Transient failures (timeouts, 5xx, 429) are retried with exponential backoff; a changed
//! upstream object is never mixed with cached bytes of its earlier version (`If-Match`, the total
//! size and the part's cache key all pin the version).
//!
//! Misses go through one typed single flight per block ([`crate::flight`]): the first reader
//! fetches, the others wait for its bytes (served from memory while they are written) or for
//! its error, the same error: a refusal is a refusal for every waiter. Nobody waits past the
//! fetcher's deadline: the request's own timeouts and retries stop at it, and a waiter whose
//! leader is still at it gives up with [`FetchError::TimedOut`] while the fetch goes on for
//! whoever asks next.
//!
//! A derived part ([`crate::index::Derivation`]: an archive inside a compressed archive) is
//! made like a whole download, from the read path ([`Derive`]) instead of a host: the member
//! is decoded into a spool file, and only once all of it came (its check is at its end) is it
//! cached, block by block; one decoding per part at a time.
//!
//! With a shared tier ([`crate::tier`]), a block missing here is asked of the tier before the
//! upstream: the cluster fetches it once, whichever node asks first, and every block this node
//! fetches (by Range or in a whole download) is published there. A block that fails a check
//! here is forgotten there too.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::archive::{ArchiveError, ReadAt};
use crate::block::BlockBuf;
use crate::cache::{BlobKey, BlockCache, BlockKey, CacheError, Check, Pinned};
use crate::flight::{Flights, Join, Waited};
use crate::index::{Blob, Derivation, Part};
use crate::source::{
    ATTEMPTS, Body, BodyStream, DEFAULT_DEADLINE, FetchRequest, Response, SourceError, Upstream,
    fetch_range, retry,
};
use crate::tier::{Got, Patience, Publish, Tier};

/// A decoded member on its way from its spool file into the cache: exactly `left` bytes, or
/// an error (never a transient one, which would ask an upstream to resume it).
struct Spooled {
    file: std::fs::File,
    url: String,
    left: u64,
}

impl crate::source::BodyStream for Spooled {
    fn chunk(&mut self) -> Result<Option<Vec<u8>>, SourceError> {
        if self.left == 0 {
            return Ok(None);
        }
        let mut buf = vec![0; self.left.min(1 << 20) as usize];
        let n =
            std::io::Read::read(&mut self.file, &mut buf).map_err(|e| SourceError::BadAnswer {
                url: self.url.clone(),
                message: format!("reading its decoded copy: {e}"),
            })?;
        if n == 0 {
            return Err(SourceError::BadAnswer {
                url: self.url.clone(),
                message: format!("its decoded copy ends {} bytes early", self.left),
            });
        }
        buf.truncate(n);
        self.left -= n as u64;
        Ok(Some(buf))
    }
}

/// Whole downloads log their progress every this many bytes.
const PROGRESS_EVERY: u64 = 256 << 20;

/// Why bytes of a blob could not be had.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The upstream failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The cache failed.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// A host without Range support serves a file larger than the cache could hold whole.
    #[error(
        "{url}: the host does not serve byte ranges, so medimg must cache it whole, and it does \
         not fit in the {limit}-byte cache; raise --cache-size"
    )]
    TooBigWhole {
        /// The file.
        url: String,
        /// The cache's limit.
        limit: u64,
    },
    /// Another reader's fetch of the same block is still going after the deadline.
    #[error(
        "{url}: no answer within the {}s deadline (the fetch goes on; raise `deadline` in the \
         config or --deadline if the host is just slow)",
        after.as_secs_f64()
    )]
    TimedOut {
        /// What was being fetched.
        url: String,
        /// The deadline.
        after: Duration,
    },
    /// The error of a fetch another reader led, shared by everyone who waited for it.
    #[error(transparent)]
    Shared(Arc<FetchError>),
    /// An archive inside an archive could not be decoded from its outer archive.
    #[error("{url}: {message}")]
    Derive {
        /// The inner archive (`<outer URL>!/<member>`).
        url: String,
        /// What went wrong.
        message: String,
    },
}

/// Makes the bytes of a derived part ([`Derivation`]): the read path, which decodes archive
/// members. The fetcher holds it weakly, as the read path holds the fetcher.
pub trait Derive: Send + Sync {
    /// The bytes of the member `from` names, `size` of them, checked as a read of the member
    /// checks them: a mismatch is an error, at the latest in place of their end.
    fn member(
        &self,
        from: &Derivation,
        size: u64,
    ) -> Result<Box<dyn std::io::Read + '_>, FetchError>;
}

impl FetchError {
    /// The upstream's error behind this one, if it is one.
    pub fn source_error(&self) -> Option<&SourceError> {
        match self {
            FetchError::Source(s) => Some(s),
            FetchError::Shared(inner) => inner.source_error(),
            _ => None,
        }
    }

    /// True when the host refused access (401, 403).
    pub fn is_denied(&self) -> bool {
        self.source_error().is_some_and(SourceError::is_denied)
    }

    /// True when the object changed upstream since it was indexed.
    pub fn is_changed(&self) -> bool {
        matches!(self.source_error(), Some(SourceError::Changed { .. }))
    }

    /// True when the answer did not come within the deadline.
    pub fn is_timeout(&self) -> bool {
        match self {
            FetchError::TimedOut { .. } => true,
            FetchError::Shared(inner) => inner.is_timeout(),
            _ => matches!(self.source_error(), Some(SourceError::TimedOut { .. })),
        }
    }
}

/// What a block's flight hands its waiters: the bytes, or the leader's error.
type BlockResult = Result<Arc<BlockBuf>, Arc<FetchError>>;

/// A read-ahead job: a block of a part, and the dataset it is fetched for (its requests count
/// there).
type AheadJob = (Part, u64, Option<Arc<str>>);

/// Fetches blob ranges through the cache.
pub struct Fetcher {
    up: Arc<dyn Upstream>,
    cache: Arc<BlockCache>,
    block_size: u64,
    /// Serialises whole downloads of hosts without Range, so two readers never download twice.
    whole: Mutex<()>,
    /// Read-ahead jobs for the prefetch workers, once started.
    prefetch: Mutex<Option<std::sync::mpsc::SyncSender<AheadJob>>>,
    /// Blocks queued for a prefetch worker or being fetched by one: asked again, they are not
    /// queued twice (a worker that took a duplicate would only wait for the first).
    queued: Mutex<std::collections::HashSet<BlockKey>>,
    /// ETags first seen for parts indexed without one.
    learned: Mutex<std::collections::HashMap<BlobKey, String>>,
    /// Block fetches in progress.
    flights: Flights<BlockKey, BlockResult>,
    /// How long a reader waits for an upstream.
    deadline: Duration,
    /// The store this node shares blocks through with the rest of its cluster, if any.
    tier: Option<Arc<Tier>>,
    /// What decodes derived parts, once the read path is made.
    deriver: std::sync::OnceLock<std::sync::Weak<dyn Derive>>,
    /// One decoding per derived part at a time: its other readers wait for its blocks.
    deriving: Mutex<std::collections::HashMap<BlobKey, Arc<Mutex<()>>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("block_size", &self.block_size)
            .finish_non_exhaustive()
    }
}

/// Only strong validators can be sent as `If-Match` (RFC 9110 §13.1.1).
fn strong(etag: &Option<String>) -> Option<&str> {
    etag.as_deref().filter(|t| !t.starts_with("W/"))
}

impl Fetcher {
    /// A fetcher over `up` storing blocks of `block_size` bytes in `cache`.
    pub fn new(up: Arc<dyn Upstream>, cache: Arc<BlockCache>, block_size: u64) -> Fetcher {
        Fetcher {
            up,
            cache,
            block_size,
            whole: Mutex::new(()),
            prefetch: Mutex::new(None),
            queued: Mutex::new(Default::default()),
            learned: Mutex::new(std::collections::HashMap::new()),
            flights: Flights::new(),
            deadline: DEFAULT_DEADLINE,
            tier: None,
            deriver: std::sync::OnceLock::new(),
            deriving: Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// Have derived parts decoded by `deriver` (the read path) from now on.
    pub fn set_deriver(&self, deriver: std::sync::Weak<dyn Derive>) {
        let _ = self.deriver.set(deriver);
    }

    /// The same fetcher asking `tier` for a block before the upstream, and publishing there
    /// what it fetches.
    pub fn with_tier(mut self, tier: Arc<Tier>) -> Fetcher {
        self.tier = Some(tier);
        self
    }

    /// The shared tier, if there is one.
    pub fn tier(&self) -> Option<&Tier> {
        self.tier.as_deref()
    }

    /// The tier's name of block `index` of `blob`.
    fn block_name(&self, blob: BlobKey, index: u64) -> String {
        crate::tier::block_name(&blob.to_string(), self.block_size, index)
    }

    /// Publish a block this node fetched to the tier (when there is one).
    fn share(&self, blob: BlobKey, index: u64, data: &[u8], version: Option<&str>) {
        if let Some(t) = &self.tier {
            t.publish(
                &self.block_name(blob, index),
                Publish {
                    payload: data,
                    version,
                },
            );
        }
    }

    /// The same fetcher with readers waiting at most `deadline` for an upstream.
    pub fn with_deadline(mut self, deadline: Duration) -> Fetcher {
        self.deadline = deadline;
        self
    }

    /// How long a reader waits for an upstream.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// The size of the blocks fetched and cached.
    pub fn block_size(&self) -> u64 {
        self.block_size
    }

    /// Start `workers` threads that fetch read-ahead blocks into the cache. They bound the memory
    /// of read-ahead for the whole daemon (a block each in flight), however many files are open,
    /// and stop when the fetcher is dropped.
    pub fn start_prefetch(self: &Arc<Self>, workers: usize) {
        // Enough queued jobs for a few files' windows; more are dropped (read-ahead is a hint).
        // Each job carries the dataset it is fetched for, to count its requests there.
        let (tx, rx) = std::sync::mpsc::sync_channel::<AheadJob>(64);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..workers {
            let (rx, me) = (rx.clone(), Arc::downgrade(self));
            let spawned = std::thread::Builder::new()
                .name(format!("medimg-ahead-{i}"))
                .spawn(move || {
                    loop {
                        let job = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        let (Ok((part, index, tag)), Some(f)) = (job, me.upgrade()) else {
                            break;
                        };
                        let key = BlockKey {
                            blob: part.key,
                            index,
                        };
                        let got = crate::source::stats::on_behalf_of_tag(tag, || {
                            f.pin_block(&part, index, Check::Length).map(drop)
                        });
                        lock(&f.queued).remove(&key);
                        if let Err(e) = got {
                            tracing::debug!("read-ahead of {} block {index}: {e}", part.url);
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!("no read-ahead worker: {e}");
            }
        }
        *self.prefetch.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
    }

    /// Ask for the blocks of `[offset, offset + len)` of `blob` to be fetched in the background
    /// (absent blocks of parts that serve ranges only; a full queue drops the request).
    pub fn prefetch(&self, blob: &Blob, offset: u64, len: u64) {
        let guard = self.prefetch.lock().unwrap_or_else(|p| p.into_inner());
        let Some(tx) = guard.as_ref() else { return };
        let end = offset.saturating_add(len).min(blob.size());
        let mut part_start = 0;
        for part in &blob.parts {
            let part_end = part_start + part.size;
            if part.ranged && part_end > offset && part_start < end {
                let first = (offset.max(part_start) - part_start) / self.block_size;
                let last = (end.min(part_end) - 1 - part_start) / self.block_size;
                for index in first..=last {
                    let key = BlockKey {
                        blob: part.key,
                        index,
                    };
                    if self.cache.present_or_writing(key)
                        || self.flights.contains(&key)
                        || !lock(&self.queued).insert(key)
                    {
                        continue;
                    }
                    let tag = crate::source::stats::current_dataset();
                    if tx.try_send((part.clone(), index, tag)).is_err() {
                        lock(&self.queued).remove(&key);
                        return;
                    }
                }
            }
            part_start = part_end;
        }
    }

    /// Whether every block of `[offset, offset + len)` of `blob` can be read without a fetch.
    pub fn is_present(&self, blob: &Blob, offset: u64, len: u64) -> bool {
        let end = offset.saturating_add(len).min(blob.size());
        let mut part_start = 0;
        for part in &blob.parts {
            let part_end = part_start + part.size;
            if part_end > offset && part_start < end {
                let first = (offset.max(part_start) - part_start) / self.block_size;
                let last = (end.min(part_end) - 1 - part_start) / self.block_size;
                let all = (first..=last).all(|index| {
                    self.cache.present_or_writing(BlockKey {
                        blob: part.key,
                        index,
                    })
                });
                if !all {
                    return false;
                }
            }
            part_start = part_end;
        }
        true
    }

    /// The block of `blob` holding byte `offset`, when its bytes are in memory (just fetched,
    /// or among the last fetched): where it starts in the blob, and its bytes, shared.
    pub fn block_in_memory(&self, blob: &Blob, offset: u64) -> Option<(u64, Bytes)> {
        let mut part_start = 0;
        for part in &blob.parts {
            let part_end = part_start + part.size;
            if (part_start..part_end).contains(&offset) {
                let index = (offset - part_start) / self.block_size;
                let key = BlockKey {
                    blob: part.key,
                    index,
                };
                let pinned = self.cache.pin(key, Check::Length).ok()??;
                let bytes = pinned.share(0, pinned.len())?;
                return Some((part_start + index * self.block_size, bytes));
            }
            part_start = part_end;
        }
        None
    }

    /// The upstream behind this fetcher (resolvers list sources through it).
    pub fn upstream(&self) -> &dyn Upstream {
        &*self.up
    }

    /// A part whose size (and maybe validator) a listing gave, so that no probe is needed.
    /// Its cache key covers the URL, the size and the best identity known (validator or
    /// checksum), so another version of the file never finds these blocks.
    pub fn listed_part(url: &str, size: u64, etag: Option<String>, checksum: Option<&str>) -> Part {
        let identity = etag.as_deref().or(checksum).unwrap_or("");
        Part {
            key: BlobKey::derive(url, size, identity),
            url: url.to_string(),
            size,
            etag,
            ranged: true,
            from: None,
        }
    }

    /// The cache behind this fetcher.
    pub fn cache(&self) -> &BlockCache {
        &self.cache
    }

    /// Learn the size, validator and Range support of the object at `url`. The probe asks for
    /// the first block, which is kept; a host that answers with the whole object is downloaded
    /// whole into the cache now. Returns the part and its `Last-Modified` time.
    pub fn probe(&self, url: &str) -> Result<(Part, Option<i64>), FetchError> {
        let (resp, validator) = self.first_bytes(url, self.block_size)?;
        let reply = resp.reply.clone();
        let part = match reply.body {
            Body::Partial { total } => {
                let key = BlobKey::derive(url, total, &validator);
                let want = self.block_size.min(total);
                let data = resp.read_to_vec(url, want)?;
                if data.len() as u64 != want {
                    return Err(SourceError::BadAnswer {
                        url: url.to_string(),
                        message: format!("the probe got {} of {want} bytes", data.len()),
                    }
                    .into());
                }
                if total > 0 {
                    self.cache.insert(
                        BlockKey {
                            blob: key,
                            index: 0,
                        },
                        &data,
                    )?;
                    self.share(key, 0, &data, strong(&reply.etag));
                }
                Part {
                    key,
                    url: url.to_string(),
                    size: total,
                    etag: reply.etag.clone(),
                    ranged: true,
                    from: None,
                }
            }
            Body::Full { len } => self.keep_whole(url, resp, len, &validator)?,
        };
        Ok((part, reply.last_modified))
    }

    /// Ask for the first `len` bytes of `url` (retrying transient failures); returns the answer
    /// and the object's best identity (ETag, else Last-Modified) for its [`BlobKey`].
    fn first_bytes(&self, url: &str, len: u64) -> Result<(Response<'_>, String), FetchError> {
        let resp = retry(self.deadline, || {
            self.up.fetch(&FetchRequest {
                url,
                range: Some(0..len),
                if_match: None,
            })
        })?;
        let validator = resp
            .reply
            .etag
            .clone()
            .or(resp.reply.last_modified.map(|t| t.to_string()))
            .unwrap_or_default();
        Ok((resp, validator))
    }

    /// Store an answer that came whole (its host ignores Range) into the cache: the unranged
    /// part it is.
    fn keep_whole(
        &self,
        url: &str,
        resp: Response<'_>,
        len: Option<u64>,
        validator: &str,
    ) -> Result<Part, FetchError> {
        // Small files (single DICOM instances) come whole routinely; say so quietly.
        if len.is_some_and(|n| n <= self.block_size) {
            tracing::debug!(url, "the host ignores Range requests; fetched whole");
        } else {
            tracing::info!(
                url,
                "the host ignores Range requests; downloading it whole, once"
            );
        }
        let etag = resp.reply.etag.clone();
        let key = BlobKey::derive(url, len.unwrap_or(0), validator);
        let _whole = self.whole.lock().unwrap_or_else(|p| p.into_inner());
        let size = self.store_whole(key, resp, url, None, None)?.0;
        Ok(Part {
            key,
            url: url.to_string(),
            size,
            etag,
            ranged: false,
            from: None,
        })
    }

    /// Learn the size of the object at `url` without its bytes: a zero-length probe
    /// (`Range: bytes=0-0`, whose `Content-Range` names the size). A host that ignores Range
    /// and announces a `Content-Length` over a block is believed without reading the body
    /// (its part is marked unranged, so a read downloads it whole, once); a smaller answer,
    /// or one that announces no length, is kept whole now, as [`Fetcher::probe`] keeps it.
    /// Returns the part and its `Last-Modified` time.
    pub fn size_probe(&self, url: &str) -> Result<(Part, Option<i64>), FetchError> {
        let (resp, validator) = self.first_bytes(url, 1)?;
        let reply = resp.reply.clone();
        let (size, ranged) = match reply.body {
            Body::Partial { total } => {
                let got = resp.read_to_vec(url, 1)?;
                if got.len() as u64 != total.min(1) {
                    return Err(SourceError::BadAnswer {
                        url: url.to_string(),
                        message: format!("a one-byte probe got {} bytes", got.len()),
                    }
                    .into());
                }
                (total, true)
            }
            // A large body is not read (dropping the answer closes its connection); a small
            // one is on its way anyway, and is kept, as the probe of a whole file keeps it.
            Body::Full { len: Some(len) } if len > self.block_size => (len, false),
            Body::Full { len } => {
                let part = self.keep_whole(url, resp, len, &validator)?;
                return Ok((part, reply.last_modified));
            }
        };
        let part = Part {
            key: BlobKey::derive(url, size, &validator),
            url: url.to_string(),
            size,
            etag: reply.etag.clone(),
            ranged,
            from: None,
        };
        Ok((part, reply.last_modified))
    }

    /// Stream a whole-object answer into blocks of `key`; returns the size and, if asked, the
    /// bytes of block `keep`. An object of another size than `size` (the one indexed) is
    /// [`SourceError::Changed`]; on any failure the blocks written so far are dropped, so a
    /// download that went wrong leaves nothing in the cache.
    fn store_whole(
        &self,
        key: BlobKey,
        resp: Response<'_>,
        url: &str,
        keep: Option<u64>,
        size: Option<u64>,
    ) -> Result<(u64, Option<Vec<u8>>), FetchError> {
        let mut written = 0;
        let stored = self.store_whole_blocks(key, resp, url, keep, size, &mut written);
        if stored.is_err() {
            for index in 0..written {
                if let Err(e) = self.cache.remove(BlockKey { blob: key, index }) {
                    tracing::warn!("{e}");
                }
            }
        }
        stored
    }

    /// [`Fetcher::store_whole`] without the clean-up; `index` counts the blocks written.
    fn store_whole_blocks(
        &self,
        key: BlobKey,
        resp: Response<'_>,
        url: &str,
        keep: Option<u64>,
        size: Option<u64>,
        index: &mut u64,
    ) -> Result<(u64, Option<Vec<u8>>), FetchError> {
        let changed = |what: String| -> FetchError {
            SourceError::Changed {
                url: url.to_string(),
                what,
            }
            .into()
        };
        let limit = self.cache.limit();
        let too_big = || FetchError::TooBigWhole {
            url: url.to_string(),
            limit,
        };
        let declared = match resp.reply.body {
            Body::Full { len } => len,
            Body::Partial { .. } => None,
        };
        // Earlier blocks of the download would be evicted to make room for later ones.
        if declared.is_some_and(|n| n > limit) {
            return Err(too_big());
        }
        if let (Some(n), Some(s)) = (declared, size)
            && n != s
        {
            return Err(changed(format!("{n} bytes announced, {s} when indexed")));
        }
        let mut body = resp.body;
        let mut buf = Vec::with_capacity(self.block_size as usize);
        let mut total = 0u64;
        let mut kept = None;
        let version = resp.reply.etag.clone();
        let mut flush = |buf: &mut Vec<u8>, index: &mut u64| -> Result<(), FetchError> {
            self.cache
                .insert(
                    BlockKey {
                        blob: key,
                        index: *index,
                    },
                    buf,
                )
                .map_err(|e| match e {
                    CacheError::Full { .. } => too_big(),
                    e => e.into(),
                })?;
            // Other nodes wait for these blocks under this download's lease.
            self.share(key, *index, buf, strong(&version));
            if keep == Some(*index) {
                kept = Some(std::mem::take(buf));
            } else {
                buf.clear();
            }
            *index += 1;
            Ok(())
        };
        let mut resumes = 0;
        loop {
            let chunk = match body.chunk() {
                Ok(Some(c)) => c,
                Ok(None) if declared.is_none_or(|n| n == total) => break,
                Ok(None) => {
                    let e = SourceError::Network {
                        url: url.to_string(),
                        message: format!("the body ended after {total} bytes"),
                    };
                    body = self.resume_whole(url, total, declared, e, &mut resumes)?;
                    continue;
                }
                Err(e) if e.is_transient() => {
                    body = self.resume_whole(url, total, declared, e, &mut resumes)?;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if (total + chunk.len() as u64) / PROGRESS_EVERY > total / PROGRESS_EVERY {
                let of = declared.map_or(String::new(), |n| format!(" of {n}"));
                tracing::info!(
                    url,
                    "whole download: {} bytes{of}",
                    total + chunk.len() as u64
                );
            }
            total += chunk.len() as u64;
            if total > limit {
                return Err(too_big());
            }
            // A body longer than the object indexed is another object: stop before its bytes
            // reach a block of this one.
            if let Some(n) = size.filter(|&n| total > n) {
                return Err(changed(format!("longer than the {n} bytes indexed")));
            }
            let mut rest = &chunk[..];
            while !rest.is_empty() {
                let take = rest.len().min(self.block_size as usize - buf.len());
                buf.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                if buf.len() as u64 == self.block_size {
                    flush(&mut buf, index)?;
                }
            }
        }
        if let Some(n) = size.filter(|&n| total != n) {
            return Err(changed(format!("{total} bytes now, {n} when indexed")));
        }
        if !buf.is_empty() {
            flush(&mut buf, index)?;
        }
        Ok((total, kept))
    }

    /// After a whole download broke at byte `at`, ask for the rest with a Range request: a host
    /// that answers 206 from there lets the download go on; one that does not fails it (`err`).
    fn resume_whole<'a>(
        &'a self,
        url: &str,
        at: u64,
        declared: Option<u64>,
        err: SourceError,
        resumes: &mut u32,
    ) -> Result<Box<dyn BodyStream + 'a>, FetchError> {
        *resumes += 1;
        if *resumes > ATTEMPTS {
            return Err(err.into());
        }
        tracing::warn!(url, "{err}; resuming the download at byte {at}");
        let end = declared.unwrap_or(u64::MAX - 1);
        let resp = self.up.fetch(&FetchRequest {
            url,
            range: Some(at..end),
            if_match: None,
        })?;
        match resp.reply.body {
            Body::Partial { total } if declared.is_none_or(|n| n == total) => Ok(resp.body),
            _ => Err(err.into()),
        }
    }

    /// Exactly `len` bytes of `blob` at `offset` (across its parts), from blocks checked
    /// against their CRC.
    pub fn read_at(&self, blob: &Blob, offset: u64, len: u64) -> Result<Vec<u8>, FetchError> {
        self.read_at_checked(blob, offset, len, Check::Crc)
    }

    /// [`Fetcher::read_at`] with the block check chosen by the caller: [`Check::Length`] when
    /// the caller checks the bytes itself.
    pub fn read_at_checked(
        &self,
        blob: &Blob,
        offset: u64,
        len: u64,
        check: Check,
    ) -> Result<Vec<u8>, FetchError> {
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= blob.size())
            .ok_or_else(|| SourceError::BadAnswer {
                url: blob.url().to_string(),
                message: format!(
                    "read of {len} bytes at {offset} is past the end of the {}-byte file",
                    blob.size()
                ),
            })?;
        let mut out = Vec::with_capacity(len as usize);
        let mut part_start = 0;
        for part in &blob.parts {
            let part_end = part_start + part.size;
            if part_end > offset && part_start < end {
                let from = offset.max(part_start) - part_start;
                let to = end.min(part_end) - part_start;
                self.read_part(part, from, to, check, &mut out)?;
            }
            part_start = part_end;
        }
        Ok(out)
    }

    /// [`Fetcher::read_at_checked`] as [`Bytes`]: a range inside one block that is in memory
    /// (just fetched, or among the last fetched) shares its bytes instead of copying them. A
    /// sequential reader's 1 MiB reads of a large file are all like that.
    pub fn read_bytes(
        &self,
        blob: &Blob,
        offset: u64,
        len: u64,
        check: Check,
    ) -> Result<Bytes, FetchError> {
        let mut part_start = 0;
        for part in &blob.parts {
            let part_end = part_start + part.size;
            if (part_start..part_end).contains(&offset) {
                let from = offset - part_start;
                let index = from / self.block_size;
                let within = from - index * self.block_size;
                if len > 0 && len <= part_end - offset && within + len <= self.block_size {
                    let pinned = self.pin_block(part, index, check)?;
                    return match pinned.share(within, len) {
                        Some(shared) => Ok(shared),
                        None => Ok(pinned.read(within, len)?.into()),
                    };
                }
                break;
            }
            part_start = part_end;
        }
        self.read_at_checked(blob, offset, len, check)
            .map(Bytes::from)
    }

    /// Block `index` of `part`, pinned; fetched by this thread or another when missing.
    fn pin_block(&self, part: &Part, index: u64, check: Check) -> Result<Pinned<'_>, FetchError> {
        let key = BlockKey {
            blob: part.key,
            index,
        };
        let deadline = Instant::now() + self.deadline;
        // Bounded: each round returns, or follows a flight whose block was evicted or whose
        // leader went away before anyone pinned it.
        for _ in 0..3 {
            if let Some(p) = self.cache.pin(key, check)? {
                return Ok(p);
            }
            match self.flights.join(key) {
                Join::Lead(lead) => {
                    // Another leader may have stored it between our look and our flight.
                    match self.cache.pin(key, check) {
                        Ok(Some(p)) => return Ok(p),
                        Ok(None) => {}
                        Err(e) => {
                            let e = Arc::new(FetchError::from(e));
                            lead.finish(Err(e.clone()));
                            return Err(FetchError::Shared(e));
                        }
                    }
                    return match self.fetch_block(part, index) {
                        Ok(data) => {
                            let staged = self.cache.stage(key, data);
                            lead.finish(Ok(staged.bytes()));
                            Ok(staged.commit())
                        }
                        Err(e) => {
                            let e = Arc::new(e);
                            lead.finish(Err(e.clone()));
                            Err(FetchError::Shared(e))
                        }
                    };
                }
                Join::Follow(f) => match f.wait(Some(deadline)) {
                    Waited::Done(Ok(bytes)) => return Ok(self.cache.hold(key, bytes)),
                    Waited::Done(Err(e)) => return Err(FetchError::Shared(e)),
                    Waited::Abandoned => continue,
                    Waited::TimedOut => {
                        return Err(FetchError::TimedOut {
                            url: part.url.clone(),
                            after: self.deadline,
                        });
                    }
                },
            }
        }
        Err(CacheError::Fetch(format!(
            "block {index} of {} was evicted as soon as it was fetched; raise --cache-size",
            part.url
        ))
        .into())
    }

    fn read_part(
        &self,
        part: &Part,
        from: u64,
        to: u64,
        check: Check,
        out: &mut Vec<u8>,
    ) -> Result<(), FetchError> {
        let mut pos = from;
        while pos < to {
            let index = pos / self.block_size;
            let pinned = self.pin_block(part, index, check)?;
            let within = pos - index * self.block_size;
            let take = (to - pos).min(pinned.len().saturating_sub(within));
            if take == 0 {
                return Err(CacheError::Fetch(format!(
                    "{}: block {index} is shorter than expected",
                    part.url
                ))
                .into());
            }
            pinned.read_into(within, take, out)?;
            pos += take;
        }
        Ok(())
    }

    /// Drop the cached blocks covering `[offset, offset + len)` (their bytes failed a check).
    pub fn invalidate(&self, blob: &Blob, offset: u64, len: u64) -> Result<(), FetchError> {
        let end = offset + len.max(1);
        let mut part_start = 0;
        for part in &blob.parts {
            let part_end = part_start + part.size;
            if part_end > offset && part_start < end {
                let first = (offset.max(part_start) - part_start) / self.block_size;
                let last = (end.min(part_end) - 1 - part_start) / self.block_size;
                for index in first..=last {
                    self.cache.remove(BlockKey {
                        blob: part.key,
                        index,
                    })?;
                    if let Some(t) = &self.tier {
                        t.forget(&self.block_name(part.key, index));
                    }
                }
            }
            part_start = part_end;
        }
        Ok(())
    }

    /// Block `index` of `part`: from the shared tier when it has it, else from the upstream
    /// (once per cluster: see [`crate::tier`]).
    fn fetch_block(&self, part: &Part, index: u64) -> Result<BlockBuf, FetchError> {
        let Some(tier) = &self.tier else {
            return self.fetch_block_upstream(part, index).map(|(b, _)| b);
        };
        let start = index * self.block_size;
        let want = (start + self.block_size).min(part.size) - start;
        let name = self.block_name(part.key, index);
        // The version this node knows the object by: another version's block is not it.
        let known = strong(&part.etag)
            .map(str::to_string)
            .or_else(|| lock(&self.learned).get(&part.key).cloned());
        let accept = |o: &crate::tier::envelope::Opened<'_>| {
            if o.payload.len() as u64 != want {
                return Err(format!(
                    "{} bytes where block {index} of {} has {want}",
                    o.payload.len(),
                    part.url
                ));
            }
            match (&o.version, &known) {
                (Some(v), Some(k)) if v != k => Err(format!(
                    "it comes from version {v} of {}, this node reads {k}",
                    part.url
                )),
                _ => Ok(()),
            }
        };
        // A whole download is one lease for all its blocks, and takes as long as it takes
        // (a reader of this node would wait for it too); a block is its own, and a reader
        // waits for another node at most `wait`.
        let (lease, patience) = if part.ranged {
            (format!("lease/{name}"), Patience::Bounded)
        } else {
            (format!("lease/w/{}", part.key), Patience::WhileLeased)
        };
        let got = tier.once(
            &name,
            &lease,
            patience,
            accept,
            || self.fetch_block_upstream(part, index),
            |(data, version)| {
                part.ranged.then(|| Publish {
                    payload: data.as_slice(),
                    version: version.as_deref(),
                })
            },
        )?;
        Ok(match got {
            Got::Shared(bytes) => BlockBuf::from(bytes),
            Got::Made((data, _)) => data,
        })
    }

    /// Block `index` of `part` from the upstream, and the version it came from. Blocks of a
    /// whole download are published as they are written, not here.
    fn fetch_block_upstream(
        &self,
        part: &Part,
        index: u64,
    ) -> Result<(BlockBuf, Option<String>), FetchError> {
        let start = index * self.block_size;
        let end = (start + self.block_size).min(part.size);
        if part.ranged {
            tracing::debug!(url = %part.url, start, end, "fetching block");
            // A part listed by an API has no validator in the index; the first answer's ETag
            // pins it for every later request, so two versions are never mixed.
            let learned = match &part.etag {
                Some(_) => None,
                None => lock(&self.learned).get(&part.key).cloned(),
            };
            let tag = strong(&part.etag).or(learned.as_deref());
            let (data, etag) = retry(self.deadline, || {
                fetch_range(&*self.up, &part.url, start..end, tag, part.size)
            })?;
            let etag = etag.filter(|e| !e.starts_with("W/"));
            if tag.is_none()
                && let Some(e) = &etag
            {
                lock(&self.learned).entry(part.key).or_insert(e.clone());
            }
            return Ok((data, tag.map(str::to_string).or(etag)));
        }
        if let Some(from) = &part.from {
            return self.derive_block(part, from, index);
        }
        let _whole = self.whole.lock().unwrap_or_else(|p| p.into_inner());
        // A reader before us may have downloaded it while we waited.
        let key = BlockKey {
            blob: part.key,
            index,
        };
        if let Some(p) = self.cache.pin(key, Check::Length)? {
            return Ok((p.read(0, p.len())?.into(), None));
        }
        tracing::info!(url = %part.url, "downloading whole (the host ignores Range)");
        let resp = self.get_whole(part)?;
        let (_, kept) =
            self.store_whole(part.key, resp, &part.url, Some(index), Some(part.size))?;
        let kept = kept.map(BlockBuf::from).ok_or_else(|| {
            FetchError::from(CacheError::Fetch(format!(
                "{}: block {index} missing from the download",
                part.url
            )))
        })?;
        Ok((kept, None))
    }

    /// Block `index` of derived `part`: the member it is decoded whole into the cache (once at a
    /// time: a reader of another of its blocks waits, then finds it there).
    fn derive_block(
        &self,
        part: &Part,
        from: &Derivation,
        index: u64,
    ) -> Result<(BlockBuf, Option<String>), FetchError> {
        let gate = lock(&self.deriving).entry(part.key).or_default().clone();
        let made = {
            let _one = lock(&gate);
            self.derive_locked(part, from, index)
        };
        lock(&self.deriving).remove(&part.key);
        made.map(|b| (b, None))
    }

    fn derive_locked(
        &self,
        part: &Part,
        from: &Derivation,
        index: u64,
    ) -> Result<BlockBuf, FetchError> {
        let key = BlockKey {
            blob: part.key,
            index,
        };
        if let Some(p) = self.cache.pin(key, Check::Length)? {
            return Ok(p.read(0, p.len())?.into());
        }
        let deriver = self
            .deriver
            .get()
            .and_then(std::sync::Weak::upgrade)
            .ok_or_else(|| FetchError::Derive {
                url: part.url.clone(),
                message: "no read path to decode it with".into(),
            })?;
        tracing::info!(url = %part.url, size = part.size, "decoding an archive inside an archive into the cache");
        let mut member = deriver.member(from, part.size)?;
        let kept = self.put_derived(part, &mut member, Some(index))?;
        kept.map(BlockBuf::from).ok_or_else(|| {
            FetchError::from(CacheError::Fetch(format!(
                "{}: block {index} missing from the decoded copy",
                part.url
            )))
        })
    }

    /// Put derived `part` whole into the cache from `member`, its decoded bytes, and return
    /// block `keep`. They are spooled to a file first and cached only once all of them came
    /// (the member's check is at its end), so no block of a member that fails its check is
    /// ever cached or served.
    pub fn put_derived(
        &self,
        part: &Part,
        member: &mut dyn std::io::Read,
        keep: Option<u64>,
    ) -> Result<Option<Vec<u8>>, FetchError> {
        let limit = self.cache.limit();
        if part.size > limit {
            return Err(FetchError::TooBigWhole {
                url: part.url.clone(),
                limit,
            });
        }
        let dir = self.cache.dir();
        let io_err = |source: std::io::Error| {
            FetchError::from(CacheError::Io {
                path: dir.to_path_buf(),
                source,
            })
        };
        let mut spool = tempfile::tempfile_in(dir).map_err(io_err)?;
        let copied = std::io::copy(&mut std::io::Read::take(member, part.size + 1), &mut spool)
            .map_err(|e| {
                // A fetch error inside the decoder keeps its type (a refusal stays a refusal).
                match e.into_inner().map(|inner| inner.downcast::<FetchError>()) {
                    Some(Ok(f)) => *f,
                    Some(Err(inner)) => FetchError::Derive {
                        url: part.url.clone(),
                        message: inner.to_string(),
                    },
                    None => FetchError::Derive {
                        url: part.url.clone(),
                        message: "decoding failed".into(),
                    },
                }
            })?;
        if copied != part.size {
            return Err(FetchError::Derive {
                url: part.url.clone(),
                message: format!(
                    "decodes to {copied}{} bytes, {} when indexed",
                    if copied > part.size { " or more" } else { "" },
                    part.size
                ),
            });
        }
        std::io::Seek::rewind(&mut spool).map_err(io_err)?;
        let resp = Response {
            reply: crate::source::Reply {
                body: Body::Full {
                    len: Some(part.size),
                },
                etag: None,
                last_modified: None,
            },
            body: Box::new(Spooled {
                file: spool,
                url: part.url.clone(),
                left: part.size,
            }),
        };
        let (_, kept) = self.store_whole(part.key, resp, &part.url, keep, Some(part.size))?;
        Ok(kept)
    }

    /// Open the whole of `blob` as a stream: one GET per part, however large (index-time passes
    /// over tar and tar.gz). With `keep`, full blocks are cached as they pass (worth it when
    /// the blob is small beside the cache).
    pub fn stream<'a>(&'a self, blob: &'a Blob, keep: bool) -> Result<BlobStream<'a>, FetchError> {
        let mut s = BlobStream {
            fetcher: self,
            blob,
            part: 0,
            body: None,
            chunk: Vec::new(),
            at: 0,
            pos: 0,
            keep,
            block: Vec::new(),
            block_start: 0,
        };
        s.open_part()?;
        Ok(s)
    }
}

impl Fetcher {
    /// GET all of `part`, pinned to the version indexed, with retries.
    fn get_whole(&self, part: &Part) -> Result<Response<'_>, SourceError> {
        retry(self.deadline, || {
            self.up.fetch(&FetchRequest {
                url: &part.url,
                range: None,
                if_match: strong(&part.etag),
            })
        })
    }
}

/// A whole blob as one sequential stream; see [`Fetcher::stream`].
pub struct BlobStream<'a> {
    fetcher: &'a Fetcher,
    blob: &'a Blob,
    /// The part being read, and its body.
    part: usize,
    body: Option<Box<dyn BodyStream + 'a>>,
    chunk: Vec<u8>,
    at: usize,
    /// Bytes of the current part delivered so far.
    pos: u64,
    keep: bool,
    block: Vec<u8>,
    block_start: u64,
}

impl BlobStream<'_> {
    fn open_part(&mut self) -> Result<(), FetchError> {
        let part = &self.blob.parts[self.part];
        let resp = self.fetcher.get_whole(part)?;
        if let Body::Full { len: Some(n) } = resp.reply.body
            && n != part.size
        {
            return Err(SourceError::Changed {
                url: part.url.clone(),
                what: format!("{n} bytes now, {} when indexed", part.size),
            }
            .into());
        }
        self.body = Some(resp.body);
        self.pos = 0;
        self.block.clear();
        self.block_start = 0;
        Ok(())
    }

    fn keep_blocks(&mut self, piece: &[u8]) {
        let part = &self.blob.parts[self.part];
        let bs = self.fetcher.block_size as usize;
        let mut rest = piece;
        while !rest.is_empty() {
            let take = rest.len().min(bs - self.block.len());
            self.block.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            let end = self.block_start + self.block.len() as u64;
            if self.block.len() == bs || end == part.size {
                let key = BlockKey {
                    blob: part.key,
                    index: self.block_start / bs as u64,
                };
                // Best effort: a full cache only means later reads fetch again. Other nodes
                // of a cluster read these blocks from the tier instead of the upstream.
                let _ = self.fetcher.cache.insert(key, &self.block);
                self.fetcher
                    .share(part.key, key.index, &self.block, strong(&part.etag));
                self.block_start = end;
                self.block.clear();
            }
        }
    }
}

impl std::io::Read for BlobStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.chunk.len() {
            let size = self.blob.parts[self.part].size;
            let next = match self.body.as_mut() {
                Some(b) => b.chunk().map_err(std::io::Error::other)?,
                None => None,
            };
            match next {
                Some(c) => {
                    self.chunk = c;
                    self.at = 0;
                }
                None if self.pos == size && self.part + 1 < self.blob.parts.len() => {
                    self.part += 1;
                    self.open_part().map_err(std::io::Error::other)?;
                }
                None if self.pos == size => return Ok(0),
                None => {
                    return Err(std::io::Error::other(SourceError::Changed {
                        url: self.blob.parts[self.part].url.clone(),
                        what: format!("the body ended at {} of {size} bytes", self.pos),
                    }));
                }
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        // A body longer than the part indexed is another object: none of its bytes is kept.
        if self.pos + n as u64 > self.blob.parts[self.part].size {
            return Err(std::io::Error::other(SourceError::Changed {
                url: self.blob.parts[self.part].url.clone(),
                what: format!(
                    "the body is longer than the {} bytes indexed",
                    self.blob.parts[self.part].size
                ),
            }));
        }
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        if self.keep {
            let piece = self.chunk[self.at..self.at + n].to_vec();
            self.keep_blocks(&piece);
        }
        self.at += n;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Bytes of a blob from an offset on, read through the cache in pieces of at most
/// [`READER_CHUNK`], as a [`std::io::BufRead`] (resumed decompression, sequential passes).
pub struct BlobReader {
    fetcher: Arc<Fetcher>,
    blob: Blob,
    pos: u64,
    buf: Vec<u8>,
    at: usize,
    /// Where read-ahead stops (the end of the member being decoded), if it is on.
    ahead_limit: Option<u64>,
    /// The block end read-ahead was last asked from.
    ahead_from: u64,
}

/// Blocks a [`BlobReader`] with read-ahead keeps coming ahead of itself: a decoder consumes
/// one while the next ones arrive.
const READER_AHEAD_BLOCKS: u64 = 4;

/// The most a [`BlobReader`] holds: its memory, whatever the block size.
pub const READER_CHUNK: u64 = 256 << 10;

impl BlobReader {
    /// Read `blob` from `offset` on.
    pub fn new(fetcher: Arc<Fetcher>, blob: Blob, offset: u64) -> BlobReader {
        BlobReader {
            fetcher,
            blob,
            pos: offset,
            buf: Vec::new(),
            at: 0,
            ahead_limit: None,
            ahead_from: 0,
        }
    }

    /// Have the blocks after the one being read fetched in the background, up to `limit`: a
    /// decoder reading a large member sequentially then never waits for a block it reaches.
    pub fn with_read_ahead(mut self, limit: u64) -> BlobReader {
        self.ahead_limit = Some(limit.min(self.blob.size()));
        self
    }
}

impl std::io::Read for BlobReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = {
            let avail = std::io::BufRead::fill_buf(self)?;
            let n = out.len().min(avail.len());
            out[..n].copy_from_slice(&avail[..n]);
            n
        };
        std::io::BufRead::consume(self, n);
        Ok(n)
    }
}

impl std::io::BufRead for BlobReader {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if self.at == self.buf.len() && self.pos < self.blob.size() {
            // Never past the current block: each piece is one cached block (or one request).
            let bs = self.fetcher.block_size;
            let block_end = (self.pos - self.pos % bs + bs).min(self.blob.size());
            let end = block_end.min(self.pos + READER_CHUNK);
            if let Some(limit) = self.ahead_limit
                && block_end > self.ahead_from
                && block_end < limit
            {
                let window = (READER_AHEAD_BLOCKS * bs).min(limit - block_end);
                self.fetcher.prefetch(&self.blob, block_end, window);
                self.ahead_from = block_end;
            }
            self.buf = self
                .fetcher
                .read_at(&self.blob, self.pos, end - self.pos)
                .map_err(std::io::Error::other)?;
            self.at = 0;
            self.pos = end;
        }
        Ok(&self.buf[self.at..])
    }

    fn consume(&mut self, n: usize) {
        self.at = (self.at + n).min(self.buf.len());
    }
}

/// A blob seen as random-access bytes, for the archive parsers.
pub struct BlobBytes<'a> {
    /// The fetcher.
    pub fetcher: &'a Fetcher,
    /// The blob.
    pub blob: &'a Blob,
}

impl ReadAt for BlobBytes<'_> {
    fn read_at(&self, offset: u64, len: u64) -> Result<Vec<u8>, ArchiveError> {
        self.fetcher
            .read_at(self.blob, offset, len)
            .map_err(|e| ArchiveError::Read(Box::new(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::mock::{Fault, Faulty, MockUpstream, Object};

    fn setup(up: Arc<dyn Upstream>, limit: u64) -> (tempfile::TempDir, Fetcher) {
        let d = tempfile::tempdir().unwrap();
        let cache = Arc::new(BlockCache::open(d.path(), limit).unwrap());
        (d, Fetcher::new(up, cache, 1000))
    }

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn reads_cost_one_request_per_missing_block() {
        let up = Arc::new(MockUpstream::new());
        up.put("http://h/a", data(10_500));
        let (_d, f) = setup(up.clone(), 1 << 20);
        let (part, _) = f.probe("http://h/a").unwrap();
        assert_eq!((part.size, part.ranged), (10_500, true));
        let blob = Blob::single(part);
        assert_eq!(up.request_count(), 1);
        // Inside the probed first block: free.
        assert_eq!(f.read_at(&blob, 10, 20).unwrap(), data(10_500)[10..30]);
        assert_eq!(up.request_count(), 1);
        // Spanning blocks 1-3: three requests, then none for any byte of them.
        assert_eq!(
            f.read_at(&blob, 1500, 2000).unwrap(),
            data(10_500)[1500..3500]
        );
        assert_eq!(up.request_count(), 4);
        assert_eq!(
            f.read_at(&blob, 1000, 3000).unwrap(),
            data(10_500)[1000..4000]
        );
        assert_eq!(up.request_count(), 4);
        // The short last block.
        assert_eq!(
            f.read_at(&blob, 10_400, 100).unwrap(),
            data(10_500)[10_400..]
        );
        assert!(f.read_at(&blob, 10_400, 101).is_err());
    }

    #[test]
    fn a_read_inside_a_block_in_memory_shares_its_bytes() {
        let up = Arc::new(MockUpstream::new());
        up.put("http://h/a", data(10_500));
        let (d, f) = setup(up.clone(), 1 << 20);
        let (part, _) = f.probe("http://h/a").unwrap();
        let blob = Blob::single(part);
        let want = data(10_500);
        // Block 2, fetched now: two reads of it are one copy of its bytes in memory.
        let a = f.read_bytes(&blob, 2_100, 300, Check::Crc).unwrap();
        let b = f.read_bytes(&blob, 2_150, 50, Check::Crc).unwrap();
        assert_eq!(a, want[2_100..2_400]);
        assert_eq!(b, want[2_150..2_200]);
        assert_eq!(a[50..].as_ptr(), b.as_ptr(), "shared, not copied");
        // Across blocks 2 and 3, from block 0's file (the probe stored it), the short last
        // block, and past the end.
        let read = |at, len| f.read_bytes(&blob, at, len, Check::Crc);
        assert_eq!(read(2_900, 200).unwrap(), want[2_900..3_100]);
        assert_eq!(read(10, 20).unwrap(), want[10..30]);
        assert_eq!(read(10_400, 100).unwrap(), want[10_400..]);
        assert!(read(10_400, 101).is_err());
        // The probe, block 2, block 3 and the last block.
        assert_eq!(up.request_count(), 4);
        // Restarted: the files written straight from those buffers hold exactly their bytes
        // (the last one's alignment padding cut off), checked against their CRC.
        drop(f);
        let cache = Arc::new(BlockCache::open(d.path(), 1 << 20).unwrap());
        let f = Fetcher::new(up.clone(), cache, 1000);
        assert_eq!(f.read_at(&blob, 2_000, 2_000).unwrap(), want[2_000..4_000]);
        assert_eq!(f.read_at(&blob, 10_000, 500).unwrap(), want[10_000..]);
        assert_eq!(up.request_count(), 4);
    }

    #[test]
    fn host_without_range_is_downloaded_once_whole() {
        let up = Arc::new(MockUpstream::new());
        let bytes = data(5_500);
        up.put_object(
            "http://h/a",
            Object {
                data: bytes.clone(),
                etag: "\"1\"".into(),
                ranged: false,
            },
        );
        let (_d, f) = setup(up.clone(), 1 << 20);
        let (part, _) = f.probe("http://h/a").unwrap();
        assert!(!part.ranged);
        let blob = Blob::single(part);
        assert_eq!(f.read_at(&blob, 0, 5_500).unwrap(), bytes);
        assert_eq!(up.request_count(), 1);
        assert_eq!(f.cache().used(), 5_500);
        // Lose one block: the whole object comes again, once, then everything is served.
        f.invalidate(&blob, 2_500, 1).unwrap();
        assert_eq!(f.read_at(&blob, 2_000, 1_000).unwrap(), bytes[2_000..3_000]);
        assert_eq!(up.request_count(), 2);
        // The block the read asked for was stored by the download, and counted once.
        assert_eq!(f.cache().used(), 5_500);
        for _ in 0..3 {
            f.invalidate(&blob, 2_500, 1).unwrap();
            f.read_at(&blob, 2_000, 1_000).unwrap();
        }
        assert_eq!(
            f.cache().used(),
            5_500,
            "no block counted twice per refetch"
        );
    }

    /// A host that takes `delay` to answer every request with `status` (0: the bytes).
    struct Slow {
        delay: std::time::Duration,
        status: u16,
        data: Vec<u8>,
        calls: std::sync::atomic::AtomicUsize,
    }

    impl Upstream for Slow {
        fn api(
            &self,
            req: &crate::source::ApiRequest<'_>,
        ) -> Result<crate::source::ApiReply, SourceError> {
            Err(SourceError::Status {
                url: req.url.to_string(),
                status: 404,
            })
        }

        fn fetch(&self, req: &FetchRequest<'_>) -> Result<Response<'_>, SourceError> {
            self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::thread::sleep(self.delay);
            if self.status != 0 {
                return Err(SourceError::Status {
                    url: req.url.to_string(),
                    status: self.status,
                });
            }
            let r = req.range.clone().unwrap_or(0..self.data.len() as u64);
            let body = self.data[r.start as usize..r.end as usize].to_vec();
            struct Once(Option<Vec<u8>>);
            impl BodyStream for Once {
                fn chunk(&mut self) -> Result<Option<Vec<u8>>, SourceError> {
                    Ok(self.0.take())
                }
            }
            Ok(Response {
                reply: crate::source::Reply {
                    body: Body::Partial {
                        total: self.data.len() as u64,
                    },
                    etag: Some("\"v1\"".into()),
                    last_modified: None,
                },
                body: Box::new(Once(Some(body))),
            })
        }
    }

    fn slow(delay_ms: u64, status: u16) -> Arc<Slow> {
        Arc::new(Slow {
            delay: std::time::Duration::from_millis(delay_ms),
            status,
            data: data(3_000),
            calls: Default::default(),
        })
    }

    #[test]
    fn every_waiter_of_a_refused_block_gets_the_refusal() {
        let up = slow(200, 403);
        let (_d, f) = setup(up.clone(), 1 << 20);
        let blob = Blob::single(Fetcher::listed_part("http://h/a", 3_000, None, None));
        let errors: Vec<FetchError> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| s.spawn(|| f.read_at(&blob, 1_000, 10).unwrap_err()))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(up.calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        for e in errors {
            assert!(e.is_denied(), "a waiter got {e}, not the refusal");
            assert!(e.to_string().contains("403"), "{e}");
        }
        assert_eq!(f.cache().used(), 0);
    }

    #[test]
    fn a_waiter_gives_up_at_the_deadline_and_the_fetch_serves_the_next_reader() {
        let up = slow(1_500, 0);
        let d = tempfile::tempdir().unwrap();
        let cache = Arc::new(BlockCache::open(d.path(), 1 << 20).unwrap());
        let f = Fetcher::new(up.clone(), cache, 1000)
            .with_deadline(std::time::Duration::from_millis(300));
        let blob = Blob::single(Fetcher::listed_part("http://h/a", 3_000, None, None));
        std::thread::scope(|s| {
            let leader = s.spawn(|| f.read_at(&blob, 1_000, 10));
            std::thread::sleep(std::time::Duration::from_millis(100));
            let t = std::time::Instant::now();
            let e = f.read_at(&blob, 1_000, 10).unwrap_err();
            assert!(e.is_timeout(), "{e}");
            assert!(e.to_string().contains("http://h/a"), "{e}");
            assert!(t.elapsed() < std::time::Duration::from_millis(1_200));
            assert_eq!(leader.join().unwrap().unwrap(), data(3_000)[1_000..1_010]);
        });
        assert_eq!(
            f.read_at(&blob, 1_000, 10).unwrap(),
            data(3_000)[1_000..1_010]
        );
        assert_eq!(up.calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    /// A host that ignores Range from byte 0 (as some CDNs do for whole-object caching) but
    /// honours it further on, and whose first whole download breaks half-way.
    struct Flaky {
        data: Vec<u8>,
        calls: std::sync::atomic::AtomicUsize,
    }

    impl Upstream for Flaky {
        fn api(
            &self,
            req: &crate::source::ApiRequest<'_>,
        ) -> Result<crate::source::ApiReply, SourceError> {
            Err(SourceError::Status {
                url: req.url.to_string(),
                status: 404,
            })
        }

        fn fetch(&self, req: &FetchRequest<'_>) -> Result<Response<'_>, SourceError> {
            let n = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let total = self.data.len() as u64;
            let (body, bytes) = match &req.range {
                Some(r) if r.start > 0 => {
                    let end = r.end.min(total);
                    (
                        Body::Partial { total },
                        self.data[r.start as usize..end as usize].to_vec(),
                    )
                }
                // The first answer stops half-way, as a dropped connection would.
                _ if n == 0 => (
                    Body::Full { len: Some(total) },
                    self.data[..self.data.len() / 2].to_vec(),
                ),
                _ => (Body::Full { len: Some(total) }, self.data.clone()),
            };
            let mut chunks: Vec<Vec<u8>> = bytes.chunks(1000).map(<[u8]>::to_vec).collect();
            chunks.reverse();
            struct Pieces(Vec<Vec<u8>>);
            impl BodyStream for Pieces {
                fn chunk(&mut self) -> Result<Option<Vec<u8>>, SourceError> {
                    Ok(self.0.pop())
                }
            }
            Ok(Response {
                reply: crate::source::Reply {
                    body,
                    etag: Some("\"v1\"".into()),
                    last_modified: None,
                },
                body: Box::new(Pieces(chunks)),
            })
        }
    }

    #[test]
    fn a_broken_whole_download_resumes_where_the_host_allows() {
        let up = Arc::new(Flaky {
            data: data(7_500),
            calls: std::sync::atomic::AtomicUsize::new(0),
        });
        let (_d, f) = setup(up.clone(), 1 << 20);
        let blob = Blob::single(f.probe("http://h/a").unwrap().0);
        assert_eq!(blob.size(), 7_500);
        assert!(!blob.parts[0].ranged);
        assert_eq!(f.read_at(&blob, 0, 7_500).unwrap(), data(7_500));
        // The probe's broken download, then one resume from the middle: two requests in all.
        assert_eq!(up.calls.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[test]
    fn whole_download_larger_than_the_cache_says_so() {
        let up = Arc::new(MockUpstream::new());
        up.put_object(
            "http://h/a",
            Object {
                data: data(5_000),
                etag: "\"1\"".into(),
                ranged: false,
            },
        );
        let (_d, f) = setup(up, 3_000);
        let e = f.probe("http://h/a").unwrap_err().to_string();
        assert!(
            e.contains("does not fit") && e.contains("--cache-size"),
            "{e}"
        );
        assert!(f.cache().used() <= 3_000);
    }

    #[test]
    fn transient_failures_are_retried_and_truncation_is_never_cached() {
        let up = MockUpstream::new();
        up.put("http://h/a", data(3_000));
        let faulty = Arc::new(Faulty::new(up, Fault::Unavailable, 1..2));
        let (_d, f) = setup(faulty.clone(), 1 << 20);
        let blob = Blob::single(f.probe("http://h/a").unwrap().0);
        assert_eq!(
            f.read_at(&blob, 1_000, 10).unwrap(),
            data(3_000)[1_000..1_010]
        );
        assert_eq!(
            faulty.inner().request_count(),
            2,
            "the 503 never reached the inner host"
        );

        let up = MockUpstream::new();
        up.put("http://h/a", data(3_000));
        let faulty = Arc::new(Faulty::new(up, Fault::Truncate, 1..2));
        let (_d, f) = setup(faulty, 1 << 20);
        let blob = Blob::single(f.probe("http://h/a").unwrap().0);
        assert!(f.read_at(&blob, 1_000, 10).is_err());
        assert_eq!(
            f.read_at(&blob, 1_000, 10).unwrap(),
            data(3_000)[1_000..1_010]
        );
    }

    #[test]
    fn split_parts_read_as_one_blob() {
        let up = Arc::new(MockUpstream::new());
        let whole = data(5_000);
        up.put("http://h/a.zip.001", whole[..1_800].to_vec());
        up.put("http://h/a.zip.002", whole[1_800..3_300].to_vec());
        up.put("http://h/a.zip.003", whole[3_300..].to_vec());
        let (_d, f) = setup(up.clone(), 1 << 20);
        let parts = ["001", "002", "003"]
            .iter()
            .map(|n| f.probe(&format!("http://h/a.zip.{n}")).unwrap().0)
            .collect();
        let blob = Blob {
            id: 0,
            parts,
            checksum: None,
        };
        assert_eq!(blob.size(), 5_000);
        assert_eq!(f.read_at(&blob, 1_500, 2_500).unwrap(), whole[1_500..4_000]);
        let mut streamed = Vec::new();
        std::io::Read::read_to_end(&mut f.stream(&blob, false).unwrap(), &mut streamed).unwrap();
        assert_eq!(streamed, whole);
        let mut r = BlobReader::new(Arc::new(f), blob, 999);
        let mut tail = Vec::new();
        std::io::Read::read_to_end(&mut r, &mut tail).unwrap();
        assert_eq!(tail, whole[999..]);
    }

    #[test]
    fn a_changed_upstream_is_refused_not_mixed() {
        let up = Arc::new(MockUpstream::new());
        up.put("http://h/a", data(3_000));
        let (_d, f) = setup(up.clone(), 1 << 20);
        let blob = Blob::single(f.probe("http://h/a").unwrap().0);
        up.put("http://h/a", data(2_999));
        let e = f.read_at(&blob, 2_000, 10).unwrap_err().to_string();
        assert!(e.contains("changed upstream"), "{e}");
    }

    mod shared_tier {
        use super::*;
        use crate::tier::memory::{Faults, Faulty as FaultyStore, MemoryStore};
        use crate::tier::{ObjectStore, TierSettings, TierStats};

        const SIZE: usize = 10_500;

        /// A node: its own cache and fetcher, sharing `store` with the others.
        fn node(
            up: Arc<MockUpstream>,
            store: impl ObjectStore + 'static,
            wait: Duration,
        ) -> (tempfile::TempDir, Arc<Fetcher>) {
            let d = tempfile::tempdir().unwrap();
            let cache = Arc::new(BlockCache::open(d.path(), 1 << 20).unwrap());
            let tier = Tier::new(
                Box::new(store),
                TierSettings {
                    lease: Duration::from_secs(3),
                    wait,
                },
            );
            let f = Fetcher::new(up, cache, 1000).with_tier(Arc::new(tier));
            (d, Arc::new(f))
        }

        fn blob(up: &MockUpstream, url: &str) -> Blob {
            up.put(url, data(SIZE));
            let etag = format!("\"{:08x}\"", crc32fast::hash(&data(SIZE)));
            Blob::single(Fetcher::listed_part(url, SIZE as u64, Some(etag), None))
        }

        /// Every node reads the whole blob at once, and gets its bytes.
        fn all_read_whole(nodes: &[(tempfile::TempDir, Arc<Fetcher>)], b: &Blob) {
            std::thread::scope(|s| {
                for (_, f) in nodes {
                    s.spawn(move || assert_eq!(f.read_at(b, 0, SIZE as u64).unwrap(), data(SIZE)));
                }
            });
        }

        /// What the node's tier did, once what it queued is written.
        fn stats(f: &Fetcher) -> TierStats {
            let t = f.tier().unwrap();
            t.finish(Duration::from_secs(10));
            t.stats()
        }

        #[test]
        fn nodes_racing_for_every_block_cause_one_upstream_request_each() {
            let up = Arc::new(MockUpstream::new());
            let b = blob(&up, "http://h/a");
            // Slow answers, so the nodes really race for each block.
            up.set_delay(Duration::from_millis(30));
            let store = Arc::new(MemoryStore::new());
            let nodes: Vec<_> = (0..4)
                .map(|_| node(up.clone(), store.clone(), Duration::from_secs(10)))
                .collect();
            all_read_whole(&nodes, &b);
            // 11 blocks, each asked of the upstream once in the whole cluster.
            assert_eq!(up.request_count(), 11, "{:?}", up.requests());
            let all: Vec<TierStats> = nodes.iter().map(|(_, f)| stats(f)).collect();
            assert_eq!(all.iter().map(|s| s.publishes).sum::<u64>(), 11);
            assert_eq!(all.iter().map(|s| s.hits).sum::<u64>(), 33);
            assert!(
                all.iter().map(|s| s.lease_waits).sum::<u64>() > 0,
                "{all:?}"
            );
            assert_eq!(all.iter().map(|s| s.errors + s.corrupt).sum::<u64>(), 0);
            // No lease is left behind; every block is there once.
            let names = store.names();
            assert_eq!(names.len(), 11, "{names:?}");
            assert!(names.iter().all(|n| n.starts_with("b/")));
        }

        #[test]
        fn a_store_that_is_down_costs_readers_nothing_and_is_left_alone_for_a_while() {
            let up = Arc::new(MockUpstream::new());
            let b = blob(&up, "http://h/a");
            let store = Arc::new(FaultyStore::new(MemoryStore::new()));
            store.set(Faults {
                down: true,
                ..Faults::default()
            });
            let (_d, f) = node(up.clone(), store.clone(), Duration::from_secs(10));
            assert_eq!(f.read_at(&b, 0, SIZE as u64).unwrap(), data(SIZE));
            assert_eq!(up.request_count(), 11);
            let st = stats(&f);
            // One failure paused the store: the other ten blocks did not ask it.
            assert_eq!((st.errors, st.bypassed, st.paused), (1, 10, true), "{st:?}");
            assert!(st.last_error.unwrap().contains("connection refused"));
        }

        #[test]
        fn a_busy_store_is_waited_for_not_taken_for_down() {
            let up = Arc::new(MockUpstream::new());
            let b = blob(&up, "http://h/a");
            up.set_delay(Duration::from_millis(20));
            let memory = Arc::new(MemoryStore::new());
            let store = Arc::new(FaultyStore::new(memory.clone()));
            // The first 30 requests of the cluster are told to slow down (503 SlowDown).
            store.set(Faults {
                throttle: 30,
                ..Faults::default()
            });
            let nodes: Vec<_> = (0..3)
                .map(|_| node(up.clone(), store.clone(), Duration::from_secs(10)))
                .collect();
            all_read_whole(&nodes, &b);
            // Still one request per block: nobody fell back to the upstream.
            assert_eq!(up.request_count(), 11, "{:?}", up.requests());
            let all: Vec<TierStats> = nodes.iter().map(|(_, f)| stats(f)).collect();
            assert_eq!(all.iter().map(|s| s.throttled).sum::<u64>(), 30, "{all:?}");
            assert_eq!(
                all.iter().map(|s| s.errors + s.bypassed).sum::<u64>(),
                0,
                "{all:?}"
            );
        }

        #[test]
        fn a_store_that_refuses_costs_readers_nothing() {
            let up = Arc::new(MockUpstream::new());
            let b = blob(&up, "http://h/a");
            let store = Arc::new(FaultyStore::new(MemoryStore::new()));
            store.set(Faults {
                refuse: true,
                ..Faults::default()
            });
            let (_d, f) = node(up.clone(), store, Duration::from_secs(10));
            assert_eq!(f.read_at(&b, 2000, 10).unwrap(), data(SIZE)[2000..2010]);
            let st = stats(&f);
            assert_eq!(st.errors, 1);
            assert!(st.last_error.unwrap().contains("403"));
        }

        #[test]
        fn a_damaged_block_in_the_store_is_refused_deleted_and_replaced() {
            let up = Arc::new(MockUpstream::new());
            let b = blob(&up, "http://h/a");
            let memory = Arc::new(MemoryStore::new());
            let (_a, a) = node(up.clone(), memory.clone(), Duration::from_secs(10));
            a.read_at(&b, 0, 1000).unwrap();
            assert_eq!(up.request_count(), 1);
            stats(&a);
            let name = memory.names().pop().unwrap();
            // Flip one byte of the payload as it sits in the store.
            let mut raw = memory.raw(&name).unwrap();
            let last = raw.len() - 1;
            raw[last] ^= 0xff;
            memory.set_raw(&name, raw.clone());
            let (_b, b_node) = node(up.clone(), memory.clone(), Duration::from_secs(10));
            assert_eq!(b_node.read_at(&b, 0, 1000).unwrap(), data(SIZE)[..1000]);
            // The damaged object cost one upstream request, and was replaced by a good one.
            assert_eq!(up.request_count(), 2);
            let st = stats(&b_node);
            assert_eq!((st.corrupt, st.hits, st.publishes), (1, 0, 1), "{st:?}");
            assert_ne!(memory.raw(&name).unwrap(), raw);
            let (_c, c) = node(up.clone(), memory.clone(), Duration::from_secs(10));
            assert_eq!(c.read_at(&b, 0, 1000).unwrap(), data(SIZE)[..1000]);
            assert_eq!((up.request_count(), stats(&c).hits), (2, 1));
        }

        #[test]
        fn a_block_of_another_version_or_length_is_not_taken() {
            let up = Arc::new(MockUpstream::new());
            let b = blob(&up, "http://h/a");
            let memory = Arc::new(MemoryStore::new());
            let key = b.parts[0].key;
            let name = crate::tier::block_name(&key.to_string(), 1000, 3);
            // A well-sealed object of the wrong length, then one of another version.
            memory.set_raw(&name, crate::tier::envelope::seal(&name, None, &[1u8; 999]));
            let (_a, a) = node(up.clone(), memory.clone(), Duration::from_secs(10));
            assert_eq!(a.read_at(&b, 3000, 1000).unwrap(), data(SIZE)[3000..4000]);
            stats(&a);
            memory.set_raw(
                &name,
                crate::tier::envelope::seal(&name, Some("\"other\""), &[1u8; 1000]),
            );
            let (_b, b_node) = node(up.clone(), memory.clone(), Duration::from_secs(10));
            assert_eq!(
                b_node.read_at(&b, 3000, 1000).unwrap(),
                data(SIZE)[3000..4000]
            );
            assert_eq!((stats(&a).corrupt, stats(&b_node).corrupt), (1, 1));
            assert_eq!(up.request_count(), 2);
        }

        #[test]
        fn a_lease_whose_holder_died_is_taken_over_and_a_live_one_is_waited_for_a_bounded_time() {
            let up = Arc::new(MockUpstream::new());
            let b = blob(&up, "http://h/a");
            let memory = Arc::new(MemoryStore::new());
            let key = b.parts[0].key;
            let lease = |i: u64| {
                format!(
                    "lease/{}",
                    crate::tier::block_name(&key.to_string(), 1000, i)
                )
            };
            let until = |ms: u64| {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis() as u64;
                format!("{{\"node\":\"dead:1\",\"until_ms\":{}}}", now + ms).into_bytes()
            };
            // Expired a second ago (its holder died): taken over at once.
            memory.set_raw(&lease(0), until(0));
            memory.set_raw(&lease(1), until(60_000));
            let (_a, a) = node(up.clone(), memory.clone(), Duration::from_millis(1500));
            let t = Instant::now();
            assert_eq!(a.read_at(&b, 0, 1000).unwrap(), data(SIZE)[..1000]);
            assert!(
                t.elapsed() < Duration::from_millis(1000),
                "{:?}",
                t.elapsed()
            );
            // Held for a minute by a node that never publishes: waited for `wait`, then fetched.
            let t = Instant::now();
            assert_eq!(a.read_at(&b, 1000, 1000).unwrap(), data(SIZE)[1000..2000]);
            assert!(
                t.elapsed() >= Duration::from_millis(1500),
                "{:?}",
                t.elapsed()
            );
            let st = stats(&a);
            assert_eq!(
                (st.lease_waits, st.lease_waits_served, st.publishes),
                (1, 0, 2)
            );
            assert_eq!(up.request_count(), 2);
        }

        #[test]
        fn a_whole_download_is_made_once_and_its_blocks_are_shared() {
            let up = Arc::new(MockUpstream::new());
            up.put_object(
                "http://h/w",
                Object {
                    data: data(SIZE),
                    etag: "\"w\"".into(),
                    ranged: false,
                },
            );
            up.set_delay(Duration::from_millis(30));
            let memory = Arc::new(MemoryStore::new());
            let (_a, a) = node(up.clone(), memory.clone(), Duration::from_secs(10));
            // The probe learns the size without the body (over a block, not read).
            let (part, _) = a.size_probe("http://h/w").unwrap();
            assert!(!part.ranged);
            let requests = up.request_count();
            let b = Blob::single(part);
            let nodes: Vec<_> = (0..3)
                .map(|_| node(up.clone(), memory.clone(), Duration::from_secs(10)))
                .collect();
            std::thread::scope(|s| {
                for (_, f) in &nodes {
                    let b = &b;
                    s.spawn(move || {
                        assert_eq!(f.read_at(b, 4000, 5000).unwrap(), data(SIZE)[4000..9000])
                    });
                }
            });
            // One whole download for the cluster; the others read its blocks from the store.
            assert_eq!(up.request_count(), requests + 1, "{:?}", up.requests());
            let published: u64 = nodes.iter().map(|(_, f)| stats(f).publishes).sum();
            assert_eq!(published, 11);
        }
    }
}
