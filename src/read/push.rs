//! Neighbours into the kernel's page cache: a cold read of one small file brings its block
//! (4 MiB: some forty images of 100 KB), and the files around it are served from there
//! without a round trip each.
//!
//! After the first decode of a small file, the pusher threads take the files whose bytes start
//! in the same blocks and lie wholly in blocks the cache holds (from the block's bytes in
//! memory where they can; they never ask for a block the cache lacks), decode and check each
//! exactly as a read would, and hand the checked bytes to a [`PageSink`] (the FUSE
//! adapter's notify-store, which fills the kernel's page cache of that file). A DataLoader
//! that reads a dataset in shuffled order then finds most files in the page cache: the kernel
//! answers them itself, as it does for a warm epoch.
//!
//! Invariants:
//! - Only whole files up to [`super::INLINE_MAX`] that passed their check (CRC-32, the host's
//!   checksum, or the blocks' own CRC) are pushed; nothing is fetched for a push.
//! - A push is a hint: a full queue drops it, a file the kernel does not know is skipped, and
//!   a file is pushed at most once per [`PUSHED_KEPT`] files.
//! - The work is off the reader's path: [`PUSHERS`] threads, a bounded queue of blocks.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use lru::LruCache;

use super::{FileState, INLINE_MAX, Reader, lock};
use crate::archive::zip;
use crate::cache::Check;
use crate::fetch::Fetcher;
use crate::index::{Entry, Storage};

/// Where checked bytes of whole files can be handed to the kernel ahead of their reads.
pub trait PageSink: Send + Sync {
    /// Offer `data` as the whole content of the file of index row `row`; false when the
    /// kernel did not take it (it does not know the file).
    fn store(&self, row: i64, data: &[u8]) -> bool;
    /// Drop what the kernel holds of inode `ino` (pages and attributes): its content changed.
    fn forget(&self, _ino: u64) {}
}

/// Rows on either side of a file's row that are looked at for neighbours: a 4 MiB block holds
/// a few hundred files of 10 KB at most.
const ROWS_AROUND: i64 = 512;
/// Decoded files remembered as pushed, so a block's neighbours are pushed once.
pub const PUSHED_KEPT: std::num::NonZeroUsize = match std::num::NonZeroUsize::new(1 << 16) {
    Some(n) => n,
    None => std::num::NonZeroUsize::MIN,
};
/// Blocks queued for the pushers at most.
const QUEUED: usize = 16;
/// Threads pushing: the work is decoding and copying, so one per core of a small machine.
const PUSHERS: usize = 2;
/// Room past a ZIP member's local header for its name and extra fields, when checking that
/// the blocks it needs are present.
const HEADER_ROOM: u64 = 30 + 1024;

/// A file just decoded, and the block it came from when that is in memory (where it starts in
/// the blob, its bytes): the neighbours inside it are decoded from those bytes, without a pin
/// or a read of the block's file each (by the time a queued block is worked on, newer blocks
/// may have pushed it out of the cache's memory).
type Job = (Arc<FileState>, Option<(u64, Bytes)>);

/// The pusher: its queue and what it has pushed.
pub(super) struct Pusher {
    tx: SyncSender<Job>,
    /// Files pushed or read (the kernel has their pages either way).
    pushed: Mutex<LruCache<i64, ()>>,
    /// Blocks whose files were pushed or are queued, by blob row and block number.
    blocks: Mutex<LruCache<(i64, u64), ()>>,
    sink: Arc<dyn PageSink>,
}

