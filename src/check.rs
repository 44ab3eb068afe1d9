//! `medimg catalog --check`: does what medimg mounts for a dataset match what the catalog says?
//!
//! For each dataset: index it (as a first visit to its directory would), walk its tree from
//! the index (no request), and count files, bytes and image files by extension. Then read the
//! first bytes of a few files: every image file small enough to be something else (under
//! [`SUSPECT_BELOW`]: a Git LFS pointer, an HTML login page) and [`SAMPLES`] more spread over
//! the dataset, and tell their kind from their magic bytes. A dataset is flagged when its image
//! count is off the catalog's `images` by more than [`TOLERANCE`], when it ships an archive
//! medimg shows as a file (an unexpanded archive: a training script sees it, not its images),
//! when a file is an LFS pointer or an HTML page, or when it cannot be indexed at all.
//!
//! Reading samples costs a block each for archive members; everything else is metadata.

use serde::Serialize;

use crate::catalog::Dataset;
use crate::vfs::{Kind, Vfs};

/// A catalog count within this fraction of what is found is a match.
pub const TOLERANCE: f64 = 0.05;
/// Image files smaller than this are read: real images are larger; pointers and pages are not.
pub const SUSPECT_BELOW: u64 = 1024;
/// Files read per dataset besides the suspects, spread evenly over its tree.
pub const SAMPLES: usize = 4;
/// Suspects read per dataset at most.
const SUSPECTS_MAX: usize = 64;
/// Bytes read of each sample: enough for DICOM's preamble and a NIfTI header.
const HEAD: u32 = 512;

/// What a file's first bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Magic {
    /// An image format (PNG, JPEG, TIFF, BMP, GIF, DICOM, NIfTI).
    Image,
    /// A Git LFS pointer: the file's bytes are elsewhere.
    LfsPointer,
    /// An HTML page (a login, captcha or error page served as the file).
    Html,
    /// An archive (zip, 7z, RAR, gzip, bzip2, xz, zstd) that medimg shows as a file.
    Archive,
    /// Anything else.
    Other,
}

/// The kind of a file from its first bytes.
pub fn magic(head: &[u8]) -> Magic {
    let starts = |m: &[u8]| head.starts_with(m);
    let text = String::from_utf8_lossy(&head[..head.len().min(256)]).to_ascii_lowercase();
    if starts(b"version https://git-lfs.github.com/spec/") {
        Magic::LfsPointer
    } else if starts(b"\x89PNG\r\n\x1a\n")
        || starts(b"\xff\xd8\xff")
        || starts(b"II*\0")
        || starts(b"MM\0*")
        || starts(b"BM")
        || starts(b"GIF8")
        || head.get(128..132) == Some(b"DICM")
        || head
            .get(344..348)
            .is_some_and(|m| m == b"n+1\0" || m == b"ni1\0")
    {
        Magic::Image
    } else if text.trim_start().starts_with("<!doctype html") || text.contains("<html") {
        Magic::Html
    } else if starts(b"PK\x03\x04")
        || starts(b"7z\xbc\xaf\x27\x1c")
        || starts(b"Rar!\x1a\x07")
        || starts(b"\x1f\x8b")
        || starts(b"BZh")
        || starts(b"\xfd7zXZ\0")
        || starts(b"\x28\xb5\x2f\xfd")
    {
        Magic::Archive
    } else {
        Magic::Other
    }
}

/// Whether `name` is an image file by its extension (medical formats included).
pub fn is_image_name(name: &str) -> bool {
    const EXT: [&str; 17] = [
        ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".dcm", ".dicom", ".nii",
        ".nii.gz", ".mha", ".mhd", ".nrrd", ".svs", ".ndpi", ".mrxs",
    ];
    let n = name.to_ascii_lowercase();
    EXT.iter().any(|e| n.ends_with(e))
}

/// Whether `name` is an archive by its extension (one medimg would show as a file; a `.nii.gz`
/// is an image format, not an archive).
pub fn is_archive_name(name: &str) -> bool {
    const EXT: [&str; 13] = [
        ".zip", ".7z", ".rar", ".tar", ".tgz", ".gz", ".bz2", ".tbz2", ".xz", ".txz", ".zst",
        ".tzst", ".z01",
    ];
    let n = name.to_ascii_lowercase();
    !n.ends_with(".nii.gz") && EXT.iter().any(|e| n.ends_with(e))
}

/// What was found for one dataset.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Dataset id.
    pub id: String,
    /// Files in its tree.
    pub files: u64,
    /// Image files, by extension.
    pub images: u64,
    /// Bytes of the files whose size is known.
    pub bytes: u64,
    /// Files whose size is not known yet (their listing gave none; not asked here).
    pub not_sized: u64,
    /// What the catalog says (`images`, in `images_note` units if given).
    pub catalog_images: u64,
    /// The catalog's unit, when not images.
    pub catalog_unit: Option<String>,
    /// Files read, and what their first bytes were, by path.
    pub sampled: Vec<(String, Magic)>,
    /// What does not match, one sentence each; empty when all is well.
    pub flags: Vec<String>,
}

