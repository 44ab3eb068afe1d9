//! Every host adapter through a real mount, against a loopback emulator of that host that
//! answers in the shape its public documentation gives (JSON fields, redirects to short-lived
//! signed URLs, 429 with Retry-After, 401/403, HTML where bytes were expected). One server
//! plays every host: the mirror rule sends `https://HOST/...` to `/HOST/...` on it, so the
//! request log says which host each request went to, and with which credential.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::json;
use sha2::Digest;

fn md5_hex(d: &[u8]) -> String {
    hex(&md5::Md5::digest(d))
}

fn sha256_hex(d: &[u8]) -> String {
    hex(&sha2::Sha256::digest(d))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `20260101T000000Z` for `t` seconds since the epoch.
fn amz_date(t: u64) -> String {
    let days = (t / 86400) as i64;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let s = t % 86400;
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

fn parse_amz_date(s: &str) -> u64 {
    // Inverse of amz_date, by search from a nearby day (tests only need recent dates).
    let now = now_secs();
    let day0 = now - now % 86400;
    for back in 0..3u64 {
        let d = day0 - back * 86400;
        if amz_date(d)[..8] == s[..8] {
            let h: u64 = s[9..11].parse().unwrap();
            let mi: u64 = s[11..13].parse().unwrap();
            let se: u64 = s[13..15].parse().unwrap();
            return d + h * 3600 + mi * 60 + se;
        }
    }
    0
}

fn ls(m: &Mount, path: &str) -> Result<Vec<String>, std::io::Error> {
    let mut v = Vec::new();
    let entries = std::fs::read_dir(m.mnt.join(path)).and_then(|rd| {
        rd.map(|e| e.map(|e| e.file_name()))
            .collect::<Result<Vec<_>, _>>()
    });
    if let Err(e) = &entries {
        // Shown when a test fails: the daemon says why.
        eprintln!("ls {path}: {e}; daemon log:\n{}", m.log_text());
    }
    for name in entries? {
        v.push(name.into_string().unwrap());
    }
    v.sort();
    Ok(v)
}

fn read(m: &Mount, path: &str) -> Result<Vec<u8>, std::io::Error> {
    std::fs::read(m.mnt.join(path))
}

fn eacces(r: Result<impl std::fmt::Debug, std::io::Error>) -> bool {
    matches!(r, Err(e) if e.raw_os_error() == Some(libc::EACCES))
}

fn eio(r: Result<impl std::fmt::Debug, std::io::Error>) -> bool {
    matches!(r, Err(e) if e.raw_os_error() == Some(libc::EIO))
}

/// Archive members: path, bytes, deflated.
type Members = Vec<(String, Vec<u8>, bool)>;

fn small_zip() -> (Vec<u8>, Members) {
    let files = image_folder(6, 8);
    (zip(&files), files)
}

/// A zip of 12 images of about 32 KB: several 64 KiB blocks.
fn bigger_zip() -> (Vec<u8>, Members) {
    let files: Vec<_> = image_folder(12, 32)
        .into_iter()
        .map(|(n, d, _)| (n, d, false))
        .collect();
    (zip(&files), files)
}

fn fixture(up: &Upstream, catalog: &str) -> Fixture {
    Fixture::new(up, catalog, &all_hosts_to(up))
}

/// A signed-storage endpoint: serves `/HOST/PATH` with Range only while the signature in the
/// query is valid (`X-Amz-Date` + `X-Amz-Expires`, or `X-Goog-*`), else 400 as S3 and GCS do;
/// `revoke_after` ends validity early (a key rotated server-side).
fn signed_storage(up: &Upstream, prefix: &'static str, revoke_after: Option<u64>) {
    up.route(move |r| {
        if !r.path.starts_with(prefix) {
            return None;
        }
        let (date, exp) = match (r.param("X-Amz-Date"), r.param("X-Goog-Date")) {
            (Some(d), _) => (d, r.param("X-Amz-Expires")),
            (None, Some(d)) => (d, r.param("X-Goog-Expires")),
            _ => return Some(Answer::status(403, "AccessDenied: no signature")),
        };
        let start = parse_amz_date(&date);
        let mut valid = exp.and_then(|e| e.parse::<u64>().ok()).unwrap_or(0);
        if let Some(rv) = revoke_after {
            valid = valid.min(rv);
        }
        if now_secs() >= start + valid {
            return Some(Answer::status(400, "ExpiredToken"));
        }
        if r.header("authorization").is_some() {
            // S3 refuses a forwarded token ("Unsupported Authorization Type").
            return Some(Answer::status(400, "Unsupported Authorization Type"));
        }
        None
    });
}

fn sign(url: &str, expires: u64, amz: bool) -> String {
    let d = amz_date(now_secs());
    if amz {
        format!("{url}?X-Amz-Date={d}&X-Amz-Expires={expires}&X-Amz-Signature=s3cr3t")
    } else {
        format!("{url}?X-Goog-Date={d}&X-Goog-Expires={expires}&X-Goog-Signature=s3cr3t")
    }
}

#[test]
fn a_zenodo_concept_id_is_said_to_be_one_and_bytes_follow_the_records_own_id() {
    let up = Upstream::start();
    let data = b"a,b\n1,2\n".to_vec();
    up.put("/zenodo.org/records/500/files/t.csv", data.clone(), true);
    let d = data.clone();
    up.route(move |r| match r.path.as_str() {
        // A concept id is no record (InvenioRDM answers 404 for it).
        "/zenodo.org/api/records/400" => Some(Answer::status(
            404,
            "{\"status\": 404, \"message\": \"The persistent identifier does not exist.\"}",
        )),
        // This record's answer names itself 500 (the API followed it there).
        "/zenodo.org/api/records/499" => Some(Answer::json(json!({"id": 500, "files": [
            {"key": "t.csv", "size": d.len(), "checksum": format!("md5:{}", md5_hex(&d))}]}))),
        _ => None,
    });
    let catalog = [
        dataset_entry(
            "concept",
            "",
            "[[dataset.source]]\ntype = \"zenodo\"\nrecord = 400\n",
        ),
        dataset_entry(
            "moved",
            "",
            "[[dataset.source]]\ntype = \"zenodo\"\nrecord = 499\n",
        ),
    ]
    .concat();
    let fx = fixture(&up, &catalog);
    let m = fx.mount(&[]);
    assert!(eio(ls(&m, "datasets/concept")));
    let log = m.log_text();
    assert!(log.contains("if it is a concept id"), "{log}");
    assert!(log.contains("https://zenodo.org/records/400"), "{log}");
    assert_eq!(read(&m, "datasets/moved/t.csv").unwrap(), data);
}

#[test]
fn zenodo_record_lists_reads_verifies_md5_and_waits_out_a_429() {
    let up = Upstream::start();
    let (zipped, files) = small_zip();
    let labels = b"id,label\n1,NORMAL\n".to_vec();
    let record = 7654321u64;
    up.put(
        "/zenodo.org/records/7654321/files/images.zip",
        zipped.clone(),
        true,
    );
    up.put(
        "/zenodo.org/records/7654321/files/labels.csv",
        labels.clone(),
        true,
    );
    let bad = b"this is not what the md5 says".to_vec();
    up.put(
        "/zenodo.org/records/7654321/files/broken.csv",
        bad.clone(),
        true,
    );
    let entries = json!([
        {"key": "images.zip", "size": zipped.len(), "checksum": format!("md5:{}", md5_hex(&zipped))},
        {"key": "labels.csv", "size": labels.len(), "checksum": format!("md5:{}", md5_hex(&labels))},
        {"key": "broken.csv", "size": bad.len(), "checksum": format!("md5:{}", md5_hex(b"other"))},
    ]);
    let first = std::sync::atomic::AtomicBool::new(true);
    up.route(move |r| {
        if r.path != format!("/zenodo.org/api/records/{record}") {
            return None;
        }
        // The first call is throttled, as Zenodo does past 60 requests a minute.
        if first.swap(false, std::sync::atomic::Ordering::SeqCst) {
            return Some(
                Answer::status(429, "Too Many Requests")
                    .with("Retry-After", "1")
                    .with("X-RateLimit-Limit", "60"),
            );
        }
        Some(Answer::json(json!({"id": record, "files": entries})))
    });
    let fx = fixture(
        &up,
        &dataset_entry(
            "zen",
            "",
            "[[dataset.source]]\ntype = \"zenodo\"\nrecord = 7654321\n",
        ),
    );
    let m = fx.mount(&[]);
    assert_eq!(
        ls(&m, "datasets/zen").unwrap(),
        ["broken.csv", "chest_xray", "labels.csv"]
    );
    for (name, data, _) in &files {
        assert_eq!(
            &read(&m, &format!("datasets/zen/{name}")).unwrap(),
            data,
            "{name}"
        );
    }
    assert_eq!(read(&m, "datasets/zen/labels.csv").unwrap(), labels);
    // Not the bytes the host published a checksum of: changed or damaged there, ESTALE.
    let e = read(&m, "datasets/zen/broken.csv").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ESTALE), "{e}");
    let log = up.log();
    let api: Vec<_> = log
        .iter()
        .filter(|l| l.path.contains("/api/records/"))
        .collect();
    assert_eq!(api.len(), 2, "one throttled call, one retry: {api:?}");
    assert!(
        api[1].at.duration_since(api[0].at) >= Duration::from_millis(950),
        "the retry waited for Retry-After"
    );
    assert!(log.iter().all(|l| l.user_agent.starts_with("medimg/")));
    assert!(
        log.iter()
            .filter(|l| l.path.contains("/files/"))
            .all(|l| l.range.is_some()),
        "bytes are read by Range"
    );
    // The damaged file was fetched twice (once more after dropping its blocks), never served.
    let broken = log
        .iter()
        .filter(|l| l.path.ends_with("broken.csv"))
        .count();
    assert!(broken >= 2, "{broken}");
    assert!(m.log_text().contains("checksum"), "{}", m.log_text());
}

