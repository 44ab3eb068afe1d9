//! A first listing costs metadata, not the dataset: a loose-file tree behind Debian's nginx,
//! its `autoindex` pages with exact sizes and with rounded ones, read through a real mount
//! with real tools (`ls`, `find`, `cmp`), counted in nginx's own access log.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;

const CLASSES: usize = 4;
const PER_CLASS: usize = 2500;

/// `CLASSES` folders of `PER_CLASS` files of varied sizes, one of them empty: three in four
/// under 10,000 bytes (which nginx prints exactly even with `autoindex_exact_size off`), one
/// in four above (which it then rounds: `10K`). Returns each file's path and size.
fn loose_tree(root: &Path) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for c in 0..CLASSES {
        let dir = root.join(format!("class{c}"));
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..PER_CLASS {
            let n = c * PER_CLASS + i;
            let size = match n {
                7 => 0,
                n if n % 4 == 0 => 10_000 + (n * 7919) % 5000,
                n => (n * 7919) % 3000 + 1,
            };
            let data: Vec<u8> = (0..size).map(|k| (k * 31 + n) as u8).collect();
            let name = format!("img{n:05}.png");
            std::fs::write(dir.join(&name), &data).unwrap();
            out.insert(format!("class{c}/{name}"), size as u64);
        }
    }
    out
}

/// `(path, size)` of every file below `dir`, as `find -printf` stats them.
fn sizes_seen(dir: &Path) -> BTreeMap<String, u64> {
    let (code, out, err) = sh(&format!(
        "find '{}' -type f -printf '%P %s\\n'",
        dir.display()
    ));
    assert_eq!(code, 0, "{err}");
    out.lines()
        .map(|l| {
            let (p, s) = l.rsplit_once(' ').unwrap();
            (p.to_string(), s.parse().unwrap())
        })
        .collect()
}

fn names(m: &Mount, dir: &Path) -> Vec<String> {
    let (code, out, err) = sh(&format!("ls '{}'", dir.display()));
    assert_eq!(code, 0, "{err}\ndaemon's log:\n{}", m.log_text());
    out.lines().map(str::to_string).collect()
}

struct Served {
    _data: tempfile::TempDir,
    nginx: Nginx,
    fx: Fixture,
    files: BTreeMap<String, u64>,
}

/// The tree once, under `/sized/` and (a symlink) `/rounded/`, `/xml/` and `/json/`, each a
/// dataset of format `dir`.
fn served() -> Served {
    let data = tempfile::tempdir().unwrap();
    let files = loose_tree(&data.path().join("sized"));
    for view in ["rounded", "xml", "json"] {
        std::os::unix::fs::symlink("sized", data.path().join(view)).unwrap();
    }
    let nginx = Nginx::start(data.path());
    let catalog: String = ["sized", "rounded", "xml", "json"]
        .iter()
        .map(|v| {
            dataset_entry(
                v,
                "",
                &format!(
                    "[[dataset.source]]\ntype = \"http\"\nformat = \"dir\"\n\
                     url = \"https://data.example.org/{v}/\"\n"
                ),
            )
        })
        .collect();
    let fx = Fixture::mirrored_to(&nginx.base(), &catalog, "");
    Served {
        _data: data,
        nginx,
        fx,
        files,
    }
}

