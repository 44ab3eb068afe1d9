//! Settings: the config file, byte sizes, and mirror rules.
//!
//! `Settings` is the validated result of flags + config file + defaults; nothing below the CLI
//! sees clap or TOML. Precedence: a flag beats the config file, which beats the default.
//! Mirror rules rewrite every URL the daemon requests (catalog URLs and URLs found in upstream
//! answers, such as redirects): the first rule whose `from` is a prefix of the URL wins.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::source::limits::HostLimit;

/// Default block size: large enough that a 1 GB archive costs about 256 requests (hosts such as
/// Zenodo allow 60 a minute), small enough that one cold image read waits for little extra.
pub const DEFAULT_BLOCK_SIZE: u64 = 4 << 20;

/// Default number of FUSE worker threads: enough that a DataLoader with 8-16 workers reading cold
/// files never queues behind another worker's download.
pub const DEFAULT_THREADS: usize = 16;

/// The fraction of the cache filesystem's free space used when no `--cache-size` is given.
pub const DEFAULT_CACHE_FRACTION: f64 = 0.25;

/// Validated daemon settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the cache (index, blocks) lives.
    pub cache_dir: PathBuf,
    /// Hard limit on the bytes of cached blocks.
    pub cache_size: u64,
    /// Size of the aligned blocks fetched from upstream and cached.
    pub block_size: u64,
    /// URL rewrite rules.
    pub mirrors: Mirrors,
    /// FUSE worker threads.
    pub threads: usize,
    /// Let users other than the one who mounted read the tree.
    pub allow_other: bool,
    /// The credentials file named by the config, if any.
    pub credentials_file: Option<PathBuf>,
    /// Per-host request budgets that replace the defaults.
    pub host_limits: std::collections::HashMap<String, HostLimit>,
    /// How long a reader waits for an upstream before it gets EIO.
    pub deadline: Duration,
    /// Which Unix group may read which dataset, as written (resolved against the catalog).
    pub access: crate::access::AccessSection,
    /// Where the Prometheus endpoint listens, if anywhere.
    pub metrics: Option<std::net::SocketAddr>,
    /// Ask no host anything: serve the cache only.
    pub offline: bool,
    /// The store the daemons of a cluster share, if any (`[shared_cache]`).
    pub shared_cache: Option<SharedCache>,
    /// The user's answers to Dataverse guestbooks (`[guestbook]`), if given.
    pub guestbook: Option<crate::source::guestbook::Guestbook>,
}

/// A config file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Unreadable file.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The path given.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Not TOML, or unknown keys.
    #[error("config file {path} is malformed: {message}")]
    Syntax {
        /// The path given.
        path: String,
        /// The parser's message with line and column.
        message: String,
    },
    /// A value out of range.
    #[error("{place}: {message}")]
    Invalid {
        /// The file and key, or the flag.
        place: String,
        /// What is wrong and what is allowed.
        message: String,
    },
}

/// The config file as written (`config/medimg.toml` documents every key).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// `[cache]`
    #[serde(default)]
    pub cache: CacheSection,
    /// `[fuse]`
    #[serde(default)]
    pub fuse: FuseSection,
    /// `[[mirror]]`
    #[serde(default)]
    pub mirror: Vec<MirrorRule>,
    /// `[credentials]`
    #[serde(default)]
    pub credentials: CredentialsSection,
    /// `[[host]]`
    #[serde(default)]
    pub host: Vec<HostSection>,
    /// `[upstream]`
    #[serde(default)]
    pub upstream: UpstreamSection,
    /// `[access]`
    #[serde(default)]
    pub access: crate::access::AccessSection,
    /// `[metrics]`
    #[serde(default)]
    pub metrics: MetricsSection,
    /// `[shared_cache]`
    pub shared_cache: Option<SharedCacheSection>,
    /// `[guestbook]`
    pub guestbook: Option<GuestbookSection>,
}

