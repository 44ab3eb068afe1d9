//! The filesystem core: the tree, listings, gating and indexing, on medimg's own types. No
//! fuser.
//!
//! # The tree
//! ```text
//! README.md, catalog.csv                 generated from the catalog
//! datasets/<id>/...                      the dataset's own files, upstream layout
//! classes/<id>/[<split>/]<label>/<file>  its files by label, from its label tables
//! modality/<Modality>/<organ>/<id>/...   the same datasets by modality, then organ
//! organ/<organ>/<Modality>/<id>/...      and by organ, then modality
//! ```
//! Every place a dataset appears is an *instance* of it; `classes/<id>/` is an instance whose
//! folders are the index's classes tree ([`crate::labels`]) rather than the dataset's own.
//! Inode numbers:
//! - `1..2^40`: the generated part (root, README.md, catalog.csv, the view directories);
//! - `(instance << 40) | row`: a directory inside a dataset instance (`row` 0 is its root;
//!   in a classes instance `row` is a classes node), so a directory reached by two paths has
//!   two inodes, as the kernel requires;
//! - `FILE_BIT | row`: a file, the same inode from every path, `classes/` included
//!   (`st_nlink` counts the paths), so the page cache, `du`, `cp -a` and `find -links` see it
//!   once.
//!
//! # Indexing
//! A dataset is indexed the first time a lookup or listing enters its directory: each source
//! becomes blobs (a plain URL is probed; a host's locator is listed through its API by
//! [`crate::resolve`], and files the listing gives sizes for need no request), and archives
//! among them are expanded in place. An archive inside an archive becomes a folder of its
//! name: read in place when its bytes lie in the outer one as they are (a stored ZIP member,
//! a plain tar's member), else decoded once into the cache as a blob of its own whose part
//! names the member it comes from ([`crate::index::Derivation`]), so the fetcher can have it
//! decoded again when the cache drops it. A plain file whose listing gives no size is indexed
//! without one and sized when a user first needs it ([`crate::sizes`]). A dataset whose host
//! wants a credential medimg does not have, or that the host refuses (401/403), is `EACCES`
//! with a message saying what is missing; the refusal is recorded in the index for
//! `medimg catalog` and `about/<id>.md`.
//!
//! # Access
//! Every node gets its owner, group and modes from the [`crate::access::Policy`]: the
//! generated part is world-readable, a dataset restricted to a Unix group is readable by that
//! group only, under every view; the kernel checks (`default_permissions`).
//!
//! # Reading
//! File contents are the read path's ([`crate::read`]): this module finds the file an inode
//! names and turns a host's refusal into the dataset's denial.
//!
//! # Invariants
//! - Metadata never touches the network once a dataset is indexed: lookup, getattr and readdir
//!   are answered from the in-memory tree and the SQLite index. The one exception is the
//!   first lookup of a file whose listing gave no size: one zero-length probe, whose answer
//!   the index keeps ([`crate::sizes`]); listing names never asks it.
//! - A dataset with label tables gets its classes tree when it is indexed: its tables are
//!   read through the read path (the same cache), and the tree is kept in the index, so
//!   `classes/<id>/` costs no request after that, across restarts. A tree that could not be
//!   made then (the network failed) is made when `classes/<id>/` is first entered; a table
//!   that cannot be used is reported in the log and `about/<id>.md`, never guessed around.
//! - One indexing per dataset at a time; whoever else enters the dataset meanwhile waits for
//!   it up to the fetcher's deadline, then gets EIO saying it is still being indexed.

use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use bytes::Bytes;
use lru::LruCache;

use crate::archive::compressed::{Codec, Unpack};
use crate::archive::gzip::{Checkpoint, GzStream};
use crate::archive::{ArchiveError, ReadAt, rar, sevenz, tar, zip};
use crate::catalog::{Catalog, Dataset, Format, Locator, MODALITIES, ORGANS, Source};
use crate::credentials::Credentials;
use crate::fetch::{BlobBytes, BlobReader, FetchError, Fetcher};
use crate::flight::{Flights, TimedOut};
use crate::index::{
    Blob, DatasetRows, Entry, Index, IndexError, Location, NewEntry, Part, Storage,
};
use crate::read::{PageSink, ReadError, Reader};
use crate::resolve::{self, RemoteFile, ResolveError};
use crate::sizes::{SizeError, Sizer};
use crate::source::SourceError;
use crate::tier::{Got, Patience, Publish, Tier};

pub use crate::read::INLINE_MAX;
/// Directories whose listing in progress keeps its unsent rest (one per concurrent `ls`).
const LISTINGS_KEPT: std::num::NonZeroUsize = match std::num::NonZeroUsize::new(64) {
    Some(n) => n,
    None => std::num::NonZeroUsize::MIN,
};
/// Files probed at once when a listing gives no sizes (a directory index, SHA256SUMS.txt):
/// enough to hide a round trip each, few enough for a host's per-client limits.
const PROBE_THREADS: usize = 8;
/// Bit marking a file inode.
const FILE_BIT: u64 = 1 << 63;
/// Shift of the instance number in a directory inode.
const INSTANCE_SHIFT: u32 = 40;
const ROW_MASK: u64 = (1 << INSTANCE_SHIFT) - 1;

/// Kind of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file.
    File,
}

/// Attributes of a node, in medimg's terms (the adapter converts them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    /// Inode number.
    pub ino: u64,
    /// Directory or file.
    pub kind: Kind,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits.
    pub perm: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Number of paths to a file (1 for directories: "unknown", which `find` understands).
    pub nlink: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
}

/// Failures kept for `medimg status`.
const FAILURES_KEPT: usize = 20;

/// A failure a user met: when, and what the log said.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Failure {
    /// Seconds since the epoch.
    pub at: i64,
    /// The log line's text.
    pub message: String,
}

/// One dataset as `medimg status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DatasetStatus {
    /// Dataset id.
    pub id: String,
    /// Whether its file list is in the index.
    pub indexed: bool,
    /// Bytes of its blocks in the cache.
    pub cached_bytes: u64,
    /// The upstream change recorded for it, if any.
    pub changed: Option<crate::index::Change>,
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirItem {
    /// Name.
    pub name: String,
    /// Attributes (for readdirplus).
    pub attr: Attr,
    /// The size in `attr` is not known yet (it says 0): give the entry and its attributes no
    /// time to live, so the kernel looks it up (and medimg sizes it) before anything uses it.
    pub provisional: bool,
    /// Cookie to continue the listing after this entry.
    pub next: u64,
}

/// Why an operation failed. [`VfsError::errno`] is the one mapping to errno values.
#[derive(Debug, thiserror::Error)]
pub enum VfsError {
    /// No such entry.
    #[error("no such file or directory")]
    NotFound,
    /// A directory operation on a file.
    #[error("not a directory")]
    NotDir,
    /// A file operation on a directory.
    #[error("is a directory")]
    IsDir,
    /// The file handle is unknown.
    #[error("bad file handle")]
    BadHandle,
    /// The dataset has no source medimg can read.
    #[error(
        "dataset {dataset}: cannot be read by medimg yet: {reason}; see its homepage {homepage}"
    )]
    Unsupported {
        /// Dataset id.
        dataset: String,
        /// Why.
        reason: String,
        /// Where a user can get it by hand.
        homepage: String,
    },
    /// The host refused: credentials missing or wrong, terms not accepted.
    #[error("dataset {dataset}: {message}")]
    Denied {
        /// Dataset id.
        dataset: String,
        /// What is missing and where to get it.
        message: String,
    },
    /// A source could not be listed through its host's API.
    #[error("dataset {dataset}: cannot list its {kind} source: {source}")]
    Resolve {
        /// Dataset id.
        dataset: String,
        /// The source type.
        kind: &'static str,
        /// Why.
        source: ResolveError,
    },
    /// Indexing a dataset failed.
    #[error("dataset {dataset}: cannot list {url}: {source}")]
    Listing {
        /// Dataset id.
        dataset: String,
        /// The source.
        url: String,
        /// Why.
        source: ArchiveError,
    },
    /// Fetching failed.
    #[error("dataset {dataset}: {what}: {source}")]
    Fetch {
        /// Dataset id.
        dataset: String,
        /// What was being read.
        what: String,
        /// Why.
        source: Box<FetchError>,
    },
    /// The member uses something medimg cannot decode.
    #[error("dataset {dataset}: {member}: {message}")]
    Unreadable {
        /// Dataset id.
        dataset: String,
        /// Member path.
        member: String,
        /// Why.
        message: String,
    },
    /// The index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// Reading a file failed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// Another reader's indexing of the dataset is still going after the deadline.
    #[error(
        "dataset {dataset}: still being indexed after {}s (a large archive is read once, whole); \
         try again in a moment",
        waited.as_secs()
    )]
    StillIndexing {
        /// Dataset id.
        dataset: String,
        /// How long this caller waited.
        waited: std::time::Duration,
    },
    /// The error of an indexing another caller led, shared by everyone who waited for it.
    #[error(transparent)]
    Shared(Arc<VfsError>),
}

impl VfsError {
    /// The errno a system call gets for this error.
    pub fn errno(&self) -> i32 {
        match self {
            VfsError::NotFound => libc::ENOENT,
            VfsError::NotDir => libc::ENOTDIR,
            VfsError::IsDir => libc::EISDIR,
            VfsError::BadHandle => libc::EBADF,
            VfsError::Denied { .. } => libc::EACCES,
            VfsError::Fetch { source, .. } if source.is_changed() => libc::ESTALE,
            VfsError::Read(e) => e.errno(),
            VfsError::Shared(e) => e.errno(),
            _ => libc::EIO,
        }
    }

    /// The dataset it concerns, when it names one.
    pub fn dataset(&self) -> Option<&str> {
        match self {
            VfsError::Unsupported { dataset, .. }
            | VfsError::Denied { dataset, .. }
            | VfsError::Resolve { dataset, .. }
            | VfsError::Listing { dataset, .. }
            | VfsError::Fetch { dataset, .. }
            | VfsError::Unreadable { dataset, .. }
            | VfsError::StillIndexing { dataset, .. } => Some(dataset),
            VfsError::Read(e) => e.dataset(),
            VfsError::Shared(e) => e.dataset(),
            _ => None,
        }
    }

    /// Whether the failure is worth a log line (the user's tools only see an errno).
    pub fn is_loggable(&self) -> bool {
        matches!(self.errno(), libc::EIO | libc::EACCES | libc::ESTALE)
    }
}

type Result<T> = std::result::Result<T, VfsError>;

#[derive(Debug)]
enum SynContent {
    Dir(Vec<(String, u64)>),
    File(Arc<Vec<u8>>),
    /// `about/<id>.md` of the dataset with this catalog index: rewritten when what it says
    /// changes (`Vfs::abouts`).
    About(usize),
}

#[derive(Debug)]
struct SynNode {
    parent: u64,
    content: SynContent,
}

/// What the index records that `about/<id>.md` tells, by dataset id.
struct AboutFacts {
    denials: HashMap<String, String>,
    indexed: std::collections::HashSet<String>,
    changes: HashMap<String, crate::index::Change>,
    classes: HashMap<String, crate::labels::Report>,
}

/// A place where a dataset appears.
#[derive(Debug)]
struct Instance {
    dataset: usize,
    parent: u64,
    /// `classes/<id>/`: rows are classes nodes, not the dataset's own entries.
    classes: bool,
}

enum Ino {
    Syn(usize),
    Dir { instance: usize, row: i64 },
    File(i64),
}

fn decode(ino: u64) -> Ino {
    if ino & FILE_BIT != 0 {
        Ino::File((ino & !FILE_BIT) as i64)
    } else if ino >> INSTANCE_SHIFT == 0 {
        Ino::Syn(ino as usize)
    } else {
        Ino::Dir {
            instance: (ino >> INSTANCE_SHIFT) as usize,
            row: (ino & ROW_MASK) as i64,
        }
    }
}

fn dir_ino(instance: usize, row: i64) -> u64 {
    ((instance as u64) << INSTANCE_SHIFT) | row as u64
}

/// The inode of the file at index row `row` (the same from every path to it).
pub fn file_ino(row: i64) -> u64 {
    FILE_BIT | row as u64
}

/// A view: its top directory, the outer and inner vocabularies, and membership tests.
type View = (
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
    Has,
    Has,
);
type Has = fn(&Dataset, &str) -> bool;

/// Members of a tar blob, the names of members skipped, and (tar.gz) decompression checkpoints.
type TarListing = (Vec<tar::TarEntry>, Vec<String>, Vec<Checkpoint>);

/// Whether a member at `path` is, by its name, an archive expanded in place (ZIP, plain tar).
fn nestable(path: &[String]) -> bool {
    path.last()
        .is_some_and(|n| matches!(Format::of_name(n), Format::Zip | Format::Tar | Format::Rar))
}

/// One member of an archive: path, directory or not, size, mtime, where its bytes are.
type Member = (Vec<String>, bool, u64, i64, Location);

/// How deep archives inside archives are expanded (in place, or decoded into a blob of their
/// own): each becomes a folder of its name, to this many levels; deeper ones stay files.
pub const NESTED_DEPTH: u32 = 3;

/// A solid 7z block larger than this gets a log line at index time (random reads of its
/// members are slow).
const SOLID_WARN: u64 = 64 << 20;

/// A part of a listed file, with its `Last-Modified` when it was probed.
type ProbedPart = (Part, Option<i64>);

/// The filesystem core.
pub struct Vfs {
    catalog: Catalog,
    index: Arc<Index>,
    fetcher: Arc<Fetcher>,
    /// The read path: file contents, checked.
    reader: Arc<Reader>,
    /// Sizes the listings did not give.
    sizer: Arc<Sizer>,
    /// Inodes of `about/<id>.md`, by dataset.
    about: Vec<u64>,
    /// Texts of `about/<id>.md` and when each was written, by dataset.
    abouts: RwLock<Vec<(Arc<Vec<u8>>, i64)>>,
    /// Datasets whose upstream changed under their indexed version, seen in this run.
    changed: Mutex<std::collections::HashSet<usize>>,
    /// The kernel's caches, to drop an `about/<id>.md` it holds when its text changes.
    kernel: std::sync::OnceLock<Arc<dyn PageSink>>,
    /// Inode of `catalog.csv`.
    csv: u64,
    /// Which hosts have credentials (to say what is missing before asking).
    credentials: Credentials,
    /// Which local users may read which dataset.
    access: crate::access::Policy,
    /// Generated nodes; index 0 is unused so that inode 1 is the root.
    syn: Vec<SynNode>,
    /// Instances; index 0 is unused (instance 0 would collide with generated inodes).
    instances: Vec<Instance>,
    /// How many instances of its own files each dataset has: the `st_nlink` of its files,
    /// before their names under `classes/`.
    paths_per_dataset: Vec<u32>,
    dataset_by_id: HashMap<String, usize>,
    roots: RwLock<HashMap<usize, i64>>,
    /// Root nodes of the classes trees, by dataset.
    class_roots: RwLock<HashMap<usize, i64>>,
    /// Indexings in progress: one per dataset, its result shared by whoever waited.
    indexing: Flights<usize, std::result::Result<i64, Arc<VfsError>>>,
    /// Classes trees being made: one per dataset.
    classing: Flights<usize, std::result::Result<i64, Arc<VfsError>>>,
    /// Rests of listings a reply had no room for, by (directory, cookie).
    listings: Mutex<LruCache<(u64, u64), Vec<DirItem>>>,
    /// The last failures users met, newest last (for `medimg status`).
    failures: Mutex<std::collections::VecDeque<Failure>>,
    started: i64,
}

