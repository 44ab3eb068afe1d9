//! The block cache: fixed-size blocks of upstream blobs on local disk, under a hard size limit.
//!
//! Layout under the cache directory: `blocks/<blob key>/<block index>` holds the bytes,
//! `blocks.sqlite` one row per block (length, CRC-32, last-use tick), `tmp/` blocks being written.
//!
//! Invariants:
//! - **Hard limit.** Space is reserved before a block is written; the reservation evicts least
//!   recently used blocks first. When only pinned blocks are left the block is served to its
//!   readers and not kept: a full cache slows reads down, it never fails them. The sum of the
//!   lengths of stored and reserved blocks never exceeds the limit, and a block stored twice
//!   (a whole download, then the fetch that asked for it) is counted once.
//! - **Never evict what a read uses.** [`BlockCache::pin`] and [`Staged::commit`] return a
//!   [`Pinned`] guard; a pinned block is never chosen for eviction.
//! - **Nothing partial is served.** A block is written to `tmp/`, its row recorded, then renamed
//!   into place. The first time a block is used after start it is checked against its recorded
//!   length, and against its CRC unless the caller checks the bytes itself ([`Check::Length`]:
//!   ZIP members carry their own CRC, and reading every block twice after a restart would halve
//!   the speed); a block that fails is dropped and fetched again.
//! - **A row for every block file.** The file of an evicted or removed block goes at once; its
//!   row goes later, outside the state lock, and only if the block has not been stored again
//!   meanwhile (present, or being written): the new row is what a restart counts its file by.
//! - **No fetching here.** The cache stores and serves; the single flight that makes one
//!   request of many readers' misses is the fetcher's ([`crate::flight`]), so a fetch error
//!   reaches every waiter with its type.
//! - **Readers never wait for the disk.** A fetched block is served from memory to the threads
//!   that waited for it while it is being written (a buffered write into fresh page-cache pages
//!   ran at 0.6-1 GB/s here, and a sequential reader stalled on it for every block). Block
//!   files are written with `O_DIRECT`, so they take no page cache; the last blocks fetched
//!   stay in memory (48 MiB), older ones are read from their files. A block in memory is
//!   written from, and read through [`Pinned::share`] from, the buffer it was received in.
//! - **Restart without a rescan.** The LRU order is loaded from `blocks.sqlite`; the block files
//!   themselves are not listed. Use ticks are flushed in batches, so after a crash the order is
//!   at worst slightly stale.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use lru::LruCache;
use rusqlite::{Connection, params};

use crate::block::{ALIGN, BlockBuf};

/// Identifies one blob's bytes: a hash of its URL, size and validator, so a changed upstream
/// object never shares blocks with its earlier version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct BlobKey(pub u128);

impl BlobKey {
    /// The key of the blob at `url` with this size and validator (FNV-1a, 128 bits).
    pub fn derive(url: &str, size: u64, validator: &str) -> BlobKey {
        let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
        for b in url
            .bytes()
            .chain([0])
            .chain(size.to_le_bytes())
            .chain(validator.bytes())
        {
            h ^= b as u128;
            h = h.wrapping_mul(0x0000000001000000000000000000013B);
        }
        BlobKey(h)
    }

    /// Parse the 32-hex-digit form.
    pub fn parse(s: &str) -> Option<BlobKey> {
        u128::from_str_radix(s, 16).ok().map(BlobKey)
    }
}

impl fmt::Display for BlobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// How a block is checked the first time it is used after start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Its length and CRC-32 (the bytes have no other check).
    Crc,
    /// Its length only: the caller checks the bytes (a ZIP member's CRC).
    Length,
}

/// One block of one blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockKey {
    /// The blob.
    pub blob: BlobKey,
    /// Block number: bytes `[index * block_size, (index + 1) * block_size)` of the blob.
    pub index: u64,
}

/// Why the cache failed.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A file operation in the cache directory failed.
    #[error("cache {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The cache database failed.
    #[error("cache database {path}: {source}")]
    Db {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// No room: everything left is in use by reads.
    #[error(
        "cache full: {need} more bytes do not fit in the {limit}-byte limit while {pinned} bytes are in use by open reads; raise --cache-size"
    )]
    Full {
        /// The configured limit.
        limit: u64,
        /// Bytes asked for.
        need: u64,
        /// Bytes pinned.
        pinned: u64,
    },
    /// A block's bytes are not what they should be (shorter than asked, past its end).
    #[error("{0}")]
    Fetch(String),
}

#[derive(Debug, Clone, Copy)]
struct Meta {
    len: u64,
    crc: u32,
}

struct State {
    /// Present blocks, most recently used first.
    lru: LruCache<BlockKey, Meta>,
    /// Bytes of present blocks plus reservations.
    used: u64,
    pins: HashMap<BlockKey, u32>,
    /// Blocks whose file was checked since start.
    verified: HashSet<BlockKey>,
    /// Blocks used since the last flush of ticks.
    touched: HashMap<BlockKey, u64>,
    /// Blocks with space reserved whose write is not recorded yet, and by how many writers.
    storing: HashMap<BlockKey, u32>,
}

impl State {
    /// One writer of `key` is done (its block recorded, or its reservation given back).
    fn stored(&mut self, key: BlockKey) {
        if let Some(n) = self.storing.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                self.storing.remove(&key);
            }
        }
    }
}