/// Kaggle's download endpoint: needs the token, answers 302 to a signed GCS URL.
fn kaggle(up: &Upstream, zipped: Vec<u8>) {
    up.put(
        "/storage.googleapis.com/kaggle-data-sets/42/chest.zip",
        zipped,
        true,
    );
    signed_storage(up, "/storage.googleapis.com/", Some(3));
    up.route(|r| {
        let dl = r.path.strip_prefix("/www.kaggle.com/api/v1/")?;
        match r.header("authorization") {
            Some("Bearer good-token") => {}
            Some(_) => return Some(Answer::status(401, "Unauthenticated")),
            None => return Some(Answer::status(401, "Unauthenticated")),
        }
        if dl == "datasets/view/owner/chest" {
            return Some(Answer::json(
                json!({"ref": "owner/chest", "currentVersionNumber": 2}),
            ));
        }
        if dl.starts_with("competitions/data/download-all/") {
            return Some(Answer::status(
                403,
                "You must accept this competition's rules before you'll be able to download files.",
            ));
        }
        if dl == "datasets/download/owner/chest"
            && r.param("datasetVersionNumber").as_deref() == Some("2")
        {
            let to = sign(
                "https://storage.googleapis.com/kaggle-data-sets/42/chest.zip",
                35,
                false,
            );
            return Some(Answer::redirect(302, &to));
        }
        Some(Answer::status(404, "Not Found"))
    });
}

#[test]
fn kaggle_needs_its_token_keeps_it_off_storage_and_re_resolves_expired_urls() {
    let up = Upstream::start();
    let (zipped, files) = bigger_zip();
    kaggle(&up, zipped);
    let catalog = format!(
        "{}{}{}",
        dataset_entry(
            "kag",
            "",
            "[[dataset.source]]\ntype = \"kaggle\"\ndataset = \"owner/chest\"\nversion = 2\n"
        ),
        dataset_entry(
            "latest",
            "",
            "[[dataset.source]]\ntype = \"kaggle\"\ndataset = \"owner/chest\"\nversion = \"latest\"\n"
        ),
        dataset_entry(
            "comp",
            "access = \"account\"\nterms = \"https://www.kaggle.com/competitions/rsna/rules\"",
            "[[dataset.source]]\ntype = \"kaggle-competition\"\ncompetition = \"rsna\"\n"
        )
    );
    let fx = fixture(&up, &catalog);

    // Without a token: visible, EACCES, and not one request.
    {
        let m = fx.mount(&[]);
        assert_eq!(ls(&m, "datasets").unwrap(), ["comp", "kag", "latest"]);
        assert!(eacces(ls(&m, "datasets/kag")));
        let about = String::from_utf8(read(&m, "about/kag.md").unwrap()).unwrap();
        assert!(
            about.contains("needs credentials") && about.contains("KAGGLE_API_TOKEN"),
            "{about}"
        );
        assert_eq!(up.count(), 0);
    }
    // A wrong token: the host's 401 is EACCES too.
    {
        let m = fx.mount_env(&[], &[("KAGGLE_API_TOKEN", "stale")]);
        assert!(eacces(ls(&m, "datasets/kag")));
        assert!(
            m.log_text().contains("wrong, expired, or lack access"),
            "{}",
            m.log_text()
        );
    }
    let m = fx.mount_env(
        &["--block-size", "64KiB"],
        &[("KAGGLE_API_TOKEN", "good-token")],
    );
    let (name, data, _) = &files[0];
    assert_eq!(&read(&m, &format!("datasets/kag/{name}")).unwrap(), data);
    let downloads = |up: &Upstream| {
        up.log()
            .iter()
            .filter(|l| l.path.contains("/datasets/download/") && l.status == 302)
            .count()
    };
    let resolved = downloads(&up);
    // While the signed URL is good it is reused: no new call to Kaggle.
    let (name, data, _) = &files[1];
    assert_eq!(&read(&m, &format!("datasets/kag/{name}")).unwrap(), data);
    assert_eq!(downloads(&up), resolved);
    // Storage revokes it after 3 s (400); medimg asks Kaggle for a new one.
    std::thread::sleep(Duration::from_millis(3200));
    for (name, data, _) in &files[4..9] {
        assert_eq!(&read(&m, &format!("datasets/kag/{name}")).unwrap(), data);
    }
    assert_eq!(downloads(&up), resolved + 1);

    // `version = "latest"` asks Kaggle which version is current, and reads that one.
    let (name, data, _) = &files[9];
    assert_eq!(&read(&m, &format!("datasets/latest/{name}")).unwrap(), data);
    assert!(
        up.log()
            .iter()
            .any(|l| l.path.ends_with("/datasets/view/owner/chest"))
    );

    // The competition whose rules were not accepted: EACCES with the rules page.
    assert!(eacces(ls(&m, "datasets/comp")));
    assert!(
        m.log_text()
            .contains("https://www.kaggle.com/competitions/rsna/rules")
    );

    for l in up.log() {
        if l.path.starts_with("/www.kaggle.com/") && l.status != 401 {
            assert_eq!(
                l.authorization.as_deref(),
                Some("Bearer good-token"),
                "{l:?}"
            );
        } else if !l.path.starts_with("/www.kaggle.com/") {
            assert_eq!(l.authorization, None, "a credential left its host: {l:?}");
        }
    }
    assert!(!m.log_text().contains("good-token") && !m.log_text().contains("s3cr3t"));
}

