//! Deterministic mutation fuzzing of the parsers of untrusted input on stable Rust (the
//! cargo-fuzz targets in `fuzz/` explore further with coverage guidance): the archive parsers
//! (ZIP, tar, gzip, bzip2/xz/zstd streams, 7z, RAR through libarchive),
//! the catalog and config files, every host's API answers, directory listing pages and HTTP
//! header values. Every mutant of a valid sample (the archives built here, the text ones the
//! seeds in `fuzz/corpus/`) must give an error or a result that keeps the parser's promises,
//! never a panic, a hang or an escaping path. What the fuzzers found is kept at the end, each
//! as the input that showed it.

use std::io::{Read, Write};

use std::path::Path;

use medimg::archive::{gzip, normalize_member_path, tar, zip};
use medimg::catalog::{Catalog, Locator, Source};
use medimg::config::{self, ConfigFile};
use medimg::credentials::{self, host_of};
use medimg::resolve;
use medimg::source::ApiReply;
use medimg::source::http;
use medimg::source::mock::Scripted;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*: a fixed seed makes every run test the same mutants.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut v = base.to_vec();
    match rng.below(4) {
        0 => {
            for _ in 0..1 + rng.below(8) {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
        }
        1 => v.truncate(rng.below(v.len())),
        2 => {
            // Overwrite a 2- or 4-byte field with an extreme value.
            let i = rng.below(v.len().saturating_sub(4).max(1));
            let val: [u8; 4] = [
                0xFF,
                0xFF,
                0xFF,
                if rng.below(2) == 0 { 0xFF } else { 0x7F },
            ];
            let n = (2 + 2 * rng.below(2)).min(v.len() - i);
            v[i..i + n].copy_from_slice(&val[..n]);
        }
        _ => {
            let i = rng.below(v.len());
            let extra: Vec<u8> = (0..rng.below(64)).map(|_| rng.next() as u8).collect();
            v.splice(i..i, extra);
        }
    }
    v
}

