//! ZIP members: small ones decoded whole and CRC-checked before their first byte, large ones
//! streamed with their CRC checked as their bytes come in.
//!
//! A stored member's ranges are read by range, and the CRC-32 of the ranges read is combined
//! as they join up (the kernel's parallel reads arrive out of order). A deflated member goes
//! through one decoder per file that continues forward, with the last [`RECENT_MAX`] of output
//! kept for reads that arrive late; a read behind that starts the decoder again. When the
//! bytes checked cover the whole member, a CRC mismatch fails that read, drops the member's
//! cached blocks, and marks the member damaged, so every read after fails too.

use std::collections::VecDeque;
use std::io::Read;

use bytes::Bytes;

use super::{FileState, Reader, Result, lock};
use crate::archive::zip;
use crate::cache::Check;
use crate::fetch::BlobReader;
use crate::index::Storage;

/// Decoded output kept behind a large deflated member's decoder once served: the kernel's
/// read-ahead window, so a read the kernel repeats needs no restart.
pub const RECENT_MAX: usize = 8 << 20;
/// Output not served yet is kept up to this much behind the decoder: the kernel sends a
/// window's reads at once and threads answer them in any order, so the decoder may pass a
/// read's offset by two windows before that read arrives; a restart from the member's start
/// costs all the output before it (400 MiB read in 5.1-5.4 s instead of 2.3-2.4 s).
pub const RECENT_HARD_MAX: usize = 32 << 20;

/// What has been checked of a large ZIP member, and its decoder.
#[derive(Default)]
pub(super) struct MemberStream {
    /// Stored members: CRCs of the disjoint ranges read so far, by start (end, CRC).
    ranges: std::collections::BTreeMap<u64, (u64, crc32fast::Hasher)>,
    /// Deflated members: the decoder, how much it has produced, its CRC so far, and the last
    /// output (from `recent_start`) for reads that arrive after the decoder passed them.
    inflater: Option<Box<dyn Read + Send>>,
    pos: u64,
    crc: crc32fast::Hasher,
    /// Output in pieces of [`PIECE`] (the last may be shorter), oldest first, with the bytes
    /// of each served so far: dropping the oldest moves no bytes, and a read inside one piece
    /// is a slice of it.
    recent: VecDeque<(Bytes, usize)>,
    recent_start: u64,
    recent_len: usize,
}

/// Output decoded at a time: the kernel's largest read, so a sequential reader's reads are
/// slices of one piece each.
const PIECE: usize = 1 << 20;

impl std::fmt::Debug for MemberStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberStream")
            .field("pos", &self.pos)
            .finish_non_exhaustive()
    }
}

impl MemberStream {
    /// Record the CRC of `data` read at `offset`; the member's CRC once the ranges cover `size`.
    fn note_range(&mut self, offset: u64, data: &[u8], size: u64) -> Option<u32> {
        let end = offset + data.len() as u64;
        let overlaps = self
            .ranges
            .range(..end)
            .next_back()
            .is_some_and(|(_, (e, _))| *e > offset);
        if data.is_empty() || overlaps {
            return None;
        }
        let mut crc = crc32fast::Hasher::new();
        crc.update(data);
        let (mut start, mut end) = (offset, end);
        // Join with the range that ends where this one starts, then with the one after.
        if let Some((&s, (e, _))) = self.ranges.range(..start).next_back()
            && *e == start
            && let Some((_, mut before)) = self.ranges.remove(&s)
        {
            before.combine(&crc);
            crc = before;
            start = s;
        }
        if let Some((after_end, after)) = self.ranges.remove(&end) {
            crc.combine(&after);
            end = after_end;
        }
        if start == 0 && end == size {
            self.ranges.clear();
            return Some(crc.finalize());
        }
        self.ranges.insert(start, (end, crc));
        None
    }

    /// Decode the next piece; the member's CRC once the decoder reaches `size`.
    fn decode_more(&mut self, size: u64) -> std::io::Result<Option<u32>> {
        let Some(inflater) = self.inflater.as_mut() else {
            return Err(std::io::Error::other("no decoder"));
        };
        let mut buf = vec![0u8; PIECE.min((size - self.pos) as usize)];
        if buf.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "read past the member's end",
            ));
        }
        inflater.read_exact(&mut buf)?;
        self.crc.update(&buf);
        self.pos += buf.len() as u64;
        self.recent_len += buf.len();
        self.recent.push_back((buf.into(), 0));
        self.trim();
        Ok((self.pos == size).then(|| self.crc.clone().finalize()))
    }

    /// Drop the oldest output: served and [`RECENT_MAX`] behind, or [`RECENT_HARD_MAX`] behind.
    fn trim(&mut self) {
        while let Some((oldest, served)) = self.recent.front() {
            let behind = self.recent_len - oldest.len();
            let done = *served >= oldest.len();
            if !(behind >= RECENT_HARD_MAX || (done && behind >= RECENT_MAX)) {
                break;
            }
            self.recent_start += oldest.len() as u64;
            self.recent_len -= oldest.len();
            self.recent.pop_front();
        }
    }

    /// `len` bytes of recent output at member offset `offset` (which the caller made sure
    /// are held), counted as served: a slice of one piece, or a copy across several.
    fn recent_range(&mut self, offset: u64, len: u64) -> Bytes {
        let mut at = self.recent_start;
        let mut out: Option<Vec<u8>> = None;
        let mut slice = None;
        let end = offset + len;
        for (piece, served) in &mut self.recent {
            let piece_end = at + piece.len() as u64;
            if piece_end > offset && at < end {
                let from = (offset.max(at) - at) as usize;
                let to = (end.min(piece_end) - at) as usize;
                *served += to - from;
                if out.is_none() && at <= offset && end <= piece_end {
                    slice = Some(piece.slice(from..to));
                } else {
                    out.get_or_insert_with(|| Vec::with_capacity(len as usize))
                        .extend_from_slice(&piece[from..to]);
                }
            }
            at = piece_end;
        }
        let data = slice.unwrap_or_else(|| out.unwrap_or_default().into());
        self.trim();
        data
    }
}

