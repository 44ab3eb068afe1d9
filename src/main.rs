//! The `medimg` binary: parse flags, build the layers, run the subcommand.

use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use medimg::access::Policy;
use medimg::cache::BlockCache;
use medimg::cli::{self, CatalogArgs, Cli, Command, MountArgs};
use medimg::config::human_size;
use medimg::credentials::Credentials;
use medimg::fetch::Fetcher;
use medimg::index::Index;
use medimg::render;
use medimg::source::http::HttpUpstream;
use medimg::source::limits::Limiter;
use medimg::vfs::Vfs;

/// Read-ahead downloads in flight at once for the whole daemon (each holds one block in memory).
const READ_AHEAD_WORKERS: usize = 6;

/// glibc malloc arenas: a block's buffer is allocated by the thread that fetches it and freed
/// by whichever drops it last, and with an arena per thread (up to 16 here) the freed 4 MiB
/// buffers stayed spread over all of them. Two arenas measured 216 MB peak RSS for the cold
/// epoch, against 276 MB with glibc's default, at the same speed.
const MALLOC_ARENAS: i32 = 2;

fn main() -> ExitCode {
    // SAFETY: mallopt only sets an allocator parameter; called before any thread exists.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("MEDIMG_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a terminal: journald and log files get plain lines.
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    let argv: Vec<String> = std::env::args().collect();
    let called = argv
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // mount(8) runs /sbin/mount.fuse.medimg (a link to this binary) for an fstab line.
    if called.starts_with("mount.") {
        return run_helper(&argv[1..]);
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Mount(a) => run_mount(&a),
        Command::Catalog(a) => run_catalog(&a),
        Command::Status(a) => run_status(&a),
        Command::Prefetch(a) => run_prefetch(&a),
        Command::Cache(a) => run_cache(&a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("medimg: error: {e}");
            ExitCode::from(2)
        }
    }
}

type Error = Box<dyn std::error::Error>;

/// How long the mount helper waits for the daemon it started to mount.
const HELPER_WAIT: Duration = Duration::from_secs(60);

