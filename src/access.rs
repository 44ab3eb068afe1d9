//! Who may read which dataset on a shared server: owner, group and mode of every node.
//!
//! The kernel checks permissions (`default_permissions`), so a node's owner, group and mode
//! are the whole policy. Everything belongs to the daemon's user. The generated files
//! (`README.md`, `catalog.csv`, `about/`) and the view directories are world-readable, and
//! so is every dataset unless the config's `[access]` names a Unix group for it: then its
//! directories are `0550` and its files `0440` in that group, under every view
//! (`datasets/`, `modality/`, `organ/`), and a user outside the group gets EACCES on
//! entering it or opening any of its files. The cache directory is the daemon's alone
//! (`0700`), so no path around the mount reaches the bytes.
//!
//! `[access]` names groups three ways; the most specific wins:
//! ```toml
//! [access]
//! levels = { credentialed = "physionet-dua" }  # by access level: open, account, credentialed
//! sources = { kaggle-competition = "kaggle" }   # by source type: a host whose terms apply
//! datasets = { "brats-2021" = "brats" }         # by dataset id
//! ```
//! Names are checked when the daemon starts: an unknown group, level, source type or dataset
//! is an error naming it.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::catalog::{Access, Catalog};

/// `[access]` of the config file, as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessSection {
    /// Group by access level (`open`, `account`, `credentialed`).
    #[serde(default)]
    pub levels: BTreeMap<String, String>,
    /// Group by source type (`kaggle`, `physionet`, `synapse`, ...).
    #[serde(default)]
    pub sources: BTreeMap<String, String>,
    /// Group by dataset id.
    #[serde(default)]
    pub datasets: BTreeMap<String, String>,
}

impl AccessSection {
    /// Whether any group is named.
    pub fn is_empty(&self) -> bool {
        self.levels.is_empty() && self.sources.is_empty() && self.datasets.is_empty()
    }
}

/// A Unix group, by name and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Its name, as the config gives it.
    pub name: String,
    /// Its id.
    pub gid: u32,
}

/// Owner, group and permission bits of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Perms {
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Permission bits of a directory.
    pub dir: u16,
    /// Permission bits of a file.
    pub file: u16,
}

/// The resolved policy: which group, if any, each dataset of the catalog is restricted to.
#[derive(Debug, Clone)]
pub struct Policy {
    uid: u32,
    gid: u32,
    groups: Vec<Option<Group>>,
}

/// Why `[access]` cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("config [access] {key}: {message}")]
pub struct AccessError {
    /// The table and key, e.g. `datasets."brats-2021"`.
    pub key: String,
    /// What is wrong and what would do.
    pub message: String,
}

impl Policy {
    /// Everything world-readable, owned by the daemon's user.
    pub fn open() -> Policy {
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        Policy {
            uid,
            gid,
            groups: Vec::new(),
        }
    }

    /// Resolve `section` against `catalog`, finding groups with `group_id` (the system's group
    /// database in the daemon; a table in tests).
    pub fn resolve(
        section: &AccessSection,
        catalog: &Catalog,
        group_id: &dyn Fn(&str) -> Option<u32>,
    ) -> Result<Policy, AccessError> {
        let group = |key: String, name: &str| -> Result<Group, AccessError> {
            let gid = group_id(name).ok_or_else(|| AccessError {
                key,
                message: format!(
                    "there is no Unix group {name:?} on this machine; create it (groupadd \
                     {name}) or name another"
                ),
            })?;
            Ok(Group {
                name: name.to_string(),
                gid,
            })
        };
        let mut levels = BTreeMap::new();
        for (level, name) in &section.levels {
            let key = format!("levels.{level}");
            let access = match level.as_str() {
                "open" => Access::Open,
                "account" => Access::Account,
                "credentialed" => Access::Credentialed,
                _ => {
                    return Err(AccessError {
                        key,
                        message: "unknown access level; use open, account or credentialed".into(),
                    });
                }
            };
            levels.insert(access.as_str(), group(key, name)?);
        }
        let known_types = crate::catalog::source_type_names();
        let mut sources = BTreeMap::new();
        for (kind, name) in &section.sources {
            let key = format!("sources.{kind}");
            if !known_types.contains(&kind.as_str()) {
                return Err(AccessError {
                    key,
                    message: format!("unknown source type; use one of {}", known_types.join(", ")),
                });
            }
            sources.insert(kind.as_str(), group(key, name)?);
        }
        let mut datasets = BTreeMap::new();
        for (id, name) in &section.datasets {
            let key = format!("datasets.{id:?}");
            if !catalog.datasets.iter().any(|d| &d.id == id) {
                return Err(AccessError {
                    key,
                    message: "no dataset of the catalog has this id (`medimg catalog` lists them)"
                        .into(),
                });
            }
            datasets.insert(id.as_str(), group(key, name)?);
        }
        let groups = catalog
            .datasets
            .iter()
            .map(|d| {
                datasets
                    .get(d.id.as_str())
                    .or_else(|| d.sources.iter().find_map(|s| sources.get(s.type_name())))
                    .or_else(|| levels.get(d.access.as_str()))
                    .cloned()
            })
            .collect();
        Ok(Policy {
            groups,
            ..Policy::open()
        })
    }

