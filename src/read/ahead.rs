//! Read-ahead of one file: while reads follow each other, a window of blocks after them is
//! fetched in the background; the window doubles with each sequential read up to
//! [`MAX_AHEAD_BLOCKS`] and falls back to nothing on a seek.
//!
//! Pure bookkeeping: [`ReadAhead::note`] says which range to prefetch, the fetcher's fixed pool
//! of workers fetches it, so read-ahead memory is bounded for the daemon, not per open file.

/// Most blocks read ahead of a sequential reader (32 MiB with 4 MiB blocks: enough to keep a
/// 1 Gbit/s link busy while a reader consumes at disk speed).
pub const MAX_AHEAD_BLOCKS: u64 = 8;

/// Where a file's reader has got to, and how far ahead to fetch.
#[derive(Debug, Default)]
pub struct ReadAhead {
    next: u64,
    blocks: u64,
}

impl ReadAhead {
    /// Note a read of `[at, at + len)` of a blob read in blocks of `block` bytes, whose
    /// interesting part ends at `limit` (the file's end); returns the range to prefetch.
    pub fn note(&mut self, at: u64, len: u64, block: u64, limit: u64) -> Option<(u64, u64)> {
        // The kernel's own read-ahead sends several reads at once and worker threads answer
        // them in any order, so "sequential" means near where the reader has got to, not equal.
        let near = at.abs_diff(self.next) <= block.max(self.blocks * block);
        if near {
            self.blocks = (self.blocks * 2).clamp(1, MAX_AHEAD_BLOCKS);
            self.next = self.next.max(at + len);
        } else {
            self.blocks = 0;
            self.next = at + len;
        }
        (self.blocks > 0 && self.next < limit)
            .then(|| (self.next, (self.blocks * block).min(limit - self.next)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_doubles_while_sequential_and_resets_on_a_seek() {
        let mut ra = ReadAhead::default();
        let mut windows = Vec::new();
        for k in 0..6 {
            windows.push(ra.note(k * 100, 100, 100, 10_000).map(|w| w.1));
        }
        assert_eq!(
            windows,
            [
                Some(100),
                Some(200),
                Some(400),
                Some(800),
                Some(800),
                Some(800)
            ]
        );
        assert_eq!(
            ra.note(5_000, 100, 100, 10_000),
            None,
            "a seek starts again"
        );
        assert_eq!(ra.note(5_100, 100, 100, 10_000), Some((5_200, 100)));
        assert_eq!(
            ra.note(9_900, 100, 100, 10_000),
            None,
            "nothing past the end"
        );
    }
}