impl std::fmt::Debug for Vfs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vfs")
            .field("datasets", &self.catalog.datasets.len())
            .finish_non_exhaustive()
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct TreeBuilder {
    syn: Vec<SynNode>,
    instances: Vec<Instance>,
}

impl TreeBuilder {
    fn add(&mut self, parent: u64, name: &str, content: SynContent) -> u64 {
        let ino = self.syn.len() as u64;
        self.syn.push(SynNode { parent, content });
        if let SynContent::Dir(children) = &mut self.syn[parent as usize].content {
            children.push((name.to_string(), ino));
        }
        ino
    }

    fn dir(&mut self, parent: u64, name: &str) -> u64 {
        self.add(parent, name, SynContent::Dir(Vec::new()))
    }

    fn instance(&mut self, parent: u64, dataset: usize, id: &str, classes: bool) {
        self.instances.push(Instance {
            dataset,
            parent,
            classes,
        });
        let ino = dir_ino(self.instances.len() - 1, 0);
        if let SynContent::Dir(children) = &mut self.syn[parent as usize].content {
            children.push((id.to_string(), ino));
        }
    }
}

impl Vfs {
    /// A filesystem over `catalog`, indexing into `index` and reading through `fetcher`.
    pub fn new(catalog: Catalog, index: Index, fetcher: Arc<Fetcher>) -> Vfs {
        let mut t = TreeBuilder {
            syn: Vec::new(),
            instances: vec![Instance {
                dataset: usize::MAX,
                parent: 0,
                classes: false,
            }],
        };
        // Slot 0 is a placeholder so that the root is inode 1.
        t.syn.push(SynNode {
            parent: 0,
            content: SynContent::Dir(Vec::new()),
        });
        let root = t.add(0, "", SynContent::Dir(Vec::new()));
        if let SynContent::Dir(c) = &mut t.syn[0].content {
            c.clear();
        }
        t.syn[root as usize].parent = root;
        t.add(
            root,
            "README.md",
            SynContent::File(Arc::new(crate::render::readme(&catalog).into_bytes())),
        );
        // Written with the access policy (`rebuild_about`).
        let csv = t.add(root, "catalog.csv", SynContent::File(Arc::new(Vec::new())));
        let about_dir = t.dir(root, "about");
        let about: Vec<u64> = catalog
            .datasets
            .iter()
            .enumerate()
            .map(|(i, d)| t.add(about_dir, &format!("{}.md", d.id), SynContent::About(i)))
            .collect();
        let datasets = t.dir(root, "datasets");
        for (i, d) in catalog.datasets.iter().enumerate() {
            t.instance(datasets, i, &d.id, false);
        }
        let classes = t.dir(root, "classes");
        for (i, d) in catalog.datasets.iter().enumerate() {
            if !d.labels.is_empty() {
                t.instance(classes, i, &d.id, true);
            }
        }
        let views: [View; 2] = [
            ("modality", &MODALITIES, &ORGANS, has_modality, has_organ),
            ("organ", &ORGANS, &MODALITIES, has_organ, has_modality),
        ];
        for (top_name, outer, inner, outer_has, inner_has) in views {
            let top = t.dir(root, top_name);
            for o in outer {
                if !catalog.datasets.iter().any(|d| outer_has(d, o)) {
                    continue;
                }
                let o_dir = t.dir(top, o);
                for i in inner {
                    let matching: Vec<usize> = (0..catalog.datasets.len())
                        .filter(|&k| {
                            outer_has(&catalog.datasets[k], o) && inner_has(&catalog.datasets[k], i)
                        })
                        .collect();
                    if matching.is_empty() {
                        continue;
                    }
                    let i_dir = t.dir(o_dir, i);
                    for k in matching {
                        t.instance(i_dir, k, &catalog.datasets[k].id, false);
                    }
                }
            }
        }
        let mut paths_per_dataset = vec![0u32; catalog.datasets.len()];
        for inst in t.instances[1..].iter().filter(|i| !i.classes) {
            paths_per_dataset[inst.dataset] += 1;
        }
        let dataset_by_id = catalog
            .datasets
            .iter()
            .enumerate()
            .map(|(i, d)| (d.id.clone(), i))
            .collect();
        let index = Arc::new(index);
        let reader = Arc::new(Reader::new(index.clone(), fetcher.clone()));
        // Archives inside compressed archives are decoded into the cache by the read path.
        let deriver: Arc<dyn crate::fetch::Derive> = reader.clone();
        fetcher.set_deriver(Arc::downgrade(&deriver));
        let mut vfs = Vfs {
            catalog,
            reader,
            sizer: Sizer::new(index.clone(), fetcher.clone()),
            index,
            fetcher,
            about,
            csv,
            credentials: Credentials::none(),
            access: crate::access::Policy::open(),
            syn: t.syn,
            instances: t.instances,
            paths_per_dataset,
            dataset_by_id,
            roots: RwLock::new(HashMap::new()),
            class_roots: RwLock::new(HashMap::new()),
            indexing: Flights::new(),
            classing: Flights::new(),
            listings: Mutex::new(LruCache::new(LISTINGS_KEPT)),
            failures: Mutex::new(std::collections::VecDeque::new()),
            started: now(),
            abouts: RwLock::new(Vec::new()),
            changed: Mutex::new(std::collections::HashSet::new()),
            kernel: std::sync::OnceLock::new(),
        };
        vfs.rebuild_about();
        vfs
    }

    /// Write `about/<id>.md` of every dataset from the credentials and the refusals and
    /// upstream changes recorded, and `catalog.csv` from the access policy.
    fn rebuild_about(&mut self) {
        let facts = self.about_facts();
        let texts = (0..self.catalog.datasets.len())
            .map(|i| (Arc::new(self.about_text(i, &facts).into_bytes()), now()))
            .collect();
        *self.abouts.write().unwrap_or_else(|p| p.into_inner()) = texts;
        let csv = crate::render::catalog_csv(&self.catalog, &|i| {
            self.access.group(i).map(|g| g.name.clone())
        });
        if let Some(node) = self.syn.get_mut(self.csv as usize) {
            node.content = SynContent::File(Arc::new(csv.into_bytes()));
        }
    }

