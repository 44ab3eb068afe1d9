//! The SQLite index: every indexed dataset's blobs and entries, in one database file.
//!
//! Row id of `entries` is the identity of a file or directory (the VFS builds inode numbers from
//! it); `AUTOINCREMENT` keeps ids of a re-indexed dataset from ever naming another file. A unique
//! `(parent, name)` index serves lookup; listing pages by id (`id > ?`), never by OFFSET.
//! A dataset's root entry has `parent = 0` and the dataset id as name. A dataset is written in
//! one transaction with its fingerprint, so it is either fully indexed or not at all, and a
//! catalog change to its sources (another fingerprint) re-indexes it.
//!
//! A dataset with label tables also has a classes tree (`class_nodes`, written by
//! [`Index::put_classes`] in a transaction of its own once the dataset's files are indexed):
//! folders, and names that point at the dataset's file entries, so a file there is the same
//! file. `entries.links` counts the names a file has there (its `st_nlink` adds them); the
//! `classes` row says which dataset root and which label spec the tree was made for, so a
//! re-indexed dataset or a changed spec makes it again, and re-indexing drops it.
//!
//! Reads go through a small pool of read-only connections (WAL lets them run beside the writer).
//! Closing drops them before the writer, which, closing last, moves the log into the database:
//! a cleanly stopped daemon leaves `index.sqlite` as a single file.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};

use crate::archive::compressed::Codec;
use crate::archive::gzip::{Checkpoint, WINDOW};
use crate::cache::BlobKey;

/// One upstream object.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Part {
    /// Identity of its bytes in the block cache.
    pub key: BlobKey,
    /// URL as in the catalog (mirror rules apply when fetching).
    pub url: String,
    /// Size in bytes.
    pub size: u64,
    /// Validator to send as `If-Match` (when strong), if the host gave one.
    pub etag: Option<String>,
    /// Whether the host honours Range requests.
    pub ranged: bool,
    /// For the bytes of an archive's member rather than an upstream object: which member.
    /// Such a part is made whole, like a download from a host without Range, by decoding
    /// the member through the read path ([`crate::fetch::Derive`]).
    pub from: Option<Box<Derivation>>,
}

/// The member a derived part's bytes are: an archive inside a compressed archive (a deflated
/// ZIP member, a member of a `.tar.gz` or a 7z, ...) is decoded once into the cache as a
/// blob of its own, whose one part says where it comes from, so the cache can drop it and
/// have it made again.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Derivation {
    /// Where the member is: `location.blob` is the outer blob's position among the listing's
    /// blobs in [`DatasetRows`], its row id in the index.
    pub location: Location,
    /// The outer blob's first part's key: a derivation whose outer blob is not this one (a
    /// re-indexed dataset, rows from elsewhere) is refused rather than decoded from it.
    pub outer: BlobKey,
    /// The dataset it belongs to (its requests count there).
    pub dataset: String,
    /// The member's path in the outer archive, for messages.
    pub member: String,
}

impl Part {
    /// The placeholder part of a file whose listing gave no size: no byte is ever read through
    /// it (its entry's size is `None` until [`Index::set_size`] puts the probed part in its
    /// place), and its key names no other file's blocks.
    pub fn placeholder(url: &str) -> Part {
        Part {
            key: BlobKey::derive(url, 0, "size not known yet"),
            url: url.to_string(),
            size: 0,
            etag: None,
            ranged: true,
            from: None,
        }
    }

    /// The part of the member at `location` of `outer` (its index among the listing's
    /// blobs), `size` bytes once decoded: its key pins the outer object's version and the
    /// member, so it names no other bytes.
    pub fn derived(
        outer: &Blob,
        location: Location,
        size: u64,
        dataset: &str,
        member: &str,
    ) -> Part {
        let outer_key = outer.parts.first().map_or(BlobKey(0), |p| p.key);
        let key = BlobKey::derive(
            &format!(
                "{}@{}:{:?}",
                outer
                    .parts
                    .iter()
                    .map(|p| p.key.to_string())
                    .collect::<Vec<_>>()
                    .join("+"),
                location.offset,
                location.storage
            ),
            size,
            "member",
        );
        Part {
            key,
            url: format!("{}!/{member}", outer.url()),
            size,
            etag: None,
            ranged: false,
            from: Some(Box::new(Derivation {
                location,
                outer: outer_key,
                dataset: dataset.to_string(),
                member: member.to_string(),
            })),
        }
    }
}

/// The bytes a dataset's files live in: one upstream object, or the concatenation of the parts
/// of a split archive.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Blob {
    /// Row id (0 before it is stored).
    pub id: i64,
    /// The parts in order; never empty.
    pub parts: Vec<Part>,
    /// `md5:<hex>` or `sha256:<hex>` of the whole blob, when its host published one.
    pub checksum: Option<String>,
}

impl Blob {
    /// A blob of one part.
    pub fn single(part: Part) -> Blob {
        Blob {
            id: 0,
            parts: vec![part],
            checksum: None,
        }
    }

    /// Total size.
    pub fn size(&self) -> u64 {
        self.parts.iter().map(|p| p.size).sum()
    }

    /// The first part's URL, to name the blob in messages.
    pub fn url(&self) -> &str {
        self.parts.first().map_or("", |p| p.url.as_str())
    }

    /// Sizes of the parts, in order.
    pub fn part_sizes(&self) -> Vec<u64> {
        self.parts.iter().map(|p| p.size).collect()
    }
}

/// How a file's bytes are stored in its blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Storage {
    /// The bytes are `[offset, offset + size)` of the blob as they are (a loose file).
    Raw,
    /// Bytes `[offset, offset + size)` of the blob's gzip-decompressed stream (a `.tar.gz`
    /// member), reached through the blob's checkpoints.
    Gzip,
    /// Bytes `[offset, offset + size)` of the blob's decompressed stream (a `.tar.bz2`,
    /// `.tar.xz` or `.tar.zst` member), reached through the blob's checkpoints (stream starts;
    /// see [`crate::archive::compressed`]).
    Packed(Codec),
    /// Member `file` of a 7z archive (its index in the archive's file list), whose content
    /// starts at `offset` in its block's output.
    SevenZ {
        /// Index in the archive's file list.
        file: u32,
    },
    /// A ZIP member whose local header is at `offset`.
    Zip {
        /// ZIP compression method.
        method: u16,
        /// Bytes in the archive.
        compressed_size: u64,
        /// CRC-32 of the content.
        crc32: u32,
    },
    /// Member `entry` of the RAR archive of `len` bytes that starts at `offset` of the blob
    /// (0, or where a RAR stored inside a ZIP or tar starts); `entry` is its position among
    /// the archive's file headers (see [`crate::archive::rar`]).
    Rar {
        /// Position among the archive's file headers.
        entry: u32,
        /// The RAR's length.
        len: u64,
    },
}

