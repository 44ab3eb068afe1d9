//! What each host has been asked and has answered since start: the counters `medimg status`
//! shows. Kept by the HTTP upstream, per host as the catalog names it (before mirror rules),
//! each hop of a redirect chain counted at its own host.

use std::collections::BTreeMap;
use std::sync::Mutex;
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

/// Counters of every host asked so far.
#[derive(Debug, Default)]
pub struct HostStats(Mutex<BTreeMap<String, HostCounters>>);

impl HostStats {
    fn with(&self, host: &str, f: impl FnOnce(&mut HostCounters)) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match map.get_mut(host) {
            Some(c) => f(c),
            None => f(map.entry(host.to_string()).or_default()),
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
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