/// `[guestbook]` of the config file: what medimg answers when a Dataverse dataset asks each
/// downloader for a guestbook response ([`crate::source::guestbook`]).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestbookSection {
    /// Full name (required).
    pub name: Option<String>,
    /// E-mail address (required).
    pub email: Option<String>,
    /// Institution.
    pub institution: Option<String>,
    /// Position.
    pub position: Option<String>,
}

impl GuestbookSection {
    /// Check every key; `place` names a key in errors.
    pub fn validate(
        &self,
        place: &dyn Fn(&str) -> String,
    ) -> Result<crate::source::guestbook::Guestbook, ConfigError> {
        let bad = |key: &str, message: &str| ConfigError::Invalid {
            place: place(key),
            message: message.to_string(),
        };
        let text = |key: &str, v: &Option<String>| -> Result<Option<String>, ConfigError> {
            match v.as_deref().map(str::trim) {
                Some("") => Err(bad(key, "is empty; give a value or leave the key out")),
                Some(t) if t.len() > 255 || t.chars().any(char::is_control) => Err(bad(
                    key,
                    "must be one line of at most 255 characters (Dataverse's limit)",
                )),
                t => Ok(t.map(str::to_string)),
            }
        };
        let name = text("name", &self.name)?
            .ok_or_else(|| bad("name", "is missing; a guestbook response needs your name"))?;
        let email = text("email", &self.email)?.ok_or_else(|| {
            bad(
                "email",
                "is missing; a guestbook response needs your e-mail address",
            )
        })?;
        match email.split_once('@') {
            Some((user, domain)) if !user.is_empty() && domain.contains('.') => {}
            _ => {
                return Err(bad(
                    "email",
                    "is not an e-mail address like \"ada@example.org\"",
                ));
            }
        }
        Ok(crate::source::guestbook::Guestbook {
            name,
            email,
            institution: text("institution", &self.institution)?,
            position: text("position", &self.position)?,
        })
    }
}

/// `[shared_cache]` of the config file: an S3-compatible store the daemons of a cluster share
/// blocks and listings through ([`crate::tier`]).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedCacheSection {
    /// `http(s)://host[:port]` of the store's S3 API.
    pub endpoint: Option<String>,
    /// The bucket, created beforehand.
    pub bucket: Option<String>,
    /// A prefix for every object medimg writes, e.g. "medimg/".
    pub prefix: Option<String>,
    /// SigV4 region (default "us-east-1", what most compatible stores expect).
    pub region: Option<String>,
    /// Address the bucket as `bucket.host` rather than `host/bucket`.
    pub virtual_host: Option<bool>,
    /// The section of the AWS credentials file to read keys from.
    pub profile: Option<String>,
    /// How long a node's claim to fetch an object holds without renewal, e.g. "30s".
    pub lease: Option<String>,
    /// The longest a reader waits for a block another node is fetching, e.g. "30s".
    pub wait: Option<String>,
    /// How long one request to the store may take, e.g. "5s".
    pub timeout: Option<String>,
}

/// The validated `[shared_cache]`.
#[derive(Debug, Clone)]
pub struct SharedCache {
    /// Where the store is.
    pub store: crate::tier::s3::S3Settings,
    /// Leases and waiting.
    pub tier: crate::tier::TierSettings,
    /// The AWS credentials file's section to read, if not `AWS_PROFILE` or `default`.
    pub profile: Option<String>,
}

