//! Real mounts of real archives served by a loopback upstream: the tree, byte-for-byte copies,
//! laziness and persistence proven by the upstream's request log, eviction, checks, concurrency,
//! and the daemon's life cycle.

mod common;

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use common::*;

/// 64 KiB blocks: small enough that laziness shows in a few-MB archive.
const BLOCK: &[&str] = &["--block-size", "64KiB"];

fn chest(up: &Upstream, n: usize, kb: u32) -> Vec<(String, Vec<u8>, bool)> {
    let files = image_folder(n, kb);
    up.put("/chest_xray.zip", zip(&files), true);
    files
}

fn one_dataset() -> String {
    catalog(&[
        ("chest-xray", "X-ray", "lung", &[("chest_xray.zip", "zip")]),
        ("brain-later", "MRI", "brain", &[]),
    ])
}

#[test]
fn tree_views_and_sizes_before_any_member_byte_is_fetched() {
    let up = Upstream::start();
    let files = chest(&up, 30, 20);
    let fx = Fixture::new(&up, &one_dataset(), "");
    let m = fx.mount(BLOCK);
    let root = &m.mnt;

    let mut top: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    top.sort();
    assert_eq!(
        top,
        [
            "README.md",
            "about",
            "catalog.csv",
            "classes",
            "datasets",
            "modality",
            "organ"
        ]
    );
    let (code, out, _) = sh(&format!("ls {}/modality/X-ray/lung", root.display()));
    assert_eq!((code, out.as_str()), (0, "chest-xray\n"));
    let (_, out, _) = sh(&format!("ls {}/organ/brain/MRI", root.display()));
    assert_eq!(out, "brain-later\n");
    let csv = std::fs::read_to_string(root.join("catalog.csv")).unwrap();
    assert!(csv.starts_with(
        "id,title,modality,organ,task,images,license,access,homepage,path,group,folders\n"
    ));
    assert!(csv.contains("chest-xray,Test chest-xray,X-ray,lung,"));
    assert!(
        std::fs::read_to_string(root.join("README.md"))
            .unwrap()
            .contains("modality/<Modality>/<organ>/<id>")
    );
    assert_eq!(up.count(), 0, "the generated tree needs no upstream");

    // `find` lists exactly the archive's files; `stat` tells their sizes; no member data moved.
    let (code, out, _) = sh(&format!(
        "cd {}/datasets/chest-xray && find . -type f | sort",
        root.display()
    ));
    assert_eq!(code, 0);
    let mut want: Vec<String> = files.iter().map(|(n, _, _)| format!("./{n}")).collect();
    want.sort();
    assert_eq!(out.lines().collect::<Vec<_>>(), want);
    for (name, data, _) in &files {
        let meta = std::fs::metadata(root.join("datasets/chest-xray").join(name)).unwrap();
        assert_eq!(meta.len(), data.len() as u64, "{name}");
        assert_eq!(meta.mode() & 0o777, 0o444);
    }
    let indexing = up.count();
    assert!(
        indexing <= 4,
        "indexing took {indexing} requests: {:?}",
        up.log()
    );
    assert!(
        up.log().iter().all(|l| l.range.is_some()),
        "never a whole-archive GET"
    );
    assert!(up.log().iter().all(|l| l.user_agent.starts_with("medimg/")));

    // One file, one inode, from every path; directories differ per path.
    let a = std::fs::metadata(root.join("datasets/chest-xray").join(&files[3].0)).unwrap();
    let b = std::fs::metadata(
        root.join("modality/X-ray/lung/chest-xray")
            .join(&files[3].0),
    )
    .unwrap();
    let c = std::fs::metadata(root.join("organ/lung/X-ray/chest-xray").join(&files[3].0)).unwrap();
    assert_eq!((a.ino(), a.nlink()), (b.ino(), 3));
    assert_eq!(a.ino(), c.ino());
    // `du` counts the shared file once.
    let (_, du_all, _) = sh(&format!(
        "du -sb {}/datasets {}/modality | tail -1",
        root.display(),
        root.display()
    ));
    assert_eq!(
        du_all.split_whitespace().next(),
        Some("0"),
        "modality/ repeats datasets/: {du_all}"
    );

    // Read-only.
    let (code, _, err) = sh(&format!("touch {}/datasets/chest-xray/new", root.display()));
    assert_ne!(code, 0);
    assert!(err.contains("Read-only file system"), "{err}");
    // An unsupported dataset is there, but listing it is an I/O error, explained in the log.
    let (code, _, err) = sh(&format!("ls {}/datasets/brain-later", root.display()));
    assert_ne!(code, 0);
    assert!(err.contains("Input/output error"), "{err}");
    assert_eq!(up.count(), indexing);
    let status = m.stop();
    assert!(status.success(), "{status}");
    assert!(!is_mounted(&fx.mnt()));
}