#[test]
fn figshare_mendeley_and_github_list_their_files_with_checksums() {
    let up = Upstream::start();
    let (zipped, files) = small_zip();
    let readme = b"figshare readme\n".to_vec();
    let csv = b"a,b\n".to_vec();
    let tool = b"#!/bin/sh\necho hi\n".to_vec();
    // figshare: article version JSON; the API's file download redirects to signed S3.
    up.put(
        "/s3-eu-west-1.amazonaws.com/pfigshare/1001",
        zipped.clone(),
        true,
    );
    up.put(
        "/s3-eu-west-1.amazonaws.com/pfigshare/1002",
        readme.clone(),
        true,
    );
    signed_storage(&up, "/s3-eu-west-1.amazonaws.com/", None);
    let (z1, r1) = (zipped.clone(), readme.clone());
    up.route(move |r| {
        if r.path == "/api.figshare.com/v2/articles/555/versions/3" {
            return Some(Answer::json(json!({"id": 555, "version": 3, "files": [
                {"id": 1001, "name": "images.zip", "size": z1.len(), "computed_md5": md5_hex(&z1), "is_link_only": false},
                {"id": 1002, "name": "README.txt", "size": r1.len(), "computed_md5": md5_hex(&r1), "is_link_only": false},
                {"id": 1003, "name": "elsewhere", "size": 0, "computed_md5": "", "is_link_only": true},
            ]})));
        }
        let id = r.path.strip_prefix("/api.figshare.com/v2/file/download/")?;
        Some(Answer::redirect(
            302,
            &sign(&format!("https://s3-eu-west-1.amazonaws.com/pfigshare/{id}"), 300, true),
        ))
    });
    // Mendeley: folders, then files per folder, sha256.
    up.put(
        "/data.mendeley.com/public-files/datasets/abc/files/u1/file_downloaded",
        csv.clone(),
        true,
    );
    let c1 = csv.clone();
    up.route(move |r| {
        // The public API answers its versioned media type, which public clients ask for.
        if r.path.starts_with("/data.mendeley.com/public-api/")
            && r.header("accept") != Some("application/vnd.mendeley-public-dataset.1+json")
        {
            return Some(Answer::status(406, "{\"message\":\"Not Acceptable\"}"));
        }
        match (r.path.as_str(), r.param("folder_id").as_deref()) {
        ("/data.mendeley.com/public-api/datasets/abc/folders/4", _) => Some(Answer::json(json!([
            {"id": "f-top", "name": "CT", "parent_id": null},
            {"id": "f-sub", "name": "COVID", "parent_id": "f-top"},
        ]))),
        ("/data.mendeley.com/public-api/datasets/abc/files", Some("f-sub")) => Some(Answer::json(json!([
            {"filename": "scans.csv", "size": c1.len(), "content_details": {
                "download_url": "https://data.mendeley.com/public-files/datasets/abc/files/u1/file_downloaded",
                "sha256_hash": sha256_hex(&c1)}}
        ]))),
        ("/data.mendeley.com/public-api/datasets/abc/files", Some(_)) => Some(Answer::json(json!([]))),
        _ => None,
        }
    });
    // GitHub: a release (assets with sha256 digests) and a pinned tree.
    up.put(
        "/objects.githubusercontent.com/assets/77",
        tool.clone(),
        true,
    );
    up.put(
        "/raw.githubusercontent.com/lab/data/0123456789abcdef0123456789abcdef01234567/masks/m1.png",
        files[0].1.clone(),
        true,
    );
    // A volume kept in Git LFS: the tree and raw.githubusercontent.com have its pointer, the
    // media host its bytes.
    let volume: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let pointer = format!(
        "version https://git-lfs.github.com/spec/v1\noid sha256:{}\nsize {}\n",
        sha256_hex(&volume),
        volume.len()
    );
    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
    up.put(
        &format!("/raw.githubusercontent.com/lab/data/{COMMIT}/.gitattributes"),
        b"*.nii.gz filter=lfs diff=lfs merge=lfs -text\n".to_vec(),
        true,
    );
    up.put(
        &format!("/raw.githubusercontent.com/lab/data/{COMMIT}/masks/vol.nii.gz"),
        pointer.clone().into_bytes(),
        true,
    );
    up.put(
        &format!("/media.githubusercontent.com/media/lab/data/{COMMIT}/masks/vol.nii.gz"),
        volume.clone(),
        true,
    );
    let pointer_len = pointer.len();
    signed_storage(&up, "/objects.githubusercontent.com/", None);
    let (t1, m1) = (tool.clone(), files[0].1.clone());
    up.route(move |r| match r.path.as_str() {
        "/api.github.com/repos/lab/data/releases/tags/v1.0" => Some(Answer::json(json!({"tag_name": "v1.0", "assets": [
            {"name": "tool.sh", "size": t1.len(), "digest": format!("sha256:{}", sha256_hex(&t1)),
             "browser_download_url": "https://github.com/lab/data/releases/download/v1.0/tool.sh"}]}))),
        "/github.com/lab/data/releases/download/v1.0/tool.sh" => Some(Answer::redirect(
            302,
            &sign("https://objects.githubusercontent.com/assets/77", 300, true),
        )),
        "/api.github.com/repos/lab/data/git/trees/0123456789abcdef0123456789abcdef01234567" => Some(Answer::json(json!({
            "sha": "0123456789abcdef0123456789abcdef01234567", "truncated": false, "tree": [
                {"path": ".gitattributes", "type": "blob", "size": 46},
                {"path": "README.md", "type": "blob", "size": 3},
                {"path": "masks", "type": "tree"},
                {"path": "masks/m1.png", "type": "blob", "size": m1.len()},
                {"path": "masks/vol.nii.gz", "type": "blob", "size": pointer_len}]}))),
        _ => None,
    });
    let catalog = [
        dataset_entry("fig", "", "[[dataset.source]]\ntype = \"figshare\"\narticle = 555\nversion = 3\n"),
        dataset_entry("men", "", "[[dataset.source]]\ntype = \"mendeley\"\ndataset = \"abc\"\nversion = 4\n"),
        dataset_entry(
            "gh",
            "",
            "[[dataset.source]]\ntype = \"github-release\"\nrepo = \"lab/data\"\ntag = \"v1.0\"\ninto = \"bin\"\n\
             [[dataset.source]]\ntype = \"github-tree\"\nrepo = \"lab/data\"\n\
             commit = \"0123456789abcdef0123456789abcdef01234567\"\npath = \"masks\"\n",
        ),
    ]
    .concat();
    let fx = fixture(&up, &catalog);
    let m = fx.mount(&[]);
    assert_eq!(
        ls(&m, "datasets/fig").unwrap(),
        ["README.txt", "chest_xray"]
    );
    assert_eq!(read(&m, "datasets/fig/README.txt").unwrap(), readme);
    let (name, data, _) = &files[3];
    assert_eq!(&read(&m, &format!("datasets/fig/{name}")).unwrap(), data);
    assert_eq!(read(&m, "datasets/men/CT/COVID/scans.csv").unwrap(), csv);
    assert_eq!(
        ls(&m, "datasets/gh").unwrap(),
        ["bin", "m1.png", "vol.nii.gz"]
    );
    assert_eq!(read(&m, "datasets/gh/bin/tool.sh").unwrap(), tool);
    assert_eq!(read(&m, "datasets/gh/m1.png").unwrap(), files[0].1);
    // The LFS object, never its pointer: its size, its bytes.
    let meta = std::fs::metadata(m.mnt.join("datasets/gh/vol.nii.gz")).unwrap();
    assert_eq!(meta.len(), volume.len() as u64);
    assert_eq!(read(&m, "datasets/gh/vol.nii.gz").unwrap(), volume);
    assert!(
        !up.log()
            .iter()
            .any(|l| l.path.ends_with("/masks/vol.nii.gz")
                && l.path.starts_with("/raw.githubusercontent.com/")),
        "the pointer was fetched"
    );
    assert!(
        m.log_text().contains("only a link"),
        "link-only files are skipped with a warning"
    );
}

#[test]
fn physionet_sends_basic_auth_to_physionet_only_and_says_what_is_missing() {
    let up = Upstream::start();
    let ecg = vec![7u8; 3000];
    let hea = b"100 2 360 650000\n".to_vec();
    let sums = format!(
        "{}  records/100.dat\n{}  records/100.hea\n",
        sha256_hex(&ecg),
        sha256_hex(&hea)
    );
    up.put(
        "/physionet.org/files/ptb/1.0.0/records/100.dat",
        ecg.clone(),
        true,
    );
    up.put(
        "/physionet.org/files/ptb/1.0.0/records/100.hea",
        hea.clone(),
        true,
    );
    up.put(
        "/physionet.org/files/ptb/1.0.0/SHA256SUMS.txt",
        sums.into_bytes(),
        true,
    );
    // "user:pass" and "user:wrong" in Basic form.
    let good = "Basic dXNlcjpwYXNz";
    up.route(move |r| {
        if !r.path.starts_with("/physionet.org/") {
            return None;
        }
        match r.header("authorization") {
            Some(a) if a == good => None,
            Some(_) => Some(Answer::status(403, "Forbidden")),
            None => Some(
                Answer::status(401, "Unauthorized")
                    .with("WWW-Authenticate", "Basic realm=\"PhysioNet\""),
            ),
        }
    });
    let fx = fixture(
        &up,
        &dataset_entry(
            "ptb",
            "access = \"credentialed\"\nterms = \"https://physionet.org/sign-dua/ptb/1.0.0/\"",
            "[[dataset.source]]\ntype = \"physionet\"\nproject = \"ptb\"\nversion = \"1.0.0\"\n",
        ),
    );
    {
        let m = fx.mount(&[]);
        assert!(eacces(ls(&m, "datasets/ptb")));
        let about = String::from_utf8(read(&m, "about/ptb.md").unwrap()).unwrap();
        assert!(about.contains("PHYSIONET_USERNAME"), "{about}");
        assert_eq!(up.count(), 0, "nothing is asked without credentials");
    }
    {
        let m = fx.mount_env(
            &[],
            &[
                ("PHYSIONET_USERNAME", "user"),
                ("PHYSIONET_PASSWORD", "wrong"),
            ],
        );
        assert!(eacces(ls(&m, "datasets/ptb")));
        assert!(
            m.log_text()
                .contains("https://physionet.org/sign-dua/ptb/1.0.0/"),
            "{}",
            m.log_text()
        );
    }
    let m = fx.mount_env(
        &[],
        &[
            ("PHYSIONET_USERNAME", "user"),
            ("PHYSIONET_PASSWORD", "pass"),
        ],
    );
    assert_eq!(
        ls(&m, "datasets/ptb/records").unwrap(),
        ["100.dat", "100.hea"]
    );
    assert_eq!(
        std::fs::metadata(m.mnt.join("datasets/ptb/records/100.dat"))
            .unwrap()
            .len(),
        3000
    );
    assert_eq!(read(&m, "datasets/ptb/records/100.dat").unwrap(), ecg);
    assert_eq!(read(&m, "datasets/ptb/records/100.hea").unwrap(), hea);
    assert!(!m.log_text().contains("pass\""));
}

