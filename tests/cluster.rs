//! The shared tier through real mounts and a real S3-compatible store (SeaweedFS): several
//! daemons, each with its own cache, read the same datasets at once and the upstream sees the
//! requests of one; a store that dies mid-epoch costs no reader an error; a damaged object in
//! the store is found, reported and replaced.

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::*;

const FLAGS: &[&str] = &["--block-size", "64KiB"];

/// One test at a time: each starts a store and several daemons, and together on two cores
/// they would test the machine's patience (timeouts), not the tier.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

fn datasets(up: &Upstream) -> (String, Vec<(String, Vec<u8>, bool)>) {
    let files = image_folder(60, 24);
    up.put("/chest_xray.zip", zip(&files), true);
    let cat = catalog(&[("chest-xray", "X-ray", "lung", &[("chest_xray.zip", "zip")])]);
    (cat, files)
}

/// Read every file of the dataset under `mnt` and compare it with `files`.
fn read_all(mnt: &Path, files: &[(String, Vec<u8>, bool)]) {
    for (name, data, _) in files {
        let p = mnt.join("datasets/chest-xray").join(name);
        let got = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(got == *data, "{name}: other bytes");
    }
}

/// Requests for the same bytes of the same file more than once.
fn repeated(log: &[Logged]) -> Vec<(String, Option<String>)> {
    let mut seen: HashMap<(String, Option<String>), usize> = HashMap::new();
    for l in log {
        *seen.entry((l.path.clone(), l.range.clone())).or_default() += 1;
    }
    seen.into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(k, _)| k)
        .collect()
}

#[test]
fn three_daemons_reading_at_once_cost_the_upstream_what_one_costs() {
    let _serial = serial();
    let up = Upstream::start();
    let (cat, files) = datasets(&up);
    // What one node alone asks of the upstream, without a shared cache.
    let alone = Fixture::new(&up, &cat, "");
    let m = alone.mount(FLAGS);
    read_all(&m.mnt, &files);
    drop(m);
    let one_node = up.count();
    let one_node_bytes = up.bytes();

    let store = Seaweed::start();
    let before = up.count();
    let nodes: Vec<Fixture> = (0..3)
        .map(|_| Fixture::new(&up, &cat, &store.config("lab/")))
        .collect();
    let mounts: Vec<Mount> = nodes
        .iter()
        .map(|f| f.mount_env(FLAGS, &store.env()))
        .collect();
    std::thread::scope(|s| {
        for m in &mounts {
            let files = &files;
            s.spawn(move || read_all(&m.mnt, files));
        }
    });
    let log: Vec<Logged> = up.log()[before..].to_vec();
    let bytes: u64 = log.iter().map(|l| l.bytes).sum();
    assert!(
        log.len() <= one_node && bytes <= one_node_bytes,
        "three nodes asked {} requests ({bytes} bytes), one alone {one_node} ({one_node_bytes})",
        log.len()
    );
    assert!(
        repeated(&log).is_empty(),
        "asked twice: {:?}",
        repeated(&log)
    );
    let stats: Vec<serde_json::Value> = nodes
        .iter()
        .map(|f| status_json(&f.cache())["shared_cache"].clone())
        .collect();
    let sum = |k: &str| stats.iter().map(|s| s[k].as_u64().unwrap()).sum::<u64>();
    assert_eq!(sum("errors") + sum("corrupt"), 0, "{stats:?}");
    assert!(sum("hits") > 0 && sum("publishes") > 0, "{stats:?}");
    // The listing was made once and read twice from the store.
    let from_store = mounts
        .iter()
        .filter(|m| m.log_text().contains("listing from the shared cache"))
        .count();
    assert_eq!(from_store, 2);
    // Stopped, the daemons finish writing what they queued for the store.
    for m in mounts {
        assert!(m.stop().success());
    }
    // A fourth node, later, costs the upstream nothing at all.
    let later = Fixture::new(&up, &cat, &store.config("lab/"));
    let m = later.mount_env(FLAGS, &store.env());
    let before = up.count();
    read_all(&m.mnt, &files);
    assert_eq!(up.count(), before, "{:?}", &up.log()[before..]);
    eprintln!(
        "one node alone: {one_node} requests, {one_node_bytes} bytes; three nodes at once: {} \
         requests, {bytes} bytes",
        log.len()
    );
}

