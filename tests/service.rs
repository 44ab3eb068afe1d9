//! medimg as a lab server's service: the fstab mount helper, systemd's notify protocol
//! (readiness, watchdog, stopping), a clean stop that lets reads in progress finish, and a
//! restart after a crash that cleans up the dead mount it left.

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use common::*;

fn one_zip(up: &Upstream) -> (String, Vec<(String, Vec<u8>, bool)>) {
    let files = image_folder(8, 20);
    up.put("/chest_xray.zip", zip(&files), true);
    (
        catalog(&[("chest-xray", "X-ray", "lung", &[("chest_xray.zip", "zip")])]),
        files,
    )
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ok() {
        assert!(Instant::now() < deadline, "{what}: not within 20 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_fstab_line_mounts_through_the_helper_and_umount_ends_the_daemon() {
    let up = Upstream::start();
    let (cat, files) = one_zip(&up);
    let fx = Fixture::new(&up, &cat, "");
    // mount(8) runs /sbin/mount.fuse.medimg for `fuse.medimg` lines: a link to the binary.
    let helper = fx.dir.path().join("mount.fuse.medimg");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_medimg"), &helper).unwrap();
    let d = fx.dir.path().display();
    let (code, out, err) = sh(&format!(
        "{} medimg {} -o rw,nofail,_netdev,allow_other,cache_dir={d}/cache,catalog={d}/catalog.toml,config={d}/medimg.toml",
        helper.display(),
        fx.mnt().display()
    ));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        is_mounted(&fx.mnt()),
        "the helper returned before the mount was there"
    );
    let name = &files[3].0;
    assert_eq!(
        std::fs::read(fx.mnt().join("datasets/chest-xray").join(name)).unwrap(),
        files[3].1
    );
    let log = std::fs::read_to_string(fx.cache().join("medimg.log")).unwrap();
    assert!(log.contains("mounted 1 datasets"), "{log}");
    let (code, _, err) = sh(&format!("umount {}", fx.mnt().display()));
    assert_eq!(code, 0, "{err}");
    wait_until("the daemon logs its exit", || {
        std::fs::read_to_string(fx.cache().join("medimg.log"))
            .unwrap()
            .contains("was unmounted")
    });

    // A bad option fails the mount at once, with mount's code for a failed mount.
    let (code, _, err) = sh(&format!(
        "{} medimg {} -o allow_other,colour=blue",
        helper.display(),
        fx.mnt().display()
    ));
    assert_eq!(code, 32, "{err}");
    assert!(err.contains("colour=blue"), "{err}");
    assert!(!is_mounted(&fx.mnt()));
}

#[test]
fn systemd_hears_ready_once_the_mount_answers_then_the_watchdog_then_stopping() {
    let up = Upstream::start();
    let (cat, _) = one_zip(&up);
    let fx = Fixture::new(&up, &cat, "");
    let sock_path = fx.dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let m = fx.mount_env(
        &[],
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "300000"),
        ],
    );
    let mut said = Vec::new();
    let mut buf = [0u8; 512];
    let mut recv = |said: &mut Vec<String>| {
        let n = sock.recv(&mut buf).expect("nothing from the daemon");
        said.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    };
    recv(&mut said);
    assert!(said[0].contains("READY=1"), "{said:?}");
    assert!(is_mounted(&m.mnt));
    for _ in 0..2 {
        recv(&mut said);
        assert!(said.last().unwrap().contains("WATCHDOG=1"), "{said:?}");
    }
    let pid = m.child.as_ref().unwrap().id();
    let status = m.stop();
    assert_eq!(status.code(), Some(0));
    loop {
        recv(&mut said);
        if said.last().unwrap().contains("STOPPING=1") {
            break;
        }
    }
    assert!(pid > 0);
}

#[test]
fn sigterm_lets_a_read_in_progress_finish_unmounts_and_exits_zero() {
    let up = Upstream::start();
    let (cat, files) = one_zip(&up);
    let fx = Fixture::new(&up, &cat, "");
    let m = fx.mount(&[]);
    let dir = m.mnt.join("datasets/chest-xray");
    let _ = std::fs::read_dir(&dir).unwrap().count();
    // The upstream now takes a second per answer: the read below is in progress when the
    // daemon is told to stop.
    up.set_delay(Duration::from_secs(1));
    let path = dir.join(&files[5].0);
    let reader = std::thread::spawn(move || std::fs::read(path));
    std::thread::sleep(Duration::from_millis(300));
    let status = m.stop();
    assert_eq!(status.code(), Some(0));
    assert_eq!(reader.join().unwrap().unwrap(), files[5].1);
    assert!(!is_mounted(&fx.mnt()));
}

