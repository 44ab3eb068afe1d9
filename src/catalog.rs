//! The dataset catalog: parse, validate, and hold the modality/organ vocabulary.
//!
//! The catalog is a TOML file of `[[dataset]]` entries (the default one, `config/catalog.toml`, is
//! embedded in the binary). It is the only place that knows anything about a dataset. Everything
//! is validated at load time, so the rest of the daemon can trust it: ids are unique lowercase
//! slugs, modality and organ values come from the vocabulary below, every source names a
//! supported type with its required fields. An error names the file, the entry and the field.

use std::collections::HashSet;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The 14 imaging modalities medimg files datasets under (`MNT/modality/<Modality>/`).
pub const MODALITIES: [&str; 14] = [
    "X-ray",
    "CT",
    "MRI",
    "OCT",
    "Ultrasound",
    "Endoscopy",
    "Fundus",
    "Dermoscopy",
    "Pathology",
    "Microscopy",
    "Mammography",
    "PET",
    "Photography",
    "Colposcopy",
];

/// The 13 organs medimg files datasets under (`MNT/organ/<organ>/`).
pub const ORGANS: [&str; 13] = [
    "lung",
    "brain",
    "eye",
    "heart",
    "breast",
    "skin",
    "bone",
    "gastrointestinal",
    "blood",
    "kidney",
    "liver",
    "cervix",
    "teeth",
];

/// The catalog shipped with medimg, used when no `--catalog` is given.
pub const DEFAULT_CATALOG: &str = include_str!("../config/catalog.toml");

/// What a user needs before the upstream host hands out the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Anyone can download it.
    Open,
    /// Needs an account, a token or accepted terms.
    Account,
    /// Needs credentialed access (training, a signed data use agreement).
    Credentialed,
}

impl Access {
    /// The word used in the catalog file and in listings.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Open => "open",
            Access::Account => "account",
            Access::Credentialed => "credentialed",
        }
    }
}

/// How the bytes of a source become files in the dataset directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// A ZIP archive, expanded into the dataset directory as `unzip` would.
    Zip,
    /// One file, named after the last segment of the URL's path.
    File,
    /// A tar archive, expanded like a zip.
    Tar,
    /// A gzip-compressed tar archive (`.tar.gz`, `.tgz`).
    #[serde(rename = "tar.gz", alias = "tgz")]
    TarGz,
}

/// One upstream object a dataset is made of, or the parts of a split archive (their bytes,
/// concatenated in order, are the archive: `x.zip.001`, `x.zip.002`, ... or Info-ZIP's `x.z01`,
/// ..., `x.zip`; `x.tar.gz.aa`, `x.tar.gz.ab`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Source {
    /// Where the bytes are (before mirror rules are applied); one URL, or the parts in order.
    pub urls: Vec<String>,
    /// How the bytes become files.
    pub format: Format,
}

impl Source {
    /// The file name a `file` source gets: the URL path's last segment, percent-decoded (a split
    /// file's part suffix removed).
    pub fn file_name(&self) -> Option<String> {
        let first = self.urls.first()?;
        if self.urls.len() > 1 {
            file_name_of_url(&strip_part_suffix(first))
        } else {
            file_name_of_url(first)
        }
    }
}

/// `x.zip.001` -> `x.zip`, `x.tar.gz.ab` -> `x.tar.gz`; other URLs unchanged.
fn strip_part_suffix(url: &str) -> String {
    if let Some((stem, suffix)) = url.rsplit_once('.')
        && (suffix.len() == 3 && suffix.bytes().all(|b| b.is_ascii_digit())
            || suffix.len() == 2 && suffix.bytes().all(|b| b.is_ascii_lowercase()))
        && stem.contains('.')
    {
        return stem.to_string();
    }
    url.to_string()
}

/// One validated catalog entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dataset {
    /// Lowercase slug: letters, digits and `-`; the directory name under `MNT/datasets/`.
    pub id: String,
    /// The dataset's name as its authors write it.
    pub title: String,
    /// One or more values of [`MODALITIES`].
    pub modality: Vec<String>,
    /// One or more values of [`ORGANS`].
    pub organ: Vec<String>,
    /// What the labels are for.
    pub task: String,
    /// Upstream count of images (or of `images_note` units).
    pub images: u64,
    /// The unit of `images` when it is not images ("scans", "patients").
    pub images_note: Option<String>,
    /// Licence as stated upstream.
    pub license: String,
    /// Landing page.
    pub homepage: String,
    /// What a user needs before download.
    pub access: Access,
    /// The upstream objects that make the dataset; empty when unsupported.
    pub sources: Vec<Source>,
    /// Why medimg cannot fetch this dataset yet, if it cannot.
    pub unsupported: Option<String>,
}

