//! Hugging Face Hub datasets: `GET /api/datasets/{repo}/tree/{revision}?recursive=true` lists
//! the repository (`type`, `path`, `size`, and for LFS files `lfs.oid`, their SHA-256), paged
//! by `Link: rel="next"`. Bytes come from `/datasets/{repo}/resolve/{revision}/{path}`, which
//! redirects LFS files to a CDN that serves Range. Gated datasets want `HF_TOKEN` and the
//! terms accepted on the dataset's page.

use super::{Api, Asked, Fields, RemoteFile, ResolveError, checksum, encode_path};

/// The Hub.
pub const BASE: &str = "https://huggingface.co";

/// The files of dataset `repo` at `revision`.
pub fn list(api: &Api<'_>, repo: &str, revision: &str) -> Result<Vec<RemoteFile>, ResolveError> {
    let mut url = format!(
        "{BASE}/api/datasets/{repo}/tree/{}?recursive=true",
        encode_path(revision)
    );
    let mut out = Vec::new();
    let mut asked = Asked::new(&url);
    loop {
        let (v, next) = api.json_paged(&url)?;
        let items = v.as_array().ok_or_else(|| ResolveError::Shape {
            url: url.clone(),
            message: "expected a list of tree entries".into(),
        })?;
        for e in items {
            let f = Fields::of(e, &url);
            if f.str("type")? != "file" {
                continue;
            }
            let path = f.str("path")?;
            let lfs = Fields::of(&e["lfs"], &url);
            out.push(RemoteFile {
                path: path.to_string(),
                url: format!(
                    "{BASE}/datasets/{repo}/resolve/{}/{}",
                    encode_path(revision),
                    encode_path(path)
                ),
                size: Some(f.u64("size")?),
                checksum: checksum("sha256", lfs.opt_str("oid")),
                etag: None,
            });
        }
        match next {
            Some(n) => {
                asked.first_time("page", &n)?;
                url = n;
            }
            None => return Ok(out),
        }
    }
}
