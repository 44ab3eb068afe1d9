//! Resolvers: from a catalog source to the list of files it holds, through the host's API.
//!
//! Runs once per dataset, when it is indexed; nothing here runs on a read. Each host has one
//! small module that knows its API's shape and nothing else: it turns a record id, a dataset
//! version, a folder or a bucket prefix into [`RemoteFile`]s (path, byte URL, size and checksum
//! when the host gives them). Credentials, rate limits, redirects and retries are the
//! upstream's business ([`crate::source`]), so a resolver is a few requests and a parser.
//!
//! Invariants: a resolver names every file by a relative path of plain segments (no `..`,
//! no empty segment); a byte URL is stable (the version is in it, or the host's records are
//! immutable), so the cache key built from it names the same bytes forever; an answer of the
//! wrong shape is an error that names the URL and the field, never a guess; an HTML page
//! where JSON or XML was expected says so; a listing that does not end (pages past
//! [`MAX_PAGES`], a page that names an earlier one as the next, folders past a depth) stops
//! at its bound with [`ResolveError::Endless`], and nothing of it is indexed.

pub mod dataverse;
pub mod dir;
pub mod figshare;
pub mod gdrive;
pub mod girder;
pub mod github;
pub mod huggingface;
pub mod idc;
pub mod kaggle;
pub mod mendeley;
pub mod osf;
pub mod physionet;
pub mod s3;
pub mod synapse;
pub mod tcia;
pub mod zenodo;

use serde_json::Value;

use crate::catalog::{Locator, Source};
use crate::source::{ApiReply, ApiRequest, SourceError, Upstream, retry};

/// One file of a listed source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    /// Path inside the source, `/`-separated.
    pub path: String,
    /// Where its bytes are (before mirror rules; redirects are followed when it is read).
    pub url: String,
    /// Size, when the listing gives it exactly (otherwise an archive is probed when indexed,
    /// and a plain file when a user first needs its size: [`crate::sizes`]).
    pub size: Option<u64>,
    /// `md5:<hex>` or `sha256:<hex>` of the whole file, when the host gives one.
    pub checksum: Option<String>,
    /// A strong validator from the listing (S3's ETag), sent as `If-Match`.
    pub etag: Option<String>,
}

/// Why a source could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The host refused or failed.
    #[error(transparent)]
    Upstream(#[from] SourceError),
    /// The answer did not have the documented shape.
    #[error(
        "{url}: unexpected answer: {message} (the host's API may have changed; please report it)"
    )]
    Shape {
        /// The URL asked.
        url: String,
        /// What was missing or wrong.
        message: String,
    },
    /// The listing does not end: more pages or folders than medimg's bounds, or a page that
    /// names an earlier one as the next.
    #[error(
        "{url}: the listing does not end: {message}; medimg stopped there (if the source really \
         is this large, point it at a sub-folder or prefix)"
    )]
    Endless {
        /// The URL asked last.
        url: String,
        /// What went on too long, and the bound.
        message: String,
    },
    /// The host cannot list the source whole as the catalog pins it.
    #[error("{url}: {message}")]
    Incomplete {
        /// The URL asked last.
        url: String,
        /// Why, and what to pin instead.
        message: String,
    },
    /// The source lists no file (or none that its `files` patterns select).
    #[error("{what} lists no files{filtered}")]
    Empty {
        /// The source.
        what: String,
        /// Whether patterns were applied.
        filtered: &'static str,
    },
}

/// Pages one paged listing may take: a folder's pages and, for a tree, all its folders'
/// pages together. The largest real listings (two million keys at the 1,000 a page of S3,
/// Drive and the Hub; a hundred thousand files at OSF's 10) take fewer; a host that keeps
/// answering with a next page is stopped here. Directory listings have their own bound
/// ([`dir::MAX_DIRS`]: one page per directory).
pub const MAX_PAGES: usize = 10_000;

/// The pages of one paged listing, counted against a bound, and never the same one twice.
pub struct Pages {
    seen: std::collections::HashSet<String>,
    limit: usize,
    what: &'static str,
}

impl Pages {
    /// Pages of a paged API listing, at most [`MAX_PAGES`].
    pub fn new() -> Pages {
        Pages::bounded(MAX_PAGES, "pages")
    }