impl SharedCacheSection {
    /// Check every key; `place` names a key in errors.
    pub fn validate(&self, place: &dyn Fn(&str) -> String) -> Result<SharedCache, ConfigError> {
        let bad = |key: &str, message: String| ConfigError::Invalid {
            place: place(key),
            message,
        };
        let endpoint = self.endpoint.as_deref().ok_or_else(|| {
            bad(
                "endpoint",
                "is missing: name the store's S3 API, e.g. \"http://10.0.0.5:8333\"".into(),
            )
        })?;
        let endpoint = parse_endpoint(endpoint).map_err(|m| bad("endpoint", m))?;
        let bucket = self.bucket.as_deref().ok_or_else(|| {
            bad(
                "bucket",
                "is missing: name the bucket, e.g. \"medimg\"".into(),
            )
        })?;
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
            && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
            && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !bucket_ok {
            return Err(bad(
                "bucket",
                format!(
                    "{bucket:?} is not a bucket name: 3 to 63 lowercase letters, digits, dots \
                     and hyphens, starting and ending with a letter or digit"
                ),
            ));
        }
        let mut prefix = self.prefix.clone().unwrap_or_default();
        let prefix_ok = prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c))
            && !prefix.starts_with('/')
            && !prefix.split('/').any(|s| s == ".." || s == ".")
            && !prefix.contains("//");
        if !prefix_ok {
            return Err(bad(
                "prefix",
                format!(
                    "{prefix:?} is not a key prefix: letters, digits, '.', '_', '-' and '/' \
                     between names, e.g. \"medimg/\""
                ),
            ));
        }
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        let region = self.region.clone().unwrap_or_else(|| "us-east-1".into());
        if region.is_empty()
            || !region
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(bad(
                "region",
                format!("{region:?} is not a region name such as \"us-east-1\""),
            ));
        }
        let duration = |key: &str, v: &Option<String>, default: u64, range: (u64, u64)| {
            let Some(text) = v else {
                return Ok(Duration::from_secs(default));
            };
            let d = humantime::parse_duration(text.trim())
                .map_err(|e| bad(key, format!("{text:?} is not a duration like \"30s\": {e}")))?;
            if !(Duration::from_secs(range.0)..=Duration::from_secs(range.1)).contains(&d) {
                return Err(bad(
                    key,
                    format!("{text:?} is outside {}s..{}s", range.0, range.1),
                ));
            }
            Ok(d)
        };
        Ok(SharedCache {
            store: crate::tier::s3::S3Settings {
                endpoint,
                bucket: bucket.to_string(),
                prefix,
                region,
                virtual_host: self.virtual_host.unwrap_or(false),
                timeout: duration("timeout", &self.timeout, 5, (1, 60))?,
            },
            tier: crate::tier::TierSettings {
                lease: duration("lease", &self.lease, 30, (3, 600))?,
                wait: duration("wait", &self.wait, 30, (1, 600))?,
            },
            profile: self.profile.clone(),
        })
    }
}

/// A store endpoint as written: `http(s)://host[:port]`, no user, path or query; returned
/// without a trailing `/`.
fn parse_endpoint(text: &str) -> Result<String, String> {
    let u = reqwest::Url::parse(text.trim())
        .map_err(|e| format!("{text:?} is not a URL like \"http://10.0.0.5:8333\" ({e})"))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err(format!("{text:?} is not an http(s) URL with a host"));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(format!(
            "{text:?} carries a user name or password; put the store's keys in the \
             credentials file or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY instead"
        ));
    }
    if u.path() != "/" || u.query().is_some() || u.fragment().is_some() {
        return Err(format!(
            "{text:?} has a path or query; give the endpoint alone and the bucket as `bucket`"
        ));
    }
    Ok(u.as_str().trim_end_matches('/').to_string())
}

/// `[metrics]` of the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Loopback address and port of the Prometheus endpoint, e.g. "127.0.0.1:9464".
    pub listen: Option<String>,
}

/// A metrics address as written: an IP and a port, on loopback only.
pub fn parse_metrics_addr(text: &str) -> Result<std::net::SocketAddr, String> {
    let addr: std::net::SocketAddr = text
        .trim()
        .parse()
        .map_err(|e| format!("{text:?} is not an address like \"127.0.0.1:9464\" ({e})"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "{addr} is not a loopback address; metrics listen on 127.0.0.1 or [::1] only"
        ));
    }
    Ok(addr)
}

/// `[upstream]` of the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSection {
    /// How long a reader waits for an upstream, e.g. "30s".
    pub deadline: Option<String>,
}

/// The longest deadline accepted: past it a reader is better told than kept waiting.
pub const MAX_DEADLINE: Duration = Duration::from_secs(600);