/// Where a file's bytes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Location {
    /// Row id of the blob.
    pub blob: i64,
    /// Offset in the blob (see [`Storage`]).
    pub offset: u64,
    /// How they are stored.
    pub storage: Storage,
}

/// A file or directory of an indexed dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Row id.
    pub id: i64,
    /// Row id of the parent directory (0 for a dataset root).
    pub parent: i64,
    /// File name.
    pub name: String,
    /// Size of the content (0 for directories); `None` for a file whose listing gave no size
    /// and whose size nobody has asked for yet ([`crate::sizes`]).
    pub size: Option<u64>,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// `None` for a directory.
    pub location: Option<Location>,
    /// The dataset it belongs to.
    pub dataset: String,
    /// Names the file has in its dataset's classes tree (0 for directories).
    pub links: u32,
}

impl Entry {
    /// True for directories.
    pub fn is_dir(&self) -> bool {
        self.location.is_none()
    }
}

/// An entry to write, named by its position in a flat list (parents come first).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct NewEntry {
    /// Index in the list of the parent directory, `None` for a child of the dataset root.
    pub parent: Option<usize>,
    /// File name.
    pub name: String,
    /// Content size; `None` for a raw file whose listing gave no size (its blob's one part is
    /// then [`Part::placeholder`] until [`Index::set_size`]).
    pub size: Option<u64>,
    /// Modification time.
    pub mtime: i64,
    /// `None` for a directory; `Location::blob` is an index into the blob list.
    pub location: Option<Location>,
}

/// Everything indexing a dataset writes: what the shared tier hands from node to node, so a
/// second node indexes without asking the upstream.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct DatasetRows {
    /// Modification time of the dataset's root.
    pub root_mtime: i64,
    /// The blobs its files live in.
    pub blobs: Vec<Blob>,
    /// Its files and folders, parents first.
    pub entries: Vec<NewEntry>,
    /// Decompression checkpoints, by index into `blobs`.
    pub checkpoints: Vec<(usize, Vec<Checkpoint>)>,
}

impl DatasetRows {
    /// The encoding's version: another one is another object in the tier (2: members of
    /// `.tar.bz2`/`.tar.xz`/`.tar.zst` and 7z, which version 1 cannot decode; 3: RAR
    /// members, which version 2 cannot decode; 4: derived parts, archives inside compressed
    /// archives).
    pub const FORMAT: u32 = 4;

    /// The rows as bytes (postcard, deflated: checkpoint windows are text-like tar data).
    pub fn encode(&self) -> Vec<u8> {
        // Plain data always encodes.
        let raw = postcard::to_stdvec(self).unwrap_or_default();
        miniz_oxide::deflate::compress_to_vec(&raw, 1)
    }

    /// Rows from [`DatasetRows::encode`]'s bytes, checked to refer only to what they hold
    /// (every parent comes before its child, every location names one of the blobs, every
    /// blob has a part), or what is wrong.
    pub fn decode(bytes: &[u8]) -> Result<DatasetRows, String> {
        // A listing of a million files is tens of MB; a bomb is refused past a GiB.
        let raw = miniz_oxide::inflate::decompress_to_vec_with_limit(bytes, 1 << 30)
            .map_err(|e| format!("the listing does not inflate ({:?})", e.status))?;
        let rows: DatasetRows =
            postcard::from_bytes(&raw).map_err(|e| format!("the listing does not decode ({e})"))?;
        for (i, e) in rows.entries.iter().enumerate() {
            if e.parent.is_some_and(|p| p >= i) {
                return Err(format!("entry {i} ({:?}) comes before its parent", e.name));
            }
            if e.location
                .is_some_and(|l| l.blob < 0 || l.blob as usize >= rows.blobs.len())
            {
                return Err(format!("entry {i} ({:?}) names a missing blob", e.name));
            }
            if e.name.is_empty() || e.name.contains('/') || e.name == "." || e.name == ".." {
                return Err(format!("entry {i} has the name {:?}", e.name));
            }
        }
        if rows.blobs.iter().any(|b| b.parts.is_empty()) {
            return Err("a blob without parts".into());
        }
        for (i, b) in rows.blobs.iter().enumerate() {
            // A member is decoded from a blob listed before it: no cycle, nothing missing.
            if b.parts
                .iter()
                .filter_map(|p| p.from.as_deref())
                .any(|d| d.location.blob < 0 || d.location.blob as usize >= i)
            {
                return Err(format!("blob {i} is a member of a blob listed after it"));
            }
        }
        if rows.checkpoints.iter().any(|(b, _)| *b >= rows.blobs.len()) {
            return Err("checkpoints of a missing blob".into());
        }
        Ok(rows)
    }
}

/// Why the index failed.
#[derive(Debug, thiserror::Error)]
#[error(
    "index {path}: {source}; if the file is damaged, remove it and medimg re-indexes what it needs"
)]
pub struct IndexError {
    path: PathBuf,
    #[source]
    source: rusqlite::Error,
}

/// The index database.
pub struct Index {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Index").field("path", &self.path).finish()
    }
}

