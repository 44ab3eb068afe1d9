//! `medimg catalog --check` against a loopback host: a dataset that matches its entry, one
//! whose archive holds an archive, a Git LFS pointer and an HTML page where images should be,
//! and one that cannot be listed.

mod common;

use common::*;

fn check(fx: &Fixture, extra: &[&str]) -> (Option<i32>, String, String) {
    let out = medimg()
        .arg("catalog")
        .arg("--check")
        .args(extra)
        .arg("--catalog")
        .arg(fx.dir.path().join("catalog.toml"))
        .arg("--config")
        .arg(fx.dir.path().join("medimg.toml"))
        .arg("--cache-dir")
        .arg(fx.cache())
        .env("HOME", fx.home())
        .envs(CREDENTIAL_VARS.iter().map(|v| (*v, "")))
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn catalog_check_counts_what_is_mounted_and_flags_what_a_training_script_would_trip_on() {
    let up = Upstream::start();
    let good = image_folder(10, 4);
    up.put("/good.zip", zip(&good), true);
    let mut bad = image_folder(10, 4);
    // A solid RAR 4 stays a file: libarchive cannot decode one (RAR 4 and RAR 5 are expanded
    // otherwise, and a zip stored inside a zip is expanded in place). A real one, made by RAR.
    let solid4 = format!(
        "{}/tests/fixtures/rar/rar3_solid.rar",
        env!("CARGO_MANIFEST_DIR")
    );
    bad.push((
        "extra/more.rar".into(),
        std::fs::read(solid4).unwrap(),
        false,
    ));
    bad.push((
        "chest_xray/train/NORMAL/lfs.png".into(),
        b"version https://git-lfs.github.com/spec/v1\noid sha256:4d7a\nsize 123456\n".to_vec(),
        false,
    ));
    bad.push((
        "chest_xray/train/NORMAL/page.png".into(),
        b"<!DOCTYPE html><html><body>Sign in to continue</body></html>".to_vec(),
        false,
    ));
    up.put("/bad.zip", zip(&bad), true);
    let entry = |id: &str, file: &str| {
        dataset_entry(
            id,
            "images = 10\n",
            &format!(
                "[[dataset.source]]\ntype = \"http\"\nurl = \"https://data.example.org/{file}\"\n"
            ),
        )
    };
    // An expanded RAR is folders and files, not an archive shown as a file.
    let rar = format!(
        "{}/tests/fixtures/rar/rar3_subdirs.rar",
        env!("CARGO_MANIFEST_DIR")
    );
    up.put("/subdirs.rar", std::fs::read(rar).unwrap(), true);
    let catalog = [entry("good", "good.zip"), entry("bad", "bad.zip")].concat()
        + &catalog(&[("later", "MRI", "brain", &[])]);
    // Every entry says 10 images.
    let catalog = catalog.replace("images = 1\n", "images = 10\n");
    let catalog_text = catalog.clone();
    let fx = Fixture::new(&up, &catalog, "");

    // One that matches: exit 0, its counts.
    let (code, out, err) = check(&fx, &["good"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("good: 10 files") && out.contains("10 image files") && out.contains(": ok"),
        "{out}"
    );
    assert!(out.contains("1 of 1 datasets match"), "{out}");

    // All three: each problem named, exit 1.
    let (code, out, err) = check(&fx, &[]);
    assert_eq!(code, Some(1), "{out}{err}");
    for want in [
        "bad: 13 files",
        "12 image files found, the catalog says 10 images",
        "1 archive(s) shown as files, not expanded: extra/more.rar",
        "Git LFS pointer(s) where the file should be: chest_xray/train/NORMAL/lfs.png",
        "HTML page(s) where a file should be: chest_xray/train/NORMAL/page.png",
        "later: 0 files",
        "cannot be listed",
        "1 of 3 datasets match their catalog entry; 2 flagged",
    ] {
        assert!(out.contains(want), "{want}:\n{out}");
    }

    // For scripts.
    let (code, out, _) = check(&fx, &["--json", "bad"]);
    assert_eq!(code, Some(1));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["id"], "bad");
    assert_eq!(v[0]["files"], 13);
    assert_eq!(v[0]["images"], 12);
    assert_eq!(v[0]["catalog_images"], 10);
    assert_eq!(v[0]["flags"].as_array().unwrap().len(), 4, "{out}");

    // A RAR medimg expands is not flagged as an archive left unexpanded.
    let fx = Fixture::new(
        &up,
        &(catalog_text.clone() + &entry("rar", "subdirs.rar")),
        "",
    );
    let (_, out, err) = check(&fx, &["rar"]);
    assert!(out.contains("rar: 4 files"), "{out}{err}");
    assert!(!out.contains("not expanded"), "{out}");

    // A dataset the catalog does not have is an error naming it.
    let (code, _, err) = check(&fx, &["nope"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no dataset \"nope\""), "{err}");
}
