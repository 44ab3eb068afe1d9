//! Neighbours into the kernel's page cache: a cold read of one small file brings its block
//! (4 MiB: some forty images of 100 KB), and the files around it are served from there
//! without a round trip each.
//!
//! After the first decode of a small file, a pusher thread takes the files whose bytes start
//! in the same blocks and lie wholly in blocks the cache holds (it never fetches), decodes and
//! checks each exactly as a read would, and hands the checked bytes to a [`PageSink`] (the FUSE
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
use crate::cache::Check;
use crate::index::{Entry, Storage};

/// Where checked bytes of whole files can be handed to the kernel ahead of their reads.
pub trait PageSink: Send + Sync {
    /// Offer `data` as the whole content of the file of index row `row`; false when the
    /// kernel did not take it (it does not know the file).
    fn store(&self, row: i64, data: &[u8]) -> bool;
}

/// Rows on either side of a file's row that are looked at for neighbours: a 4 MiB block holds
/// a few hundred files of 10 KB at most.
const ROWS_AROUND: i64 = 512;
/// Decoded files remembered as pushed, so a block's neighbours are pushed once.
pub const PUSHED_KEPT: std::num::NonZeroUsize = match std::num::NonZeroUsize::new(1 << 16) {
    Some(n) => n,
    None => std::num::NonZeroUsize::MIN,
};
/// Threads pushing: the work is decoding and copying, so one per core of a small machine.
const PUSHERS: usize = 2;
/// Room past a ZIP member's local header for its name and extra fields, when checking that
/// the blocks it needs are present.
const HEADER_ROOM: u64 = 30 + 1024;

/// The pusher: its queue and what it has pushed.
pub(super) struct Pusher {
    tx: SyncSender<Arc<FileState>>,
    /// Files pushed or read (the kernel has their pages either way).
    pushed: Mutex<LruCache<i64, ()>>,
    /// Blocks whose files were pushed or are queued, by blob row and block number.
    blocks: Mutex<LruCache<(i64, u64), ()>>,
    sink: Arc<dyn PageSink>,
}

impl Pusher {
    /// Start the thread; it stops when the reader goes.
    pub(super) fn start(reader: Weak<Reader>, sink: Arc<dyn PageSink>) -> Pusher {
        // A few DataLoader workers' worth of cold blocks; more are dropped (a push is a hint).
        let (tx, rx) = sync_channel::<Arc<FileState>>(64);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..PUSHERS {
            let (rx, reader) = (rx.clone(), reader.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("medimg-push-{i}"))
                .spawn(move || {
                    loop {
                        let job = lock(&rx).recv();
                        let (Ok(f), Some(r)) = (job, reader.upgrade()) else {
                            break;
                        };
                        r.push_neighbours(&f);
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
    pub(super) fn offer(&self, f: Arc<FileState>, block_size: u64) {
        lock(&self.pushed).put(f.entry.id, ());
        let block = (f.location.blob, f.location.offset / block_size);
        if lock(&self.blocks).put(block, ()).is_some() {
            return;
        }
        if self.tx.try_send(f).is_err() {
            // Dropped (a push is a hint): a later read in the block offers it again.
            lock(&self.blocks).pop(&block);
        }
    }
}

impl Reader {
    /// Push the checked bytes of the files around `f` whose blocks the cache holds.
    fn push_neighbours(&self, f: &FileState) {
        let Some(pusher) = self.pusher.get() else {
            return;
        };
        let bs = self.fetcher.block_size();
        let at = f.location.offset;
        let from = at - at % bs;
        let to = (at + f.entry.size.max(1)).div_ceil(bs) * bs;
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
            if e.id == id || e.size == 0 || e.size > INLINE_MAX {
                continue;
            }
            if lock(&pusher.pushed).get(&e.id).is_some() {
                continue;
            }
            let Some(content) = self.checked_if_present(f, e) else {
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

    /// The checked content of `e` (a file of `f`'s blob), if every block it needs is present.
    fn checked_if_present(&self, f: &FileState, e: Entry) -> Option<(i64, Bytes)> {
        let location = e.location?;
        let need = match location.storage {
            Storage::Zip {
                compressed_size, ..
            } => HEADER_ROOM + compressed_size,
            Storage::Raw => e.size,
            Storage::Gzip => return None,
        };
        let need = need.min(f.blob.size() - location.offset.min(f.blob.size()));
        if !self.fetcher.is_present(&f.blob, location.offset, need) {
            return None;
        }
        let row = e.id;
        let g = FileState::new(e, location, f.blob.clone());
        let content = match location.storage {
            Storage::Zip { .. } => self.zip_checked(&g),
            Storage::Raw if g.blob.checksum.is_some() => self.raw_checked(&g).map(Bytes::from),
            Storage::Raw => self
                .fetcher
                .read_bytes(&g.blob, location.offset, g.entry.size, Check::Crc)
                .map_err(|e| self.fetch_err(&g, e)),
            Storage::Gzip => return None,
        };
        content.ok().map(|c| (row, c))
    }
}
