//! Members of a tar.gz: decoded from the nearest decompression checkpoint before them (kept in
//! the index every [`GZ_SPAN`] of output), so reading one inflates at most [`GZ_SPAN`] it does
//! not need. Sequential reads of a large member continue one decoder per file; a seek further
//! than one span starts again from a checkpoint. The stream's CRC was checked in full when the
//! archive was indexed, and its blocks are checked against the CRC recorded when they were
//! cached.

use std::io::Read;

use super::{FileState, ReadError, Reader, Result, lock};
use crate::archive::gzip::GzStream;
use crate::fetch::BlobReader;

/// Output between gzip checkpoints: reading a `.tar.gz` member inflates at most this much that
/// it does not need, and the checkpoints' windows cost 32 KiB per span (0.8 %).
pub const GZ_SPAN: u64 = 4 << 20;

/// A decoder over a blob's compressed bytes.
pub(super) type GzCursor = GzStream<BlobReader>;

impl Reader {
    /// A decoder positioned at byte `offset` of a gzip-stored member, started from the nearest
    /// checkpoint before it; with `ahead`, the compressed blocks after the one being decoded
    /// are fetched in the background (a large member read on; a small one would only waste
    /// them).
    fn gzip_cursor(&self, f: &FileState, offset: u64, ahead: bool) -> Result<GzCursor> {
        let target = f.location.offset + offset;
        let (input, cp) = self.resume_at(f, target, ahead)?;
        let mut cursor = GzStream::resume(input, &cp);
        cursor.skip_to(target).map_err(|e| self.decode_err(f, e))?;
        Ok(cursor)
    }

    /// The whole of a member up to [`super::INLINE_MAX`].
    pub(super) fn gzip_whole(&self, f: &FileState) -> Result<Vec<u8>> {
        let mut cursor = self.gzip_cursor(f, 0, false)?;
        let mut out = vec![0u8; f.size as usize];
        cursor
            .read_exact(&mut out)
            .map_err(|e| self.decode_err(f, e))?;
        Ok(out)
    }

    /// A range of a large gzip-stored member.
    pub(super) fn read_gzip(&self, f: &FileState, offset: u64, len: u64) -> Result<bytes::Bytes> {
        let target = f.location.offset + offset;
        let mut slot = lock(&f.gzip);
        let reusable = slot
            .as_ref()
            .is_some_and(|c| c.position() <= target && target - c.position() <= GZ_SPAN);
        if !reusable {
            *slot = Some(self.gzip_cursor(f, offset, true)?);
        }
        let Some(cursor) = slot.as_mut() else {
            return Err(ReadError::BadHandle);
        };
        cursor.skip_to(target).map_err(|e| self.decode_err(f, e))?;
        let mut out = vec![0u8; len as usize];
        if let Err(e) = cursor.read_exact(&mut out) {
            *slot = None;
            return Err(self.decode_err(f, e));
        }
        Ok(out.into())
    }
}
