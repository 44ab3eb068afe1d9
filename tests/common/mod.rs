//! Test harness: a loopback HTTP upstream with a request log, fixtures of real images in real
//! archives, and a real `medimg mount` that unmounts when dropped.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request the upstream saw.
#[derive(Debug, Clone)]
pub struct Logged {
    /// Path (without host).
    pub path: String,
    /// `Range` header, if any.
    pub range: Option<String>,
    /// `User-Agent` header.
    pub user_agent: String,
    /// Bytes sent in the body.
    pub bytes: u64,
}

/// How a path is served.
#[derive(Debug, Clone)]
pub enum Served {
    /// Bytes, with Range support when `ranged`.
    Data { data: Arc<Vec<u8>>, ranged: bool },
    /// A 302 to this absolute URL.
    Redirect(String),
}

#[derive(Default)]
struct State {
    files: HashMap<String, Served>,
    log: Vec<Logged>,
    delay: Duration,
    /// Pause after each 16 KiB of a body (a slow link).
    throttle: Duration,
}

/// A loopback HTTP/1.1 upstream answering Range requests like a static file server or object
/// store: a thread per connection, keep-alive, a request log. Written out here rather than taken
/// from a crate so that every byte it sends (and when) is under the tests' control.
pub struct Upstream {
    pub port: u16,
    state: Arc<Mutex<State>>,
    in_flight: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

fn etag_of(data: &[u8]) -> String {
    format!("\"{:08x}-{}\"", crc32fast::hash(data), data.len())
}

impl Upstream {
    /// Start serving on 127.0.0.1.
    pub fn start() -> Upstream {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        {
            let (state, in_flight, peak, stop) =
                (state.clone(), in_flight.clone(), peak.clone(), stop.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let (state, in_flight, peak) = (state.clone(), in_flight.clone(), peak.clone());
                    std::thread::spawn(move || serve_connection(conn, &state, &in_flight, &peak));
                }
            });
        }
        Upstream {
            port,
            state,
            in_flight,
            peak,
            stop,
        }
    }

    /// `http://127.0.0.1:PORT/`.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Serve `data` at `/path`.
    pub fn put(&self, path: &str, data: Vec<u8>, ranged: bool) {
        self.state.lock().unwrap().files.insert(
            path.to_string(),
            Served::Data {
                data: Arc::new(data),
                ranged,
            },
        );
    }

    /// Answer `/path` with a 302 to `location`.
    pub fn redirect(&self, path: &str, location: &str) {
        self.state
            .lock()
            .unwrap()
            .files
            .insert(path.to_string(), Served::Redirect(location.to_string()));
    }

    /// Hold every answer this long (lets concurrent requests overlap visibly).
    pub fn set_delay(&self, d: Duration) {
        self.state.lock().unwrap().delay = d;
    }

    /// Send bodies 16 KiB at a time with this pause between pieces.
    pub fn set_throttle(&self, d: Duration) {
        self.state.lock().unwrap().throttle = d;
    }

    /// Every request so far.
    pub fn log(&self) -> Vec<Logged> {
        self.state.lock().unwrap().log.clone()
    }

    /// Requests so far.
    pub fn count(&self) -> usize {
        self.state.lock().unwrap().log.len()
    }

    /// Body bytes sent so far.
    pub fn bytes(&self) -> u64 {
        self.state.lock().unwrap().log.iter().map(|l| l.bytes).sum()
    }

    /// Requests being answered now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// The most requests that were being answered at the same time.
    pub fn peak_concurrency(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn parse_range(h: &str, len: u64) -> Option<(u64, u64)> {
    let spec = h.strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let a: u64 = a.parse().ok()?;
    let b: u64 = if b.is_empty() {
        len - 1
    } else {
        b.parse().ok()?
    };
    (a < len && a <= b).then_some((a, b.min(len - 1)))
}

/// Answer requests on one connection until the client closes it.
fn serve_connection(
    conn: std::net::TcpStream,
    state: &Mutex<State>,
    in_flight: &AtomicUsize,
    peak: &AtomicUsize,
) {
    use std::io::BufRead;
    let mut reader = std::io::BufReader::new(conn.try_clone().unwrap());
    let mut out = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        peak.fetch_max(now, Ordering::SeqCst);
        let ok = respond(state, &path, &headers, &mut out);
        in_flight.fetch_sub(1, Ordering::SeqCst);
        if !ok {
            return;
        }
    }
}

