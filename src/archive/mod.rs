//! Archive parsers over byte ranges: pure code, no I/O of their own.
//!
//! A parser is handed a [`ReadAt`] (in the daemon: the block cache over one blob) and the blob's
//! size, and returns the members with the offsets needed to read each one later. Parsers never
//! trust the archive: sizes and offsets are checked against the blob, member paths are
//! normalised, and a path that would escape the dataset directory is refused.

pub mod compressed;
pub mod gzip;
pub mod rar;
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

/// The bytes `[base, base + len)` of another [`ReadAt`]: an archive stored as it is inside
/// another (a tar member, a stored ZIP member), read in place.
pub struct Window<'a> {
    /// The outer bytes.
    pub inner: &'a dyn ReadAt,
    /// Where the window starts in them.
    pub base: u64,
    /// Its length.
    pub len: u64,
}

impl ReadAt for Window<'_> {
    fn read_at(&self, offset: u64, len: u64) -> Result<Vec<u8>, ArchiveError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => self.inner.read_at(self.base + offset, len),
            _ => Err(ArchiveError::Malformed(format!(
                "read past the end of an inner archive at {offset}+{len} (it holds {} bytes)",
                self.len
            ))),
        }
    }
}

/// A [`Window`] read from start to end (sequential parsers: tar).
pub struct WindowReader<'a> {
    window: Window<'a>,
    pos: u64,
    failure: Option<ArchiveError>,
}

impl<'a> WindowReader<'a> {
    /// Read `window` from its start.
    pub fn new(window: Window<'a>) -> WindowReader<'a> {
        WindowReader {
            window,
            pos: 0,
            failure: None,
        }
    }

    /// The first failure to read the outer bytes, if any, with its type (a parser reading
    /// through this sees only an I/O error).
    pub fn take_failure(&mut self) -> Option<ArchiveError> {
        self.failure.take()
    }
}

impl std::io::Read for WindowReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = (out.len() as u64)
            .min(self.window.len - self.pos)
            .min(1 << 20);
        if n == 0 {
            return Ok(0);
        }
        let data = match self.window.read_at(self.pos, n) {
            Ok(d) => d,
            Err(e) => {
                let msg = e.to_string();
                self.failure.get_or_insert(e);
                return Err(std::io::Error::other(msg));
            }
        };
        let n = data.len().min(out.len());
        out[..n].copy_from_slice(&data[..n]);
        self.pos += n as u64;
        Ok(n)
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
    /// A valid archive of a kind medimg cannot decode (a solid RAR 4): it can stay a file.
    #[error("not supported: {0}")]
    Unsupported(String),
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
    fn a_window_reads_inside_its_range_only() {
        let outer: Vec<u8> = (0..=255u8).collect();
        let w = Window {
            inner: &&outer[..],
            base: 100,
            len: 50,
        };
        assert_eq!(w.read_at(0, 3).unwrap(), vec![100, 101, 102]);
        assert_eq!(w.read_at(47, 3).unwrap(), vec![147, 148, 149]);
        assert!(w.read_at(48, 3).is_err());
        assert!(w.read_at(u64::MAX, 2).is_err());
        let mut all = Vec::new();
        std::io::Read::read_to_end(&mut WindowReader::new(w), &mut all).unwrap();
        assert_eq!(all, outer[100..150]);
    }

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
