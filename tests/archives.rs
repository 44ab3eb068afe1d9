//! Archives beyond plain ZIP through real mounts: tar, tar.gz, tar.bz2, tar.xz and tar.zst (made by
//! the `tar`/`flate2` crates and by the system's `tar`, `gzip`, `bzip2`, `xz`, `zstd` and `zip`),
//! random access into a large tar.gz and a multi-stream tar.xz proven by the request log, and
//! hostile archives (including truncated, damaged and bomb compressed tars) refused without
//! serving a byte.

mod common;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use common::*;

type Files = Vec<(String, Vec<u8>, bool)>;

fn tar_of(files: &Files) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data, _) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_600_000_000);
        h.set_cksum();
        b.append_data(&mut h, name, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

/// gzip at the default level, whose deflate blocks end every few dozen KiB as gzip's do
/// (checkpoints can only sit at block boundaries).
fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// `ls` (the command, with its flags) of dataset `id` fails with EIO, and the daemon's log has
/// a line for the dataset that says every one of `says`.
fn refused_with(m: &Mount, ls: &str, id: &str, says: &[&str]) {
    let (code, out, err) = sh(&format!("{ls} {}/datasets/{id}", m.mnt.display()));
    assert_ne!(code, 0, "{id}: listed {out}");
    assert!(err.contains("Input/output error"), "{id}: {err}");
    std::thread::sleep(Duration::from_millis(50));
    let log = m.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains(&format!("dataset {id}:")) && says.iter().all(|s| l.contains(s))),
        "{id}: no log line with {says:?}:\n{log}"
    );
}

/// Compare every file under `dir` of the mount with `files`, and that nothing else is there.
fn assert_tree(dir: &Path, files: &Files) {
    for (name, data, _) in files {
        let got = std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(got == *data, "{name}: bytes differ");
    }
    let (_, out, _) = sh(&format!("cd {} && find . -type f | wc -l", dir.display()));
    assert_eq!(
        out.trim(),
        files.len().to_string(),
        "extra or missing files"
    );
}

#[test]
fn tar_tgz_and_system_made_archives_read_back_byte_for_byte() {
    let up = Upstream::start();
    let files = image_folder(30, 20);
    up.put("/set.tar", tar_of(&files), true);
    up.put("/set.tar.gz", gzip(&tar_of(&files)), true);
    // The same tree packed by the system's tools.
    let work = tempfile::tempdir().unwrap();
    unpack_to(work.path(), &files);
    let (code, _, err) = sh(&format!(
        "cd {0} && tar czf sys.tgz chest_xray && zip -qr sys.zip chest_xray && tar cf - chest_xray | gzip -9 > sys2.tar.gz",
        work.path().display()
    ));
    assert_eq!(code, 0, "{err}");
    for name in ["sys.tgz", "sys.zip", "sys2.tar.gz"] {
        up.put(
            &format!("/{name}"),
            std::fs::read(work.path().join(name)).unwrap(),
            true,
        );
    }
    let cat = catalog(&[
        ("plain-tar", "CT", "lung", &[("set.tar", "tar")]),
        ("crate-tgz", "CT", "lung", &[("set.tar.gz", "tar.gz")]),
        ("sys-tgz", "MRI", "brain", &[("sys.tgz", "tar.gz")]),
        ("sys-zip", "MRI", "brain", &[("sys.zip", "zip")]),
        ("sys-gzip9", "MRI", "brain", &[("sys2.tar.gz", "tar.gz")]),
    ]);
    let fx = Fixture::new(&up, &cat, "");
    let m = fx.mount(&["--block-size", "64KiB"]);
    for id in ["plain-tar", "crate-tgz", "sys-tgz", "sys-zip", "sys-gzip9"] {
        assert_tree(&m.mnt.join("datasets").join(id), &files);
    }
    // Times come from the archive.
    let meta = std::fs::metadata(m.mnt.join("datasets/plain-tar").join(&files[0].0)).unwrap();
    assert_eq!(
        meta.modified().unwrap(),
        std::time::UNIX_EPOCH + Duration::from_secs(1_600_000_000)
    );
}

#[test]
fn a_member_deep_in_a_large_tgz_costs_one_span_not_the_archive() {
    let up = Upstream::start();
    let files = image_folder(160, 120); // about 19 MB of noisy PNGs
    let tgz = gzip(&tar_of(&files));
    up.put("/big.tar.gz", tgz.clone(), true);
    let cat = catalog(&[("big", "CT", "lung", &[("big.tar.gz", "tar.gz")])]);
    let fx = Fixture::new(&up, &cat, "");
    // A cache far smaller than the archive: the index pass cannot keep its blocks.
    let m = fx.mount(&["--block-size", "256KiB", "--cache-size", "4MiB"]);
    let dir = m.mnt.join("datasets/big");
    let (_, out, _) = sh(&format!("find {} -type f | wc -l", dir.display()));
    assert_eq!(out.trim(), "160");
    let log = up.log();
    assert_eq!(
        log.iter().filter(|l| l.range.is_none()).count(),
        1,
        "one streaming pass"
    );
    let (before, bytes_before) = (up.count(), up.bytes());
    let (name, data, _) = &files[150];
    assert_eq!(&std::fs::read(dir.join(name)).unwrap(), data);
    let requests = up.count() - before;
    let bytes = up.bytes() - bytes_before;
    // From the checkpoint before it (at most a 4 MiB span of output) to its end, in 256 KiB blocks.
    let bound = (4 << 20) + data.len() as u64 + 2 * (256 << 10);
    assert!(
        bytes <= bound,
        "{bytes} bytes read for one member (bound {bound}, archive {})",
        tgz.len()
    );
    assert!(
        requests as u64 <= bound / (256 << 10) + 1,
        "{requests} requests"
    );
    // Memory stays bounded: the daemon's RSS is far below the archive's size.
    let pid = m.child.as_ref().unwrap().id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss_kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(rss_kb < 200 * 1024, "daemon RSS {rss_kb} kB");
}