    /// The group dataset `d` (its index in the catalog) is restricted to, if any.
    pub fn group(&self, d: usize) -> Option<&Group> {
        self.groups.get(d).and_then(Option::as_ref)
    }

    /// Whether some dataset is restricted to a group.
    pub fn restricts(&self) -> bool {
        self.groups.iter().any(Option::is_some)
    }

    /// Owner, group and modes of dataset `d`'s nodes.
    pub fn dataset(&self, d: usize) -> Perms {
        match self.group(d) {
            Some(g) => Perms {
                uid: self.uid,
                gid: g.gid,
                dir: 0o550,
                file: 0o440,
            },
            None => self.generated(),
        }
    }

    /// Owner, group and modes of the generated nodes: readable by everyone.
    pub fn generated(&self) -> Perms {
        Perms {
            uid: self.uid,
            gid: self.gid,
            dir: 0o555,
            file: 0o444,
        }
    }
}

/// The id of the Unix group `name`, from the system's group database.
pub fn system_group(name: &str) -> Option<u32> {
    nix::unistd::Group::from_name(name)
        .ok()
        .flatten()
        .map(|g| g.gid.as_raw())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        let text = r#"
[[dataset]]
id = "open-set"
title = "Open"
modality = ["X-ray"]
organ = ["lung"]
license = "CC0"
homepage = "https://example.org/a"
access = "open"
[[dataset.source]]
type = "zenodo"
record = 1

[[dataset]]
id = "dua-set"
title = "DUA"
modality = ["X-ray"]
organ = ["lung"]
license = "DUA"
homepage = "https://example.org/b"
access = "credentialed"
terms = "https://example.org/terms"
[[dataset.source]]
type = "physionet"
project = "p"
version = "1.0.0"

[[dataset]]
id = "comp"
title = "Competition"
modality = ["X-ray"]
organ = ["lung"]
license = "rules"
homepage = "https://example.org/c"
access = "account"
[[dataset.source]]
type = "kaggle-competition"
competition = "c"
"#;
        Catalog::parse(text, "test.toml").unwrap()
    }

    fn groups(name: &str) -> Option<u32> {
        match name {
            "dua" => Some(1001),
            "rules" => Some(1002),
            "special" => Some(1003),
            _ => None,
        }
    }

    #[test]
    fn the_most_specific_name_wins_and_open_stays_open() {
        let section = AccessSection {
            levels: [("credentialed".into(), "dua".into())].into(),
            sources: [("kaggle-competition".into(), "rules".into())].into(),
            datasets: BTreeMap::new(),
        };
        let p = Policy::resolve(&section, &catalog(), &groups).unwrap();
        assert_eq!(p.dataset(0).dir, 0o555);
        assert_eq!(
            (p.dataset(1).gid, p.dataset(1).dir, p.dataset(1).file),
            (1001, 0o550, 0o440)
        );
        assert_eq!(p.dataset(2).gid, 1002);
        let section = AccessSection {
            datasets: [("comp".into(), "special".into())].into(),
            ..section
        };
        let p = Policy::resolve(&section, &catalog(), &groups).unwrap();
        assert_eq!(p.group(2).map(|g| g.name.as_str()), Some("special"));
    }

    #[test]
    fn unknown_names_are_errors_that_name_them() {
        let cat = catalog();
        let e = |s: AccessSection| Policy::resolve(&s, &cat, &groups).unwrap_err().to_string();
        let msg = e(AccessSection {
            levels: [("secret".into(), "dua".into())].into(),
            ..Default::default()
        });
        assert!(
            msg.contains("levels.secret") && msg.contains("credentialed"),
            "{msg}"
        );
        let msg = e(AccessSection {
            datasets: [("nope".into(), "dua".into())].into(),
            ..Default::default()
        });
        assert!(msg.contains("datasets.\"nope\""), "{msg}");
        let msg = e(AccessSection {
            sources: [("kaggle-competition".into(), "no-such-group".into())].into(),
            ..Default::default()
        });
        assert!(
            msg.contains("no-such-group") && msg.contains("groupadd"),
            "{msg}"
        );
        let msg = e(AccessSection {
            sources: [("ftp".into(), "dua".into())].into(),
            ..Default::default()
        });
        assert!(
            msg.contains("sources.ftp") && msg.contains("kaggle"),
            "{msg}"
        );
    }
}
