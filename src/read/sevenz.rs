//! Members of a 7z archive: decoded by a thread of their own from the start of their block
//! (see [`crate::archive::sevenz`]), which hands the member's bytes over a small bounded
//! channel.
//!
//! The thread owns what the library borrows (the parsed archive, a cursor over the blob), so
//! a large member's decoder can be kept between reads like a tar.gz member's: a sequential
//! reader decodes the block once, a seek backwards starts again from the block's start.
//! Dropping the cursor ends the thread at its next hand-over; while it decodes the members
//! before this one in a solid block, it hands over empty heartbeats, so a reader waits at most
//! the deadline for progress, not for the whole block.
//!
//! Parsed headers are kept for the last few archives read ([`HEADERS`]), so a folder of small
//! members does not parse the header once per member.
//!
//! Cost: a member of a non-solid archive costs its own packed bytes; a member of a solid block
//! costs the block's bytes before it (7-Zip's default blocks hold up to a few GiB of output,
//! `-ms=off` makes one per file). A member up to [`super::INLINE_MAX`] is decoded whole, its
//! CRC checked, and served from the decoded-member cache; a larger one is checked as its last
//! byte is read, and a mismatch fails that read and every read after.

use std::io::BufReader;
use std::sync::mpsc::{Receiver, RecvTimeoutError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sevenz_rust2::Archive;

use super::{FileState, ReadError, Reader, Result, lock};
use crate::archive::sevenz::{self, BlobCursor};
use crate::archive::{ArchiveError, ReadAt};
use crate::fetch::{FetchError, Fetcher};
use crate::index::Blob;

/// Parsed 7z headers kept in memory.
pub(super) const HEADERS: usize = 4;
/// Chunks in flight between a decoding thread and its reader (256 KiB each).
const IN_FLIGHT: usize = 4;

/// One blob's bytes through the cache, owned (the decoding thread outlives the read). The
/// first fetch error is kept, so the reader gets it with its type (EACCES, ESTALE), not as
/// the library's text.
struct OwnedBlob {
    fetcher: Arc<Fetcher>,
    blob: Blob,
    failed: Arc<Mutex<Option<Arc<FetchError>>>>,
}

impl ReadAt for OwnedBlob {
    fn read_at(&self, offset: u64, len: u64) -> std::result::Result<Vec<u8>, ArchiveError> {
        self.fetcher.read_at(&self.blob, offset, len).map_err(|e| {
            let e = Arc::new(e);
            lock(&self.failed).get_or_insert_with(|| e.clone());
            ArchiveError::Read(Box::new(FetchError::Shared(e)))
        })
    }
}

/// Why a decoding thread stopped.
#[derive(Debug)]
enum Failure {
    /// Its bytes could not be fetched.
    Fetch(Arc<FetchError>),
    /// The archive is damaged or unreadable.
    Other(String),
}

/// What a decoding thread hands over: bytes of the member (empty: still decoding what comes
/// before it), or why it stopped.
type Chunk = std::result::Result<Vec<u8>, Failure>;

/// A member being decoded by its thread.
#[derive(Debug)]
pub(super) struct SevenZCursor {
    rx: Receiver<Chunk>,
    buf: Vec<u8>,
    at: usize,
    /// Offset in the member of the next byte [`Reader::sevenz_read`] returns.
    pos: u64,
}

impl Reader {
    /// The parsed header of `f`'s archive, from memory or the blob.
    fn sevenz_header(&self, f: &FileState) -> Result<Arc<Archive>> {
        if let Some(a) = lock(&self.sevenz_headers).get(&f.blob.id) {
            return Ok(a.clone());
        }
        let failed = Arc::new(Mutex::new(None));
        let src = OwnedBlob {
            fetcher: self.fetcher.clone(),
            blob: f.blob.clone(),
            failed: failed.clone(),
        };
        let archive = sevenz::open(src, f.blob.size()).map_err(|e| match lock(&failed).take() {
            Some(fe) => self.fetch_err(f, FetchError::Shared(fe)),
            None => self.archive_err(f, e),
        })?;
        let archive = Arc::new(archive);
        lock(&self.sevenz_headers).put(f.blob.id, archive.clone());
        Ok(archive)
    }

    fn archive_err(&self, f: &FileState, e: ArchiveError) -> ReadError {
        match e {
            ArchiveError::Read(inner) => match inner.downcast::<crate::fetch::FetchError>() {
                Ok(fe) => self.fetch_err(f, *fe),
                Err(other) => self.unreadable(f, format!("7z: {other}")),
            },
            e => self.unreadable(f, e.to_string()),
        }
    }

    /// A thread decoding member `file` of `f`'s archive from its block's start.
    fn sevenz_cursor(&self, f: &FileState, file: u32) -> Result<SevenZCursor> {
        let archive = self.sevenz_header(f)?;
        let (tx, rx) = sync_channel::<Chunk>(IN_FLIGHT);
        let failed = Arc::new(Mutex::new(None));
        let src = OwnedBlob {
            fetcher: self.fetcher.clone(),
            blob: f.blob.clone(),
            failed: failed.clone(),
        };
        let size = f.blob.size();
        let tag = Some(f.dataset.clone());
        std::thread::Builder::new()
            .name("medimg-7z".into())
            .spawn(move || {
                crate::source::stats::on_behalf_of_tag(tag, || {
                    let mut cursor =
                        BufReader::with_capacity(256 << 10, BlobCursor::new(src, size));
                    let r = sevenz::decode_member(&archive, &mut cursor, file, &mut |b| {
                        tx.send(Ok(b.to_vec())).is_ok()
                    });
                    if let Err(e) = r {
                        let why = match lock(&failed).take() {
                            Some(fe) => Failure::Fetch(fe),
                            None => Failure::Other(e.to_string()),
                        };
                        let _ = tx.send(Err(why));
                    }
                })
            })
            .map_err(|e| self.unreadable(f, format!("cannot start a 7z decoder: {e}")))?;
        Ok(SevenZCursor {
            rx,
            buf: Vec::new(),
            at: 0,
            pos: 0,
        })
    }

    /// Fill `out` from the cursor (skipping up to member offset `from` first); with `to_end`,
    /// also wait for the thread to finish, so the member's CRC has been checked.
    fn sevenz_read(
        &self,
        f: &FileState,
        c: &mut SevenZCursor,
        from: u64,
        out: &mut [u8],
        to_end: bool,
    ) -> Result<()> {
        let deadline = self.fetcher.deadline();
        let mut filled = 0;
        loop {
            if c.at < c.buf.len() {
                let avail = &c.buf[c.at..];
                if c.pos < from {
                    let n = (from - c.pos).min(avail.len() as u64) as usize;
                    c.at += n;
                    c.pos += n as u64;
                    continue;
                }
                let n = avail.len().min(out.len() - filled);
                out[filled..filled + n].copy_from_slice(&avail[..n]);
                filled += n;
                c.at += n;
                c.pos += n as u64;
            }
            if filled == out.len() && !to_end {
                return Ok(());
            }
            match c.rx.recv_timeout(deadline) {
                Ok(Ok(chunk)) => {
                    if to_end && filled == out.len() && !chunk.is_empty() {
                        return Err(
                            self.unreadable(f, "7z: the member is longer than indexed".into())
                        );
                    }
                    c.buf = chunk;
                    c.at = 0;
                }
                Ok(Err(Failure::Fetch(fe))) => {
                    return Err(self.fetch_err(f, FetchError::Shared(fe)));
                }
                Ok(Err(Failure::Other(msg))) => return Err(self.unreadable(f, msg)),
                Err(RecvTimeoutError::Timeout) => {
                    return Err(self.fetch_err(
                        f,
                        FetchError::TimedOut {
                            url: f.blob.url().to_string(),
                            after: deadline,
                        },
                    ));
                }
                Err(RecvTimeoutError::Disconnected) if filled == out.len() => return Ok(()),
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(self.unreadable(
                        f,
                        format!("7z: the member ends at byte {} of {}", c.pos, f.size),
                    ));
                }
            }
        }
    }

    /// The whole of a member up to [`super::INLINE_MAX`], its CRC checked.
    pub(super) fn sevenz_whole(&self, f: &FileState, file: u32) -> Result<Vec<u8>> {
        let started = Instant::now();
        let mut c = self.sevenz_cursor(f, file)?;
        let mut out = vec![0u8; f.size as usize];
        self.sevenz_read(f, &mut c, 0, &mut out, true)?;
        if started.elapsed() > Duration::from_secs(5) {
            tracing::info!(
                dataset = %f.entry.dataset,
                member = %self.member_path(f),
                "7z member decoded in {:.1} s (a solid block is decoded from its start)",
                started.elapsed().as_secs_f64()
            );
        }
        Ok(out)
    }

    /// A range of a large member.
    pub(super) fn read_sevenz(
        &self,
        f: &FileState,
        file: u32,
        offset: u64,
        len: u64,
    ) -> Result<bytes::Bytes> {
        let mut slot = lock(&f.sevenz);
        if slot.as_ref().is_none_or(|c| c.pos > offset) {
            *slot = Some(self.sevenz_cursor(f, file)?);
        }
        let Some(cursor) = slot.as_mut() else {
            return Err(ReadError::BadHandle);
        };
        let mut out = vec![0u8; len as usize];
        // The read that reaches the end waits for the CRC check.
        let to_end = offset + len == f.size;
        if let Err(e) = self.sevenz_read(f, cursor, offset, &mut out, to_end) {
            *slot = None;
            return Err(e);
        }
        Ok(out.into())
    }
}