fn zip_with_names(names: &[&str]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for n in names {
        w.start_file(*n, zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(b"data").unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// Offsets of the central directory headers of a ZIP.
fn central_headers(z: &[u8]) -> Vec<usize> {
    (0..z.len() - 4)
        .filter(|&i| z[i..i + 4] == [0x50, 0x4b, 0x01, 0x02])
        .collect()
}

#[test]
fn hostile_archives_are_refused_with_a_clear_error_and_nothing_is_served() {
    let up = Upstream::start();
    // Names the zip crate writes as given; medimg must refuse them.
    up.put(
        "/dotdot.zip",
        zip_with_names(&["ok.png", "../../etc/passwd"]),
        true,
    );
    up.put("/absolute.zip", zip_with_names(&["/etc/shadow"]), true);
    let good = zip(&image_folder(5, 10));
    up.put("/truncated.zip", good[..good.len() - 30].to_vec(), true);
    up.put(
        "/truncated.tar.gz",
        gzip(&tar_of(&image_folder(5, 10)))[..3000].to_vec(),
        true,
    );
    up.put(
        "/not-an-archive.zip",
        b"<html>Please log in</html>".repeat(10),
        true,
    );
    // Overlapping members: the second central entry points at the first member's header.
    let mut overlap = zip(&image_folder(3, 10));
    let cds = central_headers(&overlap);
    overlap[cds[1] + 42..cds[1] + 46].copy_from_slice(&0u32.to_le_bytes());
    up.put("/overlap.zip", overlap, true);
    // A zip bomb's claim: 4 GB from a few KB of deflate.
    let mut bomb = zip(&[("x.png".into(), vec![0u8; 50_000], true)]);
    let cd = central_headers(&bomb)[0];
    bomb[cd + 24..cd + 28].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    up.put("/bomb.zip", bomb, true);
    let cat = catalog(&[
        ("dotdot", "CT", "lung", &[("dotdot.zip", "zip")]),
        ("absolute", "CT", "lung", &[("absolute.zip", "zip")]),
        ("truncated", "CT", "lung", &[("truncated.zip", "zip")]),
        (
            "truncated-tgz",
            "CT",
            "lung",
            &[("truncated.tar.gz", "tar.gz")],
        ),
        ("html", "CT", "lung", &[("not-an-archive.zip", "zip")]),
        ("overlap", "CT", "lung", &[("overlap.zip", "zip")]),
        ("bomb", "CT", "lung", &[("bomb.zip", "zip")]),
    ]);
    let fx = Fixture::new(&up, &cat, "");
    let m = fx.mount(&["--block-size", "64KiB"]);
    for (id, why) in [
        ("dotdot", "'..'"),
        ("absolute", "absolute path"),
        ("truncated", "end of central directory"),
        ("truncated-tgz", "truncated"),
        ("html", "end of central directory"),
        ("overlap", "overlaps"),
        ("bomb", "zip bomb"),
    ] {
        refused_with(&m, "ls", id, &[why]);
    }
    assert!(!fx.mnt().join("etc").exists());
    let (_, out, _) = sh(&format!(
        "find {}/datasets -type f | wc -l",
        m.mnt.display()
    ));
    assert_eq!(out.trim(), "0", "nothing served from a refused archive");
}

#[test]
fn cp437_names_without_the_utf8_flag_decode_as_unzip_would() {
    let up = Upstream::start();
    let mut z = zip_with_names(&["caf_.png"]);
    // Replace '_' by CP437 0x82 ('é') in both the local and the central header.
    for i in 0..z.len() - 8 {
        if &z[i..i + 8] == b"caf_.png" {
            z[i + 3] = 0x82;
        }
    }
    up.put("/names.zip", z, true);
    let cat = catalog(&[("names", "CT", "lung", &[("names.zip", "zip")])]);
    let fx = Fixture::new(&up, &cat, "");
    let m = fx.mount(&["--block-size", "64KiB"]);
    assert_eq!(
        std::fs::read(m.mnt.join("datasets/names/café.png")).unwrap(),
        b"data"
    );
}

#[test]
fn split_and_spanned_archives_read_as_one() {
    let up = Upstream::start();
    let files = image_folder(24, 30);
    let work = tempfile::tempdir().unwrap();
    unpack_to(work.path(), &files);
    // Info-ZIP spanned (.z01, .z02, ..., .zip), raw splits of a zip (.001, ...) and of a tar.gz.
    let (code, _, err) = sh(&format!(
        "cd {0} && zip -qr -s 200k span.zip chest_xray && zip -qr whole.zip chest_xray \
         && split -b 150k --numeric-suffixes=1 -a 3 whole.zip raw.zip. \
         && tar czf - chest_xray | split -b 170k - parts.tar.gz.",
        work.path().display()
    ));
    assert_eq!(code, 0, "{err}");
    let mut names: Vec<String> = std::fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains('.') && !n.starts_with("chest"))
        .collect();
    names.sort();
    for n in &names {
        up.put(
            &format!("/{n}"),
            std::fs::read(work.path().join(n)).unwrap(),
            true,
        );
    }
    let pick = |prefix: &str| -> Vec<String> {
        let mut v: Vec<String> = names
            .iter()
            .filter(|n| n.starts_with(prefix))
            .cloned()
            .collect();
        // Info-ZIP order: .z01, .z02, ..., then .zip last.
        v.sort_by_key(|n| (n.ends_with(".zip"), n.clone()));
        v
    };
    let span = pick("span.");
    let raw = pick("raw.zip.");
    let tgz = pick("parts.tar.gz.");
    assert!(
        span.len() >= 3 && raw.len() >= 3 && tgz.len() >= 3,
        "{names:?}"
    );
    let urls = |v: &[String]| {
        v.iter()
            .map(|n| format!("\"https://data.example.org/{n}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let cat = format!(
        "{}\n[[dataset]]\nid = \"spanned\"\ntitle = \"t\"\nmodality = [\"CT\"]\norgan = [\"lung\"]\naccess = \"open\"\n\
         [[dataset.source]]\ntype = \"http\"\nurls = [{}]\n\n\
         [[dataset]]\nid = \"raw-split\"\ntitle = \"t\"\nmodality = [\"CT\"]\norgan = [\"lung\"]\naccess = \"open\"\n\
         [[dataset.source]]\ntype = \"http\"\nurls = [{}]\n\n\
         [[dataset]]\nid = \"tgz-split\"\ntitle = \"t\"\nmodality = [\"CT\"]\norgan = [\"lung\"]\naccess = \"open\"\n\
         [[dataset.source]]\ntype = \"http\"\nurls = [{}]\n",
        catalog(&[]),
        urls(&span),
        urls(&raw),
        urls(&tgz)
    );
    let fx = Fixture::new(&up, &cat, "");
    let m = fx.mount(&["--block-size", "64KiB"]);
    for id in ["spanned", "raw-split", "tgz-split"] {
        assert_tree(&m.mnt.join("datasets").join(id), &files);
    }
}

/// `n` bytes that deflate compresses a little, like image data.
fn noisy(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2654435761) | 1;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            ((i / 64) as u8).wrapping_add((x & 0x1f) as u8)
        })
        .collect()
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[test]
fn a_large_file_streams_block_by_block_with_read_ahead() {
    use std::io::Read;
    let up = Upstream::start();
    let volume = noisy(48 << 20, 7);
    up.put("/scan.nii.gz", volume.clone(), true);
    let cat = catalog(&[("vol", "MRI", "brain", &[("scan.nii.gz", "file")])]);
    let fx = Fixture::new(&up, &cat, "");
    let m = fx.mount(&["--block-size", "1MiB"]);
    let path = m.mnt.join("datasets/vol/scan.nii.gz");
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        48 << 20,
        "a .nii.gz stays a file"
    );
    let (before, bytes_before) = (up.count(), up.bytes());
    let mut f = std::fs::File::open(&path).unwrap();
    let mut head = vec![0u8; 64 << 10];
    f.read_exact(&mut head).unwrap();
    assert_eq!(head, volume[..64 << 10]);
    assert!(
        up.bytes() - bytes_before <= 4 << 20,
        "the first bytes waited for {} bytes",
        up.bytes() - bytes_before
    );
    // Sequential reading of the rest: read-ahead keeps several requests in flight for one reader.
    up.set_delay(Duration::from_millis(40));
    let mut rest = Vec::new();
    f.read_to_end(&mut rest).unwrap();
    assert!(rest == volume[64 << 10..], "bytes differ");
    assert!(
        up.peak_concurrency() >= 2,
        "no read-ahead: peak {}",
        up.peak_concurrency()
    );
    let requests = up.count() - before;
    assert!(
        requests <= 48 + 2,
        "{requests} requests for 48 blocks: blocks fetched twice"
    );
    let rss = rss_kb(m.child.as_ref().unwrap().id());
    assert!(
        rss < 150 * 1024,
        "daemon RSS {rss} kB after streaming 48 MB"
    );
}

#[test]
fn large_zip_members_stream_and_are_checked_at_their_end() {
    // Over the 64 MiB limit of whole-member decoding: one stored, one deflated.
    let up = Upstream::start();
    let big = noisy(66 << 20, 3);
    let files: Files = vec![
        ("vol/stored.nii".into(), big.clone(), false),
        ("vol/deflated.nii".into(), big.clone(), true),
    ];
    let good = zip(&files);
    let mut bad = good.clone();
    let at = bad.len() / 4; // inside the stored member's data
    bad[at] ^= 0x40;
    up.put("/good.zip", good, true);
    up.put("/bad.zip", bad, true);
    let cat = catalog(&[
        ("good", "MRI", "brain", &[("good.zip", "zip")]),
        ("bad", "MRI", "brain", &[("bad.zip", "zip")]),
    ]);
    let fx = Fixture::new(&up, &cat, "");
    let m = fx.mount(&["--block-size", "1MiB"]);
    let want = fx.dir.path().join("big.nii");
    std::fs::write(&want, &big).unwrap();
    for name in ["stored", "deflated"] {
        let (code, _, err) = sh(&format!(
            "cmp {}/datasets/good/vol/{name}.nii {}",
            m.mnt.display(),
            want.display()
        ));
        assert_eq!(code, 0, "{name}: {err}");
    }
    let (code, _, err) = sh(&format!(
        "cat {}/datasets/bad/vol/stored.nii > /dev/null",
        m.mnt.display()
    ));
    assert_ne!(code, 0, "a damaged large member was served whole");
    assert!(err.contains("Stale file handle"), "{err}");
    std::thread::sleep(Duration::from_millis(50));
    assert!(m.log_text().contains("stored.nii") && m.log_text().contains("CRC"));
}

/// `data` compressed with the system's `tool` (`bzip2`, `xz`, `zstd`), as one stream, or as
/// one stream per `piece` bytes of input concatenated (what pbzip2, pixz-style and
/// `zstd --rsyncable`-like tools make).
fn system_compress(tool: &str, data: &[u8], piece: Option<usize>) -> Vec<u8> {
    let one = |chunk: &[u8]| {
        let mut c = std::process::Command::new(tool)
            .args(["-c", "-q"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = c.stdin.take().unwrap();
        let chunk = chunk.to_vec();
        let feeder = std::thread::spawn(move || stdin.write_all(&chunk).unwrap());
        let out = c.wait_with_output().unwrap();
        feeder.join().unwrap();
        assert!(out.status.success(), "{tool} failed");
        out.stdout
    };
    match piece {
        None => one(data),
        Some(n) => data.chunks(n).flat_map(one).collect(),
    }
}

#[test]
fn bz2_xz_and_zst_tars_read_back_byte_for_byte_and_a_restart_asks_nothing() {
    let up = Upstream::start();
    let files = image_folder(30, 20);
    let tar = tar_of(&files);
    let mut sets: Vec<(String, String)> = Vec::new();
    for (tool, ext, alias) in [
        ("bzip2", "tar.bz2", "tbz2"),
        ("xz", "tar.xz", "txz"),
        ("zstd", "tar.zst", "tzst"),
    ] {
        // One stream, named with the long extension and the catalog's format.
        up.put(
            &format!("/one.{ext}"),
            system_compress(tool, &tar, None),
            true,
        );
        sets.push((format!("one-{tool}"), format!("one.{ext}|{ext}")));
        // Many streams (one per 100 kB of tar), under the short extension's format alias.
        up.put(
            &format!("/many.{alias}"),
            system_compress(tool, &tar, Some(100_000)),
            true,
        );
        sets.push((format!("many-{tool}"), format!("many.{alias}|{alias}")));
    }
    // The same tree packed by the system's tar.
    let work = tempfile::tempdir().unwrap();
    unpack_to(work.path(), &files);
    let (code, _, err) = sh(&format!(
        "cd {0} && tar cjf sys.tbz2 chest_xray && tar cJf sys.txz chest_xray \
         && tar --zstd -cf sys.tzst chest_xray",
        work.path().display()
    ));
    assert_eq!(code, 0, "{err}");
    for (name, format) in [
        ("sys.tbz2", "tar.bz2"),
        ("sys.txz", "tar.xz"),
        ("sys.tzst", "tar.zst"),
    ] {
        up.put(
            &format!("/{name}"),
            std::fs::read(work.path().join(name)).unwrap(),
            true,
        );
        sets.push((format!("sys-{}", &name[4..]), format!("{name}|{format}")));
    }
    let sources: Vec<(String, String)> = sets
        .iter()
        .map(|(_, s)| {
            let (p, f) = s.split_once('|').unwrap();
            (p.to_string(), f.to_string())
        })
        .collect();
    let one_each: Vec<[(&str, &str); 1]> = sources
        .iter()
        .map(|(p, f)| [(p.as_str(), f.as_str())])
        .collect();
    let datasets: Vec<TestDataset<'_>> = sets
        .iter()
        .zip(&one_each)
        .map(|((id, _), src)| (id.as_str(), "CT", "lung", &src[..]))
        .collect();
    let fx = Fixture::new(&up, &catalog(&datasets), "");
    let m = fx.mount(&["--block-size", "64KiB"]);
    for (id, _) in &sets {
        assert_tree(&m.mnt.join("datasets").join(id), &files);
    }
    let meta = std::fs::metadata(m.mnt.join("datasets/one-xz").join(&files[0].0)).unwrap();
    assert_eq!(
        meta.modified().unwrap(),
        std::time::UNIX_EPOCH + Duration::from_secs(1_600_000_000)
    );
    assert!(m.stop().success());
    // After a restart, listings and reads of what was read come from the index and the cache.
    let before = up.count();
    let m = fx.mount(&["--block-size", "64KiB"]);
    for (id, _) in &sets {
        let dir = m.mnt.join("datasets").join(id);
        let (_, out, _) = sh(&format!("find {} -type f | wc -l", dir.display()));
        assert_eq!(out.trim(), files.len().to_string(), "{id}");
        for i in [0, 17, 29] {
            assert_eq!(std::fs::read(dir.join(&files[i].0)).unwrap(), files[i].1);
        }
    }
    up.assert_no_requests_since(before, "after restart");
}

#[test]
fn a_member_deep_in_a_multi_stream_tar_xz_costs_one_span_not_the_archive() {
    let up = Upstream::start();
    let files = image_folder(160, 120); // about 19 MB of noisy PNGs
    // One xz stream per MiB of tar, as a parallel compressor makes them.
    let txz = system_compress("xz", &tar_of(&files), Some(1 << 20));
    up.put("/big.tar.xz", txz.clone(), true);
    let cat = catalog(&[("big", "CT", "lung", &[("big.tar.xz", "tar.xz")])]);
    let fx = Fixture::new(&up, &cat, "");
    // A cache far smaller than the archive: the index pass cannot keep its blocks.
    let m = fx.mount(&["--block-size", "256KiB", "--cache-size", "4MiB"]);
    let dir = m.mnt.join("datasets/big");
    let (_, out, _) = sh(&format!("find {} -type f | wc -l", dir.display()));
    assert_eq!(out.trim(), "160");
    assert_eq!(
        up.log().iter().filter(|l| l.range.is_none()).count(),
        1,
        "one streaming pass"
    );
    let (before, bytes_before) = (up.count(), up.bytes());
    let (name, data, _) = &files[150];
    assert_eq!(&std::fs::read(dir.join(name)).unwrap(), data);
    let bytes = up.bytes() - bytes_before;
    // From the checkpoint before it (a 4 MiB span plus at most one 1 MiB stream of output)
    // to its end, in 256 KiB blocks.
    let bound = (5 << 20) + data.len() as u64 + 2 * (256 << 10);
    assert!(
        bytes <= bound,
        "{bytes} bytes in {} requests for one member (bound {bound}, archive {})",
        up.count() - before,
        txz.len()
    );
    // A large read in the middle of the archive stays correct across a seek backwards.
    let (name, data, _) = &files[80];
    assert_eq!(&std::fs::read(dir.join(name)).unwrap(), data);
    let rss = rss_kb(m.child.as_ref().unwrap().id());
    assert!(rss < 300 * 1024, "daemon RSS {rss} kB");
}

/// A tar whose one member claims `size` bytes of zeros, compressed with zstd: a bomb of a
/// few hundred kB.
fn zstd_bomb(size: u64) -> Vec<u8> {
    let mut e = zstd::stream::Encoder::new(Vec::new(), 1).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_path("zeros.png").unwrap();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_cksum();
    e.write_all(h.as_bytes()).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..size >> 20 {
        e.write_all(&zeros).unwrap();
    }
    e.write_all(&[0u8; 1024]).unwrap();
    e.finish().unwrap()
}

#[test]
fn truncated_damaged_and_bomb_compressed_tars_are_refused_and_nothing_is_served() {
    let up = Upstream::start();
    let tar = tar_of(&image_folder(5, 10));
    let mut cat = Vec::new();
    for (tool, ext) in [("bzip2", "tar.bz2"), ("xz", "tar.xz"), ("zstd", "tar.zst")] {
        let whole = system_compress(tool, &tar, None);
        up.put(
            &format!("/truncated.{ext}"),
            whole[..whole.len() * 2 / 3].to_vec(),
            true,
        );
        let mut damaged = whole.clone();
        let mid = damaged.len() / 2;
        damaged[mid] ^= 0x5a;
        up.put(&format!("/damaged.{ext}"), damaged, true);
        cat.push((format!("truncated-{tool}"), format!("truncated.{ext}"), ext));
        cat.push((format!("damaged-{tool}"), format!("damaged.{ext}"), ext));
    }
    up.put("/bomb.tar.zst", zstd_bomb(1100 << 20), true);
    cat.push(("bomb".into(), "bomb.tar.zst".into(), "tar.zst"));
    let srcs: Vec<[(&str, &str); 1]> = cat.iter().map(|(_, p, f)| [(p.as_str(), *f)]).collect();
    let datasets: Vec<TestDataset<'_>> = cat
        .iter()
        .zip(&srcs)
        .map(|((id, ..), s)| (id.as_str(), "CT", "lung", &s[..]))
        .collect();
    let fx = Fixture::new(&up, &catalog(&datasets), "");
    let m = fx.mount(&["--block-size", "64KiB"]);
    for (id, path, _) in &cat {
        let why = if id.starts_with("truncated") {
            "truncated"
        } else if id == "bomb" {
            "decompression bomb"
        } else {
            ""
        };
        refused_with(&m, "ls", id, &[path.as_str(), why]);
    }
    let (_, out, _) = sh(&format!(
        "find {}/datasets -type f | wc -l",
        m.mnt.display()
    ));
    assert_eq!(out.trim(), "0", "nothing served from a refused archive");
}

/// A 7z of `files` made by the system's 7-Zip (`7zz`, Debian's `7zip`) with `args`, or `None`
/// when it is not installed.
fn system_7z(files: &Files, args: &str) -> Option<Vec<u8>> {
    let tool = ["7zz", "7z", "7za"]
        .into_iter()
        .find(|t| sh(&format!("command -v {t}")).0 == 0)?;
    let work = tempfile::tempdir().unwrap();
    unpack_to(work.path(), files);
    let (code, _, err) = sh(&format!(
        "cd {} && {tool} a -bd {args} x.7z chest_xray >/dev/null",
        work.path().display()
    ));
    assert_eq!(code, 0, "{err}");
    Some(std::fs::read(work.path().join("x.7z")).unwrap())
}

/// A solid 7z (LZMA2) written by sevenz-rust2 itself.
fn library_7z(files: &Files) -> Vec<u8> {
    let mut w = sevenz_rust2::ArchiveWriter::new(std::io::Cursor::new(Vec::new())).unwrap();
    let entries: Vec<_> = files
        .iter()
        .map(|(n, ..)| sevenz_rust2::ArchiveEntry::new_file(n))
        .collect();
    let readers: Vec<sevenz_rust2::SourceReader<&[u8]>> =
        files.iter().map(|(_, d, _)| (&d[..]).into()).collect();
    w.push_archive_entries(entries, readers).unwrap();
    w.finish().unwrap().into_inner()
}

#[test]
fn seven_zip_archives_solid_or_not_read_back_and_a_restart_asks_nothing() {
    let up = Upstream::start();
    let files = image_folder(30, 20);
    let mut ids = vec!["lib-solid"];
    up.put("/lib.7z", library_7z(&files), true);
    let mut sources = vec![("lib-solid", "lib.7z")];
    if let Some(z) = system_7z(&files, "") {
        up.put("/solid.7z", z, true);
        sources.push(("sys-solid", "solid.7z"));
        ids.push("sys-solid");
    }
    if let Some(z) = system_7z(&files, "-ms=off -mx=1") {
        up.put("/nonsolid.7z", z, true);
        sources.push(("sys-nonsolid", "nonsolid.7z"));
        ids.push("sys-nonsolid");
    }
    // A large member (over the 16 MiB decoded whole) streams, and a host without ranges.
    let big = vec![("vol/ct.nii".to_string(), noisy(20 << 20, 9), true)];
    up.put("/big.7z", library_7z(&big), true);
    up.put("/noranges.7z", library_7z(&files), false);
    let srcs: Vec<[(&str, &str); 1]> = sources.iter().map(|(_, p)| [(*p, "7z")]).collect();
    let mut datasets: Vec<TestDataset<'_>> = sources
        .iter()
        .zip(&srcs)
        .map(|((id, _), s)| (*id, "CT", "lung", &s[..]))
        .collect();
    datasets.push(("big", "CT", "lung", &[("big.7z", "7z")]));
    datasets.push(("noranges", "CT", "lung", &[("noranges.7z", "7z")]));
    let fx = Fixture::new(&up, &catalog(&datasets), "");
    let m = fx.mount(&["--block-size", "64KiB"]);
    // Listing a ranged 7z reads its start header and its header, not its members.
    let (code, _, err) = sh(&format!("ls -lR {}/datasets/big", m.mnt.display()));
    assert_eq!(code, 0, "{err}");
    let listing: usize = up
        .log()
        .iter()
        .filter(|l| l.path.ends_with("/big.7z"))
        .count();
    assert!(listing <= 3, "{listing} requests to list a 20 MiB 7z");
    for id in ids.iter().chain(&["noranges"]) {
        assert_tree(&m.mnt.join("datasets").join(id), &files);
    }
    assert_tree(&m.mnt.join("datasets/big"), &big);
    assert!(m.stop().success());
    let before = up.count();
    let m = fx.mount(&["--block-size", "64KiB"]);
    for id in ids.iter().chain(&["noranges"]) {
        let dir = m.mnt.join("datasets").join(id);
        let (_, out, _) = sh(&format!("find {} -type f | wc -l", dir.display()));
        assert_eq!(out.trim(), files.len().to_string(), "{id}");
        assert_eq!(std::fs::read(dir.join(&files[3].0)).unwrap(), files[3].1);
    }
    up.assert_no_requests_since(before, "after restart");
}

#[test]
fn truncated_blank_and_damaged_7z_archives_are_refused_and_nothing_bad_is_served() {
    let up = Upstream::start();
    let files = image_folder(5, 10);
    let z = library_7z(&files);
    up.put("/truncated.7z", z[..z.len() - 20].to_vec(), true);
    let mut blank = z.clone();
    blank[8..32].fill(0);
    up.put("/blank.7z", blank, true);
    let mut damaged = z.clone();
    damaged[100] ^= 0x40;
    up.put("/damaged.7z", damaged, true);
    let cat = catalog(&[
        ("truncated", "CT", "lung", &[("truncated.7z", "7z")]),
        ("blank", "CT", "lung", &[("blank.7z", "7z")]),
        ("damaged", "CT", "lung", &[("damaged.7z", "7z")]),
    ]);
    let fx = Fixture::new(&up, &cat, "");
    let m = fx.mount(&["--block-size", "64KiB"]);
    for (id, why) in [("truncated", "truncated"), ("blank", "blank")] {
        refused_with(&m, "ls", id, &[why]);
    }
    // Damage in the packed data: the header lists, but no member of the damaged block is
    // served (its decoder or its CRC fails the read).
    let dir = m.mnt.join("datasets/damaged");
    let mut served = 0;
    for (name, data, _) in &files {
        match std::fs::read(dir.join(name)) {
            Ok(got) => {
                assert!(got == *data, "{name}: damaged bytes served");
                served += 1;
            }
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EIO), "{name}: {e}"),
        }
    }
    assert!(served < files.len(), "the damage went unnoticed");
}

/// A ZIP of `(name, bytes)` with every member stored (as zip tools keep archives inside
/// archives, which deflate cannot shrink).
fn stored_zip(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (n, data) in files {
        w.start_file(*n, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

#[test]
fn archives_inside_archives_are_folders_to_three_levels_and_a_bad_one_stays_a_file() {
    let up = Upstream::start();
    let files = image_folder(6, 10);
    let inner_zip = zip(&files);
    let inner_tar = tar_of(&files);
    let deep4 = stored_zip(&[("x.txt", b"four levels down")]);
    let deep3 = stored_zip(&[("deep4.zip", &deep4)]);
    let deep2 = stored_zip(&[("deep3.zip", &deep3)]);
    let deep1 = stored_zip(&[("deep2.zip", &deep2)]);
    let evil = zip_with_names(&["ok.png", "../../escape.png"]);
    let outer_tar = tar_of(&vec![
        ("data/inner.zip".to_string(), inner_zip.clone(), true),
        ("data/evil.zip".to_string(), evil.clone(), true),
        ("readme.txt".to_string(), b"hello".to_vec(), true),
    ]);
    let outer_zip = stored_zip(&[
        ("inner.tar", &inner_tar),
        ("deep1.zip", &deep1),
        ("notes.txt", b"notes"),
    ]);
    up.put("/outer.tar", outer_tar, true);
    up.put("/outer.zip", outer_zip, true);
    let cat = catalog(&[
        ("nested-tar", "CT", "lung", &[("outer.tar", "tar")]),
        ("nested-zip", "CT", "lung", &[("outer.zip", "zip")]),
    ]);
    let fx = Fixture::new(&up, &cat, "");
    let m = fx.mount(&["--block-size", "64KiB"]);
    let t = m.mnt.join("datasets/nested-tar");
    assert!(t.join("data/inner.zip").is_dir());
    for (name, data, _) in &files {
        assert!(std::fs::read(t.join("data/inner.zip").join(name)).unwrap() == *data);
    }
    assert_eq!(std::fs::read(t.join("readme.txt")).unwrap(), b"hello");
    // An inner archive that is refused stays the upstream's file, and the log says why.
    assert!(std::fs::read(t.join("data/evil.zip")).unwrap() == evil);
    assert!(!m.mnt.join("datasets/escape.png").exists());
    let z = m.mnt.join("datasets/nested-zip");
    for (name, data, _) in &files {
        assert!(std::fs::read(z.join("inner.tar").join(name)).unwrap() == *data);
    }
    // Three levels are folders; the fourth stays a file.
    let third = z.join("deep1.zip/deep2.zip/deep3.zip");
    assert!(third.is_dir());
    assert!(std::fs::read(third.join("deep4.zip")).unwrap() == deep4);
    assert_eq!(std::fs::read(z.join("notes.txt")).unwrap(), b"notes");
    std::thread::sleep(Duration::from_millis(50));
    let log = m.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("data/evil.zip") && l.contains("kept as a file")),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("deep4.zip") && l.contains("deeper than 3")),
        "{log}"
    );
    assert!(m.stop().success());
    let before = up.count();
    let m = fx.mount(&["--block-size", "64KiB"]);
    let (_, out, _) = sh(&format!(
        "find {}/datasets -type f | wc -l",
        m.mnt.display()
    ));
    assert_eq!(out.trim(), (6 + 2 + 6 + 2).to_string());
    assert!(std::fs::read(third.join("deep4.zip")).unwrap() == deep4);
    assert_eq!(up.count(), before, "new requests after restart");
}

#[test]
fn a_7z_or_tar_xz_changed_upstream_is_estale_not_mixed() {
    let up = Upstream::start();
    let files = image_folder(40, 60);
    up.put("/set.7z", library_7z(&files), true);
    up.put(
        "/set.tar.xz",
        system_compress("xz", &tar_of(&files), Some(200_000)),
        true,
    );
    let cat = catalog(&[
        ("sz", "CT", "lung", &[("set.7z", "7z")]),
        ("txz", "CT", "lung", &[("set.tar.xz", "tar.xz")]),
    ]);
    let fx = Fixture::new(&up, &cat, "");
    // A cache smaller than the archives, so the members read later need blocks again.
    let m = fx.mount(&["--block-size", "64KiB", "--cache-size", "1MiB"]);
    let (_, out, _) = sh(&format!(
        "find {}/datasets -type f | wc -l",
        m.mnt.display()
    ));
    assert_eq!(out.trim(), "80");
    let other = image_folder(41, 60);
    up.put("/set.7z", library_7z(&other), true);
    up.put(
        "/set.tar.xz",
        system_compress("xz", &tar_of(&other), Some(200_000)),
        true,
    );
    for id in ["sz", "txz"] {
        let dir = m.mnt.join("datasets").join(id);
        let mut stale = 0;
        for (name, data, _) in files.iter().rev() {
            match std::fs::read(dir.join(name)) {
                Ok(got) => assert!(got == *data, "{id} {name}: mixed bytes"),
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(libc::ESTALE), "{id} {name}: {e}");
                    stale += 1;
                }
            }
        }
        assert!(stale > 0, "{id}: the change went unnoticed");
    }
}

