//! Credentials for hosts that want them, read from where each host's own tools keep them.
//!
//! Sources, first found wins per host:
//! 1. the credentials file named in the config (`[credentials] file`), refused outright when
//!    its mode lets the group or others read it;
//! 2. environment variables the hosts' tools use (`KAGGLE_API_TOKEN`, `KAGGLE_USERNAME` +
//!    `KAGGLE_KEY`, `PHYSIONET_USERNAME` + `PHYSIONET_PASSWORD`, `SYNAPSE_AUTH_TOKEN`,
//!    `GOOGLE_API_KEY`, `GITHUB_TOKEN`, `HF_TOKEN`, `ZENODO_TOKEN`, `FIGSHARE_TOKEN`,
//!    `OSF_TOKEN`; a Dataverse installation's key goes in the credentials file, since each
//!    installation is its own host);
//! 3. the hosts' tools' files: `$KAGGLE_CONFIG_DIR` or `~/.kaggle` (`access_token`,
//!    `kaggle.json`), `~/.netrc` (`machine physionet.org`), `~/.cache/huggingface/token`. These
//!    are skipped with a warning when group- or world-readable.
//!
//! Invariants: a credential is bound to one host name and is attached only to a request whose
//! URL (as the catalog or the redirect names it, before mirror rules) has exactly that host, so
//! it never follows a redirect to object storage; secrets never appear in `Debug` output or
//! logs.

use std::collections::HashMap;
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A secret string that prints as `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How a credential is presented to its host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: Bearer <token>`.
    Bearer(Secret),
    /// HTTP Basic.
    Basic {
        /// User name (not secret).
        user: String,
        /// Password or key.
        password: Secret,
    },
    /// A header of the host's own (`Authorization: token …` for figshare, `X-Dataverse-key`).
    Header {
        /// Header name.
        name: String,
        /// Header value.
        value: Secret,
    },
    /// A query parameter (Google's `key=`, the only API that wants it there).
    Query {
        /// Parameter name.
        name: String,
        /// Its value.
        value: Secret,
    },
    /// Keys of an S3-compatible store, for the shared cache (signed with SigV4 by
    /// [`crate::tier::s3`]; never sent to an upstream host).
    SigV4(StoreKeys),
}

/// The keys of an S3-compatible store (SigV4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreKeys {
    /// The access key id (not secret: stores log it).
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: Secret,
    /// A temporary session token, if the keys are temporary.
    pub session_token: Option<Secret>,
    /// Where they were found, for messages.
    pub origin: String,
}

/// One credential and where it came from (for messages; never the secret).
#[derive(Debug, Clone)]
pub struct Credential {
    /// The exact host it belongs to.
    pub host: String,
    /// How it is sent.
    pub auth: Auth,
    /// Where it was found, e.g. `KAGGLE_API_TOKEN` or `/root/.kaggle/kaggle.json`.
    pub origin: String,
}

/// Every credential medimg found, by host.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    by_host: HashMap<String, Credential>,
}

