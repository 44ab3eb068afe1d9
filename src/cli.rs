//! Command-line flags, turned into validated settings. Nothing below this module sees clap.

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

use crate::catalog::{Catalog, CatalogError, MODALITIES, ORGANS};
use crate::config::{
    self, ConfigError, ConfigFile, DEFAULT_BLOCK_SIZE, DEFAULT_CACHE_FRACTION, DEFAULT_THREADS,
    Mirrors, Settings, parse_size,
};

/// medimg: 105 public medical image datasets as one read-only directory tree, fetched lazily.
#[derive(Debug, Parser)]
#[command(name = "medimg", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Mount the catalog at MOUNTPOINT; stays in the foreground until unmounted or interrupted.
    Mount(MountArgs),
    /// Print the datasets of the catalog.
    Catalog(CatalogArgs),
    /// Ask the running daemon what it is doing: cache, datasets, hosts, last failures.
    Status(StatusArgs),
    /// Warm the cache: read every file below PATHs through the mount, in archive order.
    Prefetch(PrefetchArgs),
    /// Show what the running daemon's cache holds, verify it, or clear it.
    Cache(CacheArgs),
}

/// `medimg cache`.
#[derive(Debug, Args)]
pub struct CacheArgs {
    /// Which daemon.
    #[command(flatten)]
    pub daemon: StatusArgs,
    /// Re-read every cached block and check it; damaged ones are removed.
    #[arg(long)]
    pub verify: bool,
    /// Remove the cached blocks of DATASET, or of every dataset with `all`.
    #[arg(long, value_name = "DATASET|all")]
    pub clear: Option<String>,
}

/// `medimg prefetch`.
#[derive(Debug, Args)]
pub struct PrefetchArgs {
    /// Datasets, folders or files inside a medimg mount.
    pub paths: Vec<PathBuf>,
    /// Also every path listed in FILE, one a line (e.g. the next epoch's files).
    #[arg(long, value_name = "FILE")]
    pub from_file: Option<PathBuf>,
}

/// `medimg status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The daemon's cache directory [default: as `medimg mount` resolves it].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// The daemon's config file (for its `[cache] dir`).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the daemon's JSON answer as it is.
    #[arg(long)]
    pub json: bool,
}

/// The cache directory of `medimg status`: the flag, the config's `[cache] dir`, the default.
pub fn status_cache_dir(a: &StatusArgs) -> Result<PathBuf, CliError> {
    let file = match &a.config {
        Some(p) => ConfigFile::load(p)?,
        None => ConfigFile::default(),
    };
    Ok(a.cache_dir
        .clone()
        .or(file.cache.dir)
        .unwrap_or_else(config::default_cache_dir))
}

/// `medimg mount`.
#[derive(Debug, Default, Args)]
pub struct MountArgs {
    /// An existing, empty directory to mount on.
    pub mountpoint: PathBuf,
    /// A catalog file to use instead of the built-in one.
    #[arg(long, value_name = "FILE")]
    pub catalog: Option<PathBuf>,
    /// A config file (cache settings, mirror rules); see config/medimg.toml.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where the index and cached blocks live [default: ~/.cache/medimg].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Hard limit on cached bytes, e.g. 50GiB [default: a quarter of the free space].
    #[arg(long, value_name = "SIZE")]
    pub cache_size: Option<String>,
    /// Size of the blocks fetched from upstream, e.g. 4MiB.
    #[arg(long, value_name = "SIZE")]
    pub block_size: Option<String>,
    /// FUSE worker threads [default: 16].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// How long a reader waits for an upstream before it gets EIO, e.g. 30s, 2m [default: 30s].
    #[arg(long, value_name = "DURATION")]
    pub deadline: Option<String>,
    /// Let other users read the mount (shared servers; needs user_allow_other in
    /// /etc/fuse.conf unless run as root).
    #[arg(long)]
    pub allow_other: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9464 (loopback only)
    /// [default: off].
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    /// Serve only what the cache holds; ask no host anything (EIO for the rest).
    #[arg(long)]
    pub offline: bool,
}