    /// At most `limit` pages, called `what` in the error.
    pub fn bounded(limit: usize, what: &'static str) -> Pages {
        Pages {
            seen: std::collections::HashSet::new(),
            limit,
            what,
        }
    }

    /// Count page `page` (its URL, or its folder and token), asked after `url`: an error when
    /// the listing has been there before or has taken its bound.
    pub fn next(&mut self, url: &str, page: &str) -> Result<(), ResolveError> {
        let endless = |message: String| ResolveError::Endless {
            url: url.to_string(),
            message,
        };
        if self.seen.len() >= self.limit {
            return Err(endless(format!(
                "more than {} {} (medimg's bound)",
                self.limit, self.what
            )));
        }
        if !self.seen.insert(page.to_string()) {
            return Err(endless(format!(
                "the host names a page it already gave ({}) as the next one, after {} {}",
                crate::source::http::redact(page),
                self.seen.len(),
                self.what
            )));
        }
        Ok(())
    }
}

impl Default for Pages {
    fn default() -> Pages {
        Pages::new()
    }
}

/// What a resolver works with: API calls with retries, JSON with named fields.
pub struct Api<'a> {
    up: &'a dyn Upstream,
}

impl<'a> Api<'a> {
    /// Calls through `up`.
    pub fn new(up: &'a dyn Upstream) -> Api<'a> {
        Api { up }
    }

    /// GET `url`, retrying transient failures.
    pub fn get(&self, url: &str) -> Result<ApiReply, ResolveError> {
        self.get_as(url, None)
    }

    /// GET `url` asking for media type `accept` (`Accept`), retrying transient failures.
    pub fn get_as(&self, url: &str, accept: Option<&str>) -> Result<ApiReply, ResolveError> {
        Ok(retry(self.up.deadline(), || {
            self.up.api(&ApiRequest {
                url,
                post_json: None,
                accept,
            })
        })?)
    }

    /// GET `url` (asking for media type `accept`, if given), refusing an HTML page where
    /// `what` (JSON, an XML listing) was expected.
    pub fn get_data(
        &self,
        url: &str,
        accept: Option<&str>,
        what: &str,
    ) -> Result<ApiReply, ResolveError> {
        let reply = self.get_as(url, accept)?;
        refuse_html(url, &reply, what)?;
        Ok(reply)
    }

    /// GET `url` as JSON of media type `accept`.
    pub fn json_as(&self, url: &str, accept: &str) -> Result<Value, ResolveError> {
        parse_json(url, &self.get_as(url, Some(accept))?)
    }

    /// GET `url` as JSON.
    pub fn json(&self, url: &str) -> Result<Value, ResolveError> {
        parse_json(url, &self.get(url)?)
    }

    /// GET `url` as JSON, with the `Link: rel="next"` of the answer.
    pub fn json_paged(&self, url: &str) -> Result<(Value, Option<String>), ResolveError> {
        let reply = self.get(url)?;
        Ok((parse_json(url, &reply)?, reply.next))
    }

    /// POST `body` (JSON) to `url`, and parse the answer as JSON.
    pub fn post(&self, url: &str, body: &Value) -> Result<Value, ResolveError> {
        let text = body.to_string();
        let reply = retry(self.up.deadline(), || {
            self.up.api(&ApiRequest {
                url,
                post_json: Some(&text),
                accept: None,
            })
        })?;
        parse_json(url, &reply)
    }
}

/// An error if `reply` is an HTML page (by its `Content-Type`, or by how its body begins)
/// where `what` was expected: a login, terms, captcha or firewall page answered with 200.
fn refuse_html(url: &str, reply: &ApiReply, what: &str) -> Result<(), ResolveError> {
    let ct = reply.content_type.as_deref().unwrap_or("");
    let head: Vec<u8> = reply
        .body
        .trim_ascii_start()
        .iter()
        .take(14)
        .map(u8::to_ascii_lowercase)
        .collect();
    if ct.to_ascii_lowercase().starts_with("text/html")
        || head.starts_with(b"<!doctype html")
        || head.starts_with(b"<html")
    {
        return Err(ResolveError::Upstream(SourceError::BadAnswer {
            url: url.to_string(),
            message: format!(
                "got an HTML page (Content-Type {ct:?}) where {what} was expected; the host \
                 may want a login, accepted terms, or a human (a captcha or firewall page)"
            ),
        }));
    }
    Ok(())
}

/// The JSON of `reply`; an answer that is not JSON is an error, one that is an HTML page
/// says so.
fn parse_json(url: &str, reply: &ApiReply) -> Result<Value, ResolveError> {
    serde_json::from_slice(&reply.body).map_err(|e| {
        refuse_html(url, reply, "a JSON answer")
            .err()
            .unwrap_or_else(|| ResolveError::Shape {
                url: url.to_string(),
                message: format!("not JSON ({e})"),
            })
    })
}

/// Named access to JSON fields, with errors that say which field of which answer.
pub struct Fields<'v> {
    v: &'v Value,
    url: &'v str,
}