/// A credentials file medimg will not use.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// Unreadable.
    #[error("cannot read credentials file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Readable by others.
    #[error(
        "credentials file {path} is readable by group or others (mode {mode:o}); \
         medimg refuses to use it: run `chmod 600 {path}`"
    )]
    Exposed {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// Not the expected shape.
    #[error("credentials file {path}: {message}")]
    Malformed {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// What a host wants and where a user puts it, for messages ("set KAGGLE_API_TOKEN ...").
pub fn how_to_provide(host: &str) -> &'static str {
    match host {
        "www.kaggle.com" => {
            "a Kaggle API token: set KAGGLE_API_TOKEN, or put it in ~/.kaggle/access_token, or \
             put kaggle.json (Kaggle > Settings > API > Create New Token) in ~/.kaggle/ with mode 600"
        }
        "physionet.org" => {
            "a PhysioNet account: set PHYSIONET_USERNAME and PHYSIONET_PASSWORD, or add \
             `machine physionet.org login USER password PASS` to ~/.netrc (mode 600)"
        }
        "repo-prod.prod.sagebase.org" => {
            "a Synapse personal access token (synapse.org > Account Settings > Personal Access \
             Tokens): set SYNAPSE_AUTH_TOKEN"
        }
        "www.googleapis.com" => {
            "a Google API key with the Drive API enabled (console.cloud.google.com > APIs & \
             Services > Credentials): set GOOGLE_API_KEY"
        }
        "huggingface.co" => {
            "a Hugging Face token (huggingface.co/settings/tokens): set HF_TOKEN, or run \
             `huggingface-cli login`"
        }
        _ => "a token for this host in the credentials file named by `[credentials] file`",
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    credential: Vec<RawCredential>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCredential {
    host: String,
    bearer: Option<String>,
    username: Option<String>,
    password: Option<String>,
    header: Option<String>,
    query: Option<String>,
    value: Option<String>,
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    session_token: Option<String>,
}

impl Credentials {
    /// No credentials at all.
    pub fn none() -> Credentials {
        Credentials::default()
    }

    /// Gather credentials from `file` (if any), the environment `env`, and the host tools' files
    /// under `home`. Returns them with warnings about files that were skipped.
    pub fn gather(
        file: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
        home: Option<&Path>,
    ) -> Result<(Credentials, Vec<String>), CredentialError> {
        let mut c = Credentials::default();
        let mut warnings = Vec::new();
        if let Some(path) = file {
            for cred in read_file(path)? {
                c.add(cred);
            }
        }
        let env_nonempty = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        let simple = [
            ("KAGGLE_API_TOKEN", "www.kaggle.com"),
            ("SYNAPSE_AUTH_TOKEN", "repo-prod.prod.sagebase.org"),
            ("GITHUB_TOKEN", "api.github.com"),
            ("HF_TOKEN", "huggingface.co"),
            ("ZENODO_TOKEN", "zenodo.org"),
            ("OSF_TOKEN", "api.osf.io"),
        ];
        for (var, host) in simple {
            let Some(v) = env_nonempty(var) else { continue };
            // Kaggle's client also takes KAGGLE_API_TOKEN as the path of a file holding the
            // token: a value naming a file is that file's content, never sent itself.
            let path = Path::new(v.trim());
            if var == "KAGGLE_API_TOKEN" && path.is_absolute() && path.is_file() {
                if let Some(token) = read_tool_file(path, &mut warnings) {
                    c.add(Credential {
                        host: host.to_string(),
                        auth: Auth::Bearer(Secret::new(token.trim())),
                        origin: format!("the file KAGGLE_API_TOKEN names, {}", path.display()),
                    });
                }
                continue;
            }
            c.add_env(host, Auth::Bearer(Secret::new(v.trim())), var);
        }
        if let Some(v) = env_nonempty("GOOGLE_API_KEY") {
            let auth = Auth::Query {
                name: "key".into(),
                value: Secret::new(v.trim()),
            };
            c.add_env("www.googleapis.com", auth, "GOOGLE_API_KEY");
        }
        if let Some(v) = env_nonempty("FIGSHARE_TOKEN") {
            let auth = Auth::Header {
                name: "Authorization".into(),
                value: Secret::new(format!("token {}", v.trim())),
            };
            c.add_env("api.figshare.com", auth, "FIGSHARE_TOKEN");
        }
        if let (Some(u), Some(k)) = (env_nonempty("KAGGLE_USERNAME"), env_nonempty("KAGGLE_KEY")) {
            let auth = Auth::Basic {
                user: u,
                password: Secret::new(k),
            };
            c.add_env("www.kaggle.com", auth, "KAGGLE_USERNAME/KAGGLE_KEY");
        }
        if let (Some(u), Some(p)) = (
            env_nonempty("PHYSIONET_USERNAME"),
            env_nonempty("PHYSIONET_PASSWORD"),
        ) {
            let auth = Auth::Basic {
                user: u,
                password: Secret::new(p),
            };
            c.add_env(
                "physionet.org",
                auth,
                "PHYSIONET_USERNAME/PHYSIONET_PASSWORD",
            );
        }
        let kaggle_dir = env_nonempty("KAGGLE_CONFIG_DIR")
            .map(PathBuf::from)
            .or_else(|| home.map(|h| h.join(".kaggle")));
        if let Some(dir) = kaggle_dir {
            let token = dir.join("access_token");
            if let Some(t) = read_tool_file(&token, &mut warnings) {
                let auth = Auth::Bearer(Secret::new(t.trim()));
                c.add_tool("www.kaggle.com", auth, &token);
            }
            let json = dir.join("kaggle.json");
            if let Some(t) = read_tool_file(&json, &mut warnings) {
                #[derive(Deserialize)]
                struct KaggleJson {
                    username: String,
                    key: String,
                }
                match serde_json::from_str::<KaggleJson>(&t) {
                    Ok(k) => {
                        let auth = Auth::Basic {
                            user: k.username,
                            password: Secret::new(k.key),
                        };
                        c.add_tool("www.kaggle.com", auth, &json);
                    }
                    Err(e) => warnings.push(format!(
                        "{}: not a Kaggle API key file ({e}); ignored",
                        json.display()
                    )),
                }
            }
        }
        if let Some(h) = home {
            let netrc = h.join(".netrc");
            if let Some(t) = read_tool_file(&netrc, &mut warnings)
                && let Some((user, password)) = netrc_entry(&t, "physionet.org")
            {
                let auth = Auth::Basic {
                    user,
                    password: Secret::new(password),
                };
                c.add_tool("physionet.org", auth, &netrc);
            }
            let hf = h.join(".cache/huggingface/token");
            if let Some(t) = read_tool_file(&hf, &mut warnings) {
                c.add_tool("huggingface.co", Auth::Bearer(Secret::new(t.trim())), &hf);
            }
        }
        Ok((c, warnings))
    }

    fn add(&mut self, cred: Credential) {
        self.by_host.entry(cred.host.clone()).or_insert(cred);
    }

    fn add_env(&mut self, host: &str, auth: Auth, var: &str) {
        self.add(Credential {
            host: host.to_string(),
            auth,
            origin: format!("environment variable {var}"),
        });
    }

    fn add_tool(&mut self, host: &str, auth: Auth, path: &Path) {
        self.add(Credential {
            host: host.to_string(),
            auth,
            origin: path.display().to_string(),
        });
    }

    /// Add (or replace) a credential; for tests and embedding.
    pub fn insert(&mut self, cred: Credential) {
        self.by_host.insert(cred.host.clone(), cred);
    }

    /// The credential for exactly this host.
    pub fn for_host(&self, host: &str) -> Option<&Credential> {
        self.by_host.get(&host.to_ascii_lowercase())
    }

    /// Every credential (for `medimg catalog` to say what it found; never the secrets).
    pub fn iter(&self) -> impl Iterator<Item = &Credential> {
        self.by_host.values()
    }
}

/// The keys for the shared cache's store at `host`, from the first of: a `[[credential]]` with
/// `access_key_id` for that host in the credentials `file`; the environment
/// (`AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY`, with `AWS_SESSION_TOKEN` if set); the AWS
/// tools' credentials file (`AWS_SHARED_CREDENTIALS_FILE` or `~/.aws/credentials`), section
/// `profile` (else `AWS_PROFILE`, else `default`), skipped with a warning when group- or
/// world-readable. `None` (with no error) when there are none: requests go unsigned.
pub fn store_keys(
    file: Option<&Path>,
    host: &str,
    profile: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
    home: Option<&Path>,
) -> Result<(Option<StoreKeys>, Vec<String>), CredentialError> {
    let mut warnings = Vec::new();
    if let Some(path) = file {
        let found = read_file(path)?.into_iter().find_map(|c| match c.auth {
            Auth::SigV4(k) if c.host == host.to_ascii_lowercase() => Some(k),
            _ => None,
        });
        if found.is_some() {
            return Ok((found, warnings));
        }
    }
    let env_nonempty = |k: &str| env(k).filter(|v| !v.trim().is_empty());
    if let (Some(id), Some(secret)) = (
        env_nonempty("AWS_ACCESS_KEY_ID"),
        env_nonempty("AWS_SECRET_ACCESS_KEY"),
    ) {
        let keys = StoreKeys {
            access_key_id: id.trim().to_string(),
            secret_access_key: Secret::new(secret.trim()),
            session_token: env_nonempty("AWS_SESSION_TOKEN").map(|t| Secret::new(t.trim())),
            origin: "environment variables AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY".into(),
        };
        return Ok((Some(keys), warnings));
    }
    let path = env_nonempty("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| home.map(|h| h.join(".aws/credentials")));
    let Some(path) = path else {
        return Ok((None, warnings));
    };
    let Some(text) = read_tool_file(&path, &mut warnings) else {
        return Ok((None, warnings));
    };
    let profile = profile
        .map(str::to_string)
        .or_else(|| env_nonempty("AWS_PROFILE"))
        .unwrap_or_else(|| "default".into());
    let ini = match ini::Ini::load_from_str(&text) {
        Ok(i) => i,
        Err(e) => {
            warnings.push(format!(
                "{}: not an AWS credentials file ({e}); ignored",
                path.display()
            ));
            return Ok((None, warnings));
        }
    };
    let Some(section) = ini.section(Some(profile.as_str())) else {
        return Ok((None, warnings));
    };
    match (
        section.get("aws_access_key_id"),
        section.get("aws_secret_access_key"),
    ) {
        (Some(id), Some(secret)) => Ok((
            Some(StoreKeys {
                access_key_id: id.trim().to_string(),
                secret_access_key: Secret::new(secret.trim()),
                session_token: section
                    .get("aws_session_token")
                    .map(|t| Secret::new(t.trim())),
                origin: format!("{} [{profile}]", path.display()),
            }),
            warnings,
        )),
        _ => {
            warnings.push(format!(
                "{} [{profile}] lacks aws_access_key_id or aws_secret_access_key; ignored",
                path.display()
            ));
            Ok((None, warnings))
        }
    }
}

/// The host of an http(s) URL, lowercased, without port or user info (an IPv6 address
/// without its brackets).
pub fn host_of(url: &str) -> Option<String> {
    // The URL parser the HTTP client uses, so that the host a credential is chosen for is the
    // host the request goes to (`https://a\@b/` goes to `a`, not `b`).
    let u = reqwest::Url::parse(url).ok()?;
    let host = u.host_str()?.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

fn mode_of(path: &Path) -> std::io::Result<u32> {
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o777)
}

fn read_file(path: &Path) -> Result<Vec<Credential>, CredentialError> {
    let p = path.display().to_string();
    let mode = mode_of(path).map_err(|source| CredentialError::Read {
        path: p.clone(),
        source,
    })?;
    if mode & 0o077 != 0 {
        return Err(CredentialError::Exposed { path: p, mode });
    }
    let text = std::fs::read_to_string(path).map_err(|source| CredentialError::Read {
        path: p.clone(),
        source,
    })?;
    parse_file(&text, &p)
}

/// The `[[credential]]` entries of the text of a credentials file from `p` (named in errors).
pub fn parse_file(text: &str, p: &str) -> Result<Vec<Credential>, CredentialError> {
    let p = p.to_string();
    let raw: RawFile = toml::from_str(text).map_err(|e| CredentialError::Malformed {
        path: p.clone(),
        message: e.to_string().trim_end().to_string(),
    })?;
    let mut out = Vec::new();
    for (i, r) in raw.credential.into_iter().enumerate() {
        let bad = |m: &str| CredentialError::Malformed {
            path: p.clone(),
            message: format!("credential #{} (host {:?}): {m}", i + 1, r.host),
        };
        let auth = match (&r.bearer, &r.username, &r.header, &r.query) {
            (None, None, None, None) if r.access_key_id.is_some() => Auth::SigV4(StoreKeys {
                access_key_id: r.access_key_id.clone().unwrap_or_default(),
                secret_access_key: Secret::new(
                    r.secret_access_key
                        .clone()
                        .ok_or_else(|| bad("`access_key_id` needs `secret_access_key`"))?,
                ),
                session_token: r.session_token.clone().map(Secret::new),
                origin: p.clone(),
            }),
            _ if r.access_key_id.is_some()
                || r.secret_access_key.is_some()
                || r.session_token.is_some() =>
            {
                return Err(bad(
                    "`access_key_id` + `secret_access_key` (the shared cache's store) go alone, \
                     without `bearer`, `username`, `header` or `query`",
                ));
            }
            (Some(t), None, None, None) if r.password.is_none() && r.value.is_none() => {
                Auth::Bearer(Secret::new(t))
            }
            (None, Some(u), None, None) => Auth::Basic {
                user: u.clone(),
                password: Secret::new(
                    r.password
                        .clone()
                        .ok_or_else(|| bad("`username` needs `password`"))?,
                ),
            },
            (None, None, Some(h), None) => Auth::Header {
                name: h.clone(),
                value: Secret::new(
                    r.value
                        .clone()
                        .ok_or_else(|| bad("`header` needs `value`"))?,
                ),
            },
            (None, None, None, Some(q)) => Auth::Query {
                name: q.clone(),
                value: Secret::new(
                    r.value
                        .clone()
                        .ok_or_else(|| bad("`query` needs `value`"))?,
                ),
            },
            _ => {
                return Err(bad(
                    "give exactly one of `bearer`, `username` + `password`, `header` + `value`, \
                     `query` + `value`, `access_key_id` + `secret_access_key`",
                ));
            }
        };
        if r.host.is_empty() || r.host.contains(['/', ':']) {
            return Err(bad(
                "`host` must be a bare host name such as \"www.kaggle.com\"",
            ));
        }
        out.push(Credential {
            host: r.host.to_ascii_lowercase(),
            auth,
            origin: p.clone(),
        });
    }
    Ok(out)
}

/// A host tool's file, or `None` when absent, unreadable or exposed (with a warning).
fn read_tool_file(path: &Path, warnings: &mut Vec<String>) -> Option<String> {
    let mode = mode_of(path).ok()?;
    if mode & 0o077 != 0 {
        warnings.push(format!(
            "{} is readable by group or others (mode {mode:o}); medimg ignores it: run `chmod 600 {}`",
            path.display(),
            path.display()
        ));
        return None;
    }
    match std::fs::read_to_string(path) {
        Ok(t) => Some(t),
        Err(e) => {
            warnings.push(format!("cannot read {}: {e}", path.display()));
            None
        }
    }
}

/// `login` and `password` of `machine <host>` in a netrc file.
pub fn netrc_entry(text: &str, host: &str) -> Option<(String, String)> {
    let mut tokens = text.split_whitespace();
    let mut in_host = false;
    let (mut login, mut password) = (None, None);
    while let Some(t) = tokens.next() {
        match t {
            "machine" | "default" if in_host => break,
            "machine" => in_host = tokens.next() == Some(host),
            "login" if in_host => login = tokens.next().map(str::to_string),
            "password" if in_host => password = tokens.next().map(str::to_string),
            _ => {}
        }
    }
    Some((login?, password?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str, mode: u32) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn hosts_tools_files_and_environment_are_read_per_host() {
        let home = tempfile::tempdir().unwrap();
        let h = home.path();
        write(
            &h.join(".kaggle/kaggle.json"),
            r#"{"username":"ann","key":"k1"}"#,
            0o600,
        );
        write(
            &h.join(".netrc"),
            "machine example.org login x password y\nmachine physionet.org login pn password pw\n",
            0o600,
        );
        let env = |k: &str| (k == "SYNAPSE_AUTH_TOKEN").then(|| "syn-tok".to_string());
        let (c, warnings) = Credentials::gather(None, &env, Some(h)).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            c.for_host("www.kaggle.com").unwrap().auth,
            Auth::Basic {
                user: "ann".into(),
                password: Secret::new("k1")
            }
        );
        assert_eq!(
            c.for_host("physionet.org").unwrap().auth,
            Auth::Basic {
                user: "pn".into(),
                password: Secret::new("pw")
            }
        );
        assert_eq!(
            c.for_host("repo-prod.prod.sagebase.org").unwrap().auth,
            Auth::Bearer(Secret::new("syn-tok"))
        );
        assert!(c.for_host("storage.googleapis.com").is_none());
        assert!(!format!("{c:?}").contains("k1"), "secrets never print");
    }

    #[test]
    fn kaggle_api_token_naming_a_file_is_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("kaggle-token");
        write(&token, "KGAT_abc123\n", 0o600);
        let value = token.display().to_string();
        let env = |k: &str| (k == "KAGGLE_API_TOKEN").then(|| value.clone());
        let (c, warnings) = Credentials::gather(None, &env, None).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            c.for_host("www.kaggle.com").unwrap().auth,
            Auth::Bearer(Secret::new("KGAT_abc123"))
        );
        // Readable by others: skipped with a warning, and the path is never sent as a token.
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (c, warnings) = Credentials::gather(None, &env, None).unwrap();
        assert!(c.for_host("www.kaggle.com").is_none());
        assert!(warnings[0].contains("chmod 600"), "{warnings:?}");
        // A plain token is a token.
        let env = |k: &str| (k == "KAGGLE_API_TOKEN").then(|| "KGAT_plain".to_string());
        let (c, _) = Credentials::gather(None, &env, None).unwrap();
        assert_eq!(
            c.for_host("www.kaggle.com").unwrap().auth,
            Auth::Bearer(Secret::new("KGAT_plain"))
        );
    }

    #[test]
    fn exposed_files_are_refused_or_skipped() {
        let home = tempfile::tempdir().unwrap();
        let h = home.path();
        write(
            &h.join(".kaggle/kaggle.json"),
            r#"{"username":"ann","key":"k1"}"#,
            0o644,
        );
        let (c, warnings) = Credentials::gather(None, &|_| None, Some(h)).unwrap();
        assert!(c.for_host("www.kaggle.com").is_none());
        assert!(warnings[0].contains("chmod 600"), "{warnings:?}");
        let f = h.join("creds.toml");
        write(
            &f,
            "[[credential]]\nhost = \"www.kaggle.com\"\nbearer = \"t\"\n",
            0o640,
        );
        let e = Credentials::gather(Some(&f), &|_| None, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("creds.toml") && e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        let (c, _) = Credentials::gather(Some(&f), &|_| None, None).unwrap();
        assert_eq!(
            c.for_host("www.kaggle.com").unwrap().auth,
            Auth::Bearer(Secret::new("t"))
        );
        write(
            &f,
            "[[credential]]\nhost = \"https://x\"\nbearer = \"t\"\n",
            0o600,
        );
        let e = Credentials::gather(Some(&f), &|_| None, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("bare host name"), "{e}");
    }

    #[test]
    fn host_of_strips_port_and_user() {
        assert_eq!(
            host_of("https://u:p@WWW.Kaggle.com:443/api").as_deref(),
            Some("www.kaggle.com")
        );
        assert_eq!(
            host_of("http://127.0.0.1:8080/x").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(host_of("nonsense"), None);
    }

    /// Found by fuzzing (`http_headers`): the host a credential was chosen for was not always
    /// the host the request went to.
    #[test]
    fn host_of_is_the_host_the_request_goes_to() {
        // The client reads `\` as `/`: the request goes to evil.example, so physionet.org's
        // password must not be attached to it.
        assert_eq!(
            host_of("https://evil.example\\@physionet.org/x").as_deref(),
            Some("evil.example")
        );
        // A scheme with no authority has no host, whatever its query holds.
        assert_eq!(host_of("ple.com:443/o?x=https://u:p@physionet.org/"), None);
        assert_eq!(host_of("https://[::1]:8443/x").as_deref(), Some("::1"));
    }

    #[test]
    fn store_keys_come_from_the_file_then_the_environment_then_the_aws_tools() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        let no_env = |_: &str| None;
        // Nothing anywhere: unsigned, no error.
        let (k, w) = store_keys(None, "s3.lab", None, &no_env, Some(home)).unwrap();
        assert!(k.is_none() && w.is_empty());
        // ~/.aws/credentials, its [default] or the named profile; ignored when exposed.
        std::fs::create_dir(home.join(".aws")).unwrap();
        let aws = home.join(".aws/credentials");
        std::fs::write(
            &aws,
            "[default]\naws_access_key_id = AKIDDEF\naws_secret_access_key = sdef\n\
             [lab]\naws_access_key_id=AKIDLAB\naws_secret_access_key=slab\naws_session_token=t\n",
        )
        .unwrap();
        std::fs::set_permissions(&aws, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (k, w) = store_keys(None, "s3.lab", None, &no_env, Some(home)).unwrap();
        assert!(k.is_none() && w[0].contains("chmod 600"), "{w:?}");
        std::fs::set_permissions(&aws, std::fs::Permissions::from_mode(0o600)).unwrap();
        let (k, _) = store_keys(None, "s3.lab", None, &no_env, Some(home)).unwrap();
        assert_eq!(k.unwrap().access_key_id, "AKIDDEF");
        let (k, _) = store_keys(None, "s3.lab", Some("lab"), &no_env, Some(home)).unwrap();
        let k = k.unwrap();
        assert_eq!(
            (k.access_key_id.as_str(), k.session_token.is_some()),
            ("AKIDLAB", true)
        );
        assert!(k.origin.ends_with("[lab]"), "{}", k.origin);
        // The environment beats the AWS file.
        let env = |v: &str| match v {
            "AWS_ACCESS_KEY_ID" => Some("AKIDENV".to_string()),
            "AWS_SECRET_ACCESS_KEY" => Some("senv".to_string()),
            _ => None,
        };
        let (k, _) = store_keys(None, "s3.lab", None, &env, Some(home)).unwrap();
        assert_eq!(k.unwrap().access_key_id, "AKIDENV");
        // The credentials file's entry for the store's own host beats both.
        let file = home.join("creds.toml");
        std::fs::write(
            &file,
            "[[credential]]\nhost = \"other.lab\"\naccess_key_id = \"AKIDOTHER\"\nsecret_access_key = \"x\"\n\
             [[credential]]\nhost = \"s3.lab\"\naccess_key_id = \"AKIDFILE\"\nsecret_access_key = \"sfile\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let (k, _) = store_keys(Some(&file), "s3.lab", None, &env, Some(home)).unwrap();
        let k = k.unwrap();
        assert_eq!(k.access_key_id, "AKIDFILE");
        // Never in Debug output.
        assert!(!format!("{k:?}").contains("sfile"));
        // Half a key pair is an error naming the entry.
        let e = parse_file(
            "[[credential]]\nhost = \"s3.lab\"\naccess_key_id = \"A\"\n",
            "c.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("secret_access_key"), "{e}");
        let e = parse_file(
            "[[credential]]\nhost = \"s3.lab\"\nbearer = \"t\"\nsecret_access_key = \"A\"\n",
            "c.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("go alone"), "{e}");
    }
}
