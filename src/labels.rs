//! Label tables -> the classes view, `classes/<id>/[<split>/]<label>/<file>`.
//!
//! Many datasets ship their images in flat folders and their labels in a table (a CSV, a TSV,
//! a spreadsheet). For a dataset whose catalog entry has `[[dataset.labels]]`, [`build`] reads
//! each table (CSV and TSV with the `csv` crate, spreadsheets with calamine), names each row's
//! image files with the entry's patterns, finds them among the dataset's own files, and lays
//! out folders: one per split when the entry gives splits, in it one per label, in it one name
//! per image file, which the VFS shows as the dataset's own file (the same inode).
//!
//! A pattern names a file by its path in the dataset or by its last segments: `{image_id}.jpg`
//! finds the one file of that name in whatever folder it is, `train_images/{id_code}.png` the
//! one whose path ends so. A name several files end with is ambiguous, and placed nowhere.
//!
//! # Invariants
//! - Nothing is invented. A file is placed under a label only when a row names exactly that
//!   file and gives that label. Rows that name a missing file or several files, rows without
//!   a label, malformed rows, and image files in labelled folders that no row names are
//!   counted in the [`Report`] with a few examples (row numbers count the header as row 1, as a
//!   spreadsheet shows them), and never guessed. `datasets/<id>/` is not touched.
//! - A table that cannot be used at all (not found, not a table, a column missing) adds
//!   nothing and is reported; the dataset's other tables still count.
//! - Pure: the dataset's files come in as paths and table bytes through a closure. A failure of
//!   that closure (the network) aborts the build, so it is tried again; it is never recorded
//!   as the table's fault.
//! - Deterministic: the same tables and files give the same tree, its folders and files in
//!   name order.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::catalog::{LabelColumns, LabelTable, Pattern, Piece, Split, TableFormat};

/// Tables larger than this are not read (the largest of the catalog, ChestX-ray14's, is 8 MB).
pub const TABLE_MAX: u64 = 256 << 20;

/// Examples kept of each kind of problem.
const EXAMPLES: usize = 5;

/// A kind of problem met, how often, and its first few occurrences.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
// Stored in the index as JSON: a field added later reads as its default.
#[serde(default)]
pub struct Problem {
    /// How many times.
    pub count: u64,
    /// The first few, each saying where (row, file).
    pub examples: Vec<String>,
}

impl Problem {
    fn add(&mut self, example: impl FnOnce() -> String) {
        self.count += 1;
        if self.examples.len() < EXAMPLES {
            self.examples.push(example());
        }
    }
}

/// What one table gave.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
// Stored in the index as JSON: a field added later reads as its default.
#[serde(default)]
pub struct TableReport {
    /// The table as the catalog names it.
    pub table: String,
    /// The file it was found as, if it was.
    pub file: Option<String>,
    /// Why it gave nothing, when it could not be used at all.
    pub error: Option<String>,
    /// Data rows read (blank rows not counted).
    pub rows: u64,
    /// Rows that placed at least one file.
    pub placed: u64,
    /// Rows naming a file the dataset does not have.
    pub missing: Problem,
    /// Rows naming a file several files of the dataset end with.
    pub ambiguous: Problem,
    /// Rows giving no label.
    pub unlabelled: Problem,
    /// Rows that cannot be read as the catalog says (a bad value, too few cells).
    pub bad: Problem,
}

/// What the tables of one dataset gave: the folders, and everything skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
// Stored in the index as JSON: a field added later reads as its default.
#[serde(default)]
pub struct Report {
    /// One per table of the catalog entry, in its order.
    pub tables: Vec<TableReport>,
    /// Files per folder (`label`, or `split/label`), in name order.
    pub classes: Vec<(String, u64)>,
    /// Distinct files placed.
    pub files: u64,
    /// Names under `classes/<id>/` (a multi-label file has one per label).
    pub links: u64,
    /// Two different files that would have the same name in one folder: the first is kept.
    pub collisions: Problem,
    /// Files in a folder that holds labelled files, of their kind, that no row names.
    pub unlabelled_files: Problem,
}

impl Report {
    /// Whether anything was skipped or could not be used.
    pub fn skipped_anything(&self) -> bool {
        self.collisions.count > 0
            || self.unlabelled_files.count > 0
            || self.tables.iter().any(|t| {
                t.error.is_some()
                    || t.missing.count > 0
                    || t.ambiguous.count > 0
                    || t.unlabelled.count > 0
                    || t.bad.count > 0
            })
    }

    /// The splits (first folder level) when the tables give any.
    pub fn splits(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .classes
            .iter()
            .filter_map(|(k, _)| k.split_once('/').map(|(s, _)| s))
            .collect();
        v.dedup();
        v
    }