/// Recently fetched blocks in memory, least recently used dropped first.
struct Recent {
    blocks: LruCache<BlockKey, Arc<BlockBuf>>,
    bytes: u64,
}

impl Default for Recent {
    fn default() -> Recent {
        Recent {
            blocks: LruCache::unbounded(),
            bytes: 0,
        }
    }
}

impl Recent {
    fn put(&mut self, key: BlockKey, data: Arc<BlockBuf>) {
        self.bytes += data.len() as u64;
        if let Some(old) = self.blocks.put(key, data) {
            self.bytes -= old.len() as u64;
        }
        while self.bytes > RECENT_BYTES {
            match self.blocks.pop_lru() {
                Some((_, old)) => self.bytes -= old.len() as u64,
                None => break,
            }
        }
    }

    fn remove(&mut self, key: &BlockKey) {
        if let Some(old) = self.blocks.pop(key) {
            self.bytes -= old.len() as u64;
        }
    }
}

/// Memory for [`Recent`] blocks: the read-ahead window (8 blocks of 4 MiB) and the blocks being
/// read, with room to spare, well inside the daemon's 256 MB budget.
const RECENT_BYTES: u64 = 48 << 20;

/// The block cache. Share it with an `Arc`.
pub struct BlockCache {
    dir: PathBuf,
    limit: u64,
    db_path: PathBuf,
    db: Mutex<Connection>,
    state: Mutex<State>,
    /// Fetched blocks being written: their space is reserved, their bytes served from here.
    writing: Mutex<HashMap<BlockKey, Arc<BlockBuf>>>,
    /// The last blocks fetched, kept in memory after their write, up to [`RECENT_BYTES`]: a
    /// read-ahead block is read moments after it arrives, and its file is not in the page cache.
    recent: Mutex<Recent>,
    /// Open block files, so that a read costs a `pread`, not an `open` as well.
    files: Mutex<LruCache<BlockKey, Arc<fs::File>>>,
    tick: AtomicU64,
    tmp_seq: AtomicU64,
    /// Whether block files are written with `O_DIRECT` (cleared when the filesystem refuses).
    direct: std::sync::atomic::AtomicBool,
    /// Aligned buffers for `O_DIRECT` writes, reused.
    direct_bufs: Mutex<Vec<Vec<u8>>>,
    /// Lookups and evictions since start.
    counters: Counters,
    /// Blocks that could not be kept, logged once a minute.
    unkept: crate::logs::Summarised,
}

#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    hit_bytes: AtomicU64,
    misses: AtomicU64,
    fetched: AtomicU64,
    fetched_bytes: AtomicU64,
    evicted: AtomicU64,
    evicted_bytes: AtomicU64,
    not_kept: AtomicU64,
}

/// What the cache has done since start.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CacheStats {
    /// Block lookups the cache answered (reads the kernel's page cache did not).
    pub hits: u64,
    /// The bytes of the blocks they found.
    pub hit_bytes: u64,
    /// Block lookups it could not answer (the block was then fetched, or joined a fetch).
    pub misses: u64,
    /// Blocks that came from upstream into the cache.
    pub fetched: u64,
    /// Their bytes.
    pub fetched_bytes: u64,
    /// Blocks evicted to make room.
    pub evicted: u64,
    /// Their bytes.
    pub evicted_bytes: u64,
    /// Blocks served but not kept: writing them failed (a full or failing filesystem).
    pub not_kept: u64,
}

impl fmt::Debug for BlockCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockCache")
            .field("dir", &self.dir)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

/// A block held present until the guard is dropped.
pub struct Pinned<'a> {
    cache: &'a BlockCache,
    key: BlockKey,
    len: u64,
    /// The bytes, when the block was just fetched: they are read from memory, not its file.
    bytes: Option<Arc<BlockBuf>>,
}

impl fmt::Debug for Pinned<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pinned({:?})", self.key)
    }
}

impl Pinned<'_> {
    /// The block's length.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for an empty block (never stored, but keeps clippy's `len` rule).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `len` bytes at `offset` within the block.
    pub fn read(&self, offset: u64, len: u64) -> Result<Vec<u8>, CacheError> {
        let mut buf = Vec::new();
        self.read_into(offset, len, &mut buf)?;
        Ok(buf)
    }

    /// `len` bytes at `offset` within the block without a copy, when the block is in memory.
    pub fn share(&self, offset: u64, len: u64) -> Option<bytes::Bytes> {
        let start = usize::try_from(offset).ok()?;
        BlockBuf::share(
            self.bytes.as_ref()?,
            start..start.checked_add(usize::try_from(len).ok()?)?,
        )
    }

    /// Append `len` bytes at `offset` within the block to `out` (no intermediate copy).
    pub fn read_into(&self, offset: u64, len: u64, out: &mut Vec<u8>) -> Result<(), CacheError> {
        if let Some(bytes) = &self.bytes {
            let range = usize::try_from(offset)
                .ok()
                .zip(usize::try_from(offset + len).ok())
                .and_then(|(a, b)| bytes.as_slice().get(a..b));
            let Some(range) = range else {
                return Err(CacheError::Fetch(format!(
                    "read of {len} bytes at {offset} past the end of a {}-byte block",
                    bytes.len()
                )));
            };
            out.extend_from_slice(range);
            return Ok(());
        }
        let path = self.cache.block_path(self.key);
        let io = |source| CacheError::Io {
            path: path.clone(),
            source,
        };
        let cached = lock(&self.cache.files).get(&self.key).cloned();
        let f = match cached {
            Some(f) => f,
            None => {
                let f = Arc::new(fs::File::open(&path).map_err(io)?);
                lock(&self.cache.files).put(self.key, f.clone());
                f
            }
        };
        let start = out.len();
        out.resize(start + len as usize, 0);
        f.read_exact_at(&mut out[start..], offset).map_err(io)?;
        Ok(())
    }
}

