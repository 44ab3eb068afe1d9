//! Hostile upstreams, through a real mount against loopback hosts that misbehave on purpose:
//! redirect loops and endless chains, redirects to other schemes or into the local network,
//! bodies longer or shorter than announced, gzip-encoded answers to Range requests, HTML pages
//! where file bytes or an API answer were expected (on every host type), and listings that
//! never end. Each must end in an errno (`EIO`, or `ESTALE` for a file whose size moved) and a
//! log line saying what is wrong, within bounds, with nothing of it in the cache or the index.

mod common;

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

fn ls(m: &Mount, path: &str) -> Result<Vec<String>, std::io::Error> {
    let mut v: Vec<String> = std::fs::read_dir(m.mnt.join(path))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    v.sort();
    Ok(v)
}

fn read(m: &Mount, path: &str) -> Result<Vec<u8>, std::io::Error> {
    std::fs::read(m.mnt.join(path))
}

/// The errno of a failed call (0 when it succeeded).
fn errno<T>(r: &Result<T, std::io::Error>) -> i32 {
    match r {
        Ok(_) => 0,
        Err(e) => e.raw_os_error().unwrap_or(-1),
    }
}

/// Bytes that are not text, so that nothing mistakes them for a page.
fn data(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// No limit on the emulated hosts' request rates: the tests count requests, not minutes.
const UNLIMITED: &str = "[[host]]\nname = \"zenodo.org\"\nrequests_per_minute = 0\nconcurrency = 8\n\
    [[host]]\nname = \"api.osf.io\"\nrequests_per_minute = 0\nconcurrency = 8\n\
    [[host]]\nname = \"api.figshare.com\"\nrequests_per_minute = 0\n\
    [[host]]\nname = \"ndownloader.figshare.com\"\nrequests_per_minute = 0\n\
    [[host]]\nname = \"www.kaggle.com\"\nrequests_per_minute = 0\n\
    [[host]]\nname = \"data.mendeley.com\"\nrequests_per_minute = 0\n\
    [[host]]\nname = \"api.github.com\"\nrequests_per_minute = 0\n\
    [[host]]\nname = \"www.googleapis.com\"\nconcurrency = 8\n";

/// A catalog fixture whose every `https://HOST/` goes to `/HOST/` on `up`, with `extra`
/// config (mirror rules) first.
fn fixture(up: &Upstream, catalog: &str, extra: &str) -> Fixture {
    Fixture::new(
        up,
        catalog,
        &format!("{extra}{UNLIMITED}{}", all_hosts_to(up)),
    )
}

/// A Zenodo record `record` whose files are `files` (name, size); their bytes are served by
/// whatever routes the test adds for `/zenodo.org/records/{record}/files/{name}`.
fn zenodo_record(up: &Upstream, record: u64, files: Vec<(&'static str, usize)>) {
    up.route(move |r| {
        (r.path == format!("/zenodo.org/api/records/{record}")).then(|| {
            let entries: Vec<_> = files
                .iter()
                .map(|(k, n)| json!({"key": k, "size": n}))
                .collect();
            Answer::json(json!({"id": record, "files": entries}))
        })
    });
}

fn zenodo_entry(id: &str, record: u64) -> String {
    dataset_entry(
        id,
        "",
        &format!("[[dataset.source]]\ntype = \"zenodo\"\nrecord = {record}\n"),
    )
}

/// One Zenodo dataset per case (the log says a dataset's failure once a minute): dataset
/// `case` is record `first + i`, holding `x.bin` of `size` bytes, whose bytes are at
/// [`case_path`]. Returns the catalog.
fn zenodo_cases(up: &Upstream, first: u64, cases: &[&str], size: usize) -> String {
    cases
        .iter()
        .enumerate()
        .map(|(i, case)| {
            zenodo_record(up, first + i as u64, vec![("x.bin", size)]);
            zenodo_entry(case, first + i as u64)
        })
        .collect()
}

/// The path on the loopback server of case `i`'s file (see [`zenodo_cases`]).
fn case_path(first: u64, i: usize) -> String {
    format!("/zenodo.org/records/{}/files/x.bin", first + i as u64)
}

/// What the cache and the index hold, read after the daemon stopped (its databases whole).
struct Kept {
    /// Bytes of block files.
    block_bytes: u64,
    /// Rows of the block table.
    blocks: i64,
    /// Entries of each dataset asked about.
    entries: Vec<i64>,
    /// Files of each dataset asked about whose size is known.
    sized: Vec<i64>,
}

fn kept(fx: &Fixture, datasets: &[&str]) -> Kept {
    let ro = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
    let blocks = rusqlite::Connection::open_with_flags(fx.cache().join("blocks.sqlite"), ro)
        .and_then(|c| c.query_row("SELECT count(*) FROM blocks", [], |r| r.get(0)))
        .unwrap_or(0);
    let index = rusqlite::Connection::open_with_flags(fx.cache().join("index.sqlite"), ro);
    let count = |sql: &str| -> Vec<i64> {
        datasets
            .iter()
            .map(|d| {
                index
                    .as_ref()
                    .ok()
                    .and_then(|c| c.query_row(sql, [d], |r| r.get(0)).ok())
                    .unwrap_or(0)
            })
            .collect()
    };
    let entries = count("SELECT count(*) FROM entries WHERE dataset = ?1");
    let sized =
        count("SELECT count(*) FROM entries WHERE dataset = ?1 AND blob IS NOT NULL AND size >= 0");
    Kept {
        block_bytes: fx.cached_bytes(),
        blocks,
        entries,
        sized,
    }
}

/// Run `f` and assert it returned within `limit` (a generous bound: the point is that it
/// returns at all, not how fast).
fn within<T>(limit: Duration, what: &str, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let out = f();
    assert!(
        t.elapsed() < limit,
        "{what} took {:?} (bound {limit:?})",
        t.elapsed()
    );
    out
}

const BOUND: Duration = Duration::from_secs(30);

#[test]
fn redirect_loops_and_endless_chains_end_in_a_clear_error() {
    let up = Upstream::start();
    let catalog = zenodo_cases(&up, 9001, &["looping", "chained"], 1000);
    up.route(move |r| {
        Some(match r.path.as_str() {
            // Two URLs sending each other back and forth.
            "/zenodo.org/records/9001/files/x.bin" => {
                Answer::redirect(302, "https://zenodo.org/records/9001/files/y.bin")
            }
            "/zenodo.org/records/9001/files/y.bin" => {
                Answer::redirect(302, "https://zenodo.org/records/9001/files/x.bin")
            }
            // A chain that goes on: every hop to a new URL.
            p if p.starts_with("/zenodo.org/records/9002/") => {
                let n: u64 = r.param("hop").and_then(|h| h.parse().ok()).unwrap_or(0);
                Answer::redirect(
                    302,
                    &format!("https://zenodo.org/records/9002/files/x.bin?hop={}", n + 1),
                )
            }
            _ => return None,
        })
    });
    let fx = fixture(&up, &catalog, "");
    let m = fx.mount(&[]);
    let hops = |record: &str| {
        up.log()
            .iter()
            .filter(|l| {
                l.path
                    .starts_with(&format!("/zenodo.org/records/{record}/"))
            })
            .count()
    };
    let r = within(BOUND, "the loop", || read(&m, "datasets/looping/x.bin"));
    assert_eq!(errno(&r), libc::EIO, "{r:?}");
    // Each attempt (the kernel asks twice for a page it could not read) stops when the chain
    // comes back to a URL it asked (x.bin?download=1, y.bin, x.bin, then y.bin again), and is
    // not retried.
    let looped = hops("9001");
    assert!(
        looped % 3 == 0 && (3..=12).contains(&looped),
        "{:?}",
        up.log()
    );
    let r = within(BOUND, "the chain", || read(&m, "datasets/chained/x.bin"));
    assert_eq!(errno(&r), libc::EIO, "{r:?}");
    // The first request and ten redirects (MAX_REDIRECTS) per attempt, then no more.
    let chained = hops("9002");
    assert!(
        chained % 11 == 0 && (11..=44).contains(&chained),
        "{:?}",
        up.log()
    );

    let log = m.log_text();
    assert!(
        log.contains(
            "bad answer: redirect loop: https://zenodo.org/records/9001/files/x.bin leads back \
             to https://zenodo.org/records/9001/files/y.bin after 3 redirects"
        ),
        "{log}"
    );
    assert!(
        log.contains(
            "bad answer: more than 10 redirects in a row (medimg's limit) without reaching the file"
        ),
        "{log}"
    );
    drop(m);
    let k = kept(&fx, &["looping", "chained"]);
    assert_eq!((k.block_bytes, k.blocks), (0, 0));
    // The listings (a root and x.bin each) are kept, no byte of the files.
    assert_eq!(k.entries, [2, 2]);
}

#[test]
fn redirects_to_other_schemes_or_unnamed_local_addresses_are_refused() {
    let up = Upstream::start();
    // A service on this machine that no mirror rule names: nothing may reach it.
    let other = Upstream::start();
    other.put("/secret", b"private".to_vec(), true);
    let o = other.port;
    let cases: Vec<(&str, String)> = vec![
        ("to-loopback", format!("http://127.0.0.1:{o}/secret")),
        ("to-localhost", format!("http://localhost:{o}/secret")),
        ("to-ipv6", format!("http://[::1]:{o}/secret")),
        // The URL parser reads `2130706433` as 127.0.0.1, as a browser does.
        ("to-decimal", format!("http://2130706433:{o}/secret")),
        ("to-private", "http://10.1.2.3/x".into()),
        (
            "to-metadata",
            "http://169.254.169.254/latest/meta-data/".into(),
        ),
        ("to-file", "file:///etc/passwd".into()),
        ("to-ftp", "ftp://127.0.0.1/x".into()),
        (
            "to-data",
            "data:application/octet-stream;base64,AAAAAAAA".into(),
        ),
        // Where the mirror rule points: followed.
        ("to-mirror", format!("{}storage/good.bin", up.base())),
    ];
    let good = data(3000, 1);
    up.put("/storage/good.bin", good.clone(), true);
    let ids: Vec<&str> = cases.iter().map(|(c, _)| *c).collect();
    let mut catalog = zenodo_cases(&up, 9100, &ids[..ids.len() - 1], 8);
    catalog.push_str(&zenodo_cases(&up, 9109, &ids[ids.len() - 1..], good.len()));
    let to = cases.clone();
    up.route(move |r| {
        let i = (0..to.len()).find(|&i| r.path == case_path(9100, i))?;
        Some(Answer::redirect(302, &to[i].1))
    });
    let fx = fixture(&up, &catalog, "");
    let m = fx.mount(&[]);
    assert_eq!(read(&m, "datasets/to-mirror/x.bin").unwrap(), good);
    for (i, (case, _)) in cases.iter().enumerate().take(cases.len() - 1) {
        let r = within(BOUND, case, || read(&m, &format!("datasets/{case}/x.bin")));
        assert_eq!(errno(&r), libc::EIO, "{case}: {r:?}");
        // One request per attempt to the host that redirected: a refusal is not retried.
        let asked = up
            .log()
            .iter()
            .filter(|l| l.path == case_path(9100, i))
            .count();
        assert!((1..=4).contains(&asked), "{case}: {:?}", up.log());
    }
    assert_eq!(other.count(), 0, "a refused redirect reached its target");
    let log = m.log_text();
    for scheme in ["file", "ftp", "data"] {
        assert!(
            log.contains(&format!(
                "bad answer: a redirect to a {scheme}: URL; medimg follows redirects to http \
                 and https only"
            )),
            "{scheme}: {log}"
        );
    }
    for target in [
        format!("http://127.0.0.1:{o}/secret"),
        format!("http://localhost:{o}/secret"),
        format!("http://[::1]:{o}/secret"),
        "http://10.1.2.3/x".into(),
        "http://169.254.169.254/latest/meta-data/".into(),
    ] {
        assert!(
            log.contains(&format!(
                "bad answer: zenodo.org redirects to {target}, a loopback, private or \
                 link-local address that no mirror rule names; refused"
            )),
            "{target}: {log}"
        );
    }
    drop(m);
    let k = kept(&fx, &ids);
    assert_eq!(
        (k.block_bytes, k.blocks),
        (good.len() as u64, 1),
        "only the file that was read is cached"
    );
}

#[test]
fn gzip_encoded_answers_are_refused_and_nothing_of_them_is_kept() {
    let up = Upstream::start();
    let plain = data(20_000, 3);
    let gz = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&plain).unwrap();
        e.finish().unwrap()
    };
    // A server that compresses what it sends whatever the client asked, and answers ranges
    // of the compressed stream (a misconfigured proxy): consistent, and wrong.
    let (z, zlen) = (gz.clone(), gz.len());
    let encoded = move |r: &Req| -> Answer {
        let (status, range, body) = match r.header("range").and_then(|h| {
            let (a, b) = h.strip_prefix("bytes=")?.split_once('-')?;
            let a: usize = a.parse().ok()?;
            let b: usize = b.parse::<usize>().ok()?.min(zlen - 1);
            Some((a, b))
        }) {
            Some((a, b)) => (
                206,
                Some(format!("bytes {a}-{b}/{zlen}")),
                z[a..=b].to_vec(),
            ),
            None => (200, None, z.clone()),
        };
        let mut headers = vec![
            (
                "Content-Type".to_string(),
                "application/octet-stream".to_string(),
            ),
            ("Content-Encoding".to_string(), "gzip".to_string()),
        ];
        if let Some(cr) = range {
            headers.push(("Content-Range".into(), cr));
        }
        Answer::Raw {
            status,
            headers,
            body,
        }
    };
    // Loose files behind a directory listing (sizes unknown until asked), a Zenodo file
    // (size listed), and a Zenodo record whose API answer itself comes gzip-encoded.
    let rec = 9003;
    zenodo_record(&up, rec, vec![("scan.nii", plain.len())]);
    let e1 = Arc::new(encoded);
    let e1b = e1.clone();
    let api_gz = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(json!({"id": 9004, "files": []}).to_string().as_bytes())
            .unwrap();
        e.finish().unwrap()
    };
    up.route(move |r| match r.path.as_str() {
        "/data.example.org/loose/" => Some(Answer::Raw {
            status: 200,
            headers: vec![("Content-Type".into(), "text/html".into())],
            body: b"<html><a href=\"scan.nii\">scan.nii</a></html>".to_vec(),
        }),
        "/data.example.org/loose/scan.nii" => Some(e1(r)),
        "/zenodo.org/records/9003/files/scan.nii" => Some(e1b(r)),
        "/zenodo.org/api/records/9004" => Some(Answer::Raw {
            status: 200,
            headers: vec![
                ("Content-Type".into(), "application/json".into()),
                ("Content-Encoding".into(), "gzip".into()),
            ],
            body: api_gz.clone(),
        }),
        _ => None,
    });
    let catalog = [
        dataset_entry(
            "loose",
            "",
            "[[dataset.source]]\ntype = \"http\"\nformat = \"dir\"\nurl = \"https://data.example.org/loose/\"\n",
        ),
        zenodo_entry("zen", rec),
        zenodo_entry("zapi", 9004),
    ]
    .concat();
    let fx = fixture(&up, &catalog, "");
    let m = fx.mount(&[]);
    assert_eq!(ls(&m, "datasets/loose").unwrap(), ["scan.nii"]);
    let st = within(BOUND, "stat", || {
        std::fs::metadata(m.mnt.join("datasets/loose/scan.nii"))
    });
    assert_eq!(errno(&st), libc::EIO, "{st:?}");
    let r = within(BOUND, "read", || read(&m, "datasets/loose/scan.nii"));
    assert_eq!(errno(&r), libc::EIO, "{r:?}");
    let r = within(BOUND, "read", || read(&m, "datasets/zen/scan.nii"));
    assert_eq!(errno(&r), libc::EIO, "{r:?}");
    let r = within(BOUND, "list", || ls(&m, "datasets/zapi"));
    assert_eq!(errno(&r), libc::EIO, "{r:?}");
    let log = m.log_text();
    assert!(
        log.contains(
            "the answer is encoded (Content-Encoding: gzip) although medimg asked for it \
             unencoded (Accept-Encoding: identity)"
        ),
        "{log}"
    );
    assert!(log.contains("/zenodo.org/api/records/9004"), "{log}");
    // Not retried: the host's answer is wrong, not late.
    let asked = up
        .log()
        .iter()
        .filter(|l| l.path.ends_with("/scan.nii"))
        .count();
    assert!(asked <= 8, "{:?}", up.log());
    drop(m);
    let k = kept(&fx, &["loose", "zen", "zapi"]);
    assert_eq!((k.block_bytes, k.blocks), (0, 0));
    assert_eq!(k.entries[2], 0, "an encoded API answer lists nothing");
    assert_eq!(
        k.sized,
        [0, 1, 0],
        "the loose file's size is not the encoded answer's"
    );
}