#[test]
fn a_solid_7z_read_in_archive_order_reads_back_and_is_fetched_about_once() {
    let up = Upstream::start();
    let files: Files = (0..60)
        .map(|i| (format!("chest_xray/s{i:03}.dcm"), noisy(60_000, i), true))
        .collect();
    // 7-Zip's default: one solid block.
    let Some(z) = system_7z(&files, "-mx=1") else {
        eprintln!("no 7-Zip here: skipped");
        return;
    };
    assert!(
        z.len() > 2 << 20,
        "{} bytes: too small to test the cache",
        z.len()
    );
    up.put("/solid.7z", z.clone(), true);
    let cat = catalog(&[("solid", "CT", "lung", &[("solid.7z", "7z")])]);
    let fx = Fixture::new(&up, &cat, "");
    // A cache far smaller than the archive: decoding the block from its start for every
    // member would fetch it again and again.
    let m = fx.mount(&["--block-size", "64KiB", "--cache-size", "1MiB"]);
    let dir = m.mnt.join("datasets/solid");
    let before = up.bytes();
    // `find` lists in index order, which is the archive's order.
    let (code, _, err) = sh(&format!(
        "find {} -type f -exec cat {{}} + > /dev/null",
        dir.display()
    ));
    assert_eq!(code, 0, "{err}");
    let fetched = up.bytes() - before;
    assert!(
        fetched <= z.len() as u64 * 3 / 2,
        "{fetched} bytes fetched to read a {} byte solid 7z in order",
        z.len()
    );
    for (name, data, _) in &files {
        assert!(std::fs::read(dir.join(name)).unwrap() == *data, "{name}");
    }
}