impl Drop for Pinned<'_> {
    fn drop(&mut self) {
        let mut st = self.cache.lock_state();
        if let Some(n) = st.pins.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                st.pins.remove(&self.key);
            }
        }
    }
}

/// Fetched bytes of a block on their way into the cache ([`BlockCache::stage`]).
pub struct Staged<'a> {
    cache: &'a BlockCache,
    key: BlockKey,
    bytes: Arc<BlockBuf>,
    /// The blocks evicted to make room, when room was reserved (else the bytes are only served).
    reserved: Option<Vec<BlockKey>>,
}

impl fmt::Debug for Staged<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Staged({:?}, stored: {})",
            self.key,
            self.reserved.is_some()
        )
    }
}

impl<'a> Staged<'a> {
    /// The bytes, for readers waiting on the fetch.
    pub fn bytes(&self) -> Arc<BlockBuf> {
        self.bytes.clone()
    }

    /// Write the block (if room was reserved) and record it; the bytes in hand, pinned.
    pub fn commit(mut self) -> Pinned<'a> {
        let (cache, key, bytes) = (self.cache, self.key, self.bytes.clone());
        if let Some(evicted) = self.reserved.take() {
            let len = bytes.len() as u64;
            let written = cache.write_block(key, bytes.as_slice(), bytes.padded());
            let recorded = cache.record(key, len, written, &evicted);
            // Bound first: the `writing` guard must be gone before `remove` takes it again.
            let held = lock(&cache.writing).remove(&key);
            let removed = match held {
                Some(b) => {
                    lock(&cache.recent).put(key, b);
                    Ok(())
                }
                // Removed while being written (its bytes failed a check above): so is its file.
                None => cache.remove(key),
            };
            if let Err(e) = recorded.and(removed) {
                // The bytes in hand are sound; only keeping them failed. Later reads fetch again.
                // A full filesystem fails every block: one line a minute says so.
                cache.counters.not_kept.fetch_add(1, Ordering::Relaxed);
                cache.unkept.warn(
                    "block not cached",
                    &format!("block {} of blob {} not cached: {e}", key.index, key.blob),
                );
            }
        }
        cache.hold(key, bytes)
    }
}

impl Drop for Staged<'_> {
    fn drop(&mut self) {
        // Never committed: give the reservation back.
        if let Some(evicted) = self.reserved.take() {
            lock(&self.cache.writing).remove(&self.key);
            {
                let mut st = self.cache.lock_state();
                st.used -= self.bytes.len() as u64;
                st.stored(self.key);
            }
            // An eviction of this block while it was being written left its row to the writer.
            let _ = self
                .cache
                .forget_rows(&[&evicted[..], &[self.key]].concat());
        }
    }
}

/// Idle aligned buffers kept for reuse (fresh memory costs a fault per page); more writers
/// at once than this allocate and free their own.
const DIRECT_BUFS_KEPT: usize = 4;

/// `data` copied to an [`ALIGN`]-aligned slice of `buf`, zero-padded to a multiple of it.
fn aligned_copy<'b>(buf: &'b mut Vec<u8>, data: &[u8]) -> &'b [u8] {
    let padded = data.len().div_ceil(ALIGN) * ALIGN;
    if buf.len() < padded + ALIGN {
        *buf = vec![0; padded + ALIGN];
    }
    let start = buf.as_ptr().align_offset(ALIGN);
    let out = &mut buf[start..start + padded];
    out[..data.len()].copy_from_slice(data);
    out[data.len()..].fill(0);
    out
}