#[test]
fn cp_r_copies_every_file_byte_for_byte() {
    let up = Upstream::start();
    let files = chest(&up, 60, 30);
    let fx = Fixture::new(&up, &one_dataset(), "");
    let _m = fx.mount(BLOCK);
    let want = fx.dir.path().join("want");
    let got = fx.dir.path().join("got");
    unpack_to(&want, &files);
    let (code, _, err) = sh(&format!(
        "cp -r {}/datasets/chest-xray/chest_xray {} && diff -r {}/chest_xray {}",
        fx.mnt().display(),
        got.display(),
        want.display(),
        got.display()
    ));
    assert_eq!(code, 0, "{err}");
    // Reading all of a stored-order archive costs about one request per block, not per file.
    let zip_len = zip(&files).len() as u64;
    let blocks = zip_len.div_ceil(64 << 10) as usize;
    assert!(
        up.count() <= blocks + 2,
        "{} requests for {blocks} blocks",
        up.count()
    );
}

#[test]
fn one_file_of_a_large_archive_costs_a_few_requests_not_the_archive() {
    let up = Upstream::start();
    let files = chest(&up, 200, 100); // about 20 MB
    let fx = Fixture::new(&up, &one_dataset(), "");
    let m = fx.mount(BLOCK);
    let dir = m.mnt.join("datasets/chest-xray");
    let _ = std::fs::read_dir(&dir).unwrap().count();
    let (before, bytes_before) = (up.count(), up.bytes());
    let (name, data, _) = &files[117];
    assert_eq!(&std::fs::read(dir.join(name)).unwrap(), data);
    let requests = up.count() - before;
    let bytes = up.bytes() - bytes_before;
    // A 100 KB member spans at most 3 blocks of 64 KiB.
    assert!((1..=3).contains(&requests), "{requests} requests");
    assert!(
        bytes <= 3 * 65536,
        "{bytes} bytes for a {}-byte file",
        data.len()
    );
    // Reading it again costs nothing (kernel or daemon cache).
    assert_eq!(&std::fs::read(dir.join(name)).unwrap(), data);
    assert_eq!(up.count() - before, requests);
}

#[test]
fn a_large_file_is_read_with_the_kernel_read_ahead_raised() {
    let up = Upstream::start();
    let big: Vec<u8> = (0..6_000_000u32).map(|i| (i % 253) as u8).collect();
    up.put("/big.bin", big.clone(), true);
    let source = format!(
        "[[dataset.source]]\ntype = \"http\"\nurl = \"{}big.bin\"\nformat = \"file\"\n",
        up.base()
    );
    let fx = Fixture::new(&up, &dataset_entry("volumes", "", &source), "");
    let m = fx.mount(&["--block-size", "1MiB"]);
    // The mount's backing device: its read_ahead_kb starts at 128 KiB, which caps FUSE reads
    // at 128 KiB; the daemon (root here) lifts it to 8 MiB.
    let target = std::fs::canonicalize(&m.mnt).unwrap();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let dev = mountinfo
        .lines()
        .filter(|l| l.split(' ').nth(4) == Some(target.to_str().unwrap()))
        .filter_map(|l| l.split(' ').nth(2))
        .next_back()
        .unwrap()
        .to_string();
    let knob = format!("/sys/class/bdi/{dev}/read_ahead_kb");
    // The daemon raises it right after the mount appears: give it a moment.
    let raised = || {
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            std::fs::read_to_string(&knob).unwrap().trim() == "8192"
        } else {
            std::fs::read_to_string(&m.log).unwrap().contains(&knob)
        }
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !raised() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        raised(),
        "{knob} reads {}; log:\n{}",
        std::fs::read_to_string(&knob).unwrap_or_default(),
        m.log_text()
    );
    let before = up.count();
    let file = m.mnt.join("datasets/volumes/big.bin");
    assert_eq!(std::fs::read(&file).unwrap(), big);
    // One request per 1 MiB block, however the kernel cut the reads and read-ahead overlapped.
    assert_eq!(up.count() - before, 6, "{:?}", up.log());
}

