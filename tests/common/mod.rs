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
    /// `GET`, `POST`.
    pub method: String,
    /// Path (without host or query).
    pub path: String,
    /// The query string, without `?`.
    pub query: String,
    /// `Authorization` header, if any.
    pub authorization: Option<String>,
    /// Status answered.
    pub status: u16,
    /// When the answer was sent.
    pub at: Instant,
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
    /// A route wrote the answer.
    Answered,
}

/// A request as a route sees it.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Req {
    /// A query parameter, percent-decoded.
    pub fn param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == name).then(|| pct_decode(v))
        })
    }

    /// A header (lowercase name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(Ok(v)) = s.get(i + 1..i + 3).map(|h| u8::from_str_radix(h, 16))
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What a route answers.
pub enum Answer {
    /// A status, headers and a body.
    Raw {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// The file stored at this path (with Range, ETag, If-Match like any stored file).
    File(String),
}

impl Answer {
    /// `200` with a JSON body.
    pub fn json(v: serde_json::Value) -> Answer {
        Answer::Raw {
            status: 200,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: v.to_string().into_bytes(),
        }
    }

    /// A status with a short text body.
    pub fn status(status: u16, text: &str) -> Answer {
        Answer::Raw {
            status,
            headers: vec![("Content-Type".into(), "text/plain".into())],
            body: text.as_bytes().to_vec(),
        }
    }

    /// A redirect.
    pub fn redirect(status: u16, to: &str) -> Answer {
        Answer::Raw {
            status,
            headers: vec![("Location".into(), to.to_string())],
            body: Vec::new(),
        }
    }

    /// Add a header.
    pub fn with(mut self, name: &str, value: &str) -> Answer {
        if let Answer::Raw { headers, .. } = &mut self {
            headers.push((name.to_string(), value.to_string()));
        }
        self
    }
}

/// A dynamic route: answers a request, or passes (`None`) to the stored files.
pub type Route = Arc<dyn Fn(&Req) -> Option<Answer> + Send + Sync>;

#[derive(Default)]
struct State {
    routes: Vec<Route>,
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

    /// Answer requests with `route` first (routes added earlier are asked first).
    pub fn route(&self, route: impl Fn(&Req) -> Option<Answer> + Send + Sync + 'static) {
        self.state.lock().unwrap().routes.push(Arc::new(route));
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
        let mut words = line.split_whitespace();
        let method = words.next().unwrap_or("GET").to_string();
        let target = words.next().unwrap_or("/").to_string();
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
        let mut body = vec![
            0u8;
            headers
                .get("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        ];
        if std::io::Read::read_exact(&mut reader, &mut body).is_err() {
            return;
        }
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_string(), q.to_string()),
            None => (target.clone(), String::new()),
        };
        let req = Req {
            method,
            path,
            query,
            headers,
            body,
        };
        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        peak.fetch_max(now, Ordering::SeqCst);
        let ok = respond(state, &req, &mut out);
        in_flight.fetch_sub(1, Ordering::SeqCst);
        if !ok {
            return;
        }
    }
}

/// Write the answer to one request and log it; false when the connection broke.
fn respond(state: &Mutex<State>, req: &Req, out: &mut std::net::TcpStream) -> bool {
    let headers = &req.headers;
    let mut path = req.path.clone();
    let range = headers.get("range").cloned();
    let if_match = headers.get("if-match").cloned();
    let user_agent = headers.get("user-agent").cloned().unwrap_or_default();
    let routes = state.lock().unwrap().routes.clone();
    let mut head = String::new();
    let mut body: Vec<u8> = Vec::new();
    let mut answered = false;
    for r in routes {
        match r(req) {
            Some(Answer::Raw {
                status,
                headers: hs,
                body: b,
            }) => {
                head.push_str(&format!("HTTP/1.1 {status} X\r\n"));
                for (k, v) in hs {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                body = b;
                answered = true;
                break;
            }
            Some(Answer::File(p)) => {
                path = p;
                break;
            }
            None => {}
        }
    }
    let (served, delay, throttle) = {
        let st = state.lock().unwrap();
        (st.files.get(&path).cloned(), st.delay, st.throttle)
    };
    std::thread::sleep(delay);
    let served = if answered {
        Some(Served::Answered)
    } else {
        served
    };
    match served {
        Some(Served::Answered) => {}
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
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    state.lock().unwrap().log.push(Logged {
        method: req.method.clone(),
        path: req.path.clone(),
        query: req.query.clone(),
        authorization: headers.get("authorization").cloned(),
        status,
        at: Instant::now(),
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

/// One `[[dataset]]` entry with `sources` (TOML of `[[dataset.source]]` tables) and extra
/// fields (`access = ...`, `terms = ...`; `access = "open"` unless given).
pub fn dataset_entry(id: &str, extra: &str, sources: &str) -> String {
    let access = if extra.contains("access =") {
        ""
    } else {
        "access = \"open\"\n"
    };
    format!(
        "[[dataset]]\nid = \"{id}\"\ntitle = \"Test {id}\"\nmodality = [\"X-ray\"]\n\
         organ = [\"lung\"]\nlicense = \"CC0\"\nhomepage = \"https://example.org/{id}\"\n\
         {access}{extra}\n{sources}\n"
    )
}

/// A config whose mirror rule sends every `https://HOST/...` to `UP/HOST/...`, so that one
/// loopback server plays every host, each under its own name.
pub fn all_hosts_to(up: &Upstream) -> String {
    format!("[[mirror]]\nfrom = \"https://\"\nto = \"{}\"\n", up.base())
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
        Mount::start(self, flags, &[])
    }

    /// `medimg mount` with these environment variables (credentials). `HOME` is the fixture's
    /// directory, so no credential of the machine's user is ever read.
    pub fn mount_env(&self, flags: &[&str], env: &[(&str, &str)]) -> Mount {
        Mount::start(self, flags, env)
    }

    /// The fixture's directory, which is `HOME` for the daemon.
    pub fn home(&self) -> PathBuf {
        self.dir.path().to_path_buf()
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

/// Every environment variable medimg reads credentials from; emptied for each mount.
pub const CREDENTIAL_VARS: [&str; 13] = [
    "KAGGLE_API_TOKEN",
    "KAGGLE_USERNAME",
    "KAGGLE_KEY",
    "KAGGLE_CONFIG_DIR",
    "PHYSIONET_USERNAME",
    "PHYSIONET_PASSWORD",
    "SYNAPSE_AUTH_TOKEN",
    "GOOGLE_API_KEY",
    "GITHUB_TOKEN",
    "HF_TOKEN",
    "ZENODO_TOKEN",
    "FIGSHARE_TOKEN",
    "OSF_TOKEN",
];

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
    fn start(f: &Fixture, flags: &[&str], env: &[(&str, &str)]) -> Mount {
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
            .env("HOME", f.home())
            .env_remove("XDG_CACHE_HOME")
            .envs(CREDENTIAL_VARS.iter().map(|v| (*v, "")))
            .envs(env.iter().copied())
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