/// Block files kept open (well under the usual 1024 descriptors a process may have).
const OPEN_FILES: std::num::NonZeroUsize = match std::num::NonZeroUsize::new(256) {
    Some(n) => n,
    None => unreachable!(),
};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl BlockCache {
    /// Open (or create) the cache in `dir` with a hard limit of `limit` bytes. Blocks beyond a
    /// lowered limit are evicted now.
    pub fn open(dir: &Path, limit: u64) -> Result<BlockCache, CacheError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CacheError::Io { path, source }
        };
        let blocks = dir.join("blocks");
        let tmp = dir.join("tmp");
        fs::create_dir_all(&blocks).map_err(io(&blocks))?;
        // Leftovers of a daemon killed mid-write: never renamed into place, never served.
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        let db_path = dir.join("blocks.sqlite");
        let dberr = |source| CacheError::Db {
            path: db_path.clone(),
            source,
        };
        let db = Connection::open(&db_path).map_err(dberr)?;
        db.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
             CREATE TABLE IF NOT EXISTS blocks (
                 blob TEXT NOT NULL, idx INTEGER NOT NULL, len INTEGER NOT NULL,
                 crc INTEGER NOT NULL, tick INTEGER NOT NULL,
                 PRIMARY KEY (blob, idx)) WITHOUT ROWID;",
        )
        .map_err(dberr)?;
        let mut lru = LruCache::unbounded();
        let mut used = 0;
        let mut max_tick = 0;
        {
            let mut q = db
                .prepare("SELECT blob, idx, len, crc, tick FROM blocks ORDER BY tick")
                .map_err(dberr)?;
            let rows = q
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, i64>(4)?,
                    ))
                })
                .map_err(dberr)?;
            for row in rows {
                let (blob, idx, len, crc, tick) = row.map_err(dberr)?;
                let Some(blob) = BlobKey::parse(&blob) else {
                    continue;
                };
                let key = BlockKey {
                    blob,
                    index: idx as u64,
                };
                lru.put(
                    key,
                    Meta {
                        len: len as u64,
                        crc: crc as u32,
                    },
                );
                used += len as u64;
                max_tick = max_tick.max(tick as u64);
            }
        }
        let cache = BlockCache {
            dir: dir.to_path_buf(),
            limit,
            db_path,
            db: Mutex::new(db),
            state: Mutex::new(State {
                lru,
                used,
                pins: HashMap::new(),
                verified: HashSet::new(),
                touched: HashMap::new(),
                storing: HashMap::new(),
            }),
            writing: Mutex::new(HashMap::new()),
            recent: Mutex::new(Recent::default()),
            files: Mutex::new(LruCache::new(OPEN_FILES)),
            counters: Counters::default(),
            unkept: crate::logs::Summarised::default(),
            tick: AtomicU64::new(max_tick + 1),
            tmp_seq: AtomicU64::new(0),
            direct: std::sync::atomic::AtomicBool::new(true),
            direct_bufs: Mutex::new(Vec::new()),
        };
        if used > limit {
            let mut st = cache.lock_state();
            let evicted = cache.evict_until(&mut st, 0)?;
            drop(st);
            cache.forget_rows(&evicted)?;
        }
        Ok(cache)
    }

    /// Bytes of present blocks, by blob.
    pub fn bytes_by_blob(&self) -> HashMap<BlobKey, u64> {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: HashMap<BlobKey, u64> = HashMap::new();
        for (k, m) in st.lru.iter() {
            *out.entry(k.blob).or_default() += m.len;
        }
        out
    }

    /// The directory its block files live in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The configured limit in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes held by present blocks and reservations.
    pub fn used(&self) -> u64 {
        self.lock_state().used
    }

    /// Whether the block is present (without touching it).
    pub fn contains(&self, key: BlockKey) -> bool {
        self.lock_state().lru.contains(&key)
    }

    /// Whether the block can be read without a fetch: present, being written, or among the
    /// recent blocks kept in memory.
    pub fn present_or_writing(&self, key: BlockKey) -> bool {
        self.contains(key)
            || lock(&self.writing).contains_key(&key)
            || lock(&self.recent).blocks.contains(&key)
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn block_path(&self, key: BlockKey) -> PathBuf {
        self.dir
            .join("blocks")
            .join(key.blob.to_string())
            .join(key.index.to_string())
    }

    fn db_err(&self, source: rusqlite::Error) -> CacheError {
        CacheError::Db {
            path: self.db_path.clone(),
            source,
        }
    }

    /// Take the fetched bytes of block `key`: their space is reserved now, and they are served
    /// from memory while [`Staged::commit`] writes them. A cache with no room left (everything
    /// else pinned by reads) or that already holds the block only serves them: a full cache
    /// never fails a read, and a block is never counted twice.
    pub fn stage(&self, key: BlockKey, data: BlockBuf) -> Staged<'_> {
        let len = data.len() as u64;
        self.counted_fetch(len);
        let bytes = Arc::new(data);
        let reserved = {
            let mut st = self.lock_state();
            if st.lru.contains(&key) || lock(&self.writing).contains_key(&key) {
                None
            } else {
                match self.reserve(&mut st, key, len) {
                    Ok(evicted) => Some(evicted),
                    Err(e) => {
                        drop(st);
                        tracing::warn!(
                            blob = %key.blob,
                            block = key.index,
                            "block served but not cached: {e}"
                        );
                        None
                    }
                }
            }
        };
        if reserved.is_some() {
            lock(&self.writing).insert(key, bytes.clone());
        }
        Staged {
            cache: self,
            key,
            bytes,
            reserved,
        }
    }

    /// A guard over bytes in hand (pinned too, so the file written from them stays while the
    /// guard lives, like any other).
    pub fn hold(&self, key: BlockKey, bytes: Arc<BlockBuf>) -> Pinned<'_> {
        *self.lock_state().pins.entry(key).or_default() += 1;
        Pinned {
            cache: self,
            key,
            len: bytes.len() as u64,
            bytes: Some(bytes),
        }
    }

    /// The block, pinned, if it is present and sound; a block that fails its check is removed
    /// (and `None` returned, so the caller fetches it again).
    pub fn pin(&self, key: BlockKey, check: Check) -> Result<Option<Pinned<'_>>, CacheError> {
        let pinned = self.pin_uncounted(key, check);
        let c = &self.counters;
        match &pinned {
            Ok(Some(p)) => {
                c.hits.fetch_add(1, Ordering::Relaxed);
                c.hit_bytes.fetch_add(p.len(), Ordering::Relaxed);
            }
            _ => {
                c.misses.fetch_add(1, Ordering::Relaxed);
            }
        }
        pinned
    }

    /// Bytes of fetched blocks being written now (in memory until their file is in place).
    pub fn writing_bytes(&self) -> u64 {
        lock(&self.writing).values().map(|b| b.len() as u64).sum()
    }

    fn counted_fetch(&self, len: u64) {
        self.counters.fetched.fetch_add(1, Ordering::Relaxed);
        self.counters
            .fetched_bytes
            .fetch_add(len, Ordering::Relaxed);
    }

    /// What the cache has done since start.
    pub fn stats(&self) -> CacheStats {
        let c = &self.counters;
        CacheStats {
            hits: c.hits.load(Ordering::Relaxed),
            hit_bytes: c.hit_bytes.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            fetched: c.fetched.load(Ordering::Relaxed),
            fetched_bytes: c.fetched_bytes.load(Ordering::Relaxed),
            evicted: c.evicted.load(Ordering::Relaxed),
            evicted_bytes: c.evicted_bytes.load(Ordering::Relaxed),
            not_kept: c.not_kept.load(Ordering::Relaxed),
        }
    }

    fn pin_uncounted(&self, key: BlockKey, check: Check) -> Result<Option<Pinned<'_>>, CacheError> {
        let held = lock(&self.writing).get(&key).cloned();
        if let Some(bytes) = held.or_else(|| lock(&self.recent).blocks.get(&key).cloned()) {
            return Ok(Some(self.hold(key, bytes)));
        }
        let meta = {
            let mut st = self.lock_state();
            let Some(meta) = st.lru.get(&key).copied() else {
                return Ok(None);
            };
            *st.pins.entry(key).or_default() += 1;
            st.touched
                .insert(key, self.tick.fetch_add(1, Ordering::Relaxed));
            if st.verified.contains(&key) {
                return Ok(Some(Pinned {
                    cache: self,
                    key,
                    len: meta.len,
                    bytes: None,
                }));
            }
            meta
        };
        let pinned = Pinned {
            cache: self,
            key,
            len: meta.len,
            bytes: None,
        };
        let path = self.block_path(key);
        let sound = match check {
            Check::Crc => fs::read(&path)
                .map(|b| b.len() as u64 == meta.len && crc32fast::hash(&b) == meta.crc)
                .unwrap_or(false),
            Check::Length => fs::metadata(&path).is_ok_and(|m| m.len() == meta.len),
        };
        if sound {
            if check == Check::Crc {
                self.lock_state().verified.insert(key);
            }
            return Ok(Some(pinned));
        }
        tracing::warn!(
            blob = %key.blob,
            block = key.index,
            "cached block is missing or damaged; fetching it again"
        );
        drop(pinned);
        self.remove(key)?;
        Ok(None)
    }

    /// Re-read every present block and check it against the CRC recorded when it was written;
    /// a block that fails (or whose file is gone) is removed, to be fetched again when read.
    /// Returns (blocks checked, blocks removed).
    pub fn verify_all(&self) -> Result<(u64, u64), CacheError> {
        let keys: Vec<BlockKey> = self.lock_state().lru.iter().map(|(k, _)| *k).collect();
        let (mut checked, mut removed) = (0, 0);
        for key in keys {
            let meta = self.lock_state().lru.peek(&key).copied();
            let Some(meta) = meta else { continue };
            checked += 1;
            let sound = fs::read(self.block_path(key))
                .is_ok_and(|b| b.len() as u64 == meta.len && crc32fast::hash(&b) == meta.crc);
            if !sound {
                tracing::warn!(blob = %key.blob, block = key.index, "cached block is damaged; removed");
                self.remove(key)?;
                removed += 1;
            }
        }
        Ok((checked, removed))
    }

    /// Remove every present block of the blobs `which` says yes to; returns blocks and bytes.
    pub fn clear(&self, mut which: impl FnMut(&BlobKey) -> bool) -> Result<(u64, u64), CacheError> {
        let keys: Vec<(BlockKey, u64)> = self
            .lock_state()
            .lru
            .iter()
            .filter(|(k, _)| which(&k.blob))
            .map(|(k, m)| (*k, m.len))
            .collect();
        let bytes = keys.iter().map(|(_, n)| n).sum();
        for (key, _) in &keys {
            self.remove(*key)?;
        }
        Ok((keys.len() as u64, bytes))
    }

    /// Store a block (replacing nothing: a present block is left as it is).
    pub fn insert(&self, key: BlockKey, data: &[u8]) -> Result<(), CacheError> {
        let len = data.len() as u64;
        self.counted_fetch(len);
        let evicted = {
            let mut st = self.lock_state();
            if st.lru.contains(&key) {
                return Ok(());
            }
            self.reserve(&mut st, key, len)?
        };
        let written = self.write_block(key, data, None);
        self.record(key, len, written, &evicted)
    }

    /// Finish storing a block whose space was reserved: on success it becomes present, on
    /// failure its reservation is returned. Either way the rows of `evicted` blocks go.
    fn record(
        &self,
        key: BlockKey,
        len: u64,
        written: Result<u32, CacheError>,
        evicted: &[BlockKey],
    ) -> Result<(), CacheError> {
        let mut st = self.lock_state();
        // In the same critical section as the block becoming present: it is never neither.
        st.stored(key);
        match written {
            Ok(crc) => {
                if let Some(old) = st.lru.put(key, Meta { len, crc }) {
                    // Stored twice by racing writers: one file, counted once.
                    st.used -= old.len;
                }
                st.verified.insert(key);
                st.touched
                    .insert(key, self.tick.fetch_add(1, Ordering::Relaxed));
                let touched: Vec<_> = st.touched.drain().collect();
                drop(st);
                self.forget_rows(evicted)?;
                self.flush_ticks(&touched)
            }
            Err(e) => {
                st.used -= len;
                drop(st);
                // The write may have failed after its row was recorded (at the rename).
                self.forget_rows(&[evicted, &[key]].concat())?;
                Err(e)
            }
        }
    }

    /// Make room for `len` more bytes of block `key` and count them as used, with `key` as
    /// being stored; returns the evicted keys, as [`BlockCache::evict_until`] does.
    fn reserve(
        &self,
        st: &mut State,
        key: BlockKey,
        len: u64,
    ) -> Result<Vec<BlockKey>, CacheError> {
        let evicted = self.evict_until(st, len)?;
        st.used += len;
        *st.storing.entry(key).or_default() += 1;
        Ok(evicted)
    }

    /// Evict unpinned blocks, least recently used first, until `need` more bytes fit. Returns
    /// the evicted keys, whose rows the caller removes once the state lock is released.
    fn evict_until(&self, st: &mut State, need: u64) -> Result<Vec<BlockKey>, CacheError> {
        let mut evicted = Vec::new();
        while st.used + need > self.limit {
            let victim = st
                .lru
                .iter()
                .rev()
                .find(|(k, _)| !st.pins.contains_key(k))
                .map(|(k, m)| (*k, *m));
            let Some((k, m)) = victim else {
                let pinned = st.used;
                return Err(CacheError::Full {
                    limit: self.limit,
                    need,
                    pinned,
                });
            };
            st.lru.pop(&k);
            self.counters.evicted.fetch_add(1, Ordering::Relaxed);
            self.counters
                .evicted_bytes
                .fetch_add(m.len, Ordering::Relaxed);
            st.verified.remove(&k);
            st.touched.remove(&k);
            st.used -= m.len;
            // An open descriptor would still read the removed file's bytes.
            lock(&self.files).pop(&k);
            let _ = fs::remove_file(self.block_path(k));
            evicted.push(k);
        }
        Ok(evicted)
    }

    /// Write a block file around the page cache (`O_DIRECT`), or through it where the
    /// filesystem refuses. The kernel already keeps what readers read in the page cache of the
    /// FUSE files above; a second copy below would only take fresh memory, and filling fresh
    /// page-cache pages is what made writing the slowest step (0.6-1 GB/s here, against the
    /// device's 1.5 GB/s for direct writes, which cost the daemon almost no CPU). `padded` is
    /// `data` already aligned and padded ([`BlockBuf::padded`]); without it `data` is copied.
    fn write_file(&self, path: &Path, data: &[u8], padded: Option<&[u8]>) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        if self.direct.load(Ordering::Relaxed) {
            let opened = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .custom_flags(libc::O_DIRECT)
                .open(path);
            let written = opened.and_then(|mut f| {
                match padded {
                    Some(p) => f.write_all(p)?,
                    None => {
                        let mut buf = lock(&self.direct_bufs).pop().unwrap_or_default();
                        let result = f.write_all(aligned_copy(&mut buf, data));
                        let mut idle = lock(&self.direct_bufs);
                        if idle.len() < DIRECT_BUFS_KEPT {
                            idle.push(buf);
                        }
                        result?
                    }
                }
                // The last block of a blob is padded to the alignment: cut it back.
                f.set_len(data.len() as u64)
            });
            match written {
                Ok(()) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    tracing::debug!("the cache's filesystem refuses O_DIRECT; writing buffered");
                    self.direct.store(false, Ordering::Relaxed);
                }
                Err(e) => return Err(e),
            }
        }
        fs::write(path, data)
    }

    fn write_block(
        &self,
        key: BlockKey,
        data: &[u8],
        padded: Option<&[u8]>,
    ) -> Result<u32, CacheError> {
        let crc = crc32fast::hash(data);
        let tmp = self.dir.join("tmp").join(format!(
            "{}-{}-{}",
            key.blob,
            key.index,
            self.tmp_seq.fetch_add(1, Ordering::Relaxed)
        ));
        let dst = self.block_path(key);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CacheError::Io { path, source }
        };
        self.write_file(&tmp, data, padded).map_err(io(&tmp))?;
        lock(&self.db)
            .execute(
                "INSERT OR REPLACE INTO blocks (blob, idx, len, crc, tick) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    key.blob.to_string(),
                    key.index as i64,
                    data.len() as i64,
                    crc as i64,
                    self.tick.load(Ordering::Relaxed) as i64
                ],
            )
            .map_err(|e| self.db_err(e))?;
        if let Some(parent) = dst.parent() {
            fs::create_dir_all(parent).map_err(io(parent))?;
        }
        fs::rename(&tmp, &dst).map_err(io(&dst))?;
        Ok(crc)
    }

    /// Drop a block (its bytes failed a check above the cache, e.g. a member CRC).
    pub fn remove(&self, key: BlockKey) -> Result<(), CacheError> {
        lock(&self.writing).remove(&key);
        lock(&self.recent).remove(&key);
        {
            let mut st = self.lock_state();
            if let Some(m) = st.lru.pop(&key) {
                st.used -= m.len;
            }
            st.verified.remove(&key);
            st.touched.remove(&key);
        }
        lock(&self.files).pop(&key);
        let _ = fs::remove_file(self.block_path(key));
        self.forget_rows(&[key])
    }

    /// Delete the rows of blocks that were evicted or removed. A block stored again since
    /// (present, or being written: its writer may have recorded its row already) keeps its new
    /// row, or a restart would count its file as free space. The state is checked under the
    /// database lock, which a writer takes to record its row: no row of a block that is neither
    /// can be recorded between the check and the deletion.
    fn forget_rows(&self, keys: &[BlockKey]) -> Result<(), CacheError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut db = lock(&self.db);
        let gone: Vec<BlockKey> = {
            let st = self.lock_state();
            keys.iter()
                .filter(|k| !st.lru.contains(k) && !st.storing.contains_key(k))
                .copied()
                .collect()
        };
        if gone.is_empty() {
            return Ok(());
        }
        let tx = db.transaction().map_err(|e| self.db_err(e))?;
        for k in &gone {
            tx.execute(
                "DELETE FROM blocks WHERE blob = ?1 AND idx = ?2",
                params![k.blob.to_string(), k.index as i64],
            )
            .map_err(|e| self.db_err(e))?;
        }
        tx.commit().map_err(|e| self.db_err(e))
    }

    fn flush_ticks(&self, touched: &[(BlockKey, u64)]) -> Result<(), CacheError> {
        if touched.is_empty() {
            return Ok(());
        }
        let mut db = lock(&self.db);
        let tx = db.transaction().map_err(|e| self.db_err(e))?;
        for (k, tick) in touched {
            tx.execute(
                "UPDATE blocks SET tick = ?3 WHERE blob = ?1 AND idx = ?2",
                params![k.blob.to_string(), k.index as i64, *tick as i64],
            )
            .map_err(|e| self.db_err(e))?;
        }
        tx.commit().map_err(|e| self.db_err(e))
    }

    /// Write the use order of blocks read since the last write (done at unmount, and with every
    /// new block).
    pub fn flush(&self) -> Result<(), CacheError> {
        let touched: Vec<_> = self.lock_state().touched.drain().collect();
        self.flush_ticks(&touched)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u64) -> BlockKey {
        BlockKey {
            blob: BlobKey::derive("http://x/a.zip", 100, "e"),
            index: i,
        }
    }

    /// The block pinned from the cache, or `fetch`ed and stored (what the fetcher does, without
    /// its single flight).
    fn get(
        c: &BlockCache,
        k: BlockKey,
        fetch: impl FnOnce() -> Result<Vec<u8>, String>,
    ) -> Result<Pinned<'_>, String> {
        if let Some(p) = c.pin(k, Check::Crc).map_err(|e| e.to_string())? {
            return Ok(p);
        }
        Ok(c.stage(k, fetch()?.into()).commit())
    }

    fn never() -> Result<Vec<u8>, String> {
        Err("must not fetch".into())
    }

    #[test]
    fn a_staged_block_is_served_from_memory_then_from_its_file_after_a_restart() {
        let d = tempfile::tempdir().unwrap();
        let c = BlockCache::open(d.path(), 1000).unwrap();
        let staged = c.stage(key(0), vec![7u8; 100].into());
        // Read-ahead asks: the block is on its way, not present; a reader finds it in memory.
        assert!(c.present_or_writing(key(0)) && !c.contains(key(0)));
        assert!(!c.present_or_writing(key(1)));
        let early = c.pin(key(0), Check::Crc).unwrap().unwrap();
        assert!(early.bytes.is_some());
        assert_eq!(early.read(90, 10).unwrap(), vec![7u8; 10]);
        let p = staged.commit();
        assert!(p.bytes.is_some());
        drop((early, p));
        // Written and recorded: present and counted; still in memory as a recent block.
        assert!(c.contains(key(0)));
        assert_eq!(c.used(), 100);
        let p = get(&c, key(0), never).unwrap();
        assert!(p.bytes.is_some());
        let (x, y) = (p.share(10, 20).unwrap(), p.share(15, 5).unwrap());
        assert_eq!((&x[..], x[5..].as_ptr()), (&[7u8; 20][..], y.as_ptr()));
        drop(p);
        // After a restart, from its file (written around the page cache, cut to its length).
        drop(c);
        let c = BlockCache::open(d.path(), 1000).unwrap();
        let p = get(&c, key(0), never).unwrap();
        assert!(p.bytes.is_none() && p.share(0, 1).is_none());
        assert_eq!(p.read(0, 100).unwrap(), vec![7u8; 100]);
        assert_eq!(
            fs::metadata(c.block_path(key(0))).unwrap().len(),
            100,
            "the O_DIRECT padding is cut off"
        );
    }

    #[test]
    fn a_block_removed_as_it_arrives_is_gone_whenever_the_removal_lands() {
        // A reader that finds the bytes bad drops the block; its leader may still be writing
        // it. However the two interleave, nothing of it stays.
        for _ in 0..20 {
            let d = tempfile::tempdir().unwrap();
            let c = Arc::new(BlockCache::open(d.path(), 1000).unwrap());
            let staged = c.stage(key(0), vec![7u8; 100].into());
            let reader = {
                let c = c.clone();
                std::thread::spawn(move || {
                    let len = c.pin(key(0), Check::Crc).unwrap().map(|p| p.len());
                    c.remove(key(0)).unwrap();
                    len
                })
            };
            assert_eq!(staged.commit().len(), 100);
            assert!(matches!(reader.join().unwrap(), Some(100) | None));
            assert!(!c.present_or_writing(key(0)));
            assert_eq!(c.used(), 0);
            assert!(!c.block_path(key(0)).exists());
        }
    }

    #[test]
    fn limit_is_hard_and_eviction_is_lru_but_spares_pinned_blocks() {
        let d = tempfile::tempdir().unwrap();
        let c = BlockCache::open(d.path(), 300).unwrap();
        let f = |i: u64| move || Ok(vec![i as u8; 100]);
        let p0 = get(&c, key(0), f(0)).unwrap();
        drop(get(&c, key(1), f(1)).unwrap());
        drop(get(&c, key(2), f(2)).unwrap());
        assert_eq!(c.used(), 300);
        // Block 0 is the least recently used but pinned: block 1 goes instead.
        drop(get(&c, key(3), f(3)).unwrap());
        assert!(c.contains(key(0)) && !c.contains(key(1)));
        assert_eq!(c.used(), 300);
        assert_eq!(p0.read(10, 5).unwrap(), vec![0u8; 5]);
        // Everything pinned: the bytes are served, not stored, and the limit holds.
        let _p = [
            get(&c, key(2), f(2)).unwrap(),
            get(&c, key(3), f(3)).unwrap(),
        ];
        let p4 = get(&c, key(4), f(4)).unwrap();
        assert_eq!(p4.read(0, 3).unwrap(), vec![4u8; 3]);
        assert!(!c.contains(key(4)));
        assert_eq!(c.used(), 300);
        drop(p4);
        assert_eq!(c.used(), 300);
    }

    /// Bytes of the block files on disk.
    fn on_disk(dir: &Path) -> u64 {
        let mut n = 0;
        for blob in fs::read_dir(dir.join("blocks")).unwrap() {
            for f in fs::read_dir(blob.unwrap().path()).unwrap() {
                n += f.unwrap().metadata().unwrap().len();
            }
        }
        n
    }

    #[test]
    fn a_block_evicted_then_stored_again_before_the_eviction_is_recorded_keeps_its_row() {
        // Block 2 evicts block 0 when it arrives; before block 2 is written (and the row of block
        // 0 deleted), a reader fetches block 0 again. Its new row must survive the old eviction,
        // or a restart counts its file as free space.
        let d = tempfile::tempdir().unwrap();
        let c = BlockCache::open(d.path(), 200).unwrap();
        c.insert(key(0), &[0u8; 100]).unwrap();
        c.insert(key(1), &[1u8; 100]).unwrap();
        let late = c.stage(key(2), vec![2u8; 100].into());
        drop(c.stage(key(0), vec![0u8; 100].into()).commit());
        drop(late.commit());
        c.flush().unwrap();
        assert_eq!(c.used(), on_disk(d.path()));
        drop(c);
        let c = BlockCache::open(d.path(), 200).unwrap();
        assert_eq!((c.used(), on_disk(d.path())), (200, 200));
        assert_eq!(c.verify_all().unwrap(), (2, 0));
    }

    #[test]
    fn a_block_stored_twice_is_counted_once() {
        let d = tempfile::tempdir().unwrap();
        let c = BlockCache::open(d.path(), 1000).unwrap();
        c.insert(key(0), &[1u8; 100]).unwrap();
        // A whole download stored the block; the fetch that asked for it hands it in too.
        drop(c.stage(key(0), vec![1u8; 100].into()).commit());
        drop(c.stage(key(0), vec![1u8; 100].into()).commit());
        assert_eq!(c.used(), 100);
        // A staged block never committed gives its reservation back.
        drop(c.stage(key(1), vec![1u8; 100].into()));
        assert_eq!(c.used(), 100);
        assert!(!c.present_or_writing(key(1)));
    }

    #[test]
    fn survives_restart_and_refetches_a_damaged_block() {
        let d = tempfile::tempdir().unwrap();
        {
            let c = BlockCache::open(d.path(), 1000).unwrap();
            drop(get(&c, key(0), || Ok(vec![1u8; 100])).unwrap());
            drop(get(&c, key(1), || Ok(vec![2u8; 100])).unwrap());
            c.flush().unwrap();
        }
        let c = BlockCache::open(d.path(), 1000).unwrap();
        assert_eq!(c.used(), 200);
        assert_eq!(
            get(&c, key(0), never).unwrap().read(0, 2).unwrap(),
            vec![1, 1]
        );
        // Damage block 1 on disk: it is detected and fetched again.
        let path = c.block_path(key(1));
        fs::write(&path, vec![3u8; 100]).unwrap();
        let c = BlockCache::open(d.path(), 1000).unwrap();
        let p = get(&c, key(1), || Ok(vec![2u8; 100])).unwrap();
        assert_eq!(p.read(0, 1).unwrap(), vec![2]);
        // A lowered limit evicts at open.
        drop(p);
        let c = BlockCache::open(d.path(), 150).unwrap();
        assert!(c.used() <= 150);
    }
}