/// A deadline as written ("30s", "2m", "500ms"), between 1 s and [`MAX_DEADLINE`].
pub fn parse_deadline(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim())
        .map_err(|e| format!("{text:?} is not a duration like \"30s\" or \"2m\": {e}"))?;
    if !(Duration::from_secs(1)..=MAX_DEADLINE).contains(&d) {
        return Err(format!(
            "{text:?} is outside 1s..{}s",
            MAX_DEADLINE.as_secs()
        ));
    }
    Ok(d)
}

/// `[credentials]` of the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsSection {
    /// A TOML file of `[[credential]]` entries, mode 600.
    pub file: Option<PathBuf>,
}

/// The most requests a `[[host]]` may have in flight at once.
pub const MAX_CONCURRENCY: usize = 10_000;
/// The lowest rate a `[[host]]` may set (one request every 1000 minutes), short of no limit.
pub const MIN_RATE: f64 = 0.001;

/// One `[[host]]` budget of the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSection {
    /// The host name, e.g. `zenodo.org`.
    pub name: String,
    /// Requests in flight at once.
    pub concurrency: Option<usize>,
    /// Requests started per minute (0: no limit).
    pub requests_per_minute: Option<f64>,
    /// Requests that may start at once before the rate applies.
    pub burst: Option<u32>,
}

impl HostSection {
    /// The budget: this entry's values over the host's default.
    pub fn limit(&self) -> HostLimit {
        let d = crate::source::limits::default_limit(&self.name);
        HostLimit {
            concurrency: self.concurrency.unwrap_or(d.concurrency),
            per_minute: match self.requests_per_minute {
                Some(r) if r > 0.0 => Some(r),
                Some(_) => None,
                None => d.per_minute,
            },
            burst: self.burst.unwrap_or(d.burst),
        }
    }
}

/// `[cache]` of the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSection {
    /// Cache directory.
    pub dir: Option<PathBuf>,
    /// Cache size limit, e.g. "50GiB".
    pub size: Option<String>,
    /// Block size, e.g. "4MiB".
    pub block_size: Option<String>,
}

/// `[fuse]` of the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FuseSection {
    /// Worker threads.
    pub threads: Option<usize>,
    /// Same as `--allow-other`.
    pub allow_other: Option<bool>,
}

/// One `[[mirror]]` rule.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MirrorRule {
    /// URL prefix to replace.
    pub from: String,
    /// What replaces it.
    pub to: String,
}

/// Ordered mirror rules.
#[derive(Debug, Clone, Default)]
pub struct Mirrors {
    rules: Vec<MirrorRule>,
}

impl Mirrors {
    /// Rules in the order given; the first matching one wins.
    pub fn new(rules: Vec<MirrorRule>) -> Mirrors {
        Mirrors { rules }
    }

    /// `url` with the first matching rule applied (unchanged when none matches).
    pub fn rewrite(&self, url: &str) -> String {
        for r in &self.rules {
            if let Some(rest) = url.strip_prefix(&r.from) {
                return format!("{}{rest}", r.to);
            }
        }
        url.to_string()
    }

    /// Whether a rule names `url`: one rewrites it, or it lies under a rule's `to` (the same
    /// scheme, host and port, below its path).
    pub fn names(&self, url: &str) -> bool {
        let Ok(u) = reqwest::Url::parse(url) else {
            return false;
        };
        self.rules.iter().any(|r| {
            url.starts_with(&r.from)
                || reqwest::Url::parse(&r.to).is_ok_and(|to| {
                    to.scheme() == u.scheme()
                        && to.host_str() == u.host_str()
                        && to.port_or_known_default() == u.port_or_known_default()
                        && u.path().starts_with(to.path())
                })
        })
    }
}

