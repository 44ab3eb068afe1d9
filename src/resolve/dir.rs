//! Plain HTTP directory listings (Apache, nginx `autoindex`, `python -m http.server`): the
//! links of an HTML index page, read recursively. Only links that stay below the listed
//! directory count (no parent, no sort links like `?C=N;O=D`, no other hosts). An nginx
//! `autoindex_format json` answer gives sizes too; an HTML one does not, so its files are
//! probed when the dataset is indexed.

use std::collections::HashSet;

use super::{Api, RemoteFile, ResolveError};

/// Directories nest at most this deep.
const MAX_DEPTH: usize = 32;
/// A listing larger than this is refused rather than crawled for hours.
const MAX_FILES: usize = 2_000_000;

/// The files below directory `url` (ending in `/`).
pub fn list(api: &Api<'_>, url: &str) -> Result<Vec<RemoteFile>, ResolveError> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    walk(api, url, url, 0, &mut out, &mut seen)?;
    Ok(out)
}

fn walk(
    api: &Api<'_>,
    root: &str,
    dir: &str,
    depth: usize,
    out: &mut Vec<RemoteFile>,
    seen: &mut HashSet<String>,
) -> Result<(), ResolveError> {
    if depth > MAX_DEPTH || !seen.insert(dir.to_string()) {
        return Ok(());
    }
    let reply = api.get(dir)?;
    let base = reqwest::Url::parse(dir).map_err(|e| ResolveError::Shape {
        url: dir.to_string(),
        message: format!("not a URL ({e})"),
    })?;
    let json = reply
        .content_type
        .as_deref()
        .is_some_and(|c| c.contains("json"));
    let entries: Vec<(String, Option<u64>)> = if json {
        let v: serde_json::Value =
            serde_json::from_slice(&reply.body).map_err(|e| ResolveError::Shape {
                url: dir.to_string(),
                message: format!("not JSON ({e})"),
            })?;
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| {
                let name = e["name"].as_str()?;
                match e["type"].as_str()? {
                    "directory" => Some((format!("{}/", super::encode_path(name)), None)),
                    "file" => Some((super::encode_path(name), e["size"].as_u64())),
                    _ => None,
                }
            })
            .collect()
    } else {
        hrefs(&String::from_utf8_lossy(&reply.body))
            .into_iter()
            .map(|h| (h, None))
            .collect()
    };
    for (href, size) in entries {
        let Ok(target) = base.join(&href) else {
            continue;
        };
        let mut t = target.to_string();
        if let Some(i) = t.find(['?', '#']) {
            if t[i..].len() > 1 {
                continue; // sort links and anchors
            }
            t.truncate(i);
        }
        let Some(rel) = t.strip_prefix(dir).filter(|r| !r.is_empty()) else {
            continue; // the parent, or another place
        };
        if rel.trim_end_matches('/').contains('/') {
            continue; // a link deeper down is listed by its own directory
        }
        if t.ends_with('/') {
            walk(api, root, &t, depth + 1, out, seen)?;
        } else {
            let path = crate::catalog::percent_decode(&t[root.len()..]);
            out.push(RemoteFile {
                path,
                url: t,
                size,
                checksum: None,
                etag: None,
            });
            if out.len() > MAX_FILES {
                return Err(ResolveError::Shape {
                    url: root.to_string(),
                    message: format!("more than {MAX_FILES} files; list a subdirectory instead"),
                });
            }
        }
    }
    Ok(())
}

/// The `href` targets of `<a>` elements in an HTML page, entities decoded.
fn hrefs(html: &str) -> Vec<String> {
    let lower = html.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(i) = lower[at..].find("href=") {
        let start = at + i + 5;
        let rest = &html[start..];
        let (value, used) = match rest.chars().next() {
            Some(q @ ('"' | '\'')) => match rest[1..].find(q) {
                Some(end) => (&rest[1..1 + end], end + 2),
                None => break,
            },
            _ => {
                let end = rest.find([' ', '>', '\t', '\n']).unwrap_or(rest.len());
                (&rest[..end], end)
            }
        };
        out.push(
            value
                .replace("&amp;", "&")
                .replace("&quot;", "\"")
                .replace("&#39;", "'")
                .replace("&lt;", "<")
                .replace("&gt;", ">"),
        );
        at = start + used.max(1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hrefs_of_an_apache_index() {
        let html = r#"<a href="?C=N;O=D">Name</a> <a href="/pub/">Parent Directory</a>
            <a href="images/">images/</a> <a href='a%20b.png'>a b.png</a> <A HREF=c.txt>c</A>"#;
        assert_eq!(
            hrefs(html),
            vec!["?C=N;O=D", "/pub/", "images/", "a%20b.png", "c.txt"]
        );
    }
}
