//! Kaggle: a dataset version (or a competition's data) is read as the one zip Kaggle builds
//! for it, through `GET /api/v1/datasets/download/{owner}/{slug}?datasetVersionNumber=N` (or
//! `/api/v1/competitions/data/download-all/{competition}`), which answers with a redirect to a
//! signed Google Cloud Storage URL that serves Range requests (the Kaggle CLI and kagglehub
//! resume downloads that way). Per-file downloads are avoided: Kaggle answers 429 to many of
//! them, and large files come back zipped anyway. No listing call is needed: the zip's central
//! directory is the listing. Every call needs a Kaggle token (see `credentials`).

use super::{Api, Fields, RemoteFile, ResolveError};

/// Where Kaggle's API lives.
pub const BASE: &str = "https://www.kaggle.com/api/v1";

/// Version `version` of dataset `owner/slug` (the current one when `None`, asked of
/// `GET /api/v1/datasets/view/{owner}/{slug}`, whose `currentVersionNumber` names it).
pub fn dataset(
    api: &Api<'_>,
    dataset: &str,
    version: Option<u32>,
) -> Result<Vec<RemoteFile>, ResolveError> {
    let version = match version {
        Some(v) => u64::from(v),
        None => {
            let url = format!("{BASE}/datasets/view/{dataset}");
            let v = api.json(&url)?;
            let n = Fields::of(&v, &url).u64("currentVersionNumber")?;
            tracing::info!(dataset, "Kaggle's current version is {n}; medimg keeps it");
            n
        }
    };
    let slug = dataset.rsplit('/').next().unwrap_or(dataset);
    Ok(vec![RemoteFile {
        path: format!("{slug}.zip"),
        url: format!("{BASE}/datasets/download/{dataset}?datasetVersionNumber={version}"),
        size: None,
        checksum: None,
        etag: None,
    }])
}

/// All the data of competition `name` (its rules must have been accepted on the website).
pub fn competition(name: &str) -> Vec<RemoteFile> {
    vec![RemoteFile {
        path: format!("{name}.zip"),
        url: format!("{BASE}/competitions/data/download-all/{name}"),
        size: None,
        checksum: None,
        etag: None,
    }]
}
