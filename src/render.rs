//! Text generated from the catalog: the mount's `README.md` and `catalog.csv`, and the
//! `medimg catalog` listing, and the per-dataset access notes (`MNT/about/<id>.md`). Pure
//! functions of the catalog, the credentials found, the refusals recorded and what the label
//! tables gave ([`crate::labels::Report`]).

use std::fmt::Write;

use crate::catalog::{
    Access, Catalog, Dataset, Folders, LabelColumns, Locator, Split, folders_text,
};
use crate::credentials::{Credentials, how_to_provide};
use crate::source::SourceError;

/// `MNT/README.md`: how to use the mount.
pub fn readme(c: &Catalog) -> String {
    let mut s = String::new();
    let readable = c
        .datasets
        .iter()
        .filter(|d| d.unsupported_reason().is_none())
        .count();
    let _ = writeln!(
        s,
        "# medimg\n\n\
         {} public medical image datasets ({} with a pinned source; `about/<id>.md` says what each\n\
         needs, such as a token or accepted terms), fetched from\n\
         their upstream hosts when a file is read and cached on local disk. Read-only.\n\n\
         ## Layout\n\n\
         ```\n\
         datasets/<id>/...                      each dataset's own files, as upstream ships them\n\
         classes/<id>/<split>/<label>/<file>    the same files in a folder per label, for datasets\n\
         \x20                                      whose labels are in a table (ImageFolder reads it)\n\
         modality/<Modality>/<organ>/<id>/...   the same datasets by modality, then organ\n\
         organ/<organ>/<Modality>/<id>/...      and by organ, then modality\n\
         catalog.csv                            one row per dataset\n\
         about/<id>.md                          what each dataset needs, and where to get it\n\
         ```\n\n\
         A file reachable by several paths is one file (same inode), so `du` counts it once.\n\
         Listing a dataset the first time reads its archive's directory from upstream (a few\n\
         requests); after that, `ls`, `find` and `stat` never wait for the network. Reading a file\n\
         downloads the blocks of the archive it lives in; what was read stays cached.\n\n\
         Examples:\n\n\
         ```\n\
         ls modality/X-ray/lung/\n\
         cp -r datasets/<id>/train ./train\n\
         python train.py --data datasets/<id>/...   # torchvision ImageFolder works as on disk\n\
         python train.py --data classes/<id>/train  # labels from the dataset's own table\n\
         ```\n\n\
         The `folders` column below says which datasets a folder-reading training script reads\n\
         as shipped, which through `classes/<id>/`, and which are not classification datasets.\n\n\
         A dataset that fails with 'Permission denied' needs what its about/<id>.md says; a read\n\
         that fails with 'Input/output error' is explained in the daemon's log.\n",
        c.datasets.len(),
        readable
    );
    let _ = writeln!(
        s,
        "## Datasets\n\n| id | title | modality | organ | access | folders | status |\n|---|---|---|---|---|---|---|"
    );
    for d in &c.datasets {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            d.id,
            d.title.replace('|', "/"),
            d.modality.join(", "),
            d.organ.join(", "),
            d.access.as_str(),
            folders_text(d),
            status(d).replace('|', "/")
        );
    }
    s
}

/// Whether the catalog gives medimg a way to fetch the dataset, in a few words (what the user
/// must provide on top is in `about/<id>.md`).
pub fn status(d: &Dataset) -> String {
    match d.unsupported_reason() {
        None => format!("source pinned; see about/{}.md", d.id),
        Some(r) => format!("unsupported: {r}"),
    }
}

/// Whether a dataset can be read here, as `medimg catalog` and `MNT/about/` say it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Nothing is missing that medimg knows of.
    Reachable,
    /// A credential for this host is missing.
    NeedsCredentials(String),
    /// The host refused (403) although credentials were sent, or the catalog says terms must
    /// be accepted first: the message says where.
    NeedsTerms(String),
    /// medimg has no way to fetch it.
    Unsupported(String),
}

impl State {
    /// The state in a few words.
    pub fn label(&self) -> &'static str {
        match self {
            State::Reachable => "reachable",
            State::NeedsCredentials(_) => "needs credentials",
            State::NeedsTerms(_) => "needs terms accepted",
            State::Unsupported(_) => "unsupported",
        }
    }

    /// What to do, if anything.
    pub fn detail(&self) -> &str {
        match self {
            State::Reachable => "",
            State::NeedsCredentials(d) | State::NeedsTerms(d) | State::Unsupported(d) => d,
        }
    }
}