/// A ZIP member's method, compressed size and CRC-32.
fn member(f: &FileState) -> Option<(u16, u64, u32)> {
    match f.location.storage {
        Storage::Zip {
            method,
            compressed_size,
            crc32,
        } => Some((method, compressed_size, crc32)),
        _ => None,
    }
}

impl Reader {
    /// Where a ZIP member's data starts, from its local header (read once per file state). A
    /// header that does not parse may be a damaged block in our cache (one that came with a
    /// neighbour whose own check passed): its blocks are dropped and it is read once more.
    fn data_offset(&self, f: &FileState) -> Result<u64> {
        if let Some(o) = *lock(&f.data_offset) {
            return Ok(o);
        }
        let at = f.location.offset;
        let rel = self.checked_twice(
            f,
            || {
                let header = self
                    .fetcher
                    .read_at_checked(&f.blob, at, zip::LOCAL_HEADER_LEN, Check::Length)
                    .map_err(|source| self.fetch_err(f, source))?;
                Ok(zip::local_data_offset(&header).map_err(|e| e.to_string()))
            },
            || {
                let _ = self.fetcher.invalidate(&f.blob, at, zip::LOCAL_HEADER_LEN);
            },
        )?;
        *lock(&f.data_offset) = Some(at + rel);
        Ok(at + rel)
    }

    fn unsupported_method(&self, f: &FileState, method: u16) -> super::ReadError {
        self.unreadable(
            f,
            format!("compression method {method} is not supported (only stored and deflate)"),
        )
    }

    /// The decoded, CRC-checked content of a member up to [`super::INLINE_MAX`]. A mismatch
    /// drops its blocks and fetches them once more (the damage may be in our cache); a second
    /// one is an error.
    pub(super) fn zip_checked(&self, f: &FileState) -> Result<Bytes> {
        self.checked_twice(
            f,
            || self.zip_decode(f),
            || {
                if let (Ok(start), Some((_, compressed_size, _))) = (self.data_offset(f), member(f))
                {
                    let at = f.location.offset;
                    let _ = self
                        .fetcher
                        .invalidate(&f.blob, at, start - at + compressed_size);
                    // The header came from those blocks too: read it again with the data.
                    *lock(&f.data_offset) = None;
                }
            },
        )
    }

    /// One decode of a small member: its content if it matched its CRC-32, or what did not
    /// match.
    pub(super) fn zip_decode(&self, f: &FileState) -> Result<std::result::Result<Bytes, String>> {
        let Some((method, compressed_size, crc32)) = member(f) else {
            return Err(super::ReadError::IsDir);
        };
        let start = self.data_offset(f)?;
        // A stored member inside one block in memory is a slice of it, not a copy.
        let packed = self
            .fetcher
            .read_bytes(&f.blob, start, compressed_size, Check::Length)
            .map_err(|source| self.fetch_err(f, source))?;
        let content = match method {
            zip::METHOD_STORED => Ok(packed),
            zip::METHOD_DEFLATED => zip::inflate(&packed, f.size).map(Bytes::from),
            m => return Err(self.unsupported_method(f, m)),
        };
        Ok(match content {
            Ok(c) if c.len() as u64 == f.size && crc32fast::hash(&c) == crc32 => Ok(c),
            Ok(c) => Err(format!(
                "CRC-32 {:08x} over {} bytes, expected {crc32:08x} over {}",
                crc32fast::hash(&c),
                c.len(),
                f.size
            )),
            Err(e) => Err(e),
        })
    }