    /// One line for the log: what was placed, then what was skipped.
    pub fn summary(&self) -> String {
        let splits = self.splits();
        let mut s = format!(
            "{} files under {} {}{}",
            self.files,
            self.classes.len(),
            if splits.is_empty() {
                "label folders"
            } else {
                "split/label folders"
            },
            if self.links > self.files {
                format!(" ({} names: some files have several labels)", self.links)
            } else {
                String::new()
            }
        );
        let mut skipped = Vec::new();
        for t in &self.tables {
            if let Some(e) = &t.error {
                skipped.push(format!("table {} not used: {e}", t.table));
            }
            for (p, what) in [
                (&t.missing, "naming a missing file"),
                (&t.ambiguous, "naming several files"),
                (&t.unlabelled, "without a label"),
                (&t.bad, "unreadable"),
            ] {
                if p.count > 0 {
                    skipped.push(format!(
                        "{} rows of {} {what} (first: {})",
                        p.count,
                        t.table,
                        p.examples.first().map_or("", String::as_str)
                    ));
                }
            }
        }
        if self.collisions.count > 0 {
            skipped.push(format!(
                "{} files whose name another file has in the same folder",
                self.collisions.count
            ));
        }
        if self.unlabelled_files.count > 0 {
            skipped.push(format!(
                "{} files in labelled folders that no row names (first: {})",
                self.unlabelled_files.count,
                self.unlabelled_files
                    .examples
                    .first()
                    .map_or("", String::as_str)
            ));
        }
        if !skipped.is_empty() {
            s.push_str("; skipped: ");
            s.push_str(&skipped.join("; "));
        }
        s
    }
}

/// A node of the classes tree to store: a folder, or a name for a dataset file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassNode {
    /// Index of the parent folder in the list; `None` for a child of `classes/<id>/`.
    pub parent: Option<usize>,
    /// Its name.
    pub name: String,
    /// The dataset file's entry id; `None` for a folder.
    pub entry: Option<i64>,
}

/// The classes tree of a dataset (folders before their contents) and its report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClassTree {
    /// Nodes in order: every folder before its children, names in order within a folder.
    pub nodes: Vec<ClassNode>,
    /// What was placed and what was skipped.
    pub report: Report,
}

/// One file of the dataset, as the index has it.
#[derive(Debug, Clone)]
struct File {
    entry: i64,
    path: Vec<String>,
    size: Option<u64>,
}

/// The files of a dataset, found by their path or its last segments.
#[derive(Debug, Default)]
pub struct Files {
    files: Vec<File>,
    by_name: HashMap<String, Vec<usize>>,
}

/// What a path or its last segments name among the files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    One(usize),
    Nothing,
    Many(usize),
}

impl Files {
    /// The dataset's files: entry id, path segments from the dataset root, size if known.
    pub fn new(files: impl IntoIterator<Item = (i64, Vec<String>, Option<u64>)>) -> Files {
        let mut out = Files::default();
        for (entry, path, size) in files {
            let Some(name) = path.last() else { continue };
            out.by_name
                .entry(name.clone())
                .or_default()
                .push(out.files.len());
            out.files.push(File { entry, path, size });
        }
        out
    }

    /// The file whose path is `segs` or ends with them.
    fn find(&self, segs: &[&str]) -> Found {
        let Some(last) = segs.last() else {
            return Found::Nothing;
        };
        let hits: Vec<usize> = self
            .by_name
            .get(*last)
            .into_iter()
            .flatten()
            .copied()
            .filter(|&i| ends_with(&self.files[i].path, segs))
            .collect();
        found(&hits)
    }

    /// The file whose last segments match `pattern` (`*` within a segment).
    fn find_glob(&self, pattern: &str) -> Found {
        let k = pattern.split('/').count();
        let hits: Vec<usize> = (0..self.files.len())
            .filter(|&i| {
                let p = &self.files[i].path;
                p.len() >= k && crate::resolve::glob(pattern, &p[p.len() - k..].join("/"))
            })
            .collect();
        found(&hits)
    }
}

fn found(hits: &[usize]) -> Found {
    match hits {
        [] => Found::Nothing,
        [one] => Found::One(*one),
        many => Found::Many(many.len()),
    }
}

fn ends_with(path: &[String], segs: &[&str]) -> bool {
    path.len() >= segs.len()
        && path[path.len() - segs.len()..]
            .iter()
            .zip(segs)
            .all(|(a, b)| a == b)
}

/// A table read: its header and its data rows, each with its row number (the header is row
/// 1) and its cells, or why the row cannot be read.
#[derive(Debug, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<(u64, Result<Vec<String>, String>)>,
}

/// Read a table's bytes as `format` (`sheet`: a spreadsheet's sheet, else its first).
pub fn read_table(bytes: &[u8], format: TableFormat, sheet: Option<&str>) -> Result<Table, String> {
    match format {
        TableFormat::Csv => read_delimited(bytes, b','),
        TableFormat::Tsv => read_delimited(bytes, b'\t'),
        TableFormat::Sheet => read_sheet(bytes, sheet),
    }
}

