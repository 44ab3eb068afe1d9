//! TCIA's NBIA search API (v4, no authentication since TCIA moved controlled data out), for
//! DICOM collections IDC does not mirror: `GET getSeries?Collection=C` lists the series
//! (`SeriesInstanceUID`, `StudyInstanceUID`, `PatientID`, `Modality`), `GET
//! getSOPInstanceUIDs?SeriesInstanceUID=S` a series' instances, and `getSingleImage` serves one
//! instance. NBIA lists no per-instance sizes, so an instance is sized when a user first
//! needs it (NBIA ignores Range: the probe brings the small instance whole, and it is kept;
//! see [`crate::sizes`]); prefer `idc` where IDC has the collection.

use super::{Api, Fields, RemoteFile, ResolveError, encode_query};

/// NBIA's v4 API.
pub const API: &str = "https://services.cancerimagingarchive.net/nbia-api/services/v4";

/// Every instance of collection `collection`, laid out like IDC's.
pub fn list(api: &Api<'_>, collection: &str) -> Result<Vec<RemoteFile>, ResolveError> {
    let url = format!("{API}/getSeries?Collection={}", encode_query(collection));
    let v = api.json(&url)?;
    let series = v.as_array().ok_or_else(|| ResolveError::Shape {
        url: url.clone(),
        message: "expected a list of series".into(),
    })?;
    let plain = |v: &str| {
        !v.is_empty()
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
            && v != "."
            && v != ".."
    };
    let mut out = Vec::new();
    for s in series {
        let f = Fields::of(s, &url);
        let (uid, study, patient) = (
            f.str("SeriesInstanceUID")?,
            f.str("StudyInstanceUID")?,
            f.str("PatientID")?,
        );
        let modality = f.opt_str("Modality").unwrap_or("OT");
        if ![uid, study, patient, modality].iter().all(|v| plain(v)) {
            tracing::warn!(
                collection,
                "TCIA series {uid:?} has unusual identifiers; skipped"
            );
            continue;
        }
        let iurl = format!("{API}/getSOPInstanceUIDs?SeriesInstanceUID={uid}");
        let instances = api.json(&iurl)?;
        for i in instances.as_array().into_iter().flatten() {
            let sop = Fields::of(i, &iurl).str("SOPInstanceUID")?;
            if !plain(sop) {
                continue;
            }
            out.push(RemoteFile {
                path: format!("{patient}/{study}/{modality}_{uid}/{sop}.dcm"),
                url: format!("{API}/getSingleImage?SeriesInstanceUID={uid}&SOPInstanceUID={sop}"),
                size: None,
                checksum: None,
                etag: None,
            });
        }
    }
    Ok(out)
}
