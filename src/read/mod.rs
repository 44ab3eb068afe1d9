//! The read path: bytes of an indexed file, checked, from the cache or the upstream.
//!
//! [`Reader::read`] finds the file's state (one per inode, shared by every reader of it, in a
//! small LRU: the kernel skips `open` in no-open mode, so reads come without a handle) and
//! hands the read to the source for its storage kind:
//! - a raw file or a tar member ([`raw`]): by range, with read-ahead; a file whose host
//!   published a checksum and that is at most [`INLINE_MAX`] is checked whole first;
//! - a ZIP member up to [`INLINE_MAX`] ([`zip`]): decoded whole and CRC-checked before its
//!   first byte, then answered with slices of the decoded copy ([`decoded`]);
//! - a larger ZIP member ([`zip`]): streamed, its first byte does not wait for the rest; its
//!   CRC is checked as its bytes are read;
//! - a gzip-stored (tar.gz) member ([`gzip`]): decoded from the nearest checkpoint;
//! - a member of a `.tar.bz2`, `.tar.xz` or `.tar.zst` ([`packed`]): decoded from the nearest
//!   stream start before it;
//! - a 7z member ([`sevenz`]): decoded from its block's start by a thread of its own;
//! - a RAR member ([`rar`]): decoded by libarchive from the archive's start (skipping the
//!   members before it) by a thread of its own.
//!
//! The same path decodes an archive inside a compressed archive for the fetcher
//! ([`Reader::member_bytes`], [`crate::fetch::Derive`]): the member as a reader of it would get
//! it, checked, so the inner archive's blob is made of checked bytes only.
//!
//! After the first decode of a small file, the checked files around it whose blocks the cache
//! holds are pushed into the kernel's page cache ([`push`]): a shuffled epoch then finds most
//! files there, as a warm one does.
//!
//! # Invariants
//! - Bytes served are the upstream's bytes or an error: no byte of a member up to
//!   [`INLINE_MAX`] (or of a whole file with a published checksum) is returned before it
//!   matched; a mismatch drops the blocks it came from and fetches them once more, and a second
//!   mismatch is [`ReadError::Corrupt`]. A larger ZIP member's CRC mismatch fails the read that
//!   completes it and every read after.
//! - Errors keep their type up to [`ReadError::errno`]: every reader of a refused block gets
//!   EACCES, a file that changed upstream under its pinned version ESTALE, a reader past its
//!   deadline EIO; a full cache slows reads down and never fails them.
//! - Memory is bounded whatever the number of open files: per-file state lives in an LRU of
//!   [`FILE_STATES`], decoded members in a byte budget ([`decoded::DECODED_BUDGET`]), and a
//!   streamed member keeps at most [`zip::RECENT_MAX`] of recent output. A large member of a
//!   compressed tar or a 7z also keeps its decoder, whose dictionary is the archive's choice:
//!   a few MiB for bzip2 and zstd's usual levels, up to 64 MiB for `xz -9` or `7z -mx9`
//!   (liblzma is held under [`crate::archive::compressed::XZ_MEMLIMIT`]), so sixteen such
//!   members read at once can hold about 1 GiB.

mod ahead;
mod decoded;
mod gzip;
mod packed;
mod push;
mod rar;
mod raw;
mod sevenz;
mod zip;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use lru::LruCache;

use crate::archive::gzip::Checkpoint;
use crate::fetch::{FetchError, Fetcher};
use crate::index::{Blob, Derivation, Entry, Index, IndexError, Location, Storage};

use ahead::ReadAhead;
pub use decoded::DECODED_BUDGET;
pub use gzip::GZ_SPAN;
pub use packed::PACKED_SPAN;
pub use push::PageSink;

/// Members (and checksummed files) up to this size are decoded whole into memory and checked
/// before the first byte is returned: every image format of the catalog but the largest
/// single-frame DICOMs. Larger ones (volumes, slides) stream, and their first byte does not
/// wait for the rest.
pub const INLINE_MAX: u64 = 16 << 20;

