//! Sizes a listing did not give, learnt when a user first needs them.
//!
//! Some listings name files without their sizes: a web server's page that prints none or
//! rounds them (Python's `http.server`, Apache), PhysioNet's `SHA256SUMS.txt`, TCIA's
//! instances. Such a file is indexed with its size unknown ([`crate::index::Entry::size`] is
//! `None`), and its host is asked nothing until a user needs the size:
//! - Listing names (`ls`, `os.scandir`, `find` without tests on files, torchvision's
//!   `ImageFolder` scan) asks nothing. readdir carries names and types; readdirplus carries
//!   such an entry as *provisional* ([`crate::vfs::DirItem::provisional`]): size 0 with a zero
//!   time to live for the entry and its attributes, so the kernel asks again (a lookup, which
//!   sizes it) before any `stat`, `open` or read uses it, and no tool ever sees the 0. (The
//!   protocol's other way, an entry with node id 0, "no attributes", is not open to us: fuser
//!   writes the attributes' inode as the node id and as `d_ino`, and some C libraries skip
//!   directory entries whose `d_ino` is 0.)
//! - The first lookup or getattr that needs a size (`stat`, `ls -l`, `open`) asks the host
//!   for the size, not the bytes: a zero-length probe (`Range: bytes=0-0`, answered with
//!   `Content-Range: bytes 0-0/<size>`), or the `Content-Length` of a host that ignores Range
//!   ([`crate::fetch::Fetcher::size_probe`]). The answer goes into the index: asked once, ever.
//! - A directory whose files are statted one after another (`ls -l`, `du`, `rsync`): once
//!   [`SCAN_AFTER`] sizes have been asked in it, the rest of it is sized at once. Where the
//!   host serves a page listing the directory with exact sizes that its file list lacked
//!   (PhysioNet: `SHA256SUMS.txt` has no sizes, its `/files/` pages do), that one page sizes
//!   the folder, and lookups in it wait for the page rather than probe. Elsewhere the rest
//!   of its unknown sizes are probed in the background, [`PROBE_WORKERS`] at a time (each
//!   request within the host's own budget), so `ls -l` waits a round trip per few files, not
//!   one per file; a lookup of a file being probed joins that probe, and one the queue has not
//!   reached probes at once, never waiting behind the queue. A user reading one or two files
//!   of a large directory never sets this off.
//!
//! # Invariants
//! - No size is ever shown that the host did not give: an entry of unknown size reaches the
//!   kernel only with no time to live, and the read path refuses it
//!   ([`crate::read::ReadError::NotSized`]) until it is sized.
//! - One probe per file at a time (a typed single flight); a size is written once, with the
//!   file's part (key, validator, Range support) in the same transaction.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use crate::fetch::{FetchError, Fetcher};
use crate::flight::{Flights, TimedOut};
use crate::index::{Entry, Index, IndexError};
use crate::resolve::ResolveError;

/// Sizes asked in one directory before the rest of it is probed in the background.
pub const SCAN_AFTER: u32 = 4;
/// How often an idle background prober checks that the daemon still needs it.
const IDLE_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// Background probes at once: half of a host's default budget of requests in flight, so a
/// reader's request always finds room beside them (the host's limits apply to each).
pub const PROBE_WORKERS: usize = 8;

/// Why a size could not be learnt. Clone: every waiter of a probe gets its leader's error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SizeError {
    /// The host did not say (refused, failed, timed out).
    #[error(transparent)]
    Fetch(Arc<FetchError>),
    /// The index could not be read or written.
    #[error(transparent)]
    Index(Arc<IndexError>),
    /// The page listing the file's folder could not be read.
    #[error(transparent)]
    Page(Arc<ResolveError>),
    /// The entry is not a file of the index any more (its dataset was re-indexed).
    #[error("it is no longer in the index; list its directory again")]
    Gone,
}

impl From<IndexError> for SizeError {
    fn from(e: IndexError) -> Self {
        SizeError::Index(Arc::new(e))
    }
}

impl From<FetchError> for SizeError {
    fn from(e: FetchError) -> Self {
        SizeError::Fetch(Arc::new(e))
    }
}

/// What sizing has done since start.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SizeStats {
    /// Zero-length probes sent (foreground and background).
    pub probes: u64,
    /// Directories whose remaining sizes were queued for the background.
    pub scans: u64,
    /// Listing pages read to size a folder at once.
    pub pages: u64,
}

