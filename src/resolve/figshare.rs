//! figshare: `GET /v2/articles/{id}/versions/{v}` gives the article version with its `files`
//! (`id`, `name`, `size`, `computed_md5`, `is_link_only`). Bytes come from the API's own
//! `GET /v2/file/download/{file_id}`, which redirects to signed S3 URLs that serve Range. Both
//! `ndownloader` forms (`figshare.com/ndownloader`, `ndownloader.figshare.com`) sit behind an
//! AWS WAF challenge that answers scripts with an empty 202 or a 403, and are avoided.

use super::{Api, Fields, RemoteFile, ResolveError, checksum};

/// figshare's API.
pub const API: &str = "https://api.figshare.com/v2";

/// The files of version `version` of article `article`.
pub fn list(api: &Api<'_>, article: u64, version: u32) -> Result<Vec<RemoteFile>, ResolveError> {
    let url = format!("{API}/articles/{article}/versions/{version}");
    let v = api.json(&url)?;
    let mut out = Vec::new();
    for e in Fields::of(&v, &url).array("files")? {
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