/// Per-file states kept: enough for a DataLoader's workers and a few sequential readers of
/// volumes (a large deflated member's state holds up to [`zip::RECENT_MAX`] of recent output),
/// few enough to bound that memory at 128 MiB.
const FILE_STATES: std::num::NonZeroUsize = match std::num::NonZeroUsize::new(16) {
    Some(n) => n,
    None => std::num::NonZeroUsize::MIN,
};

/// Why a read failed. [`ReadError::errno`] is the one mapping to errno values.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// No such file.
    #[error("no such file or directory")]
    NotFound,
    /// A read of a directory.
    #[error("is a directory")]
    IsDir,
    /// The file handle is unknown.
    #[error("bad file handle")]
    BadHandle,
    /// The file's size is not known yet: [`crate::sizes`] learns it, then the read goes on.
    #[error("the file's size is not known yet")]
    NotSized,
    /// The bytes could not be had from the cache or the upstream.
    #[error("dataset {dataset}: reading {member}: {source}")]
    Fetch {
        /// Dataset id.
        dataset: String,
        /// Member path.
        member: String,
        /// Why.
        source: Box<FetchError>,
    },
    /// A member's bytes do not match its checksum, even after a fresh download.
    #[error(
        "dataset {dataset}: {member}: {message}; the upstream file {url} is damaged or changed \
         since medimg indexed it; the dataset is marked changed, and a restart of medimg \
         indexes it again"
    )]
    Corrupt {
        /// Dataset id.
        dataset: String,
        /// Member path.
        member: String,
        /// The blob's URL.
        url: String,
        /// What did not match.
        message: String,
    },
    /// The member uses something medimg cannot decode.
    #[error("dataset {dataset}: {member}: {message}")]
    Unreadable {
        /// Dataset id.
        dataset: String,
        /// Member path.
        member: String,
        /// Why.
        message: String,
    },
    /// The index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The error of a decode another reader led.
    #[error(transparent)]
    Shared(Arc<ReadError>),
}

impl ReadError {
    /// The errno a system call gets for this error.
    pub fn errno(&self) -> i32 {
        match self {
            ReadError::NotFound => libc::ENOENT,
            ReadError::IsDir => libc::EISDIR,
            ReadError::BadHandle => libc::EBADF,
            ReadError::Fetch { source, .. } if source.is_denied() => libc::EACCES,
            // The upstream's bytes are not the indexed version's: changed (or damaged) there.
            ReadError::Fetch { source, .. } if source.is_changed() => libc::ESTALE,
            ReadError::Corrupt { .. } => libc::ESTALE,
            ReadError::Shared(inner) => inner.errno(),
            _ => libc::EIO,
        }
    }

    /// The dataset it concerns, when it names one.
    pub fn dataset(&self) -> Option<&str> {
        match self {
            ReadError::Fetch { dataset, .. }
            | ReadError::Corrupt { dataset, .. }
            | ReadError::Unreadable { dataset, .. } => Some(dataset),
            ReadError::Shared(inner) => inner.dataset(),
            _ => None,
        }
    }

    /// The fetch error behind this one, if any.
    pub fn fetch_error(&self) -> Option<&FetchError> {
        match self {
            ReadError::Fetch { source, .. } => Some(source),
            ReadError::Shared(inner) => inner.fetch_error(),
            _ => None,
        }
    }
}

type Result<T> = std::result::Result<T, ReadError>;

/// What the read path has done since start; [`Reader::stats`] reads it.
#[derive(Debug, Default)]
struct Counters {
    reads: AtomicU64,
    bytes: AtomicU64,
    decodes: AtomicU64,
    pushed_files: AtomicU64,
    pushed_bytes: AtomicU64,
}

