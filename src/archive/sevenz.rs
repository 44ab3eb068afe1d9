//! 7z archives: the member table from the archive's header, and a member's bytes decoded from
//! its block (sevenz-rust2, pure Rust: LZMA, LZMA2, the BCJ filters, PPMd, bzip2).
//!
//! A 7z keeps its header at the end, named by a 32-byte start header at offset 0: listing
//! costs two ranges (the start header and the header, plus the header's own packed stream
//! when it is compressed), never the members. A member lives in a block (a "folder"): a
//! non-solid archive has one block per file, a solid one packs many files into one stream,
//! and a member can only be decoded from its block's start. So reading a member of a solid
//! block decodes the members before it in that block; [`SevenZEntry::offset`] is where it
//! starts in its block's output.
//!
//! # Invariants
//! - Nothing is trusted: the start header must name a header inside the blob (else the
//!   archive is truncated), every packed stream must lie inside the blob, the members of a
//!   block must fit in what the block declares, and declared output past [`BOMB_FLOOR`] at
//!   more than [`BOMB_RATIO`] times the packed bytes is refused as a bomb. A blank start
//!   header (an unfinished archive) is refused rather than searched for, which would read
//!   the whole blob.
//! - Member paths are normalised as every archive's are; anti-items (deletions in an update
//!   archive) are skipped and reported.
//! - Encrypted archives are refused: medimg has no password to give.
//! - Every member with a CRC is checked by the decoder as its last byte is read; a panic in the
//!   library is caught and becomes an error.

use std::io::{self, Read, Seek, SeekFrom};
use std::panic::{AssertUnwindSafe, catch_unwind};

use sevenz_rust2::{Archive, BlockDecoder, Password};

use super::compressed::{BOMB_FLOOR, BOMB_RATIO};
use super::{ArchiveError, ReadAt, normalize_member_path};

/// The start header's size: signature, version, CRC, next header offset, size and CRC.
const START_HEADER: u64 = 32;
const SIGNATURE: [u8; 6] = [b'7', b'z', 0xBC, 0xAF, 0x27, 0x1C];
/// 7-Zip's method id of AES-256 + SHA-256.
const AES: [u8; 4] = [0x06, 0xF1, 0x07, 0x01];
/// Largest piece a [`BlobCursor`] asks its [`ReadAt`] for.
const PIECE: u64 = 1 << 20;

/// One member of a 7z archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SevenZEntry {
    /// Normalised path components.
    pub path: Vec<String>,
    /// A directory.
    pub is_dir: bool,
    /// Content size.
    pub size: u64,
    /// Its index in the archive's file list (what [`decode_member`] takes).
    pub file: u32,
    /// Where its content starts in its block's output (0 for a member without content).
    pub offset: u64,
    /// Modification time, seconds since the epoch (0 when the archive has none).
    pub mtime: i64,
}

/// `Read + Seek` over a [`ReadAt`] of `size` bytes, for the library (wrap it in a
/// `BufReader`: the library reads a few bytes at a time while parsing).
pub struct BlobCursor<R: ReadAt> {
    r: R,
    size: u64,
    pos: u64,
}

impl<R: ReadAt> BlobCursor<R> {
    /// A cursor at offset 0 of `r`, which holds `size` bytes.
    pub fn new(r: R, size: u64) -> BlobCursor<R> {
        BlobCursor { r, size, pos: 0 }
    }
}

impl<R: ReadAt> Read for BlobCursor<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = (out.len() as u64)
            .min(self.size.saturating_sub(self.pos))
            .min(PIECE);
        if n == 0 {
            return Ok(0);
        }
        let data = self.r.read_at(self.pos, n).map_err(io::Error::other)?;
        let n = data.len().min(out.len());
        out[..n].copy_from_slice(&data[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R: ReadAt> Seek for BlobCursor<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = target.ok_or_else(|| io::Error::other("seek before the start"))?;
        Ok(self.pos)
    }
}

impl<T: ReadAt + ?Sized> ReadAt for &T {
    fn read_at(&self, offset: u64, len: u64) -> Result<Vec<u8>, ArchiveError> {
        (**self).read_at(offset, len)
    }
}

