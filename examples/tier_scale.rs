//! The shared tier's protocol at many nodes, measured on the real code: N nodes (threads, each
//! with its own [`Tier`]) ask for the same new dataset at the same instant, through one store
//! that takes `STORE_MS` per request (an in-memory store behind a delay), from an upstream
//! that takes `UPSTREAM_MS` per block. Prints, per N: the upstream requests, the store's
//! requests per node and block, the peak rate the store sees, and when the last node has every
//! block.
//!
//! `cargo run --release --example tier_scale [N...]` (default 1 10 100 1000).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use medimg::tier::memory::{Faults, Faulty, MemoryStore};
use medimg::tier::{ObjectStore, Patience, Publish, Tier, TierSettings};

const BLOCKS: u64 = 8;
const BLOCK_BYTES: usize = 64 << 10;
const STORE_MS: u64 = 2;
const UPSTREAM_MS: u64 = 300;

fn main() {
    let ns: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let ns = if ns.is_empty() {
        vec![1, 10, 100, 1000]
    } else {
        ns
    };
    println!(
        "# {BLOCKS} blocks of {} KiB; store {STORE_MS} ms a request, upstream {UPSTREAM_MS} ms a block",
        BLOCK_BYTES >> 10
    );
    println!(
        "{:>6}  {:>9}  {:>22}  {:>16}  {:>14}",
        "nodes", "upstream", "store reqs/node/block", "store peak req/s", "last node done"
    );
    for n in ns {
        run(n);
    }
}

fn run(n: usize) {
    let memory = Arc::new(MemoryStore::new());
    let store = Arc::new(Faulty::new(memory.clone()));
    store.set(Faults {
        delay: Some(Duration::from_millis(STORE_MS)),
        ..Faults::default()
    });
    let upstream = Arc::new(AtomicU64::new(0));
    let start = Arc::new(Barrier::new(n));
    let t0 = Instant::now();
    // The store's requests per 100 ms window, to find its peak rate.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (memory, done) = (memory.clone(), done.clone());
        std::thread::spawn(move || {
            let mut peak = 0u64;
            let mut last = memory.requests();
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                let now = memory.requests();
                peak = peak.max((now - last) * 10);
                last = now;
            }
            peak
        })
    };
    let nodes: Vec<_> = (0..n)
        .map(|_| {
            let (store, upstream, start) = (store.clone(), upstream.clone(), start.clone());
            std::thread::Builder::new()
                .stack_size(256 << 10)
                .spawn(move || {
                    let tier = Tier::new(
                        Box::new(store) as Box<dyn ObjectStore>,
                        TierSettings {
                            lease: Duration::from_secs(30),
                            wait: Duration::from_secs(30),
                        },
                    );
                    start.wait();
                    for b in 0..BLOCKS {
                        let name = format!("b/0123-{BLOCK_BYTES}-{b}");
                        let got = tier.once(
                            &name,
                            &format!("lease/{name}"),
                            Patience::Bounded,
                            |o| {
                                (o.payload.len() == BLOCK_BYTES)
                                    .then_some(())
                                    .ok_or_else(|| "length".to_string())
                            },
                            || {
                                upstream.fetch_add(1, Ordering::Relaxed);
                                std::thread::sleep(Duration::from_millis(UPSTREAM_MS));
                                Ok::<_, ()>(vec![b as u8; BLOCK_BYTES])
                            },
                            |v| {
                                Some(Publish {
                                    payload: v,
                                    version: None,
                                })
                            },
                        );
                        assert!(got.is_ok(), "the upstream never fails here");
                    }
                    let finished = Instant::now();
                    tier.finish(Duration::from_secs(30));
                    finished
                })
                .expect("a thread per node")
        })
        .collect();
    let last = nodes
        .into_iter()
        .map(|h| h.join().expect("node"))
        .max()
        .unwrap_or(t0);
    done.store(true, Ordering::Relaxed);
    let peak = sampler.join().unwrap_or(0);
    println!(
        "{n:>6}  {:>9}  {:>22.1}  {:>16}  {:>12.2} s",
        upstream.load(Ordering::Relaxed),
        memory.requests() as f64 / (n as u64 * BLOCKS) as f64,
        peak,
        last.duration_since(t0).as_secs_f64()
    );
}