impl<'v> Fields<'v> {
    /// Fields of `v`, an answer from `url`.
    pub fn of(v: &'v Value, url: &'v str) -> Fields<'v> {
        Fields { v, url }
    }

    fn missing(&self, key: &str, what: &str) -> ResolveError {
        ResolveError::Shape {
            url: self.url.to_string(),
            message: format!("field `{key}` is missing or not {what}"),
        }
    }

    /// A string field.
    pub fn str(&self, key: &str) -> Result<&'v str, ResolveError> {
        self.v[key]
            .as_str()
            .ok_or_else(|| self.missing(key, "a string"))
    }

    /// A string field, if present.
    pub fn opt_str(&self, key: &str) -> Option<&'v str> {
        self.v[key].as_str()
    }

    /// A non-negative number (or a string of digits, as some APIs send sizes).
    pub fn u64(&self, key: &str) -> Result<u64, ResolveError> {
        self.opt_u64(key)
            .ok_or_else(|| self.missing(key, "a number"))
    }

    /// A non-negative number, if present.
    pub fn opt_u64(&self, key: &str) -> Option<u64> {
        let x = &self.v[key];
        x.as_u64().or_else(|| x.as_str()?.parse().ok())
    }

    /// An array field.
    pub fn array(&self, key: &str) -> Result<&'v Vec<Value>, ResolveError> {
        self.v[key]
            .as_array()
            .ok_or_else(|| self.missing(key, "a list"))
    }
}

/// The listing page that prints the exact size of file `url` and of the files beside it, where
/// its host is known to serve one (PhysioNet); `None` elsewhere.
pub fn sizes_page(url: &str) -> Option<String> {
    physionet::sizes_page(url)
}

/// The exact sizes listing page `page` prints, by percent-decoded file URL.
pub fn sizes_on_page(
    up: &dyn Upstream,
    page: &str,
) -> Result<std::collections::HashMap<String, u64>, ResolveError> {
    Ok(dir::sizes_on_page(&Api::new(up), page)?
        .into_iter()
        .map(|(url, size)| (crate::catalog::percent_decode(&url), size))
        .collect())
}

