//! Members of a RAR archive: decoded by libarchive on a thread of their own, from the
//! archive's start (libarchive reads a RAR only forwards from its signature; see
//! [`crate::archive::rar`]), with the hand-over, kept decoders and deadlines of the 7z
//! reader ([`super::sevenz`]).
//!
//! A RAR stored inside a ZIP or a tar is read the same way through a window of its blob
//! ([`crate::index::Storage::Rar`] keeps where it starts and its length); kept decoders are
//! found by blob and that start, so two RARs in one blob never serve each other's members.
//!
//! Cost: reaching member N walks the headers before it. In a non-solid archive libarchive
//! skips the members before it (over 64 KiB it seeks, so their blocks are never fetched; a
//! smaller one is read through); in a solid RAR 5 it decodes them, as any RAR reader must.
//! A member up to [`super::INLINE_MAX`] is decoded whole, its CRC-32 checked (by medimg, and
//! by libarchive for a compressed member) before its first byte is served, and served from
//! the decoded-member cache; its decoder is kept afterwards, so reading the
//! archive's members in order (`cp -r`, `medimg prefetch`, a sorted DataLoader) decodes the
//! archive once. A larger member keeps its own decoder and is checked as its last byte is
//! read: a mismatch fails that read and every read after.

use super::sevenz::Chunk;
use super::{FileState, Reader, Result};
use crate::archive::{Window, rar};
use crate::index::Storage;

/// Where `f`'s RAR starts in its blob, and its length.
fn window(f: &FileState) -> (u64, u64) {
    match f.location.storage {
        Storage::Rar { len, .. } => (f.location.offset, len),
        _ => (0, f.blob.size()),
    }
}

impl Reader {
    /// A thread decoding `f`'s archive from member `entry` on.
    fn rar_cursor(&self, f: &FileState, entry: u32) -> Result<super::sevenz::SevenZCursor> {
        let (base, size) = window(f);
        self.spawn_cursor(f, entry, "medimg-rar", move |src, tx| {
            // The RAR's bytes: the blob's, or a window of them (a RAR inside a ZIP or tar).
            let src = Window {
                inner: &src,
                base,
                len: size,
            };
            // Progress while libarchive skips or decodes the members before: a reader waits
            // for progress, not for the whole walk; a reader gone stops the walk.
            let beat = tx.clone();
            let tick = Box::new(move || beat.send(Ok((entry, 0, Vec::new()))).is_ok());
            rar::decode_from(src, size, entry, tick, &mut |i, o, b| {
                let chunk: Chunk = Ok((i, o, b.to_vec()));
                tx.send(chunk).is_ok()
            })
        })
    }

    /// The whole of a member up to [`super::INLINE_MAX`], its CRC checked.
    pub(super) fn rar_whole(&self, f: &FileState, entry: u32) -> Result<Vec<u8>> {
        // Kept decoders are found by (blob, where the RAR starts in it): a tar may hold
        // several RARs (a blob is a RAR or holds RARs, never 7z blocks, which key by block).
        let key = Some(window(f).0 as usize);
        self.cursor_whole(f, entry, key, "RAR member", &|| self.rar_cursor(f, entry))
    }

    /// A range of a large member.
    pub(super) fn read_rar(
        &self,
        f: &FileState,
        entry: u32,
        offset: u64,
        len: u64,
    ) -> Result<bytes::Bytes> {
        self.read_cursor(f, entry, offset, len, &|| self.rar_cursor(f, entry))
    }
}