/// A RAR from `tests/fixtures/rar/` (real archives made by RAR; see its README).
fn rar_fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/rar/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// What The Unarchiver (`unar`, a RAR decoder independent of libarchive) extracts from
/// `rar`: its regular files, `(path, bytes)`, as the reference a mount must match.
fn unar_files(rar: &[u8]) -> Files {
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("a.rar"), rar).unwrap();
    let (code, _, err) = sh(&format!(
        "cd {} && unar -q -D -o out a.rar",
        work.path().display()
    ));
    assert_eq!(
        code, 0,
        "unar (Debian's `unar` package; .ci/run installs it) failed: {err}"
    );
    let (_, out, _) = sh(&format!(
        "cd {}/out && find . -type f -printf '%P\\n' | sort",
        work.path().display()
    ));
    out.lines()
        .map(|p| {
            let data = std::fs::read(work.path().join("out").join(p)).unwrap();
            (p.to_string(), data, true)
        })
        .collect()
}

#[test]
fn rar4_and_rar5_archives_solid_or_not_read_back_as_unar_extracts_them() {
    let up = Upstream::start();
    let names = [
        ("rar4", "rar4.rar"),
        ("rar4-normal", "rar4_normal.rar"),
        ("rar4-subdirs", "rar3_subdirs.rar"),
        ("rar5", "rar5_multiple_files.rar"),
        ("rar5-solid", "rar5_multiple_files_solid.rar"),
        ("rar5-stored", "rar5_stored.rar"),
    ];
    for (_, file) in names {
        up.put(&format!("/{file}"), rar_fixture(file), true);
    }
    // A host that ignores ranges, and a solid RAR 4 (libarchive does not decode those).
    up.put(
        "/noranges.rar",
        rar_fixture("rar5_multiple_files_solid.rar"),
        false,
    );
    up.put("/solid4.rar", rar_fixture("rar3_solid.rar"), true);
    let srcs: Vec<[(&str, &str); 1]> = names.iter().map(|(_, f)| [(*f, "rar")]).collect();
    let mut datasets: Vec<TestDataset<'_>> = names
        .iter()
        .zip(&srcs)
        .map(|((id, _), s)| (*id, "CT", "lung", &s[..]))
        .collect();
    datasets.push(("noranges", "CT", "lung", &[("noranges.rar", "rar")]));
    datasets.push(("solid4", "CT", "lung", &[("solid4.rar", "rar")]));
    let fx = Fixture::new(&up, &catalog(&datasets), "");
    let m = fx.mount(&["--block-size", "64KiB"]);
    let mut expected = Vec::new();
    for (id, file) in names
        .iter()
        .chain(&[("noranges", "rar5_multiple_files_solid.rar")])
    {
        let files = unar_files(&rar_fixture(file));
        assert!(!files.is_empty(), "{id}");
        assert_tree(&m.mnt.join("datasets").join(id), &files);
        expected.push((id.to_string(), files));
    }
    // Folders (the empty one too) are folders; the link is skipped, not a file.
    assert!(m.mnt.join("datasets/rar4/testemptydir").is_dir());
    assert!(m.mnt.join("datasets/rar4-subdirs/sub/üȵĩöḋè").is_dir());
    assert!(!m.mnt.join("datasets/rar4/testlink").exists());
    // Each small archive is one block: one request each, listing and reads together.
    for (_, file) in names {
        let n = up
            .log()
            .iter()
            .filter(|l| l.path.ends_with(&format!("/{file}")))
            .count();
        assert_eq!(n, 1, "{file}: {n} requests");
    }
    // The solid RAR 4 stays a file, whole, and the log says why.
    let kept = std::fs::read(m.mnt.join("datasets/solid4/solid4.rar")).unwrap();
    assert_eq!(kept, rar_fixture("rar3_solid.rar"));
    let log = m.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("solid4") && l.contains("solid RAR 4")),
        "{log}"
    );
    assert!(m.stop().success());
    // After a restart the index and the cache answer: nothing is asked again.
    let before = up.count();
    let m = fx.mount(&["--block-size", "64KiB"]);
    for (id, files) in &expected {
        assert_tree(&m.mnt.join("datasets").join(id), files);
    }
    up.assert_no_requests_since(before, "after restart");
}