fn malformed(msg: impl std::fmt::Display) -> ArchiveError {
    ArchiveError::Malformed(format!("7z: {msg}"))
}

/// The archive's parsed header, after the checks of the module notes.
pub fn open<R: ReadAt>(r: R, size: u64) -> Result<Archive, ArchiveError> {
    if size < START_HEADER {
        return Err(malformed(format!(
            "{size} bytes is too short for a 7z archive"
        )));
    }
    let start = r.read_at(0, START_HEADER)?;
    if start[..6] != SIGNATURE {
        return Err(malformed("no 7z signature at the start"));
    }
    if start[8..].iter().all(|&b| b == 0) {
        return Err(malformed(
            "the start header is blank (an archive whose writing never finished)",
        ));
    }
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&start[i..i + 8]);
        u64::from_le_bytes(b)
    };
    let (next_offset, next_size) = (u64_at(12), u64_at(20));
    let header_end = START_HEADER
        .checked_add(next_offset)
        .and_then(|e| e.checked_add(next_size));
    if header_end.is_none_or(|e| e > size) {
        return Err(malformed(format!(
            "the header is at {next_offset}+{next_size} past the start header, beyond the \
             archive's {size} bytes (truncated)"
        )));
    }
    let mut cursor = io::BufReader::with_capacity(64 << 10, BlobCursor::new(r, size));
    let archive = catch_unwind(AssertUnwindSafe(|| {
        Archive::read(&mut cursor, &Password::empty())
    }))
    .map_err(|_| malformed("the header is malformed (the parser gave up)"))?
    .map_err(|e| malformed(format!("the header: {e}")))?;
    let packed: u64 = archive.pack_sizes().iter().sum();
    let packed_end = START_HEADER
        .checked_add(archive.pack_pos())
        .and_then(|p| p.checked_add(packed));
    if packed_end.is_none_or(|e| e > size) {
        return Err(malformed(format!(
            "its packed streams end past the archive's {size} bytes (truncated)"
        )));
    }
    if archive
        .blocks
        .iter()
        .any(|b| b.coders.iter().any(|c| c.encoder_method_id() == AES))
    {
        return Err(malformed(
            "the archive is encrypted; medimg has no password to give it",
        ));
    }
    let unpacked: u64 = archive
        .blocks
        .iter()
        .map(|b| b.get_unpack_size())
        .fold(0u64, u64::saturating_add);
    if unpacked > BOMB_FLOOR && unpacked / packed.max(1) > BOMB_RATIO {
        return Err(ArchiveError::Hostile {
            name: "(the whole archive)".into(),
            reason: format!(
                "its blocks claim {unpacked} bytes from {packed} packed bytes (a decompression \
                 bomb?)"
            ),
        });
    }
    Ok(archive)
}

/// The largest output of a block holding more than one member (0 when every member has a
/// block of its own): what a random read of a member may decode before it.
pub fn largest_solid_block(archive: &Archive) -> u64 {
    let mut members = vec![0u32; archive.blocks.len()];
    for b in archive.stream_map.file_block_index.iter().flatten() {
        if let Some(n) = members.get_mut(*b) {
            *n += 1;
        }
    }
    archive
        .blocks
        .iter()
        .zip(members)
        .filter(|(_, n)| *n > 1)
        .map(|(b, _)| b.get_unpack_size())
        .max()
        .unwrap_or(0)
}

/// The members of `archive`, and the names of anti-items skipped.
pub fn list(archive: &Archive) -> Result<(Vec<SevenZEntry>, Vec<String>), ArchiveError> {
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    let mut filled = vec![0u64; archive.blocks.len()];
    for (i, f) in archive.files.iter().enumerate() {
        if f.is_anti_item {
            skipped.push(format!("{} (a deletion in an update archive)", f.name));
            continue;
        }
        let (path, dir_mark) = normalize_member_path(&f.name)?;
        let is_dir = f.is_directory || dir_mark;
        let mut offset = 0;
        if f.has_stream && !is_dir {
            let block = archive
                .stream_map
                .file_block_index
                .get(i)
                .copied()
                .flatten()
                .filter(|&b| b < archive.blocks.len())
                .ok_or_else(|| malformed(format!("{:?} has content but no block", f.name)))?;
            offset = filled[block];
            filled[block] = filled[block].saturating_add(f.size);
            if filled[block] > archive.blocks[block].get_unpack_size() {
                return Err(ArchiveError::Hostile {
                    name: f.name.clone(),
                    reason: format!(
                        "the members of block {block} claim more than its {} bytes",
                        archive.blocks[block].get_unpack_size()
                    ),
                });
            }
        }
        let mtime = if f.has_last_modified_date {
            let t: u64 = f.last_modified_date.into();
            (t / 10_000_000) as i64 - 11_644_473_600
        } else {
            0
        };
        out.push(SevenZEntry {
            path,
            is_dir,
            size: if is_dir { 0 } else { f.size },
            file: i as u32,
            offset,
            mtime,
        });
    }
    Ok((out, skipped))
}