    /// What the index records that `about/<id>.md` tells: refusals, indexed datasets, changes.
    fn about_facts(&self) -> AboutFacts {
        AboutFacts {
            denials: self
                .index
                .denials()
                .unwrap_or_default()
                .into_iter()
                .map(|(d, m, _)| (d, m))
                .collect(),
            indexed: self
                .index
                .indexed_datasets()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            changes: self
                .index
                .changes()
                .unwrap_or_default()
                .into_iter()
                .map(|c| (c.dataset.clone(), c))
                .collect(),
            classes: self
                .index
                .class_reports()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(d, r)| Some((d, serde_json::from_str(&r).ok()?)))
                .collect(),
        }
    }

    /// What `about/<id>.md` of dataset `i` says, given what the index records.
    fn about_text(&self, i: usize, facts: &AboutFacts) -> String {
        let d = &self.catalog.datasets[i];
        let denial = facts.denials.get(&d.id).map(String::as_str);
        let indexed = facts.indexed.contains(&d.id);
        let st = crate::render::state(d, &self.credentials, denial, indexed);
        let mut text = crate::render::about(d, &st);
        if let Some(c) = facts.changes.get(&d.id) {
            text.push_str(&crate::render::change(c));
        }
        if !d.labels.is_empty() {
            text.push_str(&crate::render::classes(d, facts.classes.get(&d.id)));
        }
        if let Some(g) = self.access.group(i) {
            text.push_str(&format!(
                "\nOn this server its files are readable by members of the Unix group `{}` \
                 only (ask the server's administrator to be added once you have access).\n",
                g.name
            ));
        }
        text
    }

    /// Dataset `i`'s upstream changed under its indexed version (`message` says how): record
    /// it once, for `medimg status`, `about/<id>.md` and the next start, which indexes the new
    /// version. The failing read's own line is the one log line.
    fn mark_changed(&self, i: usize, message: &str) {
        if !self
            .changed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(i)
        {
            return;
        }
        let d = &self.catalog.datasets[i];
        if let Err(e) = self.index.put_change(&d.id, message, now()) {
            tracing::warn!("{e}");
        }
        self.refresh_about(i);
    }

    /// Write `about/<id>.md` of dataset `i` again: what it says changed.
    fn refresh_about(&self, i: usize) {
        let text = Arc::new(self.about_text(i, &self.about_facts()).into_bytes());
        if let Some(slot) = self
            .abouts
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(i)
        {
            *slot = (text, now());
        }
        // The kernel may hold the old text for a day (TTL): drop it. Not from this thread,
        // which may be answering a kernel request.
        if let (Some(k), Some(&ino)) = (self.kernel.get(), self.about.get(i)) {
            let k = k.clone();
            std::thread::spawn(move || k.forget(ino));
        }
    }

    /// Give each dataset's nodes the owner, group and modes `policy` says.
    pub fn with_access(mut self, policy: crate::access::Policy) -> Vfs {
        self.access = policy;
        self.rebuild_about();
        self
    }

    /// Use `credentials` to tell which datasets can be read (they are sent by the upstream).
    pub fn with_credentials(mut self, credentials: Credentials) -> Vfs {
        self.credentials = credentials;
        self.rebuild_about();
        self
    }

    /// From now on, hand the checked bytes of files near each cold-read small file to `sink`
    /// (the kernel's page cache; see [`crate::read`]).
    pub fn start_push(&self, sink: Arc<dyn PageSink>) {
        let _ = self.kernel.set(sink.clone());
        self.reader.start_push(sink);
    }

    /// What the read path has done since start.
    pub fn read_stats(&self) -> crate::read::ReadStats {
        self.reader.stats()
    }

    /// Remember a failure a user met (the last [`FAILURES_KEPT`] are kept).
    pub fn note_failure(&self, message: String) {
        let mut f = lock(&self.failures);
        if f.len() == FAILURES_KEPT {
            f.pop_front();
        }
        f.push_back(Failure { at: now(), message });
    }

    /// The last failures users met, oldest first.
    pub fn failures(&self) -> Vec<Failure> {
        lock(&self.failures).iter().cloned().collect()
    }

    /// Every dataset of the catalog: indexed or not, and the bytes of it the cache holds.
    pub fn dataset_status(&self) -> Result<Vec<DatasetStatus>> {
        let indexed: std::collections::HashSet<String> =
            self.index.indexed_datasets()?.into_iter().collect();
        let changes = self.index.changes()?;
        let cached = self.fetcher.cache().bytes_by_blob();
        let mut bytes: HashMap<String, u64> = HashMap::new();
        for (dataset, key) in self.index.blob_keys()? {
            if let Some(n) = cached.get(&key) {
                *bytes.entry(dataset).or_default() += n;
            }
        }
        Ok(self
            .catalog
            .datasets
            .iter()
            .map(|d| DatasetStatus {
                id: d.id.clone(),
                indexed: indexed.contains(&d.id),
                cached_bytes: bytes.get(&d.id).copied().unwrap_or(0),
                changed: changes.iter().find(|c| c.dataset == d.id).cloned(),
            })
            .collect())
    }

    /// Remove the cached blocks of dataset `id` (all datasets for `None`); returns blocks and
    /// bytes. Readers fetch them again as they need them.
    pub fn clear_cache(&self, id: Option<&str>) -> Result<(u64, u64)> {
        let cache = self.fetcher.cache();
        let cleared = match id {
            None => cache.clear(|_| true),
            Some(id) => {
                if !self.dataset_by_id.contains_key(id) {
                    return Err(VfsError::NotFound);
                }
                let keys: std::collections::HashSet<crate::cache::BlobKey> = self
                    .index
                    .blob_keys()?
                    .into_iter()
                    .filter(|(d, _)| d == id)
                    .map(|(_, k)| k)
                    .collect();
                cache.clear(|k| keys.contains(k))
            }
        };
        cleared.map_err(|e| VfsError::Unreadable {
            dataset: id.unwrap_or("*").to_string(),
            member: "cache".into(),
            message: e.to_string(),
        })
    }

    /// What sizing has done since start.
    pub fn size_stats(&self) -> crate::sizes::SizeStats {
        self.sizer.stats()
    }

    /// The fetcher (for cache statistics).
    pub fn fetcher(&self) -> &Fetcher {
        &self.fetcher
    }

    /// A generated file's bytes and when they were written.
    fn syn_file(&self, c: &SynContent) -> Option<(Arc<Vec<u8>>, i64)> {
        match c {
            SynContent::Dir(_) => None,
            SynContent::File(b) => Some((b.clone(), self.started)),
            SynContent::About(i) => self
                .abouts
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(*i)
                .cloned(),
        }
    }

    fn syn_attr(&self, ino: u64) -> Option<Attr> {
        let node = self.syn.get(ino as usize).filter(|_| ino != 0)?;
        Some(match &node.content {
            SynContent::Dir(_) => self.dir_attr(ino, self.started, self.access.generated()),
            c => {
                let (bytes, mtime) = self.syn_file(c)?;
                let p = self.access.generated();
                Attr {
                    ino,
                    kind: Kind::File,
                    size: bytes.len() as u64,
                    perm: p.file,
                    uid: p.uid,
                    gid: p.gid,
                    nlink: 1,
                    mtime,
                }
            }
        })
    }

    fn dir_attr(&self, ino: u64, mtime: i64, p: crate::access::Perms) -> Attr {
        Attr {
            ino,
            kind: Kind::Dir,
            size: 0,
            perm: p.dir,
            uid: p.uid,
            gid: p.gid,
            nlink: 1,
            mtime,
        }
    }

    /// The owner, group and modes of dataset `d`'s nodes.
    fn perms(&self, d: Option<usize>) -> crate::access::Perms {
        match d {
            Some(d) => self.access.dataset(d),
            None => self.access.generated(),
        }
    }

    fn entry_attr(&self, instance: usize, e: &Entry) -> Attr {
        let d = self.dataset_of_entry(e);
        let p = self.perms(d);
        match e.location {
            None => self.dir_attr(dir_ino(instance, e.id), e.mtime, p),
            Some(_) => Attr {
                ino: file_ino(e.id),
                kind: Kind::File,
                // Unknown only in a provisional listing item (see `DirItem::provisional`).
                size: e.size.unwrap_or(0),
                perm: p.file,
                uid: p.uid,
                gid: p.gid,
                nlink: d.map_or(1, |d| self.paths_per_dataset[d]) + e.links,
                mtime: e.mtime,
            },
        }
    }

    fn dataset_of_entry(&self, e: &Entry) -> Option<usize> {
        self.dataset_by_id.get(&e.dataset).copied()
    }

    fn instance(&self, i: usize) -> Result<&Instance> {
        self.instances
            .get(i)
            .filter(|_| i != 0)
            .ok_or(VfsError::NotFound)
    }

    /// Attributes of `ino`. Never touches the network.
    pub fn getattr(&self, ino: u64) -> Result<Attr> {
        match decode(ino) {
            Ino::Syn(_) => self.syn_attr(ino).ok_or(VfsError::NotFound),
            Ino::Dir { instance, row: 0 } => {
                let d = self.instance(instance)?.dataset;
                Ok(self.dir_attr(ino, self.started, self.access.dataset(d)))
            }
            Ino::Dir { instance, row } if self.instance(instance)?.classes => {
                let d = self.instance(instance)?.dataset;
                let n = self.index.class_node(row)?.ok_or(VfsError::NotFound)?;
                if n.entry.is_some() {
                    return Err(VfsError::NotFound);
                }
                Ok(self.dir_attr(ino, self.started, self.access.dataset(d)))
            }
            Ino::Dir { instance, row } => {
                let e = self.index.entry(row)?.ok_or(VfsError::NotFound)?;
                if !e.is_dir() {
                    return Err(VfsError::NotFound);
                }
                Ok(self.entry_attr(instance, &e))
            }
            Ino::File(row) => {
                let e = self.index.entry(row)?.ok_or(VfsError::NotFound)?;
                let e = self.sized(e)?;
                Ok(self.entry_attr(0, &e))
            }
        }
    }

    /// `e` with its size, asking the host for it if the listing did not give it.
    fn sized(&self, e: Entry) -> Result<Entry> {
        if e.size.is_some() {
            return Ok(e);
        }
        let (name, dataset) = (e.name.clone(), e.dataset.clone());
        self.sizer.sized(e).map_err(|err| match err {
            SizeError::Fetch(f) => match self.dataset_by_id.get(&dataset) {
                Some(&d) => self.fetch_failure(
                    &self.catalog.datasets[d],
                    format!("asking the size of {name}"),
                    FetchError::Shared(f),
                ),
                None => VfsError::NotFound,
            },
            SizeError::Gone => VfsError::NotFound,
            e => VfsError::Unreadable {
                dataset,
                member: name,
                message: format!("cannot record its size: {e}"),
            },
        })
    }

    /// The child `name` of directory `parent`. Indexes the dataset on first entry into it.
    pub fn lookup(&self, parent: u64, name: &str) -> Result<Attr> {
        match decode(parent) {
            Ino::Syn(i) => match &self.syn.get(i).ok_or(VfsError::NotFound)?.content {
                SynContent::Dir(children) => {
                    let (_, ino) = children
                        .iter()
                        .find(|(n, _)| n == name)
                        .ok_or(VfsError::NotFound)?;
                    self.getattr(*ino)
                }
                SynContent::File(_) | SynContent::About(_) => Err(VfsError::NotDir),
            },
            Ino::Dir { instance, row } if self.instance(instance)?.classes => {
                let folder = self.class_dir_row(instance, row)?;
                let n = self
                    .index
                    .class_lookup(folder, name)?
                    .ok_or(VfsError::NotFound)?;
                self.class_node_attr(instance, n)
            }
            Ino::Dir { instance, row } => {
                let parent_row = self.dir_row(instance, row)?;
                let e = self
                    .index
                    .lookup(parent_row, name)?
                    .ok_or(VfsError::NotFound)?;
                let e = self.sized(e)?;
                Ok(self.entry_attr(instance, &e))
            }
            Ino::File(_) => Err(VfsError::NotDir),
        }
    }

    /// The classes node of a folder inside a classes instance (row 0: the tree's root, made
    /// now if it is not yet).
    fn class_dir_row(&self, instance: usize, row: i64) -> Result<i64> {
        if row != 0 {
            return Ok(row);
        }
        let dataset = self.instance(instance)?.dataset;
        self.ensure_classes(dataset)
    }

    /// Attributes of a classes node: a folder of this instance, or the dataset's own file.
    fn class_node_attr(&self, instance: usize, n: crate::index::ClassNode) -> Result<Attr> {
        match n.entry {
            None => {
                let d = self.instance(instance)?.dataset;
                Ok(self.dir_attr(
                    dir_ino(instance, n.id),
                    self.started,
                    self.access.dataset(d),
                ))
            }
            Some(e) => {
                let e = self.sized(e)?;
                Ok(self.entry_attr(instance, &e))
            }
        }
    }

    /// The index row of a directory inside an instance (row 0: the dataset root, indexed now
    /// if it is not yet).
    fn dir_row(&self, instance: usize, row: i64) -> Result<i64> {
        if row != 0 {
            return Ok(row);
        }
        let dataset = self.instance(instance)?.dataset;
        self.ensure_indexed(dataset)
    }

    /// Keep `items`, the rest of a listing of `ino` that a reply had no room for, to answer
    /// the request that continues after `cookie`.
    pub fn keep_listing(&self, ino: u64, cookie: u64, items: Vec<DirItem>) {
        if !items.is_empty() {
            lock(&self.listings).put((ino, cookie), items);
        }
    }

    /// Up to `max` entries of directory `ino` after `cookie` (0 starts; `.` and `..` included).
    pub fn readdir(&self, ino: u64, cookie: u64, max: usize) -> Result<Vec<DirItem>> {
        // A kernel buffer holds a few dozen entries with attributes; the rest of the last
        // batch is kept, so a large directory costs one query per batch, not one per buffer.
        if let Some(items) = lock(&self.listings).pop(&(ino, cookie)) {
            return Ok(items);
        }
        let mut out = Vec::new();
        let (self_attr, parent_ino) = match decode(ino) {
            Ino::Syn(i) => {
                let node = self.syn.get(i).ok_or(VfsError::NotFound)?;
                (self.getattr(ino)?, node.parent)
            }
            Ino::Dir { instance, row: 0 } => (self.getattr(ino)?, self.instance(instance)?.parent),
            Ino::Dir { instance, row } if self.instance(instance)?.classes => {
                let n = self.index.class_node(row)?.ok_or(VfsError::NotFound)?;
                let up = if self
                    .index
                    .class_node(n.parent)?
                    .is_some_and(|p| p.parent == 0)
                {
                    dir_ino(instance, 0)
                } else {
                    dir_ino(instance, n.parent)
                };
                (self.getattr(ino)?, up)
            }
            Ino::Dir { instance, row } => {
                let e = self.index.entry(row)?.ok_or(VfsError::NotFound)?;
                let up = if self.index.entry(e.parent)?.is_some_and(|p| p.parent == 0) {
                    dir_ino(instance, 0)
                } else {
                    dir_ino(instance, e.parent)
                };
                (self.entry_attr(instance, &e), up)
            }
            Ino::File(_) => return Err(VfsError::NotDir),
        };
        if cookie < 1 {
            out.push(DirItem {
                name: ".".into(),
                attr: self_attr,
                provisional: false,
                next: 1,
            });
        }
        if cookie < 2 {
            out.push(DirItem {
                name: "..".into(),
                attr: self.getattr(parent_ino).unwrap_or(self_attr),
                provisional: false,
                next: 2,
            });
        }
        match decode(ino) {
            Ino::Syn(i) => {
                if let SynContent::Dir(children) = &self.syn[i].content {
                    let skip = cookie.saturating_sub(2) as usize;
                    for (k, (name, child)) in children.iter().enumerate().skip(skip).take(max) {
                        out.push(DirItem {
                            name: name.clone(),
                            attr: self.getattr(*child)?,
                            provisional: false,
                            next: k as u64 + 3,
                        });
                    }
                } else {
                    return Err(VfsError::NotDir);
                }
            }
            Ino::Dir { instance, row } if self.instance(instance)?.classes => {
                let folder = self.class_dir_row(instance, row)?;
                let after = cookie.saturating_sub(2) as i64;
                let d = self.instance(instance)?.dataset;
                for n in self.index.class_children(folder, after, max)? {
                    let next = n.id as u64 + 2;
                    let (attr, provisional) = match &n.entry {
                        None => (
                            self.dir_attr(
                                dir_ino(instance, n.id),
                                self.started,
                                self.access.dataset(d),
                            ),
                            false,
                        ),
                        Some(e) => (self.entry_attr(instance, e), e.size.is_none()),
                    };
                    out.push(DirItem {
                        name: n.name,
                        attr,
                        provisional,
                        next,
                    });
                }
            }
            Ino::Dir { instance, row } => {
                let dir = self.dir_row(instance, row)?;
                let after = cookie.saturating_sub(2) as i64;
                for e in self.index.children(dir, after, max)? {
                    out.push(DirItem {
                        name: e.name.clone(),
                        attr: self.entry_attr(instance, &e),
                        provisional: e.size.is_none() && !e.is_dir(),
                        next: e.id as u64 + 2,
                    });
                }
            }
            Ino::File(_) => return Err(VfsError::NotDir),
        }
        Ok(out)
    }

    /// The root row of dataset `d`, indexing it first if needed (one indexing per dataset at a
    /// time; concurrent callers wait for it).
    fn ensure_indexed(&self, d: usize) -> Result<i64> {
        if let Some(r) = self.roots.read().unwrap_or_else(|p| p.into_inner()).get(&d) {
            return Ok(*r);
        }
        let ds = &self.catalog.datasets[d];
        if let Some(reason) = ds.unsupported_reason() {
            return Err(VfsError::Unsupported {
                dataset: ds.id.clone(),
                reason: reason.to_string(),
                homepage: ds.homepage.clone(),
            });
        }
        if let Some(message) = crate::render::missing_credential(ds, &self.credentials) {
            return Err(VfsError::Denied {
                dataset: ds.id.clone(),
                message,
            });
        }
        // Whoever comes while another indexes waits for it, up to the deadline: a host that
        // never answers fails the indexer by then too (its requests time out).
        let deadline = Instant::now() + self.fetcher.deadline();
        let indexed = self.indexing.run(d, Some(deadline), || {
            if let Some(r) = self.roots.read().unwrap_or_else(|p| p.into_inner()).get(&d) {
                return Ok(*r);
            }
            let fp = ds.fingerprint();
            let root = match self.index.dataset_root(&ds.id, &fp) {
                Ok(Some(r)) => r,
                Ok(None) => {
                    let root =
                        crate::source::stats::on_behalf_of(&ds.id, || self.index_dataset(ds, &fp))
                            .map_err(Arc::new)?;
                    // A refusal or a change it recorded is behind it now.
                    self.refresh_about(d);
                    // Its label tables are read now, through the cache, into the index.
                    if !ds.labels.is_empty()
                        && let Err(e) = self.classes_of(d, root)
                    {
                        tracing::warn!(
                            dataset = %ds.id,
                            "classes/{} not made: {e}; entering it tries again",
                            ds.id
                        );
                    }
                    root
                }
                Err(e) => return Err(Arc::new(e.into())),
            };
            self.roots
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(d, root);
            Ok(root)
        });
        match indexed {
            Ok(Ok(root)) => Ok(root),
            Ok(Err(e)) => Err(VfsError::Shared(e)),
            Err(TimedOut) => Err(VfsError::StillIndexing {
                dataset: ds.id.clone(),
                waited: self.fetcher.deadline(),
            }),
        }
    }

    /// The root node of dataset `d`'s classes tree, indexing the dataset and making the tree
    /// first if needed.
    fn ensure_classes(&self, d: usize) -> Result<i64> {
        if let Some(r) = self
            .class_roots
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&d)
        {
            return Ok(*r);
        }
        let root = self.ensure_indexed(d)?;
        self.classes_of(d, root)
    }

    /// The classes tree of dataset `d`, whose root entry is `root`: the one recorded for this
    /// root and label spec, or one made now from its tables (one making per dataset at a
    /// time; concurrent callers wait for it).
    fn classes_of(&self, d: usize, root: i64) -> Result<i64> {
        let ds = &self.catalog.datasets[d];
        let deadline = Instant::now() + self.fetcher.deadline();
        let made = self.classing.run(d, Some(deadline), || {
            if let Some(r) = self
                .class_roots
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(&d)
            {
                return Ok(*r);
            }
            // Version 1 of the tree; a changed spec (or version) makes it again.
            let spec = format!("v1 {:?}", ds.labels);
            let r = match self.index.classes(&ds.id) {
                Ok(Some(c)) if c.spec == spec && c.dataset_root == root => c.root,
                Ok(_) => {
                    crate::source::stats::on_behalf_of(&ds.id, || self.make_classes(d, root, &spec))
                        .map_err(Arc::new)?
                }
                Err(e) => return Err(Arc::new(e.into())),
            };
            self.class_roots
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(d, r);
            Ok(r)
        });
        match made {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(VfsError::Shared(e)),
            Err(TimedOut) => Err(VfsError::StillIndexing {
                dataset: ds.id.clone(),
                waited: self.fetcher.deadline(),
            }),
        }
    }

    /// Read dataset `d`'s label tables and record its classes tree; one log line says what
    /// it holds and what was skipped.
    fn make_classes(&self, d: usize, root: i64, spec: &str) -> Result<i64> {
        let ds = &self.catalog.datasets[d];
        // Paths from the rows: a directory's row comes before its children's.
        let mut dirs: HashMap<i64, Vec<String>> = HashMap::from([(root, Vec::new())]);
        let mut files = Vec::new();
        for (id, parent, name, size, is_file) in self.index.dataset_entries(&ds.id)? {
            let Some(mut path) = dirs.get(&parent).cloned() else {
                continue;
            };
            path.push(name);
            if is_file {
                files.push((id, path, size));
            } else {
                dirs.insert(id, path);
            }
        }
        let files = crate::labels::Files::new(files);
        let tree = crate::labels::build(&ds.labels, &files, &mut |entry| self.read_table(entry))?;
        let nodes: Vec<crate::index::NewClassNode> = tree
            .nodes
            .into_iter()
            .map(|n| crate::index::NewClassNode {
                parent: n.parent,
                name: n.name,
                entry: n.entry,
            })
            .collect();
        let report = serde_json::to_string(&tree.report).unwrap_or_else(|_| "{}".into());
        let croot = self
            .index
            .put_classes(&ds.id, spec, root, &nodes, &report, now())?;
        let line = tree.report.summary();
        if tree.report.skipped_anything() {
            tracing::warn!(dataset = %ds.id, "classes/{}: {line} (see about/{}.md)", ds.id, ds.id);
        } else {
            tracing::info!(dataset = %ds.id, "classes/{}: {line}", ds.id);
        }
        self.refresh_about(d);
        Ok(croot)
    }

    /// The bytes of label table `entry` (at most one more than [`crate::labels::TABLE_MAX`]),
    /// read through the read path: the cache, the checks, the dataset's credentials.
    fn read_table(&self, entry: i64) -> Result<Vec<u8>> {
        let e = self.index.entry(entry)?.ok_or(VfsError::NotFound)?;
        let e = self.sized(e)?;
        let size = e.size.unwrap_or(0).min(crate::labels::TABLE_MAX + 1);
        let mut out = Vec::with_capacity(size as usize);
        while (out.len() as u64) < size {
            let want = (size - out.len() as u64).min(1 << 20) as u32;
            let b = self.read_file(entry, 0, out.len() as u64, want)?;
            if b.is_empty() {
                break;
            }
            out.extend_from_slice(&b);
        }
        Ok(out)
    }

    fn index_dataset(&self, ds: &Dataset, fingerprint: &str) -> Result<i64> {
        let rows = match self.fetcher.tier() {
            Some(tier) => self.list_shared(tier, ds, fingerprint)?,
            None => self.list_dataset(ds)?,
        };
        let files = rows.entries.iter().filter(|e| e.location.is_some()).count();
        let root = self.index.put_dataset(
            &ds.id,
            fingerprint,
            rows.root_mtime,
            &rows.blobs,
            &rows.entries,
            &rows.checkpoints,
        )?;
        tracing::info!(dataset = %ds.id, files, "indexed");
        Ok(root)
    }

    /// The rows of `ds` from the shared tier, or listed here (by this node alone in the
    /// cluster) and published there. After an upstream change the shared listing is the old
    /// one: it is listed again here and replaced.
    fn list_shared(&self, tier: &Tier, ds: &Dataset, fingerprint: &str) -> Result<DatasetRows> {
        let name = crate::tier::listing_name(&ds.id, fingerprint, DatasetRows::FORMAT);
        let changed = self
            .index
            .changes()?
            .iter()
            .any(|c| c.dataset == ds.id && c.reindexed_at.is_none());
        fn publish(encoded: &[u8]) -> Option<Publish<'_>> {
            Some(Publish {
                payload: encoded,
                version: None,
            })
        }
        if changed {
            let rows = self.list_dataset(ds)?;
            tier.publish(
                &name,
                Publish {
                    payload: &rows.encode(),
                    version: None,
                },
            );
            return Ok(rows);
        }
        // The rows the check decoded, kept: a listing of a million files is decoded once.
        let decoded = std::cell::RefCell::new(None);
        let got = tier.once(
            &name,
            &format!("lease/{name}"),
            Patience::WhileLeased,
            |o| {
                let rows = DatasetRows::decode(o.payload)?;
                *decoded.borrow_mut() = Some(rows);
                Ok(())
            },
            || self.list_dataset(ds).map(|rows| (rows.encode(), rows)),
            |(encoded, _)| publish(encoded),
        )?;
        match got {
            Got::Made((_, rows)) => Ok(rows),
            Got::Shared(_) => {
                tracing::info!(dataset = %ds.id, "listing from the shared cache");
                decoded.into_inner().ok_or_else(|| VfsError::Unreadable {
                    dataset: ds.id.clone(),
                    member: name,
                    message: "the shared listing was not decoded".into(),
                })
            }
        }
    }

    /// Ask the upstream for every file of `ds`, and open its archives: the rows to index.
    fn list_dataset(&self, ds: &Dataset) -> Result<DatasetRows> {
        tracing::info!(dataset = %ds.id, "indexing (first visit)");
        let mut acc = Listing::default();
        let fetch_err = |what: String, source: FetchError| self.fetch_failure(ds, what, source);
        // Plain URLs are probed together, a few at a time (KiTS19 lists 210 of them).
        let mut plain: Vec<RemoteFile> = Vec::new();
        for src in &ds.sources {
            if let Locator::Http { urls, .. } = &src.locator {
                for url in urls {
                    if !plain.iter().any(|f| &f.url == url) {
                        plain.push(RemoteFile {
                            path: String::new(),
                            url: url.clone(),
                            size: None,
                            checksum: None,
                            etag: None,
                        });
                    }
                }
            }
        }
        let probed: HashMap<String, ProbedPart> = self
            .parts_of(&plain)
            .map_err(|(url, e)| fetch_err(format!("probing {url}"), e))?
            .into_iter()
            .zip(plain)
            .map(|(p, f)| (f.url, p))
            .collect();
        for src in &ds.sources {
            let into: Vec<String> = src
                .into
                .split('/')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            let Locator::Http { urls, format } = &src.locator else {
                let files = resolve::list(src, self.fetcher.upstream())
                    .map_err(|e| self.resolve_failure(ds, src, e))?;
                let mut kept = Vec::with_capacity(files.len());
                for f in files {
                    let mut path = match crate::archive::normalize_member_path(&f.path) {
                        Ok((p, false)) if !p.is_empty() => p,
                        Ok(_) => continue,
                        Err(e) => {
                            acc.tree.skipped.push(format!("{e}; skipped"));
                            continue;
                        }
                    };
                    let Some(name) = path.pop() else { continue };
                    let format = if src.extract {
                        Format::of_name(&name)
                    } else {
                        Format::File
                    };
                    kept.push((f, [into.clone(), path].concat(), name, format));
                }
                // An archive is read now, so it needs its size now; a plain file of unknown
                // size waits until a user asks for it (see `crate::sizes`).
                let now: Vec<RemoteFile> = kept
                    .iter()
                    .filter(|(f, .., format)| f.size.is_some() || *format != Format::File)
                    .map(|(f, ..)| f.clone())
                    .collect();
                let mut parts = self
                    .parts_of(&now)
                    .map_err(|(url, e)| fetch_err(format!("probing {url}"), e))?
                    .into_iter();
                for (f, dir, name, format) in kept {
                    let later = f.size.is_none() && format == Format::File;
                    let (part, lm) = if later {
                        (Part::placeholder(&f.url), None)
                    } else {
                        match parts.next() {
                            Some(p) => p,
                            None => continue,
                        }
                    };
                    let blob = Blob {
                        id: 0,
                        parts: vec![part],
                        checksum: f.checksum,
                    };
                    if later {
                        acc.unsized_file(blob, dir, name, self.started);
                    } else {
                        self.add_blob(ds, &mut acc, blob, format, dir, name, lm)?;
                    }
                }
                continue;
            };
            let mut parts = Vec::with_capacity(urls.len());
            let mut last_modified = None;
            for url in urls {
                let (part, lm) = probed
                    .get(url)
                    .cloned()
                    .ok_or_else(|| VfsError::Unreadable {
                        dataset: ds.id.clone(),
                        member: url.clone(),
                        message: "was not probed".into(),
                    })?;
                last_modified = last_modified.or(lm);
                parts.push(part);
            }
            let blob = Blob {
                id: 0,
                parts,
                checksum: None,
            };
            let name = src.file_name().unwrap_or_else(|| "download".into());
            self.add_blob(ds, &mut acc, blob, *format, into, name, last_modified)?;
        }
        for w in &acc.tree.skipped {
            tracing::warn!(dataset = %ds.id, "{w}");
        }
        Ok(DatasetRows {
            root_mtime: self.started,
            blobs: acc.blobs,
            entries: acc.tree.entries,
            checkpoints: acc.checkpoints,
        })
    }

    /// The parts of listed files: those whose size the listing gave need no request; the others
    /// are probed, a few at a time.
    fn parts_of(
        &self,
        files: &[RemoteFile],
    ) -> std::result::Result<Vec<ProbedPart>, (String, FetchError)> {
        let mut out: Vec<Option<ProbedPart>> = files
            .iter()
            .map(|f| {
                f.size.map(|size| {
                    let part =
                        Fetcher::listed_part(&f.url, size, f.etag.clone(), f.checksum.as_deref());
                    (part, None)
                })
            })
            .collect();
        let todo: Vec<usize> = (0..files.len()).filter(|&i| out[i].is_none()).collect();
        if !todo.is_empty() {
            tracing::info!(
                "probing {} files whose size the listing does not give",
                todo.len()
            );
        }
        let next = AtomicU64::new(0);
        let results = Mutex::new(Vec::new());
        // The probers ask on behalf of the dataset being indexed, as this thread does.
        let tag = crate::source::stats::current_dataset();
        std::thread::scope(|sc| {
            for _ in 0..PROBE_THREADS.min(todo.len()) {
                sc.spawn(|| {
                    loop {
                        let k = next.fetch_add(1, Ordering::Relaxed) as usize;
                        let Some(&i) = todo.get(k) else { break };
                        let r = crate::source::stats::on_behalf_of_tag(tag.clone(), || {
                            self.fetcher.probe(&files[i].url)
                        });
                        let failed = r.is_err();
                        lock(&results).push((i, r));
                        if failed {
                            // Stop everyone: one failure fails the listing.
                            next.store(todo.len() as u64, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        for (i, r) in results.into_inner().unwrap_or_else(|p| p.into_inner()) {
            match r {
                Ok(p) => out[i] = Some(p),
                Err(e) => return Err((files[i].url.clone(), e)),
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// Add the files of one blob to the listing: the blob itself as file `dir/name`, or the
    /// members of the archive it is, under `dir`.
    #[allow(clippy::too_many_arguments)]
    fn add_blob(
        &self,
        ds: &Dataset,
        acc: &mut Listing,
        blob: Blob,
        format: Format,
        dir: Vec<String>,
        name: String,
        last_modified: Option<i64>,
    ) -> Result<()> {
        // Its place among the listing's blobs is taken now: the archives decoded out of it
        // come after it.
        let b = acc.blobs.len() as i64;
        acc.blobs.push(blob.clone());
        let mtime = last_modified.unwrap_or(self.started);
        let under = |path: Vec<String>| [dir.clone(), path].concat();
        let members = match format {
            Format::File => None,
            _ => self
                .members(ds, acc, &blob, b, format, 0)
                .map_err(|source| self.listing_failure(ds, blob.url(), source))?,
        };
        match members {
            Some(members) => {
                for (path, is_dir, size, mtime, location) in members {
                    acc.tree.member(under(path), is_dir, size, mtime, location);
                }
            }
            None => {
                let location = Location {
                    blob: b,
                    offset: 0,
                    storage: Storage::Raw,
                };
                acc.tree
                    .file(under(vec![name]), Some(blob.size()), mtime, location);
            }
        }
        Ok(())
    }

    /// The members of `blob` (the listing's blob `b`) read as an archive of `format`, `depth`
    /// archives deep, with the archives among them expanded too: in place when their bytes
    /// are the blob's as they are, else decoded into a blob of their own ([`Vfs::derived`]).
    /// `None` keeps it a file (a valid archive medimg cannot decode; the note says why).
    fn members(
        &self,
        ds: &Dataset,
        acc: &mut Listing,
        blob: &Blob,
        b: i64,
        format: Format,
        depth: u32,
    ) -> std::result::Result<Option<Vec<Member>>, ArchiveError> {
        let src_name = blob.url().to_string();
        // The blob's bytes through the block cache, for the archive parsers.
        let bytes = BlobBytes {
            fetcher: &self.fetcher,
            blob,
        };
        let mut out = Vec::new();
        match format {
            Format::File => return Ok(None),
            Format::Zip => {
                let members = zip::list_parts(&bytes, &blob.part_sizes())?;
                out = self.zip_nested(ds, acc, blob, &bytes, b, 0, members, depth)?;
            }
            Format::SevenZ => {
                let archive = sevenz::open(&bytes, blob.size())?;
                let (members, skipped) = sevenz::list(&archive)?;
                let solid = sevenz::largest_solid_block(&archive);
                if solid > SOLID_WARN {
                    tracing::warn!(
                        dataset = %ds.id,
                        "{src_name}: a solid 7z with blocks of up to {} MiB: reading a member \
                         decodes its block from the start, so random reads are slow; read it \
                         once in order (`medimg prefetch`) or copy it out",
                        solid >> 20
                    );
                }
                acc.tree.skipped.extend(
                    skipped
                        .into_iter()
                        .map(|s| format!("{src_name}: skipped {s}")),
                );
                for m in members {
                    let location = Location {
                        blob: b,
                        offset: m.offset,
                        storage: Storage::SevenZ { file: m.file },
                    };
                    let member = (m.path, m.is_dir, m.size, m.mtime, location);
                    self.member_or_derived(ds, acc, blob, member, depth, None, &mut out)?;
                }
            }
            Format::Rar => match rar::list(&bytes, blob.size()) {
                Ok((members, skipped)) => {
                    acc.tree.skipped.extend(
                        skipped
                            .into_iter()
                            .map(|s| format!("{src_name}: skipped {s}")),
                    );
                    for m in members {
                        let location = Location {
                            blob: b,
                            offset: 0,
                            storage: Storage::Rar {
                                entry: m.entry,
                                len: blob.size(),
                            },
                        };
                        let member = (m.path, m.is_dir, m.size, m.mtime, location);
                        self.member_or_derived(ds, acc, blob, member, depth, None, &mut out)?;
                    }
                }
                // A valid archive libarchive cannot decode stays a file.
                Err(ArchiveError::Unsupported(why)) => {
                    acc.tree
                        .skipped
                        .push(format!("{src_name}: not expanded ({why}); shown as a file"));
                    return Ok(None);
                }
                Err(e) => return Err(e),
            },
            Format::Tar | Format::TarGz | Format::TarBz2 | Format::TarXz | Format::TarZst => {
                let codec = match format {
                    Format::TarBz2 => Some(Codec::Bzip2),
                    Format::TarXz => Some(Codec::Xz),
                    Format::TarZst => Some(Codec::Zstd),
                    _ => None,
                };
                let (members, skipped, cps) =
                    self.list_tar(blob, format == Format::TarGz, codec)?;
                acc.tree.skipped.extend(
                    skipped
                        .into_iter()
                        .map(|s| format!("{src_name}: skipped {s} (not a regular file)")),
                );
                let storage = match codec {
                    Some(c) => Storage::Packed(c),
                    None if format == Format::TarGz => Storage::Gzip,
                    None => Storage::Raw,
                };
                if storage == Storage::Raw {
                    // A plain tar's members are its bytes as they are: archives among them
                    // are expanded in place.
                    out = self.tar_nested(ds, acc, blob, &bytes, b, 0, members, depth)?;
                } else {
                    // Decoding a member inside needs the checkpoints before the index has
                    // them.
                    let cps = Arc::new(cps);
                    for m in members {
                        let location = Location {
                            blob: b,
                            offset: m.data_offset,
                            storage,
                        };
                        let member = (m.path, m.is_dir, m.size, m.mtime, location);
                        let cps = Some(cps.clone());
                        self.member_or_derived(ds, acc, blob, member, depth, cps, &mut out)?;
                    }
                    let cps = Arc::try_unwrap(cps).unwrap_or_else(|shared| (*shared).clone());
                    if !cps.is_empty() {
                        acc.checkpoints.push((b as usize, cps));
                    }
                }
            }
        }
        Ok(Some(out))
    }

    /// Push `member` of `outer` onto `out`: as it is, or, when it is an archive medimg can
    /// decode into a blob of its own, as the folder of its members ([`Vfs::derived`]).
    #[allow(clippy::too_many_arguments)]
    fn member_or_derived(
        &self,
        ds: &Dataset,
        acc: &mut Listing,
        outer: &Blob,
        member: Member,
        depth: u32,
        checkpoints: Option<Arc<Vec<Checkpoint>>>,
        out: &mut Vec<Member>,
    ) -> std::result::Result<(), ArchiveError> {
        let (path, is_dir, size, mtime, location) = &member;
        if !*is_dir
            && let Some(inner) = self.derived(
                ds,
                acc,
                outer,
                *location,
                *size,
                path,
                *mtime,
                depth,
                checkpoints,
            )?
        {
            out.extend(inner);
        } else {
            out.push(member);
        }
        Ok(())
    }

    /// The members of the archive at `path` inside `outer` (the member at `location`, `size`
    /// bytes once decoded; its name says which format), when it is one: it is decoded once
    /// into the cache as a blob of its own, which names the member it comes from, so the
    /// cache can drop it and have it decoded again ([`crate::index::Derivation`]), and listed
    /// like any blob, under a folder of its name. `None` keeps it a file: not an archive by
    /// its name, nested deeper than [`NESTED_DEPTH`], too large for the cache, or a member
    /// that fails its check or does not list (with a note why). A failure to read the outer
    /// archive's bytes fails the listing (the next listing may succeed).
    #[allow(clippy::too_many_arguments)]
    fn derived(
        &self,
        ds: &Dataset,
        acc: &mut Listing,
        outer: &Blob,
        location: Location,
        size: u64,
        path: &[String],
        mtime: i64,
        depth: u32,
        checkpoints: Option<Arc<Vec<Checkpoint>>>,
    ) -> std::result::Result<Option<Vec<Member>>, ArchiveError> {
        let Some(name) = path.last() else {
            return Ok(None);
        };
        let format = Format::of_name(name);
        if format == Format::File {
            return Ok(None);
        }
        let shown = path.join("/");
        let note = |acc: &mut Listing, why: String| {
            acc.tree.skipped.push(format!(
                "{shown}: an archive inside the archive, kept as a file: {why}"
            ));
        };
        if depth + 1 > NESTED_DEPTH {
            note(
                acc,
                format!("archives nest deeper than {NESTED_DEPTH} levels"),
            );
            return Ok(None);
        }
        // It is cached whole: half the cache at most, so listing it does not evict it.
        let room = self.fetcher.cache().limit() / 2;
        if size > room {
            note(
                acc,
                format!(
                    "decoded, its {size} bytes would take more than half the cache; raise \
                     --cache-size to expand it"
                ),
            );
            return Ok(None);
        }
        let part = Part::derived(outer, location, size, &ds.id, &shown);
        let inner = Blob::single(part.clone());
        let mark = (acc.blobs.len(), acc.checkpoints.len());
        let d = acc.blobs.len() as i64;
        acc.blobs.push(inner.clone());
        let undo = |acc: &mut Listing| {
            acc.blobs.truncate(mark.0);
            acc.checkpoints.truncate(mark.1);
        };
        // Decoded again only when the cache no longer has it (a re-index keeps it).
        if !self.fetcher.is_present(&inner, 0, size) {
            let mut bytes = self.reader.member_bytes(
                outer.clone(),
                location,
                size,
                &ds.id,
                &shown,
                checkpoints,
            );
            match self.fetcher.put_derived(&part, &mut bytes, None) {
                Ok(_) => {}
                // The member itself is bad (its check, its length): it stays a file, whose
                // reads say so.
                Err(e @ (FetchError::Derive { .. } | FetchError::TooBigWhole { .. })) => {
                    note(acc, e.to_string());
                    undo(acc);
                    return Ok(None);
                }
                Err(e) => return Err(ArchiveError::Read(Box::new(e))),
            }
        }
        match self.members(ds, acc, &inner, d, format, depth + 1) {
            Ok(Some(members)) => {
                let folder = (
                    path.to_vec(),
                    true,
                    0,
                    mtime,
                    Location {
                        blob: d,
                        offset: 0,
                        storage: Storage::Raw,
                    },
                );
                Ok(Some(
                    std::iter::once(folder)
                        .chain(
                            members
                                .into_iter()
                                .map(|(p, dir, s, t, l)| ([path, &p[..]].concat(), dir, s, t, l)),
                        )
                        .collect(),
                ))
            }
            Ok(None) => {
                undo(acc);
                Ok(None)
            }
            Err(e @ ArchiveError::Read(_)) => Err(e),
            Err(e) => {
                note(acc, e.to_string());
                undo(acc);
                Ok(None)
            }
        }
    }

    /// The members of a ZIP whose bytes start at `base` of blob `b` (`outer`, read through
    /// `r`), with the archives among them expanded: in place when stored as they are (see
    /// [`Vfs::nested`]), else decoded ([`Vfs::derived`]).
    #[allow(clippy::too_many_arguments)]
    fn zip_nested(
        &self,
        ds: &Dataset,
        acc: &mut Listing,
        outer: &Blob,
        r: &dyn ReadAt,
        b: i64,
        base: u64,
        members: Vec<zip::ZipEntry>,
        depth: u32,
    ) -> std::result::Result<Vec<Member>, ArchiveError> {
        let mut out = Vec::with_capacity(members.len());
        for m in members {
            let location = Location {
                blob: b,
                offset: base + m.header_offset,
                storage: Storage::Zip {
                    method: m.method,
                    compressed_size: m.compressed_size,
                    crc32: m.crc32,
                },
            };
            let stored = m.method == zip::METHOD_STORED && m.size == m.compressed_size;
            // Only a member named as an archive costs a read here (its local header).
            if !m.is_dir && stored && nestable(&m.path) {
                // The inner archive's bytes follow its local header.
                let at = base + m.header_offset;
                let header = r.read_at(at, zip::LOCAL_HEADER_LEN)?;
                if let Ok(rel) = zip::local_data_offset(&header)
                    && let Some(inner) = self.nested(
                        ds,
                        acc,
                        outer,
                        r,
                        b,
                        at + rel,
                        m.size,
                        &m.path,
                        m.mtime,
                        depth,
                    )?
                {
                    out.extend(inner);
                    continue;
                }
            }
            let member = (m.path, m.is_dir, m.size, m.mtime, location);
            if stored && nestable(&member.0) {
                // An in-place archive that did not list stays a file (noted).
                out.push(member);
            } else {
                self.member_or_derived(ds, acc, outer, member, depth, None, &mut out)?;
            }
        }
        Ok(out)
    }

    /// The members of a plain tar whose bytes start at `base` of blob `b` (`outer`, read
    /// through `r`), with the archives among them expanded: in place when they are ZIPs,
    /// plain tars or RARs (see [`Vfs::nested`]), else decoded ([`Vfs::derived`]).
    #[allow(clippy::too_many_arguments)]
    fn tar_nested(
        &self,
        ds: &Dataset,
        acc: &mut Listing,
        outer: &Blob,
        r: &dyn ReadAt,
        b: i64,
        base: u64,
        members: Vec<tar::TarEntry>,
        depth: u32,
    ) -> std::result::Result<Vec<Member>, ArchiveError> {
        let mut out = Vec::with_capacity(members.len());
        for m in members {
            let at = base + m.data_offset;
            if !m.is_dir
                && nestable(&m.path)
                && let Some(inner) =
                    self.nested(ds, acc, outer, r, b, at, m.size, &m.path, m.mtime, depth)?
            {
                out.extend(inner);
                continue;
            }
            let location = Location {
                blob: b,
                offset: at,
                storage: Storage::Raw,
            };
            let member = (m.path, m.is_dir, m.size, m.mtime, location);
            if nestable(&member.0) {
                out.push(member);
            } else {
                self.member_or_derived(ds, acc, outer, member, depth, None, &mut out)?;
            }
        }
        Ok(out)
    }

    /// The members of the archive at `path` (a ZIP, plain tar or RAR by its name, whose bytes
    /// are `[at, at + size)` of `r` as they are), under a folder of that name, when it is one
    /// and the depth allows ([`NESTED_DEPTH`]); `None` keeps it a file. An inner archive that
    /// does not list (truncated, hostile, not an archive) stays a file, with a note why; a
    /// failure to read its bytes fails the listing (it is not the archive's fault, and the
    /// next listing may succeed).
    #[allow(clippy::too_many_arguments)]
    fn nested(
        &self,
        ds: &Dataset,
        acc: &mut Listing,
        outer: &Blob,
        r: &dyn ReadAt,
        b: i64,
        at: u64,
        size: u64,
        path: &[String],
        mtime: i64,
        depth: u32,
    ) -> std::result::Result<Option<Vec<Member>>, ArchiveError> {
        let Some(name) = path.last().filter(|_| nestable(path)) else {
            return Ok(None);
        };
        let format = Format::of_name(name);
        if depth + 1 > NESTED_DEPTH {
            acc.tree.skipped.push(format!(
                "{}: not expanded: archives nest deeper than {NESTED_DEPTH} levels",
                path.join("/")
            ));
            return Ok(None);
        }
        let window = crate::archive::Window {
            inner: r,
            base: at,
            len: size,
        };
        // Archives decoded out of one that then fails to list are not kept.
        let mark = (acc.blobs.len(), acc.checkpoints.len());
        let listed = match format {
            Format::Zip => match zip::list(&window, size) {
                Ok(ms) => Ok(self.zip_nested(ds, acc, outer, r, b, at, ms, depth + 1)?),
                Err(e @ ArchiveError::Read(_)) => return Err(e),
                Err(e) => Err(e),
            },
            // A RAR's members are read in place too, by libarchive through the window; an
            // archive among them is decoded into a blob of its own.
            Format::Rar => match rar::list(&window, size) {
                Ok((ms, skipped)) => {
                    acc.tree.skipped.extend(
                        skipped
                            .into_iter()
                            .map(|s| format!("{}: skipped {s}", path.join("/"))),
                    );
                    let mut out = Vec::with_capacity(ms.len());
                    for m in ms {
                        let location = Location {
                            blob: b,
                            offset: at,
                            storage: Storage::Rar {
                                entry: m.entry,
                                len: size,
                            },
                        };
                        let member = (m.path, m.is_dir, m.size, m.mtime, location);
                        self.member_or_derived(ds, acc, outer, member, depth + 1, None, &mut out)?;
                    }
                    Ok(out)
                }
                Err(e @ ArchiveError::Read(_)) => return Err(e),
                Err(e) => Err(e),
            },
            _ => {
                let mut reader = std::io::BufReader::with_capacity(
                    256 << 10,
                    crate::archive::WindowReader::new(window),
                );
                let listed = tar::list(&mut reader);
                if let Some(e) = reader.get_mut().take_failure() {
                    return Err(e);
                }
                match listed {
                    Ok((ms, skipped)) => {
                        acc.tree.skipped.extend(skipped.into_iter().map(|s| {
                            format!("{}: skipped {s} (not a regular file)", path.join("/"))
                        }));
                        Ok(self.tar_nested(ds, acc, outer, r, b, at, ms, depth + 1)?)
                    }
                    Err(e) => Err(e),
                }
            }
        };
        match listed {
            Ok(members) => {
                let mut out = vec![(
                    path.to_vec(),
                    true,
                    0,
                    mtime,
                    Location {
                        blob: b,
                        offset: at,
                        storage: Storage::Raw,
                    },
                )];
                out.extend(
                    members
                        .into_iter()
                        .map(|(p, d, s, t, l)| ([path, &p[..]].concat(), d, s, t, l)),
                );
                Ok(Some(out))
            }
            Err(e) => {
                acc.blobs.truncate(mark.0);
                acc.checkpoints.truncate(mark.1);
                acc.tree.skipped.push(format!(
                    "{}: an archive inside the archive, kept as a file: {e}",
                    path.join("/")
                ));
                Ok(None)
            }
        }
    }

    /// An archive that cannot be listed; a refusal by its host is a denial.
    fn listing_failure(&self, ds: &Dataset, url: &str, source: ArchiveError) -> VfsError {
        if let ArchiveError::Read(inner) = &source
            && let Some(s) = inner
                .downcast_ref::<FetchError>()
                .and_then(FetchError::source_error)
            && s.is_denied()
        {
            return self.denied(ds, s);
        }
        VfsError::Listing {
            dataset: ds.id.clone(),
            url: url.to_string(),
            source,
        }
    }

    fn fetch_failure(&self, ds: &Dataset, what: String, source: FetchError) -> VfsError {
        match source.source_error() {
            Some(s) if s.is_denied() => self.denied(ds, s),
            _ => VfsError::Fetch {
                dataset: ds.id.clone(),
                what,
                source: Box::new(source),
            },
        }
    }

    fn resolve_failure(&self, ds: &Dataset, src: &Source, e: ResolveError) -> VfsError {
        match e {
            ResolveError::Upstream(s) if s.is_denied() => self.denied(ds, &s),
            e => VfsError::Resolve {
                dataset: ds.id.clone(),
                kind: src.type_name(),
                source: e,
            },
        }
    }

    /// A host refused `ds`: say what is missing and where to get it, and remember it.
    fn denied(&self, ds: &Dataset, e: &SourceError) -> VfsError {
        let message = crate::render::denial(ds, &self.credentials, e);
        if let Err(err) = self.index.put_denial(&ds.id, &message, now()) {
            tracing::warn!("{err}");
        }
        if let Some(&i) = self.dataset_by_id.get(&ds.id) {
            self.refresh_about(i);
        }
        VfsError::Denied {
            dataset: ds.id.clone(),
            message,
        }
    }

    /// One sequential pass over a tar (or a tar compressed with gzip or `codec`) blob: its
    /// members and, for a compressed one, the decompression checkpoints. A host that serves
    /// ranges is read with one streaming GET (blocks kept when the blob is small beside the
    /// cache); one that does not was already downloaded whole by the probe and is read from
    /// the cache.
    fn list_tar(
        &self,
        blob: &Blob,
        gzip: bool,
        codec: Option<Codec>,
    ) -> std::result::Result<TarListing, ArchiveError> {
        let read_err = |e: FetchError| ArchiveError::Read(Box::new(e));
        let input: Box<dyn Read + '_> = if blob.parts.iter().all(|p| p.ranged) {
            let keep = blob.size() <= self.fetcher.cache().limit() / 2;
            Box::new(self.fetcher.stream(blob, keep).map_err(read_err)?)
        } else {
            Box::new(BlobReader::new(self.fetcher.clone(), blob.clone(), 0))
        };
        // Large reads from the network; the parsers ask for small pieces.
        let input = std::io::BufReader::with_capacity(256 << 10, input);
        if let Some(codec) = codec {
            let mut unpack = Unpack::indexing(codec, input, crate::read::PACKED_SPAN);
            let (members, skipped) = tar::list(&mut unpack)?;
            // The rest of the stream (end-of-archive padding) still has to pass its checks.
            std::io::copy(&mut unpack, &mut std::io::sink())
                .map_err(|e| ArchiveError::Malformed(e.to_string()))?;
            let streams = unpack.streams();
            let cps = unpack.into_checkpoints();
            tracing::info!(
                url = %blob.url(),
                "{} tar indexed: {} members, {streams} compressed streams, {} places to start \
                 decoding",
                codec.name(),
                members.len(),
                cps.len()
            );
            return Ok((members, skipped, cps));
        }
        if !gzip {
            let (members, skipped) = tar::list(input)?;
            return Ok((members, skipped, Vec::new()));
        }
        let mut gz = GzStream::indexing(input, crate::read::GZ_SPAN);
        let (members, skipped) = tar::list(&mut gz)?;
        // The rest of the stream (end-of-archive padding) still has to pass its CRC check.
        std::io::copy(&mut gz, &mut std::io::sink())
            .map_err(|e| ArchiveError::Malformed(e.to_string()))?;
        Ok((members, skipped, gz.into_checkpoints()))
    }

    /// Open file `ino`; returns a handle for [`Vfs::read`].
    pub fn open(&self, ino: u64) -> Result<u64> {
        match decode(ino) {
            Ino::Syn(_) => match self.syn_attr(ino).ok_or(VfsError::NotFound)?.kind {
                Kind::File => Ok(0),
                Kind::Dir => Err(VfsError::IsDir),
            },
            Ino::Dir { .. } => Err(VfsError::IsDir),
            Ino::File(row) => Ok(self.reader.open(row)?),
        }
    }

    /// Forget handle `fh`.
    pub fn release(&self, fh: u64) {
        self.reader.release(fh);
    }

    /// Up to `size` bytes of file `ino` at `offset`, through handle `fh` from [`Vfs::open`], or
    /// 0 when the kernel did not open the file (no-open mode).
    pub fn read(&self, ino: u64, fh: u64, offset: u64, size: u32) -> Result<Bytes> {
        match decode(ino) {
            Ino::Syn(i) => match &self.syn.get(i).ok_or(VfsError::NotFound)?.content {
                SynContent::Dir(_) => Err(VfsError::IsDir),
                c => {
                    let (b, _) = self.syn_file(c).ok_or(VfsError::NotFound)?;
                    Ok(slice(&b, offset, size).into())
                }
            },
            Ino::Dir { .. } => Err(VfsError::IsDir),
            Ino::File(row) => self.read_file(row, fh, offset, size),
        }
    }

    fn read_file(&self, row: i64, fh: u64, offset: u64, size: u32) -> Result<Bytes> {
        let mut result = self.reader.read(row, fh, offset, size);
        if let Err(ReadError::NotSized) = result {
            // The kernel looks a file up (which sizes it) before reading it; this is for a
            // read that comes some other way.
            let e = self.index.entry(row)?.ok_or(VfsError::NotFound)?;
            self.sized(e)?;
            result = self.reader.read(row, fh, offset, size);
        }
        result.map_err(|e| {
            // A refusal is the dataset's: say what is missing, and remember it.
            let denied = match e.fetch_error().and_then(FetchError::source_error) {
                Some(s) if s.is_denied() => self
                    .index
                    .entry(row)
                    .ok()
                    .flatten()
                    .and_then(|entry| self.dataset_by_id.get(&entry.dataset).copied())
                    .map(|d| self.denied(&self.catalog.datasets[d], s)),
                _ => None,
            };
            if e.errno() == libc::ESTALE
                && let Some(d) = e.dataset().and_then(|id| self.dataset_by_id.get(id))
            {
                self.mark_changed(*d, &e.to_string());
            }
            denied.unwrap_or(VfsError::Read(e))
        })
    }

    /// Totals for statfs: (bytes of the cache limit, bytes used).
    pub fn cache_usage(&self) -> (u64, u64) {
        let c = self.fetcher.cache();
        (c.limit(), c.used())
    }
}

fn has_modality(d: &Dataset, v: &str) -> bool {
    d.modality.iter().any(|m| m == v)
}

fn has_organ(d: &Dataset, v: &str) -> bool {
    d.organ.iter().any(|o| o == v)
}

fn slice(b: &[u8], offset: u64, size: u32) -> Vec<u8> {
    let start = (offset as usize).min(b.len());
    let end = start.saturating_add(size as usize).min(b.len());
    b[start..end].to_vec()
}

/// What indexing a dataset gathers before it is written in one transaction.
#[derive(Default)]
struct Listing {
    blobs: Vec<Blob>,
    checkpoints: Vec<(usize, Vec<Checkpoint>)>,
    tree: TreeAcc,
}

impl Listing {
    /// A plain file whose size the listing did not give: its blob is [`Part::placeholder`]
    /// until a user asks for the size.
    fn unsized_file(&mut self, blob: Blob, dir: Vec<String>, name: String, mtime: i64) {
        let location = Location {
            blob: self.blobs.len() as i64,
            offset: 0,
            storage: Storage::Raw,
        };
        self.blobs.push(blob);
        self.tree
            .file([dir, vec![name]].concat(), None, mtime, location);
    }
}

/// Collects entries of one dataset, creating parent directories as needed.
#[derive(Default)]
struct TreeAcc {
    entries: Vec<NewEntry>,
    dirs: HashMap<Vec<String>, usize>,
    files: std::collections::HashSet<Vec<String>>,
    skipped: Vec<String>,
}

impl TreeAcc {
    fn dir(&mut self, path: &[String], mtime: i64) -> Option<Option<usize>> {
        if path.is_empty() {
            return Some(None);
        }
        if let Some(&i) = self.dirs.get(path) {
            return Some(Some(i));
        }
        if self.files.contains(path) {
            self.skipped.push(format!(
                "{} is both a file and a directory; keeping the file",
                path.join("/")
            ));
            return None;
        }
        let parent = self.dir(&path[..path.len() - 1], mtime)?;
        let i = self.entries.len();
        self.entries.push(NewEntry {
            parent,
            name: path[path.len() - 1].clone(),
            size: Some(0),
            mtime,
            location: None,
        });
        self.dirs.insert(path.to_vec(), i);
        Some(Some(i))
    }

    /// An archive member: a directory, or a file whose bytes are at `location`.
    fn member(
        &mut self,
        path: Vec<String>,
        is_dir: bool,
        size: u64,
        mtime: i64,
        location: Location,
    ) {
        if is_dir {
            self.dir(&path, mtime);
        } else {
            self.file(path, Some(size), mtime, location);
        }
    }

    fn file(&mut self, path: Vec<String>, size: Option<u64>, mtime: i64, location: Location) {
        if self.dirs.contains_key(&path) || self.files.contains(&path) {
            self.skipped.push(format!(
                "{} appears twice; keeping the first",
                path.join("/")
            ));
            return;
        }
        let Some(parent) = self.dir(&path[..path.len() - 1], mtime) else {
            return;
        };
        self.entries.push(NewEntry {
            parent,
            name: path[path.len() - 1].clone(),
            size,
            mtime,
            location: Some(location),
        });
        self.files.insert(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::BlockCache;
    use crate::source::Upstream;
    use crate::source::mock::{Fault, Faulty, MockUpstream};
    use std::io::Write;

    const CATALOG: &str = r#"
[[dataset]]
id = "cxr"
title = "Chest X-rays"
modality = ["X-ray"]
organ = ["lung", "bone"]
access = "open"
[[dataset.source]]
type = "http"
url = "http://up/cxr.zip"
[[dataset.source]]
type = "http"
url = "http://up/labels.csv"

[[dataset]]
id = "later"
title = "Not pinned"
modality = ["MRI"]
organ = ["brain"]
access = "account"
unsupported = "no pinned download source yet"
"#;

    fn image(i: usize, n: usize) -> Vec<u8> {
        (0..n).map(|k| ((k * 31 + i * 7) % 253) as u8).collect()
    }

    /// 40 files of 3000 bytes in two folders, half deflated: about 30 blocks of 4 KiB.
    fn archive() -> Vec<u8> {
        let mut w = ::zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for i in 0..40 {
            let m = if i % 2 == 0 {
                ::zip::CompressionMethod::Stored
            } else {
                ::zip::CompressionMethod::Deflated
            };
            let opts = ::zip::write::SimpleFileOptions::default().compression_method(m);
            let dir = if i < 20 {
                "train/NORMAL"
            } else {
                "train/PNEUMONIA"
            };
            w.start_file(format!("{dir}/{i:03}.png"), opts).unwrap();
            w.write_all(&image(i, 3000)).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Fixture {
            Fixture {
                dir: tempfile::tempdir().unwrap(),
            }
        }

        fn vfs(&self, up: Arc<dyn Upstream>, limit: u64) -> Vfs {
            self.vfs_with(CATALOG, up, limit, 4096)
        }

        fn vfs_with(&self, catalog: &str, up: Arc<dyn Upstream>, limit: u64, block: u64) -> Vfs {
            let catalog = Catalog::parse(catalog, "test").unwrap();
            let cache = Arc::new(BlockCache::open(self.dir.path(), limit).unwrap());
            let index = Index::open(&self.dir.path().join("index.sqlite")).unwrap();
            Vfs::new(catalog, index, Arc::new(Fetcher::new(up, cache, block)))
        }
    }

    fn mock() -> Arc<MockUpstream> {
        let up = Arc::new(MockUpstream::new());
        up.put("http://up/cxr.zip", archive());
        up.put("http://up/labels.csv", b"id,label\n1,NORMAL\n".to_vec());
        up
    }

    fn walk(vfs: &Vfs, path: &str) -> Result<Attr> {
        let mut a = vfs.getattr(1)?;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            a = vfs.lookup(a.ino, part)?;
        }
        Ok(a)
    }

    fn names(vfs: &Vfs, path: &str) -> Vec<String> {
        let ino = walk(vfs, path).unwrap().ino;
        let mut out = Vec::new();
        let mut cookie = 0;
        loop {
            let page = vfs.readdir(ino, cookie, 7).unwrap();
            let Some(last) = page.last() else { break };
            cookie = last.next;
            out.extend(page.into_iter().map(|i| i.name));
        }
        out.retain(|n| n != "." && n != "..");
        out
    }

    fn read_all(vfs: &Vfs, path: &str) -> Result<Vec<u8>> {
        let a = walk(vfs, path)?;
        let fh = vfs.open(a.ino)?;
        let mut out = Vec::new();
        loop {
            let chunk = vfs.read(a.ino, fh, out.len() as u64, 1000)?;
            if chunk.is_empty() {
                break;
            }
            out.extend(chunk);
        }
        vfs.release(fh);
        Ok(out)
    }

    #[test]
    fn a_kept_listing_rest_continues_the_listing_exactly() {
        let up = mock();
        let f = Fixture::new();
        let vfs = f.vfs(up.clone(), 1 << 20);
        let dir = walk(&vfs, "datasets/cxr").unwrap().ino;
        let full: Vec<String> = vfs
            .readdir(dir, 0, 1000)
            .unwrap()
            .into_iter()
            .map(|i| i.name)
            .collect();
        assert!(full.len() >= 4, "{full:?}");
        // A reply took the first two items of a batch of four; the other two are kept.
        let mut batch = vfs.readdir(dir, 0, 4).unwrap();
        let rest = batch.split_off(2);
        let cookie = batch[1].next;
        vfs.keep_listing(dir, cookie, rest.clone());
        let next = vfs.readdir(dir, cookie, 4).unwrap();
        assert_eq!(next, rest, "the kept rest answers the continuing call");
        let mut names: Vec<String> = batch.iter().chain(&next).map(|i| i.name.clone()).collect();
        let after = next.last().map_or(cookie, |i| i.next);
        names.extend(
            vfs.readdir(dir, after, 1000)
                .unwrap()
                .into_iter()
                .map(|i| i.name),
        );
        assert_eq!(names, full);
        // Taken once: the same call again is answered from the index, identically.
        assert_eq!(vfs.readdir(dir, cookie, 2).unwrap(), rest[..2].to_vec());
    }

    #[test]
    fn generated_tree_has_both_views_and_costs_no_request() {
        let up = mock();
        let f = Fixture::new();
        let vfs = f.vfs(up.clone(), 1 << 20);
        assert_eq!(
            names(&vfs, ""),
            [
                "README.md",
                "catalog.csv",
                "about",
                "datasets",
                "classes",
                "modality",
                "organ"
            ]
        );
        assert_eq!(names(&vfs, "about"), ["cxr.md", "later.md"]);
        assert_eq!(names(&vfs, "datasets"), ["cxr", "later"]);
        assert_eq!(names(&vfs, "modality/X-ray"), ["lung", "bone"]);
        assert_eq!(names(&vfs, "modality/X-ray/bone"), ["cxr"]);
        assert_eq!(names(&vfs, "organ/brain/MRI"), ["later"]);
        assert!(
            walk(&vfs, "modality/CT").is_err(),
            "no CT dataset in this catalog"
        );
        let csv = read_all(&vfs, "catalog.csv").unwrap();
        assert!(
            String::from_utf8(csv)
                .unwrap()
                .contains("cxr,Chest X-rays,X-ray,lung;bone")
        );
        assert_eq!(up.request_count(), 0);
    }

    #[test]
    fn dataset_is_indexed_once_then_metadata_is_free_and_reads_are_lazy() {
        let up = mock();
        let f = Fixture::new();
        let vfs = f.vfs(up.clone(), 1 << 20);
        assert_eq!(names(&vfs, "datasets/cxr"), ["train", "labels.csv"]);
        let after_index = up.request_count();
        // Zip: probe (block 0), the last block (EOCD), the one before (the directory starts
        // there); csv: probe (whole in its first block). Never the whole 70 KB archive.
        assert_eq!(after_index, 4, "{:?}", up.requests());
        assert_eq!(names(&vfs, "datasets/cxr/train/NORMAL").len(), 20);
        let a = walk(&vfs, "modality/X-ray/lung/cxr/train/PNEUMONIA/021.png").unwrap();
        assert_eq!((a.size, a.kind, a.nlink), (3000, Kind::File, 5));
        let b = walk(&vfs, "organ/bone/X-ray/cxr/train/PNEUMONIA/021.png").unwrap();
        assert_eq!(a.ino, b.ino, "one file, one inode, from every path");
        let d1 = walk(&vfs, "datasets/cxr/train").unwrap();
        let d2 = walk(&vfs, "organ/lung/X-ray/cxr/train").unwrap();
        assert_ne!(d1.ino, d2.ino, "directories get an inode per path");
        assert_eq!(
            up.request_count(),
            after_index,
            "metadata touched the network"
        );
        // One deflated image in the middle: only the block(s) it spans.
        assert_eq!(
            read_all(&vfs, "datasets/cxr/train/PNEUMONIA/021.png").unwrap(),
            image(21, 3000)
        );
        let reads = up.request_count() - after_index;
        assert!(
            (1..=2).contains(&reads),
            "{reads} requests for one 3 KB image"
        );
        assert_eq!(
            read_all(&vfs, "datasets/cxr/labels.csv").unwrap(),
            b"id,label\n1,NORMAL\n"
        );
    }

    #[test]
    fn reads_without_an_open_share_one_handle_per_inode() {
        let up = mock();
        let f = Fixture::new();
        let vfs = f.vfs(up.clone(), 1 << 20);
        let a = walk(&vfs, "datasets/cxr/train/PNEUMONIA/021.png").unwrap();
        let mut out = Vec::new();
        let mut chunks = Vec::new();
        loop {
            let chunk = vfs.read(a.ino, 0, out.len() as u64, 1000).unwrap();
            if chunk.is_empty() {
                break;
            }
            out.extend_from_slice(&chunk);
            chunks.push(chunk);
        }
        assert_eq!(out, image(21, 3000));
        // Answered from the one decoded copy, not copied out of it for each read.
        for w in chunks.windows(2) {
            assert_eq!(w[0].as_ptr().wrapping_add(w[0].len()), w[1].as_ptr());
        }
        // Read in pieces: kept while it is read, dropped once every byte was served.
        assert_eq!(vfs.reader.decoded_usage(), (0, 0));
        let d = walk(&vfs, "datasets/cxr/train").unwrap();
        assert!(matches!(vfs.read(d.ino, 0, 0, 10), Err(VfsError::IsDir)));
    }

    #[test]
    fn a_restart_on_the_same_cache_costs_no_request_for_what_was_seen() {
        let f = Fixture::new();
        {
            let vfs = f.vfs(mock(), 1 << 20);
            assert_eq!(
                read_all(&vfs, "datasets/cxr/train/NORMAL/004.png").unwrap(),
                image(4, 3000)
            );
        }
        let up = mock();
        let vfs = f.vfs(up.clone(), 1 << 20);
        assert_eq!(names(&vfs, "datasets/cxr/train/NORMAL").len(), 20);
        assert_eq!(
            read_all(&vfs, "datasets/cxr/train/NORMAL/004.png").unwrap(),
            image(4, 3000)
        );
        assert_eq!(up.request_count(), 0, "{:?}", up.requests());
    }

    #[test]
    fn an_upstream_changed_under_its_etag_is_stale_then_a_restart_indexes_the_new_version() {
        let f = Fixture::new();
        let up = mock();
        {
            let vfs = f.vfs(up.clone(), 1 << 20);
            assert_eq!(
                read_all(&vfs, "datasets/cxr/train/NORMAL/004.png").unwrap(),
                image(4, 3000)
            );
            // The host now serves other bytes under the same URL (another ETag).
            let mut w = ::zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
            w.start_file(
                "train/NORMAL/004.png",
                ::zip::write::SimpleFileOptions::default(),
            )
            .unwrap();
            w.write_all(b"the new version").unwrap();
            up.put("http://up/cxr.zip", w.finish().unwrap().into_inner());
            // Read-ahead cached the whole small archive: drop it, so reads ask the host.
            vfs.clear_cache(Some("cxr")).unwrap();
            let e = read_all(&vfs, "datasets/cxr/train/PNEUMONIA/039.png").unwrap_err();
            assert_eq!(e.errno(), libc::ESTALE, "{e}");
            assert!(e.to_string().contains("HTTP 412 to If-Match"), "{e}");
            let text = about(&vfs, "cxr");
            assert!(
                text.contains("## Changed upstream") && text.contains("Restart medimg"),
                "{text}"
            );
        }
        // The next start does not trust the old listing: it indexes the new version.
        let vfs = f.vfs(up.clone(), 1 << 20);
        assert_eq!(names(&vfs, "datasets/cxr/train/NORMAL"), ["004.png"]);
        assert_eq!(
            read_all(&vfs, "datasets/cxr/train/NORMAL/004.png").unwrap(),
            b"the new version"
        );
        let text = about(&vfs, "cxr");
        assert!(
            text.contains("## Changed upstream") && text.contains("indexed the new version"),
            "{text}"
        );
        let st = vfs.dataset_status().unwrap();
        assert!(st[0].changed.as_ref().unwrap().reindexed_at.is_some());
        // And the one after trusts the new listing.
        drop(vfs);
        let up2 = mock();
        let vfs = f.vfs(up2.clone(), 1 << 20);
        assert_eq!(names(&vfs, "datasets/cxr/train/NORMAL"), ["004.png"]);
        assert_eq!(up2.request_count(), 0, "{:?}", up2.requests());
    }

    #[test]
    fn every_file_reads_back_byte_for_byte_within_a_small_cache() {
        let up = mock();
        let f = Fixture::new();
        // Room for 6 blocks of the ~30: eviction runs all the time.
        let vfs = f.vfs(up.clone(), 6 * 4096);
        for i in 0..40 {
            let dir = if i < 20 { "NORMAL" } else { "PNEUMONIA" };
            let got = read_all(&vfs, &format!("datasets/cxr/train/{dir}/{i:03}.png")).unwrap();
            assert_eq!(got, image(i, 3000), "file {i}");
            assert!(vfs.fetcher().cache().used() <= 6 * 4096);
        }
    }

    #[test]
    fn a_corrupt_download_is_refetched_and_never_served() {
        // Call 0 probes, 1 reads the tail; 2 fetches the member's block, corrupted once.
        let up = mock();
        let faulty = Arc::new(Faulty::new(
            MockUpstreamRef(up.clone()),
            Fault::Corrupt,
            3..4,
        ));
        let f = Fixture::new();
        let vfs = f.vfs(faulty, 1 << 20);
        let path = "datasets/cxr/train/PNEUMONIA/031.png";
        walk(&vfs, path).unwrap();
        assert_eq!(read_all(&vfs, path).unwrap(), image(31, 3000));
    }

    fn tar_gz_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = ::tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = ::tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, *data).unwrap();
        }
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(&b.into_inner().unwrap()).unwrap();
        e.finish().unwrap()
    }

    const NESTED: &str = r#"
[[dataset]]
id = "nest"
title = "Archives inside compressed archives"
modality = ["CT"]
organ = ["lung"]
access = "open"
[[dataset.source]]
type = "http"
url = "http://up/outer.zip"
[[dataset.source]]
type = "http"
url = "http://up/outer.tar.gz"

[[dataset]]
id = "nest-bad"
title = "A damaged archive inside an archive"
modality = ["CT"]
organ = ["lung"]
access = "open"
[[dataset.source]]
type = "http"
url = "http://up/bad.zip"
"#;

    #[test]
    fn archives_inside_compressed_archives_are_decoded_once_checked_and_made_again() {
        let images: Vec<(String, Vec<u8>)> = (0..12)
            .map(|i| (format!("img/{i:02}.png"), image(i, 2500 + i * 100)))
            .collect();
        let inner: Vec<(&str, &[u8], bool)> = images
            .iter()
            .enumerate()
            .map(|(i, (n, d))| (n.as_str(), &d[..], i % 2 == 0))
            .collect();
        let inner_zip = crate::archive::zip::tests::make_zip(&inner);
        let inner_tgz = tar_gz_of(&[("scan.nii", &image(99, 5000))]);
        // The deeper one: a deflated zip inside the deflated zip.
        let deepest =
            crate::archive::zip::tests::make_zip(&[("deep.txt", b"two levels down", true)]);
        let middle = crate::archive::zip::tests::make_zip(&[
            ("deepest.zip", &deepest, true),
            ("m.txt", b"m", false),
        ]);
        // A member whose recorded CRC is not its content's: flip it in both headers.
        // (It marks its dataset changed: a dataset of its own.)
        let bad_inner = crate::archive::zip::tests::make_zip(&[("x.png", &image(7, 900), false)]);
        let mut bad = crate::archive::zip::tests::make_zip(&[("d/bad.zip", &bad_inner, true)]);
        let crc = crc32fast::hash(&bad_inner).to_le_bytes();
        let mut flipped = 0;
        for i in 0..bad.len() - 4 {
            if bad[i..i + 4] == crc {
                bad[i] ^= 0xff;
                flipped += 1;
            }
        }
        assert_eq!(flipped, 2, "the CRC is in the local and the central header");
        let outer = crate::archive::zip::tests::make_zip(&[
            ("a/inner.zip", &inner_zip, true),
            ("b/inner.tar.gz", &inner_tgz, false),
            ("c/middle.zip", &middle, true),
        ]);
        let up = Arc::new(MockUpstream::new());
        up.put("http://up/outer.zip", outer);
        up.put("http://up/bad.zip", bad);
        up.put(
            "http://up/outer.tar.gz",
            tar_gz_of(&[("t/inner.zip", &inner_zip), ("t/readme.txt", b"hi")]),
        );
        let f = Fixture::new();
        let vfs = f.vfs_with(NESTED, up.clone(), 8 << 20, 4096);
        let mut want = names_of(&images);
        want.sort();
        for dir in [
            "datasets/nest/a/inner.zip/img",
            "datasets/nest/t/inner.zip/img",
        ] {
            assert_eq!(walk(&vfs, dir).unwrap().kind, Kind::Dir, "{dir}");
            let mut got = names(&vfs, dir);
            got.sort();
            assert_eq!(got, want, "{dir}");
        }
        assert_eq!(
            read_all(&vfs, "datasets/nest/b/inner.tar.gz/scan.nii").unwrap(),
            image(99, 5000)
        );
        assert_eq!(
            read_all(&vfs, "datasets/nest/c/middle.zip/deepest.zip/deep.txt").unwrap(),
            b"two levels down"
        );
        // The bad member stays a file, whose reads fail; nothing of it is in the cache.
        let bad = walk(&vfs, "datasets/nest-bad/d/bad.zip").unwrap();
        assert_eq!(bad.kind, Kind::File);
        let e = read_all(&vfs, "datasets/nest-bad/d/bad.zip").unwrap_err();
        assert!(matches!(e.errno(), libc::EIO | libc::ESTALE), "{e}");
        let keys: Vec<_> = vfs.index.blob_keys().unwrap();
        assert_eq!(keys.iter().filter(|(d, _)| d == "nest-bad").count(), 1);
        let indexed: std::collections::HashSet<_> = keys.into_iter().map(|(_, k)| k).collect();
        let cached = vfs.fetcher.cache().bytes_by_blob();
        assert!(
            cached.keys().all(|k| indexed.contains(k)),
            "a block of no indexed blob"
        );
        for (name, data) in &images {
            for dir in ["datasets/nest/a/inner.zip", "datasets/nest/t/inner.zip"] {
                let path = format!("{dir}/{name}");
                assert_eq!(&read_all(&vfs, &path).unwrap(), data, "{path}");
            }
        }
        // Indexed and read: the inner archives' bytes come from the cache, not the host.
        let before = up.request_count();
        read_all(&vfs, "datasets/nest/a/inner.zip/img/03.png").unwrap();
        assert_eq!(up.request_count(), before);
        // The cache dropped: the inner archives are decoded again from their outer ones.
        vfs.clear_cache(Some("nest")).unwrap();
        assert_eq!(
            read_all(&vfs, "datasets/nest/t/inner.zip/img/05.png").unwrap(),
            images[5].1
        );
        assert_eq!(
            read_all(&vfs, "datasets/nest/c/middle.zip/deepest.zip/deep.txt").unwrap(),
            b"two levels down"
        );
        drop(vfs);
        // After a restart the listing is the index's, and the derivations with it.
        let vfs = f.vfs_with(NESTED, up.clone(), 8 << 20, 4096);
        let before = up.request_count();
        assert_eq!(names(&vfs, "datasets/nest/a/inner.zip/img").len(), 12);
        assert_eq!(up.request_count(), before, "listing asked the host");
        vfs.clear_cache(None).unwrap();
        assert_eq!(
            read_all(&vfs, "datasets/nest/a/inner.zip/img/11.png").unwrap(),
            images[11].1
        );
    }

    fn names_of(files: &[(String, Vec<u8>)]) -> Vec<String> {
        files
            .iter()
            .map(|(n, _)| n.trim_start_matches("img/").to_string())
            .collect()
    }

    #[test]
    fn a_damaged_local_header_in_the_cache_is_dropped_and_read_again() {
        // A block can come damaged with a neighbour whose own CRC passes: the damage then sits
        // in the cache, in this member's local header, which no CRC covers.
        let up = mock();
        let f = Fixture::new();
        let path = "datasets/cxr/train/PNEUMONIA/031.png";
        {
            let vfs = f.vfs(up.clone(), 1 << 20);
            for i in 28..34 {
                let dir = if i < 20 { "NORMAL" } else { "PNEUMONIA" };
                let p = format!("datasets/cxr/train/{dir}/{i:03}.png");
                assert_eq!(read_all(&vfs, &p).unwrap(), image(i, 3000));
            }
            vfs.fetcher().cache().flush().unwrap();
        }
        let name = b"train/PNEUMONIA/031.png";
        let mut flipped = 0;
        for blob in std::fs::read_dir(f.dir.path().join("blocks")).unwrap() {
            for block in std::fs::read_dir(blob.unwrap().path()).unwrap() {
                let block = block.unwrap().path();
                let mut bytes = std::fs::read(&block).unwrap();
                let found = bytes.windows(name.len()).position(|w| w == name);
                if let Some(at) =
                    found.filter(|&at| at >= 30 && bytes[at - 30..at - 26] == *b"PK\x03\x04")
                {
                    bytes[at - 30] ^= 0xff;
                    std::fs::write(&block, bytes).unwrap();
                    flipped += 1;
                }
            }
        }
        assert_eq!(flipped, 1, "the local header is in one block");
        let vfs = f.vfs(up.clone(), 1 << 20);
        assert_eq!(read_all(&vfs, path).unwrap(), image(31, 3000));
    }

    fn about(vfs: &Vfs, id: &str) -> String {
        String::from_utf8(read_all(vfs, &format!("about/{id}.md")).unwrap()).unwrap()
    }

    const LABELLED: &str = r#"
[[dataset]]
id = "derm"
title = "Skin"
modality = ["Dermoscopy"]
organ = ["skin"]
access = "open"
[[dataset.source]]
type = "http"
url = "http://up/images.zip"
[[dataset.source]]
type = "http"
url = "http://up/meta.csv"
[[dataset.labels]]
table = "meta.csv"
image = "{image_id}.jpg"
label = "dx"
split_column = "split"
"#;

    /// 12 flat images in two folders; the table labels 11 of them and names one missing.
    fn labelled_mock() -> Arc<MockUpstream> {
        let mut w = ::zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for i in 0..12 {
            let part = if i < 6 { "part_1" } else { "part_2" };
            w.start_file(
                format!("images/{part}/img_{i:03}.jpg"),
                ::zip::write::SimpleFileOptions::default(),
            )
            .unwrap();
            w.write_all(&image(i, 2000)).unwrap();
        }
        let up = Arc::new(MockUpstream::new());
        up.put("http://up/images.zip", w.finish().unwrap().into_inner());
        let mut csv = String::from("image_id,dx,split\n");
        for i in 0..11 {
            let dx = ["nv", "mel", "bcc"][i % 3];
            let split = if i % 4 == 0 { "test" } else { "train" };
            csv.push_str(&format!("img_{i:03},{dx},{split}\n"));
        }
        csv.push_str("img_099,nv,train\n");
        up.put("http://up/meta.csv", csv.into_bytes());
        up
    }

    #[test]
    fn classes_view_is_made_at_indexing_names_the_same_files_and_costs_no_request_after() {
        let f = Fixture::new();
        let up = labelled_mock();
        let vfs = f.vfs_with(LABELLED, up.clone(), 1 << 20, 4096);
        assert_eq!(names(&vfs, "classes"), ["derm"]);
        assert_eq!(up.request_count(), 0, "classes/ itself is the catalog's");
        assert_eq!(names(&vfs, "datasets/derm"), ["images", "meta.csv"]);
        let indexed = up.request_count();
        assert_eq!(names(&vfs, "classes/derm"), ["test", "train"]);
        assert_eq!(names(&vfs, "classes/derm/train"), ["bcc", "mel", "nv"]);
        assert_eq!(
            names(&vfs, "classes/derm/train/nv"),
            ["img_003.jpg", "img_006.jpg", "img_009.jpg"]
        );
        assert_eq!(names(&vfs, "classes/derm/test/nv"), ["img_000.jpg"]);
        assert_eq!(
            up.request_count(),
            indexed,
            "the table was read at indexing"
        );
        // The same file: one inode; its links count the name under classes/.
        let c = walk(&vfs, "classes/derm/train/nv/img_006.jpg").unwrap();
        let d = walk(&vfs, "datasets/derm/images/part_2/img_006.jpg").unwrap();
        assert_eq!(c.ino, d.ino);
        assert_eq!(
            (c.nlink, d.nlink),
            (4, 4),
            "datasets, modality, organ, classes"
        );
        let unlabelled = walk(&vfs, "datasets/derm/images/part_2/img_011.jpg").unwrap();
        assert_eq!(unlabelled.nlink, 3);
        assert_eq!(
            read_all(&vfs, "classes/derm/train/nv/img_006.jpg").unwrap(),
            image(6, 2000)
        );
        let up_dir = vfs
            .readdir(walk(&vfs, "classes/derm/train/nv").unwrap().ino, 0, 10)
            .unwrap();
        assert_eq!(
            up_dir[1].attr.ino,
            walk(&vfs, "classes/derm/train").unwrap().ino
        );
        let a = about(&vfs, "derm");
        assert!(a.contains("| train/nv | 3 |"), "{a}");
        assert!(a.contains("row 13: img_099.jpg"), "{a}");
        assert!(a.contains("images/part_2/img_011.jpg"), "{a}");
        assert!(a.contains("- folders: classes/derm"), "{a}");
        drop(vfs);
        // After a restart: the tree is in the index; no request.
        let up = labelled_mock();
        let vfs = f.vfs_with(LABELLED, up.clone(), 1 << 20, 4096);
        assert_eq!(names(&vfs, "classes/derm/test"), ["bcc", "mel", "nv"]);
        let c2 = walk(&vfs, "classes/derm/train/nv/img_006.jpg").unwrap();
        assert_eq!(c2.ino, c.ino);
        assert_eq!(up.request_count(), 0, "{:?}", up.requests());
        drop(vfs);
        // Another label spec makes the tree again from the table (the cache holds it).
        let by_dx = LABELLED.replace("split_column = \"split\"\n", "");
        let vfs = f.vfs_with(&by_dx, up.clone(), 1 << 20, 4096);
        assert_eq!(names(&vfs, "classes/derm"), ["bcc", "mel", "nv"]);
        assert_eq!(names(&vfs, "classes/derm/nv").len(), 4);
        assert_eq!(
            walk(&vfs, "datasets/derm/images/part_1/img_000.jpg")
                .unwrap()
                .nlink,
            4
        );
        assert_eq!(up.request_count(), 0, "{:?}", up.requests());
    }

    /// An upstream whose table answers 503 past its first block while `down` is set.
    struct TableOutage {
        inner: Arc<MockUpstream>,
        down: std::sync::atomic::AtomicBool,
    }

    impl Upstream for TableOutage {
        fn fetch(
            &self,
            req: &crate::source::FetchRequest<'_>,
        ) -> std::result::Result<crate::source::Response<'_>, SourceError> {
            if self.down.load(Ordering::SeqCst)
                && req.url.ends_with("meta.csv")
                && req.range.as_ref().is_some_and(|r| r.start > 0)
            {
                return Err(SourceError::Status {
                    url: req.url.to_string(),
                    status: 503,
                });
            }
            self.inner.fetch(req)
        }

        fn api(
            &self,
            req: &crate::source::ApiRequest<'_>,
        ) -> std::result::Result<crate::source::ApiReply, SourceError> {
            self.inner.api(req)
        }
    }

    #[test]
    fn a_table_that_cannot_be_read_at_indexing_is_read_when_classes_is_entered() {
        let f = Fixture::new();
        let up = labelled_mock();
        // A table of three blocks: its probe brings the first only.
        let mut csv = String::from("image_id,dx,split,note\n");
        for i in 0..12 {
            csv.push_str(&format!("img_{i:03},nv,train,{}\n", "x".repeat(800)));
        }
        up.put("http://up/meta.csv", csv.into_bytes());
        let outage = Arc::new(TableOutage {
            inner: up,
            down: std::sync::atomic::AtomicBool::new(true),
        });
        let vfs = f.vfs_with(LABELLED, outage.clone(), 1 << 20, 4096);
        // The dataset's own files list; its classes wait for the table.
        assert_eq!(names(&vfs, "datasets/derm"), ["images", "meta.csv"]);
        let e = walk(&vfs, "classes/derm/train").unwrap_err();
        assert_eq!(e.errno(), libc::EIO, "{e}");
        assert!(about(&vfs, "derm").contains("Not made yet"));
        outage.down.store(false, Ordering::SeqCst);
        assert_eq!(names(&vfs, "classes/derm/train"), ["nv"]);
        assert_eq!(names(&vfs, "classes/derm/train/nv").len(), 12);
        let a = about(&vfs, "derm");
        assert!(a.contains("| train/nv | 12 |"), "{a}");
        assert!(
            a.contains("Every row of its tables placed its files."),
            "{a}"
        );
    }

    #[test]
    fn a_member_that_never_matches_its_crc_is_stale_and_marks_its_dataset() {
        let mut z = archive();
        // Damage the stored bytes of 000.png (right after its 30 + 20 byte local header).
        z[30 + 20 + 100] ^= 0xff;
        let up = Arc::new(MockUpstream::new());
        up.put("http://up/cxr.zip", z);
        up.put("http://up/labels.csv", b"x".to_vec());
        let f = Fixture::new();
        let vfs = f.vfs(up.clone(), 1 << 20);
        assert!(!about(&vfs, "cxr").contains("Changed upstream"));
        let e = read_all(&vfs, "datasets/cxr/train/NORMAL/000.png").unwrap_err();
        assert_eq!(e.errno(), libc::ESTALE);
        let msg = e.to_string();
        assert!(
            msg.contains("cxr") && msg.contains("000.png") && msg.contains("CRC"),
            "{msg}"
        );
        // Marked: about/ and the status say what changed.
        let text = about(&vfs, "cxr");
        assert!(
            text.contains("## Changed upstream") && text.contains("000.png"),
            "{text}"
        );
        let st = vfs.dataset_status().unwrap();
        let c = st[0].changed.as_ref().expect("marked");
        assert!(
            c.message.contains("CRC") && c.reindexed_at.is_none(),
            "{c:?}"
        );
        // The bad block was dropped, not kept.
        let blob_key = vfs.index.blob(1).unwrap().unwrap().parts[0].key;
        assert!(!vfs.fetcher().cache().contains(crate::cache::BlockKey {
            blob: blob_key,
            index: 0
        }));
    }

    /// Bytes that deflate barely shrinks (a xorshift stream), like compressed image data.
    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn members_of_every_size_cost_one_request_per_block_read_in_kernel_sized_pieces() {
        // The sizes around the old cliff: a member between the decoded budget (32 MiB) and the
        // size decoded whole (64 MiB) evicted itself and was fetched and inflated again for
        // every 1 MiB read. With a member larger than the cache and the blocks kept in memory
        // (48 MiB), each redo is a refetch.
        const MIB: usize = 1 << 20;
        let sizes = [3 * MIB, 12 * MIB, 20 * MIB, 60 * MIB];
        let files: Vec<(String, Vec<u8>)> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| (format!("m{i}.bin"), noise(n, i as u64 + 1)))
            .collect();
        let mut w = ::zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, data) in &files {
            let opts = ::zip::write::SimpleFileOptions::default()
                .compression_method(::zip::CompressionMethod::Deflated)
                .large_file(data.len() > 32 * MIB);
            w.start_file(name.as_str(), opts).unwrap();
            w.write_all(data).unwrap();
        }
        let up = Arc::new(MockUpstream::new());
        up.put("http://up/big.zip", w.finish().unwrap().into_inner());
        let catalog = r#"
[[dataset]]
id = "big"
title = "Large members"
modality = ["CT"]
organ = ["lung"]
access = "open"
[[dataset.source]]
type = "http"
url = "http://up/big.zip"
"#;
        let f = Fixture::new();
        let vfs = f.vfs_with(catalog, up.clone(), 8 << 20, 1 << 20);
        for (name, data) in &files {
            let a = walk(&vfs, &format!("datasets/big/{name}")).unwrap();
            let before = up.request_count();
            let mut got = Vec::with_capacity(data.len());
            while got.len() < data.len() {
                let chunk = vfs.read(a.ino, 0, got.len() as u64, MIB as u32).unwrap();
                assert!(!chunk.is_empty());
                got.extend_from_slice(&chunk);
            }
            assert!(got == *data, "{name}: bytes differ");
            let blocks = data.len().div_ceil(MIB) + 2;
            let requests = up.request_count() - before;
            assert!(
                requests <= blocks,
                "{name}: {requests} requests for {blocks} blocks"
            );
            assert_eq!(
                vfs.reader.decoded_usage(),
                (0, 0),
                "{name}: kept after it was read"
            );
        }
    }

    #[test]
    fn unsupported_dataset_is_visible_but_reading_it_says_why() {
        let f = Fixture::new();
        let up = mock();
        let vfs = f.vfs(up.clone(), 1 << 20);
        let a = walk(&vfs, "datasets/later").unwrap();
        assert_eq!(a.kind, Kind::Dir);
        let e = vfs.readdir(a.ino, 0, 10).unwrap_err();
        assert_eq!(e.errno(), libc::EIO);
        assert!(e.to_string().contains("later") && e.to_string().contains("no pinned"));
        assert_eq!(up.request_count(), 0);
    }

    #[test]
    fn concurrent_readers_of_one_block_cause_one_request() {
        let up = mock();
        let f = Fixture::new();
        let vfs = f.vfs(up.clone(), 1 << 20);
        walk(&vfs, "datasets/cxr/train").unwrap();
        let before = up.request_count();
        up.set_delay(std::time::Duration::from_millis(50));
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    assert_eq!(
                        read_all(&vfs, "datasets/cxr/train/NORMAL/010.png").unwrap(),
                        image(10, 3000)
                    );
                });
            }
        });
        let spans = up.request_count() - before;
        assert!((1..=2).contains(&spans), "{spans}");
    }

    /// Lets a test keep a handle on the mock inside a wrapper.
    struct MockUpstreamRef(Arc<MockUpstream>);
    impl Upstream for MockUpstreamRef {
        fn fetch(
            &self,
            req: &crate::source::FetchRequest<'_>,
        ) -> std::result::Result<crate::source::Response<'_>, crate::source::SourceError> {
            self.0.fetch(req)
        }

        fn api(
            &self,
            req: &crate::source::ApiRequest<'_>,
        ) -> std::result::Result<crate::source::ApiReply, crate::source::SourceError> {
            self.0.api(req)
        }
    }
}
