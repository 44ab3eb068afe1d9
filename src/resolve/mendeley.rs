//! Mendeley Data, through its public API (no token for public datasets):
//! `GET /public-api/datasets/{id}/folders/{version}` lists the folders (`id`, `name`,
//! `parent_id`), and `GET /public-api/datasets/{id}/files?folder_id={f}&version={v}` the files
//! of one folder (`filename`, `size`, `content_details.download_url`,
//! `content_details.sha256_hash`), starting with `folder_id=root`. Every call asks for the public
//! API's versioned media type, `Accept: application/vnd.mendeley-public-dataset.1+json`, as
//! Mendeley's public clients do.

use std::collections::HashMap;

use super::{Api, Fields, RemoteFile, ResolveError, checksum};

/// Mendeley Data's public API.
pub const API: &str = "https://data.mendeley.com/public-api";

/// The media type of the public API's answers.
pub const MEDIA_TYPE: &str = "application/vnd.mendeley-public-dataset.1+json";

/// The files of version `version` of dataset `id`, in their folders.
pub fn list(api: &Api<'_>, id: &str, version: u32) -> Result<Vec<RemoteFile>, ResolveError> {
    let url = format!("{API}/datasets/{id}/folders/{version}");
    let folders = api.json_as(&url, MEDIA_TYPE)?;
    let folders = folders.as_array().ok_or_else(|| ResolveError::Shape {
        url: url.clone(),
        message: "expected a list of folders".into(),
    })?;
    // folder id -> (name, parent id)
    let mut tree: HashMap<String, (String, Option<String>)> = HashMap::new();
    for f in folders {
        let fl = Fields::of(f, &url);
        tree.insert(
            fl.str("id")?.to_string(),
            (
                fl.str("name")?.to_string(),
                fl.opt_str("parent_id").map(str::to_string),
            ),
        );
    }
    let path_of = |mut id: Option<String>| -> String {
        let mut segs = Vec::new();
        // A cycle in a broken answer ends after as many steps as there are folders.
        for _ in 0..=tree.len() {
            let Some((name, parent)) = id.as_ref().and_then(|i| tree.get(i)) else {
                break;
            };
            segs.push(name.clone());
            id = parent.clone();
        }
        segs.reverse();
        segs.join("/")
    };
    let mut out = Vec::new();
    let mut ids: Vec<Option<String>> = vec![None];
    ids.extend(tree.keys().cloned().map(Some));
    for folder in ids {
        let fid = folder.clone().unwrap_or_else(|| "root".into());
        let url = format!("{API}/datasets/{id}/files?folder_id={fid}&version={version}");
        let files = api.json_as(&url, MEDIA_TYPE)?;
        let files = files.as_array().ok_or_else(|| ResolveError::Shape {
            url: url.clone(),
            message: "expected a list of files".into(),
        })?;
        let dir = path_of(folder);
        for f in files {
            let fl = Fields::of(f, &url);
            let details = Fields::of(&f["content_details"], &url);
            let name = fl.str("filename")?;
            out.push(RemoteFile {
                path: if dir.is_empty() {
                    name.to_string()
                } else {
                    format!("{dir}/{name}")
                },
                url: details.str("download_url")?.to_string(),
                size: Some(fl.u64("size")?),
                checksum: checksum("sha256", details.opt_str("sha256_hash")),
                etag: None,
            });
        }
    }
    Ok(out)
}