/// `medimg catalog`.
#[derive(Debug, Args)]
pub struct CatalogArgs {
    /// A catalog file to use instead of the built-in one.
    #[arg(long, value_name = "FILE")]
    pub catalog: Option<PathBuf>,
    /// Only datasets of this modality (e.g. X-ray, MRI).
    #[arg(long)]
    pub modality: Option<String>,
    /// Only datasets of this organ (e.g. lung, brain).
    #[arg(long)]
    pub organ: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Index the datasets (those named, or all that the filters select) and say, for each,
    /// whether what is mounted matches its entry: files, image files, bytes, the catalog's
    /// count, archives left unexpanded, Git LFS pointers, HTML pages. Exits 1 if any is
    /// flagged.
    #[arg(long)]
    pub check: bool,
    /// With --check: the datasets to check.
    #[arg(value_name = "ID", requires = "check")]
    pub ids: Vec<String>,
    /// With --check: a config file (mirror rules, credentials, hosts' budgets).
    #[arg(long, value_name = "FILE", requires = "check")]
    pub config: Option<PathBuf>,
    /// With --check: where the index and cached blocks live [default: ~/.cache/medimg].
    #[arg(long, value_name = "DIR", requires = "check")]
    pub cache_dir: Option<PathBuf>,
}

/// Flags or files that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The catalog.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The config file.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A flag value.
    #[error("{flag}: {message}")]
    Flag {
        /// The flag.
        flag: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The mountpoint.
    #[error("mountpoint {path}: {message}")]
    Mountpoint {
        /// The path.
        path: PathBuf,
        /// What is wrong and what to do.
        message: String,
    },
}

/// Options of an `/etc/fstab` line (or `mount -o`) that only concern `mount` itself.
const MOUNT_ONLY_OPTIONS: &[&str] = &[
    "ro", "rw", "defaults", "auto", "noauto", "nofail", "_netdev", "user", "users", "nouser",
    "dev", "nodev", "suid", "nosuid", "exec", "noexec", "atime", "noatime", "relatime",
];

/// The `medimg mount` arguments for a mount helper's command line, as mount(8) runs
/// `mount.fuse.medimg SOURCE MOUNTPOINT [-sfnv] [-o OPTIONS]` for an fstab line such as
/// `medimg /srv/medimg fuse.medimg allow_other,cache_dir=/var/cache/medimg 0 0`. Options
/// name the flags of `medimg mount` with `_` for `-` (`cache_dir=DIR`, `config=FILE`,
/// `catalog=FILE`, `cache_size=SIZE`, `block_size=SIZE`, `threads=N`, `deadline=30s`,
/// `allow_other`); mount's own (`nofail`, `_netdev`, `x-systemd.*`, ...) are left to it.
pub fn helper_args(args: &[String]) -> Result<Vec<String>, CliError> {
    let bad = |message: String| CliError::Flag {
        flag: "mount helper",
        message,
    };
    let mut positional = Vec::new();
    let mut options = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-o" => options.extend(
                it.next()
                    .ok_or_else(|| bad("-o without options".into()))?
                    .split(',')
                    .map(str::to_string),
            ),
            // Sloppy, fake, no-mtab and verbose: nothing to do for them.
            "-s" | "-f" | "-n" | "-v" => {}
            "-t" | "-N" => {
                it.next();
            }
            o if o.starts_with("-o") => options.extend(o[2..].split(',').map(str::to_string)),
            o if o.starts_with('-') => return Err(bad(format!("unknown flag {o}"))),
            p => positional.push(p.to_string()),
        }
    }
    let [_source, mountpoint] = positional.as_slice() else {
        return Err(bad(format!(
            "expected SOURCE MOUNTPOINT [-o OPTIONS], got {positional:?}"
        )));
    };
    let mut out = vec!["mount".to_string(), mountpoint.clone()];
    for o in options.iter().filter(|o| !o.is_empty()) {
        let (key, value) = match o.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (o.as_str(), None),
        };
        if MOUNT_ONLY_OPTIONS.contains(&key) || key.starts_with("x-") || key == "comment" {
            continue;
        }
        match (key, value) {
            ("allow_other", None) => out.push("--allow-other".into()),
            ("offline", None) => out.push("--offline".into()),
            (
                "cache_dir" | "config" | "catalog" | "cache_size" | "block_size" | "threads"
                | "deadline" | "metrics",
                Some(v),
            ) if !v.is_empty() => {
                out.push(format!("--{}", key.replace('_', "-")));
                out.push(v.to_string());
            }
            _ => {
                return Err(bad(format!(
                    "unknown option {o:?}; medimg takes allow_other, cache_dir=, config=, \
                     catalog=, cache_size=, block_size=, threads=, deadline=, metrics= and offline"
                )));
            }
        }
    }
    Ok(out)
}

/// The catalog named by `--catalog`, or the built-in one.
pub fn load_catalog(path: Option<&Path>) -> Result<Catalog, CliError> {
    Ok(match path {
        Some(p) => Catalog::load(p)?,
        None => Catalog::builtin()?,
    })
}

