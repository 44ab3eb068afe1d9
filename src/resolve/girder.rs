//! Girder (Kitware's data management platform; CREATIS's Human Heart database is one): a
//! collection holds folders, a folder holds folders and items, an item holds files. Each level
//! is a JSON array, paged by `limit` and `offset` (a page shorter than `limit` is the last, as
//! the official `girder-client`'s `listResource` reads it): `GET {api}/folder?parentType=
//! collection|folder&parentId=ID` the sub-folders, `GET {api}/item?folderId=ID` the items,
//! `GET {api}/item/{id}/files` an item's files, each document with `_id`, `name` and (items and
//! files) `size`. Bytes come from `GET {api}/file/{id}/download`, which honours Range, so every
//! file is read on its own rather than through the zip Girder builds for a whole folder.
//!
//! Paths are laid out as Girder's own folder download does: an item holding one file of its
//! own name is that file; any other item is a directory of its files.

use serde_json::Value;

use super::{Api, Fields, Pages, RemoteFile, ResolveError};

/// Documents asked for a page (Girder's own default is 50; a larger page means fewer requests).
const PAGE: usize = 1000;
/// Folders nest at most this deep.
const MAX_DEPTH: usize = 32;
/// Items whose file lists are asked at most (one request each; folder and item listings count
/// against [`super::MAX_PAGES`]).
const MAX_ITEMS: usize = 200_000;
/// Item file lists asked at once (each host's own budget still bounds its requests).
const ITEMS_AT_ONCE: usize = 8;

/// The files under collection `collection` or folder `folder` of the Girder at `api`.
pub fn list(
    api: &Api<'_>,
    root: &str,
    collection: Option<&str>,
    folder: Option<&str>,
) -> Result<Vec<RemoteFile>, ResolveError> {
    list_paged(api, root, collection, folder, PAGE)
}

fn list_paged(
    api: &Api<'_>,
    root: &str,
    collection: Option<&str>,
    folder: Option<&str>,
    page: usize,
) -> Result<Vec<RemoteFile>, ResolveError> {
    let mut w = Walk {
        api,
        root,
        page,
        pages: Pages::new(),
        items: Pages::bounded(MAX_ITEMS, "items"),
        out: Vec::new(),
    };
    match (collection, folder) {
        (Some(c), _) => w.folders("collection", c, "", 0)?,
        (None, Some(f)) => w.folder(f, "", 0)?,
        (None, None) => {
            return Err(ResolveError::Shape {
                url: root.to_string(),
                message: "a girder source names a collection or a folder".into(),
            });
        }
    }
    Ok(w.out)
}

struct Walk<'a, 'b> {
    api: &'a Api<'b>,
    root: &'a str,
    page: usize,
    pages: Pages,
    items: Pages,
    out: Vec<RemoteFile>,
}

impl Walk<'_, '_> {
    /// Every document of the paged listing `url`, its pages counted against the bound of
    /// folder listings.
    fn all(&mut self, url: &str) -> Result<Vec<Value>, ResolveError> {
        paged(self.api, url, self.page, &mut self.pages)
    }

    /// The sub-folders of `parent` (a collection or a folder), each walked under `dir`.
    fn folders(
        &mut self,
        parent_type: &str,
        parent: &str,
        dir: &str,
        depth: usize,
    ) -> Result<(), ResolveError> {
        let url = format!(
            "{}/folder?parentType={parent_type}&parentId={parent}",
            self.root
        );
        for f in self.all(&url)? {
            let fields = Fields::of(&f, &url);
            let id = fields.str("_id")?.to_string();
            let path = join(dir, segment(&url, fields.str("name")?)?);
            if depth >= MAX_DEPTH {
                return Err(ResolveError::Endless {
                    url,
                    message: format!("folders nest deeper than {MAX_DEPTH} (medimg's bound)"),
                });
            }
            self.folder(&id, &path, depth + 1)?;
        }
        Ok(())
    }