/// The state of `d`, given the credentials found, the last refusal recorded (if any), and
/// whether it was indexed since.
pub fn state(d: &Dataset, creds: &Credentials, denial: Option<&str>, indexed: bool) -> State {
    if let Some(r) = d.unsupported_reason() {
        return State::Unsupported(r.to_string());
    }
    if let Some(m) = missing_credential(d, creds) {
        return State::NeedsCredentials(m);
    }
    if let Some(m) = denial {
        return State::NeedsTerms(m.to_string());
    }
    match &d.terms {
        Some(t) if !indexed => State::NeedsTerms(format!(
            "the host wants its terms accepted at {t} by the account whose credentials medimg \
             sends (medimg cannot tell until it tries)"
        )),
        _ => State::Reachable,
    }
}

/// What is missing before `d` can be read at all: a credential its host always wants.
pub fn missing_credential(d: &Dataset, creds: &Credentials) -> Option<String> {
    let host = d
        .sources
        .iter()
        .filter_map(|s| s.required_credential(d.access))
        .find(|h| creds.for_host(h).is_none())?;
    Some(format!(
        "{host} wants credentials, and medimg found none: provide {}; then restart medimg",
        how_to_provide(host)
    ))
}

/// Why a host refused `d`, in plain words, with what to do.
pub fn denial(d: &Dataset, creds: &Credentials, e: &SourceError) -> String {
    if let SourceError::Asks { url, what } = e {
        let host = crate::credentials::host_of(url).unwrap_or_default();
        return format!("{host} wants something before it serves the files: {what}");
    }
    let url = match e {
        SourceError::Status { url, .. } => url.as_str(),
        _ => "",
    };
    let host = crate::credentials::host_of(url).unwrap_or_default();
    let status = e.status().unwrap_or(403);
    let sent = d
        .sources
        .iter()
        .filter_map(|s| s.required_credential(Access::Credentialed))
        .chain(std::iter::once(host.as_str()))
        .find_map(|h| creds.for_host(h));
    let mut m = format!("{host} refused access (HTTP {status})");
    match (sent, &d.terms) {
        (None, _) => {
            let want = d
                .sources
                .iter()
                .find_map(|s| s.required_credential(Access::Credentialed))
                .unwrap_or(&host);
            m.push_str(&format!(
                ": it wants an account; provide {}, then restart medimg",
                how_to_provide(want)
            ));
        }
        (Some(c), Some(t)) => m.push_str(&format!(
            ": accept the dataset's terms (or request access) at {t} with the account of the \
             credentials in {}, then read again",
            c.origin
        )),
        (Some(c), None) => m.push_str(&format!(
            ": the credentials in {} are wrong, expired, or lack access to this dataset; see {}",
            c.origin, d.homepage
        )),
    }
    if matches!(
        d.sources.first().map(|s| &s.locator),
        Some(Locator::KaggleCompetition { .. })
    ) {
        m.push_str(
            " (Kaggle competitions answer 403 until their rules are accepted on the website)",
        );
    }
    m
}