#[test]
fn s3_and_idc_list_pages_of_keys_and_pin_etags() {
    let up = Upstream::start();
    let dcm: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 1000 + i as usize]).collect();
    s3_bucket(
        &up,
        "idc-open-data.s3.amazonaws.com",
        dcm.iter()
            .enumerate()
            .map(|(i, d)| (format!("series-1/inst-{i}.dcm"), d.clone()))
            .collect(),
    );
    let fx = fixture(
        &up,
        &dataset_entry(
            "idc",
            "",
            "[[dataset.source]]\ntype = \"idc\"\nseries = [\"series-1\"]\n",
        ),
    );
    let m = fx.mount(&[]);
    assert_eq!(ls(&m, "datasets/idc/series-1").unwrap().len(), 5);
    for (i, d) in dcm.iter().enumerate() {
        assert_eq!(
            &read(&m, &format!("datasets/idc/series-1/inst-{i}.dcm")).unwrap(),
            d
        );
    }
    let log = up.log();
    assert_eq!(
        log.iter()
            .filter(|l| l.query.contains("list-type=2"))
            .count(),
        3,
        "5 keys, 2 a page"
    );
    assert_eq!(log.len(), 3 + 5, "one request per instance, no probes");
}

#[test]
fn synapse_lists_folders_with_its_token_and_refuses_unmet_access_requirements() {
    let up = Upstream::start();
    let a = vec![1u8; 500];
    let b = vec![2u8; 700];
    up.put("/proddata.sagebase.org/a.nii.gz", a.clone(), true);
    up.put("/proddata.sagebase.org/b.nii.gz", b.clone(), true);
    signed_storage(&up, "/proddata.sagebase.org/", None);
    let (a1, b1) = (a.clone(), b.clone());
    up.route(move |r| {
        let rest = r.path.strip_prefix("/repo-prod.prod.sagebase.org/repo/v1/")?;
        if r.header("authorization") != Some("Bearer pat") {
            return Some(Answer::status(401, "{\"reason\":\"no token\"}"));
        }
        // As Synapse answers: the preview it made is an S3FileHandle too, marked isPreview
        // (listed first here, so that taking the first non-"Preview" type would take it).
        let file = |id: &str, d: &Vec<u8>| json!({"list": [
            {"id": "90", "concreteType": "org.sagebionetworks.repo.model.file.S3FileHandle",
             "isPreview": true, "contentSize": 5, "contentMd5": md5_hex(b"thumb"),
             "fileName": "preview.png", "contentType": "image/png"},
            {"id": "91", "concreteType": "org.sagebionetworks.repo.model.file.S3FileHandle",
             "isPreview": false, "previewId": "90",
             "contentSize": d.len(), "contentMd5": md5_hex(d), "fileName": id}]});
        Some(match (r.method.as_str(), rest) {
            ("GET", "entity/syn100") => Answer::json(json!({"id": "syn100", "name": "BraTS", "concreteType": "org.sagebionetworks.repo.model.Folder"})),
            ("POST", "entity/children") => {
                let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
                match body["parentId"].as_str() {
                    Some("syn100") => Answer::json(json!({"page": [
                        {"id": "syn101", "name": "a.nii.gz", "type": "org.sagebionetworks.repo.model.FileEntity", "versionNumber": 1},
                        {"id": "syn102", "name": "train", "type": "org.sagebionetworks.repo.model.Folder", "versionNumber": 1}]})),
                    Some("syn102") => Answer::json(json!({"page": [
                        {"id": "syn103", "name": "b.nii.gz", "type": "org.sagebionetworks.repo.model.FileEntity", "versionNumber": 2}]})),
                    _ => Answer::status(404, "{}"),
                }
            }
            ("GET", "entity/syn101/version/1/filehandles") => Answer::json(file("a", &a1)),
            ("GET", "entity/syn103/version/2/filehandles") => Answer::json(file("b", &b1)),
            ("GET", "entity/syn101/version/1/file") => Answer::redirect(307, &sign("https://proddata.sagebase.org/a.nii.gz", 60, true)),
            ("GET", "entity/syn103/version/2/file") => Answer::redirect(307, &sign("https://proddata.sagebase.org/b.nii.gz", 60, true)),
            ("GET", "entity/syn300") => Answer::json(json!({"id": "syn300", "name": "c.nii.gz",
                "concreteType": "org.sagebionetworks.repo.model.FileEntity", "versionNumber": 3,
                "dataFileHandleId": "91"})),
            ("GET", "entity/syn300/version/3/filehandles") => Answer::json(file("c", &a1)),
            ("GET", "entity/syn300/version/3/file") => Answer::redirect(307, &sign("https://proddata.sagebase.org/a.nii.gz", 60, true)),
            ("GET", "entity/syn200") => Answer::status(403, "{\"reason\":\"You do not have DOWNLOAD permission for the requested entity\"}"),
            _ => Answer::status(404, "{}"),
        })
    });
    let catalog = [
        dataset_entry(
            "brats",
            "access = \"account\"",
            "[[dataset.source]]\ntype = \"synapse\"\nid = \"syn100\"\n",
        ),
        dataset_entry(
            "gated",
            "access = \"account\"\nterms = \"https://www.synapse.org/#!Synapse:syn200\"",
            "[[dataset.source]]\ntype = \"synapse\"\nid = \"syn200\"\n",
        ),
        dataset_entry(
            "single",
            "access = \"account\"",
            "[[dataset.source]]\ntype = \"synapse\"\nid = \"syn300\"\n",
        ),
    ]
    .concat();
    let fx = fixture(&up, &catalog);
    let m = fx.mount_env(&[], &[("SYNAPSE_AUTH_TOKEN", "pat")]);
    assert_eq!(ls(&m, "datasets/brats").unwrap(), ["a.nii.gz", "train"]);
    assert_eq!(read(&m, "datasets/brats/a.nii.gz").unwrap(), a);
    assert_eq!(read(&m, "datasets/brats/train/b.nii.gz").unwrap(), b);
    // A single file entity: the handle its dataFileHandleId names, not the preview.
    assert_eq!(ls(&m, "datasets/single").unwrap(), ["c.nii.gz"]);
    assert_eq!(read(&m, "datasets/single/c.nii.gz").unwrap(), a);
    assert!(eacces(ls(&m, "datasets/gated")));
    assert!(
        m.log_text()
            .contains("https://www.synapse.org/#!Synapse:syn200")
    );
    assert!(
        up.log()
            .iter()
            .all(|l| l.path.starts_with("/repo-prod") || l.authorization.is_none())
    );
}

#[test]
fn google_drive_uses_the_api_key_and_never_serves_an_html_interstitial() {
    let up = Upstream::start();
    let img = png(20, 20, 3);
    up.put(
        "/www.googleapis.com/drive/v3/files/file-1",
        img.clone(),
        true,
    );
    let i1 = img.clone();
    up.route(move |r| {
        let rest = r.path.strip_prefix("/www.googleapis.com/drive/v3/files")?;
        if r.param("key").as_deref() != Some("AIzaKEY") {
            return Some(Answer::status(403, "{\"error\":{\"message\":\"The request is missing a valid API key.\"}}"));
        }
        let folder = "application/vnd.google-apps.folder";
        Some(match (rest, r.param("alt").as_deref()) {
            ("/root-folder", None) => Answer::json(json!({"id": "root-folder", "name": "data", "mimeType": folder})),
            ("", None) => {
                let q = r.param("q").unwrap_or_default();
                if q.contains("'root-folder' in parents") {
                    Answer::json(json!({"files": [
                        {"id": "file-1", "name": "x.png", "mimeType": "image/png", "size": i1.len().to_string(), "md5Checksum": md5_hex(&i1)},
                        {"id": "file-2", "name": "big.zip", "mimeType": "application/zip", "size": "100"},
                        {"id": "doc-1", "name": "notes", "mimeType": "application/vnd.google-apps.document"}]}))
                } else {
                    Answer::json(json!({"files": []}))
                }
            }
            ("/file-1", Some("media")) => return Some(Answer::File("/www.googleapis.com/drive/v3/files/file-1".into())),
            // Drive's quota page: HTML with 200 where the bytes should be.
            ("/file-2", Some("media")) => Answer::Raw {
                status: 200,
                headers: vec![("Content-Type".into(), "text/html; charset=utf-8".into())],
                body: b"<html>Google Drive - Quota exceeded</html>".to_vec(),
            },
            _ => Answer::status(404, "{}"),
        })
    });
    let fx = fixture(
        &up,
        &dataset_entry(
            "drive",
            "",
            "[[dataset.source]]\ntype = \"gdrive\"\nid = \"root-folder\"\nextract = false\n",
        ),
    );
    {
        let m = fx.mount(&[]);
        assert!(eacces(ls(&m, "datasets/drive")));
        let about = String::from_utf8(read(&m, "about/drive.md").unwrap()).unwrap();
        assert!(about.contains("GOOGLE_API_KEY"), "{about}");
    }
    let m = fx.mount_env(&[], &[("GOOGLE_API_KEY", "AIzaKEY")]);
    assert_eq!(ls(&m, "datasets/drive").unwrap(), ["big.zip", "x.png"]);
    assert_eq!(read(&m, "datasets/drive/x.png").unwrap(), img);
    assert!(eio(read(&m, "datasets/drive/big.zip")));
    assert!(
        eio(read(&m, "datasets/drive/big.zip")),
        "still refused: nothing was cached"
    );
    let log = m.log_text();
    assert!(log.contains("HTML page"), "{log}");
    assert!(!log.contains("AIzaKEY"), "the key is redacted from the log");
}

