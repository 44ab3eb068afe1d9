//! Imaging Data Commons (IDC), the public mirror of TCIA's radiology collections, read from its
//! own published index: the `idc-index-data` package on PyPI (pinned by version in the catalog)
//! carries `idc_index.parquet`, one row per DICOM series with its collection, patient, study,
//! modality, bucket and `crdc_series_uuid`. medimg asks PyPI's JSON API for the wheel
//! (`GET https://pypi.org/pypi/idc-index-data/{version}/json`), checks its sha256, reads the
//! collection's rows, then lists each series' instances in the public bucket with S3
//! ListObjectsV2 (`{bucket}/{crdc_series_uuid}/{crdc_instance_uuid}.dcm`, sizes and ETags).
//!
//! The tree is `PatientID/StudyInstanceUID/Modality_SeriesInstanceUID/<instance>.dcm`, the
//! layout TCIA's own downloader writes (with IDC's instance names).

use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::RowAccessor;
use sha2::Digest;

use super::{Api, Fields, RemoteFile, ResolveError, s3};

/// PyPI's JSON API.
pub const PYPI: &str = "https://pypi.org/pypi";
/// The index inside the wheel.
const MEMBER: &str = "idc_index_data/idc_index.parquet";
/// Series listed at once (S3 takes thousands of requests a second per prefix).
const LIST_THREADS: usize = 16;

/// One series of the collection.
struct Series {
    patient: String,
    study: String,
    modality: String,
    series: String,
    bucket: String,
    uuid: String,
}

/// The instances of every series of IDC collection `collection`, by `idc-index-data` `version`.
pub fn list(
    api: &Api<'_>,
    collection: &str,
    version: &str,
) -> Result<Vec<RemoteFile>, ResolveError> {
    let series = series_of(api, collection, version)?;
    if series.is_empty() {
        return Err(ResolveError::Shape {
            url: format!("{PYPI}/idc-index-data/{version}/json"),
            message: format!("idc-index-data {version} has no series of collection {collection:?}"),
        });
    }
    tracing::info!(
        collection,
        "listing the instances of {} series",
        series.len()
    );
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(Vec::with_capacity(series.len()));
    std::thread::scope(|sc| {
        for _ in 0..LIST_THREADS.min(series.len()) {
            sc.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(s) = series.get(i) else { break };
                    let bucket = format!("https://{}.s3.amazonaws.com", s.bucket);
                    let r = s3::list(api, &bucket, &[format!("{}/", s.uuid)]);
                    let failed = r.is_err();
                    results
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((i, r));
                    if failed {
                        next.store(series.len(), std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    results.sort_by_key(|(i, _)| *i);
    let mut out = Vec::new();
    for (i, r) in results {
        let s = &series[i];
        let dir = format!("{}/{}/{}_{}", s.patient, s.study, s.modality, s.series);
        for mut f in r? {
            let name = f.path.rsplit('/').next().unwrap_or(&f.path).to_string();
            f.path = format!("{dir}/{name}");
            out.push(f);
        }
    }
    Ok(out)
}

/// The series of `collection` in the index of `idc-index-data` `version`.
fn series_of(api: &Api<'_>, collection: &str, version: &str) -> Result<Vec<Series>, ResolveError> {
    let url = format!("{PYPI}/idc-index-data/{version}/json");
    let v = api.json(&url)?;
    let wheel = Fields::of(&v, &url)
        .array("urls")?
        .iter()
        .find(|u| u["packagetype"].as_str() == Some("bdist_wheel"))
        .ok_or_else(|| ResolveError::Shape {
            url: url.clone(),
            message: "no wheel among the release's files".into(),
        })?;
    let wf = Fields::of(wheel, &url);
    let wheel_url = wf.str("url")?.to_string();
    let want = wheel["digests"]["sha256"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let data = api.get(&wheel_url)?.body;
    let got: String = sha2::Sha256::digest(&data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if got != want {
        return Err(ResolveError::Shape {
            url: wheel_url,
            message: format!("sha256 {got}, PyPI publishes {want:?}"),
        });
    }
    let bad = |m: String| ResolveError::Shape {
        url: wheel_url.clone(),
        message: m,
    };
    let parquet = crate::archive::zip::extract(&data, MEMBER).map_err(|e| bad(e.to_string()))?;
    drop(data);
    let reader = SerializedFileReader::new(bytes::Bytes::from(parquet))
        .map_err(|e| bad(format!("{MEMBER}: {e}")))?;
    // The projection names the columns in the file's own order (the reader requires it).
    let wanted = [
        "collection_id",
        "PatientID",
        "SeriesInstanceUID",
        "StudyInstanceUID",
        "Modality",
        "aws_bucket",
        "crdc_series_uuid",
    ];
    let file_schema = reader.metadata().file_metadata().schema_descr_ptr();
    let mut cols: Vec<(usize, &str)> = Vec::new();
    for w in wanted {
        let i = (0..file_schema.num_columns())
            .find(|&i| file_schema.column(i).name() == w)
            .ok_or_else(|| bad(format!("{MEMBER} has no column {w:?}")))?;
        cols.push((i, w));
    }
    cols.sort();
    let root = file_schema.root_schema().name().to_string();
    let fields: Vec<String> = cols
        .iter()
        .map(|(_, n)| format!("optional binary {n} (UTF8);"))
        .collect();
    let projection = parquet::schema::parser::parse_message_type(&format!(
        "message {root} {{ {} }}",
        fields.join(" ")
    ))
    .map_err(|e| bad(e.to_string()))?;
    let pos = |name: &str| cols.iter().position(|(_, n)| *n == name).unwrap_or(0);
    let (c_coll, c_pat, c_ser, c_stu, c_mod, c_bkt, c_uuid) = (
        pos("collection_id"),
        pos("PatientID"),
        pos("SeriesInstanceUID"),
        pos("StudyInstanceUID"),
        pos("Modality"),
        pos("aws_bucket"),
        pos("crdc_series_uuid"),
    );
    let rows = reader
        .get_row_iter(Some(projection))
        .map_err(|e| bad(format!("{MEMBER}: {e}")))?;
    let mut out = Vec::new();
    for row in rows {
        let row = row.map_err(|e| bad(format!("{MEMBER}: {e}")))?;
        if row.get_string(c_coll).ok().map(String::as_str) != Some(collection) {
            continue;
        }
        let text = |i: usize| row.get_string(i).cloned().unwrap_or_default();
        let s = Series {
            patient: text(c_pat),
            study: text(c_stu),
            modality: text(c_mod),
            series: text(c_ser),
            bucket: text(c_bkt),
            uuid: text(c_uuid),
        };
        // Names become path segments and a host name: refuse anything else.
        let plain = |v: &str| {
            !v.is_empty()
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
                && v != "."
                && v != ".."
        };
        if [
            &s.patient,
            &s.study,
            &s.modality,
            &s.series,
            &s.bucket,
            &s.uuid,
        ]
        .iter()
        .all(|v| plain(v))
        {
            out.push(s);
        } else {
            tracing::warn!(
                collection,
                "IDC series {:?} has unusual identifiers; skipped",
                s.uuid
            );
        }
    }
    Ok(out)
}