impl ConfigFile {
    /// Read and parse a config file.
    pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        ConfigFile::parse(&text, path)
    }

    /// Parse and check the text of a config file read from `path` (named in errors).
    pub fn parse(text: &str, path: &Path) -> Result<ConfigFile, ConfigError> {
        let cfg: ConfigFile = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.display().to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        for (i, m) in cfg.mirror.iter().enumerate() {
            let place = |key: &str| format!("{} mirror #{} `{key}`", path.display(), i + 1);
            for (key, v) in [("from", &m.from), ("to", &m.to)] {
                if !(v.starts_with("http://") || v.starts_with("https://")) {
                    return Err(ConfigError::Invalid {
                        place: place(key),
                        message: format!("{v:?} is not an http(s) URL prefix"),
                    });
                }
            }
            // `from = "https://host/"`, `to = "http://127.0.0.1:8080"` would glue the rest of
            // every URL to the port ("...:8080path"), a URL no request can be made to.
            if m.from.ends_with('/') && !m.to.ends_with('/') {
                return Err(ConfigError::Invalid {
                    place: place("to"),
                    message: format!(
                        "{:?} should end with \"/\" as `from` ({:?}) does: the rest of each URL \
                         is appended to it",
                        m.to, m.from
                    ),
                });
            }
        }
        for (i, h) in cfg.host.iter().enumerate() {
            let place = |key: &str| format!("{} host #{} `{key}`", path.display(), i + 1);
            if h.name.is_empty() || h.name.contains(['/', ':', ' ']) {
                return Err(ConfigError::Invalid {
                    place: place("name"),
                    message: format!(
                        "{:?} is not a bare host name such as \"zenodo.org\"",
                        h.name
                    ),
                });
            }
            if h.concurrency
                .is_some_and(|c| !(1..=MAX_CONCURRENCY).contains(&c))
            {
                return Err(ConfigError::Invalid {
                    place: place("concurrency"),
                    message: format!("must be between 1 and {MAX_CONCURRENCY}"),
                });
            }
            // The limiter spaces requests 60/rate seconds apart, times the burst: a rate near
            // zero makes an interval no clock can hold.
            if h.requests_per_minute
                .is_some_and(|r| !r.is_finite() || r < 0.0 || (r > 0.0 && r < MIN_RATE))
            {
                return Err(ConfigError::Invalid {
                    place: place("requests_per_minute"),
                    message: format!(
                        "must be a number of requests of at least {MIN_RATE}, 0 for no limit"
                    ),
                });
            }
        }
        Ok(cfg)
    }
}

/// Parse a byte size: a number with an optional unit (`B`, `K`/`KB`/`KiB`, `M`, `G`, `T`; all
/// powers of 1024, since cache sizes are compared with `du`), e.g. `512MiB`, `20G`, `1048576`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size; write e.g. 512MiB, 20GiB or 1048576"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        other => {
            return Err(format!(
                "{s:?}: unknown unit {other:?}; use B, KiB, MiB, GiB or TiB"
            ));
        }
    };
    let bytes = value * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(bytes as u64)
}

/// Render a byte count for people, e.g. `4.0 MiB`.
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The default cache directory: `$XDG_CACHE_HOME/medimg` (usually `~/.cache/medimg`).
pub fn default_cache_dir() -> PathBuf {
    dirs::cache_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("medimg")
}

