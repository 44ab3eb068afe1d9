//! What each host has been asked and has answered since start: the counters `medimg status`
//! shows. Kept by the HTTP upstream, per host as the catalog names it (before mirror rules),
//! each hop of a redirect chain counted at its own host.
//!
//! The same counters are kept per dataset: whoever asks the upstream on a dataset's behalf
//! (a read, its read-ahead, indexing, a size probe) runs inside [`on_behalf_of`], and every
//! request, byte and failure of that thread meanwhile counts for the dataset too. The HTTP
//! layer itself knows only URLs; a thread-local tag is what carries the dataset down to it.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

/// One host's counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct HostCounters {
    /// Requests sent (every hop of every redirect chain).
    pub requests: u64,
    /// Body bytes received.
    pub bytes: u64,
    /// Failures worth a retry (network errors, 429, 5xx).
    pub transient: u64,
    /// Other failures (4xx, refusals, wrong answers).
    pub errors: u64,
    /// Requests that waited for the host's budget (concurrency, rate, a pause it asked for).
    pub waits: u64,
    /// Milliseconds they waited in all.
    pub wait_ms: u64,
    /// Microseconds from sending a request to its answer's headers, summed over requests.
    pub answer_us: u64,
}

thread_local! {
    /// The dataset this thread asks the upstream for, if any.
    static ON_BEHALF: RefCell<Option<Arc<str>>> = const { RefCell::new(None) };
}

/// Run `f` with the upstream requests this thread makes meanwhile counted for `dataset`.
pub fn on_behalf_of<T>(dataset: &str, f: impl FnOnce() -> T) -> T {
    on_behalf_of_tag(Some(Arc::from(dataset)), f)
}

/// [`on_behalf_of`] with a tag taken from [`current_dataset`] (handed to another thread).
pub fn on_behalf_of_tag<T>(tag: Option<Arc<str>>, f: impl FnOnce() -> T) -> T {
    let before = ON_BEHALF.with(|c| c.replace(tag));
    let out = f();
    ON_BEHALF.with(|c| *c.borrow_mut() = before);
    out
}

/// The dataset this thread asks for now, to hand to a thread that goes on with the work.
pub fn current_dataset() -> Option<Arc<str>> {
    ON_BEHALF.with(|c| c.borrow().clone())
}

/// Counters of every host asked so far, and of every dataset they were asked for.
#[derive(Debug, Default)]
pub struct HostStats {
    hosts: Mutex<BTreeMap<String, HostCounters>>,
    datasets: Mutex<BTreeMap<String, HostCounters>>,
}

fn bump(map: &Mutex<BTreeMap<String, HostCounters>>, key: &str, f: impl FnOnce(&mut HostCounters)) {
    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
    match map.get_mut(key) {
        Some(c) => f(c),
        None => f(map.entry(key.to_string()).or_default()),
    }
}

impl HostStats {
    fn with(&self, host: &str, f: impl Fn(&mut HostCounters)) {
        bump(&self.hosts, host, &f);
        if let Some(d) = current_dataset() {
            bump(&self.datasets, &d, &f);
        }
    }

    /// A request went out to `host`.
    pub fn request(&self, host: &str) {
        self.with(host, |c| c.requests += 1);
    }

    /// `n` body bytes came from `host`.
    pub fn bytes(&self, host: &str, n: u64) {
        if n > 0 {
            self.with(host, |c| c.bytes += n);
        }
    }

    /// A request to `host` failed; `transient` if it is worth a retry.
    pub fn failed(&self, host: &str, transient: bool) {
        self.with(host, |c| {
            if transient {
                c.transient += 1
            } else {
                c.errors += 1
            }
        });
    }

    /// A request to `host` was answered (headers) `d` after it was sent.
    pub fn answered(&self, host: &str, d: Duration) {
        self.with(host, |c| c.answer_us += d.as_micros() as u64);
    }

    /// A request to `host` waited `d` for the host's budget.
    pub fn waited(&self, host: &str, d: Duration) {
        self.with(host, |c| {
            c.waits += 1;
            c.wait_ms += d.as_millis() as u64;
        });
    }

    /// Every host's counters now.
    pub fn snapshot(&self) -> BTreeMap<String, HostCounters> {
        self.hosts.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Every dataset's counters now (the requests made on its behalf).
    pub fn by_dataset(&self) -> BTreeMap<String, HostCounters> {
        self.datasets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_on_a_datasets_behalf_count_for_it_too() {
        let s = HostStats::default();
        s.request("h");
        on_behalf_of("d", || {
            s.request("h");
            s.bytes("h", 10);
        });
        s.bytes("h", 1);
        assert_eq!(s.snapshot()["h"].requests, 2);
        assert_eq!(s.snapshot()["h"].bytes, 11);
        let d = s.by_dataset();
        assert_eq!((d["d"].requests, d["d"].bytes), (1, 10));
        assert_eq!(current_dataset(), None);
    }
}
