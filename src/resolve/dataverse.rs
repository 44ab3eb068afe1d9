//! Dataverse (Harvard Dataverse and other installations): `GET /api/datasets/:persistentId/
//! versions/{version}/files?persistentId={doi}` lists a version's files (`label`,
//! `directoryLabel`, `restricted`, `dataFile.id`, `filesize`, `md5` or `checksum`; tabular files
//! Dataverse ingested also carry `originalFileName` and `originalFileSize`). Bytes come from
//! `/api/access/datafile/{id}`, with `?format=original` for ingested files so that users get
//! the file that was deposited, not Dataverse's `.tab` rendering of it.

use super::{Api, Fields, RemoteFile, ResolveError, checksum, encode_query};

/// The files of version `version` of dataset `doi` on `server`.
pub fn list(
    api: &Api<'_>,
    server: &str,
    doi: &str,
    version: &str,
) -> Result<Vec<RemoteFile>, ResolveError> {
    let url = format!(
        "https://{server}/api/datasets/:persistentId/versions/{}/files?persistentId={}",
        encode_query(version),
        encode_query(doi)
    );
    let v = api.json(&url)?;
    let mut out = Vec::new();
    for e in Fields::of(&v, &url).array("data")? {
        let df = &e["dataFile"];
        let d = Fields::of(df, &url);
        let id = d.u64("id")?;
        let (name, size, byte_url) = match d.opt_str("originalFileName") {
            Some(orig) => (
                orig.to_string(),
                d.u64("originalFileSize")?,
                format!("https://{server}/api/access/datafile/{id}?format=original"),
            ),
            None => (
                Fields::of(e, &url).str("label")?.to_string(),
                d.u64("filesize")?,
                format!("https://{server}/api/access/datafile/{id}"),
            ),
        };
        let sum = checksum("md5", d.opt_str("md5")).or_else(|| {
            let c = &df["checksum"];
            checksum(
                &c["type"].as_str()?.to_ascii_lowercase().replace('-', ""),
                c["value"].as_str(),
            )
        });
        let dir = e["directoryLabel"].as_str().unwrap_or("").trim_matches('/');
        out.push(RemoteFile {
            path: if dir.is_empty() {
                name
            } else {
                format!("{dir}/{name}")
            },
            url: byte_url,
            size: Some(size),
            // The original of an ingested file is not what the checksum covers.
            checksum: if d.opt_str("originalFileName").is_some() {
                None
            } else {
                sum
            },
            etag: None,
        });
    }
    Ok(out)
}