/// A snapshot of the read path's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReadStats {
    /// Read requests answered (the kernel's, each up to 1 MiB).
    pub reads: u64,
    /// Bytes they returned.
    pub bytes: u64,
    /// Files decoded and checked whole for a read.
    pub decodes: u64,
    /// Files pushed into the kernel's page cache ahead of their reads.
    pub pushed_files: u64,
    /// Their bytes.
    pub pushed_bytes: u64,
}

impl std::fmt::Display for ReadStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} reads ({} MiB), {} files decoded, {} pushed into the page cache ({} MiB)",
            self.reads,
            self.bytes >> 20,
            self.decodes,
            self.pushed_files,
            self.pushed_bytes >> 20
        )
    }
}

/// What the read path keeps of one file between reads.
#[derive(Debug)]
struct FileState {
    entry: Entry,
    /// Its dataset, the tag its upstream requests are counted under (made once per state,
    /// not per read).
    dataset: Arc<str>,
    /// The entry's size (a file reaches the read path only once its size is known).
    size: u64,
    location: Location,
    blob: Blob,
    /// Where a ZIP member's data starts (read from its local header once, and again after its
    /// blocks were dropped: a damaged header gives a wrong offset).
    data_offset: Mutex<Option<u64>>,
    /// The blob's checkpoints while it is being indexed (the index has them after).
    checkpoints: Option<Arc<Vec<Checkpoint>>>,
    /// The decoder of a large gzip-stored member, where the last read left it.
    gzip: Mutex<Option<gzip::GzCursor>>,
    /// The decoder of a large member of a bzip2, xz or zstd tar, where the last read left it.
    packed: Mutex<Option<packed::PackedCursor>>,
    /// The decoding thread of a large 7z or RAR member, where the last read left it.
    sevenz: Mutex<Option<sevenz::SevenZCursor>>,
    /// The sequential state of a large ZIP member: CRC so far, decoder.
    stream: Mutex<Option<zip::MemberStream>>,
    ahead: Mutex<ReadAhead>,
}

impl FileState {
    fn new(entry: Entry, size: u64, location: Location, blob: Blob) -> FileState {
        FileState {
            dataset: Arc::from(entry.dataset.as_str()),
            entry,
            size,
            location,
            blob,
            data_offset: Mutex::new(None),
            checkpoints: None,
            gzip: Mutex::new(None),
            packed: Mutex::new(None),
            sevenz: Mutex::new(None),
            stream: Mutex::new(None),
            ahead: Mutex::new(ReadAhead::default()),
        }
    }
}