    /// Folder `id`'s items, then its sub-folders, under `dir`. The items' file lists are asked
    /// [`ITEMS_AT_ONCE`] at a time: a collection of thousands of items (CAMUS) would otherwise
    /// take one round trip after another for each.
    fn folder(&mut self, id: &str, dir: &str, depth: usize) -> Result<(), ResolveError> {
        let url = format!("{}/item?folderId={id}", self.root);
        let mut items = Vec::new();
        for item in self.all(&url)? {
            let fields = Fields::of(&item, &url);
            let name = segment(&url, fields.str("name")?)?.to_string();
            let files_url = format!("{}/item/{}/files", self.root, fields.str("_id")?);
            self.items.next(&files_url, &files_url)?;
            items.push((name, files_url));
        }
        for ((name, files_url), files) in items.iter().zip(self.files_of(&items)) {
            let files = files?;
            let alone = files.len() == 1 && files[0]["name"].as_str() == Some(name.as_str());
            for f in files {
                let ff = Fields::of(&f, files_url);
                let file_name = segment(files_url, ff.str("name")?)?;
                let path = if alone {
                    join(dir, file_name)
                } else {
                    join(&join(dir, name), file_name)
                };
                self.out.push(RemoteFile {
                    path,
                    url: format!("{}/file/{}/download", self.root, ff.str("_id")?),
                    size: Some(ff.u64("size")?),
                    checksum: None,
                    etag: None,
                });
            }
        }
        self.folders("folder", id, dir, depth)
    }