impl Dataset {
    /// A stable digest of what the dataset's files depend on; a change re-indexes the dataset.
    pub fn fingerprint(&self) -> String {
        let mut s = String::new();
        for src in &self.sources {
            s.push_str(&format!("{:?} {}\n", src.format, src.urls.join(" ")));
        }
        s
    }

    /// Why the dataset cannot be read, or `None` when it can.
    pub fn unsupported_reason(&self) -> Option<&str> {
        if let Some(r) = &self.unsupported {
            return Some(r);
        }
        if self.sources.is_empty() {
            return Some("the catalog entry has no source");
        }
        None
    }
}

/// A validated catalog.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// Where it came from (a path, or `built-in`), for messages.
    pub origin: String,
    /// Entries in file order.
    pub datasets: Vec<Dataset>,
}

/// A catalog that cannot be used, with the place and the reason.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The file could not be read.
    #[error("cannot read catalog {path}: {source}")]
    Read {
        /// The path given.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not have the catalog's shape.
    #[error("catalog {origin} is malformed: {message}")]
    Syntax {
        /// Path or `built-in`.
        origin: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// One entry breaks a rule.
    #[error("catalog {origin}: dataset #{index} ({id}): field `{field}`: {message}")]
    Invalid {
        /// Path or `built-in`.
        origin: String,
        /// 1-based position of the entry in the file.
        index: usize,
        /// The entry's id as written (or `?`).
        id: String,
        /// The field at fault.
        field: String,
        /// What is wrong and what is allowed.
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    #[serde(default)]
    dataset: Vec<RawDataset>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDataset {
    id: String,
    title: String,
    modality: Vec<String>,
    organ: Vec<String>,
    #[serde(default)]
    task: String,
    #[serde(default)]
    images: u64,
    #[serde(default)]
    images_note: Option<String>,
    #[serde(default)]
    license: String,
    #[serde(default)]
    homepage: String,
    access: Access,
    #[serde(default)]
    source: Vec<RawSource>,
    #[serde(default)]
    unsupported: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    urls: Option<Vec<String>>,
    #[serde(default)]
    format: Option<Format>,
}

impl Catalog {
    /// The catalog embedded in the binary.
    pub fn builtin() -> Result<Catalog, CatalogError> {
        Catalog::parse(DEFAULT_CATALOG, "built-in (config/catalog.toml)")
    }

    /// Read and validate a catalog file.
    pub fn load(path: &Path) -> Result<Catalog, CatalogError> {
        let text = std::fs::read_to_string(path).map_err(|source| CatalogError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Catalog::parse(&text, &path.display().to_string())
    }

    /// Parse and validate catalog text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Catalog, CatalogError> {
        let raw: RawCatalog = toml::from_str(text).map_err(|e| CatalogError::Syntax {
            origin: origin.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let mut seen = HashSet::new();
        let mut datasets = Vec::with_capacity(raw.dataset.len());
        for (i, d) in raw.dataset.into_iter().enumerate() {
            let fail = |field: &str, message: String| CatalogError::Invalid {
                origin: origin.to_string(),
                index: i + 1,
                id: format!("{:?}", d.id),
                field: field.to_string(),
                message,
            };
            if !is_slug(&d.id) {
                return Err(fail(
                    "id",
                    "must be a lowercase slug of letters, digits and '-' (not starting or ending with '-')"
                        .into(),
                ));
            }
            if !seen.insert(d.id.clone()) {
                return Err(fail(
                    "id",
                    "duplicate id: another dataset already uses it".into(),
                ));
            }
            if d.title.trim().is_empty() {
                return Err(fail("title", "must not be empty".into()));
            }
            check_vocabulary(&d.modality, &MODALITIES).map_err(|m| fail("modality", m))?;
            check_vocabulary(&d.organ, &ORGANS).map_err(|m| fail("organ", m))?;
            let mut sources = Vec::new();
            for (j, s) in d.source.iter().enumerate() {
                let field = |f: &str| format!("source[{}].{f}", j + 1);
                if s.kind != "http" {
                    return Err(fail(
                        &field("type"),
                        format!("unknown source type {:?}; supported: \"http\"", s.kind),
                    ));
                }
                let urls = match (&s.url, &s.urls) {
                    (Some(u), None) => vec![u.clone()],
                    (None, Some(us)) if !us.is_empty() => us.clone(),
                    (None, _) => {
                        return Err(fail(
                            &field("url"),
                            "missing; an http source needs `url`, or `urls` for the parts of a split archive"
                                .into(),
                        ));
                    }
                    (Some(_), Some(_)) => {
                        return Err(fail(
                            &field("urls"),
                            "give `url` or `urls`, not both".into(),
                        ));
                    }
                };
                for url in &urls {
                    if !(url.starts_with("http://") || url.starts_with("https://")) {
                        return Err(fail(
                            &field("url"),
                            format!("{url:?} is not an http(s) URL"),
                        ));
                    }
                }
                // Info-ZIP's `.z01 ... .zip` ends with the archive's own name; split files
                // (`.001`, `.aa`) carry it before their suffix.
                let last = urls.last().map_or(String::new(), |u| strip_part_suffix(u));
                let format = s.format.unwrap_or_else(|| default_format(&last));
                let source = Source { urls, format };
                if format == Format::File && source.file_name().is_none() {
                    return Err(fail(
                        &field("url"),
                        format!(
                            "{:?} has no file name in its path for a `file` source",
                            source.urls[0]
                        ),
                    ));
                }
                sources.push(source);
            }
            if d.unsupported.is_some() && !sources.is_empty() {
                return Err(fail(
                    "unsupported",
                    "a dataset with sources cannot also be marked unsupported".into(),
                ));
            }
            datasets.push(Dataset {
                id: d.id,
                title: d.title,
                modality: d.modality,
                organ: d.organ,
                task: d.task,
                images: d.images,
                images_note: d.images_note,
                license: d.license,
                homepage: d.homepage,
                access: d.access,
                sources,
                unsupported: d.unsupported,
            });
        }
        if datasets.is_empty() {
            return Err(CatalogError::Syntax {
                origin: origin.to_string(),
                message: "no [[dataset]] entries".into(),
            });
        }
        Ok(Catalog {
            origin: origin.to_string(),
            datasets,
        })
    }

    /// The dataset with this id.
    pub fn get(&self, id: &str) -> Option<&Dataset> {
        self.datasets.iter().find(|d| d.id == id)
    }
}

fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('-')
        && !s.ends_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn check_vocabulary(values: &[String], vocabulary: &[&str]) -> Result<(), String> {
    if values.is_empty() {
        return Err(format!(
            "must list at least one of: {}",
            vocabulary.join(", ")
        ));
    }
    let mut seen = HashSet::new();
    for v in values {
        if !vocabulary.contains(&v.as_str()) {
            return Err(format!(
                "unknown value {v:?}; expected one of: {}",
                vocabulary.join(", ")
            ));
        }
        if !seen.insert(v) {
            return Err(format!("{v:?} is listed twice"));
        }
    }
    Ok(())
}

/// The format a source has when the catalog does not say: archives by their extension, and
/// everything else (`.nii.gz`, `.dcm`, `.svs`, `.npz`, ...) a file that stays a file.
fn default_format(url: &str) -> Format {
    let path = url_path(url).to_ascii_lowercase();
    if path.ends_with(".zip") {
        Format::Zip
    } else if path.ends_with(".tar") {
        Format::Tar
    } else if path.ends_with(".tar.gz") || path.ends_with(".tgz") {
        Format::TarGz
    } else {
        Format::File
    }
}

fn url_path(url: &str) -> &str {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = after_scheme.find('/').map_or("", |i| &after_scheme[i..]);
    path.split(['?', '#']).next().unwrap_or("")
}

fn file_name_of_url(url: &str) -> Option<String> {
    let last = url_path(url).rsplit('/').next()?;
    let name = percent_decode(last);
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        None
    } else {
        Some(name)
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(Ok(v)) = s.get(i + 1..i + 3).map(|h| u8::from_str_radix(h, 16))
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Zip => "zip",
            Format::File => "file",
            Format::Tar => "tar",
            Format::TarGz => "tar.gz",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = r#"
[[dataset]]
id = "chest-xray-pneumonia"
title = "Chest X-Ray Images (Pneumonia)"
modality = ["X-ray"]
organ = ["lung"]
access = "open"
[[dataset.source]]
type = "http"
url = "https://example.org/a/chest_xray.zip"
"#;

    fn err(text: &str) -> String {
        Catalog::parse(text, "test.toml").unwrap_err().to_string()
    }

    #[test]
    fn builtin_catalog_holds_all_105_datasets_with_known_vocabulary() {
        let c = Catalog::builtin().unwrap();
        assert_eq!(c.datasets.len(), 105);
        let modalities: HashSet<_> = c.datasets.iter().flat_map(|d| d.modality.clone()).collect();
        let organs: HashSet<_> = c.datasets.iter().flat_map(|d| d.organ.clone()).collect();
        assert_eq!(modalities.len(), 14, "every modality is used");
        assert_eq!(organs.len(), 13, "every organ is used");
        for d in &c.datasets {
            assert!(
                d.unsupported_reason().is_some() == d.sources.is_empty(),
                "{}: either sources or a reason",
                d.id
            );
        }
    }

    #[test]
    fn format_defaults_from_the_url() {
        let c = Catalog::parse(ONE, "t").unwrap();
        assert_eq!(c.datasets[0].sources[0].format, Format::Zip);
        let t = ONE.replace("chest_xray.zip", "scan%201.nii.gz?download=1");
        let c = Catalog::parse(&t, "t").unwrap();
        assert_eq!(c.datasets[0].sources[0].format, Format::File);
        assert_eq!(
            c.datasets[0].sources[0].file_name().as_deref(),
            Some("scan 1.nii.gz")
        );
        for (url, f) in [
            ("https://h/ChestX-ray14/images_01.tar.gz", Format::TarGz),
            ("https://h/IXI-T1.tar", Format::Tar),
            ("https://h/a.TGZ", Format::TarGz),
            ("https://h/slide.svs", Format::File),
            ("https://h/x.npz", Format::File),
        ] {
            assert_eq!(default_format(url), f, "{url}");
        }
        let t = ONE.replace(
            "url = \"https://example.org/a/chest_xray.zip\"",
            "urls = [\"https://h/x.zip.001\", \"https://h/x.zip.002\"]",
        );
        let c = Catalog::parse(&t, "t").unwrap();
        assert_eq!(c.datasets[0].sources[0].format, Format::Zip);
        let t = ONE.replace(
            "url = \"https://example.org/a/chest_xray.zip\"",
            "urls = [\"https://h/x.z01\", \"https://h/x.zip\"]",
        );
        assert_eq!(
            Catalog::parse(&t, "t").unwrap().datasets[0].sources[0].format,
            Format::Zip
        );
        let t = ONE.replace(
            "url = \"https://example.org/a/chest_xray.zip\"",
            "urls = [\"https://h/vol.nii.gz.aa\", \"https://h/vol.nii.gz.ab\"]",
        );
        let c = Catalog::parse(&t, "t").unwrap();
        assert_eq!(
            c.datasets[0].sources[0].file_name().as_deref(),
            Some("vol.nii.gz")
        );
        let t = ONE.replace(
            "url = \"https://example.org/a/chest_xray.zip\"",
            "url = \"https://h/a.bin\"\nformat = \"tar.gz\"",
        );
        let c = Catalog::parse(&t, "t").unwrap();
        assert_eq!(c.datasets[0].sources[0].format, Format::TarGz);
    }

    #[test]
    fn unknown_organ_is_named_with_file_entry_and_field() {
        let e = err(&ONE.replace("[\"lung\"]", "[\"lungs\"]"));
        assert!(e.contains("test.toml"), "{e}");
        assert!(e.contains("dataset #1"), "{e}");
        assert!(e.contains("chest-xray-pneumonia"), "{e}");
        assert!(e.contains("`organ`"), "{e}");
        assert!(e.contains("\"lungs\""), "{e}");
    }

    #[test]
    fn duplicate_id_is_refused() {
        let e = err(&format!(
            "{ONE}\n{}",
            ONE.replace("example.org", "example.com")
        ));
        assert!(
            e.contains("dataset #2") && e.contains("duplicate id"),
            "{e}"
        );
    }

    #[test]
    fn bad_slug_unknown_field_and_bad_source_are_refused() {
        assert!(err(&ONE.replace("chest-xray-pneumonia", "Chest_XRay")).contains("`id`"));
        let e = err(&ONE.replace("access = \"open\"", "access = \"open\"\ncolour = 1"));
        assert!(e.contains("colour"), "{e}");
        let e = err(&ONE.replace("type = \"http\"", "type = \"ftp\""));
        assert!(e.contains("source[1].type") && e.contains("ftp"), "{e}");
        let e = err(&ONE.replace("https://example.org/a/chest_xray.zip", "file:///etc/passwd"));
        assert!(e.contains("source[1].url"), "{e}");
        let e = err(&ONE.replace("modality = [\"X-ray\"]", "modality = []"));
        assert!(
            e.contains("`modality`") && e.contains("at least one"),
            "{e}"
        );
    }

    #[test]
    fn malformed_toml_names_the_file_and_line() {
        let e = err("[[dataset]]\nid = \n");
        assert!(e.contains("test.toml") && e.contains("line 2"), "{e}");
    }
}
