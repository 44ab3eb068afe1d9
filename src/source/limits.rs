//! Per-host request budgets: how many requests may be in flight to a host, and how many may
//! start per minute, with pauses a host asks for (`Retry-After`, `X-RateLimit-Remaining: 0`).
//!
//! Requests are the scarce resource: Zenodo allows a guest 60 a minute and counts every Range
//! GET. Each host has a budget (defaults below, from the hosts' published limits, or from the
//! config's `[[host]]` entries); every hop of every request, redirects included, is admitted
//! against the budget of the host it goes to. The rate is a GCRA (a token bucket without a
//! timer): a host may take `burst` requests at once, then one per interval.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The budget of one host.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HostLimit {
    /// Requests in flight at once (headers and body).
    pub concurrency: usize,
    /// Requests started per minute, or `None` for no limit.
    pub per_minute: Option<f64>,
    /// Requests that may start at once before the rate applies.
    pub burst: u32,
}

/// Budget for a host the table does not know: object stores and static servers take many
/// parallel requests (S3 and GCS publish thousands per second per prefix).
const DEFAULT: HostLimit = HostLimit {
    concurrency: 16,
    per_minute: None,
    burst: 1,
};

/// The published or recommended limits of the hosts the catalog uses
/// (`shared/research/upstreams.md` §1 and §5.5, which cite each host's documentation).
pub fn default_limit(host: &str) -> HostLimit {
    let l = |concurrency, per_minute: Option<f64>, burst| HostLimit {
        concurrency,
        per_minute,
        burst,
    };
    match host {
        // Guests get 60 requests a minute and 2000 an hour (developers.zenodo.org); keep
        // a margin for the user's own browser.
        "zenodo.org" => l(4, Some(50.0), 10),
        // figshare asks for about one request a second.
        "api.figshare.com" | "ndownloader.figshare.com" => l(4, Some(60.0), 5),
        // Undocumented; treated like figshare.
        "data.mendeley.com" => l(4, Some(60.0), 5),
        // Kaggle publishes no figure and answers 429 to bursts of per-file downloads. Signed
        // URLs are cached, so a dataset costs a handful of these.
        "www.kaggle.com" => l(4, Some(60.0), 5),
        // 60 requests an hour without a token.
        "api.github.com" => l(2, Some(1.0), 30),
        "physionet.org" => l(4, None, 1),
        "www.googleapis.com" => l(2, None, 1),
        "huggingface.co" => l(8, None, 1),
        "repo-prod.prod.sagebase.org" => l(4, None, 1),
        "api.osf.io" => l(4, Some(100.0), 10),
        _ => DEFAULT,
    }
}

struct HostState {
    slots: Arc<tokio::sync::Semaphore>,
    sched: Mutex<Sched>,
    limit: HostLimit,
}

struct Sched {
    /// GCRA's theoretical arrival time of the next request.
    tat: Instant,
    /// The host asked for no requests before this.
    paused_until: Option<Instant>,
}

/// Admission of requests against per-host budgets.
pub struct Limiter {
    overrides: HashMap<String, HostLimit>,
    hosts: Mutex<HashMap<String, Arc<HostState>>>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("overrides", &self.overrides)
            .finish_non_exhaustive()
    }
}

/// A request's place in its host's budget; released when dropped (`None` only if the host's
/// semaphore were closed, which medimg never does).
pub type Permit = Option<tokio::sync::OwnedSemaphorePermit>;

impl Limiter {
    /// Budgets from the defaults, with `overrides` (host -> limit) taking precedence.
    pub fn new(overrides: HashMap<String, HostLimit>) -> Limiter {
        Limiter {
            overrides,
            hosts: Mutex::new(HashMap::new()),
        }
    }

    /// The budget `host` gets.
    pub fn limit_of(&self, host: &str) -> HostLimit {
        self.overrides
            .get(host)
            .copied()
            .unwrap_or_else(|| default_limit(host))
    }

    fn state(&self, host: &str) -> Arc<HostState> {
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        hosts
            .entry(host.to_string())
            .or_insert_with(|| {
                let limit = self.limit_of(host);
                Arc::new(HostState {
                    slots: Arc::new(tokio::sync::Semaphore::new(limit.concurrency.max(1))),
                    sched: Mutex::new(Sched {
                        tat: Instant::now(),
                        paused_until: None,
                    }),
                    limit,
                })
            })
            .clone()
    }

    /// Wait until a request to `host` may start: a free slot, the rate, and any pause.
    pub async fn admit(&self, host: &str) -> Permit {
        let st = self.state(host);
        let permit = st.slots.clone().acquire_owned().await.ok();
        loop {
            let wait = st.next_wait(Instant::now());
            if wait.is_zero() {
                return permit;
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// The host asked for no requests for `d` (Retry-After, an exhausted rate-limit window).
    pub fn pause(&self, host: &str, d: Duration) {
        let st = self.state(host);
        let mut s = st.sched.lock().unwrap_or_else(|p| p.into_inner());
        let until = Instant::now() + d;
        s.paused_until = Some(s.paused_until.map_or(until, |p| p.max(until)));
    }
}

impl HostState {
    /// Zero when a request may start now (and books it); otherwise how long to wait.
    fn next_wait(&self, now: Instant) -> Duration {
        let mut s = self.sched.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = s.paused_until {
            if p > now {
                return p - now;
            }
            s.paused_until = None;
        }
        let Some(pm) = self.limit.per_minute.filter(|&pm| pm > 0.0) else {
            return Duration::ZERO;
        };
        let interval = Duration::from_secs_f64(60.0 / pm);
        let tolerance = interval * self.limit.burst.saturating_sub(1);
        let earliest = s.tat.checked_sub(tolerance).unwrap_or(now);
        if now >= earliest {
            s.tat = s.tat.max(now) + interval;
            Duration::ZERO
        } else {
            earliest - now
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(per_minute: f64, burst: u32) -> HostState {
        HostState {
            slots: Arc::new(tokio::sync::Semaphore::new(1)),
            sched: Mutex::new(Sched {
                tat: Instant::now(),
                paused_until: None,
            }),
            limit: HostLimit {
                concurrency: 1,
                per_minute: Some(per_minute),
                burst,
            },
        }
    }

    #[test]
    fn rate_allows_a_burst_then_one_per_interval() {
        let st = state(60.0, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(st.next_wait(t0), Duration::ZERO);
        }
        let w = st.next_wait(t0);
        assert!(
            w > Duration::from_millis(900) && w <= Duration::from_secs(1),
            "{w:?}"
        );
        assert_eq!(st.next_wait(t0 + Duration::from_secs(1)), Duration::ZERO);
    }

    #[test]
    fn a_pause_holds_every_request_until_it_ends() {
        let l = Limiter::new(HashMap::new());
        l.pause("zenodo.org", Duration::from_secs(30));
        let st = l.state("zenodo.org");
        let w = st.next_wait(Instant::now());
        assert!(w > Duration::from_secs(29), "{w:?}");
        assert_eq!(
            st.next_wait(Instant::now() + Duration::from_secs(31)),
            Duration::ZERO
        );
    }

    #[test]
    fn overrides_beat_defaults() {
        let mut o = HashMap::new();
        let mine = HostLimit {
            concurrency: 1,
            per_minute: Some(5.0),
            burst: 1,
        };
        o.insert("zenodo.org".to_string(), mine);
        let l = Limiter::new(o);
        assert_eq!(l.limit_of("zenodo.org"), mine);
        assert_eq!(l.limit_of("api.github.com").per_minute, Some(1.0));
        assert_eq!(l.limit_of("example.org"), DEFAULT);
    }
}