/// The read path. Share it with an `Arc`.
pub struct Reader {
    index: Arc<Index>,
    fetcher: Arc<Fetcher>,
    files: Mutex<LruCache<i64, Arc<FileState>>>,
    /// Open handles (`open` outside no-open mode): the file each one reads.
    handles: Mutex<HashMap<u64, i64>>,
    next_fh: AtomicU64,
    decoded: decoded::Decoded,
    /// Parsed headers of the 7z archives read last, by blob.
    sevenz_headers: Mutex<LruCache<i64, Arc<sevenz_rust2::Archive>>>,
    /// 7z block decoders kept after a small member was read from them, by (blob, block),
    /// oldest first: the next member in archive order continues from there.
    sevenz_blocks: Mutex<Vec<sevenz::KeptBlock>>,
    /// Blobs whose slow solid decoding has been logged (once each: a shuffled reader would
    /// otherwise get a line per member).
    slow_solid: Mutex<std::collections::HashSet<i64>>,
    /// Large members found damaged since start, with what did not match.
    damaged: Mutex<HashMap<i64, String>>,
    /// The next id of a member decoded for the archive it is ([`Reader::member_bytes`]).
    next_synthetic: std::sync::atomic::AtomicI64,
    /// Pushes checked neighbours of cold reads into the kernel's page cache, once started.
    pusher: OnceLock<push::Pusher>,
    counters: Counters,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("decoded", &self.decoded)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Reader {
    /// A read path over the files of `index`, fetched through `fetcher`.
    pub fn new(index: Arc<Index>, fetcher: Arc<Fetcher>) -> Reader {
        Reader {
            index,
            fetcher,
            files: Mutex::new(LruCache::new(FILE_STATES)),
            handles: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            decoded: decoded::Decoded::new(DECODED_BUDGET),
            sevenz_blocks: Mutex::new(Vec::new()),
            slow_solid: Mutex::new(std::collections::HashSet::new()),
            sevenz_headers: Mutex::new(LruCache::new(
                std::num::NonZeroUsize::new(sevenz::HEADERS).unwrap_or(std::num::NonZeroUsize::MIN),
            )),
            damaged: Mutex::new(HashMap::new()),
            next_synthetic: std::sync::atomic::AtomicI64::new(-1),
            pusher: OnceLock::new(),
            counters: Counters::default(),
        }
    }

    /// What the read path has done since start.
    pub fn stats(&self) -> ReadStats {
        let c = &self.counters;
        ReadStats {
            reads: c.reads.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            decodes: c.decodes.load(Ordering::Relaxed),
            pushed_files: c.pushed_files.load(Ordering::Relaxed),
            pushed_bytes: c.pushed_bytes.load(Ordering::Relaxed),
        }
    }

    /// Hand the checked bytes of files near each cold-read small file to `sink` from now on
    /// (see [`push`]).
    pub fn start_push(self: &Arc<Self>, sink: Arc<dyn PageSink>) {
        let pusher = push::Pusher::start(Arc::downgrade(self), sink);
        let _ = self.pusher.set(pusher);
    }

    /// Open the file of index row `row`; returns a handle for [`Reader::read`].
    pub fn open(&self, row: i64) -> Result<u64> {
        self.state(row)?;
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        lock(&self.handles).insert(fh, row);
        Ok(fh)
    }

    /// Forget handle `fh`.
    pub fn release(&self, fh: u64) {
        lock(&self.handles).remove(&fh);
    }

    /// Up to `size` bytes at `offset` of the file of index row `row`, through handle `fh`
    /// from [`Reader::open`], or 0 when the kernel did not open the file (no-open mode).
    pub fn read(&self, row: i64, fh: u64, offset: u64, size: u32) -> Result<Bytes> {
        if fh != 0 && lock(&self.handles).get(&fh) != Some(&row) {
            return Err(ReadError::BadHandle);
        }
        let f = self.state(row)?;
        if offset >= f.size {
            return Ok(Bytes::new());
        }
        let len = (size as u64).min(f.size - offset);
        self.counters.reads.fetch_add(1, Ordering::Relaxed);
        self.counters.bytes.fetch_add(len, Ordering::Relaxed);
        self.read_state(f, offset, len)
    }

    /// `len` bytes at `offset` (inside the file) of the file of state `f`.
    fn read_state(&self, f: Arc<FileState>, offset: u64, len: u64) -> Result<Bytes> {
        let inline = f.size <= INLINE_MAX;
        // Whatever this read asks of the upstream counts for its dataset (`medimg status`).
        let tag = Some(f.dataset.clone());
        crate::source::stats::on_behalf_of_tag(tag, || match f.location.storage {
            Storage::Raw if inline && f.blob.checksum.is_some() => {
                self.inline(&f, offset, len, || self.raw_checked(&f).map(Bytes::from))
            }
            Storage::Raw => self.read_raw(&f, offset, len),
            Storage::Zip { .. } if inline => self.inline(&f, offset, len, || self.zip_checked(&f)),
            Storage::Zip { .. } => self.read_large_zip(&f, offset, len),
            Storage::Gzip if inline => {
                self.inline(&f, offset, len, || self.gzip_whole(&f).map(Bytes::from))
            }
            Storage::Gzip => self.read_gzip(&f, offset, len),
            Storage::Packed(c) if inline => self.inline(&f, offset, len, || {
                self.packed_whole(&f, c).map(Bytes::from)
            }),
            Storage::Packed(c) => self.read_packed(&f, c, offset, len),
            Storage::SevenZ { file } if inline => self.inline(&f, offset, len, || {
                self.sevenz_whole(&f, file).map(Bytes::from)
            }),
            Storage::SevenZ { file } => self.read_sevenz(&f, file, offset, len),
            Storage::Rar { entry, .. } if inline => self.inline(&f, offset, len, || {
                self.rar_whole(&f, entry).map(Bytes::from)
            }),
            Storage::Rar { entry, .. } => self.read_rar(&f, entry, offset, len),
        })
    }

    /// A range of a file decoded and checked whole (`decode`), from the shared decoded copy.
    fn inline(
        &self,
        f: &Arc<FileState>,
        offset: u64,
        len: u64,
        decode: impl FnOnce() -> Result<Bytes>,
    ) -> Result<Bytes> {
        let size = f.size;
        // A file read whole in one request (most images: the kernel asks for up to 1 MiB at a
        // time) needs no copy kept for the reads after it.
        let keep = !(offset == 0 && len == size);
        let deadline = Instant::now() + self.fetcher.deadline();
        let content = self.decoded.get_or_decode(
            f.entry.id,
            keep,
            deadline,
            || {
                let content = decode()?;
                self.counters.decodes.fetch_add(1, Ordering::Relaxed);
                // Its block is in hand now: so are its neighbours (a member decoded for the
                // archive it is has none in the index).
                if let Some(p) = self.pusher.get().filter(|_| f.entry.id > 0) {
                    p.offer(f.clone(), &self.fetcher);
                }
                Ok(content)
            },
            || self.fetch_err(f, self.timed_out(f)),
        )?;
        self.decoded.served(f.entry.id, len, size);
        Ok(share(&content, offset, len))
    }

    fn timed_out(&self, f: &FileState) -> FetchError {
        FetchError::TimedOut {
            url: f.blob.url().to_string(),
            after: self.fetcher.deadline(),
        }
    }

    /// The state of the file at index row `row`, from the LRU or made now.
    fn state(&self, row: i64) -> Result<Arc<FileState>> {
        if let Some(f) = lock(&self.files).get(&row) {
            return Ok(f.clone());
        }
        let entry = self.index.entry(row)?.ok_or(ReadError::NotFound)?;
        let Some(location) = entry.location else {
            return Err(ReadError::IsDir);
        };
        let Some(size) = entry.size else {
            return Err(ReadError::NotSized);
        };
        let blob = self
            .index
            .blob(location.blob)?
            .ok_or_else(|| ReadError::Unreadable {
                dataset: entry.dataset.clone(),
                member: entry.name.clone(),
                message: "its archive is no longer in the index".into(),
            })?;
        let f = Arc::new(FileState::new(entry, size, location, blob));
        Ok(lock(&self.files).get_or_insert(row, || f).clone())
    }

    /// Note a read of `[at, at + len)` of the file's blob and, while reads are sequential,
    /// have the blocks after it up to `limit` fetched in the background.
    fn read_ahead(&self, f: &FileState, at: u64, len: u64, limit: u64) {
        let window = lock(&f.ahead).note(at, len, self.fetcher.block_size(), limit);
        if let Some((start, len)) = window {
            self.fetcher.prefetch(&f.blob, start, len);
        }
    }

    /// The file's path inside its dataset, for messages.
    fn member_path(&self, f: &FileState) -> String {
        let mut parts = vec![f.entry.name.clone()];
        let mut p = f.entry.parent;
        while let Ok(Some(e)) = self.index.entry(p) {
            if e.parent == 0 {
                break;
            }
            parts.push(e.name);
            p = e.parent;
        }
        parts.reverse();
        parts.join("/")
    }

    fn fetch_err(&self, f: &FileState, source: FetchError) -> ReadError {
        ReadError::Fetch {
            dataset: f.entry.dataset.clone(),
            member: self.member_path(f),
            source: Box::new(source),
        }
    }

    fn corrupt(&self, f: &FileState, message: String) -> ReadError {
        ReadError::Corrupt {
            dataset: f.entry.dataset.clone(),
            member: self.member_path(f),
            url: f.blob.url().to_string(),
            message,
        }
    }

    fn unreadable(&self, f: &FileState, message: String) -> ReadError {
        ReadError::Unreadable {
            dataset: f.entry.dataset.clone(),
            member: self.member_path(f),
            message,
        }
    }

    /// A compressed member's decoding starts here: the nearest decompression checkpoint at or
    /// before uncompressed offset `target` of `f`'s blob, and the blob's bytes from that
    /// checkpoint on; with `ahead`, the compressed blocks after the one being decoded are
    /// fetched in the background (a large member read on; a small one would only waste them).
    fn resume_at(
        &self,
        f: &FileState,
        target: u64,
        ahead: bool,
    ) -> Result<(crate::fetch::BlobReader, crate::archive::gzip::Checkpoint)> {
        let cp = self.checkpoint_before(f, target)?.ok_or_else(|| {
            self.unreadable(
                f,
                "its archive has no decompression checkpoints in the index".into(),
            )
        })?;
        let mut input =
            crate::fetch::BlobReader::new(self.fetcher.clone(), f.blob.clone(), cp.input);
        if ahead {
            input = input.with_read_ahead(f.blob.size());
        }
        Ok((input, cp))
    }

    /// The last checkpoint at or before uncompressed offset `target` of `f`'s blob.
    fn checkpoint_before(&self, f: &FileState, target: u64) -> Result<Option<Checkpoint>> {
        match &f.checkpoints {
            Some(cps) => Ok(cps.iter().rev().find(|c| c.out <= target).cloned()),
            None => Ok(self.index.checkpoint_before(f.blob.id, target)?),
        }
    }

    /// The bytes of the member at `location` of `blob` (`size` of them, `member` in dataset
    /// `dataset`), from its start, as a reader of it gets them: checked, a mismatch an error.
    /// For an archive inside it to be decoded into the cache ([`crate::fetch::Derive`]);
    /// `checkpoints` stand in for the index's while `blob` is being indexed (its id is 0).
    pub fn member_bytes(
        &self,
        mut blob: Blob,
        mut location: Location,
        size: u64,
        dataset: &str,
        member: &str,
        checkpoints: Option<Arc<Vec<Checkpoint>>>,
    ) -> MemberBytes<'_> {
        // The read path keeps state by blob and file id: negative ids are this decoding's
        // own, and name nothing in the index.
        let synthetic = self.next_synthetic.fetch_sub(1, Ordering::Relaxed);
        if blob.id == 0 {
            blob.id = synthetic;
        }
        location.blob = blob.id;
        let entry = Entry {
            id: synthetic,
            parent: 0,
            name: member.to_string(),
            size: Some(size),
            mtime: 0,
            location: Some(location),
            dataset: dataset.to_string(),
            links: 0,
        };
        let mut state = FileState::new(entry, size, location, blob);
        state.checkpoints = checkpoints;
        MemberBytes {
            reader: self,
            f: Arc::new(state),
            at: 0,
            buf: Bytes::new(),
        }
    }