impl Drop for Index {
    fn drop(&mut self) {
        // Readers first: the last connection to close moves the log into the database and
        // deletes it, and a read-only connection cannot, so the writer must be the last.
        self.readers
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

const SCHEMA: &str = "
PRAGMA journal_mode=WAL;
-- With WAL, NORMAL syncs at checkpoints, not at every commit: a crash of the daemon loses
-- nothing, a power cut at most the last sizes learnt (asked again). FULL cost 5 ms a commit,
-- which made sizing a folder file by file take 48 s for 10,000 files.
PRAGMA synchronous=NORMAL;
CREATE TABLE IF NOT EXISTS datasets (
    id TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, root INTEGER NOT NULL, indexed_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS blobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, dataset TEXT NOT NULL, checksum TEXT);
-- The last time a host refused a dataset (401/403), for `medimg catalog` and MNT/about/.
CREATE TABLE IF NOT EXISTS denials (
    dataset TEXT PRIMARY KEY, message TEXT NOT NULL, at INTEGER NOT NULL);
-- A dataset whose upstream changed under its indexed version (another size, validator,
-- checksum or member CRC): what told, and when it was first seen. Its listing is not trusted
-- at the next start (the new version is indexed, and `reindexed_at` set); the record stays
-- for `medimg status` and MNT/about/.
CREATE TABLE IF NOT EXISTS changes (
    dataset TEXT PRIMARY KEY, message TEXT NOT NULL, at INTEGER NOT NULL, reindexed_at INTEGER);
CREATE TABLE IF NOT EXISTS parts (
    blob INTEGER NOT NULL, seq INTEGER NOT NULL, key TEXT NOT NULL, url TEXT NOT NULL,
    size INTEGER NOT NULL, etag TEXT, ranged INTEGER NOT NULL, derived TEXT,
    PRIMARY KEY (blob, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT, dataset TEXT NOT NULL, parent INTEGER NOT NULL,
    name TEXT NOT NULL, size INTEGER NOT NULL, mtime INTEGER NOT NULL,
    blob INTEGER, offset INTEGER, method INTEGER, csize INTEGER, crc INTEGER,
    links INTEGER NOT NULL DEFAULT 0);
CREATE UNIQUE INDEX IF NOT EXISTS entries_by_name ON entries (parent, name);
CREATE TABLE IF NOT EXISTS checkpoints (
    blob INTEGER NOT NULL, out INTEGER NOT NULL, input INTEGER NOT NULL, bits INTEGER NOT NULL,
    bit_buf INTEGER NOT NULL, window BLOB NOT NULL, PRIMARY KEY (blob, out)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entries_by_dataset ON entries (dataset);
-- The classes tree of a dataset with label tables: made for this dataset root and this label
-- spec; what the tables gave and skipped (JSON, for MNT/about/).
CREATE TABLE IF NOT EXISTS classes (
    dataset TEXT PRIMARY KEY, spec TEXT NOT NULL, dataset_root INTEGER NOT NULL,
    root INTEGER NOT NULL, report TEXT NOT NULL, built_at INTEGER NOT NULL);
-- Its folders (entry NULL) and names of the dataset's files (entry: their row in entries).
CREATE TABLE IF NOT EXISTS class_nodes (
    id INTEGER PRIMARY KEY AUTOINCREMENT, dataset TEXT NOT NULL, parent INTEGER NOT NULL,
    name TEXT NOT NULL, entry INTEGER);
CREATE UNIQUE INDEX IF NOT EXISTS class_nodes_by_name ON class_nodes (parent, name);
CREATE INDEX IF NOT EXISTS class_nodes_by_parent ON class_nodes (parent);
CREATE INDEX IF NOT EXISTS class_nodes_by_dataset ON class_nodes (dataset);
-- Listing pages by (parent, id): without it every page sorts the whole directory.
CREATE INDEX IF NOT EXISTS entries_by_parent ON entries (parent);
";

/// Readers kept open; more are opened under load and closed again.
const POOLED_READERS: usize = 8;

/// An upstream change recorded for a dataset ([`Index::put_change`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    /// Dataset id.
    pub dataset: String,
    /// What told: the file and the host's answer.
    pub message: String,
    /// When it was first seen (Unix seconds).
    pub at: i64,
    /// When the dataset was indexed again since, if it was (Unix seconds).
    pub reindexed_at: Option<i64>,
}

/// `entries.size` of a file whose size is not known yet.
const UNSIZED: i64 = -1;

/// `entries.method` of a member of a gzip stream (ZIP methods are 0..=65535).
const METHOD_GZIP: i64 = -1;
/// `entries.method` of members of the compressed tars of [`Storage::Packed`].
const METHOD_BZIP2: i64 = -2;
const METHOD_XZ: i64 = -3;
const METHOD_ZSTD: i64 = -4;
/// `entries.method` of a 7z member; `csize` holds its index in the archive's file list.
const METHOD_7Z: i64 = -5;
/// A RAR member; `csize` holds its entry number, `crc` the RAR's length.
const METHOD_RAR: i64 = -6;

/// The `method` column of a member of a compressed tar.
fn method_of(c: Codec) -> i64 {
    match c {
        Codec::Bzip2 => METHOD_BZIP2,
        Codec::Xz => METHOD_XZ,
        Codec::Zstd => METHOD_ZSTD,
    }
}

const ENTRY_COLUMNS: &str =
    "id, parent, name, size, mtime, blob, offset, method, csize, crc, dataset, links";

/// [`ENTRY_COLUMNS`] of the entry joined as `e` (NULLs when a class node is a folder).
const JOINED_ENTRY_COLUMNS: &str = "e.id, e.parent, e.name, e.size, e.mtime, e.blob, e.offset, \
     e.method, e.csize, e.crc, e.dataset, e.links";

/// One row of [`Index::dataset_entries`]: id, parent id, name, size (`None` for directories
/// and files not sized yet), whether it is a file.
pub type EntryRow = (i64, i64, String, Option<u64>, bool);

/// A node of a classes tree: a folder, or a name of a dataset file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassNode {
    /// Row id in `class_nodes`.
    pub id: i64,
    /// Its folder (0 for the root, `classes/<id>/` itself).
    pub parent: i64,
    /// Its name.
    pub name: String,
    /// The file it names; `None` for a folder.
    pub entry: Option<Entry>,
}

/// A classes node to write, named by its position in a flat list (folders come first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewClassNode {
    /// Index in the list of its folder, `None` for a child of the root.
    pub parent: Option<usize>,
    /// Its name.
    pub name: String,
    /// Row id of the file it names; `None` for a folder.
    pub entry: Option<i64>,
}

/// The classes tree recorded for a dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classes {
    /// The label spec it was made for.
    pub spec: String,
    /// The dataset root it was made for.
    pub dataset_root: i64,
    /// Its root node.
    pub root: i64,
    /// What the tables gave and skipped (JSON of [`crate::labels::Report`]).
    pub report: String,
}

fn class_node_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ClassNode> {
    let entry = match r.get::<_, Option<i64>>(3)? {
        None => None,
        Some(_) => Some(entry_from_row_at(r, 4)?),
    };
    Ok(ClassNode {
        id: r.get(0)?,
        parent: r.get(1)?,
        name: r.get(2)?,
        entry,
    })
}

fn entry_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Entry> {
    entry_from_row_at(r, 0)
}