#[test]
fn a_tar_gz_one_node_indexed_is_read_by_another_without_the_upstream() {
    let _serial = serial();
    let up = Upstream::start();
    let files = image_folder(40, 24);
    let mut b = tar::Builder::new(Vec::new());
    for (name, data, _) in &files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, &data[..]).unwrap();
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &b.into_inner().unwrap()).unwrap();
    up.put("/chest.tar.gz", gz.finish().unwrap(), true);
    let cat = catalog(&[("chest-xray", "X-ray", "lung", &[("chest.tar.gz", "tar.gz")])]);
    let store = Seaweed::start();
    let a = Fixture::new(&up, &cat, &store.config("tgz/"));
    let ma = a.mount_env(FLAGS, &store.env());
    // Indexing streams the archive once (its blocks kept, and shared).
    let listed = std::fs::read_dir(ma.mnt.join("datasets/chest-xray"))
        .unwrap()
        .count();
    assert!(listed > 0);
    assert!(ma.stop().success());
    let asked = up.count();
    let b = Fixture::new(&up, &cat, &store.config("tgz/"));
    let mb = b.mount_env(FLAGS, &store.env());
    read_all(&mb.mnt, &files);
    assert_eq!(up.count(), asked, "{:?}", &up.log()[asked..]);
}

#[test]
fn an_archive_inside_a_compressed_archive_is_decoded_once_per_cluster() {
    let _serial = serial();
    let up = Upstream::start();
    let files = image_folder(30, 24);
    // The inner archive deflated inside the outer: it is decoded into a blob of its own.
    let outer = zip(&[("pack/inner.zip".to_string(), zip(&files), true)]);
    up.put("/outer.zip", outer, true);
    let cat = catalog(&[("chest-xray", "X-ray", "lung", &[("outer.zip", "zip")])]);
    let store = Seaweed::start();
    let a = Fixture::new(&up, &cat, &store.config("nested/"));
    let ma = a.mount_env(FLAGS, &store.env());
    let inner = ma.mnt.join("datasets/chest-xray/pack/inner.zip");
    assert!(inner.is_dir());
    assert!(ma.stop().success());
    let asked = up.count();
    // Another node, its cache empty: the listing and the decoded archive come from the store.
    let b = Fixture::new(&up, &cat, &store.config("nested/"));
    let mb = b.mount_env(FLAGS, &store.env());
    for (name, data, _) in &files {
        let p = mb.mnt.join("datasets/chest-xray/pack/inner.zip").join(name);
        let got = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(got == *data, "{name}: other bytes");
    }
    assert_eq!(up.count(), asked, "{:?}", &up.log()[asked..]);
    // Its decoded blocks came from the store: this node decoded nothing itself.
    let log = mb.log_text();
    assert!(
        !log.contains("decoding an archive inside an archive"),
        "{log}"
    );
    assert!(mb.stop().success());
}

#[test]
fn a_store_that_dies_mid_epoch_costs_no_reader_an_error() {
    let _serial = serial();
    let up = Upstream::start();
    let (cat, files) = datasets(&up);
    let mut store = Seaweed::start();
    let a = Fixture::new(&up, &cat, &store.config(""));
    let b = Fixture::new(&up, &cat, &store.config(""));
    let ma = a.mount_env(FLAGS, &store.env());
    let mb = b.mount_env(FLAGS, &store.env());
    let half = files.len() / 2;
    read_all(&ma.mnt, &files[..half]);
    read_all(&mb.mnt, &files[..half / 2]);
    store.kill();
    // Both go on: every byte right, from the upstream now.
    read_all(&mb.mnt, &files);
    read_all(&ma.mnt, &files);
    for (f, m) in [(&a, &ma), (&b, &mb)] {
        let st = status_json(&f.cache());
        let t = &st["shared_cache"];
        assert!(t["errors"].as_u64().unwrap() >= 1, "{t}");
        assert!(
            t["last_error"].as_str().unwrap().contains("127.0.0.1"),
            "{t}"
        );
        assert!(st["failures"].as_array().unwrap().is_empty(), "{st}");
        // Logged once a minute at most, not per block.
        let lines = m
            .log_text()
            .lines()
            .filter(|l| l.contains("shared cache http"))
            .count();
        assert!(lines <= 3, "{}", m.log_text());
    }
}