/// Check that `--modality`/`--organ` name vocabulary values (case-insensitive), returning the
/// canonical spelling.
pub fn vocabulary_value(
    flag: &'static str,
    value: &str,
    vocabulary: &[&'static str],
) -> Result<&'static str, CliError> {
    vocabulary
        .iter()
        .find(|v| v.eq_ignore_ascii_case(value))
        .copied()
        .ok_or_else(|| CliError::Flag {
            flag,
            message: format!(
                "unknown value {value:?}; expected one of: {}",
                vocabulary.join(", ")
            ),
        })
}

/// Canonical modality for `--modality`.
pub fn modality(value: &str) -> Result<&'static str, CliError> {
    vocabulary_value("--modality", value, &MODALITIES)
}

/// Canonical organ for `--organ`.
pub fn organ(value: &str) -> Result<&'static str, CliError> {
    vocabulary_value("--organ", value, &ORGANS)
}

/// Check the mountpoint: an existing directory, not already a mount point.
pub fn check_mountpoint(path: &Path) -> Result<PathBuf, CliError> {
    let fail = |message: String| CliError::Mountpoint {
        path: path.to_path_buf(),
        message,
    };
    let meta = std::fs::metadata(path).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOTCONN) => {
            fail("is a mount whose daemon has died; run `fusermount3 -u` on it first".into())
        }
        Some(libc::ENOENT) => fail("does not exist; create it with mkdir first".into()),
        _ => fail(e.to_string()),
    })?;
    if !meta.is_dir() {
        return Err(fail("is not a directory".into()));
    }
    let abs = std::fs::canonicalize(path).map_err(|e| fail(e.to_string()))?;
    let parent = abs.parent().unwrap_or(&abs);
    let parent_meta = std::fs::metadata(parent).map_err(|e| fail(e.to_string()))?;
    use std::os::unix::fs::MetadataExt;
    if abs != parent && meta.dev() != parent_meta.dev() {
        return Err(fail(
            "is already a mount point; unmount it first (fusermount3 -u)".into(),
        ));
    }
    Ok(abs)
}