fn sample_zip() -> Vec<u8> {
    let mut w = ::zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (i, m) in [
        ::zip::CompressionMethod::Stored,
        ::zip::CompressionMethod::Deflated,
    ]
    .iter()
    .cycle()
    .take(6)
    .enumerate()
    {
        let opts = ::zip::write::SimpleFileOptions::default().compression_method(*m);
        w.start_file(format!("d{}/f{i}.png", i % 2), opts).unwrap();
        w.write_all(&vec![i as u8; 300 + i * 50]).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn sample_tar_gz() -> (Vec<u8>, Vec<u8>) {
    let mut b = ::tar::Builder::new(Vec::new());
    for i in 0..5 {
        let data = vec![b'a' + i as u8; 700 * (i + 1)];
        let mut h = ::tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append_data(&mut h, format!("x/{i}.dcm"), &data[..])
            .unwrap();
    }
    let t = b.into_inner().unwrap();
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(&t).unwrap();
    (t, e.finish().unwrap())
}

#[test]
fn mutated_zips_never_panic_or_point_outside_the_blob() {
    let base = sample_zip();
    let mut rng = Rng(0x9E3779B97F4A7C15);
    for _ in 0..20_000 {
        let m = mutate(&mut rng, &base);
        if let Ok(entries) = zip::list(&m[..], m.len() as u64) {
            for e in entries {
                assert!(e.header_offset + 30 + e.compressed_size <= m.len() as u64);
                assert!(
                    e.path
                        .iter()
                        .all(|c| c != ".." && !c.is_empty() && !c.contains('/'))
                );
            }
        }
    }
}

#[test]
fn mutated_tar_and_gzip_streams_never_panic() {
    let (t, gz) = sample_tar_gz();
    let mut rng = Rng(0xD1B54A32D192ED03);
    for _ in 0..5_000 {
        let m = mutate(&mut rng, &t);
        if let Ok((entries, _)) = tar::list(&m[..]) {
            for e in entries {
                assert!(e.data_offset + e.size <= m.len() as u64 || e.is_dir);
                assert!(e.path.iter().all(|c| c != ".."));
            }
        }
        let m = mutate(&mut rng, &gz);
        let mut s = gzip::GzStream::indexing(&m[..], 1024);
        let mut out = Vec::new();
        // A mutant either decodes (to some bytes) or fails its checks; it never panics.
        if s.read_to_end(&mut out).is_ok() {
            assert!(out.len() <= 64 << 20);
        }
    }
}

#[test]
fn mutated_bzip2_xz_and_zstd_streams_never_panic() {
    use medimg::archive::compressed::{Codec, Unpack};
    let (t, _) = sample_tar_gz();
    let samples = [
        (Codec::Bzip2, {
            let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
            e.write_all(&t).unwrap();
            e.finish().unwrap()
        }),
        (Codec::Xz, {
            let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
            e.write_all(&t).unwrap();
            e.finish().unwrap()
        }),
        (Codec::Zstd, zstd::encode_all(&t[..], 1).unwrap()),
    ];
    let mut rng = Rng(0x2545F4914F6CDD1D);
    for (codec, packed) in &samples {
        for _ in 0..1_500 {
            let m = mutate(&mut rng, packed);
            let mut s = Unpack::indexing(*codec, &m[..], 1024).with_bomb_limit(1 << 20, 100);
            let mut out = Vec::new();
            if s.read_to_end(&mut out).is_ok() {
                assert!(out.len() <= 64 << 20);
            }
        }
    }
}

#[test]
fn mutated_7z_archives_never_panic_or_name_escaping_paths() {
    use medimg::archive::sevenz;
    let (t, _) = sample_tar_gz();
    let files: Vec<(String, Vec<u8>)> = vec![
        ("a/one.txt".into(), b"hello".to_vec()),
        ("a/b/two.bin".into(), t[..t.len().min(20_000)].to_vec()),
        ("three.txt".into(), b"x".repeat(3000)),
    ];
    let mut w = sevenz_rust2::ArchiveWriter::new(std::io::Cursor::new(Vec::new())).unwrap();
    let entries: Vec<_> = files
        .iter()
        .map(|(n, _)| sevenz_rust2::ArchiveEntry::new_file(n))
        .collect();
    let readers: Vec<sevenz_rust2::SourceReader<&[u8]>> =
        files.iter().map(|(_, d)| (&d[..]).into()).collect();
    w.push_archive_entries(entries, readers).unwrap();
    let base = w.finish().unwrap().into_inner();
    let mut rng = Rng(0x94D049BB133111EB);
    for _ in 0..3_000 {
        let m = mutate(&mut rng, &base);
        let Ok(archive) = sevenz::open(&m[..], m.len() as u64) else {
            continue;
        };
        let Ok((entries, _)) = sevenz::list(&archive) else {
            continue;
        };
        for e in entries {
            assert!(e.path.iter().all(|c| c != ".." && !c.contains('/')));
            if e.size > 0 && e.size < 1 << 20 {
                let mut got = 0u64;
                let _ = sevenz::decode_member(
                    &archive,
                    &mut std::io::Cursor::new(&m),
                    e.file,
                    &mut |b| {
                        got += b.len() as u64;
                        got <= 64 << 20
                    },
                );
            }
        }
    }
}

#[test]
fn mutated_rar_archives_never_panic_name_escaping_paths_or_serve_unchecked_bytes() {
    use medimg::archive::rar;
    // Real RAR 4 and RAR 5 archives (made by RAR; see tests/fixtures/README.md), one solid.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rar");
    let mut rng = Rng(0xD6E8FEB86659FD93);
    for name in [
        "rar4_normal.rar",
        "rar3_subdirs.rar",
        "rar5_multiple_files.rar",
        "rar5_multiple_files_solid.rar",
    ] {
        let base = std::fs::read(dir.join(name)).unwrap();
        for _ in 0..700 {
            let m = mutate(&mut rng, &base);
            let Ok((entries, _)) = rar::list(&m[..], m.len() as u64) else {
                continue;
            };
            for e in entries.iter().filter(|e| !e.is_dir) {
                assert!(e.path.iter().all(|c| c != ".." && !c.contains('/')));
                let mut got = 0u64;
                let r = rar::decode_from(
                    &m[..],
                    m.len() as u64,
                    e.entry,
                    Box::new(|| true),
                    &mut |i, _, b| {
                        if i != e.entry {
                            return false;
                        }
                        got += b.len() as u64;
                        true
                    },
                );
                // What listed decodes again to the size it listed.
                assert!(r.is_ok() && got == e.size, "{name}: {:?} {r:?}", e.path);
            }
        }
    }
}

/// Words that parsers of text treat specially, spliced into text mutants.
const TOKENS: &[&str] = &[
    "..",
    "/",
    "%2F",
    "%2e%2e",
    "\\",
    "\"",
    "'",
    "\n",
    "\0",
    "{",
    "}",
    "[",
    "]",
    "<",
    ">",
    ",",
    ":",
    "=",
    "-",
    "-1",
    "0",
    "18446744073709551615",
    "99999999999999999999",
    "1e308",
    "null",
    "true",
    "&amp;",
    "&#0;",
    "</a>",
    "<a href=\"",
    "bytes ",
    "*/",
    "GMT",
    "@",
    "#",
    "?",
];

/// A mutant of `base` for text parsers: byte-level changes, or a token spliced in or
/// repeated.
fn mutate_text(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    if base.is_empty() || rng.below(2) == 0 {
        let mut v = base.to_vec();
        let i = rng.below(v.len() + 1);
        let t = TOKENS[rng.below(TOKENS.len())].as_bytes();
        let n = if rng.below(8) == 0 {
            1 + rng.below(40)
        } else {
            1
        };
        for _ in 0..n {
            v.splice(i..i, t.iter().copied());
        }
        if rng.below(3) == 0 && !v.is_empty() {
            // Drop a span, as a truncated or edited answer would.
            let a = rng.below(v.len());
            let b = (a + rng.below(32)).min(v.len());
            v.drain(a..b);
        }
        v
    } else {
        mutate(rng, base)
    }
}

/// The seed inputs of cargo-fuzz target `target`.
fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no seeds in {}", dir.display());
    out
}

/// `count` mutants of each seed of `target`, passed to `check`.
fn each_mutant(target: &str, seed: u64, count: usize, check: impl Fn(&[u8])) {
    let mut rng = Rng(seed);
    for (_, base) in seeds(target) {
        check(&base);
        let mut cur = base.clone();
        for i in 0..count {
            // Mutants of mutants reach further from the seed; start over now and then.
            if i % 8 == 0 {
                cur = base.clone();
            }
            cur = mutate_text(&mut rng, &cur);
            check(&cur);
        }
    }
}

fn check_catalog(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let c = match Catalog::parse(&text, "mutant") {
        Ok(c) => c,
        Err(e) => return assert!(!e.to_string().is_empty()),
    };
    for d in &c.datasets {
        for s in &d.sources {
            assert!(s.into.split('/').all(|seg| seg != ".." && seg != "."));
            if let Some(name) = s.file_name() {
                assert!(!name.is_empty() && !name.contains('/') && name != "..");
            }
        }
        let _ = d.fingerprint();
    }
    let csv = medimg::render::catalog_csv(&c, &|_| None);
    assert!(csv.starts_with("id,"));
    let _ = medimg::render::readme(&c);
}

#[test]
fn mutated_catalogs_fail_with_a_message_or_validate() {
    each_mutant("catalog_parse", 0x243F6A8885A308D3, 30_000, check_catalog);
}

/// Label tables (CSV, TSV, a spreadsheet's bytes) mutated: each gives a report or a tree
/// whose folders are names a folder can have and whose files are the dataset's, never a panic.
#[test]
fn mutated_label_tables_are_reported_or_placed_never_a_panic() {
    let entry = |labels: &str| {
        format!(
            "[[dataset]]\nid = \"d\"\ntitle = \"D\"\nmodality = [\"X-ray\"]\norgan = [\"lung\"]\n\
             access = \"open\"\n[[dataset.source]]\ntype = \"http\"\nurl = \"https://h/d.zip\"\n\
             [[dataset.labels]]\n{labels}\n"
        )
    };
    let cases = [
        (
            "table = \"t.csv\"\nimage = \"{image_id}.jpg\"\nlabel = \"dx\"\nsplit_column = \"split\"",
            &b"image_id,dx,split\na,nv,train\nb,\"m/el\",test\nc,,train\n\"d\",bkl,\"tr\"\"ain\"\n"
                [..],
        ),
        (
            "table = \"t.tsv\"\nimage = \"x/{f}\"\nlabel = \"l\"\nseparator = \"|\"\nsplit_folder = true",
            b"f\tl\na.jpg\tA|B\nb.jpg\t|\nc.jpg\tNo Finding\n",
        ),
        (
            "table = \"t.csv\"\nimage = [\"{l}\", \"{r}\"]\none_hot = [\"N\", \"D\"]",
            b"l,r,N,D\na.jpg,b.jpg,1.0,0\nc.jpg,d.jpg,0,true\n",
        ),
    ];
    let files = medimg::labels::Files::new(
        [
            "t.csv", "t.tsv", "x/a.jpg", "x/b.jpg", "y/c.jpg", "y/d.jpg", "a.jpg", "b.jpg",
            "c.jpg", "d.jpg",
        ]
        .iter()
        .enumerate()
        .map(|(i, p)| (i as i64, p.split('/').map(str::to_string).collect(), None)),
    );
    let mut rng = Rng(0x9E3779B97F4A7C15);
    for (labels, table) in cases {
        let c = Catalog::parse(&entry(labels), "t").unwrap();
        let spec = &c.datasets[0].labels;
        let mut cur = table.to_vec();
        for i in 0..3000 {
            if i % 8 == 0 {
                cur = table.to_vec();
            }
            cur = mutate_text(&mut rng, &cur);
            let bytes = cur.clone();
            let tree =
                medimg::labels::build::<()>(spec, &files, &mut |_| Ok(bytes.clone())).unwrap();
            for n in &tree.nodes {
                let name = n.name.as_str();
                assert!(
                    !name.is_empty() && !name.contains('/') && name != "." && name != "..",
                    "{name:?} from {:?}",
                    String::from_utf8_lossy(&cur)
                );
                assert!(n.entry.is_none_or(|e| (0..10).contains(&e)));
            }
            assert_eq!(
                tree.report.links as usize,
                tree.nodes.iter().filter(|n| n.entry.is_some()).count()
            );
        }
    }
}

fn check_config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(cfg) = ConfigFile::parse(&text, Path::new("mutant.toml")) {
        for h in &cfg.host {
            let l = h.limit();
            assert!(l.concurrency >= 1);
            // The limiter divides a minute by the rate: it must give a usable interval.
            if let Some(r) = l.per_minute {
                assert!(std::time::Duration::try_from_secs_f64(60.0 / r).is_ok());
            }
        }
        let _ = config::Mirrors::new(cfg.mirror.clone()).rewrite(&text);
    }
    if let Ok(creds) = credentials::parse_file(&text, "mutant.toml") {
        assert!(creds.iter().all(|c| !c.host.is_empty()));
    }
    let _ = credentials::netrc_entry(&text, "physionet.org");
    for line in text.lines().take(8) {
        if let Ok(n) = config::parse_size(line) {
            assert!(n >= 1);
        }
        let _ = config::parse_deadline(line);
        let _ = config::parse_metrics_addr(line);
    }
    let args: Vec<String> = text.split_whitespace().map(str::to_string).collect();
    let _ = medimg::cli::helper_args(&args);
}