#[test]
fn a_store_that_hangs_costs_readers_only_its_timeout() {
    let _serial = serial();
    let up = Upstream::start();
    let (cat, files) = datasets(&up);
    let store = Seaweed::start();
    let config = store
        .config("")
        .replace("timeout = \"10s\"", "timeout = \"1s\"");
    let a = Fixture::new(&up, &cat, &config);
    let ma = a.mount_env(FLAGS, &store.env());
    read_all(&ma.mnt, &files[..10]);
    store.freeze();
    let t = std::time::Instant::now();
    read_all(&ma.mnt, &files);
    let took = t.elapsed();
    let st = status_json(&a.cache());
    let t = &st["shared_cache"];
    assert!(
        t["last_error"]
            .as_str()
            .unwrap()
            .contains("no answer within 1s"),
        "{t}"
    );
    assert!(st["failures"].as_array().unwrap().is_empty(), "{st}");
    // One timeout, then the store is left alone: not a second per block.
    assert!(took < std::time::Duration::from_secs(8), "{took:?}");
}

#[test]
fn a_damaged_object_in_the_store_is_found_reported_and_replaced() {
    let _serial = serial();
    let up = Upstream::start();
    let (cat, files) = datasets(&up);
    let store = Seaweed::start();
    let a = Fixture::new(&up, &cat, &store.config("d/"));
    let ma = a.mount_env(FLAGS, &store.env());
    read_all(&ma.mnt, &files);
    let t = &status_json(&a.cache())["shared_cache"];
    assert_eq!(t["errors"].as_u64(), Some(0), "{t}");
    drop(ma);
    // Flip a byte of the first block of the archive, as it sits in the store.
    use medimg::tier::ObjectStore;
    let client = store.client("d/");
    let zip_blocks: Vec<Logged> = up
        .log()
        .into_iter()
        .filter(|l| {
            l.path.ends_with("chest_xray.zip") && l.range.as_deref() == Some("bytes=0-65535")
        })
        .collect();
    assert_eq!(zip_blocks.len(), 1, "{:?}", up.log());
    let ix = medimg::index::Index::open(&a.cache().join("index.sqlite")).unwrap();
    let key = ix
        .blob_keys()
        .unwrap()
        .into_iter()
        .find(|(dataset, _)| dataset == "chest-xray")
        .unwrap()
        .1;
    drop(ix);
    let name = medimg::tier::block_name(&key.to_string(), 64 << 10, 0);
    let mut raw = client.get(&name).unwrap().expect("block 0 is in the store");
    let last = raw.len() - 1;
    raw[last] ^= 0x5a;
    client.put(&name, &raw, false).unwrap();

    let b = Fixture::new(&up, &cat, &store.config("d/"));
    let mb = b.mount_env(FLAGS, &store.env());
    let before = up.count();
    read_all(&mb.mnt, &files);
    // One request: the damaged block, from the upstream.
    let log = &up.log()[before..];
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0].range.as_deref(), Some("bytes=0-65535"));
    let t = &status_json(&b.cache())["shared_cache"];
    assert_eq!(t["corrupt"].as_u64(), Some(1), "{t}");
    assert!(
        mb.log_text()
            .contains("is damaged (its bytes do not match their SHA-256)"),
        "{}",
        mb.log_text()
    );
    // Replaced (written in the background): the store holds a good block again.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let now = client.get(&name).unwrap();
        if now.is_some_and(|o| medimg::tier::envelope::open(&name, &o).is_ok()) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not replaced");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn keys_the_store_refuses_stop_the_daemon_with_what_to_fix() {
    let _serial = serial();
    let up = Upstream::start();
    let (cat, _) = datasets(&up);
    let store = Seaweed::start();
    let f = Fixture::new(&up, &cat, &store.config(""));
    let out = medimg()
        .arg("mount")
        .arg(f.mnt())
        .arg("--catalog")
        .arg(f.dir.path().join("catalog.toml"))
        .arg("--config")
        .arg(f.dir.path().join("medimg.toml"))
        .arg("--cache-dir")
        .arg(f.cache())
        .env("HOME", f.home())
        .env("AWS_ACCESS_KEY_ID", Seaweed::KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("SignatureDoesNotMatch") && err.contains("[shared_cache]"),
        "{err}"
    );
    assert!(!err.contains("not-the-secret"), "{err}");
}
