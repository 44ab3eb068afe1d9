#![no_main]
//! Any answers from any host's API. The first byte picks the host (the n-th source of
//! `fuzz/hosts.toml`, low four bits), the `Content-Type` of the answers (two bits), whether
//! each carries a `Link: rel="next"` of its own (one bit), and whether the last answer is
//! given again to every later call (one bit, a host stuck on one page); the rest is the
//! answers, separated by NUL bytes. Listing gives an error or files whose paths the tree can
//! take or refuse, never a panic or a hang.
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use medimg::archive::normalize_member_path;
use medimg::catalog::Catalog;
use medimg::resolve;
use medimg::source::ApiReply;
use medimg::source::mock::Scripted;

static HOSTS: LazyLock<Catalog> = LazyLock::new(|| {
    Catalog::parse(include_str!("../hosts.toml"), "fuzz/hosts.toml").expect("hosts.toml parses")
});

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let d = &HOSTS.datasets[usize::from(sel & 15) % HOSTS.datasets.len()];
    let content_type = [
        None,
        Some("application/json"),
        Some("text/xml"),
        Some("text/html"),
    ][usize::from(sel >> 4 & 3)];
    let pages: Vec<&[u8]> = rest.split(|&b| b == 0).collect();
    let replies = pages
        .into_iter()
        .enumerate()
        .map(|(i, body)| ApiReply {
            body: body.to_vec(),
            content_type: content_type.map(str::to_string),
            next: (sel & 64 != 0).then(|| format!("https://next.example.org/{i}")),
        })
        .collect();
    let mut up = Scripted::new(replies);
    if sel & 128 != 0 {
        up = up.repeating();
    }
    let Ok(files) = resolve::list(&d.sources[0], &up) else {
        return;
    };
    // Names from the hosts' answers may be anything (the tree refuses those it cannot take:
    // empty, `..`, absolute); names medimg builds from identifiers it checks are plain.
    let built = matches!(d.id.as_str(), "dir" | "tcia" | "idc" | "kaggle");
    for f in files {
        if let Ok((segs, _)) = normalize_member_path(&f.path) {
            assert!(
                segs.iter()
                    .all(|s| !s.is_empty() && s != ".." && !s.contains('/'))
            );
        }
        if built {
            assert!(
                f.path
                    .split('/')
                    .all(|s| !s.is_empty() && s != "." && s != ".."),
                "{}: {:?}",
                d.id,
                f.path
            );
        }
        if let Some(c) = &f.checksum {
            let (algo, hex) = c.split_once(':').expect("algo:hex");
            let want = match algo {
                "md5" => 32,
                "sha256" => 64,
                _ => panic!("checksum {c:?}"),
            };
            assert!(hex.len() == want && hex.bytes().all(|b| b.is_ascii_hexdigit()));
        }
    }
});
