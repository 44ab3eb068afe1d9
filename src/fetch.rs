//! Reading byte ranges of blobs through the block cache.
//!
//! The only place that turns "bytes `[a, b)` of blob X" into upstream requests. A read is cut
//! into aligned blocks; each missing block costs one Range request (single flight: concurrent
//! readers of a block share it), and the whole block is cached, so the neighbours of what was
//! read come along for free. A host that ignores Range is downloaded once, whole, straight into
//! the block files, then served from them. Transient failures (timeouts, 5xx, 429) are retried
//! with exponential backoff; a changed upstream object is never mixed with cached bytes of its
//! earlier version (`If-Match`, total size and the blob key all pin the version).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::archive::{ArchiveError, ReadAt};
use crate::cache::{BlobKey, BlockCache, BlockKey, CacheError};
use crate::index::Blob;
use crate::source::{Body, FetchRequest, SourceError, Upstream, fetch_range};

/// Attempts per block before a transient failure is reported.
const ATTEMPTS: u32 = 3;
/// First retry delay; doubled each time.
const BACKOFF: Duration = Duration::from_millis(250);

/// Why bytes of a blob could not be had.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The upstream failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The cache failed (including the fetch error a waited-for flight reported).
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// Fetches blob ranges through the cache.
pub struct Fetcher {
    up: Arc<dyn Upstream>,
    cache: Arc<BlockCache>,
    block_size: u64,
    /// Serialises whole downloads of hosts without Range, so two readers never download twice.
    whole: Mutex<()>,
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
        }
    }

    /// The cache behind this fetcher.
    pub fn cache(&self) -> &BlockCache {
        &self.cache
    }

    /// Learn the size, validator and Range support of the blob at `url`. The probe asks for the
    /// first block, which is kept; a host that answers with the whole object is downloaded whole
    /// into the cache now. Returns the blob (with `id` 0; the index assigns ids) and its
    /// `Last-Modified` time.
    pub fn probe(&self, url: &str) -> Result<(Blob, Option<i64>), FetchError> {
        let first = 0..self.block_size;
        let resp = retry(|| {
            self.up.fetch(&FetchRequest {
                url,
                range: Some(first.clone()),
                if_match: None,
            })
        })?;
        let reply = resp.reply.clone();
        let validator = reply
            .etag
            .clone()
            .or(reply.last_modified.map(|t| t.to_string()))
            .unwrap_or_default();
        match reply.body {
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
                }
                let blob = Blob {
                    id: 0,
                    key,
                    url: url.to_string(),
                    size: total,
                    etag: reply.etag.clone(),
                    ranged: true,
                };
                Ok((blob, reply.last_modified))
            }
            Body::Full { len } => {
                tracing::info!(
                    url,
                    "the host ignores Range requests; downloading it whole, once"
                );
                let key = BlobKey::derive(url, len.unwrap_or(0), &validator);
                let _whole = self.whole.lock().unwrap_or_else(|p| p.into_inner());
                let size = self.store_whole(key, resp, url, None)?.0;
                let blob = Blob {
                    id: 0,
                    key,
                    url: url.to_string(),
                    size,
                    etag: reply.etag.clone(),
                    ranged: false,
                };
                Ok((blob, reply.last_modified))
            }
        }
    }

    /// Stream a whole-object answer into blocks of `key`; returns the size and, if asked, the
    /// bytes of block `keep`.
    fn store_whole(
        &self,
        key: BlobKey,
        resp: crate::source::Response<'_>,
        url: &str,
        keep: Option<u64>,
    ) -> Result<(u64, Option<Vec<u8>>), FetchError> {
        let limit = self.cache.limit();
        let too_big = || {
            CacheError::Fetch(format!(
                "{url}: the host does not serve byte ranges, so medimg must cache it whole, \
                 and it does not fit in the {limit}-byte cache; raise --cache-size"
            ))
        };
        // Earlier blocks of the download would be evicted to make room for later ones.
        if let Body::Full { len: Some(n) } = resp.reply.body
            && n > limit
        {
            return Err(too_big().into());
        }
        let mut body = resp.body;
        let mut buf = Vec::with_capacity(self.block_size as usize);
        let mut index = 0;
        let mut total = 0u64;
        let mut kept = None;
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
                    e => e,
                })?;
            if keep == Some(*index) {
                kept = Some(std::mem::take(buf));
            } else {
                buf.clear();
            }
            *index += 1;
            Ok(())
        };
        while let Some(chunk) = body.chunk()? {
            total += chunk.len() as u64;
            if total > limit {
                return Err(too_big().into());
            }
            let mut rest = &chunk[..];
            while !rest.is_empty() {
                let take = rest.len().min(self.block_size as usize - buf.len());
                buf.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                if buf.len() as u64 == self.block_size {
                    flush(&mut buf, &mut index)?;
                }
            }
        }
        if !buf.is_empty() {
            flush(&mut buf, &mut index)?;
        }
        Ok((total, kept))
    }

    /// Exactly `len` bytes of `blob` at `offset`.
    pub fn read_at(&self, blob: &Blob, offset: u64, len: u64) -> Result<Vec<u8>, FetchError> {
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= blob.size)
            .ok_or_else(|| SourceError::BadAnswer {
                url: blob.url.clone(),
                message: format!(
                    "read of {len} bytes at {offset} is past the end of the {}-byte file",
                    blob.size
                ),
            })?;
        let mut out = Vec::with_capacity(len as usize);
        let mut pos = offset;
        while pos < end {
            let index = pos / self.block_size;
            let block_start = index * self.block_size;
            let key = BlockKey {
                blob: blob.key,
                index,
            };
            let pinned = self.cache.ensure(key, &|| {
                self.fetch_block(blob, index).map_err(|e| e.to_string())
            })?;
            let within = pos - block_start;
            let take = (end - pos).min(pinned.len().saturating_sub(within));
            if take == 0 {
                return Err(CacheError::Fetch(format!(
                    "{}: block {index} is shorter than expected",
                    blob.url
                ))
                .into());
            }
            out.extend_from_slice(&pinned.read(within, take)?);
            pos += take;
        }
        Ok(out)
    }

    /// Drop the cached blocks covering `[offset, offset + len)` (their bytes failed a check).
    pub fn invalidate(&self, blob: &Blob, offset: u64, len: u64) -> Result<(), FetchError> {
        let first = offset / self.block_size;
        let last = (offset + len.max(1) - 1) / self.block_size;
        for index in first..=last {
            self.cache.remove(BlockKey {
                blob: blob.key,
                index,
            })?;
        }
        Ok(())
    }

    fn fetch_block(&self, blob: &Blob, index: u64) -> Result<Vec<u8>, FetchError> {
        let start = index * self.block_size;
        let end = (start + self.block_size).min(blob.size);
        if blob.ranged {
            tracing::debug!(url = %blob.url, start, end, "fetching block");
            return Ok(retry(|| {
                fetch_range(
                    &*self.up,
                    &blob.url,
                    start..end,
                    strong(&blob.etag),
                    blob.size,
                )
            })?);
        }
        let _whole = self.whole.lock().unwrap_or_else(|p| p.into_inner());
        // A reader before us may have downloaded it while we waited.
        let key = BlockKey {
            blob: blob.key,
            index,
        };
        if self.cache.contains(key) {
            let p = self.cache.ensure(key, &|| Err("evicted".into()))?;
            return Ok(p.read(0, p.len())?);
        }
        tracing::info!(url = %blob.url, "downloading whole (the host ignores Range)");
        let resp = retry(|| {
            self.up.fetch(&FetchRequest {
                url: &blob.url,
                range: None,
                if_match: strong(&blob.etag),
            })
        })?;
        let (total, kept) = self.store_whole(blob.key, resp, &blob.url, Some(index))?;
        if total != blob.size {
            return Err(SourceError::Changed {
                url: blob.url.clone(),
            }
            .into());
        }
        kept.ok_or_else(|| {
            CacheError::Fetch(format!(
                "{}: block {index} missing from the download",
                blob.url
            ))
            .into()
        })
    }
}

