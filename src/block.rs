//! Block buffers: the bytes of one cache block, received once and then only shared.
//!
//! A [`BlockBuf`] filled by [`BlockBuf::fill`] starts on a [`ALIGN`]-byte boundary and is
//! zero-padded to a multiple of it, so the cache writes it with `O_DIRECT` as it is, and
//! [`BlockBuf::share`] hands ranges of it to the kernel without a copy. A sequential read of a
//! large file is CPU-bound here, and each of those two copies of every byte cost about 5 % of
//! it. A buffer made from a plain `Vec` works the same; only its `O_DIRECT` write copies.
//!
//! Invariant: `as_slice` is exactly the bytes received; the padding is never part of it.

use std::sync::Arc;

/// `O_DIRECT` wants the buffer, length and offset aligned to the device's logical block: 4096
/// covers every disk in use (512 and 4096).
pub const ALIGN: usize = 4096;

/// The bytes of one block.
pub struct BlockBuf {
    buf: Vec<u8>,
    start: usize,
    len: usize,
}

impl std::fmt::Debug for BlockBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BlockBuf({} bytes)", self.len)
    }
}

impl From<Vec<u8>> for BlockBuf {
    fn from(buf: Vec<u8>) -> BlockBuf {
        BlockBuf {
            len: buf.len(),
            buf,
            start: 0,
        }
    }
}

impl BlockBuf {
    /// Receive up to `max` bytes: `append` adds them to the `Vec` it is given and must not let
    /// it grow past the length it is given alongside (the bytes before the data are alignment
    /// padding). Memory for `max` bytes is taken up front when `max` is at most `prealloc`.
    pub fn fill<E>(
        max: usize,
        prealloc: usize,
        append: impl FnOnce(&mut Vec<u8>, usize) -> Result<bool, E>,
    ) -> Result<(BlockBuf, bool), E> {
        let mut buf: Vec<u8> = Vec::with_capacity(if max <= prealloc {
            max.div_ceil(ALIGN) * ALIGN + ALIGN
        } else {
            0
        });
        let start = buf.as_ptr().align_offset(ALIGN).min(ALIGN);
        buf.resize(start, 0);
        let complete = append(&mut buf, start.saturating_add(max))?;
        let len = buf.len() - start;
        // Within the capacity taken above: the bytes do not move.
        buf.resize(start + len.div_ceil(ALIGN) * ALIGN, 0);
        Ok((BlockBuf { buf, start, len }, complete))
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }

    /// Their number.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes zero-padded to a multiple of [`ALIGN`], when they start on an aligned address
    /// (a buffer made by [`BlockBuf::fill`]); `None` for one made from a plain `Vec`.
    pub fn padded(&self) -> Option<&[u8]> {
        let padded = self.len.div_ceil(ALIGN) * ALIGN;
        let whole = self.buf.get(self.start..self.start + padded)?;
        (whole.as_ptr().align_offset(ALIGN) == 0).then_some(whole)
    }

    /// `range` of the bytes as [`bytes::Bytes`] that keep the buffer alive: no copy.
    pub fn share(this: &Arc<BlockBuf>, range: std::ops::Range<usize>) -> Option<bytes::Bytes> {
        if range.start > range.end || range.end > this.len {
            return None;
        }
        Some(bytes::Bytes::from_owner(Shared(this.clone())).slice(range))
    }
}

/// Owner of shared [`bytes::Bytes`] ranges of a block.
struct Shared(Arc<BlockBuf>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        self.0.as_slice()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filled_buffer_is_aligned_padded_and_exactly_what_was_received() {
        for n in [0usize, 1, 4095, 4096, 4097, 100_000] {
            let data: Vec<u8> = (0..n).map(|i| (i % 251) as u8 + 1).collect();
            let (b, complete) = BlockBuf::fill(n, 1 << 20, |v, limit| {
                assert_eq!(
                    limit - v.len(),
                    n,
                    "the limit leaves room for exactly n bytes"
                );
                v.extend_from_slice(&data);
                Ok::<_, ()>(true)
            })
            .unwrap();
            assert!(complete);
            assert_eq!(b.as_slice(), &data[..]);
            assert_eq!(b.len(), n);
            let p = b.padded().expect("aligned");
            assert_eq!(p.len() % ALIGN, 0);
            assert_eq!(p.as_ptr() as usize % ALIGN, 0);
            assert_eq!(&p[..n], &data[..]);
            assert!(p[n..].iter().all(|&x| x == 0), "padding is zeros");
        }
    }

    #[test]
    fn a_plain_vec_has_no_padded_form_and_shares_ranges() {
        let b = Arc::new(BlockBuf::from(vec![1u8, 2, 3, 4, 5]));
        // Its allocation holds the bytes and no padding.
        assert!(b.padded().is_none());
        assert_eq!(BlockBuf::share(&b, 1..4).unwrap(), &[2u8, 3, 4][..]);
        assert!(BlockBuf::share(&b, 3..6).is_none());
    }
}