#[test]
fn a_restart_after_a_crash_cleans_up_the_dead_mount_and_mounts() {
    let up = Upstream::start();
    let (cat, files) = one_zip(&up);
    let fx = Fixture::new(&up, &cat, "");
    let mut m = fx.mount(&[]);
    let mut child = m.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let err = std::fs::metadata(fx.mnt()).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOTCONN), "{err}");
    drop(m);
    // The dead mount is still in the table, so wait for the new daemon's own word.
    let m = fx.mount(&[]);
    wait_until("the restart mounts", || {
        m.log_text().contains("mounted 1 datasets")
    });
    assert!(
        m.log_text()
            .contains("left mounted by a medimg daemon that died")
    );
    assert_eq!(
        std::fs::read(m.mnt.join("datasets/chest-xray").join(&files[0].0)).unwrap(),
        files[0].1
    );
}

#[test]
fn status_reports_a_scripted_workload_exactly() {
    let up = Upstream::start();
    let files = image_folder(12, 30);
    up.put("/chest_xray.zip", zip(&files), true);
    // A dataset whose archive is gone: a 404 with an empty body.
    up.route(|r| {
        (r.path == "/gone.zip").then(|| Answer::Raw {
            status: 404,
            headers: vec![],
            body: vec![],
        })
    });
    let cat = catalog(&[
        ("chest-xray", "X-ray", "lung", &[("chest_xray.zip", "zip")]),
        ("gone", "X-ray", "lung", &[("gone.zip", "zip")]),
    ]);
    let fx = Fixture::new(&up, &cat, "");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let m = fx.mount(&["--metrics", &format!("127.0.0.1:{port}")]);
    let dir = m.mnt.join("datasets/chest-xray");
    for f in &files[..4] {
        assert_eq!(std::fs::read(dir.join(&f.0)).unwrap(), f.1);
    }
    let (code, _, _) = sh(&format!("ls {}", m.mnt.join("datasets/gone").display()));
    assert_ne!(code, 0);

    let out = medimg()
        .args(["status", "--json", "--cache-dir"])
        .arg(fx.cache())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let host = &v["hosts"]["data.example.org"];
    assert_eq!(host["requests"].as_u64(), Some(up.count() as u64), "{v}");
    assert_eq!(host["bytes"].as_u64(), Some(up.bytes()), "{v}");
    assert_eq!(host["errors"].as_u64(), Some(1), "{v}");
    assert_eq!(host["transient"].as_u64(), Some(0), "{v}");
    // The same requests, by the dataset they were made for.
    let by = &v["upstream_by_dataset"];
    assert_eq!(by["gone"]["requests"].as_u64(), Some(1), "{v}");
    assert_eq!(by["gone"]["errors"].as_u64(), Some(1), "{v}");
    assert_eq!(
        by["chest-xray"]["requests"].as_u64(),
        Some(up.count() as u64 - 1),
        "{v}"
    );
    assert_eq!(by["chest-xray"]["bytes"].as_u64(), Some(up.bytes()), "{v}");
    let ds = |id: &str| {
        v["datasets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(ds("chest-xray")["indexed"], true);
    assert_eq!(
        ds("chest-xray")["cached_bytes"].as_u64(),
        Some(fx.cached_bytes())
    );
    assert_eq!(ds("gone")["indexed"], false);
    assert_eq!(v["cache"]["used"].as_u64(), Some(fx.cached_bytes()));
    // Every byte in the cache came from upstream once; nothing was evicted.
    assert_eq!(
        v["cache_stats"]["fetched_bytes"].as_u64(),
        Some(fx.cached_bytes()),
        "{v}"
    );
    assert_eq!(v["cache_stats"]["evicted"].as_u64(), Some(0), "{v}");
    let failures = v["failures"].as_array().unwrap();
    assert!(
        failures
            .iter()
            .any(|f| f["message"].as_str().unwrap().contains("dataset gone")),
        "{v}"
    );
    assert_eq!(
        v["reads"]["bytes"].as_u64(),
        Some(files[..4].iter().map(|f| f.1.len() as u64).sum())
    );

    // The same counters for Prometheus.
    let metrics = scrape(port);
    let value = |line: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(line)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {line} in:\n{metrics}"))
    };
    assert_eq!(
        value("medimg_upstream_requests_total{host=\"data.example.org\"}"),
        up.count() as f64
    );
    assert_eq!(
        value("medimg_upstream_bytes_total{host=\"data.example.org\"}"),
        up.bytes() as f64
    );
    assert_eq!(value("medimg_cache_used_bytes"), fx.cached_bytes() as f64);
    assert_eq!(
        value("medimg_cache_fetched_bytes_total"),
        fx.cached_bytes() as f64
    );
    assert_eq!(
        value("medimg_dataset_upstream_requests_total{dataset=\"chest-xray\"}"),
        (up.count() - 1) as f64
    );
    assert!(value("medimg_fuse_request_seconds_count{op=\"read\"}") >= 4.0);
    assert!(value("medimg_upstream_answer_seconds_total{host=\"data.example.org\"}") > 0.0);
    assert_eq!(value("medimg_cache_writing_bytes"), 0.0);
    assert!(metrics.trim_end().ends_with("# EOF"), "{metrics}");

    // The same for a terminal.
    let out = medimg()
        .args(["status", "--cache-dir"])
        .arg(fx.cache())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains("chest-xray") && text.contains("data.example.org"),
        "{text}"
    );
    assert!(text.contains("last failures"), "{text}");
    drop(m);

    // No daemon: a clear error, exit 2.
    let out = medimg()
        .args(["status", "--cache-dir"])
        .arg(fx.cache())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no medimg daemon answers"));
}

