//! Members of a `.tar.bz2`, `.tar.xz` or `.tar.zst`: decoded from the last stream start
//! before them that the index keeps (one at least every [`PACKED_SPAN`] of output where the
//! archive has that many streams; see [`crate::archive::compressed`]).
//!
//! Cost: an archive of many streams (parallel compressors) costs at most about
//! [`PACKED_SPAN`] plus one stream of decoding a member does not need; an archive of one
//! stream is decoded from its start up to the member. A member up to
//! [`super::INLINE_MAX`] is decoded once into the decoded-member cache and served from
//! there; a larger one keeps its decoder between reads, so a sequential reader decodes the
//! archive once, and a seek backwards (or past a closer checkpoint) starts again from the
//! nearest checkpoint. Each stream's own checks (CRCs, xz's check, zstd's checksum) were
//! passed in full when the archive was indexed and run again on every decode that reaches a
//! stream's end; the compressed blocks are checked against the CRC recorded when they were
//! cached.

use std::io::Read;

use super::{FileState, ReadError, Reader, Result, lock};
use crate::archive::compressed::{Codec, Unpack};
use crate::fetch::BlobReader;

/// Output between checkpoints of a compressed tar, where its streams allow: the same as
/// [`super::GZ_SPAN`] (a checkpoint here costs no window, only its row).
pub const PACKED_SPAN: u64 = 4 << 20;

/// A decoder over a blob's compressed bytes.
pub(super) type PackedCursor = Unpack<BlobReader>;

impl Reader {
    /// A decoder positioned at byte `offset` of a member stored with `codec`, started from the
    /// nearest checkpoint before it; with `ahead`, the compressed blocks after the one being
    /// decoded are fetched in the background.
    fn packed_cursor(
        &self,
        f: &FileState,
        codec: Codec,
        offset: u64,
        ahead: bool,
    ) -> Result<PackedCursor> {
        let target = f.location.offset + offset;
        let (input, cp) = self.resume_at(f, target, ahead)?;
        let mut cursor = Unpack::resume(codec, input, &cp);
        cursor.skip_to(target).map_err(|e| self.decode_err(f, e))?;
        Ok(cursor)
    }

    /// The whole of a member up to [`super::INLINE_MAX`].
    pub(super) fn packed_whole(&self, f: &FileState, codec: Codec) -> Result<Vec<u8>> {
        let mut cursor = self.packed_cursor(f, codec, 0, false)?;
        let mut out = vec![0u8; f.size as usize];
        cursor
            .read_exact(&mut out)
            .map_err(|e| self.decode_err(f, e))?;
        Ok(out)
    }

    /// A range of a large member.
    pub(super) fn read_packed(
        &self,
        f: &FileState,
        codec: Codec,
        offset: u64,
        len: u64,
    ) -> Result<bytes::Bytes> {
        let target = f.location.offset + offset;
        let mut slot = lock(&f.packed);
        // The decoder where the last read left it goes on, unless a checkpoint lies between
        // it and the target (or the target is behind it).
        let reusable = match slot.as_ref() {
            Some(c) if c.position() <= target => {
                let cp = self.checkpoint_before(f, target)?;
                cp.is_none_or(|cp| cp.out <= c.position())
            }
            _ => false,
        };
        if !reusable {
            *slot = Some(self.packed_cursor(f, codec, offset, true)?);
        }
        let Some(cursor) = slot.as_mut() else {
            return Err(ReadError::BadHandle);
        };
        if let Err(e) = cursor.skip_to(target) {
            *slot = None;
            return Err(self.decode_err(f, e));
        }
        let mut out = vec![0u8; len as usize];
        if let Err(e) = cursor.read_exact(&mut out) {
            *slot = None;
            return Err(self.decode_err(f, e));
        }
        Ok(out.into())
    }
}