/// Patch the first RAR 4 file header naming `from` to name `to` (same length), with its
/// header CRC recomputed (the low 16 bits of the CRC-32 of the header after the CRC field),
/// so only the name is hostile.
fn rar4_renamed(rar: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let at = rar
        .windows(from.len())
        .position(|w| w == from)
        .expect("name in archive");
    // A file header's fixed fields before the name take 32 bytes.
    let start = at - 32;
    assert_eq!(rar[start + 2], 0x74, "a file header");
    let size = u16::from_le_bytes([rar[start + 5], rar[start + 6]]) as usize;
    let mut out = rar.to_vec();
    out[at..at + to.len()].copy_from_slice(to);
    let crc = crc32fast::hash(&out[start + 2..start + size]) as u16;
    out[start..start + 2].copy_from_slice(&crc.to_le_bytes());
    out
}

#[test]
fn truncated_damaged_encrypted_and_escaping_rars_are_refused_and_nothing_is_served() {
    let up = Upstream::start();
    let normal = rar_fixture("rar4_normal.rar");
    up.put("/truncated.rar", normal[..normal.len() / 2].to_vec(), true);
    // A flipped byte inside a stored member's data: only its CRC can tell.
    let stored = rar_fixture("rar3_subdirs.rar");
    let at = stored
        .windows(6)
        .position(|w| w == b"file1\n")
        .expect("file1's data is stored as it is");
    let mut damaged4 = stored.clone();
    damaged4[at] ^= 0x01;
    up.put("/damaged4.rar", damaged4, true);
    let stored5 = rar_fixture("rar5_stored.rar");
    let mut damaged5 = stored5.clone();
    let n = damaged5.len();
    // rar5_stored holds one stored text member, ending just before the end-of-archive block.
    damaged5[n - 12] ^= 0x01;
    up.put("/damaged5.rar", damaged5, true);
    up.put("/enc4.rar", rar_fixture("rar4_encrypted.rar"), true);
    up.put("/enc5.rar", rar_fixture("rar5_encrypted.rar"), true);
    up.put(
        "/escape.rar",
        rar4_renamed(&stored, b"sub\\dir1\\file1.txt", b"..\\\\dir1\\file1.txt"),
        true,
    );
    up.put("/lzss.rar", rar_fixture("rar4_multi_lzss_blocks.rar"), true);
    let cat = catalog(&[
        ("truncated", "CT", "lung", &[("truncated.rar", "rar")]),
        ("damaged4", "CT", "lung", &[("damaged4.rar", "rar")]),
        ("damaged5", "CT", "lung", &[("damaged5.rar", "rar")]),
        ("enc4", "CT", "lung", &[("enc4.rar", "rar")]),
        ("enc5", "CT", "lung", &[("enc5.rar", "rar")]),
        ("escape", "CT", "lung", &[("escape.rar", "rar")]),
        ("lzss", "CT", "lung", &[("lzss.rar", "rar")]),
    ]);
    let fx = Fixture::new(&up, &cat, "");
    let m = fx.mount(&["--block-size", "64KiB"]);
    for (id, why) in [
        ("truncated", "RAR"),
        ("damaged4", "CRC"),
        ("damaged5", "CRC"),
        ("enc4", "encrypted"),
        ("enc5", "encrypted"),
        ("escape", "path contains '..'"),
    ] {
        refused_with(&m, "ls -R", id, &[why]);
    }
    // A valid RAR 4 (its 20 MiB member checks with unar) that Debian's libarchive 3.6
    // decodes wrong (libarchive's RAR 4 window bugs, fixed in 3.7): refused by the CRC, never
    // served; a libarchive without the bug serves it whole.
    let dir = m.mnt.join("datasets/lzss");
    match std::fs::read(dir.join("multi_lzss_blocks_test.txt")) {
        Ok(got) => {
            let want = unar_files(&rar_fixture("rar4_multi_lzss_blocks.rar"));
            assert!(got == want[0].1, "wrong bytes served");
        }
        Err(e) => {
            assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
            let log = m.log_text();
            assert!(
                log.lines()
                    .any(|l| l.contains("dataset lzss:") && l.contains("CRC")),
                "{log}"
            );
        }
    }
    // Nothing of a refused archive is in the index: a restart lists none of them either.
    assert!(m.stop().success());
    let m = fx.mount(&["--block-size", "64KiB"]);
    for id in ["damaged4", "damaged5", "escape"] {
        let (code, out, _) = sh(&format!("ls -R {}/datasets/{id}", m.mnt.display()));
        assert_ne!(code, 0, "{id}: listed after restart: {out}");
    }
}

