//! Google Drive, through the Drive v3 API with an API key (the key is added by the upstream's
//! credentials, never written here): `GET /drive/v3/files/{id}?fields=...` says whether an id
//! is a folder; `GET /drive/v3/files?q='{id}' in parents&fields=...` pages through a folder
//! (`files[]` of `id`, `name`, `mimeType`, `size`, `md5Checksum`; `nextPageToken`). Bytes come
//! from `/drive/v3/files/{id}?alt=media`, which serves Range; the keyless `uc?export=download`
//! path answers large files with an HTML warning page and is not used.

use super::{Api, Asked, Fields, RemoteFile, ResolveError, checksum, encode_query};

/// The Drive API.
pub const API: &str = "https://www.googleapis.com/drive/v3";
const FOLDER: &str = "application/vnd.google-apps.folder";
const FIELDS: &str = "id,name,mimeType,size,md5Checksum";
/// Folders nest at most this deep.
const MAX_DEPTH: usize = 32;

/// The files of `id` (a file, or everything under a folder).
pub fn list(api: &Api<'_>, id: &str) -> Result<Vec<RemoteFile>, ResolveError> {
    let url = format!("{API}/files/{id}?fields={FIELDS}&supportsAllDrives=true");
    let v = api.json(&url)?;
    let mut out = Vec::new();
    if Fields::of(&v, &url).str("mimeType")? == FOLDER {
        folder(api, id, "", 0, &mut out, &mut Asked::new(&url))?;
    } else if let Some(f) = file(&v, &url, "")? {
        out.push(f);
    }
    Ok(out)
}

fn folder(
    api: &Api<'_>,
    id: &str,
    dir: &str,
    depth: usize,
    out: &mut Vec<RemoteFile>,
    asked: &mut Asked,
) -> Result<(), ResolveError> {
    asked.first_time("folder", id)?;
    let mut token: Option<String> = None;
    loop {
        let q = encode_query(&format!("'{id}' in parents and trashed = false"));
        let mut url = format!(
            "{API}/files?q={q}&fields=nextPageToken,files({FIELDS})&pageSize=1000\
             &supportsAllDrives=true&includeItemsFromAllDrives=true"
        );
        if let Some(t) = &token {
            url.push_str(&format!("&pageToken={}", encode_query(t)));
        }
        let v = api.json(&url)?;
        for e in Fields::of(&v, &url).array("files")? {
            let f = Fields::of(e, &url);
            if f.str("mimeType")? == FOLDER {
                if depth >= MAX_DEPTH {
                    return Err(ResolveError::Shape {
                        url,
                        message: format!("folders nest deeper than {MAX_DEPTH}"),
                    });
                }
                let name = f.str("name")?;
                let sub = if dir.is_empty() {
                    name.to_string()
                } else {
                    format!("{dir}/{name}")
                };
                folder(api, f.str("id")?, &sub, depth + 1, out, asked)?;
            } else if let Some(file) = file(e, &url, dir)? {
                out.push(file);
            }
        }
        token = v["nextPageToken"].as_str().map(str::to_string);
        match &token {
            Some(t) => asked.first_time("page token", &format!("{t} of folder {id}"))?,
            None => return Ok(()),
        }
    }
}

/// A Drive file, or `None` for a Google Docs document (no bytes of its own, no size).
fn file(v: &serde_json::Value, url: &str, dir: &str) -> Result<Option<RemoteFile>, ResolveError> {
    let f = Fields::of(v, url);
    let name = f.str("name")?;
    let Some(size) = f.opt_u64("size") else {
        tracing::warn!("Google Drive item {name:?} is a Google document, not a file; skipped");
        return Ok(None);
    };
    Ok(Some(RemoteFile {
        path: if dir.is_empty() {
            name.to_string()
        } else {
            format!("{dir}/{name}")
        },
        url: format!("{API}/files/{}?alt=media", f.str("id")?),
        size: Some(size),
        checksum: checksum("md5", f.opt_str("md5Checksum")),
        etag: None,
    }))
}