/// Unix seconds as RFC 3339 UTC, to the second.
fn utc(secs: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The section of `MNT/about/<id>.md` saying that the dataset's upstream changed under the
/// version medimg indexed.
pub fn change(c: &crate::index::Change) -> String {
    let when = utc(c.at);
    let mut s = format!("\n## Changed upstream ({when})\n\n{}\n\n", c.message);
    match c.reindexed_at {
        Some(at) => s.push_str(&format!(
            "medimg indexed the new version on {}; what is in `datasets/{}/` is that version.\n",
            utc(at),
            c.dataset
        )),
        None => s.push_str(&format!(
            "Files of `datasets/{}/` whose bytes medimg had already checked are still served as \
             they were; reading any other part of what changed fails with 'Stale file handle' \
             (ESTALE), so no file mixes two versions. Restart medimg to index the new version.\n",
            c.dataset
        )),
    }
    s
}

/// `MNT/about/<id>.md`: what the dataset is, whether it can be read here, and what to do.
pub fn about(d: &Dataset, st: &State) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# {} (`{}`)\n", d.title, d.id);
    let _ = writeln!(s, "- modality: {}", d.modality.join(", "));
    let _ = writeln!(s, "- organ: {}", d.organ.join(", "));
    if !d.task.is_empty() {
        let _ = writeln!(s, "- task: {}", d.task);
    }
    let _ = writeln!(s, "- license: {}", d.license);
    let _ = writeln!(s, "- homepage: {}", d.homepage);
    let _ = writeln!(s, "- access: {}", d.access.as_str());
    let _ = writeln!(s, "- folders: {}", folders_text(d));
    if let Some(t) = &d.terms {
        let _ = writeln!(s, "- terms: {t}");
    }
    for src in &d.sources {
        let _ = writeln!(
            s,
            "- source: {} {}",
            src.type_name(),
            locator_text(&src.locator)
        );
        if let Some(m) = &src.mirror {
            let _ = writeln!(
                s,
                "  - a third-party mirror, not the authors' copy: {}; its licence: {}",
                m.by, m.license
            );
        }
    }
    let _ = writeln!(s, "\n## State: {}\n", st.label());
    match st {
        State::Reachable => {
            let _ = writeln!(
                s,
                "Nothing is missing. Its files are in `datasets/{}/`; listing it the first time asks \
                 its host for the file list.",
                d.id
            );
        }
        other => {
            let _ = writeln!(s, "{}", other.detail());
            let _ = writeln!(
                s,
                "\nUntil then `datasets/{}/` stays visible, and entering or reading it fails with \
                 'Permission denied' (unsupported datasets: 'Input/output error').",
                d.id
            );
        }
    }
    s
}

/// The section of `MNT/about/<id>.md` on `classes/<id>/`: where its labels come from, what
/// it holds, and everything its tables skipped (`None`: not made yet).
pub fn classes(d: &Dataset, report: Option<&crate::labels::Report>) -> String {
    let mut s = format!(
        "\n## classes/{id}/\n\n`classes/{id}/` shows this dataset's files in a folder per label \
         (`<split>/<label>/` where its tables give splits), as torchvision's `ImageFolder`, Keras' \
         `image_dataset_from_directory` and fastai's `from_folder` expect. Each file there is the \
         file of `datasets/{id}/` (the same inode): nothing is copied or fetched twice. The labels \
         come from:\n\n",
        id = d.id
    );
    for t in &d.labels {
        let label = match &t.label {
            LabelColumns::Single(c) => format!("column `{c}`"),
            LabelColumns::Joined { column, separator } => {
                format!("column `{column}`, labels joined by `{separator}`")
            }
            LabelColumns::OneHot(cs) => format!("one column per label ({})", cs.join(", ")),
        };
        let split = match &t.split {
            Split::None => String::new(),
            Split::Named(n) => format!("; split `{n}`"),
            Split::Column(c) => format!("; split from column `{c}`"),
            Split::Folder => "; split from the image's folder".into(),
        };
        let images: Vec<String> = t.image.iter().map(|p| format!("`{}`", p.text)).collect();
        let _ = writeln!(
            s,
            "- `{}`: images {}; labels from {label}{split}",
            t.table,
            images.join(", ")
        );
    }
    let Some(r) = report else {
        let _ = writeln!(
            s,
            "\nNot made yet: listing `datasets/{id}/` or `classes/{id}/` the first time reads the \
             table(s) through the cache.",
            id = d.id
        );
        return s;
    };
    let _ = writeln!(
        s,
        "\nIt holds {} files in {} folders{}:\n\n| folder | files |\n|---|---|",
        r.files,
        r.classes.len(),
        if r.links > r.files {
            format!(
                " ({} names: a file with several labels is in each of their folders)",
                r.links
            )
        } else {
            String::new()
        }
    );
    for (folder, n) in &r.classes {
        let _ = writeln!(s, "| {} | {n} |", folder.replace('|', "\\|"));
    }
    let mut skipped = Vec::new();
    let examples = |p: &crate::labels::Problem| {
        if p.examples.is_empty() {
            String::new()
        } else {
            format!(
                ": {}{}",
                p.examples.join("; "),
                if p.count > p.examples.len() as u64 {
                    "; ..."
                } else {
                    ""
                }
            )
        }
    };
    for t in &r.tables {
        let name = t.file.as_deref().unwrap_or(&t.table);
        if let Some(e) = &t.error {
            skipped.push(format!("`{}` was not used: {e}", t.table));
            continue;
        }
        for (p, what) in [
            (&t.missing, "name a file the dataset does not have"),
            (&t.ambiguous, "name a file several files end with"),
            (&t.unlabelled, "give no label"),
            (&t.bad, "cannot be read as the catalog says"),
        ] {
            if p.count > 0 {
                skipped.push(format!(
                    "{} of the {} rows of `{name}` {what}{}",
                    p.count,
                    t.rows,
                    examples(p)
                ));
            }
        }
    }
    if r.collisions.count > 0 {
        skipped.push(format!(
            "{} files have the name of another file of their folder (the first is kept){}",
            r.collisions.count,
            examples(&r.collisions)
        ));
    }
    if r.unlabelled_files.count > 0 {
        skipped.push(format!(
            "{} files sit beside labelled files and no row names them, so they have no label{}",
            r.unlabelled_files.count,
            examples(&r.unlabelled_files)
        ));
    }
    if skipped.is_empty() {
        let _ = writeln!(s, "\nEvery row of its tables placed its files.");
    } else {
        let _ = writeln!(
            s,
            "\nSkipped, and not in `classes/{}/` (medimg never guesses a label):\n",
            d.id
        );
        for k in skipped {
            let _ = writeln!(s, "- {k}");
        }
    }
    s
}