#[test]
fn mutated_config_and_credentials_files_never_panic() {
    each_mutant("config_parse", 0x13198A2E03707344, 12_000, check_config);
}

/// One source per host, the n-th picked by the low four bits of a host answer seed's first
/// byte (see `fuzz/fuzz_targets/host_answers.rs`).
fn hosts() -> Catalog {
    Catalog::parse(include_str!("../fuzz/hosts.toml"), "fuzz/hosts.toml").unwrap()
}

/// The answers of a host answer input: its first byte picks the host and how answers are
/// framed, the rest is the answers separated by NUL bytes.
fn scripted(sel: u8, rest: &[u8]) -> Scripted {
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
    let up = Scripted::new(replies);
    if sel & 128 != 0 { up.repeating() } else { up }
}

fn check_host_answers(hosts: &Catalog, data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let d = &hosts.datasets[usize::from(sel & 15) % hosts.datasets.len()];
    let Ok(files) = resolve::list(&d.sources[0], &scripted(sel, rest)) else {
        return;
    };
    let built = matches!(d.id.as_str(), "dir" | "tcia" | "idc" | "kaggle");
    for f in files {
        if let Ok((segs, _)) = normalize_member_path(&f.path) {
            assert!(segs.iter().all(|s| !s.is_empty() && s != ".."));
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
            let (algo, hex) = c.split_once(':').unwrap();
            assert_eq!(resolve::checksum(algo, Some(hex)).as_ref(), Some(c));
        }
    }
}