#[test]
fn huggingface_osf_and_dataverse_list_paged_nested_and_original_files() {
    let up = Upstream::start();
    let a = png(16, 16, 1);
    let b = png(16, 16, 2);
    let tab_orig = b"x,y\n1,2\n".to_vec();
    // Hugging Face: tree pages linked by `Link: rel="next"`, resolve redirects to a CDN.
    up.put("/cdn-lfs.hf.co/repos/a", a.clone(), true);
    up.put("/cdn-lfs.hf.co/repos/b", b.clone(), true);
    let (a1, b1) = (a.clone(), b.clone());
    up.route(move |r| {
        let rest = r.path.strip_prefix("/huggingface.co/")?;
        Some(match rest {
            "api/datasets/org/xr/tree/abc123" if r.param("cursor").is_none() => Answer::json(json!([
                {"type": "directory", "path": "train", "oid": "1", "size": 0},
                {"type": "file", "path": "train/a.png", "size": a1.len(), "lfs": {"oid": sha256_hex(&a1), "size": a1.len()}}]))
                .with("Link", "<https://huggingface.co/api/datasets/org/xr/tree/abc123?recursive=true&cursor=2>; rel=\"next\""),
            "api/datasets/org/xr/tree/abc123" => Answer::json(json!([
                {"type": "file", "path": "train/b.png", "size": b1.len(), "lfs": {"oid": sha256_hex(&b1), "size": b1.len()}}])),
            "datasets/org/xr/resolve/abc123/train/a.png" => Answer::redirect(302, "https://cdn-lfs.hf.co/repos/a"),
            "datasets/org/xr/resolve/abc123/train/b.png" => Answer::redirect(302, "https://cdn-lfs.hf.co/repos/b"),
            _ => Answer::status(404, "{}"),
        })
    });
    // OSF: JSON:API with a folder.
    up.put("/files.osf.io/v1/a1", a.clone(), true);
    let a2 = a.clone();
    up.route(move |r| {
        Some(match r.path.as_str() {
            "/api.osf.io/v2/nodes/x7k2q/files/osfstorage/" => Answer::json(json!({"data": [
                {"attributes": {"kind": "folder", "name": "imgs"},
                 "relationships": {"files": {"links": {"related": {"href": "https://api.osf.io/v2/nodes/x7k2q/files/osfstorage/f1/"}}}}}],
                "links": {"next": null}})),
            "/api.osf.io/v2/nodes/x7k2q/files/osfstorage/f1/" => Answer::json(json!({"data": [
                {"attributes": {"kind": "file", "name": "a.png", "size": a2.len(), "extra": {"hashes": {"sha256": sha256_hex(&a2)}}},
                 "links": {"download": "https://osf.io/download/a1/"}}], "links": {"next": null}})),
            "/osf.io/download/a1/" => Answer::redirect(302, "https://files.osf.io/v1/a1"),
            _ => return None,
        })
    });
    // Dataverse: a file in a folder, and an ingested table served in its original form.
    up.put(
        "/dataverse.harvard.edu/api/access/datafile/11",
        b.clone(),
        true,
    );
    up.put(
        "/dataverse.harvard.edu/api/access/datafile/12",
        tab_orig.clone(),
        true,
    );
    let (b2, t2) = (b.clone(), tab_orig.clone());
    up.route(move |r| {
        (r.path == "/dataverse.harvard.edu/api/datasets/:persistentId/versions/1.0/files"
            && r.param("persistentId").as_deref() == Some("doi:10.7910/DVN/TEST"))
        .then(|| Answer::json(json!({"status": "OK", "data": [
            {"label": "b.png", "directoryLabel": "images", "restricted": false,
             "dataFile": {"id": 11, "filesize": b2.len(), "md5": md5_hex(&b2)}},
            {"label": "meta.tab", "restricted": false,
             "dataFile": {"id": 12, "filesize": 999, "originalFileName": "meta.csv", "originalFileSize": t2.len()}}]})))
    });
    let catalog = [
        dataset_entry("hf", "", "[[dataset.source]]\ntype = \"huggingface\"\nrepo = \"org/xr\"\nrevision = \"abc123\"\n"),
        dataset_entry("osf", "", "[[dataset.source]]\ntype = \"osf\"\nproject = \"x7k2q\"\n"),
        dataset_entry(
            "dv",
            "",
            "[[dataset.source]]\ntype = \"dataverse\"\nserver = \"dataverse.harvard.edu\"\ndoi = \"doi:10.7910/DVN/TEST\"\nversion = \"1.0\"\n",
        ),
    ]
    .concat();
    let fx = fixture(&up, &catalog);
    let m = fx.mount(&[]);
    assert_eq!(ls(&m, "datasets/hf/train").unwrap(), ["a.png", "b.png"]);
    assert_eq!(read(&m, "datasets/hf/train/b.png").unwrap(), b);
    assert_eq!(read(&m, "datasets/osf/imgs/a.png").unwrap(), a);
    assert_eq!(ls(&m, "datasets/dv").unwrap(), ["images", "meta.csv"]);
    assert_eq!(read(&m, "datasets/dv/images/b.png").unwrap(), b);
    assert_eq!(read(&m, "datasets/dv/meta.csv").unwrap(), tab_orig);
    let dl = up
        .log()
        .into_iter()
        .find(|l| l.path.ends_with("/datafile/12"))
        .unwrap();
    assert_eq!(dl.query, "format=original");
}

/// figshare's article version answer shows the first 10 files only; the paged
/// `/articles/{id}/files` lists every file of the latest version.
#[test]
fn figshare_lists_a_version_past_ten_files_and_refuses_an_older_one_it_cannot() {
    let up = Upstream::start();
    let files: Vec<(u64, String, Vec<u8>)> = (0..130u64)
        .map(|i| (5000 + i, format!("img_{i:03}.png"), png(4, 4, i as u32)))
        .collect();
    for (id, _, data) in &files {
        up.put(
            &format!("/s3-eu-west-1.amazonaws.com/pfigshare/{id}"),
            data.clone(),
            true,
        );
    }
    signed_storage(&up, "/s3-eu-west-1.amazonaws.com/", None);
    let entries: Vec<serde_json::Value> = files
        .iter()
        .map(|(id, name, data)| {
            json!({"id": id, "name": name, "size": data.len(),
            "computed_md5": md5_hex(data), "is_link_only": false})
        })
        .collect();
    let e1 = entries.clone();
    up.route(move |r| {
        let rest = r.path.strip_prefix("/api.figshare.com/v2/")?;
        Some(match rest {
            // Version 2 is the latest of article 777; article 778's latest is 3.
            "articles/777/versions/2" => {
                Answer::json(json!({"id": 777, "version": 2, "files": e1[..10]}))
            }
            "articles/777" => Answer::json(json!({"id": 777, "version": 2, "files": e1[..10]})),
            "articles/777/files" => {
                let page: usize = r.param("page")?.parse().ok()?;
                let size: usize = r.param("page_size")?.parse().ok()?;
                let from = ((page - 1) * size).min(e1.len());
                Answer::json(json!(e1[from..(from + size).min(e1.len())]))
            }
            "articles/778/versions/1" => {
                Answer::json(json!({"id": 778, "version": 1, "files": e1[..10]}))
            }
            "articles/778" => Answer::json(json!({"id": 778, "version": 3, "files": e1[..10]})),
            _ => {
                let id = rest.strip_prefix("file/download/")?;
                Answer::redirect(
                    302,
                    &sign(
                        &format!("https://s3-eu-west-1.amazonaws.com/pfigshare/{id}"),
                        300,
                        true,
                    ),
                )
            }
        })
    });
    let catalog = [
        dataset_entry(
            "many",
            "",
            "[[dataset.source]]\ntype = \"figshare\"\narticle = 777\nversion = 2\n",
        ),
        dataset_entry(
            "old",
            "",
            "[[dataset.source]]\ntype = \"figshare\"\narticle = 778\nversion = 1\n",
        ),
    ]
    .concat();
    let fx = fixture(&up, &catalog);
    let m = fx.mount(&[]);
    let names = ls(&m, "datasets/many").unwrap();
    assert_eq!(names.len(), 130);
    for (_, name, data) in [&files[0], &files[64], &files[129]] {
        assert_eq!(&read(&m, &format!("datasets/many/{name}")).unwrap(), data);
    }
    let pages = up
        .log()
        .iter()
        .filter(|l| l.path.ends_with("/articles/777/files"))
        .count();
    assert_eq!(pages, 2, "130 files at 100 a page");
    assert!(eio(ls(&m, "datasets/old")));
    assert!(
        m.log_text()
            .contains("version 1 cannot be listed whole; pin `version = 3`"),
        "{}",
        m.log_text()
    );
}