fn locator_text(l: &Locator) -> String {
    match l {
        Locator::Http { urls, format } => format!("{format} {}", urls.join(" ")),
        Locator::Dir { url } => format!("directory listing {url}"),
        other => {
            let v = serde_json::to_value(other).unwrap_or_default();
            let mut parts = Vec::new();
            if let Some(o) = v.as_object() {
                for (k, v) in o {
                    if k != "type" {
                        parts.push(format!(
                            "{k}={}",
                            v.as_str().map_or(v.to_string(), str::to_string)
                        ));
                    }
                }
            }
            parts.join(" ")
        }
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// `medimg status` for a terminal, from the daemon's JSON answer.
pub fn daemon_status(v: &serde_json::Value) -> String {
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    let size = |v: &serde_json::Value| crate::config::human_size(n(v));
    let mut s = String::new();
    let up = n(&v["uptime_s"]);
    let _ = writeln!(
        s,
        "medimg at {} (pid {}), up {}h {:02}m",
        v["mountpoint"].as_str().unwrap_or("?"),
        n(&v["pid"]),
        up / 3600,
        up % 3600 / 60
    );
    s.push_str(&cache_line(v));
    let _ = writeln!(s, "requests in progress: {}", n(&v["in_progress"]));
    let r = &v["reads"];
    let _ = writeln!(
        s,
        "reads: {} ({}), {} files pushed ahead; sizes asked of hosts: {}",
        n(&r["reads"]),
        size(&r["bytes"]),
        n(&r["pushed_files"]),
        n(&v["sizes"]["probes"]) + n(&v["sizes"]["pages"])
    );
    let t = &v["shared_cache"];
    if t.is_object() {
        let _ = writeln!(
            s,
            "shared cache {}{}: {} hits ({}), {} misses, {} published ({}), {} waits for \
             another node ({} served), {} damaged and replaced, {} store errors, {} requests \
             past it while paused, {} asked to slow down",
            t["store"].as_str().unwrap_or("?"),
            if t["paused"].as_bool() == Some(true) {
                " (paused after a failure)"
            } else {
                ""
            },
            n(&t["hits"]),
            size(&t["hit_bytes"]),
            n(&t["misses"]),
            n(&t["publishes"]),
            size(&t["published_bytes"]),
            n(&t["lease_waits"]),
            n(&t["lease_waits_served"]),
            n(&t["corrupt"]),
            n(&t["errors"]),
            n(&t["bypassed"]),
            n(&t["throttled"]),
        );
        if let Some(e) = t["last_error"].as_str() {
            let _ = writeln!(s, "  last store error: {e}");
        }
    }
    let datasets: Vec<&serde_json::Value> = v["datasets"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|d| d["indexed"].as_bool() == Some(true) || n(&d["cached_bytes"]) > 0)
                .collect()
        })
        .unwrap_or_default();
    let _ = writeln!(
        s,
        "\n{:32}  {:8}  {:>10}  {:>9}  {:>10}",
        "DATASET", "INDEXED", "CACHED", "REQUESTS", "FETCHED"
    );
    for d in &datasets {
        let id = d["id"].as_str().unwrap_or("?");
        let up = &v["upstream_by_dataset"][id];
        let indexed = if d["indexed"].as_bool() == Some(true) {
            "yes"
        } else {
            "no"
        };
        let _ = writeln!(
            s,
            "{id:32}  {indexed:8}  {:>10}  {:>9}  {:>10}",
            size(&d["cached_bytes"]),
            n(&up["requests"]),
            size(&up["bytes"])
        );
    }
    let _ = writeln!(
        s,
        "({} of {} datasets indexed or cached)",
        datasets.len(),
        v["datasets"].as_array().map_or(0, Vec::len)
    );
    for d in v["datasets"].as_array().into_iter().flatten() {
        let c = &d["changed"];
        if c.is_object() {
            let state = if c["reindexed_at"].is_null() {
                "restart medimg to index the new version"
            } else {
                "the new version is indexed"
            };
            let _ = writeln!(
                s,
                "changed upstream: {} ({state}): {}",
                d["id"].as_str().unwrap_or("?"),
                c["message"].as_str().unwrap_or("?")
            );
        }
    }
    let _ = writeln!(
        s,
        "\n{:32}  {:>9}  {:>10}  {:>9}  {:>6}  {:>6}",
        "HOST", "REQUESTS", "BYTES", "RETRIABLE", "ERRORS", "WAITS"
    );
    if let Some(hosts) = v["hosts"].as_object() {
        for (h, c) in hosts {
            let _ = writeln!(
                s,
                "{h:32}  {:>9}  {:>10}  {:>9}  {:>6}  {:>6}",
                n(&c["requests"]),
                size(&c["bytes"]),
                n(&c["transient"]),
                n(&c["errors"]),
                n(&c["waits"])
            );
        }
    }
    if let Some(f) = v["failures"].as_array().filter(|f| !f.is_empty()) {
        let _ = writeln!(s, "\nlast failures (newest last):");
        for x in f {
            let secs = x["at"].as_u64().unwrap_or(0);
            let at = humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs),
            );
            let _ = writeln!(s, "  {at}  {}", x["message"].as_str().unwrap_or(""));
        }
    }
    s
}

