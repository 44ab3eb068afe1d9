//! The read path through real mounts: what the kernel asks besides reads is answered quietly,
//! a host that never answers holds a reader no longer than the deadline, and a file that
//! changed upstream under its pinned version is its own error.

mod common;

use std::time::{Duration, Instant};

use common::*;

const BLOCK: &[&str] = &["--block-size", "64KiB"];

fn chest(up: &Upstream, n: usize, kb: u32) -> Vec<(String, Vec<u8>, bool)> {
    let files = image_folder(n, kb);
    up.put("/chest_xray.zip", zip(&files), true);
    files
}

fn chest_catalog() -> String {
    catalog(&[("chest-xray", "X-ray", "lung", &[("chest_xray.zip", "zip")])])
}

/// Lines of the daemon's log, for counting what a step added.
fn log_lines(m: &Mount) -> Vec<String> {
    m.log_text().lines().map(str::to_string).collect()
}

#[test]
fn python_open_with_default_buffering_reads_every_byte_without_a_log_line() {
    let up = Upstream::start();
    let files = chest(&up, 30, 20);
    let fx = Fixture::new(&up, &chest_catalog(), "");
    let m = fx.mount(BLOCK);
    let dir = m.mnt.join("datasets/chest-xray");
    // What training code does: open() with default buffering (it asks isatty(), an ioctl),
    // read, close; and the extended attributes `ls -l` and `cp -a` look at.
    let script = r#"
import hashlib, os, sys
root = sys.argv[1]
out = []
for dirpath, _, names in sorted(os.walk(root)):
    for n in sorted(names):
        p = os.path.join(dirpath, n)
        with open(p, "rb") as f:
            data = f.read()
            assert not f.isatty()
        try:
            os.getxattr(p, "user.medimg")
        except OSError as e:
            assert e.errno in (61, 95), e
        try:
            os.listxattr(p)
        except OSError as e:
            assert e.errno == 95, e
        out.append(f"{os.path.relpath(p, root)} {hashlib.sha256(data).hexdigest()}")
print("\n".join(out))
"#;
    let run = || {
        let out = std::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let want: Vec<String> = {
        let mut v: Vec<String> = files
            .iter()
            .map(|(n, d, _)| {
                use sha2::Digest;
                let sum: String = sha2::Sha256::digest(d)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                format!("{n} {sum}")
            })
            .collect();
        v.sort();
        v
    };
    let first = run();
    let mut got: Vec<&str> = first.lines().collect();
    got.sort();
    assert_eq!(got, want);
    // Cold: the dataset's indexing says so in a line or two; nothing per request.
    let cold = log_lines(&m);
    assert!(
        !cold
            .iter()
            .any(|l| l.contains("Not Implemented") || l.contains("WARN")),
        "{}",
        cold.join("\n")
    );
    // Warm, three more passes: not one line.
    for _ in 0..3 {
        assert_eq!(run(), first);
    }
    let warm = log_lines(&m);
    assert_eq!(
        warm.len(),
        cold.len(),
        "new log lines: {}",
        warm[cold.len()..].join("\n")
    );
}

/// A host that accepts connections and never answers them; returns its port.
fn silent_host() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in l.incoming().flatten() {
            held.push(c);
        }
    });
    port
}

#[test]
fn a_host_that_never_answers_holds_a_stat_no_longer_than_the_deadline() {
    let up = Upstream::start();
    let port = silent_host();
    let cat = format!(
        "{}{}",
        chest_catalog(),
        dataset_entry(
            "silent-ct",
            "",
            "[[dataset.source]]\ntype = \"http\"\nurl = \"https://silent.example.org/ct.zip\"\n"
        )
    );
    let fx = Fixture::new(
        &up,
        &cat,
        &format!(
            "[[mirror]]\nfrom = \"https://silent.example.org/\"\nto = \"http://127.0.0.1:{port}/\"\n"
        ),
    );
    let m = fx.mount(&["--deadline", "2s"]);
    let t = Instant::now();
    let e = std::fs::metadata(m.mnt.join("datasets/silent-ct/ct")).unwrap_err();
    let waited = t.elapsed();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    // 2 s for the request, then no retry past the deadline (it was 4 tries of 60 s).
    assert!(waited < Duration::from_secs(15), "waited {waited:?}");
    let log = m.log_text();
    assert!(
        log.contains("silent-ct")
            && log.contains(&format!("127.0.0.1:{port}/ct.zip"))
            && log.contains("no answer within 2s"),
        "{log}"
    );
    // The other dataset is unaffected.
    assert!(
        std::fs::read_dir(m.mnt.join("datasets/chest-xray"))
            .unwrap()
            .count()
            > 0
    );
}