#[test]
fn a_rar_member_is_reached_by_seeking_over_the_members_before_it() {
    let up = Upstream::start();
    // A 1 MiB member (random, compressed by RAR's best method), then a 32 KiB one.
    let rar = rar_fixture("rar4_binary_data.rar");
    up.put("/binary.rar", rar.clone(), true);
    let cat = catalog(&[("binary", "CT", "lung", &[("binary.rar", "rar")])]);
    let fx = Fixture::new(&up, &cat, "");
    let flags = ["--block-size", "64KiB", "--cache-size", "256KiB"];
    let m = fx.mount(&flags);
    let files = unar_files(&rar);
    let dir = m.mnt.join("datasets/binary");
    let (_, out, _) = sh(&format!("find {} -type f | wc -l", dir.display()));
    assert_eq!(out.trim(), "2");
    assert!(m.stop().success());
    // A cache of four blocks kept none of the listing's; the second member costs the first
    // block (the first header) and its own blocks (its header and data), not the first
    // member's megabyte, which libarchive seeks over.
    let _m = fx.mount(&flags);
    let (before, bytes_before) = (up.count(), up.bytes());
    let (name, data, _) = files
        .iter()
        .find(|(n, ..)| n.ends_with(".odt"))
        .expect("the second member");
    assert!(std::fs::read(dir.join(name)).unwrap() == *data, "{name}");
    let bytes = up.bytes() - bytes_before;
    eprintln!(
        "the 32 KiB member after a 1 MiB one: {bytes} bytes in {} requests",
        up.count() - before
    );
    assert!(
        bytes < 3 * (64 << 10),
        "{bytes} bytes fetched for a 32 KiB member after a 1 MiB one ({} requests)",
        up.count() - before
    );
    // The first member reads back too.
    let (name, data, _) = files
        .iter()
        .find(|(n, ..)| n.ends_with(".bin"))
        .expect("the first member");
    assert!(std::fs::read(dir.join(name)).unwrap() == *data, "{name}");
}

