//! OSF: `GET /v2/nodes/{project}/files/osfstorage/` lists the root of a project's storage in
//! JSON:API form (`data[]` with `attributes.kind`, `name`, `size`, `extra.hashes.sha256`,
//! `links.download`; folders link their contents at `relationships.files.links.related.href`;
//! pages at `links.next`). Bytes come from `links.download`, which redirects to storage.

use super::{Api, Asked, Fields, RemoteFile, ResolveError, checksum};

/// OSF's API.
pub const API: &str = "https://api.osf.io/v2";
/// Folders nest at most this deep.
const MAX_DEPTH: usize = 32;

/// The files in `project`'s OSF storage.
pub fn list(api: &Api<'_>, project: &str) -> Result<Vec<RemoteFile>, ResolveError> {
    let mut out = Vec::new();
    let url = format!("{API}/nodes/{project}/files/osfstorage/");
    let mut asked = Asked::new(&url);
    folder(api, url, "", 0, &mut out, &mut asked)?;
    Ok(out)
}

fn folder(
    api: &Api<'_>,
    mut url: String,
    dir: &str,
    depth: usize,
    out: &mut Vec<RemoteFile>,
    asked: &mut Asked,
) -> Result<(), ResolveError> {
    loop {
        asked.first_time("page", &url)?;
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
                    return Err(ResolveError::Shape {
                        url,
                        message: format!("folders nest deeper than {MAX_DEPTH}"),
                    });
                }
                let href = e["relationships"]["files"]["links"]["related"]["href"]
                    .as_str()
                    .ok_or_else(|| ResolveError::Shape {
                        url: url.clone(),
                        message: format!("folder {name:?} has no link to its files"),
                    })?;
                folder(api, href.to_string(), &path, depth + 1, out, asked)?;
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