    /// A decoder's I/O error: the fetch error inside it keeps its type.
    fn decode_err(&self, f: &FileState, e: std::io::Error) -> ReadError {
        match e.into_inner().map(|inner| inner.downcast::<FetchError>()) {
            Some(Ok(source)) => self.fetch_err(f, *source),
            Some(Err(inner)) => self.unreadable(f, format!("decompressing: {inner}")),
            None => self.unreadable(f, "decompressing failed".into()),
        }
    }

    /// A file's content from `decode` (its content, or what did not match its check); a
    /// mismatch is logged, `drop_blocks` drops the cached blocks it came from (the damage may
    /// be in our cache) and it is decoded once more; a second mismatch is
    /// [`ReadError::Corrupt`].
    fn checked_twice<T>(
        &self,
        f: &FileState,
        decode: impl Fn() -> Result<std::result::Result<T, String>>,
        drop_blocks: impl Fn(),
    ) -> Result<T> {
        let mut last = String::new();
        for round in 0..2 {
            match decode()? {
                Ok(content) => return Ok(content),
                Err(mismatch) => last = mismatch,
            }
            tracing::warn!(
                dataset = %f.entry.dataset,
                member = %self.member_path(f),
                round,
                "file failed its check ({last}); dropping its cached blocks"
            );
            drop_blocks();
        }
        Err(self.corrupt(f, last))
    }