    /// A range of a ZIP member over [`super::INLINE_MAX`]; see the module notes.
    pub(super) fn read_large_zip(&self, f: &FileState, offset: u64, len: u64) -> Result<Bytes> {
        if let Some(message) = lock(&self.damaged).get(&f.entry.id).cloned() {
            return Err(self.corrupt(f, message));
        }
        let Some((method, compressed_size, crc32)) = member(f) else {
            return Err(super::ReadError::IsDir);
        };
        let start = self.data_offset(f)?;
        let mut slot = lock(&f.stream);
        let st = slot.get_or_insert_with(MemberStream::default);
        let (data, whole_crc) = match method {
            zip::METHOD_STORED => {
                self.read_ahead(f, start + offset, len, start + compressed_size);
                let data = self
                    .fetcher
                    .read_bytes(&f.blob, start + offset, len, Check::Length)
                    .map_err(|source| self.fetch_err(f, source))?;
                let whole = st.note_range(offset, &data, f.size);
                (data, whole)
            }
            zip::METHOD_DEFLATED => {
                if offset < st.recent_start || st.inflater.is_none() {
                    if st.inflater.is_some() {
                        tracing::debug!(
                            member = %f.entry.name,
                            offset,
                            decoded = st.pos,
                            "a read behind the kept output restarts the member's decoder"
                        );
                    }
                    *st = MemberStream::default();
                    let input = BlobReader::new(self.fetcher.clone(), f.blob.clone(), start)
                        .with_read_ahead(start + compressed_size);
                    st.inflater = Some(Box::new(flate2::bufread::DeflateDecoder::new(
                        std::io::BufReader::new(input.take(compressed_size)),
                    )));
                }
                let mut whole = None;
                while st.pos < offset + len {
                    match st.decode_more(f.size) {
                        Ok(w) => whole = w,
                        Err(e) => {
                            *st = MemberStream::default();
                            return Err(self.decode_err(f, e));
                        }
                    }
                }
                (st.recent_range(offset, len), whole)
            }
            m => return Err(self.unsupported_method(f, m)),
        };
        if let Some(got) = whole_crc
            && got != crc32
        {
            *slot = None;
            let _ = self.fetcher.invalidate(&f.blob, start, compressed_size);
            let message = format!("CRC-32 {got:08x}, expected {crc32:08x}");
            tracing::warn!(
                dataset = %f.entry.dataset,
                member = %self.member_path(f),
                "large member failed its check ({message}); every read of it fails from now"
            );
            // Every later read fails too: the kernel retries a failed read-ahead page by page,
            // and those retries must not succeed.
            lock(&self.damaged).insert(f.entry.id, message.clone());
            return Err(self.corrupt(f, message));
        }
        Ok(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_output_is_served_in_slices_and_copies_across_pieces() {
        let data: Vec<u8> = (0..(3 * PIECE + 500) as u32)
            .map(|i| (i % 251) as u8)
            .collect();
        let mut st = MemberStream {
            inflater: Some(Box::new(std::io::Cursor::new(data.clone()))),
            ..MemberStream::default()
        };
        let size = data.len() as u64;
        let mut crc = None;
        while st.pos < size {
            crc = st.decode_more(size).unwrap();
        }
        assert_eq!(crc, Some(crc32fast::hash(&data)));
        let p = PIECE as u64;
        let inside = st.recent_range(p + 10, 100);
        assert_eq!(&inside[..], &data[PIECE + 10..PIECE + 110]);
        assert_eq!(
            inside.as_ptr(),
            st.recent[1].0[10..].as_ptr(),
            "a slice, not a copy"
        );
        let across = st.recent_range(p - 5, 3 * p - (p - 5) + 500);
        assert_eq!(&across[..], &data[PIECE - 5..]);
    }

    #[test]
    fn output_not_yet_served_is_kept_up_to_the_hard_limit() {
        let total = 48 * PIECE;
        let data: Vec<u8> = (0..total as u32).map(|i| (i % 253) as u8).collect();
        let mut st = MemberStream {
            inflater: Some(Box::new(std::io::Cursor::new(data.clone()))),
            ..MemberStream::default()
        };
        let size = total as u64;
        let p = PIECE as u64;
        // The kernel's later reads came first: 20 MiB decoded, nothing served, all kept.
        while st.pos < 20 * p {
            st.decode_more(size).unwrap();
        }
        assert_eq!(st.recent_start, 0);
        // The early reads arrive: served, then dropped down to RECENT_MAX behind.
        for k in 0..20 {
            assert_eq!(
                &st.recent_range(k * p, p)[..],
                &data[(k * p) as usize..][..PIECE]
            );
        }
        assert_eq!(st.recent_len, RECENT_MAX);
        // A reader that skipped ahead leaves output unserved: kept no more than the hard limit.
        while st.pos < size {
            st.decode_more(size).unwrap();
        }
        assert!(
            st.recent_len <= RECENT_HARD_MAX + PIECE,
            "{}",
            st.recent_len
        );
    }

    #[test]
    fn crcs_of_ranges_read_out_of_order_combine_into_the_member_crc() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut st = MemberStream::default();
        let size = data.len() as u64;
        for (a, b) in [
            (4000, 6000),
            (0, 1000),
            (8000, 10_000),
            (1000, 4000),
            (4500, 5000),
        ] {
            assert_eq!(st.note_range(a, &data[a as usize..b as usize], size), None);
        }
        assert_eq!(
            st.note_range(6000, &data[6000..8000], size),
            Some(crc32fast::hash(&data))
        );
    }
}