fn read_delimited(bytes: &[u8], delimiter: u8) -> Result<Table, String> {
    if looks_like_html(bytes) {
        return Err("it is an HTML page, not a table".into());
    }
    let mut r = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .from_reader(bytes);
    let header: Vec<String> = r
        .headers()
        .map_err(|e| format!("its header cannot be read: {e}"))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    if header.iter().all(String::is_empty) {
        return Err("it has no header row".into());
    }
    let mut rows = Vec::new();
    for rec in r.records() {
        match rec {
            Ok(rec) => {
                let line = rec.position().map_or(0, |p| p.line());
                rows.push((line, Ok(rec.iter().map(|c| c.trim().to_string()).collect())));
            }
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                let why = match e.kind() {
                    csv::ErrorKind::Utf8 { .. } => "it is not UTF-8 text".to_string(),
                    _ => e.to_string(),
                };
                rows.push((line, Err(why)));
            }
        }
    }
    Ok(Table { header, rows })
}

fn looks_like_html(bytes: &[u8]) -> bool {
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(256)]).to_ascii_lowercase();
    let head = head.trim_start();
    head.starts_with("<!doctype html") || head.starts_with("<html")
}

fn read_sheet(bytes: &[u8], sheet: Option<&str>) -> Result<Table, String> {
    use calamine::{Data, Reader};
    let mut book =
        calamine::open_workbook_auto_from_rs(std::io::Cursor::new(bytes)).map_err(|e| {
            format!("it is not a spreadsheet calamine reads (xlsx, xls, xlsb, ods): {e}")
        })?;
    let range = match sheet {
        Some(name) => book.worksheet_range(name).map_err(|e| {
            format!(
                "no sheet {name:?} ({e}); its sheets are: {}",
                book.sheet_names().join(", ")
            )
        })?,
        None => book
            .worksheet_range_at(0)
            .ok_or("it has no sheet")?
            .map_err(|e| format!("its first sheet cannot be read: {e}"))?,
    };
    let first_row = range.start().map_or(0, |(r, _)| r as u64);
    let cell = |d: &Data| -> Result<String, String> {
        match d {
            Data::Error(e) => Err(format!("a cell holds the error {e}")),
            d => Ok(d.to_string().trim().to_string()),
        }
    };
    let mut rows = range.rows();
    let header = rows
        .next()
        .ok_or("its sheet is empty")?
        .iter()
        .map(|d| d.to_string().trim().to_string())
        .collect();
    let rows = rows
        .enumerate()
        .map(|(i, r)| {
            let cells: Result<Vec<String>, String> = r.iter().map(cell).collect();
            (first_row + i as u64 + 2, cells)
        })
        .collect();
    Ok(Table { header, rows })
}

/// A label or split value as a folder name: trimmed, `/` shown as `∕` (U+2215: a name
/// cannot hold a `/`); `Err` when it cannot be a folder name at all.
pub fn folder_name(value: &str) -> Result<String, String> {
    if let Some(m) = crate::catalog::folder_name_problem(value) {
        return Err(format!("{value:?} cannot be a folder name: {m}"));
    }
    Ok(value.trim().replace('/', "\u{2215}"))
}

/// A one-hot cell: 1 (`1`, `1.0`, `true`, `yes`) or 0 (`0`, `0.0`, `false`, `no`, empty).
fn one_hot(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "" | "false" | "no" => Some(false),
        "true" | "yes" => Some(true),
        t => match t.parse::<f64>() {
            Ok(1.0) => Some(true),
            Ok(0.0) => Some(false),
            _ => None,
        },
    }
}

/// A file placed under a split and label by a row.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Placement {
    split: Option<String>,
    label: String,
    file: usize,
}

/// The column index of each name, or the table's error naming the first missing one.
fn columns<'a>(
    header: &[String],
    names: impl IntoIterator<Item = &'a str>,
) -> Result<HashMap<String, usize>, String> {
    let mut out = HashMap::new();
    for n in names {
        match header.iter().position(|h| h == n.trim()) {
            Some(i) => {
                out.insert(n.to_string(), i);
            }
            None => {
                let shown: Vec<&str> = header.iter().take(30).map(String::as_str).collect();
                return Err(format!(
                    "it has no column {n:?}; its columns are: {}{}",
                    shown.join(", "),
                    if header.len() > 30 { ", ..." } else { "" }
                ));
            }
        }
    }
    Ok(out)
}

/// The columns a table spec needs.
fn needed(spec: &LabelTable) -> Vec<&str> {
    let mut v: Vec<&str> = spec.image.iter().flat_map(Pattern::columns).collect();
    match &spec.label {
        LabelColumns::Single(c) | LabelColumns::Joined { column: c, .. } => v.push(c),
        LabelColumns::OneHot(cs) => v.extend(cs.iter().map(String::as_str)),
    }
    if let Split::Column(c) = &spec.split {
        v.push(c);
    }
    v
}

