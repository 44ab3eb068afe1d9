//! Raw files and tar members: their bytes are a range of their blob, read by range with
//! read-ahead; a whole file whose host published a checksum is checked before any byte of it
//! is served (up to [`super::INLINE_MAX`]).

use super::{FileState, Reader, Result};
use crate::cache::Check;

impl Reader {
    /// A range of a raw file or tar member: only the blocks it spans, checked against the CRC
    /// recorded when they were cached.
    pub(super) fn read_raw(&self, f: &FileState, offset: u64, len: u64) -> Result<bytes::Bytes> {
        let start = f.location.offset;
        self.read_ahead(f, start + offset, len, start + f.size);
        self.fetcher
            .read_bytes(&f.blob, start + offset, len, Check::Crc)
            .map_err(|source| self.fetch_err(f, source))
    }

    /// A whole file checked against its host's checksum; a mismatch drops its blocks and
    /// fetches them once more, and a second mismatch is an error.
    pub(super) fn raw_checked(&self, f: &FileState) -> Result<Vec<u8>> {
        self.checked_twice(
            f,
            || self.raw_decode(f),
            || {
                let _ = self.fetcher.invalidate(&f.blob, f.location.offset, f.size);
            },
        )
    }

    /// One read of a whole file: its bytes if they matched the host's checksum, or what did
    /// not match.
    pub(super) fn raw_decode(&self, f: &FileState) -> Result<std::result::Result<Vec<u8>, String>> {
        let want = f.blob.checksum.clone().unwrap_or_default();
        let data = self
            .fetcher
            .read_at_checked(&f.blob, f.location.offset, f.size, Check::Length)
            .map_err(|source| self.fetch_err(f, source))?;
        Ok(match digest(&want, &data) {
            Some(g) if g == want => Ok(data),
            Some(g) => Err(format!("checksum {g}, the host published {want}")),
            None => Err(format!(
                "the host published {want:?}, which medimg cannot check"
            )),
        })
    }
}

/// `data`'s digest in the algorithm `want` names (`md5:…`, `sha256:…`), in the same form.
pub(super) fn digest(want: &str, data: &[u8]) -> Option<String> {
    use sha2::Digest;
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    match want.split_once(':')?.0 {
        "md5" => Some(format!("md5:{}", hex(&md5::Md5::digest(data)))),
        "sha256" => Some(format!("sha256:{}", hex(&sha2::Sha256::digest(data)))),
        _ => None,
    }
}
