//! Crash tests (issue #16): the daemon SIGKILLed at seeded random points of cold epochs, many
//! times, then the cache checked against the files on disk and every byte checked through a
//! fresh mount; the same on a cache filesystem too small for the dataset.
//!
//! What must hold after any kill: every block file in place has a row in `blocks.sqlite` with
//! its length and CRC (nothing partial or unverified is ever in place), the rows' total stays
//! within the limit, both SQLite files pass `integrity_check`, and a new daemon serves every
//! file with the upstream's bytes. A row whose file is missing (a kill between the row and the
//! rename) is allowed: it is dropped the first time it is used, and by `medimg cache --verify`.
//!
//! The seed is printed; `MEDIMG_CRASH_SEED` replays one, and `MEDIMG_CRASH_ROUNDS=N` runs N
//! rounds however long they take.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;

const BLOCK: &[&str] = &["--block-size", "64KiB"];
/// Kill rounds at most, and the time after which no new round starts.
const ROUNDS: usize = 12;
const ROUNDS_FOR: Duration = Duration::from_secs(60);
/// Blocks a daemon may have in flight at once (fetches and their writes), at most.
const IN_FLIGHT: u64 = 32;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn seed() -> u64 {
    let s = std::env::var("MEDIMG_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
        | 1;
    eprintln!("crash seed: {s} (MEDIMG_CRASH_SEED={s} replays it)");
    s
}

/// What the cache holds on disk against what it recorded: (block files, rows without a file).
fn check_cache(cache: &Path, limit: u64) -> (usize, usize) {
    let db = rusqlite::Connection::open(cache.join("blocks.sqlite")).unwrap();
    let ok: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok", "blocks.sqlite");
    let mut rows = std::collections::HashMap::new();
    let mut q = db
        .prepare("SELECT blob, idx, len, crc FROM blocks")
        .unwrap();
    for r in q
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })
        .unwrap()
    {
        let (blob, idx, len, crc) = r.unwrap();
        rows.insert((blob, idx), (len as u64, crc as u32));
    }
    let total: u64 = rows.values().map(|(len, _)| len).sum();
    assert!(
        total <= limit,
        "rows hold {total} bytes, the limit is {limit}"
    );
    let mut files = 0;
    for blob in std::fs::read_dir(cache.join("blocks")).unwrap().flatten() {
        let name = blob.file_name().to_string_lossy().to_string();
        for f in std::fs::read_dir(blob.path()).unwrap().flatten() {
            let idx: i64 = f.file_name().to_string_lossy().parse().unwrap();
            let data = std::fs::read(f.path()).unwrap();
            let Some(&(len, crc)) = rows.get(&(name.clone(), idx)) else {
                panic!("block file {name}/{idx} in place without a row");
            };
            assert_eq!(data.len() as u64, len, "block {name}/{idx}: length");
            assert_eq!(crc32fast::hash(&data), crc, "block {name}/{idx}: CRC");
            files += 1;
        }
    }
    let index = rusqlite::Connection::open(cache.join("index.sqlite")).unwrap();
    let ok: String = index
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok", "index.sqlite");
    (files, rows.len() - files)
}

