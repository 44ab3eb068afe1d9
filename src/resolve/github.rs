//! GitHub: release assets (`GET /repos/{o}/{r}/releases/tags/{tag}` → `assets[]` with `name`,
//! `size`, `digest` as `sha256:<hex>`, `browser_download_url`, which redirects to signed
//! storage), and files of a pinned commit (`GET /repos/{o}/{r}/git/trees/{sha}?recursive=1`,
//! bytes from `raw.githubusercontent.com/{o}/{r}/{sha}/{path}`). The API allows 60 calls an
//! hour without a token (`GITHUB_TOKEN` raises it); a dataset costs one.
//!
//! A file the repository keeps in Git LFS is only a pointer in the tree (about 130 bytes:
//! `version https://git-lfs.github.com/spec/v1`, `oid`, `size`), and raw.githubusercontent.com
//! serves that pointer. Which files are in LFS is what the tree's `.gitattributes` files say
//! (`filter=lfs`; one request each); their bytes come from
//! `media.githubusercontent.com/media/{o}/{r}/{sha}/{path}`, which serves the object (the
//! form download-directory and READMEs use), and their size is asked when first needed.

use super::{Api, Fields, RemoteFile, ResolveError, checksum, encode_path};

/// GitHub's REST API.
pub const API: &str = "https://api.github.com";
/// Raw file host.
pub const RAW: &str = "https://raw.githubusercontent.com";
/// Where Git LFS objects of a public repository are served by path.
pub const MEDIA: &str = "https://media.githubusercontent.com/media";

/// The assets of release `tag` of `repo`.
pub fn release(api: &Api<'_>, repo: &str, tag: &str) -> Result<Vec<RemoteFile>, ResolveError> {
    let url = format!("{API}/repos/{repo}/releases/tags/{}", encode_path(tag));
    let v = api.json(&url)?;
    let mut out = Vec::new();
    for a in Fields::of(&v, &url).array("assets")? {
        let f = Fields::of(a, &url);
        let digest = f.opt_str("digest").and_then(|d| d.strip_prefix("sha256:"));
        out.push(RemoteFile {
            path: f.str("name")?.to_string(),
            url: f.str("browser_download_url")?.to_string(),
            size: Some(f.u64("size")?),
            checksum: checksum("sha256", digest),
            etag: None,
        });
    }
    Ok(out)
}

/// The files under `path` of `repo` at `commit`.
pub fn tree(
    api: &Api<'_>,
    repo: &str,
    commit: &str,
    path: &str,
) -> Result<Vec<RemoteFile>, ResolveError> {
    let url = format!("{API}/repos/{repo}/git/trees/{commit}?recursive=1");
    let v = api.json(&url)?;
    if v["truncated"].as_bool() == Some(true) {
        return Err(ResolveError::Shape {
            url,
            message: "GitHub truncated the tree (over 100,000 entries); list a subdirectory's \
                      tree instead"
                .into(),
        });
    }
    let prefix = if path.is_empty() {
        String::new()
    } else {
        format!("{path}/")
    };
    let entries = Fields::of(&v, &url).array("tree")?;
    // The .gitattributes files of the tree, each with the directory it governs.
    let mut attributes = Vec::new();
    for e in entries {
        let f = Fields::of(e, &url);
        let full = f.str("path")?;
        if f.str("type")? == "blob"
            && (full == ".gitattributes" || full.ends_with("/.gitattributes"))
        {
            let dir = full.strip_suffix(".gitattributes").unwrap_or_default();
            let raw = format!("{RAW}/{repo}/{commit}/{}", encode_path(full));
            let text = api.get_data(&raw, None, "a .gitattributes file")?.body;
            attributes.push((dir.to_string(), String::from_utf8_lossy(&text).into_owned()));
        }
    }
    // Deeper files take precedence, as git reads them.
    attributes.sort_by_key(|(dir, _)| dir.len());
    let mut out = Vec::new();
    for e in entries {
        let f = Fields::of(e, &url);
        if f.str("type")? != "blob" {
            continue;
        }
        let full = f.str("path")?;
        let Some(rel) = full.strip_prefix(&prefix) else {
            continue;
        };
        let lfs = in_lfs(&attributes, full);
        out.push(RemoteFile {
            path: rel.to_string(),
            url: if lfs {
                format!("{MEDIA}/{repo}/{commit}/{}", encode_path(full))
            } else {
                format!("{RAW}/{repo}/{commit}/{}", encode_path(full))
            },
            // The tree gives the pointer's size, not the object's.
            size: if lfs { None } else { Some(f.u64("size")?) },
            checksum: None,
            etag: None,
        });
    }
    Ok(out)
}

/// Whether the `.gitattributes` files (directory, text; shallowest first) put `path` in Git
/// LFS: the last line whose pattern matches it and that sets or unsets `filter` decides. A
/// pattern with a `/` (other than at its end) is relative to its file's directory; one without
/// matches a file's name at any depth below it.
pub fn in_lfs(attributes: &[(String, String)], path: &str) -> bool {
    let mut lfs = false;
    for (dir, text) in attributes {
        let Some(below) = path.strip_prefix(dir.as_str()) else {
            continue;
        };
        for line in text.lines() {
            let mut words = line.split_whitespace();
            let Some(pattern) = words.next().filter(|p| !p.starts_with('#')) else {
                continue;
            };
            let filter = words.fold(None, |acc, w| match w {
                "filter=lfs" => Some(true),
                w if w.starts_with("filter=") || w == "-filter" || w == "!filter" => Some(false),
                _ => acc,
            });
            let Some(filter) = filter else { continue };
            let pattern = pattern.trim_end_matches('/');
            let matched = match pattern.strip_prefix('/') {
                Some(anchored) => super::glob(anchored, below),
                None if pattern.contains('/') => super::glob(pattern, below),
                None => below
                    .rsplit('/')
                    .next()
                    .is_some_and(|name| super::glob(pattern, name)),
            };
            if matched {
                lfs = filter;
            }
        }
    }
    lfs
}

#[cfg(test)]
mod tests {
    use super::in_lfs;

    #[test]
    fn gitattributes_say_which_files_are_in_lfs() {
        let root = (
            String::new(),
            "# big files\n*.nii.gz filter=lfs diff=lfs merge=lfs -text\n\
             data/keep/*.nii.gz -filter\n/top.bin filter=lfs\n"
                .to_string(),
        );
        let sub = ("data/x/".to_string(), "*.png filter=lfs\n".to_string());
        let attrs = [root, sub];
        assert!(in_lfs(&attrs, "data/case_00000/segmentation.nii.gz"));
        assert!(in_lfs(&attrs, "seg.nii.gz"));
        assert!(
            !in_lfs(&attrs, "data/keep/a.nii.gz"),
            "a later line unsets it"
        );
        assert!(
            in_lfs(&attrs, "top.bin") && !in_lfs(&attrs, "d/top.bin"),
            "anchored"
        );
        assert!(in_lfs(&attrs, "data/x/m.png") && !in_lfs(&attrs, "data/y/m.png"));
        assert!(!in_lfs(&attrs, "data/kits.json"));
    }
}