/// Write the answer to one request and log it; false when the connection broke.
fn respond(
    state: &Mutex<State>,
    path: &str,
    headers: &HashMap<String, String>,
    out: &mut std::net::TcpStream,
) -> bool {
    let path = path.split('?').next().unwrap_or("").to_string();
    let range = headers.get("range").cloned();
    let if_match = headers.get("if-match").cloned();
    let user_agent = headers.get("user-agent").cloned().unwrap_or_default();
    let (served, delay, throttle) = {
        let st = state.lock().unwrap();
        (st.files.get(&path).cloned(), st.delay, st.throttle)
    };
    std::thread::sleep(delay);
    let mut head = String::new();
    let mut body: Vec<u8> = Vec::new();
    match served {
        None => head.push_str("HTTP/1.1 404 Not Found\r\n"),
        Some(Served::Redirect(to)) => {
            head.push_str(&format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\n"));
        }
        Some(Served::Data { data, ranged }) => {
            let etag = etag_of(&data);
            let len = data.len() as u64;
            if if_match.as_ref().is_some_and(|m| *m != etag) {
                head.push_str("HTTP/1.1 412 Precondition Failed\r\n");
            } else {
                match range
                    .as_deref()
                    .filter(|_| ranged)
                    .map(|r| parse_range(r, len))
                {
                    Some(Some((a, b))) => {
                        body = data[a as usize..=b as usize].to_vec();
                        head.push_str(&format!(
                            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {a}-{b}/{len}\r\n\
                             ETag: {etag}\r\nContent-Type: application/zip\r\n"
                        ));
                    }
                    Some(None) => head.push_str(&format!(
                        "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\n"
                    )),
                    None => {
                        body = data.to_vec();
                        head.push_str(&format!(
                            "HTTP/1.1 200 OK\r\nETag: {etag}\r\nContent-Type: application/octet-stream\r\n"
                        ));
                    }
                }
            }
        }
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut ok = out.write_all(head.as_bytes()).is_ok();
    let mut sent = 0u64;
    for piece in body.chunks(16 << 10) {
        if !ok {
            break;
        }
        if sent > 0 {
            std::thread::sleep(throttle);
        }
        ok = out.write_all(piece).is_ok();
        if ok {
            sent += piece.len() as u64;
        }
    }
    state.lock().unwrap().log.push(Logged {
        path,
        range,
        user_agent,
        bytes: sent,
    });
    ok
}

/// A real PNG of `w`×`h` RGB pixels; `seed` varies the content. Noisy pixels keep it from
/// compressing to nothing, as photographs do.
pub fn png(w: u32, h: u32, seed: u32) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc.write_header().unwrap();
        let mut x: u32 = seed.wrapping_mul(2654435761).wrapping_add(1);
        let pixels: Vec<u8> = (0..w * h * 3)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                ((i / 3 % w) as u8).wrapping_add((x & 0x3f) as u8)
            })
            .collect();
        wr.write_image_data(&pixels).unwrap();
    }
    out
}

