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
//!   sizes it) before any `stat`, `open` or read uses it, and no tool ever sees the 0.
//! - The first lookup or getattr that needs a size (`stat`, `ls -l`, `open`) asks the host
//!   for the size, not the bytes: a zero-length probe (`Range: bytes=0-0`, answered with
//!   `Content-Range: bytes 0-0/<size>`), or the `Content-Length` of a host that ignores Range
//!   ([`crate::fetch::Fetcher::size_probe`]). The answer goes into the index: asked once, ever.
//! - A directory whose files are statted one after another (`ls -l`, `du`, `rsync`): once
//!   [`SCAN_AFTER`] sizes have been asked in it, the rest of its unknown sizes are probed in
//!   the background, [`PROBE_WORKERS`] at a time (each request within the host's own budget),
//!   so `ls -l` waits a round trip per few files, not one per file. A lookup of a file being
//!   probed joins that probe; one the queue has not reached probes at once, never waiting
//!   behind the queue. A user reading one or two files of a large directory never sets this
//!   off.
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

/// Sizes asked in one directory before the rest of it is probed in the background.
pub const SCAN_AFTER: u32 = 4;
/// Background probes at once (the host's limits apply to each as to any request).
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
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SizeStats {
    /// Zero-length probes sent (foreground and background).
    pub probes: u64,
    /// Directories whose remaining sizes were queued for the background.
    pub scans: u64,
}

/// Learns sizes; share it with an `Arc`.
pub struct Sizer {
    index: Arc<Index>,
    fetcher: Arc<Fetcher>,
    /// Probes in progress, by blob row.
    flights: Flights<i64, Result<Entry, SizeError>>,
    /// Sizes asked per directory row; `u32::MAX` once its rest is queued.
    asked: Mutex<HashMap<i64, u32>>,
    queue: Mutex<VecDeque<Entry>>,
    queued: Condvar,
    workers: std::sync::Once,
    probes: AtomicU64,
    scans: AtomicU64,
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
            asked: Mutex::new(HashMap::new()),
            queue: Mutex::new(VecDeque::new()),
            queued: Condvar::new(),
            workers: std::sync::Once::new(),
            probes: AtomicU64::new(0),
            scans: AtomicU64::new(0),
        })
    }

    /// `e` with its size: as it is when known, learnt from the host now when not.
    pub fn sized(self: &Arc<Self>, e: Entry) -> Result<Entry, SizeError> {
        if e.size.is_some() || e.location.is_none() {
            return Ok(e);
        }
        self.note_asked(e.parent);
        self.probe(&e)
    }

    /// What sizing has done since start.
    pub fn stats(&self) -> SizeStats {
        SizeStats {
            probes: self.probes.load(Ordering::Relaxed),
            scans: self.scans.load(Ordering::Relaxed),
        }
    }

    /// Count a size asked in directory `parent`; at [`SCAN_AFTER`], queue the rest of it.
    fn note_asked(self: &Arc<Self>, parent: i64) {
        let scan = {
            let mut asked = lock(&self.asked);
            let n = asked.entry(parent).or_insert(0);
            if *n == u32::MAX {
                return;
            }
            *n += 1;
            if *n >= SCAN_AFTER {
                *n = u32::MAX;
                true
            } else {
                false
            }
        };
        if !scan {
            return;
        }
        let rest = match self.index.unsized_in(parent) {
            Ok(rest) => rest,
            Err(e) => {
                tracing::warn!("{e}");
                return;
            }
        };
        if rest.is_empty() {
            return;
        }
        self.scans.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            files = rest.len(),
            "sizes asked one after another in a directory: probing the rest of it in the background"
        );
        lock(&self.queue).extend(rest);
        self.workers.call_once(|| {
            for n in 0..PROBE_WORKERS {
                let me = self.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("medimg-size-{n}"))
                    .spawn(move || me.work());
                if let Err(e) = spawned {
                    tracing::warn!("cannot start a size prober: {e}");
                }
            }
        });
        self.queued.notify_all();
    }

    /// A background prober: take the next queued file, size it, forever.
    fn work(&self) {
        loop {
            let e = {
                let mut q = lock(&self.queue);
                loop {
                    if let Some(e) = q.pop_front() {
                        break e;
                    }
                    q = self.queued.wait(q).unwrap_or_else(|p| p.into_inner());
                }
            };
            if let Err(err) = self.probe(&e) {
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
        let (part, last_modified) = self.fetcher.size_probe(blob.url())?;
        self.index
            .set_size(location.blob, &part, last_modified)?
            .ok_or(SizeError::Gone)
    }
}