    /// Decoded members held in memory, and their bytes (for tests and statistics).
    pub fn decoded_usage(&self) -> (usize, u64) {
        (self.decoded.members(), self.decoded.bytes())
    }
}

/// The bytes of a member from its start ([`Reader::member_bytes`]); an error of the read path
/// comes out as an I/O error carrying its [`FetchError`].
pub struct MemberBytes<'a> {
    reader: &'a Reader,
    f: Arc<FileState>,
    at: u64,
    buf: Bytes,
}

/// A large member is read on in pieces of this size.
const MEMBER_PIECE: u64 = 1 << 20;

impl std::io::Read for MemberBytes<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.buf.is_empty() {
            let left = self.f.size - self.at;
            if left == 0 {
                return Ok(0);
            }
            // A member read whole in one piece is decoded, checked and not kept.
            let len = if self.f.size <= INLINE_MAX {
                left
            } else {
                left.min(MEMBER_PIECE)
            };
            self.buf = self
                .reader
                .read_state(self.f.clone(), self.at, len)
                .map_err(|e| std::io::Error::other(into_fetch_error(e, &self.f)))?;
            if self.buf.is_empty() {
                return Err(std::io::Error::other(FetchError::Derive {
                    url: self.f.entry.name.clone(),
                    message: format!("the member ends at byte {}", self.at),
                }));
            }
            self.at += self.buf.len() as u64;
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        bytes::Buf::advance(&mut self.buf, n);
        Ok(n)
    }
}