/// The cache's use against its limit, one line, from a status answer.
fn cache_line(v: &serde_json::Value) -> String {
    let c = &v["cache"];
    let size = |v: &serde_json::Value| crate::config::human_size(v.as_u64().unwrap_or(0));
    let mut s = format!(
        "cache {}: {} of {}\n",
        c["dir"].as_str().unwrap_or("?"),
        size(&c["used"]),
        size(&c["limit"])
    );
    let unkept = v["cache_stats"]["not_kept"].as_u64().unwrap_or(0);
    if unkept > 0 {
        let _ = writeln!(
            s,
            "{unkept} blocks served but not kept: writing them failed (is the cache's \
             filesystem full? see the log)"
        );
    }
    s
}

/// How many of `datasets` a user can read the images of: without any account, with an account
/// (a token, accepted terms), with credentialed access, and not at all (no pinned source).
pub fn reach(datasets: &[&Dataset]) -> String {
    let supported = |a: Access| {
        datasets
            .iter()
            .filter(|d| d.access == a && d.unsupported_reason().is_none())
            .count()
    };
    let none = datasets
        .iter()
        .filter(|d| d.unsupported_reason().is_some())
        .count();
    format!(
        "images reachable: {} without any account, {} with an account, {} with credentialed \
         access, {none} not at all (yet)",
        supported(Access::Open),
        supported(Access::Account),
        supported(Access::Credentialed)
    )
}

/// How many of `datasets` a training script that expects class folders reads as shipped,
/// through `classes/`, and how many are not classification datasets or have unreadable labels.
pub fn folders_summary(datasets: &[&Dataset]) -> String {
    let n = |f: Option<Folders>| datasets.iter().filter(|d| d.folders == f).count();
    format!(
        "class folders: {} as shipped, {} through classes/, {} not classification, {} with \
         labels medimg cannot read, {} unknown",
        n(Some(Folders::AsShipped)),
        n(Some(Folders::Classes)),
        n(Some(Folders::NotClassification)),
        n(Some(Folders::Unavailable)),
        n(None)
    )
}