/// Index dataset `d` through `vfs`, walk it, read its samples, and say what does not match.
pub fn check(vfs: &Vfs, d: &Dataset) -> Report {
    let mut r = Report {
        id: d.id.clone(),
        catalog_images: d.images,
        catalog_unit: d.images_note.clone(),
        ..Report::default()
    };
    let mut files = Vec::new();
    let walked = (|| {
        let root = vfs.lookup(vfs.getattr(1)?.ino, "datasets")?;
        let dir = vfs.lookup(root.ino, &d.id)?;
        walk(vfs, dir.ino, "", &mut files)
    })();
    if let Err(e) = walked {
        r.flags.push(format!("cannot be listed: {e}"));
        return r;
    }
    let mut archives = Vec::new();
    for (path, _, size) in &files {
        r.files += 1;
        match size {
            Some(n) => r.bytes += n,
            None => r.not_sized += 1,
        }
        if is_image_name(path) {
            r.images += 1;
        }
        if is_archive_name(path) {
            archives.push(path.clone());
        }
    }
    if !archives.is_empty() {
        r.flags.push(format!(
            "{} archive(s) shown as files, not expanded: {}",
            archives.len(),
            shown(&archives)
        ));
    }
    let want = d.images as f64;
    if (r.images as f64 - want).abs() > want * TOLERANCE {
        r.flags.push(format!(
            "{} image files found, the catalog says {} {} (more than {:.0}% apart)",
            r.images,
            d.images,
            d.images_note.as_deref().unwrap_or("images"),
            TOLERANCE * 100.0
        ));
    }
    for i in samples(&files) {
        let (path, ino, _) = &files[i];
        let head = vfs
            .open(*ino)
            .and_then(|fh| {
                let b = vfs.read(*ino, fh, 0, HEAD);
                vfs.release(fh);
                b
            })
            .map(|b| b.to_vec());
        match head {
            Ok(h) => r.sampled.push((path.clone(), magic(&h))),
            Err(e) => r.flags.push(format!("{path}: cannot be read: {e}")),
        }
    }
    let of = |m: Magic| -> Vec<String> {
        r.sampled
            .iter()
            .filter(|(_, k)| *k == m)
            .map(|(p, _)| p.clone())
            .collect()
    };
    let (lfs, html, inner) = (of(Magic::LfsPointer), of(Magic::Html), of(Magic::Archive));
    if !lfs.is_empty() {
        r.flags.push(format!(
            "Git LFS pointer(s) where the file should be: {}",
            shown(&lfs)
        ));
    }
    let html: Vec<String> = html
        .into_iter()
        .filter(|p| {
            let p = p.to_ascii_lowercase();
            !p.ends_with(".html") && !p.ends_with(".htm")
        })
        .collect();
    if !html.is_empty() {
        r.flags.push(format!(
            "HTML page(s) where a file should be: {}",
            shown(&html)
        ));
    }
    let inner: Vec<String> = inner
        .into_iter()
        .filter(|p| !is_archive_name(p) && !p.to_ascii_lowercase().ends_with(".nii.gz"))
        .collect();
    if !inner.is_empty() {
        r.flags.push(format!(
            "archive(s) under another name, shown as files: {}",
            shown(&inner)
        ));
    }
    r
}

/// The files below directory `ino`: path, inode, size (if known).
fn walk(
    vfs: &Vfs,
    ino: u64,
    prefix: &str,
    out: &mut Vec<(String, u64, Option<u64>)>,
) -> Result<(), crate::vfs::VfsError> {
    let mut cookie = 0;
    loop {
        let items = vfs.readdir(ino, cookie, 512)?;
        let Some(last) = items.last() else {
            return Ok(());
        };
        cookie = last.next;
        for it in items {
            if it.name == "." || it.name == ".." {
                continue;
            }
            let path = format!("{prefix}{}", it.name);
            match it.attr.kind {
                Kind::Dir => walk(vfs, it.attr.ino, &format!("{path}/"), out)?,
                Kind::File => {
                    let size = (!it.provisional).then_some(it.attr.size);
                    out.push((path, it.attr.ino, size));
                }
            }
        }
    }
}

/// Which files to read: every small image file (a suspect), then [`SAMPLES`] spread evenly.
fn samples(files: &[(String, u64, Option<u64>)]) -> Vec<usize> {
    let mut pick: Vec<usize> = files
        .iter()
        .enumerate()
        .filter(|(_, (p, _, s))| is_image_name(p) && s.is_some_and(|n| n < SUSPECT_BELOW))
        .map(|(i, _)| i)
        .take(SUSPECTS_MAX)
        .collect();
    let n = files.len();
    for k in 0..SAMPLES.min(n) {
        let i = k * n / SAMPLES.min(n);
        if !pick.contains(&i) {
            pick.push(i);
        }
    }
    pick
}

/// A few of `paths`, and how many more.
fn shown(paths: &[String]) -> String {
    let mut s = paths.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
    if paths.len() > 3 {
        s.push_str(&format!(" and {} more", paths.len() - 3));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_from_first_bytes_and_names() {
        assert_eq!(magic(b"\x89PNG\r\n\x1a\nrest"), Magic::Image);
        assert_eq!(magic(b"\xff\xd8\xff\xe0"), Magic::Image);
        let mut dicom = vec![0u8; 132];
        dicom[128..].copy_from_slice(b"DICM");
        assert_eq!(magic(&dicom), Magic::Image);
        assert_eq!(
            magic(b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 9\n"),
            Magic::LfsPointer
        );
        assert_eq!(magic(b"  <!DOCTYPE html><html>Sign in</html>"), Magic::Html);
        assert_eq!(magic(b"PK\x03\x04"), Magic::Archive);
        assert_eq!(magic(b"7z\xbc\xaf\x27\x1c"), Magic::Archive);
        assert_eq!(magic(b"Rar!\x1a\x07\x01\x00"), Magic::Archive);
        assert_eq!(magic(b"id,label\n1,a\n"), Magic::Other);
        assert!(is_image_name("a/B.PNG") && is_image_name("ct.nii.gz"));
        assert!(!is_image_name("labels.csv"));
        assert!(
            is_archive_name("x.tar.bz2") && is_archive_name("x.7z") && is_archive_name("y.rar")
        );
        assert!(!is_archive_name("ct.nii.gz") && !is_archive_name("a.png"));
    }
}