#[test]
fn a_read_waits_for_a_stalled_upstream_no_longer_than_the_deadline() {
    let up = Upstream::start();
    let files = chest(&up, 30, 20);
    let fx = Fixture::new(&up, &chest_catalog(), "[upstream]\ndeadline = \"2s\"\n");
    let m = fx.mount(BLOCK);
    let dir = m.mnt.join("datasets/chest-xray");
    assert_eq!(std::fs::read(dir.join(&files[0].0)).unwrap(), files[0].1);
    up.set_delay(Duration::from_secs(30));
    let t = Instant::now();
    let e = std::fs::read(dir.join(&files[25].0)).unwrap_err();
    let waited = t.elapsed();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    assert!(waited < Duration::from_secs(15), "waited {waited:?}");
    let log = m.log_text();
    assert!(
        log.contains("chest-xray") && log.contains("chest_xray.zip") && log.contains("2s"),
        "{log}"
    );
    up.set_delay(Duration::ZERO);
}

#[test]
fn a_file_changed_upstream_under_its_pinned_version_is_estale_not_mixed() {
    let up = Upstream::start();
    let files = chest(&up, 30, 20);
    let fx = Fixture::new(&up, &chest_catalog(), "");
    let m = fx.mount(BLOCK);
    let dir = m.mnt.join("datasets/chest-xray");
    assert_eq!(std::fs::read(dir.join(&files[0].0)).unwrap(), files[0].1);
    let about = std::fs::read_to_string(m.mnt.join("about/chest-xray.md")).unwrap();
    assert!(!about.contains("Changed upstream"), "{about}");
    // The host now serves another archive under the same URL.
    let other = image_folder(31, 20);
    up.put("/chest_xray.zip", zip(&other), true);
    let e = std::fs::read(dir.join(&files[25].0)).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ESTALE), "{e}");
    let log = m.log_text();
    assert!(
        log.contains("chest-xray") && log.contains("changed upstream"),
        "{log}"
    );
    // What was read before the change is still served: it was checked then.
    assert_eq!(std::fs::read(dir.join(&files[0].0)).unwrap(), files[0].1);
    // Every file is the old version's bytes (checked before the change) or ESTALE, never a
    // mix; and one line says it, however many reads meet it.
    let mut stale = 0;
    for (name, data, _) in &files {
        match std::fs::read(dir.join(name)) {
            Ok(got) => assert_eq!(got, *data, "{name}"),
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::ESTALE), "{e}");
                stale += 1;
            }
        }
    }
    assert!(stale > 1, "{stale}");
    let log = m.log_text();
    assert_eq!(log.matches("changed upstream").count(), 1, "{log}");
    // The dataset is marked: about/ (read through the kernel, which held the old text) and
    // `medimg status` say what changed and what to do.
    let about = std::fs::read_to_string(m.mnt.join("about/chest-xray.md")).unwrap();
    assert!(
        about.contains("## Changed upstream") && about.contains("HTTP 412 to If-Match"),
        "{about}"
    );
    let out = medimg()
        .args(["status", "--cache-dir"])
        .arg(fx.cache())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("changed upstream: chest-xray (restart medimg to index the new version)"),
        "{text}"
    );
    drop(m);
    // A restart indexes the new version, and serves it whole.
    let m = fx.mount(BLOCK);
    let dir = m.mnt.join("datasets/chest-xray");
    for (name, data, _) in &other {
        assert_eq!(std::fs::read(dir.join(name)).unwrap(), *data, "{name}");
    }
    let about = std::fs::read_to_string(m.mnt.join("about/chest-xray.md")).unwrap();
    assert!(about.contains("indexed the new version"), "{about}");
}

