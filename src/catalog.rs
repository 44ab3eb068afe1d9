//! The dataset catalog: parse, validate, and hold the modality/organ vocabulary.
//!
//! The catalog is a TOML file of `[[dataset]]` entries (the default one, `config/catalog.toml`, is
//! embedded in the binary). It is the only place that knows anything about a dataset. Everything
//! is validated at load time, so the rest of the daemon can trust it: ids are unique lowercase
//! slugs, modality and organ values come from the vocabulary below, every source names a
//! supported type with its required fields, every label table (`[[dataset.labels]]`) names its
//! table, a pattern naming the image with at least one `{column}`, the label column(s) and at
//! most one way of giving splits. An error names the file, the entry and the field. Whether the
//! table has those columns is known only once it is read: [`crate::labels`] reports that.

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
    /// A bzip2-compressed tar archive (`.tar.bz2`, `.tbz2`, `.tbz`).
    #[serde(rename = "tar.bz2", alias = "tbz2")]
    TarBz2,
    /// An xz-compressed tar archive (`.tar.xz`, `.txz`).
    #[serde(rename = "tar.xz", alias = "txz")]
    TarXz,
    /// A Zstandard-compressed tar archive (`.tar.zst`, `.tzst`).
    #[serde(rename = "tar.zst", alias = "tzst")]
    TarZst,
    /// A 7z archive (solid or not).
    #[serde(rename = "7z")]
    SevenZ,
    /// A RAR archive (RAR 4 or RAR 5; solid only in RAR 5).
    Rar,
}

/// Where a source's files are and how to list them. `Http` names its bytes directly; every
/// other kind is resolved at index time through its host's API into a list of files (see
/// `resolve`), each fetched by its own URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Locator {
    /// One upstream object, or the parts of a split archive (their bytes, concatenated in
    /// order, are the archive: `x.zip.001`, `x.zip.002`, ... or Info-ZIP's `x.z01`, ...,
    /// `x.zip`; `x.tar.gz.aa`, `x.tar.gz.ab`, ...).
    Http {
        /// The URL, or the parts in order (before mirror rules).
        urls: Vec<String>,
        /// How the bytes become files.
        format: Format,
    },
    /// A plain HTML directory listing (Apache, nginx autoindex), read recursively.
    Dir {
        /// The directory's URL, ending in `/`.
        url: String,
    },
    /// A Zenodo record (records are immutable; a new version is a new record id).
    Zenodo {
        /// Record id.
        record: u64,
    },
    /// A Kaggle dataset version, fetched as the one zip Kaggle builds for it.
    Kaggle {
        /// `owner/slug`.
        dataset: String,
        /// `datasetVersionNumber`; `None` (`version = "latest"`) takes the version current
        /// when the dataset is first indexed, and keeps it until the catalog entry changes.
        version: Option<u32>,
    },
    /// A Kaggle competition's data, as one zip (its rules must be accepted on the website).
    #[serde(rename = "kaggle-competition")]
    KaggleCompetition {
        /// Competition slug.
        competition: String,
    },
    /// A figshare article version.
    Figshare {
        /// Article id.
        article: u64,
        /// Article version.
        version: u32,
    },
    /// A Mendeley Data dataset version.
    Mendeley {
        /// Dataset id (as in `data.mendeley.com/datasets/<id>/<version>`).
        dataset: String,
        /// Version number.
        version: u32,
    },
    /// The assets of a GitHub release.
    #[serde(rename = "github-release")]
    GithubRelease {
        /// `owner/repo`.
        repo: String,
        /// Release tag.
        tag: String,
    },
    /// Files of a GitHub repository at a pinned commit (under `path`).
    #[serde(rename = "github-tree")]
    GithubTree {
        /// `owner/repo`.
        repo: String,
        /// Full commit SHA.
        commit: String,
        /// Directory inside the repository ("" for all of it).
        path: String,
    },
    /// A PhysioNet project version, listed by its `SHA256SUMS.txt`.
    Physionet {
        /// Project slug.
        project: String,
        /// Version, e.g. `1.0.0`.
        version: String,
    },
    /// Objects of a public S3 bucket under some prefixes (IDC's DICOM series, MSD's tars).
    S3 {
        /// The bucket's HTTPS endpoint, e.g. `https://idc-open-data.s3.amazonaws.com`.
        bucket: String,
        /// Key prefixes, each listed with ListObjectsV2.
        prefixes: Vec<String>,
    },
    /// A collection of Imaging Data Commons, listed from IDC's own index (`idc-index-data`).
    Idc {
        /// IDC collection id, e.g. `lidc_idri`.
        collection: String,
        /// `idc-index-data` version, which pins the IDC data release.
        index: String,
    },
    /// A TCIA DICOM collection through NBIA's API, for collections IDC lacks.
    Tcia {
        /// Collection name as TCIA spells it, e.g. `LIDC-IDRI`.
        collection: String,
    },
    /// A Synapse folder or file entity.
    Synapse {
        /// `syn` id.
        id: String,
    },
    /// A Google Drive folder or file, through the Drive v3 API (needs an API key).
    Gdrive {
        /// Folder or file id.
        id: String,
    },
    /// A Hugging Face dataset repository at a pinned revision.
    Huggingface {
        /// `owner/name`.
        repo: String,
        /// Commit SHA.
        revision: String,
    },
    /// The OSF storage of a project.
    Osf {
        /// Project id (5 characters).
        project: String,
    },
    /// A collection or folder of a Girder server (Kitware's data platform), listed folder by
    /// folder through its REST API; each file is fetched on its own.
    Girder {
        /// The API root, e.g. `https://humanheart-project.creatis.insa-lyon.fr/database/api/v1`.
        api: String,
        /// Collection id (24 hex digits), when the source is a whole collection.
        #[serde(skip_serializing_if = "Option::is_none")]
        collection: Option<String>,
        /// Folder id (24 hex digits), when the source is one folder.
        #[serde(skip_serializing_if = "Option::is_none")]
        folder: Option<String>,
    },
    /// A Dataverse dataset version.
    Dataverse {
        /// The installation, e.g. `dataverse.harvard.edu`.
        server: String,
        /// Persistent id, e.g. `doi:10.7910/DVN/DBW86T`.
        doi: String,
        /// Version, e.g. `1.0` or `:latest-published`.
        version: String,
    },
}

/// One source a dataset is made of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Source {
    /// Where the files are.
    #[serde(flatten)]
    pub locator: Locator,
    /// For listed sources: expand archives among the files (`zip`, `tar`, `tar.gz`) into the
    /// dataset directory, as a user would unpack a download. `false` keeps them as files.
    pub extract: bool,
    /// For listed sources: only files whose path matches one of these patterns (`*` matches
    /// within a path segment, `**` across them); empty means all.
    pub files: Vec<String>,
    /// A directory inside the dataset to put this source's files in ("" for the root).
    pub into: String,
    /// Set when the host is a third party's copy, not the authors' or their institution's:
    /// who made it and under which licence it is offered (shown in `about/<id>.md`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirror: Option<Mirror>,
}

/// A third party's copy of a dataset (a Kaggle upload by someone other than the authors, a
/// re-packaging by another project): `mirror = { by = "...", license = "..." }` on a source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mirror {
    /// Who made the copy and where, e.g. "Kaggle user andrewmvd, not the authors".
    pub by: String,
    /// The licence the copy is offered under, as its page states it.
    pub license: String,
}