/// The entry whose [`ENTRY_COLUMNS`] start at column `at`.
fn entry_from_row_at(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Entry> {
    let blob: Option<i64> = r.get(at + 5)?;
    let location = match blob {
        None => None,
        Some(blob) => {
            let method: Option<i64> = r.get(at + 7)?;
            let storage = match method {
                None => Storage::Raw,
                Some(METHOD_GZIP) => Storage::Gzip,
                Some(METHOD_BZIP2) => Storage::Packed(Codec::Bzip2),
                Some(METHOD_XZ) => Storage::Packed(Codec::Xz),
                Some(METHOD_ZSTD) => Storage::Packed(Codec::Zstd),
                Some(METHOD_7Z) => Storage::SevenZ {
                    file: r.get::<_, i64>(at + 8)? as u32,
                },
                Some(METHOD_RAR) => Storage::Rar {
                    entry: r.get::<_, i64>(at + 8)? as u32,
                    len: r.get::<_, i64>(at + 9)? as u64,
                },
                Some(m) => Storage::Zip {
                    method: m as u16,
                    compressed_size: r.get::<_, i64>(at + 8)? as u64,
                    crc32: r.get::<_, i64>(at + 9)? as u32,
                },
            };
            Some(Location {
                blob,
                offset: r.get::<_, i64>(at + 6)? as u64,
                storage,
            })
        }
    };
    Ok(Entry {
        id: r.get(at)?,
        parent: r.get(at + 1)?,
        name: r.get(at + 2)?,
        size: u64::try_from(r.get::<_, i64>(at + 3)?).ok(),
        mtime: r.get(at + 4)?,
        location,
        dataset: r.get(at + 10)?,
        links: u32::try_from(r.get::<_, i64>(at + 11)?).unwrap_or(0),
    })
}

impl Index {
    /// Open (or create) the index at `path`.
    pub fn open(path: &Path) -> Result<Index, IndexError> {
        let err = |source| IndexError {
            path: path.to_path_buf(),
            source,
        };
        let writer = Connection::open(path).map_err(err)?;
        writer.execute_batch(SCHEMA).map_err(err)?;
        // Columns added since the first index, for indexes written before them: a blob's
        // checksum (NULL: none known), the count of a file's names in the classes view, the
        // member a part is decoded from (NULL: an upstream object).
        for (table, column, ddl) in [
            (
                "blobs",
                "checksum",
                "ALTER TABLE blobs ADD COLUMN checksum TEXT",
            ),
            (
                "entries",
                "links",
                "ALTER TABLE entries ADD COLUMN links INTEGER NOT NULL DEFAULT 0",
            ),
            (
                "parts",
                "derived",
                "ALTER TABLE parts ADD COLUMN derived TEXT",
            ),
        ] {
            let has: bool = writer
                .query_row(
                    "SELECT COUNT(*) FROM pragma_table_info(?1) WHERE name = ?2",
                    [table, column],
                    |r| r.get::<_, i64>(0),
                )
                .map_err(err)?
                > 0;
            if !has {
                writer.execute_batch(ddl).map_err(err)?;
            }
        }
        Ok(Index {
            path: path.to_path_buf(),
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
        })
    }

    /// The index at `path` if one exists and opens (read by `medimg catalog`; never created).
    pub fn open_existing(path: &Path) -> Option<Index> {
        if !path.exists() {
            return None;
        }
        Index::open(path).ok()
    }

    fn err(&self, source: rusqlite::Error) -> IndexError {
        IndexError {
            path: self.path.clone(),
            source,
        }
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, IndexError> {
        let conn = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match conn {
            Some(c) => c,
            None => Connection::open_with_flags(
                &self.path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(|e| self.err(e))?,
        };
        let out = f(&conn).map_err(|e| self.err(e));
        let mut pool = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < POOLED_READERS {
            pool.push(conn);
        }
        out
    }

    /// The root entry id of `dataset` if it is indexed with this fingerprint.
    pub fn dataset_root(
        &self,
        dataset: &str,
        fingerprint: &str,
    ) -> Result<Option<i64>, IndexError> {
        self.read(|c| {
            // A change seen since the listing was made voids it.
            c.prepare_cached(
                "SELECT root FROM datasets WHERE id = ?1 AND fingerprint = ?2 AND NOT EXISTS \
                 (SELECT 1 FROM changes WHERE dataset = ?1 AND reindexed_at IS NULL)",
            )?
            .query_row(params![dataset, fingerprint], |r| r.get(0))
            .optional()
        })
    }

    /// The entry with this id.
    pub fn entry(&self, id: i64) -> Result<Option<Entry>, IndexError> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {ENTRY_COLUMNS} FROM entries WHERE id = ?1"
            ))?
            .query_row([id], entry_from_row)
            .optional()
        })
    }

    /// The files of blob `blob` among rows `ids` whose bytes start in `[from, to)` of it, by
    /// offset. An archive's members are indexed in the order of the archive, so the rows near
    /// a member's are its neighbours in the blob: a range scan of the primary key, no index.
    pub fn files_near(
        &self,
        ids: std::ops::RangeInclusive<i64>,
        blob: i64,
        from: u64,
        to: u64,
    ) -> Result<Vec<Entry>, IndexError> {
        self.read(|c| {
            let mut q = c.prepare_cached(&format!(
                "SELECT {ENTRY_COLUMNS} FROM entries WHERE id BETWEEN ?1 AND ?2 AND blob = ?3 \
                 AND offset >= ?4 AND offset < ?5 ORDER BY offset"
            ))?;
            let rows = q.query_map(
                params![
                    ids.start(),
                    ids.end(),
                    blob,
                    from.min(i64::MAX as u64) as i64,
                    to.min(i64::MAX as u64) as i64
                ],
                entry_from_row,
            )?;
            rows.collect()
        })
    }

    /// The child of `parent` called `name`.
    pub fn lookup(&self, parent: i64, name: &str) -> Result<Option<Entry>, IndexError> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {ENTRY_COLUMNS} FROM entries WHERE parent = ?1 AND name = ?2"
            ))?
            .query_row(params![parent, name], entry_from_row)
            .optional()
        })
    }

    /// Up to `limit` children of `parent` with ids above `after`, in id order.
    pub fn children(
        &self,
        parent: i64,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Entry>, IndexError> {
        self.read(|c| {
            let mut q = c.prepare_cached(&format!(
                "SELECT {ENTRY_COLUMNS} FROM entries WHERE parent = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
            ))?;
            let rows = q.query_map(params![parent, after, limit as i64], entry_from_row)?;
            rows.collect()
        })
    }

    /// The blob with this id.
    pub fn blob(&self, id: i64) -> Result<Option<Blob>, IndexError> {
        let parts = self.read(|c| {
            let mut q = c.prepare_cached(
                "SELECT key, url, size, etag, ranged, derived FROM parts WHERE blob = ?1 ORDER BY seq",
            )?;
            let rows = q.query_map([id], |r| {
                let key: String = r.get(0)?;
                let derived: Option<String> = r.get(5)?;
                Ok(Part {
                    key: BlobKey::parse(&key).unwrap_or(BlobKey(0)),
                    url: r.get(1)?,
                    size: r.get::<_, i64>(2)? as u64,
                    etag: r.get(3)?,
                    ranged: r.get::<_, i64>(4)? != 0,
                    from: derived
                        .map(|d| serde_json::from_str(&d))
                        .transpose()
                        .map_err(|e| {
                            rusqlite::Error::FromSqlConversionFailure(
                                5,
                                rusqlite::types::Type::Text,
                                Box::new(e),
                            )
                        })?,
                })
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        if parts.is_empty() {
            return Ok(None);
        }
        let checksum = self.read(|c| {
            c.prepare_cached("SELECT checksum FROM blobs WHERE id = ?1")?
                .query_row([id], |r| r.get::<_, Option<String>>(0))
                .optional()
        })?;
        Ok(Some(Blob {
            id,
            parts,
            checksum: checksum.flatten(),
        }))
    }

    /// Record the size learnt for file `entry`, stored as blob `blob` (one part,
    /// [`Part::placeholder`] until now): its part and its size, and its mtime when the host gave
    /// one. Returns the entry as it is now (a size already recorded is kept: it is written once).
    pub fn set_size(
        &self,
        entry: i64,
        blob: i64,
        part: &Part,
        mtime: Option<i64>,
    ) -> Result<Option<Entry>, IndexError> {
        self.set_sizes(&[(entry, blob, part.clone(), mtime)])?;
        self.entry(entry)
    }

    /// [`Index::set_size`] of many files, in one transaction. Rows are found by their primary
    /// keys: sizing a folder file by file must not scan the table once per file.
    pub fn set_sizes(&self, sized: &[(i64, i64, Part, Option<i64>)]) -> Result<(), IndexError> {
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let tx = w.transaction().map_err(|e| self.err(e))?;
        (|| {
            for (entry, blob, part, mtime) in sized {
                let changed = tx
                    .prepare_cached(&format!(
                        "UPDATE entries SET size = ?3, mtime = COALESCE(?4, mtime)
                         WHERE id = ?1 AND blob = ?2 AND size = {UNSIZED}"
                    ))?
                    .execute(params![entry, blob, part.size as i64, mtime])?;
                if changed == 0 {
                    continue;
                }
                tx.prepare_cached(
                    "UPDATE parts SET key = ?2, size = ?3, etag = ?4, ranged = ?5
                     WHERE blob = ?1 AND seq = 0",
                )?
                .execute(params![
                    blob,
                    part.key.to_string(),
                    part.size as i64,
                    part.etag,
                    part.ranged as i64
                ])?;
            }
            Ok(())
        })()
        .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }

    /// The files of directory `parent` whose size is not known yet, by name.
    pub fn unsized_in(&self, parent: i64) -> Result<Vec<Entry>, IndexError> {
        self.read(|c| {
            let mut q = c.prepare_cached(&format!(
                "SELECT {ENTRY_COLUMNS} FROM entries WHERE parent = ?1 AND size = {UNSIZED}
                 ORDER BY name"
            ))?;
            let rows = q.query_map([parent], entry_from_row)?;
            rows.collect()
        })
    }

    /// The blob keys of every indexed dataset's parts, with the dataset's id.
    pub fn blob_keys(&self) -> Result<Vec<(String, BlobKey)>, IndexError> {
        self.read(|c| {
            let mut q = c.prepare_cached(
                "SELECT b.dataset, p.key FROM parts p JOIN blobs b ON p.blob = b.id",
            )?;
            let rows = q.query_map([], |r| {
                let key: String = r.get(1)?;
                Ok((r.get(0)?, BlobKey::parse(&key).unwrap_or(BlobKey(0))))
            })?;
            rows.collect()
        })
    }

    /// Record that a host refused `dataset` (shown by `medimg catalog` and `MNT/about/`).
    pub fn put_denial(&self, dataset: &str, message: &str, at: i64) -> Result<(), IndexError> {
        let w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        w.execute(
            "INSERT OR REPLACE INTO denials (dataset, message, at) VALUES (?1, ?2, ?3)",
            params![dataset, message, at],
        )
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Every recorded refusal: dataset id, message, time.
    pub fn denials(&self) -> Result<Vec<(String, String, i64)>, IndexError> {
        self.read(|c| {
            let mut q = c.prepare_cached("SELECT dataset, message, at FROM denials")?;
            let rows = q.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect()
        })
    }

    /// Record that `dataset`'s upstream changed under its indexed version. The first record
    /// since the dataset was last indexed is kept: it says what told first.
    pub fn put_change(&self, dataset: &str, message: &str, at: i64) -> Result<(), IndexError> {
        let w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        w.execute(
            "INSERT INTO changes (dataset, message, at) VALUES (?1, ?2, ?3)
             ON CONFLICT (dataset) DO UPDATE SET message = ?2, at = ?3, reindexed_at = NULL
             WHERE reindexed_at IS NOT NULL",
            params![dataset, message, at],
        )
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Every recorded upstream change: dataset id, what told, when it was seen, and whether
    /// the dataset was indexed again since (then its files are the new version's).
    pub fn changes(&self) -> Result<Vec<Change>, IndexError> {
        self.read(|c| {
            let mut q =
                c.prepare_cached("SELECT dataset, message, at, reindexed_at FROM changes")?;
            let rows = q.query_map([], |r| {
                Ok(Change {
                    dataset: r.get(0)?,
                    message: r.get(1)?,
                    at: r.get(2)?,
                    reindexed_at: r.get(3)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Ids of the datasets indexed (their listing succeeded at least once).
    pub fn indexed_datasets(&self) -> Result<Vec<String>, IndexError> {
        self.read(|c| {
            let mut q = c.prepare_cached("SELECT id FROM datasets")?;
            let rows = q.query_map([], |r| r.get(0))?;
            rows.collect()
        })
    }

    /// The last checkpoint of `blob` at or before uncompressed offset `out`.
    pub fn checkpoint_before(&self, blob: i64, out: u64) -> Result<Option<Checkpoint>, IndexError> {
        let row = self.read(|c| {
            c.prepare_cached(
                "SELECT out, input, bits, bit_buf, window FROM checkpoints
                 WHERE blob = ?1 AND out <= ?2 ORDER BY out DESC LIMIT 1",
            )?
            .query_row(params![blob, out as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, u8>(2)?,
                    r.get::<_, u8>(3)?,
                    r.get::<_, Vec<u8>>(4)?,
                ))
            })
            .optional()
        })?;
        let Some((out, input, bits, bit_buf, packed)) = row else {
            return Ok(None);
        };
        let window =
            miniz_oxide::inflate::decompress_to_vec_with_limit(&packed, WINDOW).map_err(|e| {
                IndexError {
                    path: self.path.clone(),
                    source: rusqlite::Error::InvalidColumnType(
                        4,
                        format!("checkpoint window: {:?}", e.status),
                        rusqlite::types::Type::Blob,
                    ),
                }
            })?;
        Ok(Some(Checkpoint {
            out: out as u64,
            input: input as u64,
            bits,
            bit_buf,
            window,
        }))
    }

    /// Every file and directory of `dataset`, in id order (a directory before its
    /// children).
    pub fn dataset_entries(&self, dataset: &str) -> Result<Vec<EntryRow>, IndexError> {
        self.read(|c| {
            let mut q = c.prepare_cached(
                "SELECT id, parent, name, size, blob FROM entries WHERE dataset = ?1 ORDER BY id",
            )?;
            let rows = q.query_map([dataset], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    u64::try_from(r.get::<_, i64>(3)?).ok(),
                    r.get::<_, Option<i64>>(4)?.is_some(),
                ))
            })?;
            rows.collect()
        })
    }

    /// The classes tree recorded for `dataset`, whatever it was made for.
    pub fn classes(&self, dataset: &str) -> Result<Option<Classes>, IndexError> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT spec, dataset_root, root, report FROM classes WHERE dataset = ?1",
            )?
            .query_row([dataset], |r| {
                Ok(Classes {
                    spec: r.get(0)?,
                    dataset_root: r.get(1)?,
                    root: r.get(2)?,
                    report: r.get(3)?,
                })
            })
            .optional()
        })
    }

    /// Every recorded classes report: dataset id, report (JSON).
    pub fn class_reports(&self) -> Result<Vec<(String, String)>, IndexError> {
        self.read(|c| {
            let mut q = c.prepare_cached("SELECT dataset, report FROM classes")?;
            let rows = q.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
    }

    /// Replace the classes tree of `dataset` (whose root entry is `dataset_root`) with
    /// `nodes`, atomically, and count each file's names in `entries.links`. Returns the
    /// tree's root node.
    pub fn put_classes(
        &self,
        dataset: &str,
        spec: &str,
        dataset_root: i64,
        nodes: &[NewClassNode],
        report: &str,
        at: i64,
    ) -> Result<i64, IndexError> {
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let tx = w.transaction().map_err(|e| self.err(e))?;
        let root = (|| {
            tx.execute("DELETE FROM class_nodes WHERE dataset = ?1", [dataset])?;
            tx.execute("DELETE FROM classes WHERE dataset = ?1", [dataset])?;
            tx.execute(
                "UPDATE entries SET links = 0 WHERE dataset = ?1 AND links != 0",
                [dataset],
            )?;
            tx.execute(
                "INSERT INTO class_nodes (dataset, parent, name) VALUES (?1, 0, ?1)",
                [dataset],
            )?;
            let root = tx.last_insert_rowid();
            let mut ids = Vec::with_capacity(nodes.len());
            {
                let mut ins = tx.prepare_cached(
                    "INSERT INTO class_nodes (dataset, parent, name, entry) VALUES (?1, ?2, ?3, ?4)",
                )?;
                let mut link = tx.prepare_cached(
                    "UPDATE entries SET links = links + 1 WHERE id = ?1 AND dataset = ?2",
                )?;
                for n in nodes {
                    let parent = n.parent.map_or(root, |i| ids[i]);
                    ins.execute(params![dataset, parent, n.name, n.entry])?;
                    ids.push(tx.last_insert_rowid());
                    if let Some(e) = n.entry {
                        link.execute(params![e, dataset])?;
                    }
                }
            }
            tx.execute(
                "INSERT INTO classes (dataset, spec, dataset_root, root, report, built_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![dataset, spec, dataset_root, root, report, at],
            )?;
            Ok(root)
        })()
        .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(root)
    }

    /// The classes node with this id.
    pub fn class_node(&self, id: i64) -> Result<Option<ClassNode>, IndexError> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT n.id, n.parent, n.name, n.entry, {JOINED_ENTRY_COLUMNS} FROM class_nodes n \
                 LEFT JOIN entries e ON e.id = n.entry WHERE n.id = ?1"
            ))?
            .query_row([id], class_node_from_row)
            .optional()
        })
    }

    /// The child of classes folder `parent` called `name`.
    pub fn class_lookup(&self, parent: i64, name: &str) -> Result<Option<ClassNode>, IndexError> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT n.id, n.parent, n.name, n.entry, {JOINED_ENTRY_COLUMNS} FROM class_nodes n \
                 LEFT JOIN entries e ON e.id = n.entry WHERE n.parent = ?1 AND n.name = ?2"
            ))?
            .query_row(params![parent, name], class_node_from_row)
            .optional()
        })
    }

    /// Up to `limit` children of classes folder `parent` with ids above `after`, in id order
    /// (which is name order: [`crate::labels`] lays them out so).
    pub fn class_children(
        &self,
        parent: i64,
        after: i64,
        limit: usize,
    ) -> Result<Vec<ClassNode>, IndexError> {
        self.read(|c| {
            let mut q = c.prepare_cached(&format!(
                "SELECT n.id, n.parent, n.name, n.entry, {JOINED_ENTRY_COLUMNS} FROM class_nodes n \
                 LEFT JOIN entries e ON e.id = n.entry WHERE n.parent = ?1 AND n.id > ?2 \
                 ORDER BY n.id LIMIT ?3"
            ))?;
            let rows = q.query_map(params![parent, after, limit as i64], class_node_from_row)?;
            rows.collect()
        })
    }

    /// Replace whatever is indexed for `dataset` with these blobs and entries, atomically.
    /// Returns the new root entry id.
    pub fn put_dataset(
        &self,
        dataset: &str,
        fingerprint: &str,
        root_mtime: i64,
        blobs: &[Blob],
        entries: &[NewEntry],
        checkpoints: &[(usize, Vec<Checkpoint>)],
    ) -> Result<i64, IndexError> {
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let tx = w.transaction().map_err(|e| self.err(e))?;
        let root = (|| {
            tx.execute(
                "DELETE FROM checkpoints WHERE blob IN (SELECT id FROM blobs WHERE dataset = ?1)",
                [dataset],
            )?;
            tx.execute("DELETE FROM entries WHERE dataset = ?1", [dataset])?;
            // Its classes tree named the old entries.
            tx.execute("DELETE FROM class_nodes WHERE dataset = ?1", [dataset])?;
            tx.execute("DELETE FROM classes WHERE dataset = ?1", [dataset])?;
            tx.execute(
                "DELETE FROM parts WHERE blob IN (SELECT id FROM blobs WHERE dataset = ?1)",
                [dataset],
            )?;
            tx.execute("DELETE FROM blobs WHERE dataset = ?1", [dataset])?;
            tx.execute("DELETE FROM datasets WHERE id = ?1", [dataset])?;
            // Listing it worked, so whatever refused it before does not any more, and a change
            // seen before is in this listing.
            tx.execute("DELETE FROM denials WHERE dataset = ?1", [dataset])?;
            tx.execute(
                "UPDATE changes SET reindexed_at = ?2 WHERE dataset = ?1 AND reindexed_at IS NULL",
                params![dataset, root_mtime],
            )?;
            let mut blob_ids = Vec::with_capacity(blobs.len());
            for b in blobs {
                tx.execute(
                    "INSERT INTO blobs (dataset, checksum) VALUES (?1, ?2)",
                    params![dataset, b.checksum],
                )?;
                blob_ids.push(tx.last_insert_rowid());
            }
            for (b, &id) in blobs.iter().zip(&blob_ids) {
                for (seq, p) in b.parts.iter().enumerate() {
                    // A derived part names its outer blob by row id from here on.
                    let derived = p.from.as_deref().map(|d| {
                        let mut d = d.clone();
                        d.location.blob = blob_ids
                            .get(d.location.blob as usize)
                            .copied()
                            .unwrap_or(0);
                        serde_json::to_string(&d).unwrap_or_default()
                    });
                    tx.execute(
                        "INSERT INTO parts (blob, seq, key, url, size, etag, ranged, derived)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                        params![
                            id,
                            seq as i64,
                            p.key.to_string(),
                            p.url,
                            p.size as i64,
                            p.etag,
                            p.ranged as i64,
                            derived
                        ],
                    )?;
                }
            }
            tx.execute(
                "INSERT INTO entries (dataset, parent, name, size, mtime) VALUES (?1, 0, ?1, 0, ?2)",
                params![dataset, root_mtime],
            )?;
            let root = tx.last_insert_rowid();
            let mut ids = Vec::with_capacity(entries.len());
            {
                let mut ins = tx.prepare_cached(
                    "INSERT INTO entries (dataset, parent, name, size, mtime, blob, offset, method, csize, crc)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )?;
                for e in entries {
                    let parent = e.parent.map_or(root, |i| ids[i]);
                    let (blob, offset, method, csize, crc) = match e.location {
                        None => (None, None, None, None, None),
                        Some(l) => {
                            let (m, cs, crc) = match l.storage {
                                Storage::Raw => (None, None, None),
                                Storage::Gzip => (Some(METHOD_GZIP), None, None),
                                Storage::Packed(c) => (Some(method_of(c)), None, None),
                                Storage::SevenZ { file } => {
                                    (Some(METHOD_7Z), Some(file as i64), None)
                                }
                                Storage::Rar { entry, len } => {
                                    (Some(METHOD_RAR), Some(entry as i64), Some(len as i64))
                                }
                                Storage::Zip {
                                    method,
                                    compressed_size,
                                    crc32,
                                } => (
                                    Some(method as i64),
                                    Some(compressed_size as i64),
                                    Some(crc32 as i64),
                                ),
                            };
                            (Some(blob_ids[l.blob as usize]), Some(l.offset as i64), m, cs, crc)
                        }
                    };
                    ins.execute(params![
                        dataset, parent, e.name, e.size.map_or(UNSIZED, |s| s as i64), e.mtime, blob, offset, method, csize, crc
                    ])?;
                    ids.push(tx.last_insert_rowid());
                }
            }
            {
                let mut ins = tx.prepare_cached(
                    "INSERT INTO checkpoints (blob, out, input, bits, bit_buf, window)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for (b, cps) in checkpoints {
                    for cp in cps {
                        // Windows are text-like tar data: deflate at level 1 keeps them small.
                        let window = miniz_oxide::deflate::compress_to_vec(&cp.window, 1);
                        ins.execute(params![
                            blob_ids[*b],
                            cp.out as i64,
                            cp.input as i64,
                            cp.bits,
                            cp.bit_buf,
                            window
                        ])?;
                    }
                }
            }
            tx.execute(
                "INSERT INTO datasets (id, fingerprint, root, indexed_at) VALUES (?1, ?2, ?3, ?4)",
                params![dataset, fingerprint, root, root_mtime],
            )?;
            Ok(root)
        })()
        .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataset_roundtrip_lookup_paging_and_reindex() {
        let d = tempfile::tempdir().unwrap();
        let ix = Index::open(&d.path().join("index.sqlite")).unwrap();
        let blob = Blob::single(Part {
            key: BlobKey(42),
            url: "http://h/a.zip".into(),
            size: 1000,
            etag: Some("\"x\"".into()),
            ranged: true,
            from: None,
        });
        let file = |parent, name: &str| NewEntry {
            parent,
            name: name.into(),
            size: Some(5),
            mtime: 7,
            location: Some(Location {
                blob: 0,
                offset: 100,
                storage: Storage::Zip {
                    method: 8,
                    compressed_size: 3,
                    crc32: 99,
                },
            }),
        };
        let dir = NewEntry {
            parent: None,
            name: "train".into(),
            size: Some(0),
            mtime: 7,
            location: None,
        };
        let mut entries = vec![dir];
        for i in 0..10 {
            entries.push(file(Some(0), &format!("{i}.png")));
        }
        let root = ix
            .put_dataset("ds", "fp1", 1, std::slice::from_ref(&blob), &entries, &[])
            .unwrap();
        assert_eq!(ix.dataset_root("ds", "fp1").unwrap(), Some(root));
        assert_eq!(ix.dataset_root("ds", "fp2").unwrap(), None);
        let train = ix.lookup(root, "train").unwrap().unwrap();
        assert!(train.is_dir());
        let f = ix.lookup(train.id, "3.png").unwrap().unwrap();
        let loc = f.location.unwrap();
        assert_eq!(
            ix.blob(loc.blob).unwrap().unwrap().parts[0].key,
            BlobKey(42)
        );
        let page1 = ix.children(train.id, 0, 4).unwrap();
        let page2 = ix.children(train.id, page1[3].id, 100).unwrap();
        assert_eq!(page1.len() + page2.len(), 10);
        // Re-index: old ids vanish and are never reused.
        let root2 = ix
            .put_dataset("ds", "fp2", 1, &[blob], &entries[..1], &[])
            .unwrap();
        assert!(ix.entry(f.id).unwrap().is_none());
        assert!(root2 > f.id);
        assert_eq!(
            ix.children(ix.lookup(root2, "train").unwrap().unwrap().id, 0, 100)
                .unwrap()
                .len(),
            0
        );
    }

    #[test]
    fn a_classes_tree_names_the_dataset_files_counts_their_links_and_goes_with_a_reindex() {
        let d = tempfile::tempdir().unwrap();
        let ix = Index::open(&d.path().join("index.sqlite")).unwrap();
        let blob = Blob::single(Part {
            key: BlobKey(7),
            url: "http://h/a.zip".into(),
            size: 100,
            etag: None,
            ranged: true,
            from: None,
        });
        let file = |name: &str| NewEntry {
            parent: None,
            name: name.into(),
            size: Some(5),
            mtime: 7,
            location: Some(Location {
                blob: 0,
                offset: 0,
                storage: Storage::Raw,
            }),
        };
        let root = ix
            .put_dataset(
                "ds",
                "fp",
                1,
                std::slice::from_ref(&blob),
                &[file("a.png"), file("b.png")],
                &[],
            )
            .unwrap();
        let a = ix.lookup(root, "a.png").unwrap().unwrap();
        let b = ix.lookup(root, "b.png").unwrap().unwrap();
        assert_eq!((a.links, b.links), (0, 0));
        let node = |parent: Option<usize>, name: &str, entry: Option<i64>| NewClassNode {
            parent,
            name: name.into(),
            entry,
        };
        // a.png has two labels, b.png one.
        let nodes = [
            node(None, "cat", None),
            node(Some(0), "a.png", Some(a.id)),
            node(Some(0), "b.png", Some(b.id)),
            node(None, "dog", None),
            node(Some(3), "a.png", Some(a.id)),
        ];
        let croot = ix
            .put_classes("ds", "spec1", root, &nodes, "{}", 9)
            .unwrap();
        assert_eq!(ix.lookup(root, "a.png").unwrap().unwrap().links, 2);
        assert_eq!(ix.entry(b.id).unwrap().unwrap().links, 1);
        let cat = ix.class_lookup(croot, "cat").unwrap().unwrap();
        assert!(cat.entry.is_none());
        let kids = ix.class_children(cat.id, 0, 10).unwrap();
        assert_eq!(kids.len(), 2);
        assert_eq!(kids[0].entry.as_ref().map(|e| e.id), Some(a.id));
        assert_eq!(kids[0].entry.as_ref().map(|e| e.links), Some(2));
        assert_eq!(ix.class_children(cat.id, kids[0].id, 10).unwrap().len(), 1);
        let rec = ix.classes("ds").unwrap().unwrap();
        assert_eq!(
            (rec.spec.as_str(), rec.dataset_root, rec.root),
            ("spec1", root, croot)
        );
        // Made again (another spec): the old names are gone and the links counted afresh.
        let croot2 = ix
            .put_classes("ds", "spec2", root, &nodes[..2], "{}", 9)
            .unwrap();
        assert!(ix.class_node(cat.id).unwrap().is_none());
        assert_eq!(ix.entry(a.id).unwrap().unwrap().links, 1);
        assert_eq!(ix.entry(b.id).unwrap().unwrap().links, 0);
        assert!(ix.class_lookup(croot2, "cat").unwrap().is_some());
        // A re-index drops the tree, which named the old entries.
        ix.put_dataset("ds", "fp2", 1, &[blob], &[file("a.png")], &[])
            .unwrap();
        assert!(ix.classes("ds").unwrap().is_none());
        assert!(ix.class_node(croot2).unwrap().is_none());
    }

    #[test]
    fn an_index_from_before_the_classes_view_gains_its_columns() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("index.sqlite");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE entries (
                    id INTEGER PRIMARY KEY AUTOINCREMENT, dataset TEXT NOT NULL, parent INTEGER NOT NULL,
                    name TEXT NOT NULL, size INTEGER NOT NULL, mtime INTEGER NOT NULL,
                    blob INTEGER, offset INTEGER, method INTEGER, csize INTEGER, crc INTEGER);
                 INSERT INTO entries (dataset, parent, name, size, mtime) VALUES ('ds', 0, 'ds', 0, 1);",
            )
            .unwrap();
        }
        let ix = Index::open(&path).unwrap();
        let e = ix.entry(1).unwrap().unwrap();
        assert_eq!((e.name.as_str(), e.links), ("ds", 0));
    }

    #[test]
    fn closing_leaves_one_database_file_without_a_log() {
        use std::fs;
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("index.sqlite");
        let wal = d.path().join("index.sqlite-wal");
        let ix = Index::open(&path).unwrap();
        let entries: Vec<NewEntry> = (0..500)
            .map(|i| NewEntry {
                parent: None,
                name: format!("{i}.png"),
                size: Some(5),
                mtime: 7,
                location: None,
            })
            .collect();
        let root = ix.put_dataset("ds", "fp", 1, &[], &entries, &[]).unwrap();
        // A read leaves a read-only connection in the pool, which cannot empty the log.
        assert!(ix.lookup(root, "7.png").unwrap().is_some());
        assert!(
            fs::metadata(&wal).unwrap().len() > 0,
            "the dataset went to the log first"
        );
        drop(ix);
        assert!(!wal.exists(), "the log was left behind");
        let again = Index::open(&path).unwrap();
        assert_eq!(again.dataset_root("ds", "fp").unwrap(), Some(root));
        assert_eq!(again.children(root, 0, 1000).unwrap().len(), 500);
    }
}