#[test]
fn mutated_host_answers_list_or_fail_never_panic() {
    let hosts = hosts();
    each_mutant("host_answers", 0xA4093822299F31D0, 5_000, |m| {
        check_host_answers(&hosts, m)
    });
}

const ROOT: &str = "https://files.example.org/d/";

fn check_dir_listing(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let content_type = [
        None,
        Some("application/json"),
        Some("text/xml"),
        Some("text/html"),
    ][usize::from(sel & 3)];
    let pages: Vec<&[u8]> = rest.split(|&b| b == 0).collect();
    let up = Scripted::new(
        pages
            .iter()
            .map(|body| ApiReply {
                body: body.to_vec(),
                content_type: content_type.map(str::to_string),
                next: None,
            })
            .collect(),
    );
    let src = Source {
        locator: Locator::Dir { url: ROOT.into() },
        extract: false,
        files: Vec::new(),
        into: String::new(),
        mirror: None,
    };
    let Ok(files) = resolve::list(&src, &up) else {
        return;
    };
    for f in files {
        assert!(f.url.starts_with(ROOT), "{:?}", f.url);
        assert!(
            f.path
                .split('/')
                .all(|s| !s.is_empty() && s != "." && s != ".." && !s.contains('\0')),
            "{:?}",
            f.path
        );
        if let Some(n) = f.size {
            let printed = n.to_string();
            assert!(
                pages
                    .iter()
                    .any(|p| p.windows(printed.len()).any(|w| w == printed.as_bytes())),
                "size {n} of {:?} is printed nowhere",
                f.path
            );
        }
    }
}