/// Pages of `path` in the kernel's page cache, as `fincore` (util-linux) counts them.
fn resident_pages(path: &std::path::Path) -> u64 {
    let out = std::process::Command::new("fincore")
        .args(["--noheadings", "--output", "PAGES"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

#[test]
fn a_cold_read_fills_the_page_cache_of_its_neighbours_with_their_checked_bytes() {
    let up = Upstream::start();
    let files = chest(&up, 40, 20);
    let fx = Fixture::new(&up, &chest_catalog(), "");
    let m = fx.mount(&["--block-size", "1MiB"]);
    let dir = m.mnt.join("datasets/chest-xray");
    // A training script lists its folders first: the kernel knows every file.
    let (code, _, err) = sh(&format!("find {} -type f > /dev/null", dir.display()));
    assert_eq!(code, 0, "{err}");
    let indexed = up.count();
    assert_eq!(std::fs::read(dir.join(&files[0].0)).unwrap(), files[0].1);
    // The other files of the archive's first block arrive in the page cache unasked.
    let neighbours = &files[1..20];
    let deadline = Instant::now() + Duration::from_secs(10);
    let resident = || {
        neighbours
            .iter()
            .filter(|(n, _, _)| resident_pages(&dir.join(n)) > 0)
            .count()
    };
    while resident() < neighbours.len() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(resident(), neighbours.len(), "neighbours in the page cache");
    // They hold the upstream's bytes, and reading every file costs no more than the archive's
    // blocks (under 1 MiB in all: one or two).
    for (name, data, _) in &files {
        assert_eq!(std::fs::read(dir.join(name)).unwrap(), *data, "{name}");
    }
    assert!(
        up.count() - indexed <= 2,
        "{} requests",
        up.count() - indexed
    );
    // The daemon says what it did in one line at unmount: the neighbours were pushed.
    let log = m.log.clone();
    assert!(m.stop().success());
    let log = std::fs::read_to_string(log).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("since start:"))
        .unwrap_or_else(|| panic!("{log}"));
    let pushed: u64 = line
        .split(" files decoded, ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(pushed >= neighbours.len() as u64, "{line}");
}

#[test]
fn a_neighbour_that_fails_its_crc_is_never_pushed_and_its_read_fails() {
    const MIB: u64 = 1 << 20;
    let up = Upstream::start();
    let files = image_folder(90, 20);
    let mut z = zip(&files);
    // Where each member's data lies in the archive.
    let starts: Vec<u64> = {
        let mut a = ::zip::ZipArchive::new(std::io::Cursor::new(z.clone())).unwrap();
        (0..files.len())
            .map(|i| a.by_index(i).unwrap().data_start().unwrap())
            .collect()
    };
    let in_block_1 = |i: usize| starts[i] >= MIB + 4096 && starts[i + 1] < 2 * MIB;
    // In the archive's second block (the first came with the probe, from its file): the file
    // read, a stored one damaged after it, and a sound one after that.
    let first = (0..files.len() - 1).find(|&i| in_block_1(i)).unwrap();
    let bad = (first + 1..files.len() - 1)
        .find(|&i| in_block_1(i) && i % 3 == 0)
        .unwrap();
    let ok = bad + 1;
    assert!(in_block_1(ok));
    z[(starts[bad] + files[bad].1.len() as u64 / 2) as usize] ^= 0x40;
    up.put("/chest_xray.zip", z, true);
    let fx = Fixture::new(&up, &chest_catalog(), "");
    let m = fx.mount(&["--block-size", "1MiB"]);
    let dir = m.mnt.join("datasets/chest-xray");
    let (code, _, err) = sh(&format!("find {} -type f > /dev/null", dir.display()));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read(dir.join(&files[first].0)).unwrap(),
        files[first].1
    );
    let (ok, bad) = (dir.join(&files[ok].0), dir.join(&files[bad].0));
    let deadline = Instant::now() + Duration::from_secs(10);
    while resident_pages(&ok) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        resident_pages(&ok) > 0,
        "the sound neighbour was pushed: {}",
        m.log_text()
    );
    assert_eq!(resident_pages(&bad), 0, "the damaged one was not");
    // Its read finds the damage: dropped, fetched again, and not the bytes indexed (ESTALE).
    let e = std::fs::read(&bad).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ESTALE), "{e}");
    assert!(m.log_text().contains("CRC"), "{}", m.log_text());
}
