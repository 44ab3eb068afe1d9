//! GitHub: release assets (`GET /repos/{o}/{r}/releases/tags/{tag}` → `assets[]` with `name`,
//! `size`, `digest` as `sha256:<hex>`, `browser_download_url`, which redirects to signed
//! storage), and files of a pinned commit (`GET /repos/{o}/{r}/git/trees/{sha}?recursive=1`,
//! bytes from `raw.githubusercontent.com/{o}/{r}/{sha}/{path}`). The API allows 60 calls an
//! hour without a token (`GITHUB_TOKEN` raises it); a dataset costs one.

use super::{Api, Fields, RemoteFile, ResolveError, checksum, encode_path};

/// GitHub's REST API.
pub const API: &str = "https://api.github.com";
/// Raw file host.
pub const RAW: &str = "https://raw.githubusercontent.com";

/// The assets of release `tag` of `repo`.
pub fn release(api: &Api<'_>, repo: &str, tag: &str) -> Result<Vec<RemoteFile>, ResolveError> {
    let url = format!("{API}/repos/{repo}/releases/tags/{}", encode_path(tag));
    let v = api.json(&url)?;
    let mut out = Vec::new();
    for a in Fields::of(&v, &url).array("assets")? {
        let f = Fields::of(a, &url);
        let digest = f.opt_str("digest").and_then(|d| d.strip_prefix("sha256:"));
        out.push(RemoteFile {
            path: f.str("name")?.to_string(),
            url: f.str("browser_download_url")?.to_string(),
            size: Some(f.u64("size")?),
            checksum: checksum("sha256", digest),
            etag: None,
        });
    }
    Ok(out)
}

/// The files under `path` of `repo` at `commit`.
pub fn tree(
    api: &Api<'_>,
    repo: &str,
    commit: &str,
    path: &str,
) -> Result<Vec<RemoteFile>, ResolveError> {
    let url = format!("{API}/repos/{repo}/git/trees/{commit}?recursive=1");
    let v = api.json(&url)?;
    if v["truncated"].as_bool() == Some(true) {
        return Err(ResolveError::Shape {
            url,
            message: "GitHub truncated the tree (over 100,000 entries); list a subdirectory's \
                      tree instead"
                .into(),
        });
    }
    let prefix = if path.is_empty() {
        String::new()
    } else {
        format!("{path}/")
    };
    let mut out = Vec::new();
    for e in Fields::of(&v, &url).array("tree")? {
        let f = Fields::of(e, &url);
        if f.str("type")? != "blob" {
            continue;
        }
        let full = f.str("path")?;
        let Some(rel) = full.strip_prefix(&prefix) else {
            continue;
        };
        out.push(RemoteFile {
            path: rel.to_string(),
            url: format!("{RAW}/{repo}/{commit}/{}", encode_path(full)),
            size: Some(f.u64("size")?),
            checksum: None,
            etag: None,
        });
    }
    Ok(out)
}
