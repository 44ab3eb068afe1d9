//! OSF: `GET /v2/nodes/{project}/files/osfstorage/` lists the root of a project's storage in
//! JSON:API form (`data[]` with `attributes.kind`, `name`, `size`, `extra.hashes.sha256`,
//! `links.download`; folders link their contents at `relationships.files.links.related.href`;
//! pages at `links.next`). Bytes come from `links.download`, which redirects to storage.

use super::{Api, Fields, Pages, RemoteFile, ResolveError, checksum};

/// OSF's API.
pub const API: &str = "https://api.osf.io/v2";
/// Folders nest at most this deep.
const MAX_DEPTH: usize = 32;

/// The files in `project`'s OSF storage.
pub fn list(api: &Api<'_>, project: &str) -> Result<Vec<RemoteFile>, ResolveError> {
    let mut out = Vec::new();
    folder(
        api,
        format!("{API}/nodes/{project}/files/osfstorage/"),
        "",
        0,
        &mut Pages::new(),
        &mut out,
    )?;
    Ok(out)
}

fn folder(
    api: &Api<'_>,
    mut url: String,
    dir: &str,
    depth: usize,
    pages: &mut Pages,
    out: &mut Vec<RemoteFile>,
) -> Result<(), ResolveError> {
    loop {
        pages.next(&url, &url)?;
        let v = api.json(&url)?;
        for e in Fields::of(&v, &url).array("data")? {
            let a = Fields::of(&e["attributes"], &url);
            let name = a.str("name")?;
            let path = if dir.is_empty() {
                name.to_string()
            } else {
                format!("{dir}/{name}")
            };
            if a.str("kind")? == "folder" {
                if depth >= MAX_DEPTH {
                    return Err(ResolveError::Endless {
                        url,
                        message: format!("folders nest deeper than {MAX_DEPTH} (medimg's bound)"),
                    });
                }
                let href = e["relationships"]["files"]["links"]["related"]["href"]
                    .as_str()
                    .ok_or_else(|| ResolveError::Shape {
                        url: url.clone(),
                        message: format!("folder {name:?} has no link to its files"),
                    })?;
                folder(api, href.to_string(), &path, depth + 1, pages, out)?;
                continue;
            }
            let download = Fields::of(&e["links"], &url).str("download")?;
            let hashes = &e["attributes"]["extra"]["hashes"];
            let sum = checksum("sha256", hashes["sha256"].as_str())
                .or_else(|| checksum("md5", hashes["md5"].as_str()));
            out.push(RemoteFile {
                path,
                url: download.to_string(),
                size: Some(a.u64("size")?),
                checksum: sum,
                etag: None,
            });
        }
        match v["links"]["next"].as_str() {
            Some(n) => url = n.to_string(),
            None => return Ok(()),
        }
    }
}