#[test]
fn a_remount_on_the_same_cache_makes_no_request_for_what_was_read() {
    let up = Upstream::start();
    let files = chest(&up, 40, 20);
    let fx = Fixture::new(&up, &one_dataset(), "");
    let m = fx.mount(BLOCK);
    let path = |m: &Mount, i: usize| m.mnt.join("datasets/chest-xray").join(&files[i].0);
    for i in [1, 7, 22] {
        assert_eq!(std::fs::read(path(&m, i)).unwrap(), files[i].1);
    }
    assert!(m.stop().success());
    // A clean unmount leaves the index as one file: its write-ahead log moved in and deleted.
    assert!(!fx.cache().join("index.sqlite-wal").exists());
    let before = up.count();
    let m = fx.mount(BLOCK);
    let (code, out, _) = sh(&format!(
        "find {}/datasets/chest-xray -type f | wc -l",
        m.mnt.display()
    ));
    assert_eq!((code, out.trim()), (0, "40"));
    for i in [1, 7, 22] {
        assert_eq!(std::fs::read(path(&m, i)).unwrap(), files[i].1);
    }
    up.assert_no_requests_since(before, "after restart");
}

#[test]
fn a_small_cache_size_is_a_hard_limit_and_reads_stay_correct() {
    let up = Upstream::start();
    let files = chest(&up, 60, 40); // about 2.4 MB of archive
    let fx = Fixture::new(&up, &one_dataset(), "");
    let limit = 5 * 65536u64;
    let m = fx.mount(&["--block-size", "64KiB", "--cache-size", "320KiB"]);
    for (name, data, _) in &files {
        assert_eq!(
            &std::fs::read(m.mnt.join("datasets/chest-xray").join(name)).unwrap(),
            data
        );
        assert!(
            fx.cached_bytes() <= limit,
            "{} > {limit}",
            fx.cached_bytes()
        );
    }
    assert!(
        up.bytes() > limit,
        "the archive did not pass through the cache"
    );
}

#[test]
fn a_member_that_fails_its_crc_is_stale_marks_its_dataset_and_is_not_cached() {
    let up = Upstream::start();
    let files = image_folder(10, 20);
    let mut z = zip(&files);
    // Damage the first member's data (it is deflated; its local header is 30 + name bytes).
    let at = 30 + files[0].0.len() + 200;
    z[at] ^= 0x55;
    up.put("/chest_xray.zip", z, true);
    let fx = Fixture::new(&up, &one_dataset(), "");
    let m = fx.mount(BLOCK);
    let bad = m.mnt.join("datasets/chest-xray").join(&files[0].0);
    let (code, _, err) = sh(&format!("cat {} > /dev/null", bad.display()));
    assert_ne!(code, 0);
    // Not the bytes indexed: changed or damaged upstream, which is ESTALE.
    assert!(err.contains("Stale file handle"), "{err}");
    // Neighbours in the same block are fine.
    assert_eq!(
        std::fs::read(m.mnt.join("datasets/chest-xray").join(&files[1].0)).unwrap(),
        files[1].1
    );
    std::thread::sleep(Duration::from_millis(100));
    let log = m.log_text();
    assert!(log.contains("chest-xray") && log.contains("CRC"), "{log}");
    let about = std::fs::read_to_string(m.mnt.join("about/chest-xray.md")).unwrap();
    assert!(about.contains("## Changed upstream"), "{about}");
}

/// Eight processes, started together, each comparing one cold file of `dir` with its original.
fn eight_cold_readers(fx: &Fixture, dir: &std::path::Path, files: &[(String, Vec<u8>, bool)]) {
    let want = fx.dir.path().join("want");
    unpack_to(&want, files);
    let children: Vec<_> = [3usize, 11, 19, 27, 35, 43, 51, 59]
        .iter()
        .map(|&i| {
            std::process::Command::new("cmp")
                .arg(dir.join(&files[i].0))
                .arg(want.join(&files[i].0))
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success(), "a reader got wrong bytes");
    }
}

#[test]
fn eight_readers_of_eight_cold_files_fetch_in_parallel() {
    let up = Upstream::start();
    let files = chest(&up, 64, 100); // each file in blocks of its own
    let fx = Fixture::new(&up, &one_dataset(), "");
    let m = fx.mount(BLOCK);
    let dir = m.mnt.join("datasets/chest-xray");
    let _ = std::fs::read_dir(&dir).unwrap().count();
    up.set_delay(Duration::from_millis(300));
    eight_cold_readers(&fx, &dir, &files);
    assert!(
        up.peak_concurrency() >= 4,
        "requests did not overlap (peak {}): reads are serialized",
        up.peak_concurrency()
    );
}

