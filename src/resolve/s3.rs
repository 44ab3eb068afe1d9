//! Public S3 buckets (IDC's DICOM series, MSD's task tars, PhysioNet's open mirror):
//! `GET {bucket}/?list-type=2&prefix=P` (ListObjectsV2) lists keys with `Size` and `ETag`,
//! 1000 at a time (`IsTruncated`, `NextContinuationToken`). An ETag without `-` is the MD5
//! of the object (single-part upload), so it doubles as the checksum; every ETag is sent as
//! `If-Match`, so bytes of a replaced object are never mixed with the old one's. Pages are
//! read by `quick-xml`'s serde reader (entities decoded, unknown elements ignored).

use super::{Api, Asked, RemoteFile, ResolveError, checksum, encode_path, encode_query};

/// The objects under `prefixes` in `bucket` (its HTTPS endpoint).
pub fn list(
    api: &Api<'_>,
    bucket: &str,
    prefixes: &[String],
) -> Result<Vec<RemoteFile>, ResolveError> {
    let mut out = Vec::new();
    for prefix in prefixes {
        let mut token: Option<String> = None;
        let mut asked = Asked::new(&format!(
            "{bucket}/?list-type=2&prefix={}",
            encode_query(prefix)
        ));
        loop {
            let mut url = format!("{bucket}/?list-type=2&prefix={}", encode_query(prefix));
            if let Some(t) = &token {
                url.push_str(&format!("&continuation-token={}", encode_query(t)));
            }
            let reply = api.get(&url)?;
            let page: ListBucketResult = std::str::from_utf8(&reply.body)
                .map_err(|e| e.to_string())
                .and_then(|xml| quick_xml::de::from_str(xml).map_err(|e| e.to_string()))
                .map_err(|e| ResolveError::Shape {
                    url: url.clone(),
                    message: format!("not a ListBucketResult ({e})"),
                })?;
            for c in page.contents {
                if c.key.ends_with('/') {
                    continue; // a "folder" placeholder object
                }
                let md5 = c
                    .etag
                    .as_deref()
                    .map(|e| e.trim_matches('"'))
                    .filter(|e| !e.contains('-'));
                out.push(RemoteFile {
                    url: format!("{bucket}/{}", encode_path(&c.key)),
                    checksum: checksum("md5", md5),
                    path: c.key,
                    size: Some(c.size),
                    etag: c.etag,
                });
            }
            token = page.next_continuation_token;
            match &token {
                Some(t) if page.is_truncated => asked.first_time("continuation token", t)?,
                _ => break,
            }
        }
    }
    Ok(out)
}

/// One page of ListObjectsV2 (fields medimg reads; the rest are ignored).
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListBucketResult {
    #[serde(default)]
    is_truncated: bool,
    next_continuation_token: Option<String>,
    #[serde(default)]
    contents: Vec<Contents>,
}

/// One object of a page.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Contents {
    key: String,
    size: u64,
    #[serde(rename = "ETag")]
    etag: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_bucket_result_parses() {
        let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
            <ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
            <Name>b</Name><Prefix>s1/</Prefix><KeyCount>2</KeyCount><IsTruncated>true</IsTruncated>\
            <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>\
            <Contents><Key>s1/a&amp;b.dcm</Key><LastModified>2020-01-01T00:00:00.000Z</LastModified>\
            <ETag>&quot;0123456789abcdef0123456789abcdef&quot;</ETag><Size>12</Size>\
            <StorageClass>STANDARD</StorageClass></Contents>\
            <Contents><Key>s1/big.dcm</Key><ETag>\"abc-2\"</ETag><Size>5000000000</Size></Contents>\
            </ListBucketResult>";
        let page: ListBucketResult = quick_xml::de::from_str(xml).unwrap();
        assert!(page.is_truncated);
        assert_eq!(
            page.next_continuation_token.as_deref(),
            Some("1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=")
        );
        assert_eq!(page.contents.len(), 2);
        assert_eq!(page.contents[0].key, "s1/a&b.dcm");
        assert_eq!(
            page.contents[0].etag.as_deref(),
            Some("\"0123456789abcdef0123456789abcdef\"")
        );
        assert_eq!(page.contents[1].size, 5_000_000_000);
        let empty: ListBucketResult = quick_xml::de::from_str(
            "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>",
        )
        .unwrap();
        assert!(empty.contents.is_empty() && !empty.is_truncated);
    }
}