/// Free bytes on the filesystem holding `path` (or its nearest existing ancestor).
pub fn free_space(path: &Path) -> std::io::Result<u64> {
    let mut p = path.to_path_buf();
    while !p.exists() {
        if !p.pop() {
            break;
        }
    }
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        assert_eq!(parse_size("4MiB").unwrap(), 4 << 20);
        assert_eq!(parse_size("20G").unwrap(), 20 << 30);
        assert_eq!(parse_size("1.5 KiB").unwrap(), 1536);
        assert!(parse_size("lots").unwrap_err().contains("not a size"));
        assert!(
            parse_size("5 parsecs")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(parse_size("0").is_err());
    }

    #[test]
    fn first_matching_mirror_rule_wins() {
        let m = Mirrors::new(vec![
            MirrorRule {
                from: "https://zenodo.org/".into(),
                to: "http://127.0.0.1:8080/zenodo/".into(),
            },
            MirrorRule {
                from: "https://".into(),
                to: "http://127.0.0.1:9/".into(),
            },
        ]);
        assert_eq!(
            m.rewrite("https://zenodo.org/records/1/files/a.zip"),
            "http://127.0.0.1:8080/zenodo/records/1/files/a.zip"
        );
        assert_eq!(m.rewrite("https://x.org/a"), "http://127.0.0.1:9/x.org/a");
        assert_eq!(m.rewrite("http://x.org/a"), "http://x.org/a");
        // What a rule names: what it rewrites, and what lies under its `to`.
        assert!(m.names("https://x.org/a"));
        assert!(m.names("http://127.0.0.1:8080/zenodo/x"));
        assert!(!m.names("http://127.0.0.1:8080/other/x"));
        assert!(!m.names("http://127.0.0.1:80/zenodo/x"));
        assert!(!m.names("http://x.org/a"));
    }

    #[test]
    fn config_file_rejects_unknown_keys_and_bad_mirrors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.toml");
        std::fs::write(&p, "[cache]\nsise = \"1G\"\n").unwrap();
        let e = ConfigFile::load(&p).unwrap_err().to_string();
        assert!(e.contains("m.toml") && e.contains("sise"), "{e}");
        std::fs::write(
            &p,
            "[[mirror]]\nfrom = \"zenodo.org\"\nto = \"http://a/\"\n",
        )
        .unwrap();
        let e = ConfigFile::load(&p).unwrap_err().to_string();
        assert!(e.contains("mirror #1 `from`"), "{e}");
        std::fs::write(
            &p,
            "[[mirror]]\nfrom = \"https://zenodo.org/\"\nto = \"http://127.0.0.1:8080\"\n",
        )
        .unwrap();
        let e = ConfigFile::load(&p).unwrap_err().to_string();
        assert!(
            e.contains("mirror #1 `to`") && e.contains("should end with"),
            "{e}"
        );
        std::fs::write(&p, "[[host]]\nname = \"https://zenodo.org\"\n").unwrap();
        let e = ConfigFile::load(&p).unwrap_err().to_string();
        assert!(e.contains("host #1 `name`"), "{e}");
        std::fs::write(&p, "[[host]]\nname = \"zenodo.org\"\nconcurrency = 0\n").unwrap();
        let e = ConfigFile::load(&p).unwrap_err().to_string();
        assert!(e.contains("host #1 `concurrency`"), "{e}");
        std::fs::write(
            &p,
            "[[host]]\nname = \"zenodo.org\"\nrequests_per_minute = 0\n[credentials]\nfile = \"/x\"\n",
        )
        .unwrap();
        let cfg = ConfigFile::load(&p).unwrap();
        let l = cfg.host[0].limit();
        assert_eq!(
            (l.concurrency, l.per_minute),
            (4, None),
            "0 lifts the rate, the rest stays"
        );
        assert_eq!(cfg.credentials.file.as_deref(), Some(Path::new("/x")));
    }

    /// Found by fuzzing the config with the limiter it sets up (`config_parse`): each of
    /// these budgets panicked the HTTP runtime on the host's first request.
    #[test]
    fn host_budgets_no_clock_or_semaphore_can_hold_are_refused() {
        for (key, text) in [
            ("requests_per_minute", "requests_per_minute = 1e-300"),
            (
                "requests_per_minute",
                "requests_per_minute = 1e-9\nburst = 4000000000",
            ),
            ("concurrency", "concurrency = 9223372036854775807"),
        ] {
            let text = format!("[[host]]\nname = \"a.org\"\n{text}\n");
            let e = ConfigFile::parse(&text, Path::new("m.toml"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("host #1 `{key}`")), "{e}");
        }
        let ok = "[[host]]\nname = \"a.org\"\nrequests_per_minute = 0.001\nburst = 4000000000\n";
        assert!(ConfigFile::parse(ok, Path::new("m.toml")).is_ok());
    }

    #[test]
    fn shipped_example_config_parses() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/medimg.toml");
        let cfg = ConfigFile::load(&p).unwrap();
        assert!(parse_size(cfg.cache.block_size.as_deref().unwrap()).is_ok());
    }

    #[test]
    fn guestbook_section_is_checked_key_by_key() {
        let check = |text: &str| {
            let cfg = ConfigFile::parse(&format!("[guestbook]\n{text}\n"), Path::new("m.toml"))?;
            cfg.guestbook
                .expect("a [guestbook] section")
                .validate(&|k| format!("m.toml `[guestbook] {k}`"))
        };
        let ok =
            check("name = \" Ada Lovelace \"\nemail = \"ada@example.org\"\nposition = \"PhD\"")
                .unwrap();
        assert_eq!(ok.name, "Ada Lovelace");
        assert_eq!(ok.institution, None);
        assert_eq!(ok.position.as_deref(), Some("PhD"));
        for (text, key, says) in [
            ("email = \"a@b.org\"", "name", "is missing"),
            ("name = \"A\"", "email", "is missing"),
            ("name = \"A\"\nemail = \"ada\"", "email", "not an e-mail"),
            ("name = \"\"\nemail = \"a@b.org\"", "name", "is empty"),
            ("name = \"A\\nB\"\nemail = \"a@b.org\"", "name", "one line"),
        ] {
            let e = check(text).unwrap_err().to_string();
            assert!(
                e.contains(&format!("`[guestbook] {key}`")) && e.contains(says),
                "{text}: {e}"
            );
        }
        let e = ConfigFile::parse("[guestbook]\nmail = \"x\"\n", Path::new("m.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("mail"), "{e}");
    }

    #[test]
    fn shared_cache_section_is_checked_key_by_key() {
        let check = |text: &str| {
            let cfg = ConfigFile::parse(text, Path::new("m.toml"))?;
            cfg.shared_cache
                .expect("a [shared_cache] section")
                .validate(&|k| format!("m.toml `[shared_cache] {k}`"))
        };
        let ok = check(
            "[shared_cache]\nendpoint = \"http://10.0.0.5:8333/\"\nbucket = \"medimg\"\n\
             prefix = \"lab/a\"\nlease = \"20s\"\n",
        )
        .unwrap();
        assert_eq!(ok.store.endpoint, "http://10.0.0.5:8333");
        assert_eq!(ok.store.prefix, "lab/a/");
        assert_eq!(ok.store.region, "us-east-1");
        assert_eq!(ok.tier.lease, Duration::from_secs(20));
        assert_eq!(ok.store.timeout, Duration::from_secs(5));
        for (text, key, says) in [
            ("bucket = \"b\"", "endpoint", "is missing"),
            ("endpoint = \"http://s:1\"", "bucket", "is missing"),
            (
                "endpoint = \"s3.lab\"\nbucket = \"abc\"",
                "endpoint",
                "not a URL",
            ),
            (
                "endpoint = \"ftp://s\"\nbucket = \"abc\"",
                "endpoint",
                "http(s)",
            ),
            (
                "endpoint = \"http://k:s@s\"\nbucket = \"abc\"",
                "endpoint",
                "password",
            ),
            (
                "endpoint = \"http://s/x\"\nbucket = \"abc\"",
                "endpoint",
                "path",
            ),
            (
                "endpoint = \"http://s\"\nbucket = \"My_Bucket\"",
                "bucket",
                "bucket name",
            ),
            (
                "endpoint = \"http://s\"\nbucket = \"abc\"\nprefix = \"a/../b\"",
                "prefix",
                "prefix",
            ),
            (
                "endpoint = \"http://s\"\nbucket = \"abc\"\nprefix = \"/a\"",
                "prefix",
                "prefix",
            ),
            (
                "endpoint = \"http://s\"\nbucket = \"abc\"\nlease = \"1s\"",
                "lease",
                "outside",
            ),
            (
                "endpoint = \"http://s\"\nbucket = \"abc\"\nwait = \"soon\"",
                "wait",
                "duration",
            ),
            (
                "endpoint = \"http://s\"\nbucket = \"abc\"\nregion = \"us east\"",
                "region",
                "region",
            ),
        ] {
            let e = check(&format!("[shared_cache]\n{text}\n"))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(&format!("`[shared_cache] {key}`")) && e.contains(says),
                "{text}: {e}"
            );
        }
        let e = ConfigFile::parse("[shared_cache]\nbukket = \"x\"\n", Path::new("m.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("bukket"), "{e}");
    }
}