/// Where a directory stands.
#[derive(Debug, Clone)]
enum Dir {
    /// Sizes asked in it so far.
    Asked(u32),
    /// Its remaining sizes are queued for the background probers.
    Probing,
    /// Its sizes come from this listing page.
    Page(String),
    /// Its page has been read: what it did not size is probed file by file.
    Paged,
}

/// Files queued for the background probers.
#[derive(Default)]
struct Queue {
    files: Mutex<VecDeque<Entry>>,
    ready: Condvar,
}

/// Learns sizes; share it with an `Arc`.
pub struct Sizer {
    index: Arc<Index>,
    fetcher: Arc<Fetcher>,
    /// Probes in progress, by blob row.
    flights: Flights<i64, Result<Entry, SizeError>>,
    /// Where each directory (by row) stands.
    dirs: Mutex<HashMap<i64, Dir>>,
    /// Listing pages being read, by directory row.
    pages: Flights<i64, Result<(), SizeError>>,
    /// Files waiting for a background prober (shared with the probers, which hold the sizer
    /// itself only while they probe).
    queue: Arc<Queue>,
    workers: std::sync::Once,
    probes: AtomicU64,
    scans: AtomicU64,
    pages_read: AtomicU64,
}

impl std::fmt::Debug for Sizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sizer").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Sizer {
    /// A sizer writing into `index`, asking through `fetcher`.
    pub fn new(index: Arc<Index>, fetcher: Arc<Fetcher>) -> Arc<Sizer> {
        Arc::new(Sizer {
            index,
            fetcher,
            flights: Flights::new(),
            dirs: Mutex::new(HashMap::new()),
            pages: Flights::new(),
            queue: Arc::new(Queue::default()),
            workers: std::sync::Once::new(),
            probes: AtomicU64::new(0),
            scans: AtomicU64::new(0),
            pages_read: AtomicU64::new(0),
        })
    }

    /// `e` with its size: as it is when known, learnt from the host now when not.
    pub fn sized(self: &Arc<Self>, e: Entry) -> Result<Entry, SizeError> {
        let Some(location) = e.location.filter(|_| e.size.is_none()) else {
            return Ok(e);
        };
        let url = self
            .index
            .blob(location.blob)?
            .ok_or(SizeError::Gone)?
            .url()
            .to_string();
        if let Some(page) = self.note_asked(e.parent, &url) {
            let deadline = Instant::now() + self.fetcher.deadline();
            let paged = self.pages.run(e.parent, Some(deadline), || {
                self.size_from_page(e.parent, &page)
            });
            if let Ok(Err(err)) = paged {
                tracing::warn!(page, "cannot size a folder from its listing page: {err}");
            }
            let now = self.index.entry(e.id)?.ok_or(SizeError::Gone)?;
            if now.size.is_some() {
                return Ok(now);
            }
        }
        self.probe(&e)
    }

    /// What sizing has done since start.
    pub fn stats(&self) -> SizeStats {
        SizeStats {
            probes: self.probes.load(Ordering::Relaxed),
            scans: self.scans.load(Ordering::Relaxed),
            pages: self.pages_read.load(Ordering::Relaxed),
        }
    }

    /// Count a size asked in directory `parent` (for file `url`); at [`SCAN_AFTER`], size the
    /// rest of it: the listing page to read, when there is one, or probes in the background.
    fn note_asked(self: &Arc<Self>, parent: i64, url: &str) -> Option<String> {
        {
            let mut dirs = lock(&self.dirs);
            let dir = dirs.entry(parent).or_insert(Dir::Asked(0));
            match dir {
                Dir::Page(page) => return Some(page.clone()),
                Dir::Probing | Dir::Paged => return None,
                Dir::Asked(n) if *n + 1 < SCAN_AFTER => {
                    *n += 1;
                    return None;
                }
                Dir::Asked(_) => {}
            }
            if let Some(page) = crate::resolve::sizes_page(url) {
                *dir = Dir::Page(page.clone());
                return Some(page);
            }
            *dir = Dir::Probing;
        }
        let rest = match self.index.unsized_in(parent) {
            Ok(rest) => rest,
            Err(e) => {
                tracing::warn!("{e}");
                return None;
            }
        };
        if rest.is_empty() {
            return None;
        }
        self.scans.fetch_add(1, Ordering::Relaxed);
        // Per folder, so debug: `ls -lR` of a large tree would otherwise log a line a folder.
        tracing::debug!(
            files = rest.len(),
            "sizes asked one after another in a folder: probing the rest of it in the background"
        );
        lock(&self.queue.files).extend(rest);
        self.workers.call_once(|| {
            for n in 0..PROBE_WORKERS {
                let (me, queue) = (Arc::downgrade(self), self.queue.clone());
                let spawned = std::thread::Builder::new()
                    .name(format!("medimg-size-{n}"))
                    .spawn(move || Sizer::work(&me, &queue));
                if let Err(e) = spawned {
                    tracing::warn!("cannot start a size prober: {e}");
                }
            }
        });
        self.queue.ready.notify_all();
        None
    }

    /// Size what directory `parent` still lacks from listing page `page`, once.
    fn size_from_page(&self, parent: i64, page: &str) -> Result<(), SizeError> {
        let done = || {
            lock(&self.dirs).insert(parent, Dir::Paged);
        };
        if matches!(lock(&self.dirs).get(&parent), Some(Dir::Paged)) {
            return Ok(());
        }
        self.pages_read.fetch_add(1, Ordering::Relaxed);
        let dataset = self
            .index
            .entry(parent)?
            .map(|e| e.dataset)
            .unwrap_or_default();
        let listed = crate::source::stats::on_behalf_of(&dataset, || {
            crate::resolve::sizes_on_page(self.fetcher.upstream(), page)
        });
        let sizes = match listed {
            Ok(s) => s,
            Err(e) => {
                done();
                return Err(SizeError::Page(Arc::new(e)));
            }
        };
        let mut sized = Vec::new();
        for e in self.index.unsized_in(parent)? {
            let Some(location) = e.location else { continue };
            let Some(blob) = self.index.blob(location.blob)? else {
                continue;
            };
            let url = blob.url();
            if let Some(&size) = sizes.get(&crate::catalog::percent_decode(url)) {
                let part = Fetcher::listed_part(url, size, None, blob.checksum.as_deref());
                sized.push((e.id, location.blob, part, None));
            }
        }
        self.index.set_sizes(&sized)?;
        tracing::debug!(
            page,
            files = sized.len(),
            "sized a folder from its listing page"
        );
        done();
        Ok(())
    }

    /// A background prober: take the next queued file and size it, until the sizer is gone
    /// (a prober must not keep the index open past the daemon's end).
    fn work(me: &std::sync::Weak<Sizer>, queue: &Queue) {
        loop {
            let next = {
                let q = lock(&queue.files);
                let (mut q, _) = queue
                    .ready
                    .wait_timeout_while(q, IDLE_CHECK, |q| q.is_empty())
                    .unwrap_or_else(|p| p.into_inner());
                q.pop_front()
            };
            let Some(sizer) = me.upgrade() else { return };
            let Some(e) = next else { continue };
            if let Err(err) = sizer.probe(&e) {
                // The reader who asks for it gets the error; the scan goes on.
                tracing::debug!(file = %e.name, "background size probe: {err}");
            }
        }
    }

    /// Size `e` once however many ask at once.
    fn probe(&self, e: &Entry) -> Result<Entry, SizeError> {
        let Some(location) = e.location else {
            return Ok(e.clone());
        };
        let deadline = Instant::now() + self.fetcher.deadline();
        match self
            .flights
            .run(location.blob, Some(deadline), || self.probe_now(e.id))
        {
            Ok(r) => r,
            Err(TimedOut) => Err(SizeError::Fetch(Arc::new(FetchError::TimedOut {
                url: self
                    .index
                    .blob(location.blob)
                    .ok()
                    .flatten()
                    .map(|b| b.url().to_string())
                    .unwrap_or_default(),
                after: self.fetcher.deadline(),
            }))),
        }
    }

    fn probe_now(&self, row: i64) -> Result<Entry, SizeError> {
        // Another flight may have finished between the caller's read and this one.
        let e = self.index.entry(row)?.ok_or(SizeError::Gone)?;
        let Some(location) = e.location.filter(|_| e.size.is_none()) else {
            return Ok(e);
        };
        let blob = self.index.blob(location.blob)?.ok_or(SizeError::Gone)?;
        self.probes.fetch_add(1, Ordering::Relaxed);
        let (part, last_modified) =
            crate::source::stats::on_behalf_of(&e.dataset, || self.fetcher.size_probe(blob.url()))?;
        self.index
            .set_size(e.id, location.blob, &part, last_modified)?
            .ok_or(SizeError::Gone)
    }
}