/// What a [`RawServer`] writes for one request: the bytes on the wire, and whether it closes
/// the connection after them.
struct RawAnswer {
    bytes: Vec<u8>,
    close: bool,
}

impl RawAnswer {
    /// Headers as given (no length added), then `body`: what HTTP/1.1 framing hyper would
    /// never let a test server send.
    fn framed(status: &str, headers: &[(&str, String)], body: &[u8], close: bool) -> RawAnswer {
        let mut bytes = format!("HTTP/1.1 {status}\r\n").into_bytes();
        for (k, v) in headers {
            bytes.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        bytes.extend_from_slice(b"\r\n");
        bytes.extend_from_slice(body);
        RawAnswer { bytes, close }
    }

    /// `200` with a chunked body (no length announced).
    fn chunked(body: &[u8]) -> RawAnswer {
        let mut bytes = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\
            Content-Type: application/octet-stream\r\n\r\n"
            .to_vec();
        for c in body.chunks(16 << 10) {
            bytes.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
            bytes.extend_from_slice(c);
            bytes.extend_from_slice(b"\r\n");
        }
        bytes.extend_from_slice(b"0\r\n\r\n");
        RawAnswer {
            bytes,
            close: false,
        }
    }
}

/// A loopback server that writes whatever bytes its handler gives, so that a test can send
/// bodies longer or shorter than their headers say. The handler gets the path and the `Range`
/// header; every request is logged.
struct RawServer {
    port: u16,
    log: Arc<RawLog>,
    stop: Arc<AtomicBool>,
}

/// The path and `Range` header of every request a [`RawServer`] answered.
type RawLog = std::sync::Mutex<Vec<(String, Option<String>)>>;

type RawHandler = dyn Fn(&str, Option<&str>) -> RawAnswer + Send + Sync;

impl RawServer {
    fn start(handler: impl Fn(&str, Option<&str>) -> RawAnswer + Send + Sync + 'static) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<RawHandler> = Arc::new(handler);
        let (l2, s2) = (log.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s2.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (h, l) = (handler.clone(), l2.clone());
                std::thread::spawn(move || serve_raw(conn, &*h, &l));
            }
        });
        RawServer { port, log, stop }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    fn log(&self) -> Vec<(String, Option<String>)> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Answer requests on one connection until it closes.
fn serve_raw(mut conn: std::net::TcpStream, handler: &RawHandler, log: &RawLog) {
    let mut buf = Vec::new();
    let mut piece = [0u8; 4096];
    loop {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            match conn.read(&mut piece) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&piece[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end + 4);
        let path = head
            .lines()
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .unwrap_or("")
            .to_string();
        let range = head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("range")
                .then(|| v.trim().to_string())
        });
        log.lock().unwrap().push((path.clone(), range.clone()));
        let answer = handler(&path, range.as_deref());
        if conn.write_all(&answer.bytes).is_err() || answer.close {
            let _ = conn.shutdown(std::net::Shutdown::Both);
            return;
        }
    }
}