/// Flags + config file + defaults, validated.
pub fn settings(a: &MountArgs) -> Result<Settings, CliError> {
    let file = match &a.config {
        Some(p) => ConfigFile::load(p)?,
        None => ConfigFile::default(),
    };
    let cfg_place = |key: &str| {
        format!(
            "config file {} `{key}`",
            a.config.as_deref().unwrap_or(Path::new("?")).display()
        )
    };
    let cache_dir = a
        .cache_dir
        .clone()
        .or(file.cache.dir.clone())
        .unwrap_or_else(config::default_cache_dir);
    let size_of = |flag: &'static str, v: &str| {
        parse_size(v).map_err(|message| CliError::Flag { flag, message })
    };
    let block_size = match (&a.block_size, &file.cache.block_size) {
        (Some(v), _) => size_of("--block-size", v)?,
        (None, Some(v)) => parse_size(v).map_err(|message| ConfigError::Invalid {
            place: cfg_place("cache.block_size"),
            message,
        })?,
        (None, None) => DEFAULT_BLOCK_SIZE,
    };
    // 64 KiB is one FUSE read; 1 GiB blocks would make every cold read a huge download.
    if !(64 << 10..=1 << 30).contains(&block_size) {
        return Err(CliError::Flag {
            flag: "--block-size",
            message: format!("{block_size} bytes is outside 64KiB..1GiB"),
        });
    }
    let cache_size = match (&a.cache_size, &file.cache.size) {
        (Some(v), _) => size_of("--cache-size", v)?,
        (None, Some(v)) => parse_size(v).map_err(|message| ConfigError::Invalid {
            place: cfg_place("cache.size"),
            message,
        })?,
        (None, None) => {
            let free = config::free_space(&cache_dir).map_err(|e| CliError::Flag {
                flag: "--cache-dir",
                message: format!("cannot measure free space: {e}"),
            })?;
            (free as f64 * DEFAULT_CACHE_FRACTION) as u64
        }
    };
    if cache_size < block_size * 4 {
        return Err(CliError::Flag {
            flag: "--cache-size",
            message: format!(
                "{} holds fewer than 4 blocks of {}; give at least {}",
                config::human_size(cache_size),
                config::human_size(block_size),
                config::human_size(block_size * 4)
            ),
        });
    }
    let threads = a.threads.or(file.fuse.threads).unwrap_or(DEFAULT_THREADS);
    if !(1..=256).contains(&threads) {
        return Err(CliError::Flag {
            flag: "--threads",
            message: format!("{threads} is outside 1..256"),
        });
    }
    let deadline = match (&a.deadline, &file.upstream.deadline) {
        (Some(v), _) => config::parse_deadline(v).map_err(|message| CliError::Flag {
            flag: "--deadline",
            message,
        })?,
        (None, Some(v)) => config::parse_deadline(v).map_err(|message| ConfigError::Invalid {
            place: cfg_place("upstream.deadline"),
            message,
        })?,
        (None, None) => crate::source::DEFAULT_DEADLINE,
    };
    let metrics = match (&a.metrics, &file.metrics.listen) {
        (Some(v), _) => Some(
            config::parse_metrics_addr(v).map_err(|message| CliError::Flag {
                flag: "--metrics",
                message,
            })?,
        ),
        (None, Some(v)) => {
            Some(
                config::parse_metrics_addr(v).map_err(|message| ConfigError::Invalid {
                    place: cfg_place("[metrics] listen"),
                    message,
                })?,
            )
        }
        (None, None) => None,
    };
    let host_limits = file
        .host
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), h.limit()))
        .collect();
    let shared_cache = file
        .shared_cache
        .as_ref()
        .map(|s| s.validate(&|key| cfg_place(&format!("[shared_cache] {key}"))))
        .transpose()?;
    let guestbook = file
        .guestbook
        .as_ref()
        .map(|g| g.validate(&|key| cfg_place(&format!("[guestbook] {key}"))))
        .transpose()?;
    Ok(Settings {
        cache_dir,
        cache_size,
        block_size,
        mirrors: Mirrors::new(file.mirror),
        threads,
        allow_other: a.allow_other || file.fuse.allow_other.unwrap_or(false),
        credentials_file: file.credentials.file,
        host_limits,
        deadline,
        access: file.access,
        metrics,
        offline: a.offline,
        shared_cache,
        guestbook,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_fstab_line_becomes_mount_flags() {
        let v = |s: &str| s.split(' ').map(str::to_string).collect::<Vec<_>>();
        assert_eq!(
            helper_args(&v(
                "medimg /srv/medimg -o rw,nofail,_netdev,x-systemd.automount,allow_other,cache_dir=/var/cache/medimg,deadline=45s"
            ))
            .unwrap(),
            v("mount /srv/medimg --allow-other --cache-dir /var/cache/medimg --deadline 45s")
        );
        let e = helper_args(&v("medimg /srv/medimg -o allow_other,colour=blue"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"colour=blue\"") && e.contains("cache_dir="),
            "{e}"
        );
        assert!(helper_args(&v("/srv/medimg")).is_err());
    }

    fn args(extra: &[&str]) -> MountArgs {
        let mut v = vec!["medimg", "mount", "/tmp"];
        v.extend_from_slice(extra);
        match Cli::parse_from(v).command {
            Command::Mount(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn flags_beat_the_config_file() {
        let d = tempfile::tempdir().unwrap();
        let cfg = d.path().join("c.toml");
        std::fs::write(
            &cfg,
            "[cache]\nsize = \"1GiB\"\nblock_size = \"1MiB\"\n[fuse]\nthreads = 4\n",
        )
        .unwrap();
        let c = cfg.to_str().unwrap();
        let s = settings(&args(&["--config", c, "--cache-dir", "/tmp/x"])).unwrap();
        assert_eq!(
            (s.cache_size, s.block_size, s.threads),
            (1 << 30, 1 << 20, 4)
        );
        let s = settings(&args(&[
            "--config",
            c,
            "--cache-size",
            "2GiB",
            "--cache-dir",
            "/tmp/x",
        ]))
        .unwrap();
        assert_eq!(s.cache_size, 2 << 30);
    }

    #[test]
    fn bad_values_name_the_flag() {
        let e = settings(&args(&["--cache-size", "1MiB", "--cache-dir", "/tmp/x"])).unwrap_err();
        assert!(e.to_string().starts_with("--cache-size"), "{e}");
        let e = settings(&args(&["--block-size", "1KiB", "--cache-dir", "/tmp/x"])).unwrap_err();
        assert!(e.to_string().starts_with("--block-size"), "{e}");
        assert!(modality("x-RAY").is_ok());
        assert!(
            organ("lungs")
                .unwrap_err()
                .to_string()
                .contains("lung, brain")
        );
    }

    #[test]
    fn mountpoint_must_be_an_existing_plain_directory() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        std::fs::write(&f, "").unwrap();
        assert!(
            check_mountpoint(&f)
                .unwrap_err()
                .to_string()
                .contains("not a directory")
        );
        let e = check_mountpoint(&d.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not exist"), "{e}");
        assert!(check_mountpoint(d.path()).is_ok());
        assert!(
            check_mountpoint(Path::new("/proc"))
                .unwrap_err()
                .to_string()
                .contains("already a mount point")
        );
    }
}