/// The mount helper: start `medimg mount` in the background with the fstab line's options,
/// its log appended to `medimg.log` in the cache directory, and return once it has mounted
/// (0) or failed (32, mount's "mount failure", with the daemon's words).
fn run_helper(args: &[String]) -> ExitCode {
    let fail = |e: String| {
        eprintln!("mount.medimg: {e}");
        ExitCode::from(32)
    };
    let mount_args = match cli::helper_args(args) {
        Ok(a) => a,
        Err(e) => return fail(e.to_string()),
    };
    let parsed =
        Cli::try_parse_from(std::iter::once("medimg".to_string()).chain(mount_args.clone()));
    let a = match parsed.map(|c| c.command) {
        Ok(Command::Mount(a)) => a,
        Ok(_) => return fail("not a mount".into()),
        Err(e) => return fail(e.to_string()),
    };
    // The settings are checked here too, so that a bad option fails the mount at once.
    let settings = match cli::settings(&a) {
        Ok(s) => s,
        Err(e) => return fail(e.to_string()),
    };
    // SAFETY: umask only sets the process's file mode creation mask.
    unsafe { libc::umask(0o077) };
    if let Err(e) = std::fs::create_dir_all(&settings.cache_dir) {
        return fail(format!(
            "cannot create {}: {e}",
            settings.cache_dir.display()
        ));
    }
    let log_path = settings.cache_dir.join("medimg.log");
    let log = match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
    {
        Ok(f) => f,
        Err(e) => return fail(format!("cannot open {}: {e}", log_path.display())),
    };
    let start = log.metadata().map_or(0, |m| m.len());
    let (Ok(out), Ok(err)) = (log.try_clone(), log.try_clone()) else {
        return fail(format!("cannot share {}", log_path.display()));
    };
    let mut cmd = std::process::Command::new("/proc/self/exe");
    cmd.args(&mount_args)
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err);
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid is async-signal-safe; the daemon leaves mount's session and terminal.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return fail(format!("cannot start the daemon: {e}")),
    };
    let point = std::path::absolute(&a.mountpoint).unwrap_or(a.mountpoint.clone());
    let deadline = std::time::Instant::now() + HELPER_WAIT;
    loop {
        if medimg::fuse::is_medimg_mount(&point) {
            return ExitCode::SUCCESS;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let text = std::fs::read(&log_path).unwrap_or_default();
            let said = String::from_utf8_lossy(text.get(start as usize..).unwrap_or_default());
            let said = said
                .lines()
                .rev()
                .find(|l| l.contains("error"))
                .unwrap_or("")
                .to_string();
            return fail(format!(
                "the daemon exited ({status}) before mounting: {said} (log: {})",
                log_path.display()
            ));
        }
        if std::time::Instant::now() > deadline {
            return fail(format!(
                "not mounted after {}s; the daemon goes on trying (log: {})",
                HELPER_WAIT.as_secs(),
                log_path.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn run_prefetch(a: &cli::PrefetchArgs) -> Result<(), Error> {
    let mut paths = a.paths.clone();
    if let Some(list) = &a.from_file {
        paths.extend(
            medimg::prefetch::read_list(list)
                .map_err(|e| format!("--from-file {}: {e}", list.display()))?,
        );
    }
    if paths.is_empty() {
        return Err("name datasets, folders or files of a medimg mount (or --from-file)".into());
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;
    let done = medimg::prefetch::run(&paths, stop)?;
    if done.failed > 0 {
        return Err(format!("{} files could not be read (named above)", done.failed).into());
    }
    if done.stopped {
        // 130: interrupted, as a shell reports Ctrl-C.
        std::process::exit(130);
    }
    Ok(())
}

fn run_cache(a: &cli::CacheArgs) -> Result<(), Error> {
    let dir = cli::status_cache_dir(&a.daemon)?;
    let ask = |request: &str| medimg::control::ask(&dir, request);
    if a.verify {
        let v = ask("cache verify")?;
        println!(
            "checked {} blocks; {} were damaged and removed (fetched again when read)",
            v["checked"], v["removed"]
        );
    }
    if let Some(which) = &a.clear {
        let v = ask(&format!("cache clear {which}"))?;
        println!(
            "cleared {} blocks ({})",
            v["blocks"],
            human_size(v["bytes"].as_u64().unwrap_or(0))
        );
    }
    let status = ask("status")?;
    if a.daemon.json {
        println!("{}", serde_json::to_string_pretty(&status["datasets"])?);
    } else {
        print!("{}", render::cache_report(&status));
    }
    Ok(())
}

fn run_status(a: &cli::StatusArgs) -> Result<(), Error> {
    let dir = cli::status_cache_dir(a)?;
    let status = medimg::control::ask(&dir, "status")?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", render::daemon_status(&status));
    }
    Ok(())
}

/// The answer to one control request.
fn control_answer(
    request: &str,
    status: &dyn Fn() -> serde_json::Value,
    vfs: &std::sync::Weak<Vfs>,
) -> Result<serde_json::Value, String> {
    let vfs = vfs.upgrade().ok_or("the daemon is stopping")?;
    let words: Vec<&str> = request.split_whitespace().collect();
    match words.as_slice() {
        ["status"] => Ok(status()),
        // Whether a daemon is alive and answering (a restart asks before it takes over).
        ["ping"] => Ok(serde_json::json!({})),
        ["cache", "verify"] => {
            let (checked, removed) = vfs
                .fetcher()
                .cache()
                .verify_all()
                .map_err(|e| e.to_string())?;
            Ok(serde_json::json!({"checked": checked, "removed": removed}))
        }
        ["cache", "clear", which] => {
            let id = (*which != "all").then_some(*which);
            let (blocks, bytes) = vfs.clear_cache(id).map_err(|e| match e {
                medimg::vfs::VfsError::NotFound => {
                    format!("no dataset {which:?} in the catalog (`medimg catalog` lists them)")
                }
                e => e.to_string(),
            })?;
            tracing::info!(which, blocks, bytes, "cleared from the cache on request");
            Ok(serde_json::json!({"blocks": blocks, "bytes": bytes}))
        }
        _ => Err(format!(
            "unknown request {request:?}; ask status, cache verify, cache clear all or cache \
             clear <dataset>"
        )),
    }
}

/// What `medimg status` is answered with.
fn status_json(
    vfs: &Vfs,
    busy: &std::sync::atomic::AtomicUsize,
    started: std::time::SystemTime,
    mountpoint: &std::path::Path,
    cache_dir: &std::path::Path,
) -> serde_json::Value {
    let (limit, used) = vfs.cache_usage();
    let datasets = vfs.dataset_status().unwrap_or_else(|e| {
        tracing::warn!("status: {e}");
        Vec::new()
    });
    serde_json::json!({
        "mountpoint": mountpoint,
        "pid": std::process::id(),
        "uptime_s": started.elapsed().map_or(0, |d| d.as_secs()),
        "cache": {
            "dir": cache_dir,
            "limit": limit,
            "used": used,
            "writing": vfs.fetcher().cache().writing_bytes(),
        },
        "cache_stats": vfs.fetcher().cache().stats(),
        "in_progress": busy.load(std::sync::atomic::Ordering::Relaxed),
        "datasets": datasets,
        "hosts": vfs.fetcher().upstream().host_stats(),
        "upstream_by_dataset": vfs.fetcher().upstream().dataset_stats(),
        "reads": vfs.read_stats(),
        "shared_cache": vfs.fetcher().tier().map(|t| t.stats()),
        "sizes": vfs.size_stats(),
        "failures": vfs.failures(),
    })
}

fn run_catalog(a: &CatalogArgs) -> Result<(), Error> {
    let catalog = cli::load_catalog(a.catalog.as_deref())?;
    let modality = a.modality.as_deref().map(cli::modality).transpose()?;
    let organ = a.organ.as_deref().map(cli::organ).transpose()?;
    if a.check {
        return run_check(a, catalog, modality, organ);
    }
    let credentials = gather_credentials(None)?;
    // Refusals and successful listings recorded by a daemon using the default cache.
    let (denials, indexed) =
        match Index::open_existing(&medimg::config::default_cache_dir().join("index.sqlite")) {
            Some(ix) => (
                ix.denials()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(d, m, _)| (d, m))
                    .collect(),
                ix.indexed_datasets()
                    .unwrap_or_default()
                    .into_iter()
                    .collect(),
            ),
            None => (
                std::collections::HashMap::new(),
                std::collections::HashSet::new(),
            ),
        };
    let state = |d: &medimg::catalog::Dataset| {
        render::state(
            d,
            &credentials,
            denials.get(&d.id).map(String::as_str),
            indexed.contains(&d.id),
        )
    };
    let chosen: Vec<_> = catalog
        .datasets
        .iter()
        .filter(|d| modality.is_none_or(|m| d.modality.iter().any(|x| x == m)))
        .filter(|d| organ.is_none_or(|o| d.organ.iter().any(|x| x == o)))
        .collect();
    if a.json {
        let rows: Vec<serde_json::Value> = chosen
            .iter()
            .map(|d| {
                let mut v = serde_json::to_value(d).unwrap_or_default();
                let st = state(d);
                v["state"] = st.label().into();
                v["state_detail"] = st.detail().into();
                v["path"] = format!("datasets/{}", d.id).into();
                v["folders_text"] = medimg::catalog::folders_text(d).into();
                v
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let w = chosen.iter().map(|d| d.id.len()).max().unwrap_or(2).max(2);
    let fw = chosen
        .iter()
        .map(|d| medimg::catalog::folders_text(d).len())
        .max()
        .unwrap_or(7)
        .max(7);
    println!(
        "{:w$}  {:12}  {:16}  {:12}  {:fw$}  STATE",
        "ID", "MODALITY", "ORGAN", "ACCESS", "FOLDERS"
    );
    for d in &chosen {
        let st = state(d);
        let detail = match st.detail() {
            "" => String::new(),
            x => format!(": {x}"),
        };
        println!(
            "{:w$}  {:12}  {:16}  {:12}  {:fw$}  {}{detail}",
            d.id,
            d.modality.join(","),
            d.organ.join(","),
            d.access.as_str(),
            medimg::catalog::folders_text(d),
            st.label()
        );
    }
    // The line before the last counts class folders; the last, who can reach what.
    eprintln!("{}", render::folders_summary(&chosen));
    eprintln!(
        "{} of {} datasets; {}",
        chosen.len(),
        catalog.datasets.len(),
        render::reach(&chosen)
    );
    Ok(())
}

/// Credentials from the config's file, the environment and the hosts' tools' files; says
/// where each was found (never what it is).
fn gather_credentials(file: Option<&std::path::Path>) -> Result<Credentials, Error> {
    let home = dirs::home_dir();
    let (creds, warnings) = Credentials::gather(file, &|k| std::env::var(k).ok(), home.as_deref())?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    for c in creds.iter() {
        tracing::info!(host = %c.host, "using credentials from {}", c.origin);
    }
    Ok(creds)
}

/// The shared tier of `[shared_cache]`, if the config names one. A store that refuses (wrong
/// keys, no such bucket) stops the daemon with what to fix; one that does not answer is only
/// a warning: the tier is optional, and the store is asked again later.
fn open_tier(
    settings: &medimg::config::Settings,
) -> Result<Option<Arc<medimg::tier::Tier>>, Error> {
    use medimg::tier::{ObjectStore, StoreError, Tier, s3::S3Store};
    let Some(shared) = &settings.shared_cache else {
        return Ok(None);
    };
    if settings.offline {
        tracing::info!("--offline: the shared cache is not asked either");
        return Ok(None);
    }
    let host = medimg::credentials::host_of(&shared.store.endpoint).unwrap_or_default();
    let home = dirs::home_dir();
    let (keys, warnings) = medimg::credentials::store_keys(
        settings.credentials_file.as_deref(),
        &host,
        shared.profile.as_deref(),
        &|k| std::env::var(k).ok(),
        home.as_deref(),
    )?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    match &keys {
        Some(k) => tracing::info!(host, "shared cache keys from {}", k.origin),
        None => tracing::info!(
            host,
            "no keys for the shared cache (credentials file, AWS_ACCESS_KEY_ID, ~/.aws/credentials); \
             its requests are unsigned"
        ),
    }
    let store = S3Store::new(shared.store.clone(), keys)?;
    let shown = store.describe();
    match store.get("medimg-hello") {
        Ok(_) => tracing::info!("shared cache {shown}: blocks and listings are shared there"),
        Err(e @ StoreError::Refused { .. }) => return Err(e.to_string().into()),
        Err(e) => tracing::warn!("{e}; reading from the upstreams until it answers"),
    }
    Ok(Some(Arc::new(Tier::new(
        Box::new(store),
        shared.tier.clone(),
    ))))
}

/// Hold an exclusive lock on the cache directory for the daemon's lifetime: two daemons evicting
/// each other's blocks would break the size limit. A daemon whose dead mount was just cleaned
/// up gets `wait` to finish exiting and let go of it.
fn lock_cache_dir(dir: &std::path::Path, wait: Duration) -> Result<std::fs::File, Error> {
    let path = dir.join("lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let until = std::time::Instant::now() + wait;
    // SAFETY: flock on a file descriptor we own.
    while unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        if std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        return Err(format!(
            "cache directory {} is in use by another medimg daemon; use its mount, or give this one --cache-dir",
            dir.display()
        )
        .into());
    }
    Ok(f)
}

/// Let the requests in progress finish (they may be waiting on an upstream) before
/// unmounting, up to `deadline`: after it they would fail anyway.
fn drain(mounted: &medimg::fuse::Mounted, deadline: Duration) {
    let until = std::time::Instant::now() + deadline;
    let busy = mounted.busy();
    if busy == 0 {
        return;
    }
    tracing::info!("letting {busy} requests in progress finish before unmounting");
    while mounted.busy() > 0 && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `medimg catalog --check`: index the chosen datasets and compare what is there with their
/// entries ([`medimg::check`]); exit 1 if any is flagged.
fn run_check(
    a: &CatalogArgs,
    catalog: medimg::catalog::Catalog,
    modality: Option<&str>,
    organ: Option<&str>,
) -> Result<(), Error> {
    for id in &a.ids {
        if !catalog.datasets.iter().any(|d| &d.id == id) {
            return Err(
                format!("no dataset {id:?} in the catalog; `medimg catalog` lists them").into(),
            );
        }
    }
    let chosen: Vec<medimg::catalog::Dataset> = catalog
        .datasets
        .iter()
        .filter(|d| a.ids.is_empty() || a.ids.contains(&d.id))
        .filter(|d| modality.is_none_or(|m| d.modality.iter().any(|x| x == m)))
        .filter(|d| organ.is_none_or(|o| d.organ.iter().any(|x| x == o)))
        .cloned()
        .collect();
    let settings = cli::settings(&MountArgs {
        catalog: a.catalog.clone(),
        config: a.config.clone(),
        cache_dir: a.cache_dir.clone(),
        ..MountArgs::default()
    })?;
    let (vfs, _cache, _lock) = open_core(&settings, catalog, Duration::ZERO).map_err(|e| {
        format!("{e} (a running daemon holds its cache: stop it, or give --cache-dir)")
    })?;
    let reports: Vec<medimg::check::Report> = chosen
        .iter()
        .map(|d| {
            let r = medimg::check::check(&vfs, d);
            if !a.json {
                print!("{}", render::check_line(&r));
            }
            r
        })
        .collect();
    let flagged = reports.iter().filter(|r| !r.flags.is_empty()).count();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        println!(
            "{} of {} datasets match their catalog entry; {flagged} flagged",
            reports.len() - flagged,
            reports.len()
        );
    }
    if flagged > 0 {
        std::process::exit(1);
    }
    Ok(())
}

/// The core over the cache of `settings`: the cache directory made private and locked (a
/// daemon that just died gets `lock_wait` to let go of it), the block cache, the index, the
/// upstream with the credentials found, and the filesystem core. Returns the lock's file too:
/// the lock lasts as long as it.
fn open_core(
    settings: &medimg::config::Settings,
    catalog: medimg::catalog::Catalog,
    lock_wait: Duration,
) -> Result<(Vfs, Arc<BlockCache>, std::fs::File), Error> {
    // Whatever the caller's umask, the cache (blocks, index) is the daemon's alone: another
    // local user must not read a restricted dataset's bytes around the mount.
    // SAFETY: umask only sets the process's file mode creation mask.
    unsafe { libc::umask(0o077) };
    std::fs::create_dir_all(&settings.cache_dir).map_err(|e| {
        format!(
            "cannot create cache directory {}: {e}",
            settings.cache_dir.display()
        )
    })?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&settings.cache_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| {
                format!(
                    "cannot make cache directory {} private (mode 0700): {e}",
                    settings.cache_dir.display()
                )
            })?;
    }
    let lock = lock_cache_dir(&settings.cache_dir, lock_wait)?;
    let cache = Arc::new(BlockCache::open(&settings.cache_dir, settings.cache_size)?);
    let index = Index::open(&settings.cache_dir.join("index.sqlite"))?;
    let credentials = gather_credentials(settings.credentials_file.as_deref())?;
    let limiter = Limiter::new(settings.host_limits.clone());
    let upstream = HttpUpstream::new(
        settings.mirrors.clone(),
        credentials.clone(),
        limiter,
        settings.deadline,
    )?
    .with_guestbook(settings.guestbook.clone());
    let upstream = Arc::new(if settings.offline {
        tracing::info!("--offline: serving what the cache holds; no host is asked anything");
        upstream.offline()
    } else {
        upstream
    });
    let mut fetcher =
        Fetcher::new(upstream, cache.clone(), settings.block_size).with_deadline(settings.deadline);
    if let Some(tier) = open_tier(settings)? {
        fetcher = fetcher.with_tier(tier);
    }
    let fetcher = Arc::new(fetcher);
    fetcher.start_prefetch(READ_AHEAD_WORKERS);
    let vfs = Vfs::new(catalog, index, fetcher).with_credentials(credentials);
    Ok((vfs, cache, lock))
}

fn run_mount(a: &MountArgs) -> Result<(), Error> {
    let settings = cli::settings(a)?;
    let recovered = medimg::fuse::recover_dead_mount(&a.mountpoint, &settings.cache_dir)?;
    let mountpoint = cli::check_mountpoint(&a.mountpoint)?;
    let catalog = cli::load_catalog(a.catalog.as_deref())?;
    let policy = if settings.access.is_empty() {
        Policy::open()
    } else {
        Policy::resolve(&settings.access, &catalog, &medimg::access::system_group)?
    };
    if policy.restricts() && !settings.allow_other {
        tracing::warn!(
            "[access] names groups, but without allow_other only this user can use the mount; \
             add --allow-other (or `allow_other = true` under [fuse]) for the groups to matter"
        );
    }
    let lock_wait = Duration::from_secs(if recovered { 10 } else { 0 });
    let n = catalog.datasets.len();
    let (vfs, cache, _lock) = open_core(&settings, catalog, lock_wait)?;
    let vfs = Arc::new(vfs.with_access(policy));

    let (tx, rx) = std::sync::mpsc::channel();
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])?;
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            let _ = tx.send(sig);
        }
    });

    let times = medimg::metrics::FuseTimes::default();
    let mounted = medimg::fuse::mount(
        vfs.clone(),
        &mountpoint,
        settings.threads,
        settings.allow_other,
        times.clone(),
    )
    .map_err(|e| {
        format!(
            "cannot mount at {}: {e} (is /dev/fuse present and fuse3's fusermount3 installed?)",
            mountpoint.display()
        )
    })?;
    tracing::info!(
        "mounted {n} datasets at {} (cache {}, limit {}, blocks of {}); Ctrl-C or `fusermount3 -u` unmounts",
        mountpoint.display(),
        settings.cache_dir.display(),
        human_size(settings.cache_size),
        human_size(settings.block_size)
    );
    {
        // Weak: the socket's thread must not keep the index open past the unmount (closing
        // it last folds its write-ahead log into the database).
        let (weak, busy) = (Arc::downgrade(&vfs), mounted.busy_counter());
        let started = std::time::SystemTime::now();
        let (mp, dir) = (mountpoint.clone(), settings.cache_dir.clone());
        let of = weak.clone();
        let status = Arc::new(move || match of.upgrade() {
            Some(vfs) => status_json(&vfs, &busy, started, &mp, &dir),
            None => serde_json::json!({"stopping": true}),
        });
        let answer = status.clone();
        let handler = Box::new(move |request: &str| control_answer(request, &*answer, &weak));
        if let Err(e) = medimg::control::serve(&settings.cache_dir, handler) {
            tracing::warn!("no control socket ({e}); `medimg status` will not answer");
        }
        if let Some(addr) = settings.metrics {
            let render = Arc::new(move || medimg::metrics::render(&times, &status()));
            if let Err(e) = medimg::metrics::serve(addr, render) {
                drop(mounted.unmount());
                return Err(format!("cannot serve metrics at {addr}: {e}").into());
            }
            tracing::info!("metrics at http://{addr}/metrics");
        }
    }
    medimg::service::announce(mountpoint.clone());
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(sig) => {
                medimg::service::stopping();
                drain(&mounted, settings.deadline);
                tracing::info!("signal {sig}: unmounting {}", mountpoint.display());
                break;
            }
            Err(_) if mounted.is_finished() => {
                tracing::info!("{} was unmounted", mountpoint.display());
                break;
            }
            Err(_) => {}
        }
    }
    mounted.unmount()?;
    // What is left to write is the blocks' use order; a crash loses it too, and nothing else.
    if let Err(e) = cache.flush() {
        tracing::warn!("the cache's last use order was not saved: {e}");
    }
    if let Some(t) = vfs.fetcher().tier() {
        t.finish(Duration::from_secs(10));
        let s = t.stats();
        tracing::info!(
            "shared cache since start: {} hits, {} misses, {} published, {} waits for another \
             node, {} damaged and replaced, {} store errors",
            s.hits,
            s.misses,
            s.publishes,
            s.lease_waits,
            s.corrupt,
            s.errors
        );
    }
    let sizes = vfs.size_stats();
    tracing::info!(
        "since start: {}; sizes asked of hosts: {} probes, {} listing pages, {} folders probed \
         in the background",
        vfs.read_stats(),
        sizes.probes,
        sizes.pages,
        sizes.scans
    );
    Ok(())
}