/// A ZIP of `files` (path, bytes); each member deflated or stored as asked.
pub fn zip(files: &[(String, Vec<u8>, bool)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data, deflate) in files {
        let m = if *deflate {
            zip::CompressionMethod::Deflated
        } else {
            zip::CompressionMethod::Stored
        };
        w.start_file(
            name.as_str(),
            zip::write::SimpleFileOptions::default().compression_method(m),
        )
        .unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// An image-folder dataset: `n` PNGs of about `kb` KB under `train/<class>/` and `test/<class>/`.
pub fn image_folder(n: usize, kb: u32) -> Vec<(String, Vec<u8>, bool)> {
    let side = ((kb * 1024 / 3) as f64).sqrt() as u32;
    (0..n)
        .map(|i| {
            let split = if i % 5 == 0 { "test" } else { "train" };
            let class = ["NORMAL", "PNEUMONIA"][i % 2];
            (
                format!("chest_xray/{split}/{class}/img_{i:04}.png"),
                png(side, side, i as u32),
                i % 3 != 0,
            )
        })
        .collect()
}

/// Write each file under `root`, as `unzip` would.
pub fn unpack_to(root: &Path, files: &[(String, Vec<u8>, bool)]) {
    for (name, data, _) in files {
        let p = root.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
}

/// `(id, modality, organ, [(path on the upstream, format)])`; no sources means unsupported.
pub type TestDataset<'a> = (&'a str, &'a str, &'a str, &'a [(&'a str, &'a str)]);

/// A catalog of datasets, with URLs on a fake host
/// that the mirror rules of [`Fixture::config`] send to the loopback upstream.
pub fn catalog(datasets: &[TestDataset<'_>]) -> String {
    let mut s = String::new();
    for (id, modality, organ, sources) in datasets {
        s.push_str(&format!(
            "[[dataset]]\nid = \"{id}\"\ntitle = \"Test {id}\"\nmodality = [\"{modality}\"]\n\
             organ = [\"{organ}\"]\ntask = \"classification\"\nimages = 1\nlicense = \"CC0\"\n\
             homepage = \"https://example.org/{id}\"\naccess = \"open\"\n"
        ));
        if sources.is_empty() {
            s.push_str("unsupported = \"no pinned source\"\n");
        }
        for (path, format) in *sources {
            s.push_str(&format!(
                "[[dataset.source]]\ntype = \"http\"\nurl = \"https://data.example.org/{path}\"\nformat = \"{format}\"\n"
            ));
        }
        s.push('\n');
    }
    s
}

/// Files of one test: catalog, config, cache and mountpoint in a temporary directory.
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    /// Write `catalog` and a config whose mirror rule sends the fake host to `up`.
    pub fn new(up: &Upstream, catalog: &str, extra_config: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("catalog.toml"), catalog).unwrap();
        std::fs::write(
            dir.path().join("medimg.toml"),
            format!(
                "{extra_config}\n[[mirror]]\nfrom = \"https://data.example.org/\"\nto = \"{}\"\n",
                up.base()
            ),
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("mnt")).unwrap();
        Fixture { dir }
    }

    pub fn mnt(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }

    pub fn cache(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    /// `medimg mount` of this fixture with extra flags.
    pub fn mount(&self, flags: &[&str]) -> Mount {
        Mount::start(self, flags)
    }

    /// Total bytes of cached block files.
    pub fn cached_bytes(&self) -> u64 {
        fn walk(p: &Path) -> u64 {
            std::fs::read_dir(p)
                .map(|rd| {
                    rd.flatten()
                        .map(|e| {
                            let m = e.metadata().unwrap();
                            if m.is_dir() { walk(&e.path()) } else { m.len() }
                        })
                        .sum()
                })
                .unwrap_or(0)
        }
        walk(&self.cache().join("blocks"))
    }
}

/// The medimg binary under test.
pub fn medimg() -> Command {
    Command::new(env!("CARGO_BIN_EXE_medimg"))
}

/// A running `medimg mount`; dropping it sends SIGTERM and waits.
pub struct Mount {
    pub child: Option<Child>,
    pub mnt: PathBuf,
    pub log: PathBuf,
}

pub fn is_mounted(path: &Path) -> bool {
    let target = std::fs::canonicalize(path).unwrap_or(path.to_path_buf());
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(target.to_str().unwrap()))
}

impl Mount {
    fn start(f: &Fixture, flags: &[&str]) -> Mount {
        static RUNS: AtomicUsize = AtomicUsize::new(0);
        let log = f.dir.path().join(format!(
            "medimg-{}.log",
            RUNS.fetch_add(1, Ordering::SeqCst)
        ));
        let stderr = std::fs::File::create(&log).unwrap();
        let mut cmd = medimg();
        cmd.arg("mount")
            .arg(f.mnt())
            .arg("--catalog")
            .arg(f.dir.path().join("catalog.toml"))
            .arg("--config")
            .arg(f.dir.path().join("medimg.toml"))
            .arg("--cache-dir")
            .arg(f.cache())
            .args(flags)
            .env("MEDIMG_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        let mut child = cmd.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !is_mounted(&f.mnt()) {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "medimg exited with {status} before mounting:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "mount did not appear within 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Mount {
            child: Some(child),
            mnt: f.mnt(),
            log,
        }
    }

    /// The daemon's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then the exit status (the daemon must unmount on its own).
    pub fn stop(mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = Command::new("fusermount3")
                    .arg("-uz")
                    .arg(&self.mnt)
                    .status();
                panic!("medimg did not exit within 20 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
            if is_mounted(&self.mnt) {
                let _ = Command::new("fusermount3")
                    .arg("-uz")
                    .arg(&self.mnt)
                    .status();
            }
        }
    }
}

/// Run a shell command, returning (exit code, stdout, stderr).
pub fn sh(cmd: &str) -> (i32, String, String) {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
