//! PhysioNet: every published project version has `SHA256SUMS.txt` at its root, listing each
//! file's path and SHA-256 (not its size: a file is sized when a user first needs it, see
//! [`crate::sizes`]). Bytes come from
//! `https://physionet.org/files/{project}/{version}/{path}`, which serves Range; credentialed
//! projects want HTTP Basic with a PhysioNet account that has signed the project's agreement.

use super::{Api, RemoteFile, ResolveError, checksum, encode_path};

/// PhysioNet's file server.
pub const BASE: &str = "https://physionet.org/files";

/// The page that lists the directory of file `url` with exact sizes: PhysioNet's `/files/`
/// pages are nginx's `autoindex` (exact sizes, its default), so one request sizes a folder.
pub fn sizes_page(url: &str) -> Option<String> {
    let rest = url.strip_prefix(BASE)?.strip_prefix('/')?;
    let cut = rest.rfind('/')?;
    Some(format!("{BASE}/{}", &rest[..=cut]))
}

/// The files of `project` at `version`.
pub fn list(api: &Api<'_>, project: &str, version: &str) -> Result<Vec<RemoteFile>, ResolveError> {
    let url = format!("{BASE}/{project}/{version}/SHA256SUMS.txt");
    let reply = api.get_data(&url, None, "SHA256SUMS.txt")?;
    let text = String::from_utf8(reply.body).map_err(|_| ResolveError::Shape {
        url: url.clone(),
        message: "SHA256SUMS.txt is not UTF-8".into(),
    })?;
    if text.trim_start().starts_with('<') {
        return Err(ResolveError::Shape {
            url,
            message: "got an HTML page instead of SHA256SUMS.txt (a login page?)".into(),
        });
    }
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let (hash, path) =
            line.split_once(char::is_whitespace)
                .ok_or_else(|| ResolveError::Shape {
                    url: url.clone(),
                    message: format!("line {} is not `<sha256>  <path>`", n + 1),
                })?;
        // `sha256sum` marks binary mode with a leading `*`.
        let path = path.trim_start().trim_start_matches('*');
        if path.is_empty() {
            return Err(ResolveError::Shape {
                url: url.clone(),
                message: format!("line {} names no file", n + 1),
            });
        }
        let sum = checksum("sha256", Some(hash)).ok_or_else(|| ResolveError::Shape {
            url: url.clone(),
            message: format!("line {}: {hash:?} is not a SHA-256", n + 1),
        })?;
        out.push(RemoteFile {
            path: path.to_string(),
            url: format!("{BASE}/{project}/{version}/{}", encode_path(path)),
            size: None,
            checksum: Some(sum),
            etag: None,
        });
    }
    Ok(out)
}
