//! Single flight: however many threads want the same thing at once, one produces it and the
//! others wait for its result.
//!
//! Shared by block fetches ([`crate::fetch`]) and member decoding ([`crate::read`]). The result
//! is typed: every waiter gets a clone of what the leader produced, errors included, so a host's
//! refusal reaches each reader as a refusal, not as text.
//!
//! Invariants:
//! - At most one leader per key at a time; a key's flight ends (and a new one may start) only
//!   when its leader finishes or its [`Lead`] guard is dropped.
//! - A leader that unwinds without finishing releases its waiters ([`Waited::Abandoned`]);
//!   nobody waits forever on a flight nobody leads.
//! - A waiter waits at most until its deadline ([`Waited::TimedOut`]); the flight goes on, and
//!   its result serves whoever asks next.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Where a flight stands, as its waiters see it.
#[derive(Debug)]
enum State<V> {
    Running,
    Done(V),
    Abandoned,
}

#[derive(Debug)]
struct Slot<V> {
    state: Mutex<State<V>>,
    cv: Condvar,
}

/// Flights in progress, by key.
#[derive(Debug)]
pub struct Flights<K, V> {
    map: Mutex<HashMap<K, Arc<Slot<V>>>>,
}

impl<K, V> Default for Flights<K, V> {
    fn default() -> Self {
        Flights {
            map: Mutex::new(HashMap::new()),
        }
    }
}

/// What [`Flights::join`] made of the caller.
#[derive(Debug)]
pub enum Join<'a, K: Hash + Eq + Clone, V: Clone> {
    /// The caller produces the value and hands it on with [`Lead::finish`].
    Lead(Lead<'a, K, V>),
    /// Another thread is producing it: [`Follow::wait`] for it.
    Follow(Follow<V>),
}

/// A leader's duty: finish the flight, or release its waiters when dropped.
#[derive(Debug)]
pub struct Lead<'a, K: Hash + Eq + Clone, V: Clone> {
    flights: &'a Flights<K, V>,
    key: K,
    slot: Arc<Slot<V>>,
    done: bool,
}

/// A waiter's ticket.
#[derive(Debug)]
pub struct Follow<V> {
    slot: Arc<Slot<V>>,
}

/// What a waiter got.
#[derive(Debug, PartialEq, Eq)]
pub enum Waited<V> {
    /// The leader's result.
    Done(V),
    /// The leader went away without a result; ask again.
    Abandoned,
    /// The deadline passed first; the flight goes on.
    TimedOut,
}

impl<K: Hash + Eq + Clone, V: Clone> Flights<K, V> {
    /// No flights.
    pub fn new() -> Self {
        Self::default()
    }

    /// Lead the flight for `key`, or follow the one in progress.
    pub fn join(&self, key: K) -> Join<'_, K, V> {
        let mut map = lock(&self.map);
        if let Some(slot) = map.get(&key) {
            return Join::Follow(Follow { slot: slot.clone() });
        }
        let slot = Arc::new(Slot {
            state: Mutex::new(State::Running),
            cv: Condvar::new(),
        });
        map.insert(key.clone(), slot.clone());
        Join::Lead(Lead {
            flights: self,
            key,
            slot,
            done: false,
        })
    }

    /// Whether a flight for `key` is in progress.
    pub fn contains(&self, key: &K) -> bool {
        lock(&self.map).contains_key(key)
    }

    /// `produce` the value for `key` once however many callers ask at once: the first runs it,
    /// the others wait (each until its `deadline`) and get a clone of its result. A waiter whose
    /// leader went away leads the next flight itself.
    pub fn run(
        &self,
        key: K,
        deadline: Option<Instant>,
        produce: impl FnOnce() -> V,
    ) -> Result<V, TimedOut> {
        let mut produce = Some(produce);
        loop {
            match self.join(key.clone()) {
                Join::Lead(lead) => {
                    let Some(produce) = produce.take() else {
                        // Unreachable: a caller leads at most once, since leading returns.
                        return Err(TimedOut);
                    };
                    let v = produce();
                    lead.finish(v.clone());
                    return Ok(v);
                }
                Join::Follow(f) => match f.wait(deadline) {
                    Waited::Done(v) => return Ok(v),
                    Waited::Abandoned => continue,
                    Waited::TimedOut => return Err(TimedOut),
                },
            }
        }
    }
}

/// A waiter's deadline passed before the flight it waited for ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedOut;

impl<K: Hash + Eq + Clone, V: Clone> Lead<'_, K, V> {
    /// Hand `value` to the waiters and end the flight.
    pub fn finish(mut self, value: V) {
        self.end(State::Done(value));
    }

    fn end(&mut self, state: State<V>) {
        self.done = true;
        {
            let mut map = lock(&self.flights.map);
            // Only this flight's entry: a later flight of the same key is not ours to end.
            if map
                .get(&self.key)
                .is_some_and(|s| Arc::ptr_eq(s, &self.slot))
            {
                map.remove(&self.key);
            }
        }
        *lock(&self.slot.state) = state;
        self.slot.cv.notify_all();
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Drop for Lead<'_, K, V> {
    fn drop(&mut self) {
        if !self.done {
            self.end(State::Abandoned);
        }
    }
}

impl<V: Clone> Follow<V> {
    /// Wait for the leader's result, at most until `deadline`.
    pub fn wait(self, deadline: Option<Instant>) -> Waited<V> {
        let mut st = lock(&self.slot.state);
        loop {
            match &*st {
                State::Done(v) => return Waited::Done(v.clone()),
                State::Abandoned => return Waited::Abandoned,
                State::Running => {}
            }
            st = match deadline {
                None => self.slot.cv.wait(st).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let Some(left) = d.checked_duration_since(Instant::now()) else {
                        return Waited::TimedOut;
                    };
                    self.slot
                        .cv
                        .wait_timeout(st, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn concurrent_callers_share_one_run_and_its_typed_error() {
        let flights: Flights<u32, Result<u32, Arc<String>>> = Flights::new();
        let runs = AtomicUsize::new(0);
        let results: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        flights.run(7, None, || {
                            runs.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(100));
                            Err(Arc::new("denied".to_string()))
                        })
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        for r in results {
            assert_eq!(r.unwrap().unwrap_err().as_str(), "denied");
        }
        assert!(!flights.contains(&7), "the flight ended");
    }

    #[test]
    fn a_waiter_gives_up_at_its_deadline_and_the_flight_goes_on() {
        let flights: Flights<u32, u32> = Flights::new();
        std::thread::scope(|s| {
            let Join::Lead(lead) = flights.join(1) else {
                panic!("first caller leads")
            };
            let waiter = s.spawn(|| {
                let t = Instant::now();
                let r = flights.run(1, Some(t + Duration::from_millis(50)), || 0);
                (r, t.elapsed())
            });
            let (r, waited) = waiter.join().unwrap();
            assert_eq!(r, Err(TimedOut));
            assert!(waited < Duration::from_secs(5), "{waited:?}");
            assert!(flights.contains(&1), "the leader still runs");
            lead.finish(5);
        });
        assert_eq!(
            flights.run(1, None, || 9),
            Ok(9),
            "a new flight after the end"
        );
    }

    #[test]
    fn a_leader_that_goes_away_releases_its_waiters_to_lead_again() {
        let flights: Flights<u32, u32> = Flights::new();
        std::thread::scope(|s| {
            let lead = flights.join(3);
            let waiter = s.spawn(|| flights.run(3, None, || 42));
            std::thread::sleep(Duration::from_millis(30));
            drop(lead);
            assert_eq!(waiter.join().unwrap(), Ok(42));
        });
    }
}