#[test]
fn bodies_longer_or_shorter_than_announced_are_errors_never_bytes() {
    let up = Upstream::start();
    let n = 5000usize;
    let content = data(n, 7);
    let big = data(200_000, 9);
    // Answers over raw sockets: lengths that disagree with the body actually sent.
    let (c, b) = (content.clone(), big.clone());
    let raw = RawServer::start(move |path, range| match path {
        // `Content-Length` says 5000; 4000 bytes come, then the connection closes.
        "/cl-short.bin" => RawAnswer::framed(
            "206 Partial Content",
            &[
                ("Content-Range", format!("bytes 0-4999/{n}")),
                ("Content-Length", n.to_string()),
            ],
            &c[..4000],
            true,
        ),
        // `Content-Length` says 5000; 5100 bytes come on a kept-alive connection.
        "/cl-long.bin" => {
            let mut body = c.clone();
            body.extend_from_slice(&[b'X'; 100]);
            RawAnswer::framed(
                "206 Partial Content",
                &[
                    ("Content-Range", format!("bytes 0-4999/{n}")),
                    ("Content-Length", n.to_string()),
                ],
                &body,
                false,
            )
        }
        "/loose/" => {
            let page = b"<html><a href=\"longer.bin\">longer.bin</a> \
                <a href=\"shorter.bin\">shorter.bin</a></html>";
            RawAnswer::framed(
                "200 OK",
                &[
                    ("Content-Type", "text/html".into()),
                    ("Content-Length", page.len().to_string()),
                ],
                page,
                false,
            )
        }
        // A host that ignores Range: 200 KB announced to the size probe; then, downloaded
        // whole, a chunked body 100 bytes longer, or 50 KB shorter.
        "/loose/longer.bin" | "/loose/shorter.bin" if range.is_some() => RawAnswer::framed(
            "200 OK",
            &[("Content-Length", b.len().to_string())],
            &b,
            true,
        ),
        "/loose/longer.bin" => {
            let mut body = b.clone();
            body.extend_from_slice(&[b'X'; 100]);
            RawAnswer::chunked(&body)
        }
        "/loose/shorter.bin" => RawAnswer::chunked(&b[..150_000]),
        _ => RawAnswer::framed(
            "404 Not Found",
            &[("Content-Length", "0".into())],
            b"",
            false,
        ),
    });
    // Answers through the ordinary test server: `Content-Range` says one thing, the body
    // (whose length hyper announces truthfully) another.
    let cases = ["range-long", "range-short", "cl-short", "cl-long"];
    let c = content.clone();
    up.route(move |r| {
        let i = (0..cases.len()).find(|&i| r.path == case_path(9200, i))?;
        let cr = ("Content-Range".to_string(), format!("bytes 0-4999/{n}"));
        Some(match cases[i] {
            "range-long" => Answer::Raw {
                status: 206,
                headers: vec![cr],
                body: [&c[..], &[b'X'; 100]].concat(),
            },
            "range-short" => Answer::Raw {
                status: 206,
                headers: vec![cr],
                body: c[..4900].to_vec(),
            },
            other => Answer::redirect(302, &format!("https://raw.example.org/{other}.bin")),
        })
    });
    let catalog = [
        zenodo_cases(&up, 9200, &cases, n),
        dataset_entry(
            "whole",
            "",
            "[[dataset.source]]\ntype = \"http\"\nformat = \"dir\"\nurl = \"https://raw.example.org/loose/\"\n",
        ),
    ]
    .concat();
    let mirror = format!(
        "[[mirror]]\nfrom = \"https://raw.example.org/\"\nto = \"{}\"\n",
        raw.base()
    );
    let fx = fixture(&up, &catalog, &mirror);
    let m = fx.mount(&["--block-size", "64KiB"]);
    for case in &cases[..3] {
        let r = within(BOUND, case, || read(&m, &format!("datasets/{case}/x.bin")));
        assert_eq!(errno(&r), libc::EIO, "{case}: {r:?}");
    }
    // What `Content-Length` frames is the body: the bytes after it are not the file's, and
    // are never served as such.
    assert_eq!(read(&m, "datasets/cl-long/x.bin").unwrap(), content);
    // The whole downloads: another size than the one announced is a changed file.
    assert_eq!(
        ls(&m, "datasets/whole").unwrap(),
        ["longer.bin", "shorter.bin"]
    );
    for name in ["longer.bin", "shorter.bin"] {
        let st = std::fs::metadata(m.mnt.join(format!("datasets/whole/{name}"))).unwrap();
        assert_eq!(st.len(), big.len() as u64);
        let r = within(BOUND, name, || read(&m, &format!("datasets/whole/{name}")));
        assert_eq!(errno(&r), libc::ESTALE, "{name}: {r:?}");
    }
    let log = m.log_text();
    assert!(
        log.contains("the server sent more than the 5000 bytes asked for"),
        "{log}"
    );
    assert!(
        log.contains("asked for bytes 0-4999, got 4900 bytes"),
        "{log}"
    );
    assert!(
        log.contains(
            "/cl-short.bin: error decoding response body: request or response body \
             error: error reading a body from connection: end of file before message length reached"
        ),
        "{log}"
    );
    assert!(log.contains("changed upstream"), "{log}");
    // A body cut short is worth retrying (the network may have cut it): ATTEMPTS times for
    // each of the kernel's two tries, no more.
    let short = raw
        .log()
        .iter()
        .filter(|(p, _)| p == "/cl-short.bin")
        .count();
    assert!((1..=8).contains(&short), "{:?}", raw.log());
    drop(m);
    let k = kept(&fx, &["whole"]);
    assert_eq!(
        (k.block_bytes, k.blocks),
        (n as u64, 1),
        "only cl-long's 5000 announced bytes are kept"
    );
    assert_eq!(k.sized, [2], "the sizes the probe saw");
}

