//! The shared tier: the daemons of a cluster share every block and every dataset listing
//! through an S3-compatible object store, so each is fetched from its upstream once per
//! cluster, not once per node.
//!
//! The store is an existing one (SeaweedFS, Garage, MinIO, Ceph RGW, AWS S3) behind the
//! three-call [`ObjectStore`] trait: [`s3::S3Store`] speaks S3 (SigV4), [`memory::MemoryStore`]
//! stands in for it in tests, and [`memory::Faulty`] makes either fail on purpose.
//!
//! Names in the store, under the configured prefix (each starts with a hash, so a store that
//! partitions its key space by prefix spreads them):
//! - `b/<blob key>-<block size>-<index>`: a block of an upstream object. The blob key is
//!   derived from the URL, the size and the upstream's validator (ETag, else Last-Modified,
//!   else the host's checksum), so a block of another version has another name;
//! - `l/<hash of dataset, catalog fingerprint, listing format>-<dataset>`: what indexing the
//!   dataset wrote (its files, blobs, parts and decompression checkpoints);
//! - `lease/<name>`: which node is fetching that object now, and until when.
//!
//! What a node does for an object it lacks ([`Tier::once`]):
//! 1. GET it. Found and its envelope ([`envelope`]) checks out: a hit. Found and damaged: the
//!    damage is reported and the object deleted, then it is a miss.
//! 2. On a miss, PUT the lease with `If-None-Match: *`. The one node whose PUT succeeds looks
//!    once more (the holder before it may have just let go), then fetches from the upstream, publishes the object and deletes the lease; while it works it renews
//!    the lease, so a lease outlives its holder by at most one lease period.
//! 3. A node whose lease PUT is refused (412) polls for the object, backing off from 20 ms to
//!    250 ms. It stops waiting and fetches itself when the lease is gone or expired without an
//!    object (the holder failed or died) or, for blocks, after the configured `wait`.
//!
//! Invariants:
//! - nothing read from the store is used before its envelope checks out (its name, length and
//!   SHA-256), and the caller checks what it knows on top (a block's length, a listing's rows);
//! - the store is optional: every failure of it (unreachable, slow, 5xx, refusals) becomes
//!   "ask the upstream", counted and logged once a minute, never an error for a reader. After
//!   a failure the store is left alone for a while ([`PAUSE_FIRST`], doubling up to
//!   [`PAUSE_MAX`]) so a dead store costs one timeout, not one per block;
//! - the store's credentials go to its endpoint only, and never into a log.

pub mod envelope;
pub mod memory;
pub mod s3;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::logs::Summarised;

/// How long the store is left alone after its first failure.
pub const PAUSE_FIRST: Duration = Duration::from_secs(5);
/// The longest the store is left alone after failures in a row.
pub const PAUSE_MAX: Duration = Duration::from_secs(120);
/// The longest a request waits out a store that asks to slow down before it counts as failed.
pub const THROTTLED_MAX: Duration = Duration::from_secs(10);
/// First and longest pause between two looks for an object another node is fetching.
const POLL_FIRST: Duration = Duration::from_millis(20);
const POLL_MAX: Duration = Duration::from_millis(250);

/// Why the store could not do what was asked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// No answer, a timeout, or a server error: the store may be back later.
    #[error("shared cache {store}: {message}")]
    Unavailable {
        /// Endpoint and bucket.
        store: String,
        /// What happened.
        message: String,
    },
    /// The store asks for fewer requests (S3's 503 SlowDown, 429): it is up, and busy.
    #[error("shared cache {store}: {message}")]
    Throttled {
        /// Endpoint and bucket.
        store: String,
        /// What it said.
        message: String,
    },
    /// The store answered and refused (credentials, permissions, no such bucket).
    #[error(
        "shared cache {store}: {message}; check `[shared_cache]` in the config and the store's \
         credentials"
    )]
    Refused {
        /// Endpoint and bucket.
        store: String,
        /// The store's own words.
        message: String,
    },
}

/// What a conditional PUT did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    /// Written.
    Done,
    /// Not written: the name exists (`If-None-Match: *` failed).
    Exists,
}