#[test]
fn rars_stored_inside_a_zip_or_a_tar_are_folders_read_in_place() {
    let up = Upstream::start();
    let five = rar_fixture("rar5_multiple_files_solid.rar");
    let four = rar_fixture("rar3_subdirs.rar");
    let solid4 = rar_fixture("rar3_solid.rar");
    up.put(
        "/in.zip",
        stored_zip(&[
            ("a/five.rar", &five[..]),
            ("b/four.rar", &four[..]),
            ("c/solid4.rar", &solid4[..]),
        ]),
        true,
    );
    let t: Files = vec![
        ("x/five.rar".into(), five.clone(), true),
        ("y/four.rar".into(), four.clone(), true),
    ];
    up.put("/in.tar", tar_of(&t), true);
    let cat = catalog(&[
        ("zipped", "CT", "lung", &[("in.zip", "zip")]),
        ("tarred", "CT", "lung", &[("in.tar", "tar")]),
    ]);
    let fx = Fixture::new(&up, &cat, "");
    let m = fx.mount(&["--block-size", "64KiB"]);
    let (five_files, four_files) = (unar_files(&five), unar_files(&four));
    for (dir, five_at, four_at) in [
        ("datasets/zipped", "a/five.rar", "b/four.rar"),
        ("datasets/tarred", "x/five.rar", "y/four.rar"),
    ] {
        let root = m.mnt.join(dir);
        // Two RARs in one blob, their members read in turns: the decoder kept after one
        // RAR's member must not serve the other RAR's.
        assert!(
            root.join(five_at).is_dir() && root.join(four_at).is_dir(),
            "{dir}"
        );
        for i in 0..five_files.len().max(four_files.len()) {
            for (at, files) in [(five_at, &five_files), (four_at, &four_files)] {
                let Some((name, data, _)) = files.get(i) else {
                    continue;
                };
                let got = std::fs::read(root.join(at).join(name))
                    .unwrap_or_else(|e| panic!("{dir}/{at}/{name}: {e}"));
                assert!(got == *data, "{dir}/{at}/{name}: bytes differ");
            }
        }
    }
    // Not one read failed on the way (a failed read may be retried and pass unnoticed).
    let log = m.log_text();
    assert!(!log.contains("ERROR"), "{log}");
    // A RAR libarchive cannot decode stays a file inside the zip, the upstream's bytes.
    let kept = std::fs::read(m.mnt.join("datasets/zipped/c/solid4.rar")).unwrap();
    assert_eq!(kept, solid4);
}