/// `GET /metrics` on the loopback port, the body.
fn scrape(port: u16) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("openmetrics-text"), "{head}");
    body.to_string()
}

#[test]
fn metrics_listen_on_loopback_only() {
    let up = Upstream::start();
    let (cat, _) = one_zip(&up);
    let fx = Fixture::new(&up, &cat, "");
    let out = medimg()
        .arg("mount")
        .arg(fx.mnt())
        .arg("--catalog")
        .arg(fx.dir.path().join("catalog.toml"))
        .arg("--cache-dir")
        .arg(fx.cache())
        .args(["--metrics", "0.0.0.0:9464"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--metrics") && err.contains("loopback"),
        "{err}"
    );
    assert!(!is_mounted(&fx.mnt()));
}

const SMALL_BLOCKS: &[&str] = &["--block-size", "64KiB"];

/// A zip of 40 images served at `/chest_xray.zip`: its files, and its number of 64 KiB blocks.
fn forty_files(up: &Upstream) -> (Vec<(String, Vec<u8>, bool)>, u64) {
    let files = image_folder(40, 20);
    let archive = zip(&files);
    let blocks = (archive.len() as u64).div_ceil(64 << 10);
    up.put("/chest_xray.zip", archive, true);
    (files, blocks)
}

/// The catalog of that zip.
fn one_dataset_of_forty() -> String {
    catalog(&[("chest-xray", "X-ray", "lung", &[("chest_xray.zip", "zip")])])
}

#[test]
fn offline_serves_what_is_cached_and_asks_no_host_anything() {
    let up = Upstream::start();
    let files = image_folder(12, 30);
    up.put("/chest_xray.zip", zip(&files), true);
    up.put("/other.zip", zip(&image_folder(2, 5)), true);
    let cat = catalog(&[
        ("chest-xray", "X-ray", "lung", &[("chest_xray.zip", "zip")]),
        ("other", "X-ray", "lung", &[("other.zip", "zip")]),
    ]);
    let fx = Fixture::new(&up, &cat, "");
    let dir = |m: &Mount| m.mnt.join("datasets/chest-xray");
    {
        let m = fx.mount(SMALL_BLOCKS);
        for f in &files[..2] {
            assert_eq!(std::fs::read(dir(&m).join(&f.0)).unwrap(), f.1);
        }
    }
    let before = up.count();
    let m = fx.mount(&[SMALL_BLOCKS, &["--offline"]].concat());
    for f in &files[..2] {
        assert_eq!(std::fs::read(dir(&m).join(&f.0)).unwrap(), f.1);
    }
    // What the cache lacks: EIO, with the reason in the log, once however many reads fail.
    // (Blocks read while indexing, the archive's first and last, hold some of them.)
    let mut failed = 0;
    for f in &files[2..] {
        match std::fs::read(dir(&m).join(&f.0)) {
            Ok(d) => assert_eq!(d, f.1),
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
                failed += 1;
            }
        }
    }
    assert!(failed >= 3, "{failed}");
    assert_eq!(
        m.log_text().matches("runs --offline").count(),
        1,
        "{}",
        m.log_text()
    );
    let (code, _, _) = sh(&format!("ls {}", m.mnt.join("datasets/other").display()));
    assert_ne!(code, 0);
    assert_eq!(
        up.count(),
        before,
        "offline asked a host: {:?}",
        &up.log()[before..]
    );
    // At the end, the rest are counted in one line.
    let log = m.log.clone();
    assert_eq!(m.stop().code(), Some(0));
    let log = std::fs::read_to_string(log).unwrap();
    // (The kernel may ask a failed page again: at least one more read failed per file.)
    let more: usize = log
        .split(" more failures like")
        .next()
        .and_then(|head| head.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no summary line in:\n{log}"));
    assert!(more >= failed - 1, "{more} < {failed} - 1");
    assert!(!log.contains('\u{1b}'), "colours in a log file");
}

#[test]
fn a_dead_network_fails_fast_serves_the_cache_and_recovers() {
    let mut up = Upstream::start();
    let files = image_folder(12, 30);
    up.put("/chest_xray.zip", zip(&files), true);
    let cat = catalog(&[("chest-xray", "X-ray", "lung", &[("chest_xray.zip", "zip")])]);
    let fx = Fixture::new(&up, &cat, "");
    let m = fx.mount(SMALL_BLOCKS);
    let dir = m.mnt.join("datasets/chest-xray");
    assert_eq!(std::fs::read(dir.join(&files[0].0)).unwrap(), files[0].1);

    up.go_down();
    // The first read that needs the host finds it gone; the next does not ask it at all.
    for f in [&files[6], &files[7]] {
        let e = std::fs::read(dir.join(&f.0)).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    }
    assert_eq!(std::fs::read(dir.join(&files[0].0)).unwrap(), files[0].1);
    let log = m.log_text();
    assert_eq!(log.matches("cannot reach the host").count(), 1, "{log}");
    let out = medimg()
        .args(["status", "--json", "--cache-dir"])
        .arg(fx.cache())
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(status.contains("not asking it again"), "{status}");

    // Back: after the pause, reads fetch again.
    up.come_back();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match std::fs::read(dir.join(&files[6].0)) {
            Ok(d) => {
                assert_eq!(d, files[6].1);
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "no recovery: {e}"),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(m.log_text().contains("the host answers again"));
}

#[test]
fn prefetch_warms_a_folder_a_request_per_block_then_offline_reads_it_all() {
    let up = Upstream::start();
    let (files, blocks) = forty_files(&up);
    let fx = Fixture::new(&up, &one_dataset_of_forty(), "");
    let m = fx.mount(SMALL_BLOCKS);
    let root = m.mnt.join("datasets/chest-xray");
    let _ = std::fs::read_dir(&root).unwrap().count();
    let before = up.count();
    let out = medimg().arg("prefetch").arg(&root).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("40/40 files"), "{err}");
    let fetched = up.count() - before;
    assert!(
        fetched as u64 <= blocks,
        "{fetched} requests for {blocks} blocks"
    );
    // Again: nothing is fetched twice. A list of files works the same.
    let list = fx.dir.path().join("next-epoch.txt");
    let paths: Vec<String> = files[..3]
        .iter()
        .map(|f| root.join(&f.0).display().to_string())
        .collect();
    std::fs::write(&list, paths.join("\n")).unwrap();
    let before = up.count();
    let out = medimg()
        .arg("prefetch")
        .arg(&root)
        .arg("--from-file")
        .arg(&list)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(up.count(), before);
    drop(m);

    let m = fx.mount(&[SMALL_BLOCKS, &["--offline"]].concat());
    let root = m.mnt.join("datasets/chest-xray");
    for f in &files {
        assert_eq!(std::fs::read(root.join(&f.0)).unwrap(), f.1, "{}", f.0);
    }
    assert_eq!(up.count(), before, "offline asked a host");
}

#[test]
fn medimg_cache_shows_verifies_and_clears_a_dataset() {
    let up = Upstream::start();
    let files = image_folder(20, 20);
    up.put("/chest_xray.zip", zip(&files), true);
    let cat = catalog(&[("chest-xray", "X-ray", "lung", &[("chest_xray.zip", "zip")])]);
    let fx = Fixture::new(&up, &cat, "");
    let m = fx.mount(SMALL_BLOCKS);
    let root = m.mnt.join("datasets/chest-xray");
    for f in &files {
        assert_eq!(std::fs::read(root.join(&f.0)).unwrap(), f.1);
    }
    let cache = |args: &[&str]| {
        let out = medimg()
            .arg("cache")
            .arg("--cache-dir")
            .arg(fx.cache())
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = cache(&[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("chest-xray"), "{out}");

    // Damage one block file: verify finds it, removes it, and a read fetches it again.
    let blocks = fx.cache().join("blocks");
    let blob = std::fs::read_dir(&blocks)
        .unwrap()
        .flatten()
        .next()
        .unwrap();
    std::fs::write(blob.path().join("0"), b"garbage").unwrap();
    let (code, out, err) = cache(&["--verify"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("1 were damaged and removed"), "{out}");

    let (code, out, err) = cache(&["--clear", "chest-xray"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("cleared"), "{out}");
    assert_eq!(fx.cached_bytes(), 0);
    let (_, out, _) = cache(&[]);
    assert!(!out.contains("chest-xray"), "{out}");
    // The kernel keeps the pages it has; the daemon fetches what it no longer holds.
    let before = up.count();
    let (code, _, _) = sh("echo 1 > /proc/sys/vm/drop_caches");
    if code == 0 {
        assert_eq!(std::fs::read(root.join(&files[3].0)).unwrap(), files[3].1);
        assert!(
            up.count() > before,
            "a cleared block was read without a fetch"
        );
    }

    let (code, _, err) = cache(&["--clear", "nope"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("\"nope\""), "{err}");
}

#[test]
fn prefetch_stops_on_ctrl_c_and_goes_on_from_there_the_next_time() {
    let up = Upstream::start();
    let (_, blocks) = forty_files(&up);
    let fx = Fixture::new(&up, &one_dataset_of_forty(), "");
    let m = fx.mount(SMALL_BLOCKS);
    let root = m.mnt.join("datasets/chest-xray");
    let _ = std::fs::read_dir(&root).unwrap().count();
    let before = up.count();
    // A slow host: the prefetch is still going when it is interrupted.
    up.set_delay(Duration::from_millis(150));
    let child = medimg()
        .arg("prefetch")
        .arg(&root)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("stopped: run it again"), "{err}");
    let first = up.count() - before;
    assert!(
        first > 0 && (first as u64) < blocks,
        "{first} of {blocks} blocks"
    );

    up.set_delay(Duration::ZERO);
    let out = medimg().arg("prefetch").arg(&root).output().unwrap();
    assert!(out.status.success());
    let all = up.count() - before;
    assert!(
        all as u64 <= blocks,
        "{all} requests for {blocks} blocks: something was fetched twice"
    );
}

#[test]
fn the_service_unit_is_valid_and_gives_no_mount_namespace() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/medimg.service"
    ))
    .unwrap();
    for want in [
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "--allow-other",
    ] {
        assert!(unit.contains(want), "the unit lacks {want}");
    }
    // Each of these would give the service a mount namespace of its own, and hide the mount.
    for option in [
        "ProtectSystem=",
        "ProtectHome=",
        "PrivateTmp=",
        "PrivateDevices=",
        "PrivateMounts=",
        "ReadWritePaths=",
        "ReadOnlyPaths=",
        "InaccessiblePaths=",
        "ProtectHostname=",
        "ProtectKernelModules=",
        "ProtectKernelLogs=",
        "ProtectControlGroups=",
        "TemporaryFileSystem=",
        "BindPaths=",
        "MountFlags=",
    ] {
        assert!(
            !unit.lines().any(|l| l.trim_start().starts_with(option)),
            "{option} in the unit would hide the mount from users"
        );
    }
    // systemd's own checker, with ExecStart pointing at this build.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("medimg.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/medimg", env!("CARGO_BIN_EXE_medimg")),
    )
    .unwrap();
    let (code, out, err) = sh(&format!("systemd-analyze verify {}", path.display()));
    assert_eq!(
        (code, out.trim(), err.trim()),
        (0, "", ""),
        "systemd-analyze verify"
    );
}