/// An S3-compatible object store, reduced to what the tier needs.
pub trait ObjectStore: Send + Sync {
    /// The object `name`, or `None` when there is none.
    fn get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Write `body` as `name`; with `if_absent`, only when no object has that name.
    fn put(&self, name: &str, body: &[u8], if_absent: bool) -> Result<Put, StoreError>;
    /// Delete `name` (absent is fine).
    fn delete(&self, name: &str) -> Result<(), StoreError>;
    /// The store as messages name it (endpoint and bucket; never a secret).
    fn describe(&self) -> String;
}

/// How the tier behaves; `[shared_cache]` in the config.
#[derive(Debug, Clone)]
pub struct TierSettings {
    /// How long a lease holds without renewal (renewed every third of it by its holder).
    pub lease: Duration,
    /// The longest a node waits for a block another node is fetching before it fetches it too.
    pub wait: Duration,
}

impl Default for TierSettings {
    fn default() -> Self {
        TierSettings {
            lease: Duration::from_secs(30),
            wait: Duration::from_secs(30),
        }
    }
}

/// What the tier has done since start (for `medimg status` and the metrics).
#[derive(Debug, Default, Serialize, Clone, PartialEq, Eq)]
pub struct TierStats {
    /// The store, as messages name it.
    pub store: String,
    /// Objects found in the store and used.
    pub hits: u64,
    /// Their bytes.
    pub hit_bytes: u64,
    /// Objects not in the store (fetched from upstream by this node or another).
    pub misses: u64,
    /// Objects this node fetched and published.
    pub publishes: u64,
    /// Their bytes.
    pub published_bytes: u64,
    /// Times this node waited for another node's fetch.
    pub lease_waits: u64,
    /// Waits that ended with the other node's object.
    pub lease_waits_served: u64,
    /// Objects found damaged (failed their envelope or the caller's check), deleted and
    /// fetched again.
    pub corrupt: u64,
    /// Store failures (each one sent the request to the upstream instead).
    pub errors: u64,
    /// Requests that went straight to the upstream because the store was paused after a
    /// failure.
    pub bypassed: u64,
    /// Store requests it asked to slow down (each waited and tried again).
    pub throttled: u64,
    /// Whether the store is paused now after a failure.
    pub paused: bool,
    /// The last store failure, if any.
    pub last_error: Option<String>,
}

#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    hit_bytes: AtomicU64,
    misses: AtomicU64,
    publishes: AtomicU64,
    published_bytes: AtomicU64,
    lease_waits: AtomicU64,
    lease_waits_served: AtomicU64,
    corrupt: AtomicU64,
    errors: AtomicU64,
    bypassed: AtomicU64,
    throttled: AtomicU64,
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// After failures, when the store may be asked again.
#[derive(Debug, Default)]
struct Pause {
    until: Option<Instant>,
    next: Duration,
    last_error: Option<String>,
}

/// Where an object came from.
#[derive(Debug)]
pub enum Got<T> {
    /// The store had it: its checked payload.
    Shared(Vec<u8>),
    /// This node made it (fetched it from upstream).
    Made(T),
}

/// What a maker hands the tier to publish: the payload and the upstream version it came from.
pub struct Publish<'a> {
    /// The bytes other nodes will get.
    pub payload: &'a [u8],
    /// The upstream object's validator, when known.
    pub version: Option<&'a str>,
}

/// How long a node waits for another node's object.
#[derive(Debug, Clone, Copy)]
pub enum Patience {
    /// Up to the tier's `wait`, then it fetches itself (blocks: a reader is waiting).
    Bounded,
    /// As long as the holder renews its lease (listings: indexing twice costs the most).
    WhileLeased,
}

/// The shared tier of one node. Publishing runs on [`PUBLISHERS`] threads of its own, so a
/// reader gets its block as soon as the upstream answers; the lease is let go once the block
/// is in the store.
pub struct Tier(Arc<Core>);

/// Threads writing published objects to the store.
const PUBLISHERS: usize = 2;
/// Objects waiting for a publisher; past this, a reader publishes its own (back-pressure).
const PUBLISH_QUEUE: usize = 8;

/// An object to write, and the lease to let go once it is written.
struct Job {
    name: String,
    payload: Vec<u8>,
    version: Option<String>,
    release: Option<String>,
}

