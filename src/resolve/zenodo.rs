//! Zenodo: `GET /api/records/{id}` lists a record's files (`key`, `size`, `checksum` as
//! `md5:<hex>`). Bytes come from `/records/{id}/files/{key}?download=1`, the form that serves
//! Range requests (the `/api/.../content` form has been reported not to: zenodo#2593).
//! A record never changes once published; a new version is a new record id. A *concept* id
//! (the DOI of all versions) is not a record: `/api/records/{concept}` answers 404, which is
//! said as such, with what to pin instead. Byte URLs use the id the record's own answer gives.

use super::{Api, Fields, RemoteFile, ResolveError, checksum, encode_path};

/// Where Zenodo lives (mirror rules redirect it in tests).
pub const BASE: &str = "https://zenodo.org";

/// The files of record `record`.
pub fn list(api: &Api<'_>, record: u64) -> Result<Vec<RemoteFile>, ResolveError> {
    let url = format!("{BASE}/api/records/{record}");
    let v = api.json(&url).map_err(|e| match e {
        ResolveError::Upstream(s) if s.status() == Some(404) => ResolveError::Shape {
            url: url.clone(),
            message: format!(
                "Zenodo has no record {record}; if it is a concept id (the DOI of all \
                 versions), pin one version's record id instead: {BASE}/records/{record} \
                 lists them"
            ),
        },
        e => e,
    })?;
    // The answer's own id (a redirect may have led to another record).
    let id = v["id"]
        .as_u64()
        .or_else(|| v["id"].as_str()?.parse().ok())
        .unwrap_or(record);
    // The record's `files` is a list; InvenioRDM's native form nests it as `files.entries`
    // (a list, or a map by key).
    let entries: Vec<&serde_json::Value> = match &v["files"] {
        serde_json::Value::Array(a) => a.iter().collect(),
        serde_json::Value::Object(o) => match o.get("entries") {
            Some(serde_json::Value::Array(a)) => a.iter().collect(),
            Some(serde_json::Value::Object(m)) => m.values().collect(),
            _ => Vec::new(),
        },
        _ => {
            return Err(ResolveError::Shape {
                url,
                message: "field `files` is missing (a restricted or embargoed record?)".into(),
            });
        }
    };
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let f = Fields::of(e, &url);
        let key = f.opt_str("key").map_or_else(|| f.str("filename"), Ok)?;
        let size = f.opt_u64("size").map_or_else(|| f.u64("filesize"), Ok)?;
        let md5 = f
            .opt_str("checksum")
            .map(|c| c.rsplit(':').next().unwrap_or(c));
        out.push(RemoteFile {
            path: key.to_string(),
            url: format!("{BASE}/records/{id}/files/{}?download=1", encode_path(key)),
            size: Some(size),
            checksum: checksum("md5", md5),
            etag: None,
        });
    }
    Ok(out)
}
