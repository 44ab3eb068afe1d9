//! Prometheus metrics on a loopback port, off by default (`--metrics 127.0.0.1:9464` or
//! `[metrics] listen`), in the OpenMetrics text format (`prometheus-client`).
//!
//! Counters are the daemon's own, read at scrape time from the same snapshot `medimg status`
//! answers with (one source of truth; nothing is counted twice): per host requests, body
//! bytes, retriable and other failures, budget waits, and the same per dataset; cache use,
//! block hits, misses, fetches and evictions; reads, bytes read, pushes; sizes asked;
//! datasets' cached bytes; requests in progress. FUSE operations are timed as they are answered ([`FuseTimes`]), into a
//! histogram per operation. The endpoint only listens on a loopback address: what datasets a
//! lab reads is nobody else's business.

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a FUSE operation.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabel {
    op: String,
}

/// One label: its name (`host`, `dataset`) and value.
type Label = Vec<(&'static str, String)>;

/// The rows of a snapshot's map (`hosts`, `upstream_by_dataset`), by key.
type Rows = serde_json::Map<String, serde_json::Value>;

type OpHistograms = Family<OpLabel, Histogram, fn() -> Histogram>;

fn op_histogram() -> Histogram {
    // 50 µs to about 100 s: a warm lookup to a cold read of a slow host.
    Histogram::new(exponential_buckets(50e-6, 4.0, 11))
}

/// How long FUSE operations take, per operation, since start.
#[derive(Debug, Clone)]
pub struct FuseTimes(OpHistograms);

impl Default for FuseTimes {
    fn default() -> Self {
        FuseTimes(Family::new_with_constructor(op_histogram))
    }
}

impl FuseTimes {
    /// One `op` answered after `seconds`.
    pub fn observe(&self, op: &str, seconds: f64) {
        self.0
            .get_or_create(&OpLabel { op: op.to_string() })
            .observe(seconds);
    }
}

fn counter(registry: &mut Registry, name: &str, help: &str, v: u64) {
    let c: Counter = Counter::default();
    c.inc_by(v);
    registry.register(name, help, c);
}

/// A counter per row of `rows`, labelled `label` = the row's key, valued `value(row)`.
fn counters(
    registry: &mut Registry,
    (name, help): (&str, &str),
    label: &'static str,
    rows: &Rows,
    value: impl Fn(&serde_json::Value) -> u64,
) {
    let family = Family::<Label, Counter>::default();
    for (key, row) in rows {
        family
            .get_or_create(&vec![(label, key.clone())])
            .inc_by(value(row));
    }
    registry.register(name, help, family);
}

/// [`counters`] of seconds, from a row's field of microseconds (or milliseconds: `per_second`).
fn seconds(
    registry: &mut Registry,
    (name, help): (&str, &str),
    label: &'static str,
    rows: &Rows,
    (field, per_second): (&str, f64),
) {
    let family = Family::<Label, Counter<f64>>::default();
    for (key, row) in rows {
        family
            .get_or_create(&vec![(label, key.clone())])
            .inc_by(row[field].as_u64().unwrap_or(0) as f64 / per_second);
    }
    registry.register(name, help, family);
}

fn gauge(registry: &mut Registry, name: &str, help: &str, v: u64) {
    let g: Gauge = Gauge::default();
    g.set(i64::try_from(v).unwrap_or(i64::MAX));
    registry.register(name, help, g);
}

/// The exposition of `status` (the JSON `medimg status` answers with) and the FUSE times.
pub fn render(times: &FuseTimes, status: &serde_json::Value) -> String {
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    let mut r = Registry::with_prefix("medimg");
    r.register(
        "fuse_request_seconds",
        "Time to answer a FUSE request, by operation",
        times.0.clone(),
    );
    gauge(
        &mut r,
        "requests_in_progress",
        "FUSE requests being answered now",
        n(&status["in_progress"]),
    );
    let hosts = status["hosts"].as_object().cloned().unwrap_or_default();
    for (name, help, key) in [
        (
            "upstream_requests",
            "Requests sent to a host, each redirect hop counted",
            "requests",
        ),
        ("upstream_bytes", "Body bytes received from a host", "bytes"),
        (
            "upstream_retriable_failures",
            "Network errors, 429 and 5xx answers of a host",
            "transient",
        ),
        (
            "upstream_errors",
            "Other failed answers of a host (4xx, refusals)",
            "errors",
        ),
        (
            "upstream_budget_waits",
            "Requests that waited for a host's budget",
            "waits",
        ),
    ] {
        counters(&mut r, (name, help), "host", &hosts, |c| n(&c[key]));
    }
    seconds(
        &mut r,
        (
            "upstream_budget_wait_seconds",
            "Time requests waited for a host's budget",
        ),
        "host",
        &hosts,
        ("wait_ms", 1e3),
    );
    seconds(
        &mut r,
        (
            "upstream_answer_seconds",
            "Time from sending requests to a host to their answers' headers, summed (divided by \
             upstream_requests: the mean latency)",
        ),
        "host",
        &hosts,
        ("answer_us", 1e6),
    );
    let datasets = status["upstream_by_dataset"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for (name, help, key) in [
        (
            "dataset_upstream_requests",
            "Requests sent on a dataset's behalf",
            "requests",
        ),
        (
            "dataset_upstream_bytes",
            "Body bytes received for a dataset",
            "bytes",
        ),
        (
            "dataset_upstream_errors",
            "Failed answers to a dataset's requests",
            "errors",
        ),
    ] {
        counters(&mut r, (name, help), "dataset", &datasets, |c| {
            // Failures of either kind.
            n(&c[key])
                + if key == "errors" {
                    n(&c["transient"])
                } else {
                    0
                }
        });
    }
    seconds(
        &mut r,
        (
            "dataset_upstream_answer_seconds",
            "Time to the answers' headers of a dataset's requests, summed",
        ),
        "dataset",
        &datasets,
        ("answer_us", 1e6),
    );
    let cache = &status["cache"];
    gauge(
        &mut r,
        "cache_used_bytes",
        "Bytes of blocks in the cache",
        n(&cache["used"]),
    );
    gauge(
        &mut r,
        "cache_limit_bytes",
        "The cache's hard limit",
        n(&cache["limit"]),
    );
    gauge(
        &mut r,
        "cache_writing_bytes",
        "Bytes of fetched blocks in memory until their file is written (in flight)",
        n(&cache["writing"]),
    );
    let cs = &status["cache_stats"];
    for (name, help, key) in [
        (
            "cache_block_hits",
            "Block lookups the cache answered",
            "hits",
        ),
        (
            "cache_hit_bytes",
            "Bytes of the blocks those lookups found",
            "hit_bytes",
        ),
        (
            "cache_block_misses",
            "Block lookups the cache could not answer",
            "misses",
        ),
        (
            "cache_fetched_blocks",
            "Blocks that came from upstream into the cache",
            "fetched",
        ),
        (
            "cache_fetched_bytes",
            "Bytes that came from upstream into the cache",
            "fetched_bytes",
        ),
        (
            "cache_evicted_blocks",
            "Blocks evicted to make room",
            "evicted",
        ),
        (
            "cache_evicted_bytes",
            "Bytes evicted to make room",
            "evicted_bytes",
        ),
        (
            "cache_not_kept_blocks",
            "Blocks served but not kept: writing them failed (a full filesystem)",
            "not_kept",
        ),
    ] {
        counter(&mut r, name, help, n(&cs[key]));
    }
    let reads = &status["reads"];
    counter(
        &mut r,
        "reads",
        "Read requests answered",
        n(&reads["reads"]),
    );
    counter(
        &mut r,
        "read_bytes",
        "Bytes read requests returned",
        n(&reads["bytes"]),
    );
    counter(
        &mut r,
        "pushed_files",
        "Files pushed into the kernel's page cache ahead of reads",
        n(&reads["pushed_files"]),
    );
    counter(
        &mut r,
        "size_probes",
        "Zero-length requests asking a file's size",
        n(&status["sizes"]["probes"]),
    );
    let tier = &status["shared_cache"];
    if tier.is_object() {
        for (name, help, key) in [
            (
                "shared_cache_hits",
                "Blocks and listings the shared cache had",
                "hits",
            ),
            (
                "shared_cache_hit_bytes",
                "Bytes of what the shared cache had",
                "hit_bytes",
            ),
            (
                "shared_cache_misses",
                "Objects the shared cache lacked",
                "misses",
            ),
            (
                "shared_cache_publishes",
                "Objects this node fetched and published to the shared cache",
                "publishes",
            ),
            (
                "shared_cache_published_bytes",
                "Bytes this node published to the shared cache",
                "published_bytes",
            ),
            (
                "shared_cache_lease_waits",
                "Times this node waited for another node's fetch",
                "lease_waits",
            ),
            (
                "shared_cache_lease_waits_served",
                "Waits that ended with the other node's object",
                "lease_waits_served",
            ),
            (
                "shared_cache_damaged",
                "Objects in the shared cache found damaged, deleted and fetched again",
                "corrupt",
            ),
            (
                "shared_cache_errors",
                "Failures of the shared cache's store (each fell back to the upstream)",
                "errors",
            ),
            (
                "shared_cache_throttled",
                "Store requests it asked to slow down (each waited and tried again)",
                "throttled",
            ),
            (
                "shared_cache_bypassed",
                "Requests sent to the upstream while the store was paused after a failure",
                "bypassed",
            ),
        ] {
            counter(&mut r, name, help, n(&tier[key]));
        }
        gauge(
            &mut r,
            "shared_cache_paused",
            "1 while the store is left alone after a failure",
            u64::from(tier["paused"].as_bool() == Some(true)),
        );
    }
    let family = Family::<Label, Gauge>::default();
    for d in status["datasets"].as_array().into_iter().flatten() {
        let bytes = n(&d["cached_bytes"]);
        if bytes > 0 {
            let id = d["id"].as_str().unwrap_or("?").to_string();
            family
                .get_or_create(&vec![("dataset", id)])
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
    }
    r.register(
        "dataset_cached_bytes",
        "Bytes of a dataset's blocks in the cache",
        family,
    );
    let changed = Family::<Label, Gauge>::default();
    for d in status["datasets"].as_array().into_iter().flatten() {
        // Until a restart indexes the new version, reads of what changed fail with ESTALE.
        if d["changed"].is_object() && d["changed"]["reindexed_at"].is_null() {
            let id = d["id"].as_str().unwrap_or("?").to_string();
            changed.get_or_create(&vec![("dataset", id)]).set(1);
        }
    }
    r.register(
        "dataset_changed_upstream",
        "1 for a dataset whose upstream changed under its indexed version (restart to index it)",
        changed,
    );
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &r) {
        tracing::warn!("metrics: {e}");
    }
    out
}

/// What a scrape answers with.
pub type RenderFn = Arc<dyn Fn() -> String + Send + Sync>;

/// Serve `GET /metrics` on `addr` (a loopback address) from a thread of its own.
pub fn serve(addr: SocketAddr, render: RenderFn) -> std::io::Result<()> {
    if !addr.ip().is_loopback() {
        return Err(std::io::Error::other(format!(
            "{addr} is not a loopback address; metrics listen on 127.0.0.1 or ::1 only"
        )));
    }
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("medimg-metrics".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => return tracing::warn!("metrics: {e}"),
                };
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let render = render.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            let render = render.clone();
                            async move { Ok::<_, std::convert::Infallible>(answer(&req, &render)) }
                        });
                        let io = hyper_util::rt::TokioIo::new(stream);
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(io, service)
                            .await;
                    });
                }
            })
        })?;
    Ok(())
}