impl Source {
    /// The file name a `file` source gets: the URL path's last segment, percent-decoded (a split
    /// file's part suffix removed).
    pub fn file_name(&self) -> Option<String> {
        let Locator::Http { urls, .. } = &self.locator else {
            return None;
        };
        let first = urls.first()?;
        if urls.len() > 1 {
            file_name_of_url(&strip_part_suffix(first))
        } else {
            file_name_of_url(first)
        }
    }

    /// The host that must have a credential for this source to be read at all, if any.
    pub fn required_credential(&self, access: Access) -> Option<&'static str> {
        match &self.locator {
            Locator::Kaggle { .. } | Locator::KaggleCompetition { .. } => Some("www.kaggle.com"),
            Locator::Synapse { .. } => Some("repo-prod.prod.sagebase.org"),
            Locator::Gdrive { .. } => Some("www.googleapis.com"),
            Locator::Physionet { .. } if access != Access::Open => Some("physionet.org"),
            Locator::Huggingface { .. } if access != Access::Open => Some("huggingface.co"),
            _ => None,
        }
    }

    /// The type name as written in the catalog.
    pub fn type_name(&self) -> &'static str {
        match &self.locator {
            Locator::Http { .. } | Locator::Dir { .. } => "http",
            Locator::Zenodo { .. } => "zenodo",
            Locator::Kaggle { .. } => "kaggle",
            Locator::KaggleCompetition { .. } => "kaggle-competition",
            Locator::Figshare { .. } => "figshare",
            Locator::Mendeley { .. } => "mendeley",
            Locator::GithubRelease { .. } => "github-release",
            Locator::GithubTree { .. } => "github-tree",
            Locator::Physionet { .. } => "physionet",
            Locator::S3 { .. } => "s3",
            Locator::Idc { .. } => "idc",
            Locator::Tcia { .. } => "tcia",
            Locator::Synapse { .. } => "synapse",
            Locator::Gdrive { .. } => "gdrive",
            Locator::Huggingface { .. } => "huggingface",
            Locator::Osf { .. } => "osf",
            Locator::Dataverse { .. } => "dataverse",
            Locator::Girder { .. } => "girder",
        }
    }
}

/// The source types the catalog accepts (`type = ...`).
pub fn source_type_names() -> Vec<&'static str> {
    SOURCE_TYPES.iter().map(|t| t.0).collect()
}

/// Source types the catalog accepts, with their required and optional fields (besides the
/// common `files`, `into` and `extract`).
const SOURCE_TYPES: &[(&str, &[&str], &[&str])] = &[
    ("http", &[], &["url", "urls", "format"]),
    ("zenodo", &["record"], &[]),
    ("kaggle", &["dataset", "version"], &[]),
    ("kaggle-competition", &["competition"], &[]),
    ("figshare", &["article", "version"], &[]),
    ("mendeley", &["dataset", "version"], &[]),
    ("github-release", &["repo", "tag"], &[]),
    ("github-tree", &["repo", "commit"], &["path"]),
    ("physionet", &["project", "version"], &[]),
    ("s3", &["bucket", "prefixes"], &[]),
    ("idc", &[], &["series", "bucket", "collection", "index"]),
    ("tcia", &["collection"], &[]),
    ("synapse", &["id"], &[]),
    ("gdrive", &["id"], &[]),
    ("huggingface", &["repo", "revision"], &[]),
    ("osf", &["project"], &[]),
    ("dataverse", &["server", "doi", "version"], &[]),
    ("girder", &["api"], &["collection", "folder"]),
];

/// IDC's main public bucket (`s3://idc-open-data`), where `idc` sources find their series.
pub const IDC_BUCKET: &str = "https://idc-open-data.s3.amazonaws.com";

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
    /// The page where a user accepts the terms or requests access, when the host wants that.
    pub terms: Option<String>,
    /// The upstream objects that make the dataset; empty when unsupported.
    pub sources: Vec<Source>,
    /// Why medimg cannot fetch this dataset yet, if it cannot.
    pub unsupported: Option<String>,
    /// Whether a training script that expects `<split>/<class>/<image>` folders can read it,
    /// and where; `None` when the entry does not say.
    pub folders: Option<Folders>,
    /// The tables its labels are in (`[[dataset.labels]]`), from which medimg makes
    /// `classes/<id>/`; empty for every other dataset.
    pub labels: Vec<LabelTable>,
}

/// Whether a dataset's images sit in folders named by their class, as torchvision's
/// `ImageFolder`, Keras' `image_dataset_from_directory` and fastai's `from_folder` expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Folders {
    /// The upstream layout already is `<class>/<image>` (under some folder of the dataset).
    AsShipped,
    /// Its labels are in a table; medimg shows the folders under `classes/<id>/`.
    Classes,
    /// Not a classification dataset (segmentation, detection, regression, unlabelled).
    #[serde(rename = "none")]
    NotClassification,
    /// A classification dataset whose labels are in no file medimg can read (a table the
    /// sources do not include, an archive medimg cannot expand).
    Unavailable,
}

impl Folders {
    /// The word written in the catalog.
    pub fn as_str(self) -> &'static str {
        match self {
            Folders::AsShipped => "as-shipped",
            Folders::Classes => "classes",
            Folders::NotClassification => "none",
            Folders::Unavailable => "unavailable",
        }
    }

    fn parse(s: &str) -> Option<Folders> {
        Some(match s {
            "as-shipped" => Folders::AsShipped,
            "classes" => Folders::Classes,
            "none" => Folders::NotClassification,
            "unavailable" => Folders::Unavailable,
            _ => return None,
        })
    }
}

/// What `medimg catalog` and `catalog.csv` say of a dataset's folders (see [`Folders`]).
pub fn folders_text(d: &Dataset) -> String {
    match d.folders {
        Some(Folders::AsShipped) => "as shipped".into(),
        Some(Folders::Classes) => format!("classes/{}", d.id),
        Some(Folders::NotClassification) => "not classification".into(),
        Some(Folders::Unavailable) => "labels unreadable".into(),
        None => "unknown".into(),
    }
}

/// The format of a label table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TableFormat {
    /// Comma-separated values, with a header row.
    Csv,
    /// Tab-separated values (`.tsv`, Dataverse's `.tab`), with a header row.
    Tsv,
    /// A spreadsheet (`.xlsx`, `.xlsm`, `.xlsb`, `.xls`, `.ods`) read with calamine: its first
    /// sheet, or the one named, whose first row is the header.
    Sheet,
}

impl TableFormat {
    /// The format a table file of this name has, by its extension.
    pub fn of_name(name: &str) -> Option<TableFormat> {
        let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
        Some(match ext.as_str() {
            "csv" => TableFormat::Csv,
            "tsv" | "tab" => TableFormat::Tsv,
            "xlsx" | "xlsm" | "xlsb" | "xls" | "ods" => TableFormat::Sheet,
            _ => return None,
        })
    }

    fn parse(s: &str) -> Option<TableFormat> {
        Some(match s {
            "csv" => TableFormat::Csv,
            "tsv" => TableFormat::Tsv,
            "xlsx" | "xls" | "ods" | "sheet" => TableFormat::Sheet,
            _ => return None,
        })
    }
}

/// A pattern naming a file from a table row: literal text and `{column}` placeholders, each
/// replaced by the row's value in that column (`{image_id}.jpg`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct Pattern {
    /// As written in the catalog.
    pub text: String,
    /// Its pieces in order.
    pub pieces: Vec<Piece>,
}

impl From<Pattern> for String {
    fn from(p: Pattern) -> String {
        p.text
    }
}

/// A piece of a [`Pattern`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Text as it is.
    Text(String),
    /// The row's value in this column.
    Column(String),
}