struct Core {
    store: Box<dyn ObjectStore>,
    settings: TierSettings,
    /// This node, as lease objects name it (host name and process).
    node: String,
    counters: Counters,
    pause: Mutex<Pause>,
    /// Store failures and damaged objects, logged once a minute per kind.
    log: Summarised,
    /// The publishers' queue (`None` if none could start: then readers publish).
    queue: Mutex<Option<std::sync::mpsc::SyncSender<Job>>>,
    /// Jobs queued or being written.
    pending: AtomicU64,
}

impl std::fmt::Debug for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tier")
            .field("store", &self.0.store.describe())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The body of a lease object.
#[derive(Debug, Serialize, serde::Deserialize)]
struct Lease {
    node: String,
    /// Milliseconds since the epoch after which the lease is void.
    until_ms: u64,
}

/// What a look at the lease found.
enum LeaseState {
    /// Another node holds it.
    Held,
    /// Nobody holds it (absent, expired, or unreadable): try to take it.
    Free,
}

impl Tier {
    /// The tier over `store`.
    pub fn new(store: Box<dyn ObjectStore>, settings: TierSettings) -> Tier {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default();
        let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(PUBLISH_QUEUE);
        let core = Arc::new(Core {
            store,
            settings,
            node: format!("{host}:{}", std::process::id()),
            counters: Counters::default(),
            pause: Mutex::new(Pause {
                next: PAUSE_FIRST,
                ..Pause::default()
            }),
            log: Summarised::default(),
            queue: Mutex::new(None),
            pending: AtomicU64::new(0),
        });
        // The threads hold the core weakly: dropping the tier drops the queue's sender, and
        // they end once it is drained.
        let rx = Arc::new(Mutex::new(rx));
        let mut started = 0;
        for i in 0..PUBLISHERS {
            let (rx, core) = (rx.clone(), Arc::downgrade(&core));
            let spawned = std::thread::Builder::new()
                .name(format!("medimg-publish-{i}"))
                .spawn(move || {
                    loop {
                        let job = lock(&rx).recv();
                        let (Ok(job), Some(core)) = (job, core.upgrade()) else {
                            break;
                        };
                        core.write(job);
                        core.pending.fetch_sub(1, Ordering::Relaxed);
                    }
                });
            started += usize::from(spawned.is_ok());
        }
        if started > 0 {
            *lock(&core.queue) = Some(tx);
        } else {
            tracing::warn!("no publisher thread; readers publish to the shared cache themselves");
        }
        Tier(core)
    }

    /// See [`Core::once`].
    pub fn once<T, E>(
        &self,
        name: &str,
        lease: &str,
        patience: Patience,
        accept: impl Fn(&envelope::Opened<'_>) -> Result<(), String>,
        make: impl FnOnce() -> Result<T, E>,
        publish: impl Fn(&T) -> Option<Publish<'_>>,
    ) -> Result<Got<T>, E> {
        self.0.once(name, lease, patience, accept, make, publish)
    }

    /// Write `p` as `name`, in the background (a failure is counted and logged, never
    /// returned: publishing is a favour to other nodes).
    pub fn publish(&self, name: &str, p: Publish<'_>) {
        self.0.publish(name, p, None);
    }

    /// See [`Core::forget`].
    pub fn forget(&self, name: &str) {
        self.0.forget(name);
    }

    /// What the tier has done since start.
    pub fn stats(&self) -> TierStats {
        self.0.stats()
    }

    /// Wait (up to `within`) for the objects queued to be written; say how many store
    /// failures each open log window counted (at the end of the daemon).
    pub fn finish(&self, within: Duration) {
        self.0.drain(within);
        self.0.log.flush();
    }
}

impl Core {
    /// Run one store request; a store that asks to slow down is asked again after a jittered
    /// pause (50 ms doubling to 1 s), for up to [`THROTTLED_MAX`] in all: a busy store is not a
    /// store that is down, and falling back to the upstream would send the burst there.
    fn patiently<T>(&self, f: impl Fn() -> Result<T, StoreError>) -> Result<T, StoreError> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(50);
        loop {
            match f() {
                Err(StoreError::Throttled { .. }) if started.elapsed() < THROTTLED_MAX => {
                    add(&self.counters.throttled, 1);
                    std::thread::sleep(pause.mul_f64(0.5 + crate::source::jitter()));
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                other => return other,
            }
        }
    }

    fn get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.patiently(|| self.store.get(name))
    }