fn retry<T>(mut f: impl FnMut() -> Result<T, SourceError>) -> Result<T, SourceError> {
    let mut delay = BACKOFF;
    let mut attempt = 1;
    loop {
        match f() {
            Err(e) if e.is_transient() && attempt < ATTEMPTS => {
                tracing::warn!("{e}; retrying in {delay:?}");
                std::thread::sleep(delay);
                delay *= 2;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// The whole blob as one sequential stream: one GET, however large (index-time passes over
/// tar and tar.gz). Full blocks are kept in the cache on the way when `keep` is set.
pub struct BlobStream<'a> {
    fetcher: &'a Fetcher,
    blob: &'a Blob,
    body: Box<dyn crate::source::BodyStream + 'a>,
    chunk: Vec<u8>,
    at: usize,
    pos: u64,
    keep: bool,
    block: Vec<u8>,
    block_start: u64,
}

impl Fetcher {
    /// Open the whole of `blob` as a stream (one request). With `keep`, full blocks are cached
    /// as they pass (worth it when the blob is small beside the cache).
    pub fn stream<'a>(&'a self, blob: &'a Blob, keep: bool) -> Result<BlobStream<'a>, FetchError> {
        let resp = retry(|| {
            self.up.fetch(&FetchRequest {
                url: &blob.url,
                range: None,
                if_match: strong(&blob.etag),
            })
        })?;
        if let Body::Full { len: Some(n) } = resp.reply.body
            && n != blob.size
        {
            return Err(SourceError::Changed {
                url: blob.url.clone(),
            }
            .into());
        }
        Ok(BlobStream {
            fetcher: self,
            blob,
            body: resp.body,
            chunk: Vec::new(),
            at: 0,
            pos: 0,
            keep,
            block: Vec::new(),
            block_start: 0,
        })
    }
}

impl std::io::Read for BlobStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.chunk.len() {
            match self.body.chunk().map_err(std::io::Error::other)? {
                Some(c) => {
                    self.chunk = c;
                    self.at = 0;
                }
                None if self.pos == self.blob.size => return Ok(0),
                None => {
                    return Err(std::io::Error::other(SourceError::Changed {
                        url: self.blob.url.clone(),
                    }));
                }
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        let piece = &self.chunk[self.at..self.at + n];
        buf[..n].copy_from_slice(piece);
        if self.keep {
            let bs = self.fetcher.block_size as usize;
            let mut rest = piece;
            while !rest.is_empty() {
                let take = rest.len().min(bs - self.block.len());
                self.block.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                let end = self.block_start + self.block.len() as u64;
                if self.block.len() == bs || end == self.blob.size {
                    let key = BlockKey {
                        blob: self.blob.key,
                        index: self.block_start / bs as u64,
                    };
                    // Best effort: a full cache only means later reads fetch again.
                    let _ = self.fetcher.cache.insert(key, &self.block);
                    self.block_start = end;
                    self.block.clear();
                }
            }
        }
        self.pos += n as u64;
        self.at += n;
        if self.pos > self.blob.size {
            return Err(std::io::Error::other(SourceError::Changed {
                url: self.blob.url.clone(),
            }));
        }
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
}

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
        }
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
        if self.at == self.buf.len() && self.pos < self.blob.size {
            // Never past the current block: each piece is one cached block (or one request).
            let bs = self.fetcher.block_size;
            let block_end = (self.pos - self.pos % bs + bs).min(self.blob.size);
            let end = block_end.min(self.pos + READER_CHUNK);
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
        let (blob, _) = f.probe("http://h/a").unwrap();
        assert_eq!((blob.size, blob.ranged), (10_500, true));
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
        let (blob, _) = f.probe("http://h/a").unwrap();
        assert!(!blob.ranged);
        assert_eq!(f.read_at(&blob, 0, 5_500).unwrap(), bytes);
        assert_eq!(up.request_count(), 1);
        // Lose one block: the whole object comes again, once, then everything is served.
        f.invalidate(&blob, 2_500, 1).unwrap();
        assert_eq!(f.read_at(&blob, 2_000, 1_000).unwrap(), bytes[2_000..3_000]);
        assert_eq!(up.request_count(), 2);
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
        let (blob, _) = f.probe("http://h/a").unwrap();
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
        let (blob, _) = f.probe("http://h/a").unwrap();
        assert!(f.read_at(&blob, 1_000, 10).is_err());
        assert_eq!(
            f.read_at(&blob, 1_000, 10).unwrap(),
            data(3_000)[1_000..1_010]
        );
    }

    #[test]
    fn a_changed_upstream_is_refused_not_mixed() {
        let up = Arc::new(MockUpstream::new());
        up.put("http://h/a", data(3_000));
        let (_d, f) = setup(up.clone(), 1 << 20);
        let (blob, _) = f.probe("http://h/a").unwrap();
        up.put("http://h/a", data(2_999));
        let e = f.read_at(&blob, 2_000, 10).unwrap_err().to_string();
        assert!(e.contains("changed upstream"), "{e}");
    }
}