    /// The file lists of `items` (name, files URL), in order, asked by up to
    /// [`ITEMS_AT_ONCE`] threads.
    fn files_of(&self, items: &[(String, String)]) -> Vec<Result<Vec<Value>, ResolveError>> {
        let (api, page) = (self.api, self.page);
        let mut done = Vec::with_capacity(items.len());
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..ITEMS_AT_ONCE.min(items.len()))
                .map(|w| {
                    s.spawn(move || {
                        items
                            .iter()
                            .enumerate()
                            .skip(w)
                            .step_by(ITEMS_AT_ONCE)
                            .map(|(i, (_, url))| (i, paged(api, url, page, &mut Pages::new())))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            for w in workers {
                done.extend(w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
            }
        });
        done.sort_by_key(|(i, _)| *i);
        done.into_iter().map(|(_, r)| r).collect()
    }
}

/// Every document of the paged listing `url` (with its other parameters, if any), `page` at a
/// time, each page counted in `pages`. A page that brings no document the listing has not
/// already given ends it with an error (a host that ignores `offset` would otherwise answer the
/// same page until the bound).
fn paged(
    api: &Api<'_>,
    url: &str,
    page: usize,
    pages: &mut Pages,
) -> Result<Vec<Value>, ResolveError> {
    let mut docs = Vec::new();
    let mut ids = std::collections::HashSet::new();
    let sep = if url.contains('?') { '&' } else { '?' };
    loop {
        let asked = format!("{url}{sep}limit={page}&offset={}", docs.len());
        pages.next(&asked, &asked)?;
        let v = api.json(&asked)?;
        let Some(batch) = v.as_array() else {
            return Err(ResolveError::Shape {
                url: asked,
                message: "expected a JSON array of documents".into(),
            });
        };
        let n = batch.len();
        let mut new = 0;
        for d in batch {
            if ids.insert(Fields::of(d, &asked).str("_id")?.to_string()) {
                new += 1;
            }
        }
        if n > 0 && new == 0 {
            return Err(ResolveError::Endless {
                url: asked,
                message: format!(
                    "the page at offset {} repeats documents already listed (the host may \
                     ignore `offset`)",
                    docs.len()
                ),
            });
        }
        docs.extend(batch.iter().cloned());
        if n < page {
            return Ok(docs);
        }
    }
}

/// `name` as one path segment, or an error naming the listing.
fn segment<'n>(url: &str, name: &'n str) -> Result<&'n str, ResolveError> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(ResolveError::Shape {
            url: url.to_string(),
            message: format!("{name:?} is not a file or folder name"),
        });
    }
    Ok(name)
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::mock::MockUpstream;
    use serde_json::json;

    const ROOT: &str = "https://g.example.org/api/v1";
    const COL: &str = "637218c173e9f0047faa00fb";

    fn put(up: &MockUpstream, path: &str, v: Value) {
        up.put(&format!("{ROOT}/{path}"), v.to_string().into_bytes());
    }

    fn item(id: &str, name: &str) -> Value {
        json!({"_id": id, "_modelType": "item", "name": name, "size": 1})
    }

    fn file(id: &str, name: &str, size: u64) -> Value {
        json!({"_id": id, "_modelType": "file", "name": name, "size": size})
    }

    #[test]
    fn listings_are_paged_by_limit_and_offset_until_a_short_page() {
        let up = MockUpstream::new();
        put(
            &up,
            &format!("folder?parentType=collection&parentId={COL}&limit=2&offset=0"),
            json!([{"_id": "f1", "_modelType": "folder", "name": "db"}]),
        );
        put(
            &up,
            "item?folderId=f1&limit=2&offset=0",
            json!([item("i1", "a.nii.gz"), item("i2", "b.nii.gz")]),
        );
        put(
            &up,
            "item?folderId=f1&limit=2&offset=2",
            json!([item("i3", "views")]),
        );
        put(
            &up,
            "item/i1/files?limit=2&offset=0",
            json!([file("x1", "a.nii.gz", 10)]),
        );
        put(
            &up,
            "item/i2/files?limit=2&offset=0",
            json!([file("x2", "b.nii.gz", 20)]),
        );
        put(
            &up,
            "item/i3/files?limit=2&offset=0",
            json!([file("x3", "2CH.png", 3), file("x4", "4CH.png", 4)]),
        );
        put(&up, "item/i3/files?limit=2&offset=2", json!([]));
        put(
            &up,
            "folder?parentType=folder&parentId=f1&limit=2&offset=0",
            json!([]),
        );
        let files = list_paged(&Api::new(&up), ROOT, Some(COL), None, 2).unwrap();
        let got: Vec<_> = files
            .iter()
            .map(|f| (f.path.as_str(), f.url.as_str(), f.size))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "db/a.nii.gz",
                    "https://g.example.org/api/v1/file/x1/download",
                    Some(10)
                ),
                (
                    "db/b.nii.gz",
                    "https://g.example.org/api/v1/file/x2/download",
                    Some(20)
                ),
                (
                    "db/views/2CH.png",
                    "https://g.example.org/api/v1/file/x3/download",
                    Some(3)
                ),
                (
                    "db/views/4CH.png",
                    "https://g.example.org/api/v1/file/x4/download",
                    Some(4)
                ),
            ]
        );
    }

    #[test]
    fn a_host_that_ignores_offset_is_stopped_at_its_second_page() {
        let up = MockUpstream::new();
        let page = json!([{"_id": "f1", "_modelType": "folder", "name": "a"},
                          {"_id": "f2", "_modelType": "folder", "name": "b"}]);
        for offset in [0, 2, 4] {
            put(
                &up,
                &format!("folder?parentType=collection&parentId={COL}&limit=2&offset={offset}"),
                page.clone(),
            );
        }
        let e = list_paged(&Api::new(&up), ROOT, Some(COL), None, 2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("repeats documents already listed"), "{e}");
        assert_eq!(up.request_count(), 2);
    }

    #[test]
    fn a_name_that_is_not_one_path_segment_is_refused() {
        let up = MockUpstream::new();
        put(
            &up,
            "item?folderId=f1&limit=2&offset=0",
            json!([item("i1", "../etc")]),
        );
        let e = list_paged(&Api::new(&up), ROOT, None, Some("f1"), 2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"../etc\" is not a file or folder name"), "{e}");
    }
}