#[test]
fn a_listing_with_exact_sizes_costs_its_pages_and_ls_l_costs_nothing_more() {
    let s = served();
    let m = s.fx.mount(&[]);
    for view in ["sized", "xml", "json"] {
        let before = s.nginx.log().len();
        let root = m.mnt.join("datasets").join(view);
        assert_eq!(names(&m, &root), ["class0", "class1", "class2", "class3"]);
        assert_eq!(names(&m, &root.join("class2")).len(), PER_CLASS);
        let log = s.nginx.log()[before..].to_vec();
        // One page per directory (the top and its four folders), no file touched.
        assert_eq!(log.len(), 1 + CLASSES, "{view}: {log:?}");
        assert!(
            log.iter()
                .all(|l| l.uri.ends_with('/') && l.range.is_none()),
            "{view}: {log:?}"
        );
        // `ls -l`, `find -printf %s`: every size right, no request.
        let before = s.nginx.log().len();
        assert_eq!(sizes_seen(&root), s.files, "{view}");
        let (code, out, err) = sh(&format!("ls -l '{}'", root.join("class1").display()));
        assert_eq!(code, 0, "{err}");
        assert_eq!(out.lines().count(), PER_CLASS + 1);
        assert_eq!(s.nginx.log().len(), before, "{view}: stat asked the host");
    }
    // A file's first read costs one request, as before.
    let before = s.nginx.log().len();
    let (code, _, err) = sh(&format!(
        "cmp '{}' '{}'",
        m.mnt.join("datasets/sized/class3/img08000.png").display(),
        s._data.path().join("sized/class3/img08000.png").display()
    ));
    assert_eq!(code, 0, "{err}");
    assert_eq!(s.nginx.log().len(), before + 1);
}

#[test]
fn without_exact_sizes_ls_asks_nothing_and_ls_l_asks_each_size_once_with_no_bytes() {
    let s = served();
    let m = s.fx.mount(&[]);
    let root = m.mnt.join("datasets/rounded");
    assert_eq!(names(&m, &root), ["class0", "class1", "class2", "class3"]);
    for c in 0..CLASSES {
        assert_eq!(names(&m, &root.join(format!("class{c}"))).len(), PER_CLASS);
    }
    let log = s.nginx.log();
    assert_eq!(log.len(), 1 + CLASSES, "{log:?}");
    assert!(log.iter().all(|l| l.uri.ends_with('/')), "{log:?}");

    // `find -printf %s` stats every file of one folder: one zero-length probe for each whose
    // size the page rounds, none for the others.
    let folder = root.join("class0");
    let want: BTreeMap<String, u64> = s
        .files
        .iter()
        .filter_map(|(p, n)| Some((p.strip_prefix("class0/")?.to_string(), *n)))
        .collect();
    assert_eq!(sizes_seen(&folder), want);
    let probes = s.nginx.log()[1 + CLASSES..].to_vec();
    let rounded = want.values().filter(|&&n| n > 9999).count();
    assert_eq!(probes.len(), rounded, "{} requests", probes.len());
    let mut uris: Vec<&str> = probes.iter().map(|l| l.uri.as_str()).collect();
    uris.sort();
    uris.dedup();
    assert_eq!(uris.len(), probes.len(), "a file was probed twice");
    for l in &probes {
        assert_eq!(l.range.as_deref(), Some("bytes=0-0"), "{l:?}");
        assert_eq!((l.status, l.bytes), (206, 1), "{l:?}");
    }

    // Asked once: again, and after a restart, stats cost nothing.
    let before = s.nginx.log().len();
    assert_eq!(sizes_seen(&folder), want);
    drop(m);
    // The background probers let the index close: its write-ahead log is folded in.
    assert!(!s.fx.cache().join("index.sqlite-wal").exists());
    let m = s.fx.mount(&[]);
    assert_eq!(sizes_seen(&m.mnt.join("datasets/rounded/class0")), want);
    assert_eq!(s.nginx.log().len(), before, "sizes are kept in the index");

    // A read after that costs one request; a file never statted costs its probe and one.
    for (name, cost) in [("class0/img00044.png", 1), ("class1/img02600.png", 2)] {
        let before = s.nginx.log().len();
        let (code, _, err) = sh(&format!(
            "cmp '{}' '{}'",
            m.mnt.join("datasets/rounded").join(name).display(),
            s._data.path().join("sized").join(name).display()
        ));
        assert_eq!(code, 0, "{name}: {err}");
        let log = s.nginx.log();
        assert_eq!(log.len(), before + cost, "{name}: {:?}", &log[before..]);
    }
    // The empty file reads empty.
    assert_eq!(
        std::fs::read(m.mnt.join("datasets/rounded/class0/img00007.png")).unwrap(),
        b""
    );
}