#[test]
fn mutated_directory_listings_stay_below_their_directory() {
    each_mutant("dir_listing", 0x082EFA98EC4E6C89, 5_000, check_dir_listing);
}

fn check_headers(data: &[u8]) {
    if data.len() < 16 {
        return;
    }
    let (nums, rest) = data.split_at(16);
    let start = u64::from_le_bytes(nums[..8].try_into().unwrap());
    let len = u64::from_le_bytes(nums[8..].try_into().unwrap()) % (1 << 40) + 1;
    let Some(end) = start.checked_add(len) else {
        return;
    };
    let v = String::from_utf8_lossy(rest);
    if let Some((a, b, total)) = http::parse_content_range(&v) {
        assert!(a <= b && b < total, "{v:?}");
    }
    if let Ok(total) = http::partial_total(&(start..end), &v) {
        assert!(start < total, "{v:?}");
    }
    let _ = http::unsatisfied_total(&v);
    let _ = http::parse_http_date(&v);
    let _ = http::retry_after(&v, start);
    let _ = http::link_next(&v);
    let _ = http::signed_expiry(&v);
    let once = http::redact(&v);
    assert_eq!(http::redact(&once), once);
    if let Some(to) = http::redirect_target("https://api.example.org/a/b?x=1", &v) {
        let url = reqwest::Url::parse(&to).unwrap();
        let host = url
            .host_str()
            .map(|h| h.trim_matches(['[', ']']).to_ascii_lowercase());
        assert_eq!(host_of(&to), host, "{to:?}");
    }
}

