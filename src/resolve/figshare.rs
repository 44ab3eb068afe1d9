//! figshare: `GET /v2/articles/{id}/versions/{v}` gives the article version with its `files`
//! (`id`, `name`, `size`, `computed_md5`, `is_link_only`), but only the first 10 of them. Past
//! that, the paged `GET /v2/articles/{id}/files?page=&page_size=` lists every file, of the
//! article's latest version only: a pinned version that is the latest is listed whole from it
//! (and the version's own 10 must be among them), an older one with 10 or more files cannot be
//! listed whole, and that is an error saying which version to pin instead.
//!
//! Bytes come from the API's own `GET /v2/file/download/{file_id}`, which redirects to signed S3
//! URLs that serve Range. Both `ndownloader` forms (`figshare.com/ndownloader`,
//! `ndownloader.figshare.com`) sit behind an AWS WAF challenge that answers scripts with an
//! empty 202 or a 403, and are avoided.

use serde_json::Value;

use super::{Api, Fields, Pages, RemoteFile, ResolveError, checksum};

/// figshare's API.
pub const API: &str = "https://api.figshare.com/v2";

/// Files an article version's answer shows; it may have more.
const VERSION_SHOWS: usize = 10;

/// Files asked for per page of the paged listing (figshare allows up to 1,000).
const PAGE_SIZE: usize = 100;

/// The files of version `version` of article `article`.
pub fn list(api: &Api<'_>, article: u64, version: u32) -> Result<Vec<RemoteFile>, ResolveError> {
    let url = format!("{API}/articles/{article}/versions/{version}");
    let v = api.json(&url)?;
    let shown = Fields::of(&v, &url).array("files")?;
    let all;
    let files = if shown.len() < VERSION_SHOWS {
        shown
    } else {
        all = every_file(api, article, version, shown)?;
        &all
    };
    let mut out = Vec::new();
    for e in files {
        let f = Fields::of(e, &url);
        if e["is_link_only"].as_bool() == Some(true) {
            tracing::warn!(
                article,
                "figshare file {:?} is only a link to another site; skipped",
                f.opt_str("name")
            );
            continue;
        }
        let md5 = f.opt_str("computed_md5").or(f.opt_str("supplied_md5"));
        out.push(RemoteFile {
            path: f.str("name")?.to_string(),
            url: format!("{API}/file/download/{}", f.u64("id")?),
            size: Some(f.u64("size")?),
            checksum: checksum("md5", md5),
            etag: None,
        });
    }
    Ok(out)
}

/// Every file of `version`, which showed `shown` (as many as a version's answer shows): from the
/// paged listing, when `version` is the article's latest.
fn every_file(
    api: &Api<'_>,
    article: u64,
    version: u32,
    shown: &[Value],
) -> Result<Vec<Value>, ResolveError> {
    let url = format!("{API}/articles/{article}");
    let latest = Fields::of(&api.json(&url)?, &url).u64("version")?;
    if latest != u64::from(version) {
        return Err(ResolveError::Incomplete {
            url,
            message: format!(
                "figshare's API shows only the first {VERSION_SHOWS} files of an article version, \
                 and lists the rest for the latest version ({latest}) only, so version {version} \
                 cannot be listed whole; pin `version = {latest}` in the catalog (check that its \
                 files are the ones wanted)"
            ),
        });
    }
    let mut pages = Pages::new();
    let mut out: Vec<Value> = Vec::new();
    for page in 1.. {
        let url = format!("{API}/articles/{article}/files?page={page}&page_size={PAGE_SIZE}");
        pages.next(&url, &url)?;
        let v = api.json(&url)?;
        let got = v.as_array().ok_or_else(|| ResolveError::Shape {
            url: url.clone(),
            message: "the file list is not a JSON array".to_string(),
        })?;
        out.extend(got.iter().cloned());
        if got.len() < PAGE_SIZE {
            break;
        }
    }
    // The latest version moved on between the two answers, if its own files are not all there.
    let ids: std::collections::HashSet<u64> = out.iter().filter_map(|f| f["id"].as_u64()).collect();
    if let Some(f) = shown
        .iter()
        .find(|f| !f["id"].as_u64().is_some_and(|id| ids.contains(&id)))
    {
        return Err(ResolveError::Shape {
            url,
            message: format!(
                "file {} of version {version} is not in the article's file list; the article \
                 may have a new version since (index again later)",
                f["id"]
            ),
        });
    }
    Ok(out)
}