/// A PhysioNet project as physionet.org serves it: `SHA256SUMS.txt` names every file (no
/// sizes), and `/files/` folders are nginx `autoindex` pages with exact sizes.
#[test]
fn a_physionet_project_lists_with_one_request_and_sizes_a_folder_with_its_page() {
    use sha2::Digest;
    let data = tempfile::tempdir().unwrap();
    let project = data.path().join("physionet.org/files/demo/1.0.0");
    let mut sums = String::new();
    let mut files = BTreeMap::new();
    for dir in ["records", "more"] {
        std::fs::create_dir_all(project.join(dir)).unwrap();
        for i in 0..40usize {
            let name = format!("{dir}/r{i:03}.dat");
            let data: Vec<u8> = (0..20_000 + i * 37).map(|k| (k * 13 + i) as u8).collect();
            let hex: String = sha2::Sha256::digest(&data)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            sums.push_str(&format!("{hex}  {name}\n"));
            std::fs::write(project.join(&name), &data).unwrap();
            files.insert(name, data.len() as u64);
        }
    }
    std::fs::write(project.join("SHA256SUMS.txt"), sums).unwrap();
    let nginx = Nginx::start(data.path());
    let catalog = dataset_entry(
        "demo",
        "",
        "[[dataset.source]]\ntype = \"physionet\"\nproject = \"demo\"\nversion = \"1.0.0\"\n",
    );
    let fx = Fixture::mirrored_to(
        &nginx.base(),
        &catalog,
        &format!(
            "[[mirror]]\nfrom = \"https://physionet.org/\"\nto = \"{}physionet.org/\"\n",
            nginx.base()
        ),
    );
    let m = fx.mount(&[]);
    let root = m.mnt.join("datasets/demo");
    assert_eq!(names(&m, &root), ["more", "records"]);
    assert_eq!(names(&m, &root.join("records")).len(), 40);
    let log = nginx.log();
    assert_eq!(log.len(), 1, "{log:?}");
    assert!(log[0].uri.ends_with("/SHA256SUMS.txt"), "{log:?}");

    // One stat: one zero-length probe.
    let one = root.join("more/r005.dat");
    assert_eq!(
        std::fs::metadata(&one).unwrap().len(),
        files["more/r005.dat"]
    );
    let log = nginx.log();
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(log[1].range.as_deref(), Some("bytes=0-0"));

    // A folder statted file by file: a few probes, then its page sizes the rest at once.
    let want: BTreeMap<String, u64> = files
        .iter()
        .filter_map(|(p, n)| Some((p.strip_prefix("records/")?.to_string(), *n)))
        .collect();
    assert_eq!(sizes_seen(&root.join("records")), want);
    let log = nginx.log()[2..].to_vec();
    let pages: Vec<_> = log.iter().filter(|l| l.uri.ends_with('/')).collect();
    assert_eq!(pages.len(), 1, "{log:?}");
    assert!(
        pages[0].uri.ends_with("/files/demo/1.0.0/records/"),
        "{log:?}"
    );
    let probes = log.iter().filter(|l| l.range.is_some()).count();
    assert_eq!(probes + 1, log.len(), "{log:?}");
    assert_eq!(probes, medimg::sizes::SCAN_AFTER as usize - 1, "{log:?}");

    // A read costs one request, and its bytes match the published SHA-256.
    let before = nginx.log().len();
    assert_eq!(
        std::fs::read(root.join("records/r017.dat")).unwrap(),
        std::fs::read(project.join("records/r017.dat")).unwrap()
    );
    assert_eq!(nginx.log().len(), before + 1);
}