/// Place the rows of one table: each row's files under its split and labels.
fn place(
    spec: &LabelTable,
    table: &Table,
    files: &Files,
    report: &mut TableReport,
    out: &mut Vec<Placement>,
) {
    let cols = match columns(&table.header, needed(spec)) {
        Ok(c) => c,
        Err(e) => {
            report.error = Some(e);
            return;
        }
    };
    let get = |cells: &[String], c: &str| -> String {
        cols.get(c)
            .and_then(|&i| cells.get(i))
            .cloned()
            .unwrap_or_default()
    };
    for (row, cells) in &table.rows {
        let row = *row;
        let cells = match cells {
            Ok(c) if c.iter().all(String::is_empty) => continue,
            Ok(c) => c,
            Err(e) => {
                report.rows += 1;
                report.bad.add(|| format!("row {row}: {e}"));
                continue;
            }
        };
        report.rows += 1;
        if cells.len() < table.header.len() && cols.values().any(|&i| i >= cells.len()) {
            report.bad.add(|| {
                format!(
                    "row {row}: {} cells where the header has {}",
                    cells.len(),
                    table.header.len()
                )
            });
            continue;
        }
        let labels: Result<Vec<String>, String> = match &spec.label {
            LabelColumns::Single(c) => Ok(vec![get(cells, c)]
                .into_iter()
                .filter(|v| !v.is_empty())
                .collect()),
            LabelColumns::Joined { column, separator } => Ok(get(cells, column)
                .split(separator.as_str())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
                .collect()),
            LabelColumns::OneHot(cs) => cs
                .iter()
                .filter_map(|c| match one_hot(&get(cells, c)) {
                    Some(true) => Some(Ok(c.clone())),
                    Some(false) => None,
                    None => Some(Err(format!(
                        "column {c:?} holds {:?}, not 0 or 1",
                        get(cells, c)
                    ))),
                })
                .collect(),
        };
        let labels = match labels.and_then(|ls| {
            let mut seen = HashSet::new();
            ls.iter()
                .map(|l| folder_name(l))
                .filter(|l| l.as_ref().map_or(true, |l| seen.insert(l.clone())))
                .collect::<Result<Vec<_>, _>>()
        }) {
            Ok(l) => l,
            Err(e) => {
                report.bad.add(|| format!("row {row}: {e}"));
                continue;
            }
        };
        // The files the row names: each pattern filled with the row's values.
        let mut named = Vec::new();
        let mut empty = None;
        for p in &spec.image {
            let mut path = String::new();
            for piece in &p.pieces {
                match piece {
                    Piece::Text(t) => path.push_str(t),
                    Piece::Column(c) => {
                        let v = get(cells, c);
                        if v.is_empty() {
                            empty = Some(c.clone());
                        }
                        path.push_str(&v);
                    }
                }
            }
            named.push(path);
        }
        if let Some(c) = empty {
            report
                .bad
                .add(|| format!("row {row}: column {c:?} is empty, so it names no file"));
            continue;
        }
        if labels.is_empty() {
            report
                .unlabelled
                .add(|| format!("row {row}: {}", named.join(", ")));
            continue;
        }
        let mut placed = false;
        for path in &named {
            let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
            let file = match files.find(&segs) {
                Found::One(f) => f,
                Found::Nothing => {
                    report.missing.add(|| format!("row {row}: {path}"));
                    continue;
                }
                Found::Many(n) => {
                    report.ambiguous.add(|| {
                        format!("row {row}: {n} files end with {path}; the pattern needs more of the path")
                    });
                    continue;
                }
            };
            let split = match &spec.split {
                Split::None => None,
                Split::Named(s) => Some(folder_name(s)),
                Split::Column(c) => Some(match get(cells, c) {
                    v if v.is_empty() => Err(format!("column {c:?} gives no split")),
                    v => folder_name(&v),
                }),
                Split::Folder => {
                    let p = &files.files[file].path;
                    Some(match p.len() {
                        0 | 1 => Err(format!("{path} is in no folder to take its split from")),
                        n => folder_name(&p[n - 2]),
                    })
                }
            };
            let split = match split.transpose() {
                Ok(s) => s,
                Err(e) => {
                    report.bad.add(|| format!("row {row}: {e}"));
                    continue;
                }
            };
            for label in &labels {
                out.push(Placement {
                    split: split.clone(),
                    label: label.clone(),
                    file,
                });
            }
            placed = true;
        }
        if placed {
            report.placed += 1;
        }
    }
}