/// Dataverse 6.10+ with a guestbook on the dataset (HAM10000's case): a plain GET of a file is
/// 400 "without the required Guestbook response"; a POST of `{"guestbookResponse": ...}` to the
/// same URL records it and answers `data.signedUrl`, good for one minute (Dataverse's
/// `Access.java`, and the Data Access API guide).
#[test]
fn a_dataverse_guestbook_is_answered_from_the_config_and_only_when_asked() {
    let up = Upstream::start();
    let (zipped, files) = small_zip();
    let csv = b"image_id,dx\nimg_000,nv\n".to_vec();
    up.put("/store/21", zipped.clone(), true);
    up.put("/store/22", csv.clone(), true);
    let issued: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let bodies: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let (z1, c1, issued1, bodies1) = (zipped.clone(), csv.clone(), issued.clone(), bodies.clone());
    up.route(move |r| {
        if r.path == "/dataverse.harvard.edu/api/datasets/:persistentId/versions/4.0/files" {
            return Some(Answer::json(json!({"status": "OK", "data": [
                {"label": "images.zip", "restricted": false,
                 "dataFile": {"id": 21, "filesize": z1.len(), "md5": md5_hex(&z1)}},
                {"label": "meta.csv", "restricted": false,
                 "dataFile": {"id": 22, "filesize": c1.len(), "md5": md5_hex(&c1)}}]})));
        }
        let id = r.path.strip_prefix("/dataverse.harvard.edu/api/access/datafile/")?;
        if r.method == "POST" {
            let v: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
            bodies1.lock().unwrap().push(v.clone());
            let g = &v["guestbookResponse"];
            if g["name"].as_str().is_none() || g["email"].as_str().is_none() {
                return Some(Answer::Raw { status: 400, headers: vec![("Content-Type".into(), "application/json".into())],
                    body: json!({"status": "ERROR", "message": "Error processing guestbook response: email is required"}).to_string().into_bytes() });
            }
            let token = format!("{:0128x}", issued1.lock().unwrap().len() + 1);
            issued1.lock().unwrap().push((token.clone(), Instant::now()));
            return Some(Answer::json(json!({"status": "OK", "data": {"signedUrl": format!(
                "https://dataverse.harvard.edu/api/access/datafile/{id}?gbrecs=true&gbrids=9&until=2026-12-07T14:00:00.000&user=guest&method=GET&token={token}")}})));
        }
        match r.param("token") {
            Some(t) => {
                let fresh = issued1.lock().unwrap().iter().any(|(k, at)| *k == t && at.elapsed() < Duration::from_secs(60));
                Some(if fresh { Answer::File(format!("/store/{id}")) } else { Answer::status(401, "{\"status\":\"ERROR\",\"message\":\"Bad signed URL\"}") })
            }
            None => Some(Answer::Raw { status: 400, headers: vec![("Content-Type".into(), "application/json".into())],
                body: json!({"status": "ERROR", "code": 400, "message": "Bad Request. The API request cannot be completed with the parameters supplied. Details: You may not download this file without the required Guestbook response for guestbookID 7. - please check your code for typos, or consult our API guide at http://guides.dataverse.org.",
                    "requestUrl": format!("https://dataverse.harvard.edu/api/v1/access/datafile/{id}"), "requestMethod": "GET"}).to_string().into_bytes() }),
        }
    });
    let catalog = dataset_entry(
        "gb",
        "",
        "[[dataset.source]]\ntype = \"dataverse\"\nserver = \"dataverse.harvard.edu\"\ndoi = \"doi:10.7910/DVN/DBW86T\"\nversion = \"4.0\"\n",
    );
    // Without [guestbook]: refused, with what to add, and nothing POSTed.
    {
        let fx = fixture(&up, &catalog);
        let m = fx.mount(&[]);
        assert!(eacces(read(&m, "datasets/gb/meta.csv")));
        let about = String::from_utf8(read(&m, "about/gb.md").unwrap()).unwrap();
        assert!(
            about.contains("required Guestbook response") && about.contains("[guestbook]"),
            "{about}"
        );
        assert!(bodies.lock().unwrap().is_empty());
    }
    // With it: every byte, one response per file, and the answers the config gives.
    let fx = Fixture::new(
        &up,
        &catalog,
        &format!(
            "{}\n[guestbook]\nname = \"Ada Lovelace\"\nemail = \"ada@example.org\"\ninstitution = \"Example University\"\n",
            all_hosts_to(&up)
        ),
    );
    let m = fx.mount(&[]);
    assert_eq!(read(&m, "datasets/gb/meta.csv").unwrap(), csv);
    for (name, data, _) in &files {
        assert_eq!(
            &read(&m, &format!("datasets/gb/{name}")).unwrap(),
            data,
            "{name}"
        );
    }
    let bodies = bodies.lock().unwrap().clone();
    assert_eq!(
        bodies.len(),
        2,
        "one guestbook response per file: {bodies:?}"
    );
    assert!(
        bodies.iter().all(|b| *b
            == json!({"guestbookResponse": {
        "name": "Ada Lovelace", "email": "ada@example.org", "institution": "Example University"}}))
    );
    let signed_gets = up
        .log()
        .iter()
        .filter(|l| {
            l.method == "GET" && l.path.contains("/datafile/") && l.query.contains("token=")
        })
        .count();
    assert!(signed_gets >= 2, "{signed_gets}");
    assert!(
        !m.log_text().contains(&format!("{:0128x}", 1)),
        "a signed URL's token was logged"
    );
}

#[test]
fn an_html_directory_listing_is_walked_within_its_root() {
    let up = Upstream::start();
    let a = png(12, 12, 5);
    let b = vec![9u8; 5000];
    up.put("/data.example.org/pub/set/train/a.png", a.clone(), true);
    up.put("/data.example.org/pub/set/labels%20v2.csv", b.clone(), true);
    up.put(
        "/data.example.org/pub/set/train/empty.txt",
        Vec::new(),
        true,
    );
    up.route(|r| {
        let page = match r.path.as_str() {
            "/data.example.org/pub/set/" => {
                "<html><body><h1>Index of /pub/set</h1><a href=\"?C=N;O=D\">Name</a>\
                 <a href=\"/pub/\">Parent Directory</a><a href=\"train/\">train/</a>\
                 <a href=\"labels%20v2.csv\">labels v2.csv</a><a href=\"https://other.org/x\">x</a></body></html>"
            }
            "/data.example.org/pub/set/train/" => {
                "<html><a href=\"../\">../</a><a href=\"a.png\">a.png</a><a href=\"empty.txt\">empty.txt</a></html>"
            }
            _ => return None,
        };
        Some(Answer::Raw {
            status: 200,
            headers: vec![("Content-Type".into(), "text/html".into())],
            body: page.as_bytes().to_vec(),
        })
    });
    let fx = fixture(
        &up,
        &dataset_entry(
            "loose",
            "",
            "[[dataset.source]]\ntype = \"http\"\nformat = \"dir\"\nurl = \"https://data.example.org/pub/set/\"\n",
        ),
    );
    let m = fx.mount(&[]);
    assert_eq!(
        ls(&m, "datasets/loose").unwrap(),
        ["labels v2.csv", "train"]
    );
    // Listing names costs the two pages: no file is asked anything yet.
    let pages = up.log();
    assert_eq!(pages.len(), 2, "{pages:?}");
    assert!(pages.iter().all(|l| l.path.ends_with('/')), "{pages:?}");
    // The page prints no sizes: a stat asks for the size, not the bytes.
    assert_eq!(
        std::fs::metadata(m.mnt.join("datasets/loose/labels v2.csv"))
            .unwrap()
            .len(),
        5000
    );
    let log = up.log();
    assert_eq!(log.len(), 3, "{log:?}");
    assert_eq!(log[2].range.as_deref(), Some("bytes=0-0"));
    assert_eq!(log[2].bytes, 1);
    // a.png: its size (looked up before it is read), then its bytes; the CSV: its bytes.
    assert_eq!(read(&m, "datasets/loose/train/a.png").unwrap(), a);
    assert_eq!(read(&m, "datasets/loose/labels v2.csv").unwrap(), b);
    assert_eq!(up.count(), 6, "{:?}", up.log());
    // An empty file has no byte 0: the host answers 416 with `bytes */0`, which is its size.
    let empty = m.mnt.join("datasets/loose/train/empty.txt");
    assert_eq!(std::fs::metadata(&empty).unwrap().len(), 0);
    assert_eq!(std::fs::read(&empty).unwrap(), b"");
    let log = up.log();
    assert_eq!(log.len(), 7, "{log:?}");
    assert_eq!(log[6].status, 416);
    assert!(
        up.log()
            .iter()
            .all(|l| !l.path.contains("other.org") && l.path != "/data.example.org/pub/")
    );
}

