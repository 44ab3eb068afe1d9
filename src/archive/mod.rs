//! Archive parsers over byte ranges: pure code, no I/O of their own.
//!
//! A parser is handed a [`ReadAt`] (in the daemon: the block cache over one blob) and the blob's
//! size, and returns the members with the offsets needed to read each one later. Parsers never
//! trust the archive: sizes and offsets are checked against the blob, member paths are
//! normalised, and a path that would escape the dataset directory is refused.

pub mod compressed;
pub mod gzip;
pub mod sevenz;
pub mod tar;
pub mod zip;

/// Random access to the bytes of one blob.
pub trait ReadAt {
    /// Exactly `len` bytes starting at `offset`.
    fn read_at(&self, offset: u64, len: u64) -> Result<Vec<u8>, ArchiveError>;
}

impl ReadAt for [u8] {
    fn read_at(&self, offset: u64, len: u64) -> Result<Vec<u8>, ArchiveError> {
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= self.len() as u64)
            .ok_or_else(|| {
                ArchiveError::Malformed(format!("read past the end at {offset}+{len}"))
            })?;
        Ok(self[offset as usize..end as usize].to_vec())
    }
}

/// Why an archive cannot be listed.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// Reading the blob failed (network, cache).
    #[error("{0}")]
    Read(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The bytes are not a valid archive.
    #[error("not a valid archive: {0}")]
    Malformed(String),
    /// A member is unsafe to expose (path escapes, absurd size).
    #[error("refused member {name:?}: {reason}")]
    Hostile {
        /// The member's name as stored.
        name: String,
        /// Why it is refused.
        reason: String,
    },
}

/// Normalise a member path to `a/b/c` components, refusing ones that escape the directory.
///
/// Backslashes count as separators (archives made on Windows), `.` and empty components vanish,
/// and a trailing `/` marks a directory. Returns the components and whether it is a directory.
pub fn normalize_member_path(name: &str) -> Result<(Vec<String>, bool), ArchiveError> {
    let hostile = |reason: &str| ArchiveError::Hostile {
        name: name.to_string(),
        reason: reason.to_string(),
    };
    let unified = name.replace('\\', "/");
    if unified.starts_with('/') || unified.as_bytes().get(1) == Some(&b':') {
        return Err(hostile("absolute path"));
    }
    if unified.contains('\0') {
        return Err(hostile("NUL byte in name"));
    }
    let is_dir = unified.ends_with('/');
    let mut parts = Vec::new();
    for c in unified.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(hostile("path contains '..'")),
            // Linux refuses names over 255 bytes; such a member could never be looked up.
            c if c.len() > 255 => return Err(hostile("a path component is over 255 bytes")),
            c => parts.push(c.to_string()),
        }
    }
    if parts.is_empty() && !is_dir {
        return Err(hostile("empty name"));
    }
    Ok((parts, is_dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_paths_are_normalised_or_refused() {
        let ok = |s: &str| normalize_member_path(s).unwrap();
        assert_eq!(
            ok("a/./b//c.png"),
            (vec!["a".into(), "b".into(), "c.png".into()], false)
        );
        assert_eq!(ok("train\\NORMAL\\x.jpeg").0.len(), 3);
        assert!(ok("dir/").1);
        for bad in ["../etc/passwd", "a/../../b", "/etc/passwd", "C:\\x", ""] {
            let e = normalize_member_path(bad).unwrap_err().to_string();
            assert!(e.contains("refused member"), "{bad}: {e}");
        }
    }
}