impl Pattern {
    /// Parse `{column}` placeholders (`{{` and `}}` are literal braces); at least one.
    pub fn parse(text: &str) -> Result<Pattern, String> {
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    lit.push('}');
                }
                '{' => {
                    let mut col = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some('{') | None => {
                                return Err(format!(
                                    "{text:?} has a `{{` without its `}}` (write `{{{{` for a brace)"
                                ));
                            }
                            Some(c) => col.push(c),
                        }
                    }
                    if col.trim().is_empty() {
                        return Err(format!("{text:?} has an empty `{{}}`; name a column"));
                    }
                    if !lit.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut lit)));
                    }
                    pieces.push(Piece::Column(col));
                }
                '}' => {
                    return Err(format!(
                        "{text:?} has a `}}` without its `{{` (write `}}}}` for a brace)"
                    ));
                }
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            pieces.push(Piece::Text(lit));
        }
        if !pieces.iter().any(|p| matches!(p, Piece::Column(_))) {
            return Err(format!(
                "{text:?} names no column; write the column in braces, e.g. \"{{image_id}}.jpg\""
            ));
        }
        if text.starts_with('/') || text.split('/').any(|s| s == ".." || s == ".") {
            return Err(format!("{text:?} must be a path inside the dataset"));
        }
        Ok(Pattern {
            text: text.to_string(),
            pieces,
        })
    }

    /// The columns it names, in order.
    pub fn columns(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Column(c) => Some(c.as_str()),
            Piece::Text(_) => None,
        })
    }
}

/// Which columns hold a row's labels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LabelColumns {
    /// One column, one label (`label = "dx"`).
    Single(String),
    /// One column, labels joined by a separator (`label = "Finding Labels"`,
    /// `separator = "|"`).
    Joined {
        /// The column.
        column: String,
        /// What joins the labels.
        separator: String,
    },
    /// One column per label, 1 when the row has it and 0 when not (`one_hot = ["MEL", ...]`):
    /// the column names are the labels.
    OneHot(Vec<String>),
}

/// How a table's rows are split (train, test, ...), the first level of `classes/<id>/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Split {
    /// No split level: `classes/<id>/<label>/`.
    None,
    /// Every row of this table is of this split (separate tables per split).
    Named(String),
    /// A column gives each row's split.
    Column(String),
    /// The name of the folder the image file is in upstream (`train_images/x.png`).
    Folder,
}

/// One label table of a dataset (`[[dataset.labels]]`): where it is, which columns name the
/// image and its labels, and how splits are given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LabelTable {
    /// The table file: a path in the dataset, or its last segments (`*` matches within a
    /// segment); it must name exactly one file.
    pub table: String,
    /// Its format; `None`: from the file's extension.
    pub format: Option<TableFormat>,
    /// A spreadsheet's sheet; `None`: the first.
    pub sheet: Option<String>,
    /// Patterns naming a row's image files, each a path in the dataset or its last segments.
    pub image: Vec<Pattern>,
    /// The label columns.
    pub label: LabelColumns,
    /// The split.
    pub split: Split,
}

impl Dataset {
    /// A stable digest of what the dataset's files depend on; a change re-indexes the dataset.
    pub fn fingerprint(&self) -> String {
        let mut s = String::new();
        for src in &self.sources {
            // Version 2: listed sources. An `http` source keeps its old form, so datasets
            // indexed by earlier versions are not fetched again.
            match &src.locator {
                Locator::Http { urls, format } if src.into.is_empty() => {
                    s.push_str(&format!("{format:?} {}\n", urls.join(" ")));
                }
                l => s.push_str(&format!(
                    "v2 {l:?} extract={} files={:?} into={:?}\n",
                    src.extract, src.files, src.into
                )),
            }
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
    terms: Option<String>,
    #[serde(default)]
    source: Vec<RawSource>,
    #[serde(default)]
    unsupported: Option<String>,
    #[serde(default)]
    folders: Option<String>,
    #[serde(default)]
    labels: Vec<RawLabels>,
}

/// `image` as one pattern or a list of them.
#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLabels {
    table: Option<String>,
    format: Option<String>,
    sheet: Option<String>,
    image: Option<OneOrMany>,
    label: Option<String>,
    separator: Option<String>,
    one_hot: Option<Vec<String>>,
    split: Option<String>,
    split_column: Option<String>,
    split_folder: Option<bool>,
}

impl RawLabels {
    /// The validated table, or the field at fault and why.
    fn validate(&self) -> Result<LabelTable, (String, String)> {
        let err = |f: &str, m: String| Err((f.to_string(), m));
        let Some(table) = self
            .table
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        else {
            return err(
                "table",
                "missing; name the table file (a path in the dataset, or its file name)".into(),
            );
        };
        if table.starts_with('/')
            || table
                .split('/')
                .any(|s| s.is_empty() || s == ".." || s == ".")
        {
            return err(
                "table",
                format!("{table:?} must be a path inside the dataset"),
            );
        }
        let format = match &self.format {
            Some(f) => Some(TableFormat::parse(f).ok_or_else(|| {
                (
                    "format".to_string(),
                    format!("unknown table format {f:?}; use csv, tsv or xlsx (any spreadsheet)"),
                )
            })?),
            None => {
                let last = table.rsplit('/').next().unwrap_or(table);
                if TableFormat::of_name(last).is_none() && !last.contains('*') {
                    return err(
                        "format",
                        format!(
                            "{table:?} has no extension medimg knows (.csv, .tsv, .tab, .xlsx, \
                             .xls, .ods); give `format`"
                        ),
                    );
                }
                None
            }
        };
        if self.sheet.is_some() && format.is_some_and(|f| f != TableFormat::Sheet) {
            return err("sheet", "only a spreadsheet has sheets".into());
        }
        let patterns = match &self.image {
            None => {
                return err(
                    "image",
                    "missing; give the image file's name from a row, e.g. \"{image_id}.jpg\""
                        .into(),
                );
            }
            Some(OneOrMany::One(p)) => vec![p.clone()],
            Some(OneOrMany::Many(ps)) if ps.is_empty() => {
                return err("image", "list at least one pattern".into());
            }
            Some(OneOrMany::Many(ps)) => ps.clone(),
        };
        let image = patterns
            .iter()
            .map(|p| Pattern::parse(p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|m| ("image".to_string(), m))?;
        let nonempty = |f: &str, v: &str| -> Result<String, (String, String)> {
            if v.trim().is_empty() {
                Err((f.to_string(), "must not be empty".into()))
            } else {
                Ok(v.to_string())
            }
        };
        let label = match (&self.label, &self.one_hot, &self.separator) {
            (Some(_), Some(_), _) => {
                return err(
                    "one_hot",
                    "give `label` (a column holding the label) or `one_hot` (a column per \
                     label), not both"
                        .into(),
                );
            }
            (None, None, _) => {
                return err(
                    "label",
                    "missing; give `label` (the column holding the label, with `separator` if it \
                     holds several) or `one_hot` (a column per label)"
                        .into(),
                );
            }
            (None, Some(_), Some(_)) => {
                return err("separator", "goes with `label`, not `one_hot`".into());
            }
            (Some(c), None, None) => LabelColumns::Single(nonempty("label", c)?),
            (Some(c), None, Some(sep)) => {
                if sep.is_empty() {
                    return err("separator", "must not be empty".into());
                }
                LabelColumns::Joined {
                    column: nonempty("label", c)?,
                    separator: sep.clone(),
                }
            }
            (None, Some(cols), None) => {
                if cols.is_empty() {
                    return err("one_hot", "list at least one column".into());
                }
                let mut seen = HashSet::new();
                for c in cols {
                    nonempty("one_hot", c)?;
                    if !seen.insert(c) {
                        return err("one_hot", format!("{c:?} is listed twice"));
                    }
                    if let Some(m) = folder_name_problem(c) {
                        return err("one_hot", format!("{c:?} cannot be a folder name: {m}"));
                    }
                }
                LabelColumns::OneHot(cols.clone())
            }
        };
        let split = match (&self.split, &self.split_column, self.split_folder) {
            (None, None, None | Some(false)) => Split::None,
            (Some(s), None, None | Some(false)) => {
                if let Some(m) = folder_name_problem(s) {
                    return err("split", format!("{s:?} cannot be a folder name: {m}"));
                }
                Split::Named(s.clone())
            }
            (None, Some(c), None | Some(false)) => Split::Column(nonempty("split_column", c)?),
            (None, None, Some(true)) => Split::Folder,
            _ => {
                return err(
                    "split",
                    "give one of `split` (this table's split), `split_column` (a column giving \
                     each row's) or `split_folder = true` (the image's folder upstream)"
                        .into(),
                );
            }
        };
        Ok(LabelTable {
            table: table.to_string(),
            format,
            sheet: self.sheet.clone(),
            image,
            label,
            split,
        })
    }
}

/// Why `name` cannot be the name of a folder, if it cannot (empty, `.`, `..`, a NUL byte).
/// A `/` can be: medimg shows it as `∕` (U+2215, see `labels`).
pub fn folder_name_problem(name: &str) -> Option<&'static str> {
    let t = name.trim();
    if t.is_empty() {
        Some("it is empty")
    } else if t == "." || t == ".." {
        Some("`.` and `..` name other folders")
    } else if t.contains('\0') {
        Some("it holds a NUL byte")
    } else {
        None
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    #[serde(rename = "type")]
    kind: String,
    url: Option<String>,
    urls: Option<Vec<String>>,
    format: Option<String>,
    record: Option<u64>,
    dataset: Option<String>,
    version: Option<StrOrNum>,
    competition: Option<String>,
    article: Option<u64>,
    repo: Option<String>,
    tag: Option<String>,
    commit: Option<String>,
    path: Option<String>,
    project: Option<String>,
    bucket: Option<String>,
    prefixes: Option<Vec<String>>,
    series: Option<Vec<String>>,
    collection: Option<String>,
    index: Option<String>,
    id: Option<String>,
    revision: Option<String>,
    server: Option<String>,
    doi: Option<String>,
    api: Option<String>,
    folder: Option<String>,
    #[serde(default)]
    files: Vec<String>,
    into: Option<String>,
    extract: Option<bool>,
    mirror: Option<toml::Value>,
}

/// A version written as a number (`3`) or a string (`"1.0.0"`).
#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum StrOrNum {
    Num(u64),
    Str(String),
}

impl StrOrNum {
    fn text(&self) -> String {
        match self {
            StrOrNum::Num(n) => n.to_string(),
            StrOrNum::Str(s) => s.clone(),
        }
    }
}

impl RawSource {
    /// The fields present, by catalog name (`type` and the common ones excluded).
    fn present(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        let mut f = |name, on: bool| {
            if on {
                v.push(name)
            }
        };
        f("url", self.url.is_some());
        f("urls", self.urls.is_some());
        f("format", self.format.is_some());
        f("record", self.record.is_some());
        f("dataset", self.dataset.is_some());
        f("version", self.version.is_some());
        f("competition", self.competition.is_some());
        f("article", self.article.is_some());
        f("repo", self.repo.is_some());
        f("tag", self.tag.is_some());
        f("commit", self.commit.is_some());
        f("path", self.path.is_some());
        f("project", self.project.is_some());
        f("bucket", self.bucket.is_some());
        f("prefixes", self.prefixes.is_some());
        f("series", self.series.is_some());
        f("collection", self.collection.is_some());
        f("index", self.index.is_some());
        f("id", self.id.is_some());
        f("revision", self.revision.is_some());
        f("server", self.server.is_some());
        f("doi", self.doi.is_some());
        f("api", self.api.is_some());
        f("folder", self.folder.is_some());
        v
    }