#[test]
fn a_host_budget_from_the_config_caps_concurrent_requests() {
    let up = Upstream::start();
    let files = chest(&up, 64, 100);
    let fx = Fixture::new(
        &up,
        &one_dataset(),
        "[[host]]\nname = \"data.example.org\"\nconcurrency = 2\n",
    );
    let m = fx.mount(BLOCK);
    let dir = m.mnt.join("datasets/chest-xray");
    let _ = std::fs::read_dir(&dir).unwrap().count();
    up.set_delay(Duration::from_millis(100));
    eight_cold_readers(&fx, &dir, &files);
    assert_eq!(
        up.peak_concurrency(),
        2,
        "eight readers, two requests in flight at most (and both used)"
    );
}

#[test]
fn a_credentials_file_readable_by_others_stops_the_mount() {
    let up = Upstream::start();
    let fx = Fixture::new(&up, &one_dataset(), "");
    let creds = fx.dir.path().join("creds.toml");
    std::fs::write(
        &creds,
        "[[credential]]\nhost = \"www.kaggle.com\"\nbearer = \"t\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&creds, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let cfg = fx.dir.path().join("medimg.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        format!("[credentials]\nfile = \"{}\"\n{text}", creds.display()),
    )
    .unwrap();
    let out = medimg()
        .args(["mount"])
        .arg(fx.mnt())
        .arg("--catalog")
        .arg(fx.dir.path().join("catalog.toml"))
        .arg("--config")
        .arg(&cfg)
        .arg("--cache-dir")
        .arg(fx.cache())
        .env("HOME", fx.home())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("creds.toml") && err.contains("chmod 600"),
        "{err}"
    );
    assert!(!is_mounted(&fx.mnt()));
}

#[test]
fn a_host_without_range_is_downloaded_once_and_served() {
    let up = Upstream::start();
    let files = image_folder(12, 20);
    up.put("/chest_xray.zip", zip(&files), false);
    let fx = Fixture::new(&up, &one_dataset(), "");
    let m = fx.mount(BLOCK);
    for (name, data, _) in &files {
        assert_eq!(
            &std::fs::read(m.mnt.join("datasets/chest-xray").join(name)).unwrap(),
            data
        );
    }
    assert_eq!(up.count(), 1, "{:?}", up.log());
}

#[test]
fn mirror_rules_apply_to_redirects_and_plain_files_keep_their_url_name() {
    let up = Upstream::start();
    let files = image_folder(4, 10);
    up.put("/bucket/v1/chest_xray.zip", zip(&files), true);
    // The "host" answers with a redirect to its storage; the mirror rule catches that URL too.
    up.redirect(
        "/chest_xray.zip",
        "https://data.example.org/bucket/v1/chest_xray.zip",
    );
    up.put("/labels.csv", b"file,label\n".to_vec(), true);
    let cat = catalog(&[(
        "chest-xray",
        "X-ray",
        "lung",
        &[("chest_xray.zip", "zip"), ("labels.csv", "file")],
    )]);
    let fx = Fixture::new(&up, &cat, "");
    let m = fx.mount(BLOCK);
    let d = m.mnt.join("datasets/chest-xray");
    assert_eq!(
        std::fs::read(d.join("labels.csv")).unwrap(),
        b"file,label\n"
    );
    assert_eq!(std::fs::read(d.join(&files[2].0)).unwrap(), files[2].1);
    let mut names: Vec<_> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["chest_xray", "labels.csv"],
        "exactly the dataset's files"
    );
}

#[test]
fn mount_refuses_bad_mountpoints_and_bad_catalogs_with_clear_errors() {
    let up = Upstream::start();
    let fx = Fixture::new(&up, &one_dataset(), "");
    let out = medimg()
        .args(["mount", "/nonexistent/medimg-mnt"])
        .arg("--cache-dir")
        .arg(fx.cache())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/medimg-mnt") && err.contains("does not exist"),
        "{err}"
    );

    let _m = fx.mount(BLOCK);
    let out = medimg()
        .arg("mount")
        .arg(fx.mnt())
        .arg("--cache-dir")
        .arg(fx.dir.path().join("c2"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already a mount point"));

    let bad = fx.dir.path().join("bad.toml");
    std::fs::write(&bad, one_dataset().replace("\"lung\"", "\"lungs\"")).unwrap();
    let other = fx.dir.path().join("m2");
    std::fs::create_dir(&other).unwrap();
    let out = medimg()
        .arg("mount")
        .arg(&other)
        .arg("--catalog")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml")
            && err.contains("dataset #1")
            && err.contains("`organ`")
            && err.contains("lungs"),
        "{err}"
    );
    assert!(!is_mounted(&other));
}