/// Decode member `file` of `archive` from `source` (the archive's bytes), handing its bytes to
/// `each` in order; `each` returns `false` to stop. The members before it in its block are
/// decoded and dropped. Its CRC, when it has one, is checked at its last byte.
pub fn decode_member<S: Read + Seek>(
    archive: &Archive,
    source: &mut S,
    file: u32,
    each: &mut dyn FnMut(&[u8]) -> bool,
) -> Result<(), ArchiveError> {
    decode_block_from(archive, source, file, &mut |i, _, b| {
        if i > file {
            return false;
        }
        i < file || b.is_empty() || each(b)
    })
}

/// Decode the block of member `file` from its start, handing `each(member, offset in the
/// member, bytes)` for the bytes of `file` and of every member after it in the block, in
/// order; `each` returns `false` to stop. The members before `file` are decoded and dropped,
/// with one call with no bytes per 256 KiB of them (progress, and a chance to stop). Each
/// member's CRC, when it has one, is checked at its last byte, before any byte of the next
/// member is handed over.
pub fn decode_block_from<S: Read + Seek>(
    archive: &Archive,
    source: &mut S,
    file: u32,
    each: &mut dyn FnMut(u32, u64, &[u8]) -> bool,
) -> Result<(), ArchiveError> {
    let target = archive
        .files
        .get(file as usize)
        .ok_or_else(|| malformed(format!("no member {file}")))?;
    let Some(block) = archive
        .stream_map
        .file_block_index
        .get(file as usize)
        .copied()
        .flatten()
    else {
        return Ok(());
    };
    let first = archive
        .stream_map
        .block_first_file_index
        .get(block)
        .copied()
        .ok_or_else(|| malformed(format!("no block {block}")))?;
    let mut failure: Option<io::Error> = None;
    let result = catch_unwind(AssertUnwindSafe(|| {
        let password = Password::empty();
        let decoder = BlockDecoder::new(1, block, archive, &password, source);
        let mut buf = vec![0u8; 256 << 10];
        // The library walks the block's members in file order from `first`, one call each.
        let mut index = first as u32;
        decoder.for_each_entries(&mut |_, r| {
            let i = index;
            index += 1;
            let mut offset = 0u64;
            loop {
                let n = match r.read(&mut buf) {
                    Ok(0) => return Ok(true),
                    Ok(n) => n,
                    Err(e) => {
                        let msg = e.to_string();
                        failure = Some(e);
                        return Err(sevenz_rust2::Error::Other(msg.into()));
                    }
                };
                let go = if i < file {
                    each(i, offset, &[])
                } else {
                    each(i, offset, &buf[..n])
                };
                if !go {
                    return Ok(false);
                }
                offset += n as u64;
            }
        })
    }));
    match result {
        Err(_) => Err(malformed("decoding failed (the decoder gave up)")),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => match failure {
            Some(io) => Err(ArchiveError::Read(Box::new(io))),
            None => Err(malformed(format!("decoding {:?}: {e}", target.name))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 7z made by the system's 7z tool when there is one, else none (the tests that need it
    /// skip).
    fn seven_zip(files: &[(&str, Vec<u8>)], args: &[&str]) -> Option<Vec<u8>> {
        let tool = ["7z", "7za", "7zz", "7zr"].into_iter().find(|t| {
            std::process::Command::new(t)
                .arg("i")
                .output()
                .is_ok_and(|o| o.status.success())
        })?;
        let d = tempfile::tempdir().unwrap();
        for (n, data) in files {
            let p = d.path().join("in").join(n);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, data).unwrap();
        }
        let st = std::process::Command::new(tool)
            .current_dir(d.path().join("in"))
            .args(["a", "-bd", "../x.7z"])
            .args(args)
            .arg(".")
            .output()
            .unwrap();
        assert!(st.status.success(), "{st:?}");
        Some(std::fs::read(d.path().join("x.7z")).unwrap())
    }

    /// A 7z written by the library itself (LZMA2, solid).
    fn library_7z(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut w = sevenz_rust2::ArchiveWriter::new(io::Cursor::new(Vec::new())).unwrap();
        let entries: Vec<_> = files
            .iter()
            .map(|(n, _)| sevenz_rust2::ArchiveEntry::new_file(n))
            .collect();
        let readers: Vec<sevenz_rust2::SourceReader<&[u8]>> =
            files.iter().map(|(_, d)| (&d[..]).into()).collect();
        w.push_archive_entries(entries, readers).unwrap();
        w.finish().unwrap().into_inner()
    }

    fn files() -> Vec<(&'static str, Vec<u8>)> {
        vec![
            ("a/one.txt", b"hello 7z".to_vec()),
            (
                "a/b/two.bin",
                (0..200_000u32).map(|i| (i % 251) as u8).collect(),
            ),
            ("three.txt", b"x".repeat(70_000)),
        ]
    }

    fn check_round_trip(z: &[u8], files: &[(&str, Vec<u8>)]) {
        let archive = open(z, z.len() as u64).unwrap();
        if archive.is_solid {
            assert!(largest_solid_block(&archive) > 0);
        } else {
            assert_eq!(largest_solid_block(&archive), 0);
        }
        let (list, skipped) = list(&archive).unwrap();
        assert!(skipped.is_empty());
        for (name, data) in files {
            let e = list
                .iter()
                .find(|e| e.path.join("/") == *name)
                .unwrap_or_else(|| panic!("{name} not listed: {list:?}"));
            assert_eq!(e.size, data.len() as u64);
            let mut got = Vec::new();
            let mut src = io::Cursor::new(z);
            decode_member(&archive, &mut src, e.file, &mut |b| {
                got.extend_from_slice(b);
                true
            })
            .unwrap();
            assert!(got == *data, "{name}: bytes differ");
        }
    }

    #[test]
    fn members_of_solid_archives_decode_from_their_block() {
        let files = files();
        check_round_trip(&library_7z(&files), &files);
    }

    #[test]
    fn system_made_solid_and_non_solid_archives_read_back() {
        let files = files();
        for args in [
            &[][..],
            &["-ms=off"][..],
            &["-m0=bzip2"][..],
            &["-m0=PPMd"][..],
        ] {
            let Some(z) = seven_zip(&files, args) else {
                eprintln!("no 7z tool here: skipped");
                return;
            };
            check_round_trip(&z, &files);
        }
    }

    #[test]
    fn truncated_blank_and_damaged_archives_are_refused() {
        let files = files();
        let z = library_7z(&files);
        for cut in [z.len() - 1, z.len() / 2, 40, 10] {
            let e = open(&z[..cut], cut as u64).unwrap_err().to_string();
            assert!(e.contains("7z"), "cut at {cut}: {e}");
        }
        let mut blank = z.clone();
        blank[8..32].fill(0);
        let e = open(&blank[..], blank.len() as u64)
            .unwrap_err()
            .to_string();
        assert!(e.contains("blank"), "{e}");
        // Damage in the packed data: the member's CRC (or the decoder) catches it.
        let mut bad = z.clone();
        bad[40] ^= 0x40;
        let archive = open(&bad[..], bad.len() as u64).unwrap();
        let (list, _) = list(&archive).unwrap();
        let mut failed = false;
        for e in list.iter().filter(|e| e.size > 0) {
            let mut got = Vec::new();
            let r = decode_member(&archive, &mut io::Cursor::new(&bad), e.file, &mut |b| {
                got.extend_from_slice(b);
                true
            });
            failed |= r.is_err();
        }
        assert!(failed, "damage went unnoticed");
        assert!(open(&b"not a 7z archive at all, just text"[..], 34).is_err());
    }
}
