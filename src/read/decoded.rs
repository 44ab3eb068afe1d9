//! Decoded members in memory: the checked content of members up to
//! [`super::INLINE_MAX`], shared by every reader of the file, under a byte budget.
//!
//! Invariants:
//! - **One decode per member at a time.** Concurrent first reads of a member share one
//!   decode ([`crate::flight`]), and its error.
//! - **The budget holds.** Bytes held never exceed [`DECODED_BUDGET`] after an insert; a value
//!   that replaces another is counted once. The budget is several times [`super::INLINE_MAX`],
//!   so a member never evicts itself and a handful of readers in the middle of large members
//!   do not evict each other (the cliff this replaced: a 40 MiB member under a 32 MiB budget
//!   was decoded again for every 1 MiB read).
//! - **Only what is being read stays.** A member whose bytes have all been served once is
//!   dropped (the kernel's page cache of the file has them now), as is one read whole in a
//!   single request; so members in the middle of being read are what the budget holds.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use lru::LruCache;

use super::ReadError;
use crate::flight::Flights;

/// Memory for decoded members shared between readers (LRU by bytes): six members of the
/// largest decoded size in the middle of being read at once.
pub const DECODED_BUDGET: u64 = 6 * super::INLINE_MAX;

struct Held {
    bytes: Bytes,
    /// Bytes served from it so far.
    served: u64,
}

/// The decoded-member cache.
pub struct Decoded {
    held: Mutex<(LruCache<i64, Held>, u64)>,
    flights: Flights<i64, Result<Bytes, Arc<ReadError>>>,
    budget: u64,
}

impl std::fmt::Debug for Decoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Decoded({} bytes)", self.bytes())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Decoded {
    /// An empty cache holding at most `budget` bytes.
    pub fn new(budget: u64) -> Decoded {
        Decoded {
            held: Mutex::new((LruCache::unbounded(), 0)),
            flights: Flights::new(),
            budget,
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        lock(&self.held).1
    }

    /// Members held.
    pub fn members(&self) -> usize {
        lock(&self.held).0.len()
    }

    /// The content of member `id`, decoded by `decode` once however many ask at once (waiters
    /// give up at `deadline` with `timed_out()`). `keep` says whether to hold it for the reads
    /// that follow.
    pub fn get_or_decode(
        &self,
        id: i64,
        keep: bool,
        deadline: Instant,
        decode: impl FnOnce() -> Result<Bytes, ReadError>,
        timed_out: impl FnOnce() -> ReadError,
    ) -> Result<Bytes, ReadError> {
        if let Some(h) = lock(&self.held).0.get(&id) {
            return Ok(h.bytes.clone());
        }
        let got = self.flights.run(id, Some(deadline), || {
            // A flight that ended just before ours may have left it.
            if let Some(h) = lock(&self.held).0.get(&id) {
                return Ok(h.bytes.clone());
            }
            let bytes = decode().map_err(Arc::new)?;
            if keep {
                self.put(id, bytes.clone());
            }
            Ok(bytes)
        });
        match got {
            Ok(Ok(b)) => Ok(b),
            Ok(Err(e)) => Err(ReadError::Shared(e)),
            Err(_) => Err(timed_out()),
        }
    }

    /// Count `len` bytes served from member `id` of `size` bytes; once all are, drop it.
    pub fn served(&self, id: i64, len: u64, size: u64) {
        let mut g = lock(&self.held);
        let (lru, total) = &mut *g;
        let done = match lru.peek_mut(&id) {
            Some(h) => {
                h.served += len;
                h.served >= size
            }
            None => false,
        };
        if done && let Some(h) = lru.pop(&id) {
            *total -= h.bytes.len() as u64;
        }
    }

    fn put(&self, id: i64, bytes: Bytes) {
        let len = bytes.len() as u64;
        if len > self.budget {
            return;
        }
        let mut g = lock(&self.held);
        let (lru, total) = &mut *g;
        if let Some(old) = lru.put(id, Held { bytes, served: 0 }) {
            *total -= old.bytes.len() as u64;
        }
        *total += len;
        while *total > self.budget {
            match lru.pop_lru() {
                Some((_, old)) => *total -= old.bytes.len() as u64,
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    fn timeout() -> ReadError {
        ReadError::BadHandle
    }

    #[test]
    fn replacing_a_member_counts_its_bytes_once_and_the_budget_holds() {
        let d = Decoded::new(1000);
        for _ in 0..5 {
            d.put(1, Bytes::from(vec![0u8; 400]));
        }
        assert_eq!((d.members(), d.bytes()), (1, 400));
        d.put(2, Bytes::from(vec![0u8; 400]));
        d.put(3, Bytes::from(vec![0u8; 400]));
        assert_eq!((d.members(), d.bytes()), (2, 800), "the oldest went");
        d.put(4, Bytes::from(vec![0u8; 2000]));
        assert_eq!(d.bytes(), 800, "larger than the budget: not held");
    }

    #[test]
    fn a_member_under_the_budget_is_decoded_once_for_all_its_reads() {
        let d = Decoded::new(1000);
        let decodes = AtomicUsize::new(0);
        let decode = || {
            decodes.fetch_add(1, Ordering::SeqCst);
            Ok(Bytes::from(vec![7u8; 900]))
        };
        for k in 0..9 {
            let b = d.get_or_decode(1, true, far(), decode, timeout).unwrap();
            assert_eq!(b.len(), 900);
            d.served(1, 100, 900);
            assert_eq!(
                (d.members() == 0),
                k == 8,
                "dropped once every byte was served"
            );
        }
        assert_eq!(decodes.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn concurrent_first_reads_share_one_decode_and_its_error() {
        let d = Decoded::new(1000);
        let decodes = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    let r = d.get_or_decode(
                        5,
                        true,
                        far(),
                        || {
                            decodes.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(100));
                            Err(ReadError::IsDir)
                        },
                        timeout,
                    );
                    assert_eq!(r.unwrap_err().errno(), libc::EISDIR);
                });
            }
        });
        assert_eq!(decodes.load(Ordering::SeqCst), 1);
        assert!((d.members() == 0), "an error is not kept");
    }
}
