//! `medimg prefetch PATH...`: warm the cache before a training run by reading, through the
//! mount, every file below the paths given, as their user (so a user can warm only what the
//! mount lets them read).
//!
//! Order is what costs the upstream least: a file's inode number is its row in the index,
//! and rows follow archive order, so files read in inode order walk each archive front to
//! back, every block fetched once and whole (about one request per block, as reading does).
//! A few readers run at once, so one block's wait overlaps the next. Nothing is refetched on a
//! second run: what is cached is read from the cache. Ctrl-C stops after the files being read;
//! running it again goes on from there at disk speed.

use std::io::{IsTerminal, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Files read at once.
const READERS: usize = 4;

/// A file to read: its inode (archive order), size and path.
struct Job {
    ino: u64,
    size: u64,
    path: PathBuf,
}

/// What a prefetch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Done {
    /// Files read whole.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Files that could not be read (each reported on stderr).
    pub failed: u64,
    /// Whether Ctrl-C stopped it before the end.
    pub stopped: bool,
}

/// Why a prefetch could not start.
#[derive(Debug, thiserror::Error)]
pub enum PrefetchError {
    /// A path given cannot be listed.
    #[error("{path}: {source}")]
    Path {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Every regular file at or below `roots`, each once, in inode (archive) order.
fn jobs(roots: &[PathBuf]) -> Result<Vec<Job>, PrefetchError> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = roots.to_vec();
    while let Some(p) = stack.pop() {
        let err = |source| PrefetchError::Path {
            path: p.clone(),
            source,
        };
        let md = std::fs::metadata(&p).map_err(err)?;
        if md.is_dir() {
            for e in std::fs::read_dir(&p).map_err(err)? {
                stack.push(e.map_err(err)?.path());
            }
        } else if md.is_file() {
            out.push(Job {
                ino: md.ino(),
                size: md.size(),
                path: p,
            });
        }
    }
    out.sort_by_key(|j| j.ino);
    out.dedup_by_key(|j| j.ino);
    Ok(out)
}

/// Paths one a line from `list` (blank lines and `#` comments skipped).
pub fn read_list(list: &Path) -> std::io::Result<Vec<PathBuf>> {
    Ok(std::fs::read_to_string(list)?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(PathBuf::from)
        .collect())
}

/// Read every file below `roots` once, showing progress on stderr; stops early when `stop`
/// is set (Ctrl-C).
pub fn run(roots: &[PathBuf], stop: Arc<AtomicBool>) -> Result<Done, PrefetchError> {
    let jobs = Arc::new(jobs(roots)?);
    let total_bytes: u64 = jobs.iter().map(|j| j.size).sum();
    let next = Arc::new(AtomicUsize::new(0));
    let (files, bytes, failed) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let readers: Vec<_> = (0..READERS.min(jobs.len()))
        .map(|_| {
            let (jobs, next, stop) = (jobs.clone(), next.clone(), stop.clone());
            let (files, bytes, failed) = (files.clone(), bytes.clone(), failed.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 1 << 20];
                while !stop.load(Ordering::Relaxed) {
                    let Some(job) = jobs.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        break;
                    };
                    match read_whole(&job.path, &mut buf, &bytes) {
                        Ok(()) => {
                            files.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            eprintln!("medimg prefetch: {}: {e}", job.path.display());
                        }
                    }
                }
            })
        })
        .collect();
    let bar = if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(total_bytes);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(bar)
    } else {
        None
    };
    let started = Instant::now();
    let mut last_line = Instant::now();
    let total_files = jobs.len() as u64;
    let line = |files: u64, b: u64| {
        let secs = started.elapsed().as_secs_f64().max(1e-3);
        format!(
            "{files}/{total_files} files, {} of {} ({}/s)",
            crate::config::human_size(b),
            crate::config::human_size(total_bytes),
            crate::config::human_size((b as f64 / secs) as u64)
        )
    };
    while readers.iter().any(|r| !r.is_finished()) {
        std::thread::sleep(Duration::from_millis(100));
        let (f, b) = (files.load(Ordering::Relaxed), bytes.load(Ordering::Relaxed));
        match &bar {
            Some(bar) => {
                bar.set_position(b);
                bar.set_message(format!("{f}/{total_files} files"));
            }
            None if last_line.elapsed() >= Duration::from_secs(5) => {
                eprintln!("medimg prefetch: {}", line(f, b));
                last_line = Instant::now();
            }
            None => {}
        }
    }
    for r in readers {
        let _ = r.join();
    }
    let done = Done {
        files: files.load(Ordering::Relaxed),
        bytes: bytes.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        stopped: stop.load(Ordering::Relaxed),
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    eprintln!(
        "medimg prefetch: {}{}",
        line(done.files, done.bytes),
        if done.stopped {
            "; stopped: run it again to go on (what is cached is not fetched again)"
        } else {
            ""
        }
    );
    Ok(done)
}

fn read_whole(path: &Path, buf: &mut [u8], bytes: &AtomicU64) -> std::io::Result<()> {
    let mut f = std::fs::File::open(path)?;
    loop {
        let n = f.read(buf)?;
        if n == 0 {
            return Ok(());
        }
        bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
}