fn answer(
    req: &hyper::Request<hyper::body::Incoming>,
    render: &RenderFn,
) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
    let (status, kind, body) = if req.uri().path() == "/metrics" {
        (
            200,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            render(),
        )
    } else {
        (404, "text/plain", "metrics are at /metrics\n".to_string())
    };
    let mut resp = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
    *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
    if let Ok(v) = hyper::header::HeaderValue::from_str(kind) {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_changed_dataset_and_blocks_not_kept_are_in_the_scrape() {
        let status = serde_json::json!({
            "cache_stats": {"not_kept": 3},
            "datasets": [
                {"id": "a", "cached_bytes": 0,
                 "changed": {"dataset": "a", "message": "m", "at": 1, "reindexed_at": null}},
                {"id": "b", "cached_bytes": 0,
                 "changed": {"dataset": "b", "message": "m", "at": 1, "reindexed_at": 2}},
                {"id": "c", "cached_bytes": 0, "changed": null},
            ],
        });
        let text = super::render(&super::FuseTimes::default(), &status);
        assert!(
            text.contains("medimg_dataset_changed_upstream{dataset=\"a\"} 1"),
            "{text}"
        );
        assert!(
            !text.contains("dataset=\"b\"") && !text.contains("dataset=\"c\""),
            "{text}"
        );
        assert!(
            text.contains("medimg_cache_not_kept_blocks_total 3"),
            "{text}"
        );
    }

    #[test]
    fn the_shared_tier_is_in_the_scrape_only_when_there_is_one() {
        let stats = crate::tier::TierStats {
            store: "http://s bucket b".into(),
            hits: 7,
            lease_waits: 2,
            corrupt: 1,
            errors: 3,
            paused: true,
            ..Default::default()
        };
        let status = serde_json::json!({"shared_cache": stats});
        let text = super::render(&super::FuseTimes::default(), &status);
        for line in [
            "medimg_shared_cache_hits_total 7",
            "medimg_shared_cache_lease_waits_total 2",
            "medimg_shared_cache_damaged_total 1",
            "medimg_shared_cache_errors_total 3",
            "medimg_shared_cache_paused 1",
        ] {
            assert!(text.contains(line), "{line}\n{text}");
        }
        let none = serde_json::json!({"shared_cache": null});
        let text = super::render(&super::FuseTimes::default(), &none);
        assert!(!text.contains("shared_cache"), "{text}");
    }
}