    /// The validated source, or the field at fault and why.
    fn validate(&self) -> Result<Source, (String, String)> {
        let err = |f: &str, m: String| Err((f.to_string(), m));
        let Some(&(_, required, optional)) = SOURCE_TYPES.iter().find(|t| t.0 == self.kind) else {
            let known: Vec<_> = SOURCE_TYPES.iter().map(|t| format!("{:?}", t.0)).collect();
            return err(
                "type",
                format!(
                    "unknown source type {:?}; supported: {}",
                    self.kind,
                    known.join(", ")
                ),
            );
        };
        let present = self.present();
        if let Some(f) = present
            .iter()
            .find(|f| !required.contains(f) && !optional.contains(f))
        {
            return err(
                f,
                format!(
                    "not a field of a {:?} source; it takes {}",
                    self.kind,
                    [required, optional].concat().join(", ")
                ),
            );
        }
        if let Some(f) = required.iter().find(|f| !present.contains(f)) {
            return err(
                f,
                format!(
                    "missing; a {:?} source needs {}",
                    self.kind,
                    required.join(", ")
                ),
            );
        }
        let version = || {
            self.version
                .as_ref()
                .map(StrOrNum::text)
                .unwrap_or_default()
        };
        let small = |f: &str| -> Result<u32, (String, String)> {
            version().parse().map_err(|_| {
                (
                    f.to_string(),
                    format!("{:?} is not a version number", version()),
                )
            })
        };
        let https = |f: &str, u: &str| -> Result<(), (String, String)> {
            if u.starts_with("http://") || u.starts_with("https://") {
                Ok(())
            } else {
                Err((f.to_string(), format!("{u:?} is not an http(s) URL")))
            }
        };
        let owner_name = |f: &str, v: &str| -> Result<String, (String, String)> {
            match v.split_once('/') {
                Some((a, b)) if !a.is_empty() && !b.is_empty() && !b.contains('/') => {
                    Ok(v.to_string())
                }
                _ => Err((
                    f.to_string(),
                    format!("{v:?} is not of the form owner/name"),
                )),
            }
        };
        let s = |o: &Option<String>| o.clone().unwrap_or_default();
        let locator = match self.kind.as_str() {
            "http" => {
                let urls = match (&self.url, &self.urls) {
                    (Some(u), None) => vec![u.clone()],
                    (None, Some(us)) if !us.is_empty() => us.clone(),
                    (None, _) => {
                        return err(
                            "url",
                            "missing; an http source needs `url`, or `urls` for the parts of a split archive".into(),
                        );
                    }
                    (Some(_), Some(_)) => {
                        return err("urls", "give `url` or `urls`, not both".into());
                    }
                };
                for u in &urls {
                    https("url", u)?;
                }
                if self.format.as_deref() == Some("dir") {
                    if urls.len() != 1 || !urls[0].ends_with('/') {
                        return err(
                            "url",
                            "a `dir` source is one directory URL ending in `/`".into(),
                        );
                    }
                    Locator::Dir {
                        url: urls[0].clone(),
                    }
                } else {
                    // Info-ZIP's `.z01 ... .zip` ends with the archive's own name; split files
                    // (`.001`, `.aa`) carry it before their suffix. One URL is not split: its
                    // `.gz` is an extension, not a part.
                    let last = match urls.as_slice() {
                        [one] => one.clone(),
                        _ => urls.last().map_or(String::new(), |u| strip_part_suffix(u)),
                    };
                    let format = match self.format.as_deref() {
                        None => default_format(&last),
                        Some(f) => Format::parse(f).ok_or_else(|| {
                            (
                                "format".to_string(),
                                format!("unknown format {f:?}; use zip, 7z, rar, tar, tar.gz, tar.bz2, tar.xz, tar.zst, file or dir"),
                            )
                        })?,
                    };
                    if format == Format::File
                        && file_name_of_url(&strip_part_suffix(&urls[0])).is_none()
                    {
                        return err(
                            "url",
                            format!(
                                "{:?} has no file name in its path for a `file` source",
                                urls[0]
                            ),
                        );
                    }
                    Locator::Http { urls, format }
                }
            }
            "zenodo" => Locator::Zenodo {
                record: self.record.unwrap_or_default(),
            },
            "kaggle" => Locator::Kaggle {
                dataset: owner_name("dataset", &s(&self.dataset))?,
                version: if version() == "latest" {
                    None
                } else {
                    Some(small("version")?)
                },
            },
            "kaggle-competition" => Locator::KaggleCompetition {
                competition: s(&self.competition),
            },
            "figshare" => Locator::Figshare {
                article: self.article.unwrap_or_default(),
                version: small("version")?,
            },
            "mendeley" => Locator::Mendeley {
                dataset: s(&self.dataset),
                version: small("version")?,
            },
            "github-release" => Locator::GithubRelease {
                repo: owner_name("repo", &s(&self.repo))?,
                tag: s(&self.tag),
            },
            "github-tree" => {
                let commit = s(&self.commit);
                if commit.len() != 40 || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return err(
                        "commit",
                        format!(
                            "{commit:?} is not a full 40-digit commit SHA (a branch name would not be pinned)"
                        ),
                    );
                }
                Locator::GithubTree {
                    repo: owner_name("repo", &s(&self.repo))?,
                    commit,
                    path: s(&self.path).trim_matches('/').to_string(),
                }
            }
            "physionet" => Locator::Physionet {
                project: s(&self.project),
                version: version(),
            },
            "s3" => {
                let bucket = s(&self.bucket);
                https("bucket", &bucket)?;
                Locator::S3 {
                    bucket: bucket.trim_end_matches('/').to_string(),
                    prefixes: self.prefixes.clone().unwrap_or_default(),
                }
            }
            "idc" if self.collection.is_some() || self.index.is_some() => {
                if self.series.is_some() || self.bucket.is_some() {
                    return err(
                        "series",
                        "give `collection` + `index`, or `series` (+ `bucket`), not both".into(),
                    );
                }
                let (Some(collection), Some(index)) = (&self.collection, &self.index) else {
                    return err(
                        "index",
                        "`collection` needs `index`, the idc-index-data version that pins the \
                         IDC release"
                            .into(),
                    );
                };
                Locator::Idc {
                    collection: collection.clone(),
                    index: index.clone(),
                }
            }
            "idc" => {
                let bucket = self
                    .bucket
                    .clone()
                    .unwrap_or_else(|| IDC_BUCKET.to_string());
                https("bucket", &bucket)?;
                let series = self.series.clone().unwrap_or_default();
                if series.is_empty() {
                    return err(
                        "series",
                        "list at least one IDC series UUID (crdc_series_uuid)".into(),
                    );
                }
                Locator::S3 {
                    bucket: bucket.trim_end_matches('/').to_string(),
                    prefixes: series.iter().map(|u| format!("{u}/")).collect(),
                }
            }
            "tcia" => Locator::Tcia {
                collection: s(&self.collection),
            },
            "synapse" => {
                let id = s(&self.id);
                if !(id.starts_with("syn")
                    && id.len() > 3
                    && id[3..].bytes().all(|b| b.is_ascii_digit()))
                {
                    return err(
                        "id",
                        format!("{id:?} is not a Synapse id such as \"syn123456\""),
                    );
                }
                Locator::Synapse { id }
            }
            "gdrive" => Locator::Gdrive { id: s(&self.id) },
            "huggingface" => Locator::Huggingface {
                repo: owner_name("repo", &s(&self.repo))?,
                revision: s(&self.revision),
            },
            "osf" => Locator::Osf {
                project: s(&self.project),
            },
            "dataverse" => {
                let server = s(&self.server);
                if server.contains(['/', ':']) {
                    return err(
                        "server",
                        format!("{server:?} is a host name, such as \"dataverse.harvard.edu\""),
                    );
                }
                Locator::Dataverse {
                    server,
                    doi: s(&self.doi),
                    version: version(),
                }
            }
            "girder" => {
                let api = s(&self.api);
                https("api", &api)?;
                let object_id = |f: &str, v: &str| -> Result<String, (String, String)> {
                    if v.len() == 24 && v.bytes().all(|b| b.is_ascii_hexdigit()) {
                        Ok(v.to_ascii_lowercase())
                    } else {
                        Err((
                            f.to_string(),
                            format!("{v:?} is not a Girder id (24 hex digits)"),
                        ))
                    }
                };
                let (collection, folder) = match (&self.collection, &self.folder) {
                    (Some(c), None) => (Some(object_id("collection", c)?), None),
                    (None, Some(f)) => (None, Some(object_id("folder", f)?)),
                    (Some(_), Some(_)) => {
                        return err("folder", "give `collection` or `folder`, not both".into());
                    }
                    (None, None) => {
                        return err(
                            "collection",
                            "missing; a \"girder\" source needs `collection` or `folder`".into(),
                        );
                    }
                };
                Locator::Girder {
                    api: api.trim_end_matches('/').to_string(),
                    collection,
                    folder,
                }
            }
            _ => return err("type", format!("{:?} is not handled", self.kind)),
        };
        for (f, v) in [
            ("dataset", &self.dataset),
            ("competition", &self.competition),
            ("tag", &self.tag),
            ("project", &self.project),
            ("id", &self.id),
            ("revision", &self.revision),
            ("doi", &self.doi),
        ] {
            if v.as_deref().is_some_and(|v| v.trim().is_empty()) {
                return err(f, "must not be empty".into());
            }
        }
        if let Some(p) = self.prefixes.as_ref().or(self.series.as_ref())
            && p.iter().any(|x| x.is_empty() || x.starts_with('/'))
        {
            let f = if self.prefixes.is_some() {
                "prefixes"
            } else {
                "series"
            };
            return err(
                f,
                "entries must be non-empty keys without a leading `/`".into(),
            );
        }
        let into = s(&self.into).trim_matches('/').to_string();
        if into.split('/').any(|seg| seg == ".." || seg == ".") {
            return err(
                "into",
                format!("{into:?} must be a path inside the dataset"),
            );
        }
        let listed = !matches!(locator, Locator::Http { .. });
        if !listed && (!self.files.is_empty() || self.extract.is_some()) {
            let f = if self.files.is_empty() {
                "extract"
            } else {
                "files"
            };
            return err(f, "only listed sources (not a plain http URL) take it; an http source's `format` says what it is".into());
        }
        let mirror = match &self.mirror {
            None => None,
            Some(v) => Some(parse_mirror(v)?),
        };
        Ok(Source {
            locator,
            extract: self.extract.unwrap_or(true),
            files: self.files.clone(),
            into,
            mirror,
        })
    }
}