/// Read every table of a dataset and lay out its classes tree. `read` gives the bytes of the
/// file with this entry id; its error (the network) aborts the build.
pub fn build<E>(
    specs: &[LabelTable],
    files: &Files,
    read: &mut dyn FnMut(i64) -> Result<Vec<u8>, E>,
) -> Result<ClassTree, E> {
    let mut report = Report::default();
    let mut placements = Vec::new();
    for spec in specs {
        let mut t = TableReport {
            table: spec.table.clone(),
            ..TableReport::default()
        };
        let file = match files.find_glob(&spec.table) {
            Found::One(f) => Some(&files.files[f]),
            Found::Nothing => {
                t.error = Some("the dataset has no such file".into());
                None
            }
            Found::Many(n) => {
                t.error = Some(format!(
                    "{n} files of the dataset match it; give more of its path"
                ));
                None
            }
        };
        if let Some(f) = file {
            let name = f.path.join("/");
            t.file = Some(name.clone());
            let format = spec
                .format
                .or_else(|| TableFormat::of_name(&name))
                .ok_or_else(|| {
                    format!("{name} has no extension medimg knows; give `format` in the catalog")
                });
            match format {
                Err(e) => t.error = Some(e),
                Ok(_) if f.size.is_some_and(|s| s > TABLE_MAX) => {
                    t.error = Some(format!(
                        "it is {} bytes; tables over {TABLE_MAX} bytes are not read",
                        f.size.unwrap_or(0)
                    ));
                }
                Ok(format) => {
                    let bytes = read(f.entry)?;
                    if bytes.len() as u64 > TABLE_MAX {
                        t.error = Some(format!(
                            "it is over {TABLE_MAX} bytes; larger tables are not read"
                        ));
                    } else {
                        match read_table(&bytes, format, spec.sheet.as_deref()) {
                            Ok(table) => place(spec, &table, files, &mut t, &mut placements),
                            Err(e) => t.error = Some(e),
                        }
                    }
                }
            }
        }
        report.tables.push(t);
    }
    Ok(lay_out(placements, files, report))
}

/// The tree of the placements, in name order; the report's totals and the files no row named.
fn lay_out(mut placements: Vec<Placement>, files: &Files, mut report: Report) -> ClassTree {
    let name = |f: usize| files.files[f].path.last().cloned().unwrap_or_default();
    placements.sort_by(|a, b| {
        (&a.split, &a.label, name(a.file), a.file).cmp(&(&b.split, &b.label, name(b.file), b.file))
    });
    placements.dedup();
    let mut nodes: Vec<ClassNode> = Vec::new();
    let mut dirs: HashMap<(Option<String>, Option<String>), usize> = HashMap::new();
    let mut taken: HashMap<(Option<String>, String, String), usize> = HashMap::new();
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut placed: HashSet<usize> = HashSet::new();
    for p in &placements {
        let n = name(p.file);
        match taken.get(&(p.split.clone(), p.label.clone(), n.clone())) {
            Some(&other) if other != p.file => {
                report.collisions.add(|| {
                    format!(
                        "{} and {} are both {n} in {}{}",
                        files.files[other].path.join("/"),
                        files.files[p.file].path.join("/"),
                        p.split.as_ref().map_or(String::new(), |s| format!("{s}/")),
                        p.label
                    )
                });
                continue;
            }
            Some(_) => continue,
            None => {}
        }
        taken.insert((p.split.clone(), p.label.clone(), n.clone()), p.file);
        let split_dir = p.split.as_ref().map(|s| {
            *dirs.entry((Some(s.clone()), None)).or_insert_with(|| {
                nodes.push(ClassNode {
                    parent: None,
                    name: s.clone(),
                    entry: None,
                });
                nodes.len() - 1
            })
        });
        let label_dir = *dirs
            .entry((p.split.clone(), Some(p.label.clone())))
            .or_insert_with(|| {
                nodes.push(ClassNode {
                    parent: split_dir,
                    name: p.label.clone(),
                    entry: None,
                });
                nodes.len() - 1
            });
        nodes.push(ClassNode {
            parent: Some(label_dir),
            name: n,
            entry: Some(files.files[p.file].entry),
        });
        let key = match &p.split {
            Some(s) => format!("{s}/{}", p.label),
            None => p.label.clone(),
        };
        *counts.entry(key).or_default() += 1;
        report.links += 1;
        placed.insert(p.file);
    }
    report.files = placed.len() as u64;
    report.classes = counts.into_iter().collect();
    // A file beside labelled files, of their kind, that no row names: it has no label.
    let mut kinds: HashSet<(&[String], String)> = HashSet::new();
    for &f in &placed {
        let p = &files.files[f].path;
        kinds.insert((&p[..p.len() - 1], extension(&p[p.len() - 1])));
    }
    let mut unnamed: Vec<&File> = files
        .files
        .iter()
        .enumerate()
        .filter(|(i, f)| {
            !placed.contains(i)
                && !f.path.is_empty()
                && kinds.contains(&(
                    &f.path[..f.path.len() - 1],
                    extension(&f.path[f.path.len() - 1]),
                ))
        })
        .map(|(_, f)| f)
        .collect();
    unnamed.sort_by(|a, b| a.path.cmp(&b.path));
    for f in unnamed {
        report.unlabelled_files.add(|| f.path.join("/"));
    }
    ClassTree { nodes, report }
}

