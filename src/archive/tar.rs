//! tar member table from one sequential pass (the `tar` crate parses the headers, including
//! GNU long names and PAX records).
//!
//! Only regular files and directories become entries: a dataset directory holds the dataset's
//! files. Links, devices and sparse files are reported, not followed.

use std::io::Read;

use super::{ArchiveError, normalize_member_path};

/// One member of a tar archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarEntry {
    /// Normalised path components.
    pub path: Vec<String>,
    /// A directory.
    pub is_dir: bool,
    /// Content size.
    pub size: u64,
    /// Offset of the content in the (uncompressed) tar stream.
    pub data_offset: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
}

/// Members of the tar stream `r`, and the names of members skipped (links and other kinds).
pub fn list<R: Read>(r: R) -> Result<(Vec<TarEntry>, Vec<String>), ArchiveError> {
    let mut ar = tar::Archive::new(r);
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    // Errors here come from the tar parser, the decompressor or the network underneath.
    let malformed = |e: std::io::Error| {
        let mut msg = format!("tar: {e}");
        let mut cur = std::error::Error::source(&e);
        while let Some(c) = cur {
            msg.push_str(&format!(": {c}"));
            cur = c.source();
        }
        ArchiveError::Malformed(msg)
    };
    for entry in ar.entries().map_err(malformed)? {
        let entry = entry.map_err(malformed)?;
        let raw_path = entry.path_bytes();
        let name = String::from_utf8_lossy(&raw_path).into_owned();
        let kind = entry.header().entry_type();
        let mtime = entry.header().mtime().unwrap_or(0) as i64;
        if kind.is_dir() {
            let (path, _) = normalize_member_path(&name)?;
            out.push(TarEntry {
                path,
                is_dir: true,
                size: 0,
                data_offset: entry.raw_file_position(),
                mtime,
            });
        } else if kind.is_file() || kind == tar::EntryType::Continuous {
            let (path, _) = normalize_member_path(&name)?;
            out.push(TarEntry {
                path,
                is_dir: false,
                size: entry.size(),
                data_offset: entry.raw_file_position(),
                mtime,
            });
        } else if !kind.is_pax_global_extensions() && !kind.is_pax_local_extensions() {
            skipped.push(format!("{name} ({kind:?})"));
        }
    }
    Ok((out, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(1_600_000_000);
            h.set_cksum();
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn offsets_point_at_member_data_even_with_long_names() {
        let long = format!("{}/scan.nii", "deep".repeat(40));
        let t = make(&[("a.txt", b"hello"), (&long, b"volume bytes")]);
        let (list, skipped) = list(&t[..]).unwrap();
        assert!(skipped.is_empty());
        assert_eq!(list.len(), 2);
        for (e, want) in list.iter().zip([&b"hello"[..], b"volume bytes"]) {
            let at = e.data_offset as usize;
            assert_eq!(&t[at..at + e.size as usize], want);
        }
        assert_eq!(list[1].path.last().unwrap(), "scan.nii");
        assert_eq!(list[1].mtime, 1_600_000_000);
    }

    #[test]
    fn escaping_paths_and_truncation_are_refused() {
        let mut t = make(&[("ok", b"1")]);
        // Hand-craft a header with a '..' name (the builder refuses to write one).
        let mut h = tar::Header::new_old();
        h.as_mut_bytes()[..12].copy_from_slice(b"../../escape");
        h.set_size(1);
        h.set_cksum();
        let mut evil = h.as_bytes().to_vec();
        evil.extend_from_slice(&[b'x'; 512]);
        t.splice(0..0, evil);
        let e = list(&t[..]).unwrap_err().to_string();
        assert!(e.contains("refused member") && e.contains(".."), "{e}");
        let t = make(&[("big", &[7u8; 5000])]);
        assert!(list(&t[..1500]).is_err(), "truncated member data");
    }
}