/// `mirror = { by = "...", license = "..." }`, or the field at fault and why.
fn parse_mirror(v: &toml::Value) -> Result<Mirror, (String, String)> {
    let shape = || {
        (
            "mirror".to_string(),
            "must be a table `{ by = \"who made the copy, where\", license = \"the copy's \
             licence\" }`"
                .to_string(),
        )
    };
    let t = v.as_table().ok_or_else(shape)?;
    if let Some(k) = t.keys().find(|k| *k != "by" && *k != "license") {
        return Err((
            format!("mirror.{k}"),
            "not a field of `mirror`; it takes by, license".into(),
        ));
    }
    let field = |k: &str| -> Result<String, (String, String)> {
        match t.get(k) {
            Some(toml::Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_string()),
            Some(toml::Value::String(_)) => {
                Err((format!("mirror.{k}"), "must not be empty".into()))
            }
            Some(_) => Err((format!("mirror.{k}"), "must be a string".into())),
            None => Err((
                format!("mirror.{k}"),
                "missing; a mirror says who made the copy (`by`) and its licence (`license`)"
                    .into(),
            )),
        }
    };
    Ok(Mirror {
        by: field("by")?,
        license: field("license")?,
    })
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
                let source = s
                    .validate()
                    .map_err(|(f, m)| fail(&format!("source[{}].{f}", j + 1), m))?;
                sources.push(source);
            }
            if let Some(t) = &d.terms
                && !(t.starts_with("https://") || t.starts_with("http://"))
            {
                return Err(fail("terms", format!("{t:?} is not the URL of a page")));
            }
            if d.unsupported.is_some() && !sources.is_empty() {
                return Err(fail(
                    "unsupported",
                    "a dataset with sources cannot also be marked unsupported".into(),
                ));
            }
            let mut labels = Vec::new();
            for (j, l) in d.labels.iter().enumerate() {
                let table = l
                    .validate()
                    .map_err(|(f, m)| fail(&format!("labels[{}].{f}", j + 1), m))?;
                labels.push(table);
            }
            let folders = match &d.folders {
                None if !labels.is_empty() => Some(Folders::Classes),
                None => None,
                Some(f) => Some(Folders::parse(f).ok_or_else(|| {
                    fail(
                        "folders",
                        format!(
                            "unknown value {f:?}; use as-shipped, classes (with \
                             [[dataset.labels]]), none (not classification) or unavailable"
                        ),
                    )
                })?),
            };
            if labels.is_empty() && folders == Some(Folders::Classes) {
                return Err(fail(
                    "folders",
                    "\"classes\" needs the tables its labels are in: add [[dataset.labels]]".into(),
                ));
            }
            if !labels.is_empty() && folders != Some(Folders::Classes) {
                return Err(fail(
                    "folders",
                    "a dataset with [[dataset.labels]] is shown under classes/; leave `folders` \
                     out or write \"classes\""
                        .into(),
                ));
            }
            if !labels.is_empty() && sources.is_empty() {
                return Err(fail(
                    "labels",
                    "a dataset without sources has no files to label".into(),
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
                terms: d.terms,
                sources,
                unsupported: d.unsupported,
                folders,
                labels,
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
    } else if path.ends_with(".7z") {
        Format::SevenZ
    } else if path.ends_with(".rar") {
        Format::Rar
    } else if path.ends_with(".tar") {
        Format::Tar
    } else if path.ends_with(".tar.gz") || path.ends_with(".tgz") {
        Format::TarGz
    } else if [".tar.bz2", ".tbz2", ".tbz"]
        .iter()
        .any(|e| path.ends_with(e))
    {
        Format::TarBz2
    } else if path.ends_with(".tar.xz") || path.ends_with(".txz") {
        Format::TarXz
    } else if path.ends_with(".tar.zst") || path.ends_with(".tzst") {
        Format::TarZst
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

/// `s` with its `%XX` escapes decoded (invalid UTF-8 replaced).
pub fn percent_decode(s: &str) -> String {
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

impl Format {
    /// The format named `s` in a catalog (`tgz` is `tar.gz`).
    pub fn parse(s: &str) -> Option<Format> {
        Some(match s {
            "zip" => Format::Zip,
            "file" => Format::File,
            "tar" => Format::Tar,
            "tar.gz" | "tgz" => Format::TarGz,
            "tar.bz2" | "tbz2" => Format::TarBz2,
            "tar.xz" | "txz" => Format::TarXz,
            "tar.zst" | "tzst" => Format::TarZst,
            "7z" => Format::SevenZ,
            "rar" => Format::Rar,
            _ => return None,
        })
    }

    /// The format a file of this name has when nothing says otherwise.
    pub fn of_name(name: &str) -> Format {
        default_format(&format!("file:///{name}"))
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Zip => "zip",
            Format::File => "file",
            Format::Tar => "tar",
            Format::TarGz => "tar.gz",
            Format::TarBz2 => "tar.bz2",
            Format::TarXz => "tar.xz",
            Format::TarZst => "tar.zst",
            Format::SevenZ => "7z",
            Format::Rar => "rar",
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

    fn format_of(c: &Catalog) -> Format {
        match &c.datasets[0].sources[0].locator {
            Locator::Http { format, .. } => *format,
            other => panic!("not http: {other:?}"),
        }
    }

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

    /// The shipped catalog's own rules, beyond what parsing checks (unique ids, vocabulary,
    /// every source of a known type with its required fields): every source says where its
    /// locator was found, every unsupported entry says why in its own words, and every
    /// dataset a host gates behind terms names the page where they are accepted.
    #[test]
    fn shipped_catalog_is_pinned_and_sourced() {
        let c = Catalog::builtin().unwrap();
        let mut blocks = DEFAULT_CATALOG.split("[[dataset]]\n").skip(1);
        for d in &c.datasets {
            let block = blocks.next().unwrap();
            assert!(block.contains(&format!("id = \"{}\"", d.id)), "{}", d.id);
            let lines: Vec<&str> = block.lines().collect();
            for (i, l) in lines.iter().enumerate() {
                if *l == "[[dataset.source]]" {
                    let above = lines[..i].iter().rev().find(|l| l.starts_with('#'));
                    assert!(
                        above.is_some_and(|a| a.starts_with("# found: ")),
                        "{}: a source without a `# found:` comment",
                        d.id
                    );
                }
            }
            if let Some(r) = &d.unsupported {
                assert!(
                    !r.contains("no pinned download source yet") && r.len() > 40,
                    "{}: say why it cannot be fetched: {r}",
                    d.id
                );
            }
            for s in &d.sources {
                let gated = matches!(
                    s.locator,
                    Locator::KaggleCompetition { .. } | Locator::Synapse { .. }
                ) || matches!(s.locator, Locator::Physionet { .. } if d.access == Access::Credentialed);
                assert!(
                    !gated || d.terms.is_some(),
                    "{}: a gated source needs `terms`",
                    d.id
                );
            }
        }
        let supported = c.datasets.iter().filter(|d| !d.sources.is_empty()).count();
        assert!(supported >= 80, "{supported} datasets have sources");
    }

    /// Every entry says whether a training script that expects class folders can read it;
    /// every label table, and every dataset with sources whose labels are unreadable, says
    /// why in a `# labels:` comment (the dataset's own documentation as evidence).
    #[test]
    fn shipped_catalog_says_how_each_dataset_reads_as_class_folders() {
        let c = Catalog::builtin().unwrap();
        let mut blocks = DEFAULT_CATALOG.split("[[dataset]]\n").skip(1);
        for d in &c.datasets {
            let block = blocks.next().unwrap();
            assert!(d.folders.is_some(), "{}: no `folders`", d.id);
            let lines: Vec<&str> = block.lines().collect();
            for (i, l) in lines.iter().enumerate() {
                // An unsupported dataset's labels are unreadable for want of any source.
                let unreadable = *l == "folders = \"unavailable\"" && !d.sources.is_empty();
                if *l == "[[dataset.labels]]" || unreadable {
                    let above = lines[..i].iter().rev().find(|l| l.starts_with('#'));
                    assert!(
                        above.is_some_and(|a| a.starts_with("# labels: ")),
                        "{}: `{l}` without a `# labels:` comment",
                        d.id
                    );
                }
            }
        }
        let classes = c.datasets.iter().filter(|d| !d.labels.is_empty()).count();
        assert!(classes >= 12, "{classes} datasets have label tables");
    }

    #[test]
    fn every_source_type_parses_and_names_its_missing_field() {
        let with = |src: &str| {
            ONE.replace(
                "type = \"http\"\nurl = \"https://example.org/a/chest_xray.zip\"",
                src,
            )
        };
        for src in [
            "type = \"zenodo\"\nrecord = 1",
            "type = \"kaggle\"\ndataset = \"a/b\"\nversion = 2",
            "type = \"kaggle\"\ndataset = \"a/b\"\nversion = \"latest\"",
            "type = \"kaggle-competition\"\ncompetition = \"c\"",
            "type = \"figshare\"\narticle = 1\nversion = 1",
            "type = \"mendeley\"\ndataset = \"abc\"\nversion = 1",
            "type = \"github-release\"\nrepo = \"a/b\"\ntag = \"v1\"",
            "type = \"github-tree\"\nrepo = \"a/b\"\ncommit = \"0123456789abcdef0123456789abcdef01234567\"",
            "type = \"physionet\"\nproject = \"p\"\nversion = \"1.0.0\"",
            "type = \"s3\"\nbucket = \"https://b.s3.amazonaws.com\"\nprefixes = [\"x/\"]",
            "type = \"idc\"\ncollection = \"lidc_idri\"\nindex = \"25.0.5\"",
            "type = \"idc\"\nseries = [\"u\"]",
            "type = \"synapse\"\nid = \"syn1\"",
            "type = \"tcia\"\ncollection = \"LIDC-IDRI\"",
            "type = \"gdrive\"\nid = \"x\"",
            "type = \"huggingface\"\nrepo = \"a/b\"\nrevision = \"abc\"",
            "type = \"osf\"\nproject = \"x7k2q\"",
            "type = \"dataverse\"\nserver = \"dataverse.harvard.edu\"\ndoi = \"doi:1/2\"\nversion = \"1.0\"",
            "type = \"http\"\nformat = \"dir\"\nurl = \"https://h/d/\"",
            "type = \"girder\"\napi = \"https://h/api/v1\"\ncollection = \"637218c173e9f0047faa00fb\"",
            "type = \"girder\"\napi = \"https://h/api/v1/\"\nfolder = \"637218E573E9F0047FAA00FC\"",
        ] {
            Catalog::parse(&with(src), "t").unwrap_or_else(|e| panic!("{src}: {e}"));
        }
        let e = err(&with("type = \"zenodo\""));
        assert!(
            e.contains("source[1].record") && e.contains("missing"),
            "{e}"
        );
        let e = err(&with(
            "type = \"kaggle\"\ndataset = \"a/b\"\nversion = \"two\"",
        ));
        assert!(e.contains("source[1].version"), "{e}");
        let e = err(&with(
            "type = \"github-tree\"\nrepo = \"a/b\"\ncommit = \"main\"",
        ));
        assert!(e.contains("40-digit"), "{e}");
        let e = err(&with("type = \"zenodo\"\nrecord = 1\ntag = \"x\""));
        assert!(
            e.contains("source[1].tag") && e.contains("not a field"),
            "{e}"
        );
        let e = err(&with("type = \"zenodo\"\nrecord = 1\ninto = \"../x\""));
        assert!(e.contains("source[1].into"), "{e}");
        let e = err(&with("type = \"idc\"\ncollection = \"c\""));
        assert!(e.contains("source[1].index"), "{e}");
    }

    #[test]
    fn girder_sources_name_one_collection_or_folder_by_its_id() {
        let with = |src: &str| {
            ONE.replace(
                "type = \"http\"\nurl = \"https://example.org/a/chest_xray.zip\"",
                src,
            )
        };
        let c = Catalog::parse(
            &with("type = \"girder\"\napi = \"https://h/api/v1/\"\nfolder = \"637218E573E9F0047FAA00FC\""),
            "t",
        )
        .unwrap();
        assert_eq!(
            c.datasets[0].sources[0].locator,
            Locator::Girder {
                api: "https://h/api/v1".into(),
                collection: None,
                folder: Some("637218e573e9f0047faa00fc".into()),
            }
        );
        let e = err(&with("type = \"girder\"\napi = \"https://h/api/v1\""));
        assert!(
            e.contains("source[1].collection") && e.contains("`folder`"),
            "{e}"
        );
        let e = err(&with(
            "type = \"girder\"\napi = \"https://h/api/v1\"\ncollection = \"637218c173e9f0047faa00fb\"\nfolder = \"637218e573e9f0047faa00fc\"",
        ));
        assert!(
            e.contains("source[1].folder") && e.contains("not both"),
            "{e}"
        );
        let e = err(&with(
            "type = \"girder\"\napi = \"https://h/api/v1\"\nfolder = \"acdc\"",
        ));
        assert!(
            e.contains("source[1].folder") && e.contains("24 hex"),
            "{e}"
        );
        let e = err(&with(
            "type = \"girder\"\napi = \"h/api\"\nfolder = \"637218e573e9f0047faa00fc\"",
        ));
        assert!(e.contains("source[1].api"), "{e}");
    }

    #[test]
    fn a_mirror_says_who_made_the_copy_and_its_licence() {
        let with = |m: &str| ONE.replace(".zip\"\n", &format!(".zip\"\n{m}\n"));
        let c = Catalog::parse(
            &with("mirror = { by = \"Kaggle user x, not the authors\", license = \"CC BY 4.0\" }"),
            "t",
        )
        .unwrap();
        assert_eq!(
            c.datasets[0].sources[0].mirror,
            Some(Mirror {
                by: "Kaggle user x, not the authors".into(),
                license: "CC BY 4.0".into()
            })
        );
        assert_eq!(
            Catalog::parse(ONE, "t").unwrap().datasets[0].sources[0].mirror,
            None
        );
        let e = err(&with("mirror = \"Kaggle\""));
        assert!(e.contains("source[1].mirror") && e.contains("table"), "{e}");
        let e = err(&with("mirror = { by = \"Kaggle user x\" }"));
        assert!(
            e.contains("source[1].mirror.license") && e.contains("missing"),
            "{e}"
        );
        let e = err(&with("mirror = { by = \" \", license = \"CC0\" }"));
        assert!(
            e.contains("source[1].mirror.by") && e.contains("empty"),
            "{e}"
        );
        let e = err(&with(
            "mirror = { by = \"x\", license = \"CC0\", url = \"u\" }",
        ));
        assert!(
            e.contains("source[1].mirror.url") && e.contains("not a field"),
            "{e}"
        );
    }

    #[test]
    fn format_defaults_from_the_url() {
        let c = Catalog::parse(ONE, "t").unwrap();
        assert_eq!(format_of(&c), Format::Zip);
        let t = ONE.replace("chest_xray.zip", "scan%201.nii.gz?download=1");
        let c = Catalog::parse(&t, "t").unwrap();
        assert_eq!(format_of(&c), Format::File);
        assert_eq!(
            c.datasets[0].sources[0].file_name().as_deref(),
            Some("scan 1.nii.gz")
        );
        for (url, f) in [
            ("https://h/ChestX-ray14/images_01.tar.gz", Format::TarGz),
            ("https://h/IXI-T1.tar", Format::Tar),
            ("https://h/a.TGZ", Format::TarGz),
            ("https://h/scans.tar.bz2", Format::TarBz2),
            ("https://h/scans.tbz2", Format::TarBz2),
            ("https://h/scans.tar.xz", Format::TarXz),
            ("https://h/scans.TXZ", Format::TarXz),
            ("https://h/scans.tar.zst", Format::TarZst),
            ("https://h/scans.tzst", Format::TarZst),
            ("https://h/Brain_MRI.7z", Format::SevenZ),
            ("https://h/Kvasir.RAR", Format::Rar),
            ("https://h/x.nii.xz", Format::File),
            ("https://h/slide.svs", Format::File),
            ("https://h/x.npz", Format::File),
        ] {
            assert_eq!(default_format(url), f, "{url}");
        }
        // Every format's name parses back to it, and the short names are aliases.
        for f in [
            Format::Zip,
            Format::File,
            Format::Tar,
            Format::TarGz,
            Format::TarBz2,
            Format::TarXz,
            Format::TarZst,
            Format::SevenZ,
            Format::Rar,
        ] {
            assert_eq!(Format::parse(&f.to_string()), Some(f));
        }
        for (short, f) in [
            ("tbz2", Format::TarBz2),
            ("txz", Format::TarXz),
            ("tzst", Format::TarZst),
        ] {
            assert_eq!(Format::parse(short), Some(f));
        }
        let t = ONE.replace(
            "url = \"https://example.org/a/chest_xray.zip\"",
            "urls = [\"https://h/x.zip.001\", \"https://h/x.zip.002\"]",
        );
        let c = Catalog::parse(&t, "t").unwrap();
        assert_eq!(format_of(&c), Format::Zip);
        // One URL ending in .tar.gz is a tar.gz, not the part `.gz` of a split tar (found by
        // tests/model.rs: it was listed as a plain tar and failed).
        let t = ONE.replace(
            "url = \"https://example.org/a/chest_xray.zip\"",
            "url = \"https://h/set.tar.gz\"",
        );
        assert_eq!(format_of(&Catalog::parse(&t, "t").unwrap()), Format::TarGz);
        let t = ONE.replace(
            "url = \"https://example.org/a/chest_xray.zip\"",
            "urls = [\"https://h/x.z01\", \"https://h/x.zip\"]",
        );
        assert_eq!(format_of(&Catalog::parse(&t, "t").unwrap()), Format::Zip);
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
        assert_eq!(format_of(&c), Format::TarGz);
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
    fn label_tables_parse_and_name_the_entry_and_field_at_fault() {
        let with = |labels: &str| format!("{ONE}{labels}");
        let c = Catalog::parse(
            &with(
                "[[dataset.labels]]\ntable = \"Data_Entry_2017.csv\"\nimage = \"{Image Index}\"\n\
                 label = \"Finding Labels\"\nseparator = \"|\"\n\
                 [[dataset.labels]]\ntable = \"odir/data.xlsx\"\nsheet = \"Sheet1\"\n\
                 image = [\"Training Images/{Left-Fundus}\", \"Training Images/{Right-Fundus}\"]\n\
                 one_hot = [\"N\", \"D\"]\nsplit = \"train\"\n",
            ),
            "t",
        )
        .unwrap();
        let d = &c.datasets[0];
        assert_eq!(d.folders, Some(Folders::Classes));
        assert_eq!(d.labels.len(), 2);
        assert_eq!(
            d.labels[0].label,
            LabelColumns::Joined {
                column: "Finding Labels".into(),
                separator: "|".into()
            }
        );
        assert_eq!(d.labels[0].format, None, "from the extension when read");
        assert_eq!(d.labels[1].image.len(), 2);
        assert_eq!(
            d.labels[1].image[0].columns().collect::<Vec<_>>(),
            ["Left-Fundus"]
        );
        assert_eq!(d.labels[1].split, Split::Named("train".into()));
        assert_eq!(
            TableFormat::of_name("HAM10000_metadata.tab"),
            Some(TableFormat::Tsv)
        );
        for (labels, field, says) in [
            (
                "image = \"{a}.jpg\"\nlabel = \"b\"",
                "labels[1].table",
                "missing",
            ),
            (
                "table = \"t.csv\"\nlabel = \"b\"",
                "labels[1].image",
                "missing",
            ),
            (
                "table = \"t.csv\"\nimage = \"a.jpg\"\nlabel = \"b\"",
                "labels[1].image",
                "names no column",
            ),
            (
                "table = \"t.csv\"\nimage = \"{a.jpg\"\nlabel = \"b\"",
                "labels[1].image",
                "without its",
            ),
            (
                "table = \"t.csv\"\nimage = \"../{a}\"\nlabel = \"b\"",
                "labels[1].image",
                "inside the dataset",
            ),
            (
                "table = \"t.csv\"\nimage = \"{a}\"",
                "labels[1].label",
                "missing",
            ),
            (
                "table = \"t.csv\"\nimage = \"{a}\"\nlabel = \"b\"\none_hot = [\"c\"]",
                "labels[1].one_hot",
                "not both",
            ),
            (
                "table = \"t.csv\"\nimage = \"{a}\"\none_hot = [\"c\", \"c\"]",
                "labels[1].one_hot",
                "twice",
            ),
            (
                "table = \"t.csv\"\nimage = \"{a}\"\nlabel = \"b\"\nsplit = \"x\"\nsplit_column = \"s\"",
                "labels[1].split",
                "one of",
            ),
            (
                "table = \"t.bin\"\nimage = \"{a}\"\nlabel = \"b\"",
                "labels[1].format",
                "give `format`",
            ),
            (
                "table = \"t.csv\"\nformat = \"parquet\"\nimage = \"{a}\"\nlabel = \"b\"",
                "labels[1].format",
                "unknown",
            ),
            (
                "table = \"../t.csv\"\nimage = \"{a}\"\nlabel = \"b\"",
                "labels[1].table",
                "inside",
            ),
        ] {
            let e = err(&with(&format!("[[dataset.labels]]\n{labels}\n")));
            assert!(
                e.contains("dataset #1") && e.contains("chest-xray-pneumonia"),
                "{e}"
            );
            assert!(e.contains(field) && e.contains(says), "{labels}: {e}");
        }
        let e = err(&with(
            "[[dataset.labels]]\ntable = \"t.csv\"\nimage = \"{a}\"\nlabel = \"b\"\ncolour = 1\n",
        ));
        assert!(e.contains("colour") && e.contains("line"), "{e}");
        let e = err(&ONE.replace(
            "access = \"open\"",
            "access = \"open\"\nfolders = \"classes\"",
        ));
        assert!(
            e.contains("`folders`") && e.contains("[[dataset.labels]]"),
            "{e}"
        );
        let e = err(&ONE.replace("access = \"open\"", "access = \"open\"\nfolders = \"yes\""));
        assert!(e.contains("`folders`") && e.contains("as-shipped"), "{e}");
        let e = err(&with(
            "folders = \"as-shipped\"\n[[dataset.labels]]\ntable = \"t.csv\"\nimage = \"{a}\"\nlabel = \"b\"\n",
        ));
        assert!(e.contains("`folders`"), "{e}");
    }

    #[test]
    fn malformed_toml_names_the_file_and_line() {
        let e = err("[[dataset]]\nid = \n");
        assert!(e.contains("test.toml") && e.contains("line 2"), "{e}");
    }
}