fn extension(name: &str) -> String {
    name.rsplit_once('.')
        .map_or(String::new(), |(_, e)| e.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    fn spec(labels: &str) -> Vec<LabelTable> {
        let text = format!(
            "[[dataset]]\nid = \"d\"\ntitle = \"D\"\nmodality = [\"X-ray\"]\norgan = [\"lung\"]\n\
             access = \"open\"\n[[dataset.source]]\ntype = \"http\"\nurl = \"https://h/d.zip\"\n{labels}"
        );
        Catalog::parse(&text, "t").unwrap().datasets[0]
            .labels
            .clone()
    }

    fn files(paths: &[&str]) -> Files {
        Files::new(paths.iter().enumerate().map(|(i, p)| {
            (
                100 + i as i64,
                p.split('/').map(str::to_string).collect(),
                Some(10),
            )
        }))
    }

    /// Build with tables by file name; every path of the tree with its entry id.
    fn run(specs: &[LabelTable], fs: &Files, tables: &[(&str, &[u8])]) -> (Vec<String>, Report) {
        let by_entry: HashMap<i64, Vec<u8>> = tables
            .iter()
            .map(|(name, bytes)| {
                let i = fs
                    .files
                    .iter()
                    .position(|f| f.path.last().map(String::as_str) == Some(*name))
                    .unwrap();
                (fs.files[i].entry, bytes.to_vec())
            })
            .collect();
        let tree = build::<()>(specs, fs, &mut |e| Ok(by_entry[&e].clone())).unwrap();
        let mut paths = Vec::new();
        for (i, n) in tree.nodes.iter().enumerate() {
            let mut p = vec![n.name.clone()];
            let mut up = n.parent;
            while let Some(u) = up {
                assert!(u < i, "a folder comes before its children");
                p.insert(0, tree.nodes[u].name.clone());
                up = tree.nodes[u].parent;
            }
            if let Some(e) = n.entry {
                paths.push(format!("{} -> {e}", p.join("/")));
            }
        }
        (paths, tree.report)
    }

    #[test]
    fn single_label_with_a_split_column_places_every_named_file() {
        let s = spec(
            "[[dataset.labels]]\ntable = \"meta.csv\"\nimage = \"{image_id}.jpg\"\nlabel = \"dx\"\nsplit_column = \"set\"\n",
        );
        let fs = files(&[
            "meta.csv",
            "part_1/a.jpg",
            "part_2/b.jpg",
            "part_2/c.jpg",
            "part_2/d.jpg",
        ]);
        let csv = b"\xef\xbb\xbfimage_id,dx,set\na,nv,train\nb,mel,train\nc,nv,test\nmissing,nv,train\n,nv,test\n\n";
        let (paths, r) = run(&s, &fs, &[("meta.csv", csv)]);
        assert_eq!(
            paths,
            [
                "test/nv/c.jpg -> 103",
                "train/mel/b.jpg -> 102",
                "train/nv/a.jpg -> 101"
            ]
        );
        let t = &r.tables[0];
        assert_eq!((t.rows, t.placed), (5, 3));
        assert_eq!(t.missing.count, 1);
        assert_eq!(t.missing.examples, ["row 5: missing.jpg"]);
        assert_eq!(t.bad.count, 1, "{:?}", t.bad);
        assert!(t.bad.examples[0].starts_with("row 6:"), "{:?}", t.bad);
        assert_eq!(
            r.classes,
            [
                ("test/nv".to_string(), 1),
                ("train/mel".to_string(), 1),
                ("train/nv".to_string(), 1)
            ]
        );
        // d.jpg sits beside labelled files and no row names it.
        assert_eq!(r.unlabelled_files.examples, ["part_2/d.jpg"]);
        assert_eq!(r.files, 3);
        let line = r.summary();
        assert!(
            line.contains("3 files under 3 split/label folders"),
            "{line}"
        );
        assert!(
            line.contains("missing.jpg") && line.contains("part_2/d.jpg"),
            "{line}"
        );
    }

    #[test]
    fn joined_labels_place_a_file_under_each_and_no_finding_is_a_label() {
        let s = spec(
            "[[dataset.labels]]\ntable = \"Data_Entry_2017.csv\"\nimage = \"images/{Image Index}\"\nlabel = \"Finding Labels\"\nseparator = \"|\"\n",
        );
        let fs = files(&[
            "Data_Entry_2017.csv",
            "images/1.png",
            "images/2.png",
            "other/1.png",
        ]);
        let csv = b"Image Index,Finding Labels,Follow-up #\n1.png,Effusion|Mass,0\n2.png,No Finding,0\n3.png,Mass,1\n";
        let (paths, r) = run(&s, &fs, &[("Data_Entry_2017.csv", csv)]);
        assert_eq!(
            paths,
            [
                "Effusion/1.png -> 101",
                "Mass/1.png -> 101",
                "No Finding/2.png -> 102"
            ]
        );
        assert_eq!((r.files, r.links), (2, 3));
        assert_eq!(r.tables[0].missing.examples, ["row 4: images/3.png"]);
    }

    #[test]
    fn one_hot_columns_name_the_labels_and_odd_values_are_bad_rows() {
        let s = spec(
            "[[dataset.labels]]\ntable = \"gt.csv\"\nimage = \"{image}.jpg\"\none_hot = [\"MEL\", \"NV\", \"UNK\"]\n",
        );
        let fs = files(&["gt.csv", "x/a.jpg", "x/b.jpg", "x/c.jpg", "x/d.jpg"]);
        let csv = b"image,MEL,NV,UNK\na,1.0,0.0,0.0\nb,0.0,1.0,0.0\nc,0.0,0.0,0.0\nd,0.5,0,0\n";
        let (paths, r) = run(&s, &fs, &[("gt.csv", csv)]);
        assert_eq!(paths, ["MEL/a.jpg -> 101", "NV/b.jpg -> 102"]);
        let t = &r.tables[0];
        assert_eq!(t.unlabelled.examples, ["row 4: c.jpg"]);
        assert_eq!(t.bad.count, 1);
        assert!(
            t.bad.examples[0].contains("\"MEL\" holds \"0.5\""),
            "{:?}",
            t.bad
        );
        // c and d have no label: they are files beside labelled ones that no row places.
        assert_eq!(r.unlabelled_files.count, 2);
    }

    #[test]
    fn a_table_that_cannot_be_used_is_reported_and_the_others_still_count() {
        let s = spec(
            "[[dataset.labels]]\ntable = \"train.csv\"\nimage = \"train/{id}.png\"\nlabel = \"y\"\nsplit = \"train\"\n\
             [[dataset.labels]]\ntable = \"test.csv\"\nimage = \"test/{id}.png\"\nlabel = \"y\"\nsplit = \"test\"\n\
             [[dataset.labels]]\ntable = \"gone.csv\"\nimage = \"{id}.png\"\nlabel = \"y\"\n\
             [[dataset.labels]]\ntable = \"*.tsv\"\nimage = \"{id}.png\"\nlabel = \"y\"\n",
        );
        let fs = files(&[
            "train.csv",
            "test.csv",
            "a.tsv",
            "b.tsv",
            "train/1.png",
            "test/1.png",
        ]);
        let (paths, r) = run(
            &s,
            &fs,
            &[
                ("train.csv", b"id,y\n1,cat\n"),
                ("test.csv", b"id,label\n1,dog\n"),
            ],
        );
        assert_eq!(paths, ["train/cat/1.png -> 104"]);
        let e = r.tables[1].error.as_deref().unwrap();
        assert!(
            e.contains("no column \"y\"") && e.contains("id, label"),
            "{e}"
        );
        assert_eq!(
            r.tables[2].error.as_deref(),
            Some("the dataset has no such file")
        );
        assert!(r.tables[3].error.as_deref().unwrap().starts_with("2 files"));
        assert!(r.skipped_anything());
    }

    #[test]
    fn ambiguous_names_collisions_and_folder_splits() {
        let s = spec(
            "[[dataset.labels]]\ntable = \"l.tsv\"\nimage = \"{f}\"\nlabel = \"c\"\nsplit_folder = true\n",
        );
        let fs = files(&[
            "l.tsv",
            "train_images/a.png",
            "test_images/a.png",
            "train_images/b.png",
            "top.png",
        ]);
        let tsv =
            b"f\tc\na.png\tx\ntrain_images/a.png\tNo Opacity / Not Normal\nb.png\tx\ntop.png\tx\n";
        let (paths, r) = run(&s, &fs, &[("l.tsv", tsv)]);
        assert_eq!(
            paths,
            [
                "train_images/No Opacity \u{2215} Not Normal/a.png -> 101",
                "train_images/x/b.png -> 103"
            ]
        );
        let t = &r.tables[0];
        assert_eq!(t.ambiguous.count, 1);
        assert!(t.ambiguous.examples[0].starts_with("row 2: 2 files"));
        assert_eq!(t.bad.count, 1, "top.png is in no folder");
    }

    /// A minimal xlsx: one sheet named `Sheet1` of inline strings and numbers.
    fn xlsx(rows: &[&[&str]]) -> Vec<u8> {
        use std::io::Write;
        let mut sheet = String::from(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><worksheet xmlns=\"http://schemas.openxmlformats.org/spreadsheetml/2006/main\"><sheetData>",
        );
        for (r, row) in rows.iter().enumerate() {
            sheet.push_str(&format!("<row r=\"{}\">", r + 1));
            for (c, v) in row.iter().enumerate() {
                let at = format!("{}{}", (b'A' + c as u8) as char, r + 1);
                if v.parse::<f64>().is_ok() {
                    sheet.push_str(&format!("<c r=\"{at}\"><v>{v}</v></c>"));
                } else {
                    sheet.push_str(&format!(
                        "<c r=\"{at}\" t=\"inlineStr\"><is><t>{v}</t></is></c>"
                    ));
                }
            }
            sheet.push_str("</row>");
        }
        sheet.push_str("</sheetData></worksheet>");
        let files = [
            ("[Content_Types].xml", "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Types xmlns=\"http://schemas.openxmlformats.org/package/2006/content-types\"><Default Extension=\"rels\" ContentType=\"application/vnd.openxmlformats-package.relationships+xml\"/><Default Extension=\"xml\" ContentType=\"application/xml\"/><Override PartName=\"/xl/workbook.xml\" ContentType=\"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml\"/><Override PartName=\"/xl/worksheets/sheet1.xml\" ContentType=\"application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml\"/></Types>".to_string()),
            ("_rels/.rels", "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Relationships xmlns=\"http://schemas.openxmlformats.org/package/2006/relationships\"><Relationship Id=\"rId1\" Type=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument\" Target=\"xl/workbook.xml\"/></Relationships>".to_string()),
            ("xl/workbook.xml", "<?xml version=\"1.0\" encoding=\"UTF-8\"?><workbook xmlns=\"http://schemas.openxmlformats.org/spreadsheetml/2006/main\" xmlns:r=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships\"><sheets><sheet name=\"Sheet1\" sheetId=\"1\" r:id=\"rId1\"/></sheets></workbook>".to_string()),
            ("xl/_rels/workbook.xml.rels", "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Relationships xmlns=\"http://schemas.openxmlformats.org/package/2006/relationships\"><Relationship Id=\"rId1\" Type=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet\" Target=\"worksheets/sheet1.xml\"/></Relationships>".to_string()),
            ("xl/worksheets/sheet1.xml", sheet),
        ];
        let mut w = ::zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, text) in files {
            w.start_file(name, ::zip::write::SimpleFileOptions::default())
                .unwrap();
            w.write_all(text.as_bytes()).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn a_spreadsheet_with_two_images_per_row_places_both() {
        let s = spec(
            "[[dataset.labels]]\ntable = \"data.xlsx\"\nsheet = \"Sheet1\"\n\
             image = [\"Training Images/{Left-Fundus}\", \"Training Images/{Right-Fundus}\"]\n\
             one_hot = [\"N\", \"D\"]\n",
        );
        let fs = files(&[
            "ODIR-5K/data.xlsx",
            "ODIR-5K/Training Images/0_left.jpg",
            "ODIR-5K/Training Images/0_right.jpg",
            "ODIR-5K/Training Images/1_left.jpg",
            "ODIR-5K/Training Images/1_right.jpg",
            "preprocessed_images/0_left.jpg",
        ]);
        let book = xlsx(&[
            &["ID", "Left-Fundus", "Right-Fundus", "N", "D"],
            &["0", "0_left.jpg", "0_right.jpg", "0", "1"],
            &["1", "1_left.jpg", "1_right.jpg", "1", "0"],
        ]);
        let (paths, r) = run(&s, &fs, &[("data.xlsx", &book)]);
        assert_eq!(
            paths,
            [
                "D/0_left.jpg -> 101",
                "D/0_right.jpg -> 102",
                "N/1_left.jpg -> 103",
                "N/1_right.jpg -> 104"
            ]
        );
        assert!(!r.skipped_anything(), "{r:?}");
        let e = read_table(&book, TableFormat::Sheet, Some("Other")).unwrap_err();
        assert!(e.contains("Sheet1"), "{e}");
    }

    #[test]
    fn bad_tables_are_errors_not_panics() {
        for (format, bytes) in [
            (TableFormat::Csv, &b"<!DOCTYPE html><html>login</html>"[..]),
            (TableFormat::Csv, b""),
            (TableFormat::Sheet, b"not a spreadsheet"),
            (TableFormat::Tsv, b"\xff\xfe\x00"),
        ] {
            let r = read_table(bytes, format, None);
            if let Ok(t) = &r {
                assert!(
                    t.rows.iter().all(|(_, c)| c.is_err())
                        || t.header.iter().all(|h| !h.is_empty())
                );
            }
        }
        assert!(read_table(b"<html>", TableFormat::Csv, None).is_err());
        assert!(read_table(b"x", TableFormat::Sheet, None).is_err());
    }
}