    fn put(&self, name: &str, body: &[u8], if_absent: bool) -> Result<Put, StoreError> {
        self.patiently(|| self.store.put(name, body, if_absent))
    }

    fn delete(&self, name: &str) -> Result<(), StoreError> {
        self.patiently(|| self.store.delete(name))
    }

    /// The object `name`: from the store when it has it (checked by its envelope, then by
    /// `accept`, which says what is wrong with a payload this node cannot use); otherwise made
    /// by `make` (once per cluster: see the module note) and published.
    ///
    /// `lease` names the lease: `lease/<name>` for an object of its own, one name for several
    /// objects one fetch makes (the blocks of a whole download, which `make` publishes itself
    /// as they come: `publish` then returns `None`).
    fn once<T, E>(
        &self,
        name: &str,
        lease: &str,
        patience: Patience,
        accept: impl Fn(&envelope::Opened<'_>) -> Result<(), String>,
        make: impl FnOnce() -> Result<T, E>,
        publish: impl Fn(&T) -> Option<Publish<'_>>,
    ) -> Result<Got<T>, E> {
        if self.paused() {
            add(&self.counters.bypassed, 1);
            return make().map(Got::Made);
        }
        match self.look(name, &accept) {
            Ok(Some(found)) => return Ok(Got::Shared(found)),
            Ok(None) => add(&self.counters.misses, 1),
            Err(()) => return make().map(Got::Made),
        }
        let lease_name = lease;
        let started = Instant::now();
        let mut waited = false;
        loop {
            match self.take_lease(lease_name) {
                Err(()) => return make().map(Got::Made),
                Ok(true) => {
                    // The holder before us may have published and let go between our look
                    // and our lease: look once more before fetching.
                    if let Ok(Some(found)) = self.look(name, &accept) {
                        if let Err(e) = self.delete(lease_name) {
                            self.failed(&e);
                        }
                        return Ok(Got::Shared(found));
                    }
                    let made = self.under_lease(lease_name, make);
                    match made.as_ref().ok().and_then(&publish) {
                        // The lease is let go once the object is in the store.
                        Some(p) => self.publish(name, p, Some(lease_name)),
                        None => {
                            // `make` published its objects itself, through the queue: they
                            // are in the store before the lease goes, or waiters would find
                            // neither and fetch again.
                            self.drain(self.settings.lease);
                            if let Err(e) = self.delete(lease_name) {
                                self.failed(&e);
                            }
                        }
                    }
                    return made.map(Got::Made);
                }
                Ok(false) => {
                    if !waited {
                        add(&self.counters.lease_waits, 1);
                        waited = true;
                    }
                    match self.wait_for(name, lease_name, &accept, patience, started) {
                        Ok(Some(found)) => {
                            add(&self.counters.lease_waits_served, 1);
                            return Ok(Got::Shared(found));
                        }
                        // The lease is free again without an object: try to take it.
                        Ok(None) => continue,
                        // The store failed, or waiting is over.
                        Err(()) => {
                            let made = make();
                            if let Some(p) = made.as_ref().ok().and_then(&publish)
                                && !self.paused()
                            {
                                self.publish(name, p, None);
                            }
                            return made.map(Got::Made);
                        }
                    }
                }
            }
        }
    }

    /// Run `make` while renewing the lease every third of its period.
    fn under_lease<T, E>(
        &self,
        lease_name: &str,
        make: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        let (done, stop) = std::sync::mpsc::channel::<()>();
        std::thread::scope(|s| {
            let renew = std::thread::Builder::new()
                .name("medimg-lease".into())
                .spawn_scoped(s, move || {
                    let every = self.settings.lease / 3;
                    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                        stop.recv_timeout(every)
                    {
                        if let Err(e) = self.put(lease_name, &self.lease_body(), false) {
                            self.failed(&e);
                            break;
                        }
                    }
                });
            let made = make();
            drop(done);
            if let Ok(h) = renew {
                let _ = h.join();
            }
            made
        })
    }

    fn lease_body(&self) -> Vec<u8> {
        let lease = Lease {
            node: self.node.clone(),
            until_ms: now_ms() + self.settings.lease.as_millis() as u64,
        };
        serde_json::to_vec(&lease).unwrap_or_default()
    }

    /// Try to take the lease: `Ok(true)` when this node holds it now.
    fn take_lease(&self, lease_name: &str) -> Result<bool, ()> {
        match self.put(lease_name, &self.lease_body(), true) {
            Ok(Put::Done) => Ok(true),
            Ok(Put::Exists) => match self.lease_state(lease_name)? {
                LeaseState::Held => Ok(false),
                LeaseState::Free => {
                    // Void: its holder died. Remove it and race for a new one (a node that
                    // deleted a live one would at worst fetch once more).
                    if let Err(e) = self.delete(lease_name) {
                        self.failed(&e);
                        return Err(());
                    }
                    match self.put(lease_name, &self.lease_body(), true) {
                        Ok(Put::Done) => Ok(true),
                        Ok(Put::Exists) => Ok(false),
                        Err(e) => {
                            self.failed(&e);
                            Err(())
                        }
                    }
                }
            },
            Err(e) => {
                self.failed(&e);
                Err(())
            }
        }
    }

    fn lease_state(&self, lease_name: &str) -> Result<LeaseState, ()> {
        match self.get(lease_name) {
            Ok(None) => Ok(LeaseState::Free),
            Ok(Some(body)) => match serde_json::from_slice::<Lease>(&body) {
                Ok(l) if l.until_ms > now_ms() => Ok(LeaseState::Held),
                _ => Ok(LeaseState::Free),
            },
            Err(e) => {
                self.failed(&e);
                Err(())
            }
        }
    }

    /// Poll for `name` while another node holds its lease: `Ok(Some)` is the object,
    /// `Ok(None)` a lease free again without one, `Err` the end of waiting (or a store failure).
    fn wait_for(
        &self,
        name: &str,
        lease_name: &str,
        accept: &impl Fn(&envelope::Opened<'_>) -> Result<(), String>,
        patience: Patience,
        started: Instant,
    ) -> Result<Option<Vec<u8>>, ()> {
        let mut poll = POLL_FIRST;
        let mut since_lease_look = Duration::ZERO;
        loop {
            if matches!(patience, Patience::Bounded) && started.elapsed() >= self.settings.wait {
                tracing::debug!(
                    name,
                    "waited {:?} for another node; fetching",
                    self.settings.wait
                );
                return Err(());
            }
            std::thread::sleep(poll);
            since_lease_look += poll;
            poll = (poll * 2).min(POLL_MAX);
            if let Some(found) = self.look(name, accept)? {
                return Ok(Some(found));
            }
            // The lease is looked at about once a second: a holder that died leaves it to
            // expire, one that failed deletes it.
            if since_lease_look >= Duration::from_secs(1) {
                since_lease_look = Duration::ZERO;
                if let LeaseState::Free = self.lease_state(lease_name)? {
                    return match self.look(name, accept)? {
                        Some(found) => Ok(Some(found)),
                        None => Ok(None),
                    };
                }
            }
        }
    }

    /// GET and check `name`: `Ok(None)` when absent or damaged (then deleted), `Err` when the
    /// store failed.
    fn look(
        &self,
        name: &str,
        accept: &impl Fn(&envelope::Opened<'_>) -> Result<(), String>,
    ) -> Result<Option<Vec<u8>>, ()> {
        let object = match self.get(name) {
            Ok(Some(o)) => o,
            Ok(None) => return Ok(None),
            Err(e) => {
                self.failed(&e);
                return Err(());
            }
        };
        self.recovered();
        let checked = envelope::open(name, &object).and_then(|o| accept(&o).map(|()| o.payload));
        match checked {
            Ok(payload) => {
                add(&self.counters.hits, 1);
                add(&self.counters.hit_bytes, payload.len() as u64);
                Ok(Some(payload.to_vec()))
            }
            Err(why) => {
                add(&self.counters.corrupt, 1);
                self.log.warn(
                    "damaged",
                    &format!(
                        "shared cache {}: object {name} is damaged ({why}); ignored, deleted and \
                         fetched again from the upstream",
                        self.store.describe()
                    ),
                );
                if let Err(e) = self.delete(name) {
                    self.failed(&e);
                }
                Ok(None)
            }
        }
    }

    /// Queue `p` to be written as `name`, then `release` let go (a full queue is written here).
    fn publish(&self, name: &str, p: Publish<'_>, release: Option<&str>) {
        if self.paused() {
            if let Some(lease) = release {
                let _ = self.delete(lease);
            }
            return;
        }
        let job = Job {
            name: name.to_string(),
            payload: p.payload.to_vec(),
            version: p.version.map(str::to_string),
            release: release.map(str::to_string),
        };
        self.pending.fetch_add(1, Ordering::Relaxed);
        let queue = lock(&self.queue).clone();
        let job = match queue {
            Some(q) => match q.try_send(job) {
                Ok(()) => return,
                Err(
                    std::sync::mpsc::TrySendError::Full(job)
                    | std::sync::mpsc::TrySendError::Disconnected(job),
                ) => job,
            },
            None => job,
        };
        self.write_now(job);
    }

    /// Wait (up to `within`) until every queued object is written.
    fn drain(&self, within: Duration) {
        let until = Instant::now() + within;
        while self.pending.load(Ordering::Relaxed) > 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn write_now(&self, job: Job) {
        self.write(job);
        self.pending.fetch_sub(1, Ordering::Relaxed);
    }

    /// Seal and write one object, then let its lease go.
    fn write(&self, job: Job) {
        let sealed = envelope::seal(&job.name, job.version.as_deref(), &job.payload);
        match self.put(&job.name, &sealed, false) {
            Ok(_) => {
                add(&self.counters.publishes, 1);
                add(&self.counters.published_bytes, job.payload.len() as u64);
            }
            Err(e) => self.failed(&e),
        }
        if let Some(lease) = &job.release
            && let Err(e) = self.delete(lease)
        {
            self.failed(&e);
        }
    }

    /// Forget `name`: a payload that failed a check only its user could make (a member's CRC)
    /// is deleted, so the next reader fetches it from the upstream.
    fn forget(&self, name: &str) {
        if self.paused() {
            return;
        }
        add(&self.counters.corrupt, 1);
        if let Err(e) = self.delete(name) {
            self.failed(&e);
        }
    }

    fn paused(&self) -> bool {
        let p = lock(&self.pause);
        p.until.is_some_and(|t| Instant::now() < t)
    }

    /// A failure of the store: count it, log it (once a minute), and leave the store alone
    /// for a while, longer each time in a row.
    fn failed(&self, e: &StoreError) {
        add(&self.counters.errors, 1);
        let mut p = lock(&self.pause);
        let pause = p.next;
        p.until = Some(Instant::now() + pause);
        p.next = (p.next * 2).min(PAUSE_MAX);
        p.last_error = Some(e.to_string());
        drop(p);
        self.log.warn(
            "store",
            &format!(
                "{e}; reading from the upstreams, the store is asked again in {}s",
                pause.as_secs()
            ),
        );
    }

    /// The store answered: the next failure pauses it briefly again.
    fn recovered(&self) {
        let mut p = lock(&self.pause);
        if p.next != PAUSE_FIRST && p.until.is_none_or(|t| Instant::now() >= t) {
            p.next = PAUSE_FIRST;
        }
    }

    fn stats(&self) -> TierStats {
        let c = &self.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let p = lock(&self.pause);
        TierStats {
            store: self.store.describe(),
            hits: g(&c.hits),
            hit_bytes: g(&c.hit_bytes),
            misses: g(&c.misses),
            publishes: g(&c.publishes),
            published_bytes: g(&c.published_bytes),
            lease_waits: g(&c.lease_waits),
            lease_waits_served: g(&c.lease_waits_served),
            corrupt: g(&c.corrupt),
            errors: g(&c.errors),
            bypassed: g(&c.bypassed),
            throttled: g(&c.throttled),
            paused: p.until.is_some_and(|t| Instant::now() < t),
            last_error: p.last_error.clone(),
        }
    }
}

/// The name of block `index` (of `block_size` bytes) of the blob `blob` (its key's hex).
pub fn block_name(blob: &str, block_size: u64, index: u64) -> String {
    format!("b/{blob}-{block_size}-{index}")
}

/// The name of a dataset's listing: a hash of what it depends on, then the dataset's id.
pub fn listing_name(dataset: &str, fingerprint: &str, format: u32) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(format.to_le_bytes());
    h.update(dataset.as_bytes());
    h.update([0]);
    h.update(fingerprint.as_bytes());
    let digest = h.finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("l/{hex}-{dataset}")
}