/// A public S3 bucket on the loopback server: ListObjectsV2 (two keys a page) over `objects`.
fn s3_bucket(up: &Upstream, host: &'static str, objects: Vec<(String, Vec<u8>)>) {
    for (k, d) in &objects {
        up.put(&format!("/{host}/{k}"), d.clone(), true);
    }
    up.route(move |r| {
        if r.path != format!("/{host}/") || r.param("list-type").as_deref() != Some("2") {
            return None;
        }
        let start: usize = r.param("continuation-token").map_or(0, |t| t.parse().unwrap());
        let prefix = r.param("prefix").unwrap_or_default();
        let keys: Vec<&(String, Vec<u8>)> =
            objects.iter().filter(|(k, _)| k.starts_with(&prefix)).collect();
        let page = &keys[start.min(keys.len())..(start + 2).min(keys.len())];
        let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult>");
        for (k, d) in page {
            xml.push_str(&format!(
                "<Contents><Key>{k}</Key><Size>{}</Size><ETag>&quot;{:08x}-{}&quot;</ETag></Contents>",
                d.len(),
                crc32fast::hash(d),
                d.len()
            ));
        }
        let more = start + 2 < keys.len();
        xml.push_str(&format!("<IsTruncated>{more}</IsTruncated>"));
        if more {
            xml.push_str(&format!("<NextContinuationToken>{}</NextContinuationToken>", start + 2));
        }
        xml.push_str("</ListBucketResult>");
        Some(Answer::Raw {
            status: 200,
            headers: vec![("Content-Type".into(), "application/xml".into())],
            body: xml.into_bytes(),
        })
    });
}

#[test]
fn idc_collection_is_listed_from_the_pinned_index_and_laid_out_by_patient_and_study() {
    let up = Upstream::start();
    let parquet = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/idc_index_sample.parquet"
    ))
    .unwrap();
    let wheel = zip(&[(
        "idc_index_data/idc_index.parquet".to_string(),
        parquet,
        true,
    )]);
    let digest = sha256_hex(&wheel);
    up.put(
        "/files.pythonhosted.org/packages/ab/cd/idc_index_data-25.0.5-py3-none-any.whl",
        wheel,
        true,
    );
    up.route(move |r| {
        (r.path == "/pypi.org/pypi/idc-index-data/25.0.5/json").then(|| {
            Answer::json(json!({"info": {"version": "25.0.5"}, "urls": [
                {"packagetype": "sdist", "url": "https://files.pythonhosted.org/x.tar.gz", "digests": {"sha256": "00"}},
                {"packagetype": "bdist_wheel",
                 "url": "https://files.pythonhosted.org/packages/ab/cd/idc_index_data-25.0.5-py3-none-any.whl",
                 "digests": {"sha256": digest}}]}))
        })
    });
    let inst = |i: u8| vec![i; 700 + i as usize];
    s3_bucket(
        &up,
        "idc-open-data.s3.amazonaws.com",
        vec![
            (
                "aaaaaaaa-0000-4000-8000-000000000001/i1.dcm".into(),
                inst(1),
            ),
            (
                "aaaaaaaa-0000-4000-8000-000000000001/i2.dcm".into(),
                inst(2),
            ),
            (
                "aaaaaaaa-0000-4000-8000-000000000001/i3.dcm".into(),
                inst(3),
            ),
            (
                "aaaaaaaa-0000-4000-8000-000000000002/i4.dcm".into(),
                inst(4),
            ),
            (
                "bbbbbbbb-0000-4000-8000-000000000001/i5.dcm".into(),
                inst(5),
            ),
        ],
    );
    s3_bucket(
        &up,
        "idc-open-data-two.s3.amazonaws.com",
        vec![(
            "aaaaaaaa-0000-4000-8000-000000000003/i6.dcm".into(),
            inst(6),
        )],
    );
    let fx = fixture(
        &up,
        &dataset_entry(
            "lidc",
            "",
            "[[dataset.source]]\ntype = \"idc\"\ncollection = \"lidc_idri\"\nindex = \"25.0.5\"\n",
        ),
    );
    let m = fx.mount(&[]);
    assert_eq!(
        ls(&m, "datasets/lidc").unwrap(),
        ["LIDC-IDRI-0001", "LIDC-IDRI-0002"]
    );
    let study = "datasets/lidc/LIDC-IDRI-0001/1.3.6.1.4.1.14519.5.2.1.6279.6001.21";
    assert_eq!(
        ls(&m, study).unwrap(),
        [
            "CT_1.3.6.1.4.1.14519.5.2.1.6279.6001.11",
            "DX_1.3.6.1.4.1.14519.5.2.1.6279.6001.12"
        ]
    );
    assert_eq!(
        read(
            &m,
            &format!("{study}/CT_1.3.6.1.4.1.14519.5.2.1.6279.6001.11/i2.dcm")
        )
        .unwrap(),
        inst(2)
    );
    assert_eq!(
        read(&m, "datasets/lidc/LIDC-IDRI-0002/1.3.6.1.4.1.14519.5.2.1.6279.6001.22/CT_1.3.6.1.4.1.14519.5.2.1.6279.6001.13/i6.dcm").unwrap(),
        inst(6)
    );
    let log = up.log();
    assert!(
        !log.iter().any(|l| l.query.contains("bbbbbbbb")),
        "another collection's series is not listed"
    );
    assert!(
        !log.iter().any(|l| l.query.contains("cccccccc")),
        "a series with an unsafe name is skipped"
    );
    assert_eq!(log.iter().filter(|l| l.path.ends_with(".whl")).count(), 1);
}

#[test]
fn tcia_collection_is_listed_through_nbia_and_its_instances_fetched_whole() {
    let up = Upstream::start();
    let inst = |i: u8| vec![i; 300 + i as usize];
    up.route(move |r| {
        let rest = r.path.strip_prefix("/services.cancerimagingarchive.net/nbia-api/services/v4/")?;
        Some(match rest {
            "getSeries" if r.param("Collection").as_deref() == Some("Pancreas-CT") => Answer::json(json!([
                {"SeriesInstanceUID": "1.2.3.1", "StudyInstanceUID": "1.2.2", "PatientID": "PANCREAS_0001",
                 "Modality": "CT", "ImageCount": 2, "FileSize": 700}])),
            "getSOPInstanceUIDs" if r.param("SeriesInstanceUID").as_deref() == Some("1.2.3.1") => {
                Answer::json(json!([{"SOPInstanceUID": "1.2.3.1.1"}, {"SOPInstanceUID": "1.2.3.1.2"}]))
            }
            // NBIA streams the instance whole, whatever Range asked.
            "getSingleImage" => {
                let i = match r.param("SOPInstanceUID").as_deref() {
                    Some("1.2.3.1.1") => 1,
                    Some("1.2.3.1.2") => 2,
                    _ => return Some(Answer::status(404, "not found")),
                };
                Answer::Raw {
                    status: 200,
                    headers: vec![("Content-Type".into(), "application/dicom".into())],
                    body: inst(i),
                }
            }
            _ => Answer::status(404, "not found"),
        })
    });
    let fx = fixture(
        &up,
        &dataset_entry(
            "pct",
            "",
            "[[dataset.source]]\ntype = \"tcia\"\ncollection = \"Pancreas-CT\"\n",
        ),
    );
    let m = fx.mount(&[]);
    let dir = "datasets/pct/PANCREAS_0001/1.2.2/CT_1.2.3.1";
    assert_eq!(ls(&m, dir).unwrap(), ["1.2.3.1.1.dcm", "1.2.3.1.2.dcm"]);
    let instances = || {
        up.log()
            .iter()
            .filter(|l| l.path.ends_with("/getSingleImage"))
            .count()
    };
    assert_eq!(instances(), 0, "listing asks no instance anything");
    assert_eq!(read(&m, &format!("{dir}/1.2.3.1.2.dcm")).unwrap(), inst(2));
    assert_eq!(
        instances(),
        1,
        "the instance came whole with the probe of its size (NBIA ignores Range)"
    );
}

