//! Logs fit for journald: one line per event, and a failure that repeats (a training run
//! reading a dataset whose host is down fails thousands of reads a minute) logged once per
//! [`WINDOW`] per kind, the rest counted and summarised in one line when the window ends.
//!
//! A kind is the operation's errno and the dataset: a second EIO of dataset `x` within the
//! window is the same news. `medimg status` still lists each of the last failures.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long failures of one kind are summarised rather than logged.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Kinds tracked at once; past it the oldest windows are closed.
const KINDS: usize = 1024;

struct Seen {
    since: Instant,
    suppressed: u64,
    last: String,
}

/// Failure lines, summarised per kind.
#[derive(Default)]
pub struct Summarised(Mutex<HashMap<String, Seen>>);

impl std::fmt::Debug for Summarised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Summarised")
    }
}

impl Summarised {
    /// Log `line` (a failure of `kind`) as an error, unless one of its kind was logged less
    /// than [`WINDOW`] ago: then count it, and say how many when the window has passed.
    pub fn error(&self, kind: &str, line: &str) {
        self.note(kind, line, |l| tracing::error!("{l}"));
    }

    /// [`Summarised::error`] for what is a warning: nothing failed for a user.
    pub fn warn(&self, kind: &str, line: &str) {
        self.note(kind, line, |l| tracing::warn!("{l}"));
    }

    fn note(&self, kind: &str, line: &str, emit: fn(&str)) {
        let now = Instant::now();
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(seen) = map.get_mut(kind) {
            if now.duration_since(seen.since) < WINDOW {
                seen.suppressed += 1;
                seen.last = line.to_string();
                return;
            }
            if seen.suppressed > 0 {
                emit(&format!(
                    "{} more like the one above in {}s, the last: {}",
                    seen.suppressed,
                    now.duration_since(seen.since).as_secs(),
                    seen.last
                ));
            }
        }
        if map.len() >= KINDS {
            map.retain(|_, s| now.duration_since(s.since) < WINDOW);
        }
        map.insert(
            kind.to_string(),
            Seen {
                since: now,
                suppressed: 0,
                last: String::new(),
            },
        );
        emit(line);
    }

    /// Say how many failures each open window counted (at the end of the daemon).
    pub fn flush(&self) {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for seen in map.values().filter(|s| s.suppressed > 0) {
            tracing::error!(
                "{} more failures like the last of its kind, the last: {}",
                seen.suppressed,
                seen.last
            );
        }
    }
}