#[test]
fn mutated_header_values_parse_to_consistent_values_or_none() {
    each_mutant("http_headers", 0x452821E638D01377, 10_000, check_headers);
}

// What the fuzzers found, each kept as the input that showed it (minimized). The header and
// config findings are kept beside their parsers (`source::http`, `config`, `credentials`).

/// `host_answers`: a host that hands out the same next page (a `Link`, a token, a folder)
/// again was asked forever; now the listing fails, naming it.
#[test]
fn found_paging_that_repeats_itself_ends_the_listing() {
    let hosts = hosts();
    for (sel, answers) in [
        (14 | 128, &br#"{"data":[],"links":{"next":"x"}}"#[..]),
        (13 | 128 | 64, b"[]"),
        (
            11 | 128,
            b"{\"concreteType\":\"Folder\"}\0{\"page\":[],\"nextPageToken\":\"t\"}",
        ),
        (
            12 | 128,
            b"{\"mimeType\":\"application/vnd.google-apps.folder\"}\0{\"files\":[],\"nextPageToken\":\"t\"}",
        ),
        (
            8 | 128,
            b"<ListBucketResult><IsTruncated>true</IsTruncated><NextContinuationToken>t</NextContinuationToken></ListBucketResult>",
        ),
    ] {
        let d = &hosts.datasets[usize::from(sel & 15)];
        let up = scripted(sel, answers);
        let e = resolve::list(&d.sources[0], &up).unwrap_err().to_string();
        assert!(e.contains("already gave"), "{}: {e}", d.id);
        assert!(up.calls() < 10, "{}: {} calls", d.id, up.calls());
    }
}

/// `host_answers`: a directory listing whose pages list two links back to themselves (two
/// `-> .` symlinks) took 2^32 pages; one such link listed the tree again 32 levels deep.
#[test]
fn found_directory_link_loops_are_listed_once() {
    let hosts = hosts();
    let page = br#"<a href="loop/">loop/</a> <a href="self/">self/</a> <a href="x.png">x.png</a>"#;
    let up = scripted(128, page);
    let files = resolve::list(&hosts.datasets[0].sources[0], &up).unwrap();
    let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["x.png"]);
    assert_eq!(up.calls(), 3);
}

/// `host_answers`: TCIA identifiers of `..` made paths that climb out of the dataset, and an
/// empty path in PhysioNet's SHA256SUMS.txt named the project's directory as a file.
#[test]
fn found_identifiers_and_lines_that_name_no_file() {
    let hosts = hosts();
    let tcia = b"[{\"SeriesInstanceUID\":\"1\",\"StudyInstanceUID\":\"..\",\"PatientID\":\"..\"}]\0[{\"SOPInstanceUID\":\"2\"}]";
    let e = resolve::list(&hosts.datasets[10].sources[0], &scripted(10, tcia)).unwrap_err();
    assert!(e.to_string().contains("lists no files"), "{e}");
    let sums = b"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855   \n";
    let e = resolve::list(&hosts.datasets[7].sources[0], &scripted(7, sums)).unwrap_err();
    assert!(e.to_string().contains("line 1 names no file"), "{e}");
    check_host_answers(&hosts, &[&[10][..], tcia].concat());
}

#[test]
fn found_a_rar_name_libarchive_cannot_convert_is_an_error_not_a_crash() {
    // cargo-fuzz's rar_list target: a mutant of rar3_subdirs.rar whose header leaves
    // libarchive's pathname NULL, which compress-tools' iterator dereferenced (SIGSEGV;
    // fixed in vendor/compress-tools).
    use medimg::archive::rar;
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rar/found_null_pathname.rar");
    let data = std::fs::read(path).unwrap();
    let _ = rar::list(&data[..], data.len() as u64);
}
