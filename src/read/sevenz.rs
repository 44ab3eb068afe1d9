//! Members of a 7z archive: decoded by a thread of their own from the start of their block
//! (see [`crate::archive::sevenz`]), which hands over the bytes of the member asked for and of
//! every member after it in the block, tagged with member and offset, over a small bounded
//! channel.
//!
//! The thread owns what the library borrows (the parsed archive, a cursor over the blob), so
//! a decoder can be kept between reads: a large member keeps its own (a sequential reader
//! decodes the block once, a seek backwards starts again from the block's start), and after a
//! small member is read whole its block's decoder is kept ([`BLOCK_STREAMS`] of them), so the
//! next member in archive order (`cp -r`, `find`, `medimg prefetch`, a sorted DataLoader)
//! continues from there instead of decoding the block from its start again. Dropping a cursor
//! ends its thread at its next hand-over; while it decodes the members before the one asked
//! for, it hands over empty heartbeats, so a reader waits at most the deadline for progress,
//! not for the whole block.
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
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
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
/// Block decoders kept for the small members after the one just read (each a thread waiting
/// to hand over its next chunk).
pub(super) const BLOCK_STREAMS: usize = 4;

/// One blob's bytes through the cache, owned (the decoding thread outlives the read). The
/// first fetch error is kept, so the reader gets it with its type (EACCES, ESTALE), not as
/// the library's text.
pub(super) struct OwnedBlob {
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
pub(super) enum Failure {
    /// Its bytes could not be fetched.
    Fetch(Arc<FetchError>),
    /// The archive is damaged or unreadable.
    Other(String),
}

/// What a decoding thread hands over: `(member, offset in it, bytes)` (no bytes: still
/// decoding the members before the one asked for), or why it stopped.
pub(super) type Chunk = std::result::Result<(u32, u64, Vec<u8>), Failure>;

/// A thread decoding a block from a member on, through the end of the block.
#[derive(Debug)]
pub(super) struct SevenZCursor {
    rx: Receiver<Chunk>,
    /// A chunk received and not wholly consumed: member, its offset, bytes, bytes used.
    pending: Option<(u32, u64, Vec<u8>, usize)>,
    /// The member and offset of the next byte this cursor hands out.
    at: (u32, u64),
}

/// A block decoder kept after a small member was read from it: (blob, block) and the cursor.
pub(super) type KeptBlock = ((i64, Option<usize>), SevenZCursor);

/// How a cursor read ended short.
enum Short {
    Failed(Failure),
    TimedOut,
    /// The member has fewer bytes than asked, or more than indexed.
    Size(String),
}

impl SevenZCursor {
    /// Whether this cursor can still reach byte `from` of member `file`.
    fn reaches(&self, file: u32, from: u64) -> bool {
        self.at.0 < file || (self.at.0 == file && self.at.1 <= from)
    }