#[test]
fn fusermount_u_from_outside_ends_the_daemon_cleanly() {
    let up = Upstream::start();
    let fx = Fixture::new(&up, &one_dataset(), "");
    let mut m = fx.mount(BLOCK);
    let (code, _, err) = sh(&format!("fusermount3 -u {}", fx.mnt().display()));
    assert_eq!(code, 0, "{err}");
    let mut child = m.child.take().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "daemon still running after unmount"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
}

#[test]
fn catalog_command_filters_and_prints_json() {
    let out = medimg()
        .args([
            "catalog",
            "--modality",
            "x-ray",
            "--organ",
            "lung",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = v.as_array().unwrap();
    assert!(rows.len() >= 8, "{}", rows.len());
    assert!(
        rows.iter()
            .all(|r| r["modality"][0] == "X-ray" && r["organ"][0] == "lung")
    );
    assert!(
        rows.iter()
            .any(|r| r["id"] == "shenzhen-cxr" && r["state"] == "reachable")
    );
    // The table's last line counts who can reach what, over the whole built-in catalog.
    let out = medimg().args(["catalog"]).output().unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("105 of 105 datasets; images reachable: ")
            && last.contains(" without any account, ")
            && last.contains(" with credentialed access, ")
            && last.ends_with(" not at all (yet)"),
        "{last}"
    );
    // The line before it counts the datasets by class folders; a column says it per dataset.
    let folders = err.lines().rev().nth(1).unwrap_or_default();
    assert!(
        folders.starts_with("class folders: ") && folders.contains(" through classes/, "),
        "{folders}"
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.lines().next().unwrap_or_default().contains("FOLDERS"));
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("isic-2019 ") && l.contains(" classes/isic-2019 ")),
        "{table}"
    );
    let out = medimg()
        .args(["catalog", "--organ", "lungs"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--organ"));
}

#[test]
fn a_daemon_killed_mid_download_never_serves_a_partial_block() {
    let up = Upstream::start();
    let files = chest(&up, 40, 100);
    let fx = Fixture::new(&up, &one_dataset(), "");
    let mut m = fx.mount(BLOCK);
    let dir = m.mnt.join("datasets/chest-xray");
    assert_eq!(
        std::fs::read_dir(dir.join("chest_xray/train/NORMAL"))
            .unwrap()
            .count(),
        16
    );
    // 64 KiB blocks arrive in 4 pieces, 300 ms apart: kill the daemon in the middle of one.
    up.set_throttle(Duration::from_millis(300));
    let mut reader = std::process::Command::new("cat")
        .arg(dir.join(&files[20].0))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while up.in_flight() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the read never reached the upstream"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(400));
    let mut child = m.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = sh(&format!("fusermount3 -uz {}", fx.mnt().display()));
    let _ = reader.kill();
    let _ = reader.wait();
    drop(m);

    // Damage a block that was complete, too: it must be detected and fetched again.
    let blocks = fx.cache().join("blocks");
    let blob = std::fs::read_dir(&blocks)
        .unwrap()
        .flatten()
        .next()
        .unwrap();
    std::fs::write(blob.path().join("0"), b"garbage").unwrap();
    up.set_throttle(Duration::ZERO);
    let m = fx.mount(BLOCK);
    let before = up.count();
    assert_eq!(
        std::fs::read(m.mnt.join("datasets/chest-xray").join(&files[0].0)).unwrap(),
        files[0].1
    );
    assert!(
        up.count() > before,
        "the damaged block 0 was served instead of fetched again"
    );
    for i in [20, 39] {
        let got = std::fs::read(m.mnt.join("datasets/chest-xray").join(&files[i].0));
        let got = got.unwrap_or_else(|e| panic!("file {i}: {e}\n{}", m.log_text()));
        assert_eq!(got, files[i].1, "file {i}");
    }
    let leftovers = std::fs::read_dir(fx.cache().join("tmp")).unwrap().count();
    assert_eq!(leftovers, 0, "partial downloads left in tmp/");
}