/// Mount, read shuffled files from 4 threads, SIGKILL the daemon after a random pause.
/// Returns whether the killed daemon's mount hung (and was recovered).
fn kill_round(
    fx: &Fixture,
    files: &[(String, Vec<u8>, bool)],
    rng: &mut Rng,
    flags: &[&str],
) -> bool {
    let mut m = fx.mount(flags);
    let dir = m.mnt.join("datasets/chest-xray");
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|t| {
            let mut order: Vec<usize> = (0..files.len()).collect();
            for i in (1..order.len()).rev() {
                order.swap(i, rng.below(i as u64 + 1) as usize);
            }
            let paths: Vec<_> = order.iter().map(|&i| dir.join(&files[i].0)).collect();
            let want: Vec<_> = order.iter().map(|&i| files[i].1.clone()).collect();
            let stop = stop.clone();
            std::thread::spawn(move || {
                for (p, w) in paths.iter().zip(&want).skip(t * 7) {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    // Before the kill every read is right; after it, reads fail (ENOTCONN).
                    if let Ok(got) = std::fs::read(p) {
                        assert!(got == *w, "{}: wrong bytes before the kill", p.display());
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(30 + rng.below(400)));
    let mut child = m.child.take().unwrap();
    child.kill().unwrap();
    stop.store(true, Ordering::Relaxed);
    // A daemon killed while a thread of it waits in the kernel (a page push waiting on a page
    // a reader holds, whose read now never gets an answer) cannot finish dying, and its mount
    // hangs: `medimg mount` finds that at start and aborts the connection. Do what it does.
    let deadline = Instant::now() + Duration::from_secs(5);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let hung = child.try_wait().unwrap().is_none();
    if hung {
        assert!(
            medimg::fuse::recover_dead_mount(&fx.mnt(), &fx.cache()).unwrap(),
            "a hung mount was not recovered"
        );
    } else {
        let (code, _, err) = sh(&format!("fusermount3 -uz {}", fx.mnt().display()));
        assert_eq!(code, 0, "fusermount3 -uz: {err}");
    }
    child.wait().unwrap();
    assert!(!is_mounted(&fx.mnt()), "still mounted");
    for r in readers {
        r.join().unwrap();
    }
    hung
}

/// Kill rounds, then a clean daemon reads everything back; then `cache --verify`, and the
/// accounting equals the files exactly.
/// Returns `medimg status` of the clean daemon and its log.
fn crash_and_check(
    fx: &Fixture,
    up: &Upstream,
    files: &[(String, Vec<u8>, bool)],
    limit: u64,
) -> (String, String) {
    let size = limit.to_string();
    let mut flags: Vec<&str> = BLOCK.to_vec();
    flags.extend(["--cache-size", &size]);
    let mut rng = Rng(seed());
    let started = Instant::now();
    let (mut rounds, mut hung) = (0, 0);
    // MEDIMG_CRASH_ROUNDS runs more, without the time bound (a local soak).
    let (max_rounds, max_time) = match std::env::var("MEDIMG_CRASH_ROUNDS") {
        Ok(n) => (n.parse().unwrap_or(ROUNDS), Duration::MAX),
        Err(_) => (ROUNDS, ROUNDS_FOR),
    };
    while rounds < max_rounds && started.elapsed() < max_time {
        // Blocks arrive in pieces a few ms apart, so kills land mid-download too.
        up.set_throttle(Duration::from_millis(rng.below(6)));
        hung += usize::from(kill_round(fx, files, &mut rng, &flags));
        // Rows of blocks being written, and of blocks evicted for them whose rows were not
        // yet deleted, may pass the limit: by the blocks in flight, which the next start
        // evicts.
        check_cache(&fx.cache(), limit + IN_FLIGHT * 65536);
        rounds += 1;
    }
    up.set_throttle(Duration::ZERO);
    assert!(rounds >= 3, "only {rounds} rounds in {ROUNDS_FOR:?}");
    let m = fx.mount(&flags);
    let dir = m.mnt.join("datasets/chest-xray");
    for (name, data, _) in files {
        let got = std::fs::read(dir.join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}\n{}", m.log_text()));
        assert!(got == *data, "{name}: wrong bytes after {rounds} kills");
    }
    let out = medimg()
        .args(["cache", "--verify", "--cache-dir"])
        .arg(fx.cache())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status_text = medimg()
        .args(["status", "--cache-dir"])
        .arg(fx.cache())
        .output()
        .unwrap();
    let status_text = String::from_utf8_lossy(&status_text.stdout).to_string();
    let log = m.log.clone();
    let status = m.stop();
    let log = std::fs::read_to_string(log).unwrap_or_default();
    assert!(status.success(), "{status}\n{log}");
    let (present, missing) = check_cache(&fx.cache(), limit);
    assert_eq!(missing, 0, "rows without a file after cache --verify");
    eprintln!("{rounds} kills ({hung} left the mount hung); {present} blocks cached at the end");
    (status_text, log)
}

#[test]
fn sigkill_at_random_points_of_cold_epochs_never_leaves_a_bad_block_or_a_wrong_byte() {
    let up = Upstream::start();
    let files = image_folder(120, 40);
    up.put("/chest_xray.zip", zip(&files), true);
    let limit = 3 << 20;
    let fx = Fixture::new(&up, &chest_catalog(), "");
    crash_and_check(&fx, &up, &files, limit);
}

#[test]
fn sigkill_with_the_cache_filesystem_full_never_leaves_a_bad_block_or_a_wrong_byte() {
    let up = Upstream::start();
    // About 4.8 MB of images, a 1 GiB limit, and a 2 MiB filesystem under the cache.
    let files = image_folder(120, 40);
    up.put("/chest_xray.zip", zip(&files), true);
    let limit = 1 << 30;
    let fx = Fixture::new(&up, &chest_catalog(), "");
    std::fs::create_dir(fx.cache()).unwrap();
    let (code, _, err) = sh(&format!(
        "mount -t tmpfs -o size=2m medimg-full {}",
        fx.cache().display()
    ));
    assert_eq!(
        code, 0,
        "mounting a small tmpfs (the test runs as root): {err}"
    );
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = sh(&format!("umount -l {}", self.0.display()));
        }
    }
    let _fs = Unmount(fx.cache());
    let (status, log) = crash_and_check(&fx, &up, &files, limit);
    // It says so, once a minute, not once a block.
    assert!(status.contains("blocks served but not kept"), "{status}");
    assert_eq!(log.matches("not cached").count(), 1, "{log}");
}

fn chest_catalog() -> String {
    catalog(&[("chest-xray", "X-ray", "lung", &[("chest_xray.zip", "zip")])])
}

#[test]
fn a_restart_aborts_the_connection_of_a_daemon_that_hangs_and_mounts_again() {
    let up = Upstream::start();
    let files = image_folder(10, 20);
    up.put("/chest_xray.zip", zip(&files), true);
    let fx = Fixture::new(&up, &chest_catalog(), "");
    let mut m = fx.mount(BLOCK);
    let dir = m.mnt.join("datasets/chest-xray");
    assert_eq!(std::fs::read(dir.join(&files[0].0)).unwrap(), files[0].1);
    // A daemon that answers nothing, neither the kernel nor its control socket: as one killed
    // while a thread of it waits in the kernel (it cannot finish dying), or a stopped one.
    let mut old = m.child.take().unwrap();
    unsafe { libc::kill(old.id() as i32, libc::SIGSTOP) };
    let stopped = || {
        std::fs::read_to_string(format!("/proc/{}/stat", old.id()))
            .is_ok_and(|s| s.rsplit(") ").next().is_some_and(|r| r.starts_with('T')))
    };
    while !stopped() {
        std::thread::sleep(Duration::from_millis(5));
    }
    // A reader hangs on the old mount; once its connection is aborted, the reader gets an
    // error, and the old daemon can finish dying (here: is killed), letting go of the cache.
    let old_pid = old.id() as i32;
    let reader = {
        // Never read before, so neither the page cache nor a push can answer it.
        let p = m.mnt.join("about/chest-xray.md");
        std::thread::spawn(move || {
            let r = std::fs::read(p).map(|_| ());
            unsafe { libc::kill(old_pid, libc::SIGKILL) };
            r
        })
    };
    // Let it reach the old mount (and hang there) before the new one takes the path.
    std::thread::sleep(Duration::from_millis(500));
    assert!(!reader.is_finished(), "a stopped daemon answered");
    let started = Instant::now();
    let m = fx.mount(BLOCK);
    let took = started.elapsed();
    let e = reader.join().unwrap().unwrap_err();
    assert!(
        matches!(
            e.raw_os_error(),
            Some(libc::ENOTCONN | libc::ECONNABORTED | libc::EIO)
        ),
        "{e}"
    );
    for (name, data, _) in &files {
        let got = std::fs::read(m.mnt.join("datasets/chest-xray").join(name));
        let got = got.unwrap_or_else(|e| {
            let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
            panic!("{name}: {e}\n{}\n{mounts}", m.log_text())
        });
        assert!(got == *data, "{name}");
    }
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert!(
        m.log_text().contains("aborted the connection"),
        "{}",
        m.log_text()
    );
    unsafe { libc::kill(old_pid, libc::SIGCONT) };
    old.wait().unwrap();
}
