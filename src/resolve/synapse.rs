//! Synapse: `GET /repo/v1/entity/{id}` says whether an id is a file or a folder (or project);
//! `POST /repo/v1/entity/children` pages through a folder (`page[]` of `id`, `name`, `type`,
//! `versionNumber`; `nextPageToken`); `GET /repo/v1/entity/{id}/version/{v}/filehandles` gives a
//! file's handles, `contentSize` and `contentMd5`: the data file's, and the preview Synapse made
//! of it, an ordinary `S3FileHandle` with `isPreview: true` (clients take the handle whose id
//! is the entity's `dataFileHandleId`, where they have the entity). Bytes come from `GET /repo/v1/entity/{id}/version/
//! {v}/file`, which redirects to a short-lived signed S3 URL (re-resolved when it expires).
//! Every call wants a personal access token, and a file whose access requirements (terms,
//! certified user, data use agreement) are not met answers 403.

use serde_json::{Value, json};

use super::{Api, Asked, Fields, RemoteFile, ResolveError, checksum};

/// Synapse's repository service.
pub const REPO: &str = "https://repo-prod.prod.sagebase.org/repo/v1";

/// Folders nest at most this deep (Synapse's own limit is far lower in practice).
const MAX_DEPTH: usize = 32;

/// The files of entity `id` (a file, or everything under a folder or project).
pub fn list(api: &Api<'_>, id: &str) -> Result<Vec<RemoteFile>, ResolveError> {
    let url = format!("{REPO}/entity/{id}");
    let v = api.json(&url)?;
    let f = Fields::of(&v, &url);
    let kind = f.str("concreteType")?;
    let mut out = Vec::new();
    if kind.ends_with("FileEntity") {
        let version = f.u64("versionNumber")?;
        let data = f.opt_str("dataFileHandleId");
        out.push(file(api, id, version, f.str("name")?, data)?);
    } else {
        folder(api, id, "", 0, &mut out, &mut Asked::new(&url))?;
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
    let url = format!("{REPO}/entity/children");
    if depth > MAX_DEPTH {
        return Err(ResolveError::Shape {
            url,
            message: format!("folders nest deeper than {MAX_DEPTH} under {id}"),
        });
    }
    let mut token: Option<String> = None;
    loop {
        let mut body = json!({"parentId": id, "includeTypes": ["file", "folder"]});
        if let Some(t) = &token {
            body["nextPageToken"] = Value::from(t.as_str());
        }
        let page = api.post(&url, &body)?;
        for e in Fields::of(&page, &url).array("page")? {
            let f = Fields::of(e, &url);
            let name = f.str("name")?;
            let path = if dir.is_empty() {
                name.to_string()
            } else {
                format!("{dir}/{name}")
            };
            let child = f.str("id")?;
            if f.str("type")?.ends_with("Folder") {
                folder(api, child, &path, depth + 1, out, asked)?;
            } else if f.str("type")?.ends_with("FileEntity") {
                out.push(file(api, child, f.u64("versionNumber")?, &path, None)?);
            }
        }
        token = page["nextPageToken"].as_str().map(str::to_string);
        match &token {
            Some(t) => asked.first_time("page token", &format!("{t} of folder {id}"))?,
            None => return Ok(()),
        }
    }
}

/// The file of entity `id` at `version`; `data` is its `dataFileHandleId` when known.
fn file(
    api: &Api<'_>,
    id: &str,
    version: u64,
    path: &str,
    data: Option<&str>,
) -> Result<RemoteFile, ResolveError> {
    let url = format!("{REPO}/entity/{id}/version/{version}/filehandles");
    let v = api.json(&url)?;
    let handles = Fields::of(&v, &url).array("list")?;
    let is_preview = |h: &&Value| {
        h["isPreview"].as_bool() == Some(true)
            || h["concreteType"]
                .as_str()
                .unwrap_or("")
                .ends_with("PreviewFileHandle")
    };
    let candidates: Vec<&Value> = match data {
        Some(d) => handles
            .iter()
            .filter(|h| h["id"].as_str() == Some(d))
            .collect(),
        None => handles.iter().filter(|h| !is_preview(h)).collect(),
    };
    let h = match candidates.as_slice() {
        [h] => *h,
        [] => {
            return Err(ResolveError::Shape {
                url,
                message: format!("{id} has no data file handle (only previews, or none)"),
            });
        }
        _ => {
            return Err(ResolveError::Shape {
                url,
                message: format!("{id} has several data file handles; which one is its file?"),
            });
        }
    };
    let f = Fields::of(h, &url);
    Ok(RemoteFile {
        path: path.to_string(),
        url: format!("{REPO}/entity/{id}/version/{version}/file"),
        size: Some(f.u64("contentSize")?),
        checksum: checksum("md5", f.opt_str("contentMd5")),
        etag: None,
    })
}