/// Extract `archive` (by its name) into `dir` with the system's own tools.
fn extract_with_tools(archive: &Path, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let name = archive.file_name().unwrap().to_string_lossy().into_owned();
    let cmd = if name.ends_with(".tar.gz") || name.ends_with(".tar") {
        format!("tar xf {} -C {}", archive.display(), dir.display())
    } else {
        format!(
            "7zz x -bd -y -o{} {} >/dev/null",
            dir.display(),
            archive.display()
        )
    };
    let (code, _, err) = sh(&cmd);
    assert_eq!(code, 0, "{cmd}: {err}");
}

#[test]
fn archives_inside_compressed_archives_are_folders_as_the_tools_extract_them() {
    let up = Upstream::start();
    let files = image_folder(10, 12);
    let work = tempfile::tempdir().unwrap();
    let pack = work.path().join("pack");
    std::fs::create_dir_all(pack.join("scans")).unwrap();
    std::fs::write(pack.join("scans/inner.zip"), zip(&files)).unwrap();
    std::fs::write(pack.join("scans/inner.tar"), tar_of(&files)).unwrap();
    std::fs::write(pack.join("readme.txt"), b"two archives inside").unwrap();
    // Half a zip: not an archive that lists, so it stays the file it is.
    let broken = zip(&files)[..3000].to_vec();
    std::fs::write(pack.join("broken.zip"), &broken).unwrap();
    std::fs::write(
        work.path().join("mkzip.py"),
        "import os, zipfile\n\
         with zipfile.ZipFile('outer.zip', 'w', zipfile.ZIP_DEFLATED) as z:\n\
         \x20   for d, _, fs in sorted(os.walk('pack')):\n\
         \x20       for f in sorted(fs):\n\
         \x20           z.write(os.path.join(d, f))\n",
    )
    .unwrap();
    let w = work.path().display();
    for cmd in [
        format!("cd {w} && tar czf outer.tar.gz pack"),
        format!("cd {w} && 7zz a -bd outer.7z pack >/dev/null"),
        // Python's zipfile deflates every member (7-Zip and Info-ZIP store what deflate
        // cannot shrink, and the inner archives would be read in place).
        format!("cd {w} && python3 mkzip.py"),
    ] {
        let (code, _, err) = sh(&cmd);
        assert_eq!(code, 0, "{cmd}: {err}");
    }
    let outer_zip = std::fs::read(work.path().join("outer.zip")).unwrap();
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(&outer_zip[..])).unwrap();
    let method = z.by_name("pack/scans/inner.zip").unwrap().compression();
    assert_eq!(method, zip::CompressionMethod::Deflated);
    let outers = [
        ("in-tgz", "outer.tar.gz", "tar.gz"),
        ("in-7z", "outer.7z", "7z"),
        ("in-zip", "outer.zip", "zip"),
    ];
    for (_, name, _) in outers {
        up.put(
            &format!("/{name}"),
            std::fs::read(work.path().join(name)).unwrap(),
            true,
        );
    }
    let cat = catalog(&[
        ("in-tgz", "CT", "lung", &[("outer.tar.gz", "tar.gz")]),
        ("in-7z", "CT", "lung", &[("outer.7z", "7z")]),
        ("in-zip", "CT", "lung", &[("outer.zip", "zip")]),
    ]);
    let fx = Fixture::new(&up, &cat, "");
    let m = fx.mount(&["--block-size", "64KiB"]);
    for (id, name, _) in outers {
        // What a user gets by hand: the outer archive extracted, then each inner one
        // extracted into a folder of its name.
        let want = work.path().join(format!("want-{id}"));
        extract_with_tools(&work.path().join(name), &want);
        for inner in ["inner.zip", "inner.tar"] {
            let at = want.join("pack/scans").join(inner);
            let tmp = want.join("unpacked");
            extract_with_tools(&at, &tmp);
            std::fs::remove_file(&at).unwrap();
            std::fs::rename(&tmp, &at).unwrap();
        }
        let got = m.mnt.join("datasets").join(id);
        let (code, out, err) = sh(&format!("diff -r {} {}", want.display(), got.display()));
        assert_eq!(
            code, 0,
            "{id}: the mount differs from the tools' extraction:\n{out}{err}"
        );
        assert!(got.join("pack/scans/inner.zip").is_dir(), "{id}");
        assert_eq!(
            std::fs::read(got.join("pack/broken.zip")).unwrap(),
            broken,
            "{id}"
        );
    }
    std::thread::sleep(Duration::from_millis(50));
    let log = m.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("pack/broken.zip") && l.contains("kept as a file")),
        "{log}"
    );
    assert!(!log.contains("ERROR"), "{log}");
    assert!(m.stop().success());
    // After a restart on the same cache, a copy of everything asks the host nothing.
    let before = up.count();
    let m = fx.mount(&["--block-size", "64KiB"]);
    let copy = work.path().join("copy");
    let (code, _, err) = sh(&format!(
        "cp -r {}/datasets/in-7z {}",
        m.mnt.display(),
        copy.display()
    ));
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = sh(&format!(
        "diff -r {} {}",
        copy.display(),
        work.path().join("want-in-7z").display()
    ));
    assert_eq!(code, 0, "{out}");
    assert_eq!(up.count(), before, "requests after a restart");
    assert!(m.stop().success());
}