/// A read path error as the fetcher's: a fetch error keeps its type (a refusal stays one).
fn into_fetch_error(e: ReadError, f: &FileState) -> FetchError {
    match e {
        ReadError::Fetch { source, .. } => *source,
        e => FetchError::Derive {
            url: format!("{}!/{}", f.blob.url(), f.entry.name),
            message: e.to_string(),
        },
    }
}

impl crate::fetch::Derive for Reader {
    fn member(
        &self,
        from: &Derivation,
        size: u64,
    ) -> std::result::Result<Box<dyn std::io::Read + '_>, FetchError> {
        let gone = |message: String| FetchError::Derive {
            url: from.member.clone(),
            message,
        };
        let blob = self
            .index
            .blob(from.location.blob)
            .map_err(|e| gone(e.to_string()))?
            .filter(|b| b.parts.first().map(|p| p.key) == Some(from.outer))
            .ok_or_else(|| {
                gone(
                    "the archive it is inside is no longer in the index; a restart of medimg \
                     indexes its dataset again"
                        .into(),
                )
            })?;
        Ok(Box::new(self.member_bytes(
            blob,
            from.location,
            size,
            &from.dataset,
            &from.member,
            None,
        )))
    }
}

/// `len` bytes of `b` at `offset` (fewer at its end), sharing its memory.
fn share(b: &Bytes, offset: u64, len: u64) -> Bytes {
    let start = usize::try_from(offset).unwrap_or(usize::MAX).min(b.len());
    let end = start
        .saturating_add(usize::try_from(len).unwrap_or(usize::MAX))
        .min(b.len());
    b.slice(start..end)
}