impl Pusher {
    /// Start the threads; they stop when the reader goes.
    pub(super) fn start(reader: Weak<Reader>, sink: Arc<dyn PageSink>) -> Pusher {
        // A few DataLoader workers' worth of cold blocks, each holding its block's bytes (at
        // most 16 blocks of memory); more are dropped (a push is a hint).
        let (tx, rx) = sync_channel::<Job>(QUEUED);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..PUSHERS {
            let (rx, reader) = (rx.clone(), reader.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("medimg-push-{i}"))
                .spawn(move || {
                    loop {
                        let job = lock(&rx).recv();
                        let (Ok((f, block)), Some(r)) = (job, reader.upgrade()) else {
                            break;
                        };
                        r.push_neighbours(&f, block);
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!("no page-cache pusher: {e}");
            }
        }
        Pusher {
            tx,
            pushed: Mutex::new(LruCache::new(PUSHED_KEPT)),
            blocks: Mutex::new(LruCache::new(PUSHED_KEPT)),
            sink,
        }
    }

    /// `f` was just decoded for a read: its own pages are the kernel's now, and its
    /// neighbours are pushed unless its block's already were.
    pub(super) fn offer(&self, f: Arc<FileState>, fetcher: &Fetcher) {
        lock(&self.pushed).put(f.entry.id, ());
        let block = (f.location.blob, f.location.offset / fetcher.block_size());
        if lock(&self.blocks).put(block, ()).is_some() {
            return;
        }
        let bytes = fetcher.block_in_memory(&f.blob, f.location.offset);
        if self.tx.try_send((f, bytes)).is_err() {
            // Dropped (a push is a hint): a later read in the block offers it again.
            lock(&self.blocks).pop(&block);
        }
    }
}

impl Reader {
    /// Push the checked bytes of the files around `f` whose blocks the cache holds.
    fn push_neighbours(&self, f: &FileState, block: Option<(u64, Bytes)>) {
        let Some(pusher) = self.pusher.get() else {
            return;
        };
        let bs = self.fetcher.block_size();
        let at = f.location.offset;
        let from = at - at % bs;
        let to = (at + f.size.max(1)).div_ceil(bs) * bs;
        let id = f.entry.id;
        let Ok(near) = self.index.files_near(
            id.saturating_sub(ROWS_AROUND)..=id.saturating_add(ROWS_AROUND),
            f.location.blob,
            from,
            to,
        ) else {
            return;
        };
        for e in near {
            let Some(size) = e.size.filter(|&s| s > 0 && s <= INLINE_MAX) else {
                continue;
            };
            if e.id == id {
                continue;
            }
            if lock(&pusher.pushed).get(&e.id).is_some() {
                continue;
            }
            let from_block = block.as_ref().and_then(|b| self.checked_in(f, &e, size, b));
            let Some(content) = from_block.or_else(|| self.checked_if_present(f, e, size)) else {
                continue;
            };
            if pusher.sink.store(content.0, &content.1) {
                lock(&pusher.pushed).put(content.0, ());
                let c = &self.counters;
                c.pushed_files.fetch_add(1, Ordering::Relaxed);
                c.pushed_bytes
                    .fetch_add(content.1.len() as u64, Ordering::Relaxed);
            }
        }
    }

    /// The checked content of `e` (a file of `f`'s blob) when it lies wholly in `block` (where
    /// it starts in the blob, its bytes): decoded from those bytes, checked as a read would
    /// check them. `None` sends it the way of [`Reader::checked_if_present`].
    fn checked_in(
        &self,
        f: &FileState,
        e: &Entry,
        size: u64,
        block: &(u64, Bytes),
    ) -> Option<(i64, Bytes)> {
        let (start, bytes) = block;
        let location = e.location?;
        let within = |at: u64, len: u64| {
            let from = usize::try_from(at.checked_sub(*start)?).ok()?;
            let to = from.checked_add(usize::try_from(len).ok()?)?;
            (to <= bytes.len()).then(|| bytes.slice(from..to))
        };
        let content = match location.storage {
            Storage::Zip {
                method,
                compressed_size,
                crc32,
            } => {
                let header = within(location.offset, zip::LOCAL_HEADER_LEN)?;
                let rel = zip::local_data_offset(&header).ok()?;
                let packed = within(location.offset + rel, compressed_size)?;
                let c = match method {
                    zip::METHOD_STORED => packed,
                    zip::METHOD_DEFLATED => Bytes::from(zip::inflate(&packed, size).ok()?),
                    _ => return None,
                };
                // A mismatch is left to the read, which refetches and reports it.
                (c.len() as u64 == size && crc32fast::hash(&c) == crc32).then_some(c)?
            }
            Storage::Raw if f.blob.checksum.is_none() => within(location.offset, size)?,
            Storage::Raw
            | Storage::Gzip
            | Storage::Packed(_)
            | Storage::SevenZ { .. }
            | Storage::Rar { .. } => {
                return None;
            }
        };
        Some((e.id, content))
    }

    /// The checked content of `e` (a file of `f`'s blob), if every block it needs is present.
    fn checked_if_present(&self, f: &FileState, e: Entry, size: u64) -> Option<(i64, Bytes)> {
        let location = e.location?;
        let need = match location.storage {
            Storage::Zip {
                compressed_size, ..
            } => HEADER_ROOM + compressed_size,
            Storage::Raw => size,
            Storage::Gzip | Storage::Packed(_) | Storage::SevenZ { .. } | Storage::Rar { .. } => {
                return None;
            }
        };
        let need = need.min(f.blob.size() - location.offset.min(f.blob.size()));
        if !self.fetcher.is_present(&f.blob, location.offset, need) {
            return None;
        }
        let row = e.id;
        let g = FileState::new(e, size, location, f.blob.clone());
        // One decode, no retry: a mismatch is left to the read, which drops the blocks,
        // fetches them again and reports it.
        let content = match location.storage {
            Storage::Zip { .. } => self.zip_decode(&g).ok()?.ok()?,
            Storage::Raw if g.blob.checksum.is_some() => self.raw_decode(&g).ok()?.ok()?.into(),
            Storage::Raw => self
                .fetcher
                .read_bytes(&g.blob, location.offset, g.size, Check::Crc)
                .ok()?,
            Storage::Gzip | Storage::Packed(_) | Storage::SevenZ { .. } | Storage::Rar { .. } => {
                return None;
            }
        };
        Some((row, content))
    }
}
