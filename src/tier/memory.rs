//! An in-memory [`ObjectStore`] for tests, and [`Faulty`], a wrapper that makes any store
//! fail on purpose: down, refusing, slow, or handing back damaged objects.
//!
//! `MemoryStore` keeps the one property the tier relies on from a real store: a PUT with
//! `if_absent` is atomic (two racing nodes cannot both win it). It counts the requests it
//! answers, so tests can assert how often the store was asked.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{ObjectStore, Put, StoreError};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Objects in a map; share it between "nodes" with an `Arc`.
#[derive(Debug, Default)]
pub struct MemoryStore {
    objects: Mutex<HashMap<String, Vec<u8>>>,
    requests: AtomicU64,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// The names held, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut n: Vec<String> = lock(&self.objects).keys().cloned().collect();
        n.sort();
        n
    }

    /// The object `name` as stored (envelope and all).
    pub fn raw(&self, name: &str) -> Option<Vec<u8>> {
        lock(&self.objects).get(name).cloned()
    }

    /// Replace the object `name` as stored, bypassing everything (to damage it in a test).
    pub fn set_raw(&self, name: &str, body: Vec<u8>) {
        lock(&self.objects).insert(name.to_string(), body);
    }

    /// Requests answered so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

impl ObjectStore for MemoryStore {
    fn get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        Ok(lock(&self.objects).get(name).cloned())
    }

    fn put(&self, name: &str, body: &[u8], if_absent: bool) -> Result<Put, StoreError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut objects = lock(&self.objects);
        if if_absent && objects.contains_key(name) {
            return Ok(Put::Exists);
        }
        objects.insert(name.to_string(), body.to_vec());
        Ok(Put::Done)
    }

    fn delete(&self, name: &str) -> Result<(), StoreError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        lock(&self.objects).remove(name);
        Ok(())
    }

    fn describe(&self) -> String {
        "memory".into()
    }
}

impl<S: ObjectStore + ?Sized> ObjectStore for std::sync::Arc<S> {
    fn get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        (**self).get(name)
    }
    fn put(&self, name: &str, body: &[u8], if_absent: bool) -> Result<Put, StoreError> {
        (**self).put(name, body, if_absent)
    }
    fn delete(&self, name: &str) -> Result<(), StoreError> {
        (**self).delete(name)
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
}

/// How [`Faulty`] misbehaves now.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Every request fails as if the store were unreachable.
    pub down: bool,
    /// Every request is refused as if the credentials were wrong.
    pub refuse: bool,
    /// Every request takes this long first.
    pub delay: Option<Duration>,
    /// Objects read back have their last byte flipped.
    pub flip_reads: bool,
    /// The next this many requests are asked to slow down (503 SlowDown).
    pub throttle: u64,
}

/// A store that misbehaves as told ([`Faulty::set`]), in front of another.
pub struct Faulty<S> {
    inner: S,
    faults: Mutex<Faults>,
}

impl<S: ObjectStore> Faulty<S> {
    /// `inner`, behaving until told otherwise.
    pub fn new(inner: S) -> Faulty<S> {
        Faulty {
            inner,
            faults: Mutex::new(Faults::default()),
        }
    }

    /// Misbehave like this from now on.
    pub fn set(&self, faults: Faults) {
        *lock(&self.faults) = faults;
    }

    fn gate(&self) -> Result<Faults, StoreError> {
        let f = {
            let mut now = lock(&self.faults);
            if now.throttle > 0 {
                now.throttle -= 1;
                return Err(StoreError::Throttled {
                    store: self.inner.describe(),
                    message: "HTTP 503 SlowDown (injected)".into(),
                });
            }
            now.clone()
        };
        if let Some(d) = f.delay {
            std::thread::sleep(d);
        }
        let store = self.inner.describe();
        if f.down {
            return Err(StoreError::Unavailable {
                store,
                message: "connection refused (injected)".into(),
            });
        }
        if f.refuse {
            return Err(StoreError::Refused {
                store,
                message: "HTTP 403 AccessDenied (injected)".into(),
            });
        }
        Ok(f)
    }
}

impl<S: ObjectStore> ObjectStore for Faulty<S> {
    fn get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let f = self.gate()?;
        let mut got = self.inner.get(name)?;
        if f.flip_reads
            && let Some(last) = got.as_mut().and_then(|b| b.last_mut())
        {
            *last ^= 1;
        }
        Ok(got)
    }

    fn put(&self, name: &str, body: &[u8], if_absent: bool) -> Result<Put, StoreError> {
        self.gate()?;
        self.inner.put(name, body, if_absent)
    }

    fn delete(&self, name: &str) -> Result<(), StoreError> {
        self.gate()?;
        self.inner.delete(name)
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}