/// One dataset of `medimg catalog --check` for a terminal: what was found, then each flag.
pub fn check_line(r: &crate::check::Report) -> String {
    let mut s = format!(
        "{}: {} files ({}{}), {} image files; the catalog says {} {}: {}\n",
        r.id,
        r.files,
        crate::config::human_size(r.bytes),
        if r.not_sized > 0 {
            format!(" and {} not sized yet", r.not_sized)
        } else {
            String::new()
        },
        r.images,
        r.catalog_images,
        r.catalog_unit.as_deref().unwrap_or("images"),
        if r.flags.is_empty() { "ok" } else { "FLAGGED" }
    );
    for f in &r.flags {
        let _ = writeln!(s, "  - {f}");
    }
    s
}

/// `medimg cache` for a terminal: what the cache holds, per dataset.
pub fn cache_report(v: &serde_json::Value) -> String {
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    let size = |v: &serde_json::Value| crate::config::human_size(n(v));
    let mut s = cache_line(v);
    for d in v["datasets"].as_array().into_iter().flatten() {
        if n(&d["cached_bytes"]) > 0 {
            let _ = writeln!(
                s,
                "{:32}  {}",
                d["id"].as_str().unwrap_or("?"),
                size(&d["cached_bytes"])
            );
        }
    }
    s
}

/// `MNT/catalog.csv`: one row per dataset; `group` is the Unix group a dataset's files are
/// restricted to on this server (empty: everyone reads it); `folders` whether a training
/// script that expects class folders reads it `as shipped`, through `classes/<id>`, or not
/// (`not classification`, `labels unreadable`, `unknown`).
pub fn catalog_csv(c: &Catalog, group: &dyn Fn(usize) -> Option<String>) -> String {
    let mut s = String::from(
        "id,title,modality,organ,task,images,license,access,homepage,path,group,folders\n",
    );
    for (i, d) in c.datasets.iter().enumerate() {
        let images = match &d.images_note {
            Some(unit) => format!("{} {unit}", d.images),
            None => d.images.to_string(),
        };
        let row = [
            d.id.clone(),
            d.title.clone(),
            d.modality.join(";"),
            d.organ.join(";"),
            d.task.clone(),
            images,
            d.license.clone(),
            d.access.as_str().to_string(),
            d.homepage.clone(),
            format!("datasets/{}", d.id),
            group(i).unwrap_or_default(),
            folders_text(d),
        ];
        let line: Vec<String> = row.iter().map(|f| csv_field(f)).collect();
        s.push_str(&line.join(","));
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_has_a_row_per_dataset_and_quotes_commas() {
        let c = Catalog::builtin().unwrap();
        let csv = catalog_csv(&c, &|_| None);
        assert_eq!(csv.lines().count(), 1 + c.datasets.len());
        assert_eq!(csv_field("a, b"), "\"a, b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert!(readme(&c).contains("| shenzhen-cxr |"));
    }

    #[test]
    fn about_says_a_source_is_a_third_partys_copy_and_its_licence() {
        let c = Catalog::builtin().unwrap();
        let d = c.datasets.iter().find(|d| d.id == "drive").unwrap();
        let text = about(d, &State::Reachable);
        assert!(
            text.contains("a third-party mirror, not the authors' copy: Kaggle user andrewmvd")
                && text.contains("; its licence: "),
            "{text}"
        );
        let d = c.datasets.iter().find(|d| d.id == "camus").unwrap();
        assert!(!about(d, &State::Reachable).contains("mirror"));
    }

    #[test]
    fn status_text_says_what_the_shared_tier_did() {
        let v = serde_json::json!({
            "shared_cache": {"store": "http://s:8333 bucket medimg", "hits": 7, "hit_bytes": 2048,
                "misses": 1, "publishes": 1, "published_bytes": 1024, "lease_waits": 2,
                "lease_waits_served": 2, "corrupt": 1, "errors": 0, "bypassed": 0,
                "paused": false, "last_error": "shared cache x: no answer within 5s"},
        });
        let text = daemon_status(&v);
        assert!(
            text.contains("shared cache http://s:8333 bucket medimg: 7 hits (2.0 KiB), 1 misses")
                && text.contains("1 damaged and replaced")
                && text.contains("last store error: shared cache x: no answer within 5s"),
            "{text}"
        );
        assert!(!daemon_status(&serde_json::json!({})).contains("shared cache"));
    }
}
