//! Public S3 buckets (IDC's DICOM series, MSD's task tars, PhysioNet's open mirror):
//! `GET {bucket}/?list-type=2&prefix=P` (ListObjectsV2) lists keys with `Size` and `ETag`,
//! 1000 at a time (`IsTruncated`, `NextContinuationToken`). An ETag without `-` is the MD5
//! of the object (single-part upload), so it doubles as the checksum; every ETag is sent as
//! `If-Match`, so bytes of a replaced object are never mixed with the old one's.

use super::{Api, RemoteFile, ResolveError, checksum, encode_path, encode_query};

/// The objects under `prefixes` in `bucket` (its HTTPS endpoint).
pub fn list(
    api: &Api<'_>,
    bucket: &str,
    prefixes: &[String],
) -> Result<Vec<RemoteFile>, ResolveError> {
    let mut out = Vec::new();
    for prefix in prefixes {
        let mut token: Option<String> = None;
        loop {
            let mut url = format!("{bucket}/?list-type=2&prefix={}", encode_query(prefix));
            if let Some(t) = &token {
                url.push_str(&format!("&continuation-token={}", encode_query(t)));
            }
            let reply = api.get(&url)?;
            let xml = String::from_utf8_lossy(&reply.body);
            if !xml.contains("<ListBucketResult") {
                return Err(ResolveError::Shape {
                    url,
                    message: "not a ListBucketResult".into(),
                });
            }
            for c in elements(&xml, "Contents") {
                let key = text(c, "Key").ok_or_else(|| ResolveError::Shape {
                    url: url.clone(),
                    message: "a <Contents> without <Key>".into(),
                })?;
                if key.ends_with('/') {
                    continue; // a "folder" placeholder object
                }
                let size = text(c, "Size")
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| ResolveError::Shape {
                        url: url.clone(),
                        message: format!("{key}: no <Size>"),
                    })?;
                let etag = text(c, "ETag");
                let md5 = etag
                    .as_deref()
                    .map(|e| e.trim_matches('"'))
                    .filter(|e| !e.contains('-'));
                out.push(RemoteFile {
                    url: format!("{bucket}/{}", encode_path(&key)),
                    path: key,
                    size: Some(size),
                    checksum: checksum("md5", md5),
                    etag,
                });
            }
            let truncated = text(&xml, "IsTruncated").as_deref() == Some("true");
            token = text(&xml, "NextContinuationToken");
            if !truncated || token.is_none() {
                break;
            }
        }
    }
    Ok(out)
}

/// The bodies of every `<tag>…</tag>` in `xml`, in order.
fn elements<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let body = &rest[i + open.len()..];
        let Some(j) = body.find(&close) else { break };
        out.push(&body[..j]);
        rest = &body[j + close.len()..];
    }
    out
}

/// The text of the first `<tag>` in `xml`, with XML entities decoded.
fn text(xml: &str, tag: &str) -> Option<String> {
    let raw = elements(xml, tag).into_iter().next()?;
    Some(
        raw.replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_bucket_result_parses() {
        let xml = "<?xml version=\"1.0\"?><ListBucketResult><IsTruncated>false</IsTruncated>\
            <Contents><Key>s1/a&amp;b.dcm</Key><Size>12</Size><ETag>&quot;0123456789abcdef0123456789abcdef&quot;</ETag></Contents>\
            </ListBucketResult>";
        let c = elements(xml, "Contents");
        assert_eq!(c.len(), 1);
        assert_eq!(text(c[0], "Key").as_deref(), Some("s1/a&b.dcm"));
        assert_eq!(
            text(c[0], "ETag").as_deref(),
            Some("\"0123456789abcdef0123456789abcdef\"")
        );
    }
}