/// A login page, as a host, a firewall or a captcha answers with 200 where it will not serve.
fn login_page() -> Answer {
    Answer::Raw {
        status: 200,
        headers: vec![("Content-Type".into(), "text/html; charset=utf-8".into())],
        body: b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head>\
            <body><form action=\"/login\"><input name=\"user\"></form></body></html>"
            .to_vec(),
    }
}

/// One emulated host of every type, each listing one file whose bytes are a login page, and
/// (with `waf` set) answering every API call with a login page too.
struct EveryHost {
    catalog: String,
    /// Dataset id, the path of its file in the mount, and where its byte URL ends.
    files: Vec<(&'static str, &'static str, &'static str)>,
    /// Dataset id, and how the log says the API answer was not what it should be.
    apis: Vec<(&'static str, &'static str)>,
}

fn every_host(up: &Upstream, waf: Arc<AtomicBool>) -> EveryHost {
    const N: usize = 1000;
    let sha = "0123456789abcdef0123456789abcdef01234567";
    let json_expected = "where a JSON answer was expected";
    // The API calls of every host, answered with a login page while `waf` is set.
    let api_paths: &[&str] = &[
        "/zenodo.org/api/",
        "/api.figshare.com/",
        "/data.mendeley.com/public-api/",
        "/api.github.com/",
        "/www.kaggle.com/api/v1/datasets/view/",
        "/physionet.org/files/ptb/1.0.0/SHA256SUMS.txt",
        "/bucket.s3.amazonaws.com/",
        "/pypi.org/",
        "/services.cancerimagingarchive.net/nbia-api/services/v4/getSeries",
        "/repo-prod.prod.sagebase.org/repo/v1/entity/syn1",
        "/www.googleapis.com/drive/v3/files/g1",
        "/huggingface.co/api/",
        "/api.osf.io/",
        "/dataverse.harvard.edu/api/datasets/",
    ];
    let w = waf.clone();
    up.route(move |r| {
        let listing = api_paths.iter().any(|p| r.path.starts_with(p))
            && !(r.path.starts_with("/bucket.s3.amazonaws.com/") && r.query.is_empty())
            && r.param("alt").is_none();
        (w.load(Ordering::SeqCst) && listing).then(login_page)
    });
    // Where the bytes would be: a login page instead.
    let byte_paths: &[&str] = &[
        "/zenodo.org/records/1/files/x.bin",
        "/s3-eu-west-1.amazonaws.com/pfigshare/20",
        "/data.mendeley.com/public-files/datasets/m3/files/u1/file_downloaded",
        "/github.com/lab/data/releases/download/v1/x.bin",
        "/raw.githubusercontent.com/lab/data/0123456789abcdef0123456789abcdef01234567/d/x.bin",
        "/www.kaggle.com/api/v1/datasets/download/o/k",
        "/physionet.org/files/ptb/1.0.0/x.bin",
        "/bucket.s3.amazonaws.com/p/x.bin",
        "/idc-open-data.s3.amazonaws.com/aaaaaaaa-0000-4000-8000-000000000001/i1.dcm",
        "/services.cancerimagingarchive.net/nbia-api/services/v4/getSingleImage",
        "/proddata.sagebase.org/x.bin",
        "/www.googleapis.com/drive/v3/files/g1",
        "/huggingface.co/datasets/org/r/resolve/rev/x.bin",
        "/osf.io/download/x1/",
        "/dataverse.harvard.edu/api/access/datafile/7",
        "/data.example.org/plain/x.bin",
        "/data.example.org/loose/x.bin",
    ];
    up.route(move |r| {
        let media = r.path != "/www.googleapis.com/drive/v3/files/g1" || r.param("alt").is_some();
        (byte_paths.contains(&r.path.as_str()) && media).then(login_page)
    });
    // The hosts' listings, as their APIs answer.
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
    let digest = {
        use sha2::Digest;
        sha2::Sha256::digest(&wheel)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    up.put("/files.pythonhosted.org/idc.whl", wheel, true);
    let s3_page = |keys: &[&str]| {
        let mut xml = String::from("<?xml version=\"1.0\"?><ListBucketResult>");
        for k in keys {
            xml.push_str(&format!(
                "<Contents><Key>{k}</Key><Size>{N}</Size></Contents>"
            ));
        }
        xml.push_str("<IsTruncated>false</IsTruncated></ListBucketResult>");
        Answer::Raw {
            status: 200,
            headers: vec![("Content-Type".into(), "application/xml".into())],
            body: xml.into_bytes(),
        }
    };
    up.route(move |r| {
        let file = json!({"key": "x.bin", "size": N});
        Some(match r.path.as_str() {
            "/zenodo.org/api/records/1" => Answer::json(json!({"id": 1, "files": [file]})),
            "/api.figshare.com/v2/articles/2/versions/1" => Answer::json(json!({"files": [
                {"id": 20, "name": "x.bin", "size": N, "is_link_only": false}]})),
            "/api.figshare.com/v2/file/download/20" => {
                Answer::redirect(302, "https://s3-eu-west-1.amazonaws.com/pfigshare/20")
            }
            "/data.mendeley.com/public-api/datasets/m3/folders/1" => Answer::json(json!([])),
            "/data.mendeley.com/public-api/datasets/m3/files" => Answer::json(json!([
                {"filename": "x.bin", "size": N, "content_details": {"download_url":
                 "https://data.mendeley.com/public-files/datasets/m3/files/u1/file_downloaded"}}])),
            "/api.github.com/repos/lab/data/releases/tags/v1" => Answer::json(json!({"assets": [
                {"name": "x.bin", "size": N,
                 "browser_download_url": "https://github.com/lab/data/releases/download/v1/x.bin"}]})),
            p if p == format!("/api.github.com/repos/lab/data/git/trees/{sha}") => {
                Answer::json(json!({"truncated": false, "tree": [
                    {"path": "d", "type": "tree"}, {"path": "d/x.bin", "type": "blob", "size": N}]}))
            }
            "/www.kaggle.com/api/v1/datasets/view/o/k" => {
                Answer::json(json!({"currentVersionNumber": 2}))
            }
            "/physionet.org/files/ptb/1.0.0/SHA256SUMS.txt" => Answer::Raw {
                status: 200,
                headers: vec![("Content-Type".into(), "text/plain".into())],
                body: format!("{}  x.bin\n", "ab".repeat(32)).into_bytes(),
            },
            "/physionet.org/files/ptb/1.0.0/" => Answer::status(404, "not found"),
            "/bucket.s3.amazonaws.com/" => s3_page(&["p/x.bin"]),
            "/idc-open-data.s3.amazonaws.com/" => {
                let prefix = r.param("prefix").unwrap_or_default();
                if prefix.starts_with("aaaaaaaa-0000-4000-8000-000000000001") {
                    s3_page(&["aaaaaaaa-0000-4000-8000-000000000001/i1.dcm"])
                } else {
                    s3_page(&[])
                }
            }
            "/idc-open-data-two.s3.amazonaws.com/" => s3_page(&[]),
            "/pypi.org/pypi/idc-index-data/25.0.5/json" => Answer::json(json!({"urls": [
                {"packagetype": "bdist_wheel", "url": "https://files.pythonhosted.org/idc.whl",
                 "digests": {"sha256": digest}}]})),
            "/services.cancerimagingarchive.net/nbia-api/services/v4/getSeries" => {
                Answer::json(json!([{"SeriesInstanceUID": "1.2.3", "StudyInstanceUID": "1.2",
                    "PatientID": "P1", "Modality": "CT"}]))
            }
            "/services.cancerimagingarchive.net/nbia-api/services/v4/getSOPInstanceUIDs" => {
                Answer::json(json!([{"SOPInstanceUID": "1.2.3.4"}]))
            }
            "/repo-prod.prod.sagebase.org/repo/v1/entity/syn1" => Answer::json(json!({
                "concreteType": "org.sagebionetworks.repo.model.FileEntity", "name": "x.bin",
                "versionNumber": 1, "dataFileHandleId": "91"})),
            "/repo-prod.prod.sagebase.org/repo/v1/entity/syn1/version/1/filehandles" => {
                Answer::json(json!({"list": [{"id": "91", "contentSize": N}]}))
            }
            "/repo-prod.prod.sagebase.org/repo/v1/entity/syn1/version/1/file" => {
                Answer::redirect(307, "https://proddata.sagebase.org/x.bin")
            }
            "/www.googleapis.com/drive/v3/files/g1" => Answer::json(json!({
                "id": "g1", "name": "x.bin", "mimeType": "application/octet-stream",
                "size": N.to_string()})),
            "/huggingface.co/api/datasets/org/r/tree/rev" => Answer::json(json!([
                {"type": "file", "path": "x.bin", "size": N}])),
            "/api.osf.io/v2/nodes/o5/files/osfstorage/" => Answer::json(json!({"data": [
                {"attributes": {"kind": "file", "name": "x.bin", "size": N},
                 "links": {"download": "https://osf.io/download/x1/"}}], "links": {"next": null}})),
            "/dataverse.harvard.edu/api/datasets/:persistentId/versions/1.0/files" => {
                Answer::json(json!({"status": "OK", "data": [
                    {"label": "x.bin", "dataFile": {"id": 7, "filesize": N}}]}))
            }
            "/data.example.org/loose/" => Answer::Raw {
                status: 200,
                headers: vec![("Content-Type".into(), "text/html".into())],
                body: b"<html><a href=\"x.bin\">x.bin</a></html>".to_vec(),
            },
            _ => return None,
        })
    });
    let src =
        |id: &str, toml: &str| dataset_entry(id, "", &format!("[[dataset.source]]\n{toml}\n"));
    let catalog = [
        src("zen", "type = \"zenodo\"\nrecord = 1"),
        src("fig", "type = \"figshare\"\narticle = 2\nversion = 1"),
        src("men", "type = \"mendeley\"\ndataset = \"m3\"\nversion = 1"),
        src("ghr", "type = \"github-release\"\nrepo = \"lab/data\"\ntag = \"v1\""),
        src(
            "ght",
            &format!("type = \"github-tree\"\nrepo = \"lab/data\"\ncommit = \"{sha}\"\npath = \"d\""),
        ),
        src("kag", "type = \"kaggle\"\ndataset = \"o/k\"\nversion = 2"),
        src("kagl", "type = \"kaggle\"\ndataset = \"o/k\"\nversion = \"latest\""),
        src("phy", "type = \"physionet\"\nproject = \"ptb\"\nversion = \"1.0.0\""),
        src(
            "s3",
            "type = \"s3\"\nbucket = \"https://bucket.s3.amazonaws.com\"\nprefixes = [\"p/\"]",
        ),
        src("idc", "type = \"idc\"\ncollection = \"lidc_idri\"\nindex = \"25.0.5\""),
        src("tcia", "type = \"tcia\"\ncollection = \"Pancreas-CT\""),
        src("syn", "type = \"synapse\"\nid = \"syn1\""),
        src("gd", "type = \"gdrive\"\nid = \"g1\""),
        src("hf", "type = \"huggingface\"\nrepo = \"org/r\"\nrevision = \"rev\""),
        src("osf", "type = \"osf\"\nproject = \"o5\""),
        src(
            "dv",
            "type = \"dataverse\"\nserver = \"dataverse.harvard.edu\"\ndoi = \"doi:10.1/X\"\nversion = \"1.0\"",
        ),
        src(
            "plain",
            "type = \"http\"\nurl = \"https://data.example.org/plain/x.bin\"\nformat = \"file\"",
        ),
        src(
            "dir",
            "type = \"http\"\nformat = \"dir\"\nurl = \"https://data.example.org/loose/\"",
        ),
    ]
    .concat();
    let idc_file = "LIDC-IDRI-0001/1.3.6.1.4.1.14519.5.2.1.6279.6001.21/\
        CT_1.3.6.1.4.1.14519.5.2.1.6279.6001.11/i1.dcm";
    EveryHost {
        catalog,
        files: vec![
            ("zen", "x.bin", "/zenodo.org/records/1/files/x.bin"),
            ("fig", "x.bin", "/s3-eu-west-1.amazonaws.com/pfigshare/20"),
            ("men", "x.bin", "/files/u1/file_downloaded"),
            (
                "ghr",
                "x.bin",
                "/github.com/lab/data/releases/download/v1/x.bin",
            ),
            ("ght", "x.bin", "/d/x.bin"),
            ("kag", "", "/www.kaggle.com/api/v1/datasets/download/o/k"),
            ("phy", "x.bin", "/physionet.org/files/ptb/1.0.0/x.bin"),
            ("s3", "p/x.bin", "/bucket.s3.amazonaws.com/p/x.bin"),
            ("idc", idc_file, "/i1.dcm"),
            ("tcia", "P1/1.2/CT_1.2.3/1.2.3.4.dcm", "/getSingleImage"),
            ("syn", "x.bin", "/proddata.sagebase.org/x.bin"),
            ("gd", "x.bin", "/www.googleapis.com/drive/v3/files/g1"),
            (
                "hf",
                "x.bin",
                "/huggingface.co/datasets/org/r/resolve/rev/x.bin",
            ),
            ("osf", "x.bin", "/osf.io/download/x1/"),
            (
                "dv",
                "x.bin",
                "/dataverse.harvard.edu/api/access/datafile/7",
            ),
            ("plain", "", "/data.example.org/plain/x.bin"),
            ("dir", "x.bin", "/data.example.org/loose/x.bin"),
        ],
        apis: vec![
            ("zen", json_expected),
            ("fig", json_expected),
            ("men", json_expected),
            ("ghr", json_expected),
            ("ght", json_expected),
            ("kagl", json_expected),
            ("phy", "where SHA256SUMS.txt was expected"),
            ("s3", "where an XML listing (ListObjectsV2) was expected"),
            ("idc", json_expected),
            ("tcia", json_expected),
            ("syn", json_expected),
            ("gd", json_expected),
            ("hf", json_expected),
            ("osf", json_expected),
            ("dv", json_expected),
        ],
    }
}

/// The credentials the hosts that want one are given.
const TOKENS: [(&str, &str); 5] = [
    ("KAGGLE_API_TOKEN", "kt"),
    ("SYNAPSE_AUTH_TOKEN", "st"),
    ("GOOGLE_API_KEY", "gk"),
    ("PHYSIONET_USERNAME", "u"),
    ("PHYSIONET_PASSWORD", "p"),
];

#[test]
fn an_html_page_where_bytes_were_expected_is_an_error_on_every_host() {
    let up = Upstream::start();
    let hosts = every_host(&up, Arc::new(AtomicBool::new(false)));
    let fx = fixture(&up, &hosts.catalog, "");
    let m = fx.mount_env(&[], &TOKENS);
    for (id, file, _) in &hosts.files {
        // A zip (Kaggle's) or a plain file (`format = "file"`) is probed when listed.
        let r = within(BOUND, id, || {
            if file.is_empty() {
                ls(&m, &format!("datasets/{id}")).map(|_| Vec::new())
            } else {
                read(&m, &format!("datasets/{id}/{file}"))
            }
        });
        assert_eq!(errno(&r), libc::EIO, "{id}: {r:?}\n{}", m.log_text());
    }
    let log = m.log_text();
    for (id, _, url_end) in &hosts.files {
        let said = log.lines().any(|l| {
            l.contains(&format!("dataset {id}:"))
                && l.contains(url_end)
                && l.contains("got an HTML page (Content-Type \"text/html; charset=utf-8\") where file bytes were expected; the host may want a login, accepted terms, or a human")
        });
        assert!(said, "{id}: {log}");
    }
    drop(m);
    let ids: Vec<&str> = hosts.files.iter().map(|f| f.0).collect();
    let k = kept(&fx, &ids);
    assert_eq!(
        (k.block_bytes, k.blocks),
        (0, 0),
        "no byte of a login page is kept"
    );
    for ((id, ..), sized) in hosts.files.iter().zip(&k.sized) {
        // Sizes listed by the host's API are kept; none is learnt from a login page.
        let listed = !["kag", "phy", "tcia", "plain", "dir"].contains(id);
        assert_eq!(*sized, i64::from(listed), "{id}");
    }
}

#[test]
fn an_html_page_where_an_api_answer_was_expected_is_an_error_on_every_host() {
    let up = Upstream::start();
    let hosts = every_host(&up, Arc::new(AtomicBool::new(true)));
    let fx = fixture(&up, &hosts.catalog, "");
    let m = fx.mount_env(&[], &TOKENS);
    for (id, _) in &hosts.apis {
        let r = within(BOUND, id, || ls(&m, &format!("datasets/{id}")));
        assert_eq!(errno(&r), libc::EIO, "{id}: {r:?}");
    }
    let log = m.log_text();
    for (id, why) in &hosts.apis {
        let said = log
            .lines()
            .any(|l| l.contains(&format!("dataset {id}: cannot list")) && l.contains(why));
        assert!(said, "{id}: {log}");
    }
    drop(m);
    let ids: Vec<&str> = hosts.apis.iter().map(|a| a.0).collect();
    let k = kept(&fx, &ids);
    assert!(k.entries.iter().all(|&n| n == 0), "{:?}", k.entries);
    assert_eq!((k.block_bytes, k.blocks), (0, 0));
}

#[test]
fn listings_that_never_end_stop_at_their_bound() {
    let up = Upstream::start();
    // Every paged API keeps answering with a next page (a new one each time), or with the
    // same one again; a directory tree has no bottom.
    up.route(|r| {
        let n: u64 = ["page", "cursor", "pageToken", "continuation-token"]
            .iter()
            .find_map(|k| r.param(k)?.trim_start_matches('t').parse().ok())
            .unwrap_or(1);
        let path = r.path.as_str();
        Some(match path {
            "/api.osf.io/v2/nodes/endless/files/osfstorage/" => Answer::json(json!({"data": [],
                "links": {"next": format!("https://api.osf.io/v2/nodes/endless/files/osfstorage/?page={}", n + 1)}})),
            "/api.osf.io/v2/nodes/again/files/osfstorage/" => Answer::json(json!({"data": [],
                "links": {"next": "https://api.osf.io/v2/nodes/again/files/osfstorage/?page=2"}})),
            "/repo-prod.prod.sagebase.org/repo/v1/entity/syn9" => Answer::json(json!({
                "concreteType": "org.sagebionetworks.repo.model.Folder", "name": "f"})),
            "/repo-prod.prod.sagebase.org/repo/v1/entity/children" => {
                let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
                let t: u64 = body["nextPageToken"]
                    .as_str()
                    .and_then(|t| t.trim_start_matches('t').parse().ok())
                    .unwrap_or(1);
                Answer::json(json!({"page": [], "nextPageToken": format!("t{}", t + 1)}))
            }
            "/www.googleapis.com/drive/v3/files/gfolder" => Answer::json(json!({
                "id": "gfolder", "name": "f", "mimeType": "application/vnd.google-apps.folder"})),
            "/www.googleapis.com/drive/v3/files" => {
                Answer::json(json!({"files": [], "nextPageToken": format!("t{}", n + 1)}))
            }
            "/huggingface.co/api/datasets/org/endless/tree/rev" => Answer::json(json!([])).with(
                "Link",
                &format!(
                    "<https://huggingface.co/api/datasets/org/endless/tree/rev?recursive=true&cursor={}>; rel=\"next\"",
                    n + 1
                ),
            ),
            "/endless.s3.amazonaws.com/" | "/again.s3.amazonaws.com/" => {
                let next = if path.starts_with("/again") { 2 } else { n + 1 };
                Answer::Raw {
                    status: 200,
                    headers: vec![("Content-Type".into(), "application/xml".into())],
                    body: format!(
                        "<ListBucketResult><IsTruncated>true</IsTruncated>\
                         <NextContinuationToken>t{next}</NextContinuationToken></ListBucketResult>"
                    )
                    .into_bytes(),
                }
            }
            // Each directory links a subdirectory below it, and itself: no bottom. Each level
            // holds a file of its own, so no page repeats one above it (a page that does is a
            // link loop, skipped: see tests/fuzz_parsers.rs).
            p if p.starts_with("/data.example.org/deep/") => Answer::Raw {
                status: 200,
                headers: vec![("Content-Type".into(), "text/html".into())],
                body: format!(
                    "<html><a href=\"./\">.</a><a href=\"a/\">a/</a>\
                     <a href=\"x{0}.bin\">x{0}.bin</a></html>",
                    p.len()
                )
                .into_bytes(),
            },
            _ => return None,
        })
    });
    let src =
        |id: &str, toml: &str| dataset_entry(id, "", &format!("[[dataset.source]]\n{toml}\n"));
    let catalog = [
        src("osf-endless", "type = \"osf\"\nproject = \"endless\""),
        src("osf-again", "type = \"osf\"\nproject = \"again\""),
        src("syn-endless", "type = \"synapse\"\nid = \"syn9\""),
        src("gd-endless", "type = \"gdrive\"\nid = \"gfolder\""),
        src(
            "hf-endless",
            "type = \"huggingface\"\nrepo = \"org/endless\"\nrevision = \"rev\"",
        ),
        src(
            "s3-endless",
            "type = \"s3\"\nbucket = \"https://endless.s3.amazonaws.com\"\nprefixes = [\"p/\"]",
        ),
        src(
            "s3-again",
            "type = \"s3\"\nbucket = \"https://again.s3.amazonaws.com\"\nprefixes = [\"p/\"]",
        ),
        src(
            "dir-deep",
            "type = \"http\"\nformat = \"dir\"\nurl = \"https://data.example.org/deep/\"",
        ),
    ]
    .concat();
    let fx = fixture(&up, &catalog, "");
    // A reader waits for the listing to its end here (ten thousand pages each, on a loaded
    // machine), so that it gets the listing's own error rather than the deadline's.
    let m = fx.mount_env(&["--deadline", "300s"], &TOKENS);
    let ids = [
        "osf-endless",
        "osf-again",
        "syn-endless",
        "gd-endless",
        "hf-endless",
        "s3-endless",
        "s3-again",
        "dir-deep",
    ];
    // All at once: the bound is on each listing, not on the daemon.
    let results: Vec<(String, i32)> = std::thread::scope(|sc| {
        let started = Instant::now();
        let handles: Vec<_> = ids
            .iter()
            .map(|id| {
                let m = &m;
                sc.spawn(move || (id.to_string(), errno(&ls(m, &format!("datasets/{id}")))))
            })
            .collect();
        let out = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "{:?}",
            started.elapsed()
        );
        out
    });
    for (id, e) in &results {
        assert_eq!(*e, libc::EIO, "{id}");
    }
    let log = m.log_text();
    let said = |id: &str, what: &str| {
        assert!(
            log.lines().any(|l| l.contains(&format!("dataset {id}: cannot list"))
                && l.contains("the listing does not end: ")
                && l.contains(what)
                && l.contains("medimg stopped there (if the source really is this large, point it at a sub-folder or prefix)")),
            "{id}: {what}: {log}"
        );
    };
    for id in [
        "osf-endless",
        "syn-endless",
        "gd-endless",
        "hf-endless",
        "s3-endless",
    ] {
        said(id, "more than 10000 pages (medimg's bound)");
    }
    said(
        "osf-again",
        "the host names a page it already gave (https://api.osf.io/v2/nodes/again/files/osfstorage/?page=2) as the next one, after 2 pages",
    );
    said("s3-again", "as the next one, after 2 pages");
    said(
        "dir-deep",
        "directories nest deeper than 32 below https://data.example.org/deep/ (medimg's bound; a link to a directory above itself?)",
    );
    let asked = |prefix: &str| {
        up.log()
            .iter()
            .filter(|l| l.path.starts_with(prefix))
            .count()
    };
    assert_eq!(asked("/api.osf.io/v2/nodes/endless/"), 10_000);
    assert_eq!(asked("/api.osf.io/v2/nodes/again/"), 2);
    assert_eq!(
        asked("/repo-prod.prod.sagebase.org/repo/v1/entity/children"),
        10_000
    );
    assert_eq!(asked("/huggingface.co/"), 10_000);
    let drive = up
        .log()
        .iter()
        .filter(|l| l.path == "/www.googleapis.com/drive/v3/files")
        .count();
    assert_eq!(drive, 10_000);
    assert_eq!(asked("/endless.s3.amazonaws.com/"), 10_000);
    assert_eq!(asked("/again.s3.amazonaws.com/"), 2);
    assert_eq!(
        asked("/data.example.org/deep/"),
        33,
        "the root and 32 levels below it"
    );
    drop(m);
    let k = kept(&fx, &ids);
    assert!(k.entries.iter().all(|&n| n == 0), "{:?}", k.entries);
    assert_eq!((k.block_bytes, k.blocks), (0, 0));
}