/// List the files of `src` (any kind but a plain `http` URL), keeping those its `files`
/// patterns select.
pub fn list(src: &Source, up: &dyn Upstream) -> Result<Vec<RemoteFile>, ResolveError> {
    let api = Api::new(up);
    let files = match &src.locator {
        Locator::Http { urls, .. } => {
            return Err(ResolveError::Shape {
                url: urls.join(" "),
                message: "a plain http source has no listing".into(),
            });
        }
        Locator::Dir { url } => dir::list(&api, url)?,
        Locator::Zenodo { record } => zenodo::list(&api, *record)?,
        Locator::Kaggle { dataset, version } => kaggle::dataset(&api, dataset, *version)?,
        Locator::KaggleCompetition { competition } => kaggle::competition(competition),
        Locator::Figshare { article, version } => figshare::list(&api, *article, *version)?,
        Locator::Mendeley { dataset, version } => mendeley::list(&api, dataset, *version)?,
        Locator::GithubRelease { repo, tag } => github::release(&api, repo, tag)?,
        Locator::GithubTree { repo, commit, path } => github::tree(&api, repo, commit, path)?,
        Locator::Physionet { project, version } => physionet::list(&api, project, version)?,
        Locator::S3 { bucket, prefixes } => s3::list(&api, bucket, prefixes)?,
        Locator::Idc { collection, index } => idc::list(&api, collection, index)?,
        Locator::Tcia { collection } => tcia::list(&api, collection)?,
        Locator::Synapse { id } => synapse::list(&api, id)?,
        Locator::Gdrive { id } => gdrive::list(&api, id)?,
        Locator::Huggingface { repo, revision } => huggingface::list(&api, repo, revision)?,
        Locator::Osf { project } => osf::list(&api, project)?,
        Locator::Dataverse {
            server,
            doi,
            version,
        } => dataverse::list(&api, server, doi, version)?,
        Locator::Girder {
            api: root,
            collection,
            folder,
        } => girder::list(&api, root, collection.as_deref(), folder.as_deref())?,
    };
    let total = files.len();
    let files: Vec<RemoteFile> = files
        .into_iter()
        .filter(|f| src.files.is_empty() || src.files.iter().any(|p| glob(p, &f.path)))
        .collect();
    if files.is_empty() {
        return Err(ResolveError::Empty {
            what: format!("{} source {:?}", src.type_name(), src.locator),
            filtered: if total > 0 {
                " that its `files` patterns select"
            } else {
                ""
            },
        });
    }
    Ok(files)
}

/// Whether `path` matches `pattern`: `*` matches within one path segment, `**` any number of
/// whole segments, everything else itself.
pub fn glob(pattern: &str, path: &str) -> bool {
    let pat: Vec<&str> = pattern.split('/').collect();
    let segs: Vec<&str> = path.split('/').collect();
    glob_segs(&pat, &segs)
}

fn glob_segs(pat: &[&str], segs: &[&str]) -> bool {
    match pat.split_first() {
        None => segs.is_empty(),
        Some((&"**", rest)) => (0..=segs.len()).any(|i| glob_segs(rest, &segs[i..])),
        Some((p, rest)) => match segs.split_first() {
            Some((s, srest)) => glob_seg(p.as_bytes(), s.as_bytes()) && glob_segs(rest, srest),
            None => false,
        },
    }
}

fn glob_seg(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| glob_seg(rest, &s[i..])),
        Some((c, rest)) => s.first() == Some(c) && glob_seg(rest, &s[1..]),
    }
}

/// Percent-encode a path for a URL, keeping `/` between segments.
pub fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encode a query value.
pub fn encode_query(v: &str) -> String {
    encode_path(v).replace('/', "%2F")
}

/// `algo:<hex>` when `hex` looks like a digest of that algorithm (`md5`: 32 digits, `sha256`:
/// 64), else `None` (hosts sometimes send empty strings).
pub fn checksum(algo: &str, hex: Option<&str>) -> Option<String> {
    let hex = hex?.trim().to_ascii_lowercase();
    let want = match algo {
        "md5" => 32,
        "sha256" => 64,
        _ => return None,
    };
    (hex.len() == want && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| format!("{algo}:{hex}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_within_and_across_segments() {
        assert!(glob("*.zip", "train.zip"));
        assert!(!glob("*.zip", "a/train.zip"));
        assert!(glob("**/*.png", "a/b/c.png"));
        assert!(glob("**/*.png", "c.png"));
        assert!(glob("images/**", "images/x/y.dcm"));
        assert!(!glob("images/*", "labels/y.csv"));
        assert!(glob("Task01_*.tar", "Task01_BrainTumour.tar"));
    }

    #[test]
    fn paths_encode_and_checksums_validate() {
        assert_eq!(encode_path("a b/ü.zip"), "a%20b/%C3%BC.zip");
        assert_eq!(encode_query("doi:10.7910/DVN/X"), "doi%3A10.7910%2FDVN%2FX");
        assert_eq!(
            checksum("md5", Some("D41D8CD98F00B204E9800998ECF8427E")).as_deref(),
            Some("md5:d41d8cd98f00b204e9800998ecf8427e")
        );
        assert_eq!(checksum("md5", Some("")), None);
        assert_eq!(checksum("sha256", Some("abc")), None);
    }
}