/// A Girder server as its REST API answers (Girder's docs and `girder-client`): folder, item
/// and file documents as JSON arrays with `_id`, `_modelType`, `name`, `size`; `limit`
/// (default 50) and `offset` page every listing; `file/{id}/download` serves bytes by Range.
/// CAMUS holds thousands of items, each needing its own file-list request: a folder's are asked
/// several at a time, not one round trip after another.
#[test]
fn girder_item_file_lists_are_asked_several_at_a_time() {
    let up = Upstream::start();
    const API: &str = "/heart.example.org/database/api/v1";
    let col = "6373703d73e9f0047faa1bc8";
    let folder = "aaaaaaaaaaaaaaaaaaaaaa01";
    let n = 24;
    let item = |i: usize| format!("bbbbbbbbbbbbbbbbbbbb{i:04}");
    up.route(move |r| {
        let rest = r.path.strip_prefix(API)?;
        let offset: usize = r.param("offset").and_then(|o| o.parse().ok()).unwrap_or(0);
        let docs = match rest {
            "/folder" if r.param("parentId").as_deref() == Some(col) => {
                vec![json!({"_id": folder, "_modelType": "folder", "name": "patient0001"})]
            }
            "/folder" => vec![],
            "/item" => (0..n)
                .map(|i| json!({"_id": item(i), "_modelType": "item", "name": format!("f{i:02}.png"), "size": 3}))
                .collect(),
            _ => {
                let id = rest.strip_prefix("/item/")?.strip_suffix("/files")?;
                let i: usize = id[20..].parse().ok()?;
                vec![json!({"_id": format!("cccccccccccccccccccc{i:04}"), "_modelType": "file",
                    "name": format!("f{i:02}.png"), "size": 3, "itemId": id})]
            }
        };
        Some(Answer::json(json!(docs.into_iter().skip(offset).collect::<Vec<_>>())))
    });
    up.set_delay(Duration::from_millis(40));
    let catalog = dataset_entry(
        "camus",
        "",
        &format!(
            "[[dataset.source]]\ntype = \"girder\"\napi = \"https://heart.example.org/database/api/v1\"\ncollection = \"{col}\"\n"
        ),
    );
    let fx = fixture(&up, &catalog);
    let m = fx.mount(&[]);
    assert_eq!(ls(&m, "datasets/camus/patient0001").unwrap().len(), n);
    let file_lists = up
        .log()
        .iter()
        .filter(|l| l.path.ends_with("/files"))
        .count();
    assert_eq!(file_lists, n, "one file-list request per item");
    assert!(
        up.peak_concurrency() >= 4,
        "item file lists were asked one at a time (peak {})",
        up.peak_concurrency()
    );
}

#[test]
fn girder_collection_is_walked_folder_by_folder_and_each_file_read_by_range() {
    let up = Upstream::start();
    const API: &str = "/heart.example.org/database/api/v1";
    let nii = png(16, 16, 3);
    let cfg = b"ED: 1\nES: 12\n".to_vec();
    let (a, b) = (png(16, 16, 4), png(16, 16, 5));
    let readme = b"cite us\n".to_vec();
    let col = "637218c173e9f0047faa00fb";
    // id -> (name, parent type, parent id); items -> (name, folder); files -> (name, item, bytes).
    let folders: Vec<(&str, &str, &str, &str)> = vec![
        ("aaaaaaaaaaaaaaaaaaaaaa01", "database", "collection", col),
        (
            "aaaaaaaaaaaaaaaaaaaaaa02",
            "training",
            "folder",
            "aaaaaaaaaaaaaaaaaaaaaa01",
        ),
        (
            "aaaaaaaaaaaaaaaaaaaaaa03",
            "patient001",
            "folder",
            "aaaaaaaaaaaaaaaaaaaaaa02",
        ),
    ];
    let items: Vec<(&str, &str, &str)> = vec![
        (
            "bbbbbbbbbbbbbbbbbbbbbb01",
            "MANDATORY_CITATION.md",
            "aaaaaaaaaaaaaaaaaaaaaa01",
        ),
        (
            "bbbbbbbbbbbbbbbbbbbbbb02",
            "patient001_frame01.nii.gz",
            "aaaaaaaaaaaaaaaaaaaaaa03",
        ),
        (
            "bbbbbbbbbbbbbbbbbbbbbb03",
            "Info.cfg",
            "aaaaaaaaaaaaaaaaaaaaaa03",
        ),
        (
            "bbbbbbbbbbbbbbbbbbbbbb04",
            "views",
            "aaaaaaaaaaaaaaaaaaaaaa03",
        ),
    ];
    let files: Vec<(&str, &str, &str, Vec<u8>)> = vec![
        (
            "cccccccccccccccccccccc01",
            "MANDATORY_CITATION.md",
            "bbbbbbbbbbbbbbbbbbbbbb01",
            readme.clone(),
        ),
        (
            "cccccccccccccccccccccc02",
            "patient001_frame01.nii.gz",
            "bbbbbbbbbbbbbbbbbbbbbb02",
            nii.clone(),
        ),
        (
            "cccccccccccccccccccccc03",
            "Info.cfg",
            "bbbbbbbbbbbbbbbbbbbbbb03",
            cfg.clone(),
        ),
        (
            "cccccccccccccccccccccc04",
            "2CH.png",
            "bbbbbbbbbbbbbbbbbbbbbb04",
            a.clone(),
        ),
        (
            "cccccccccccccccccccccc05",
            "4CH.png",
            "bbbbbbbbbbbbbbbbbbbbbb04",
            b.clone(),
        ),
    ];
    for (id, _, _, data) in &files {
        up.put(&format!("{API}/file/{id}/download"), data.clone(), true);
    }
    let page = |r: &Req, docs: Vec<serde_json::Value>| {
        let limit: usize = r.param("limit").and_then(|l| l.parse().ok()).unwrap_or(50);
        let offset: usize = r.param("offset").and_then(|o| o.parse().ok()).unwrap_or(0);
        let docs: Vec<_> = docs.into_iter().skip(offset).take(limit).collect();
        Answer::json(json!(docs))
    };
    up.route(move |r| {
        let rest = r.path.strip_prefix(API)?;
        if rest.ends_with("/download") {
            return None;
        }
        Some(match rest {
            "/folder" => {
                let (pt, pid) = (r.param("parentType")?, r.param("parentId")?);
                let docs = folders
                    .iter()
                    .filter(|f| f.2 == pt && f.3 == pid)
                    .map(|f| {
                        json!({"_id": f.0, "_modelType": "folder", "name": f.1,
                        "parentCollection": f.2, "parentId": f.3, "public": true,
                        "description": "", "created": "2022-11-14T10:32:01.000000+00:00"})
                    })
                    .collect();
                page(r, docs)
            }
            "/item" => {
                let fid = r.param("folderId")?;
                let docs = items
                    .iter()
                    .filter(|i| i.2 == fid)
                    .map(|i| {
                        let size: usize =
                            files.iter().filter(|f| f.2 == i.0).map(|f| f.3.len()).sum();
                        json!({"_id": i.0, "_modelType": "item", "name": i.1, "folderId": i.2,
                            "size": size, "description": "", "meta": {}})
                    })
                    .collect();
                page(r, docs)
            }
            _ => {
                let item = rest.strip_prefix("/item/")?.strip_suffix("/files")?;
                let docs = files
                    .iter()
                    .filter(|f| f.2 == item)
                    .map(|f| {
                        json!({"_id": f.0, "_modelType": "file", "name": f.1, "itemId": f.2,
                        "size": f.3.len(), "mimeType": "application/octet-stream",
                        "exts": [], "sha512": "00", "assetstoreId": "dddddddddddddddddddddd01"})
                    })
                    .collect();
                page(r, docs)
            }
        })
    });
    let catalog = dataset_entry(
        "heart",
        "",
        &format!(
            "[[dataset.source]]\ntype = \"girder\"\napi = \"https://heart.example.org/database/api/v1\"\ncollection = \"{col}\"\n"
        ),
    );
    let fx = fixture(&up, &catalog);
    let m = fx.mount(&[]);
    assert_eq!(ls(&m, "datasets/heart").unwrap(), ["database"]);
    assert_eq!(
        ls(&m, "datasets/heart/database").unwrap(),
        ["MANDATORY_CITATION.md", "training"]
    );
    assert_eq!(
        ls(&m, "datasets/heart/database/training/patient001").unwrap(),
        ["Info.cfg", "patient001_frame01.nii.gz", "views"]
    );
    assert_eq!(
        ls(&m, "datasets/heart/database/training/patient001/views").unwrap(),
        ["2CH.png", "4CH.png"]
    );
    let p = "datasets/heart/database/training/patient001";
    assert_eq!(
        read(&m, &format!("{p}/patient001_frame01.nii.gz")).unwrap(),
        nii
    );
    assert_eq!(read(&m, &format!("{p}/Info.cfg")).unwrap(), cfg);
    assert_eq!(read(&m, &format!("{p}/views/4CH.png")).unwrap(), b);
    assert_eq!(
        read(&m, "datasets/heart/database/MANDATORY_CITATION.md").unwrap(),
        readme
    );
    let log = up.log();
    let downloads: Vec<_> = log
        .iter()
        .filter(|l| l.path.ends_with("/download"))
        .collect();
    assert!(!downloads.is_empty());
    assert!(
        downloads
            .iter()
            .all(|l| l.path.contains("/file/") && l.range.is_some()),
        "only single files are downloaded, by Range: {:?}",
        downloads.iter().map(|l| &l.path).collect::<Vec<_>>()
    );
    let listing = log
        .iter()
        .find(|l| l.path == format!("{API}/folder"))
        .unwrap();
    assert!(
        listing.query.contains("parentType=collection"),
        "{}",
        listing.query
    );
}