    /// Fill `out` with member `file` from byte `from`; with `to_end`, `out` ends the member
    /// and the member's CRC is waited for (the first byte of a later member, or the block's
    /// end, comes only after it passed).
    fn take(
        &mut self,
        file: u32,
        from: u64,
        out: &mut [u8],
        to_end: bool,
        deadline: Duration,
    ) -> std::result::Result<(), Short> {
        let mut filled = 0usize;
        loop {
            if let Some((i, off, data, used)) = self.pending.as_mut() {
                let (i, pos, avail) = (*i, *off + *used as u64, data.len() - *used);
                if i < file || avail == 0 {
                    self.pending = None;
                    continue;
                }
                if i > file {
                    if filled == out.len() {
                        return Ok(());
                    }
                    return Err(Short::Size(format!(
                        "the member ends at byte {} of its indexed {}",
                        from + filled as u64,
                        from + out.len() as u64
                    )));
                }
                let want = from + filled as u64;
                if pos < want {
                    *used += (want - pos).min(avail as u64) as usize;
                    self.at = (i, pos + (want - pos).min(avail as u64));
                    continue;
                }
                if filled == out.len() {
                    if to_end {
                        return Err(Short::Size("the member is longer than indexed".into()));
                    }
                    return Ok(());
                }
                let n = avail.min(out.len() - filled);
                out[filled..filled + n].copy_from_slice(&data[*used..*used + n]);
                *used += n;
                filled += n;
                self.at = (i, pos + n as u64);
                continue;
            }
            if filled == out.len() && !to_end {
                return Ok(());
            }
            match self.rx.recv_timeout(deadline) {
                Ok(Ok((i, off, data))) => {
                    if data.is_empty() {
                        continue;
                    }
                    self.pending = Some((i, off, data, 0));
                }
                Ok(Err(why)) => return Err(Short::Failed(why)),
                Err(RecvTimeoutError::Timeout) => return Err(Short::TimedOut),
                Err(RecvTimeoutError::Disconnected) if filled == out.len() => return Ok(()),
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(Short::Size(format!(
                        "the member ends at byte {} of its indexed {}",
                        from + filled as u64,
                        from + out.len() as u64
                    )));
                }
            }
        }
    }
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
        let size = f.blob.size();
        self.spawn_cursor(f, file, "medimg-7z", move |src, tx| {
            let mut cursor = BufReader::with_capacity(256 << 10, BlobCursor::new(src, size));
            sevenz::decode_block_from(&archive, &mut cursor, file, &mut |i, o, b| {
                tx.send(Ok((i, o, b.to_vec()))).is_ok()
            })
        })
    }

    /// A thread running `body` over `f`'s blob, which hands over member `file` and the
    /// members after it (see [`SevenZCursor`]); its fetch errors keep their type.
    pub(super) fn spawn_cursor(
        &self,
        f: &FileState,
        file: u32,
        name: &str,
        body: impl FnOnce(OwnedBlob, &SyncSender<Chunk>) -> std::result::Result<(), ArchiveError>
        + Send
        + 'static,
    ) -> Result<SevenZCursor> {
        let (tx, rx) = sync_channel::<Chunk>(IN_FLIGHT);
        let failed = Arc::new(Mutex::new(None));
        let src = OwnedBlob {
            fetcher: self.fetcher.clone(),
            blob: f.blob.clone(),
            failed: failed.clone(),
        };
        let tag = Some(f.dataset.clone());
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                crate::source::stats::on_behalf_of_tag(tag, || {
                    if let Err(e) = body(src, &tx) {
                        let why = match lock(&failed).take() {
                            Some(fe) => Failure::Fetch(fe),
                            None => Failure::Other(e.to_string()),
                        };
                        let _ = tx.send(Err(why));
                    }
                })
            })
            .map_err(|e| self.unreadable(f, format!("cannot start a decoder: {e}")))?;
        Ok(SevenZCursor {
            rx,
            pending: None,
            at: (file, 0),
        })
    }

    /// Fill `out` with member `file` of `f` from byte `from` through cursor `c`.
    fn sevenz_take(
        &self,
        f: &FileState,
        c: &mut SevenZCursor,
        file: u32,
        from: u64,
        out: &mut [u8],
        to_end: bool,
    ) -> Result<()> {
        let deadline = self.fetcher.deadline();
        c.take(file, from, out, to_end, deadline)
            .map_err(|short| match short {
                Short::Failed(Failure::Fetch(fe)) => self.fetch_err(f, FetchError::Shared(fe)),
                Short::Failed(Failure::Other(msg)) | Short::Size(msg) => self.unreadable(f, msg),
                Short::TimedOut => self.fetch_err(
                    f,
                    FetchError::TimedOut {
                        url: f.blob.url().to_string(),
                        after: deadline,
                    },
                ),
            })
    }

    /// The whole of a member up to [`super::INLINE_MAX`], its CRC checked. The block's decoder
    /// is kept (for [`BLOCK_STREAMS`] blocks), so reading a folder's members in archive
    /// order decodes each block once.
    pub(super) fn sevenz_whole(&self, f: &FileState, file: u32) -> Result<Vec<u8>> {
        let block = self
            .sevenz_header(f)?
            .stream_map
            .file_block_index
            .get(file as usize)
            .copied()
            .flatten();
        self.cursor_whole(f, file, block, "7z member", &|| self.sevenz_cursor(f, file))
    }

    /// The whole of member `file` through a kept decoder of `(f's blob, block)` that can
    /// still reach it, or a new one (`make`); the decoder is kept afterwards.
    pub(super) fn cursor_whole(
        &self,
        f: &FileState,
        file: u32,
        block: Option<usize>,
        what: &str,
        make: &dyn Fn() -> Result<SevenZCursor>,
    ) -> Result<Vec<u8>> {
        let started = Instant::now();
        let block_key = (f.blob.id, block);
        let kept = {
            let mut streams = lock(&self.sevenz_blocks);
            let hit = streams
                .iter()
                .position(|(b, c)| *b == block_key && c.reaches(file, 0));
            hit.map(|i| streams.remove(i).1)
        };
        let mut c = match kept {
            Some(c) => c,
            None => make()?,
        };
        let mut out = vec![0u8; f.size as usize];
        self.sevenz_take(f, &mut c, file, 0, &mut out, true)?;
        {
            let mut streams = lock(&self.sevenz_blocks);
            if streams.len() >= BLOCK_STREAMS {
                streams.remove(0);
            }
            streams.push((block_key, c));
        }
        if started.elapsed() > Duration::from_secs(5) && lock(&self.slow_solid).insert(f.blob.id) {
            tracing::info!(
                dataset = %f.entry.dataset,
                member = %self.member_path(f),
                "{what} decoded in {:.1} s (a solid archive is decoded from its start; read \
                 it in order, or copy it out, for speed; said once per archive)",
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
        self.read_cursor(f, file, offset, len, &|| self.sevenz_cursor(f, file))
    }

    /// A range of a large member through the file's own decoder, or a new one (`make`).
    pub(super) fn read_cursor(
        &self,
        f: &FileState,
        file: u32,
        offset: u64,
        len: u64,
        make: &dyn Fn() -> Result<SevenZCursor>,
    ) -> Result<bytes::Bytes> {
        let mut slot = lock(&f.sevenz);
        if slot.as_ref().is_none_or(|c| !c.reaches(file, offset)) {
            *slot = Some(make()?);
        }
        let Some(cursor) = slot.as_mut() else {
            return Err(ReadError::BadHandle);
        };
        let mut out = vec![0u8; len as usize];
        // The read that reaches the end waits for the CRC check.
        let to_end = offset + len == f.size;
        if let Err(e) = self.sevenz_take(f, cursor, file, offset, &mut out, to_end) {
            *slot = None;
            return Err(e);
        }
        Ok(out.into())
    }
}
