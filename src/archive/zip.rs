//! ZIP central directory and local headers, read through [`ReadAt`].
//!
//! Listing costs one read of the archive's tail (end of central directory plus the largest
//! possible comment) and, when the central directory does not fit in that tail, one read of it.
//! ZIP64 records are followed. Member data is located later from the 30-byte local header,
//! whose extra field may differ in length from the central directory's copy.
//!
//! Invariants of what [`list`] returns: every member's `[header_offset, header_offset + 30 +
//! compressed_size)` lies before the central directory; names are normalised paths (see
//! [`super::normalize_member_path`]); CRC and sizes are the central directory's.

use super::{ArchiveError, ReadAt, normalize_member_path};

const EOCD_SIG: u32 = 0x0605_4b50;
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
const ZIP64_EOCD_SIG: u32 = 0x0606_4b50;
const CDH_SIG: u32 = 0x0201_4b50;
const LOCAL_SIG: u32 = 0x0403_4b50;
/// Fixed part of the end of central directory record.
const EOCD_LEN: u64 = 22;
/// The first tail read: the EOCD, a ZIP64 locator and record, and a short comment.
const SHORT_TAIL_LEN: u64 = 1024;
/// The EOCD plus the longest comment a u16 length allows.
const TAIL_LEN: u64 = EOCD_LEN + 0xFFFF;
/// Fixed part of a local file header.
pub const LOCAL_HEADER_LEN: u64 = 30;
/// A central directory larger than this is refused: about 10 million entries, far beyond any
/// dataset here, and it bounds the memory one listing may take.
const MAX_CD_SIZE: u64 = 1 << 30;

/// Compression methods medimg can decode.
pub const METHOD_STORED: u16 = 0;
/// Raw deflate.
pub const METHOD_DEFLATED: u16 = 8;

/// One member of a ZIP archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZipEntry {
    /// Normalised path components.
    pub path: Vec<String>,
    /// A directory entry (name ends with `/`).
    pub is_dir: bool,
    /// Compression method (0 stored, 8 deflated; others are listed but unreadable).
    pub method: u16,
    /// CRC-32 of the uncompressed bytes.
    pub crc32: u32,
    /// Bytes in the archive.
    pub compressed_size: u64,
    /// Bytes once decompressed.
    pub size: u64,
    /// Offset of the local file header.
    pub header_offset: u64,
    /// Modification time, seconds since the epoch (DOS time read as UTC, or the UT extra field).
    pub mtime: i64,
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}
fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}
fn u64_at(b: &[u8], i: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(a)
}

fn malformed(s: impl Into<String>) -> ArchiveError {
    ArchiveError::Malformed(s.into())
}

/// Inflate a raw deflate stream that must decode to exactly `size` bytes.
pub fn inflate(packed: &[u8], size: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut out = Vec::with_capacity(size as usize);
    let mut dec = flate2::read::DeflateDecoder::new(packed).take(size + 1);
    dec.read_to_end(&mut out)
        .map_err(|e| format!("deflate stream is damaged: {e}"))?;
    if out.len() as u64 != size {
        return Err(format!(
            "deflate stream decodes to {}{} bytes, the directory says {size}",
            if out.len() as u64 > size {
                "more than "
            } else {
                ""
            },
            out.len().min(size as usize)
        ));
    }
    Ok(out)
}

/// The content of member `path` of the ZIP archive `data` (in memory), CRC-checked.
pub fn extract(data: &[u8], path: &str) -> Result<Vec<u8>, ArchiveError> {
    let want: Vec<&str> = path.split('/').collect();
    let m = list(data, data.len() as u64)?
        .into_iter()
        .find(|m| !m.is_dir && m.path.iter().map(String::as_str).eq(want.iter().copied()))
        .ok_or_else(|| malformed(format!("no member {path:?}")))?;
    let header = data.read_at(m.header_offset, LOCAL_HEADER_LEN)?;
    let start = m.header_offset + local_data_offset(&header)?;
    let packed = data.read_at(start, m.compressed_size)?;
    let content = match m.method {
        METHOD_STORED => packed,
        METHOD_DEFLATED => inflate(&packed, m.size).map_err(malformed)?,
        other => return Err(malformed(format!("{path}: compression method {other}"))),
    };
    if content.len() as u64 != m.size || crc32fast::hash(&content) != m.crc32 {
        return Err(malformed(format!("{path}: CRC-32 mismatch")));
    }
    Ok(content)
}

/// List the members of the ZIP archive of `size` bytes behind `r`.
pub fn list<R: ReadAt + ?Sized>(r: &R, size: u64) -> Result<Vec<ZipEntry>, ArchiveError> {
    list_parts(r, &[size])
}

/// List the members of a ZIP archive whose bytes are the concatenation of parts of these sizes:
/// one part, raw splits of one archive (`.001`, `.002`: offsets count from the first byte), or
/// an Info-ZIP spanned archive (`.z01`, ..., `.zip`: offsets count from the start of the part,
/// "disk", they name). Returned offsets are always into the concatenation.
pub fn list_parts<R: ReadAt + ?Sized>(
    r: &R,
    part_sizes: &[u64],
) -> Result<Vec<ZipEntry>, ArchiveError> {
    let size: u64 = part_sizes.iter().sum();
    if size < EOCD_LEN {
        return Err(malformed(format!(
            "{size} bytes is too short for a ZIP archive"
        )));
    }
    // Most archives have no comment: look in a short tail first, so that the read stays in
    // the last block; only a long comment costs the full 64 KiB tail.
    let mut found = None;
    for want in [SHORT_TAIL_LEN, TAIL_LEN] {
        let tail_start = size.saturating_sub(want);
        let tail = r.read_at(tail_start, size - tail_start)?;
        if let Some(pos) = find_eocd(&tail) {
            found = Some((tail_start, tail, pos));
            break;
        }
        if tail_start == 0 {
            break;
        }
    }
    let (tail_start, tail, pos) = found
        .ok_or_else(|| malformed("no end of central directory record (truncated, or not a ZIP)"))?;
    let eocd_abs = tail_start + pos as u64;
    let e = &tail[pos..];
    let mut this_disk = u16_at(e, 4) as u32;
    let mut cd_disk = u16_at(e, 6) as u32;
    let mut entries = u16_at(e, 10) as u64;
    let mut cd_size = u32_at(e, 12) as u64;
    let mut cd_offset = u32_at(e, 16) as u64;
    let mut cd_end = eocd_abs;
    if entries == 0xFFFF || cd_size == 0xFFFF_FFFF || cd_offset == 0xFFFF_FFFF {
        // ZIP64: the locator sits right before the EOCD and points at the ZIP64 EOCD record.
        if eocd_abs < 20 {
            return Err(malformed("ZIP64 fields saturated but no ZIP64 locator"));
        }
        let loc = read_within(r, &tail, tail_start, eocd_abs - 20, 20)?;
        if u32_at(&loc, 0) != ZIP64_LOCATOR_SIG {
            return Err(malformed("ZIP64 fields saturated but no ZIP64 locator"));
        }
        let rec_disk = u32_at(&loc, 4);
        let rec_off = u64_at(&loc, 8);
        let rec_off = disk_start(part_sizes, this_disk, rec_disk)?
            .checked_add(rec_off)
            .ok_or_else(|| malformed("ZIP64 end record offset out of range"))?;
        if rec_off.checked_add(56).is_none_or(|e| e > eocd_abs - 20) {
            return Err(malformed("ZIP64 end record offset out of range"));
        }
        let rec = read_within(r, &tail, tail_start, rec_off, 56)?;
        if u32_at(&rec, 0) != ZIP64_EOCD_SIG {
            return Err(malformed("bad ZIP64 end of central directory signature"));
        }
        this_disk = u32_at(&rec, 16);
        cd_disk = u32_at(&rec, 20);
        entries = u64_at(&rec, 32);
        cd_size = u64_at(&rec, 40);
        cd_offset = u64_at(&rec, 48);
        cd_end = rec_off;
    }
    let cd_offset = disk_start(part_sizes, this_disk, cd_disk)?
        .checked_add(cd_offset)
        .ok_or_else(|| malformed("central directory offset out of range"))?;
    let starts: Vec<u64> = if this_disk == 0 {
        Vec::new()
    } else {
        part_sizes
            .iter()
            .scan(0u64, |acc, s| {
                let start = *acc;
                *acc += s;
                Some(start)
            })
            .collect()
    };
    if cd_offset.checked_add(cd_size).is_none_or(|e| e > cd_end) {
        return Err(malformed(format!(
            "central directory ({cd_size} bytes at {cd_offset}) runs past its end record at {cd_end}"
        )));
    }
    if cd_size > MAX_CD_SIZE {
        return Err(malformed(format!(
            "central directory of {cd_size} bytes is too large"
        )));
    }
    let cd = read_within(r, &tail, tail_start, cd_offset, cd_size)?;
    parse_central_directory(&cd, entries, cd_offset, &starts)
}

/// Where disk `disk` starts in the concatenation: 0 for a one-disk archive (`this_disk` 0),
/// else the sum of the sizes of the parts before it.
fn disk_start(part_sizes: &[u64], this_disk: u32, disk: u32) -> Result<u64, ArchiveError> {
    if this_disk == 0 {
        return Ok(0);
    }
    if part_sizes.len() != this_disk as usize + 1 {
        return Err(malformed(format!(
            "a spanned archive of {} disks, but {} parts were given; list every .z01 ... .zip part",
            this_disk + 1,
            part_sizes.len()
        )));
    }
    part_sizes
        .get(..disk as usize)
        .map(|before| before.iter().sum())
        .ok_or_else(|| malformed(format!("disk {disk} does not exist")))
}

/// Position of the last plausible EOCD record in `tail` (its comment must fit in the tail).
fn find_eocd(tail: &[u8]) -> Option<usize> {
    if tail.len() < EOCD_LEN as usize {
        return None;
    }
    (0..=tail.len() - EOCD_LEN as usize).rev().find(|&i| {
        u32_at(tail, i) == EOCD_SIG
            && i + EOCD_LEN as usize + u16_at(tail, i + 20) as usize <= tail.len()
    })
}

/// `len` bytes at `offset`, sliced from `tail` when it holds them, else read.
fn read_within<R: ReadAt + ?Sized>(
    r: &R,
    tail: &[u8],
    tail_start: u64,
    offset: u64,
    len: u64,
) -> Result<Vec<u8>, ArchiveError> {
    if offset >= tail_start && offset + len <= tail_start + tail.len() as u64 {
        let s = (offset - tail_start) as usize;
        Ok(tail[s..s + len as usize].to_vec())
    } else {
        r.read_at(offset, len)
    }
}

/// Parse the central directory; `disk_starts` (empty for a one-disk archive) turns per-disk
/// offsets into offsets of the concatenation.
fn parse_central_directory(
    cd: &[u8],
    expected: u64,
    cd_offset: u64,
    disk_starts: &[u64],
) -> Result<Vec<ZipEntry>, ArchiveError> {
    let mut out = Vec::with_capacity(expected.min(1 << 20) as usize);
    let mut i = 0usize;
    while i + 46 <= cd.len() {
        if u32_at(cd, i) != CDH_SIG {
            return Err(malformed(format!(
                "bad central directory header at entry {}",
                out.len() + 1
            )));
        }
        let h = &cd[i..];
        let flags = u16_at(h, 8);
        let method = u16_at(h, 10);
        let dos_time = u16_at(h, 12);
        let dos_date = u16_at(h, 14);
        let crc32 = u32_at(h, 16);
        let mut csize = u32_at(h, 20) as u64;
        let mut size = u32_at(h, 24) as u64;
        let name_len = u16_at(h, 28) as usize;
        let extra_len = u16_at(h, 30) as usize;
        let comment_len = u16_at(h, 32) as usize;
        let mut disk = u16_at(h, 34) as u64;
        let mut offset = u32_at(h, 42) as u64;
        let total = 46 + name_len + extra_len + comment_len;
        if i + total > cd.len() {
            return Err(malformed("central directory entry runs past the directory"));
        }
        let raw_name = &h[46..46 + name_len];
        let extra = &h[46 + name_len..46 + name_len + extra_len];
        let mut name = decode_name(raw_name, flags & 0x800 != 0);
        let mut mtime = dos_to_unix(dos_date, dos_time);
        for (id, data) in extra_fields(extra) {
            match id {
                0x0001 => {
                    // ZIP64 extended information: only the saturated fields are present, in order.
                    let mut k = 0;
                    let mut take = |field: &mut u64| {
                        if *field == 0xFFFF_FFFF && k + 8 <= data.len() {
                            *field = u64_at(data, k);
                            k += 8;
                        }
                    };
                    take(&mut size);
                    take(&mut csize);
                    take(&mut offset);
                    if disk == 0xFFFF && k + 4 <= data.len() {
                        disk = u32_at(data, k) as u64;
                    }
                }
                0x7075 if data.len() > 5 && data[0] == 1 => {
                    // Info-ZIP Unicode Path: valid only while it matches the header name's CRC.
                    if u32_at(data, 1) == crc32fast::hash(raw_name)
                        && let Ok(s) = std::str::from_utf8(&data[5..])
                    {
                        name = s.to_string();
                    }
                }
                0x5455 if data.len() >= 5 && data[0] & 1 != 0 => {
                    mtime = u32_at(data, 1) as i32 as i64;
                }
                _ => {}
            }
        }
        let (path, is_dir) = normalize_member_path(&name)?;
        if !disk_starts.is_empty() {
            let start = disk_starts
                .get(disk as usize)
                .ok_or_else(|| ArchiveError::Hostile {
                    name: name.clone(),
                    reason: format!("it starts on disk {disk}, which does not exist"),
                })?;
            offset = offset.saturating_add(*start);
        }
        let end = offset
            .checked_add(LOCAL_HEADER_LEN)
            .and_then(|e| e.checked_add(csize));
        if end.is_none_or(|e| e > cd_offset) {
            return Err(ArchiveError::Hostile {
                name,
                reason: format!(
                    "its data ({csize} bytes at {offset}) runs into the central directory at {cd_offset}"
                ),
            });
        }
        if method == METHOD_STORED && csize != size && !is_dir {
            return Err(ArchiveError::Hostile {
                name,
                reason: format!("stored member with {csize} bytes packed but {size} unpacked"),
            });
        }
        // Deflate cannot expand more than 1032:1; a larger claim is a bomb or a lie.
        if method == METHOD_DEFLATED && size > csize.saturating_mul(1032).saturating_add(1024) {
            return Err(ArchiveError::Hostile {
                name,
                reason: format!("claims {size} bytes from {csize} deflated bytes (a zip bomb?)"),
            });
        }
        out.push(ZipEntry {
            path,
            is_dir,
            method,
            crc32,
            compressed_size: csize,
            size,
            header_offset: offset,
            mtime,
        });
        i += total;
    }
    check_overlaps(&out)?;
    Ok(out)
}

/// Refuse members whose data overlap (the trick of "better zip bombs", where many entries
/// share one run of compressed data), comparing each with the next by offset.
fn check_overlaps(entries: &[ZipEntry]) -> Result<(), ArchiveError> {
    let mut by_offset: Vec<&ZipEntry> = entries.iter().filter(|e| !e.is_dir).collect();
    by_offset.sort_by_key(|e| e.header_offset);
    for w in by_offset.windows(2) {
        let end = w[0].header_offset + LOCAL_HEADER_LEN + w[0].compressed_size;
        if end > w[1].header_offset {
            return Err(ArchiveError::Hostile {
                name: w[1].path.join("/"),
                reason: format!("its data overlaps the member {:?}", w[0].path.join("/")),
            });
        }
    }
    Ok(())
}

fn extra_fields(mut extra: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if extra.len() < 4 {
            return None;
        }
        let id = u16_at(extra, 0);
        let len = (u16_at(extra, 2) as usize).min(extra.len() - 4);
        let data = &extra[4..4 + len];
        extra = &extra[4 + len..];
        Some((id, data))
    })
}

/// The offset of a member's data relative to its local header, from the header's 30 bytes.
pub fn local_data_offset(header: &[u8]) -> Result<u64, ArchiveError> {
    if header.len() < LOCAL_HEADER_LEN as usize || u32_at(header, 0) != LOCAL_SIG {
        return Err(malformed("bad local file header signature"));
    }
    Ok(LOCAL_HEADER_LEN + u16_at(header, 26) as u64 + u16_at(header, 28) as u64)
}

/// CP437, the code page of ZIP names without the UTF-8 flag, from 0x80 to 0xFF.
const CP437_HIGH: &str = "ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜ¢£¥₧ƒáíóúñÑªº¿⌐¬½¼¡«»░▒▓│┤╡╢╖╕╣║╗╝╜╛┐└┴┬├─┼╞╟╚╔╩╦╠═╬╧╨╤╥╙╘╒╓╫╪┘┌█▄▌▐▀αßΓπΣσµτΦΘΩδ∞φε∩≡±≥≤⌠⌡÷≈°∙·√ⁿ²■\u{a0}";

fn decode_name(raw: &[u8], utf8_flag: bool) -> String {
    if let Ok(s) = std::str::from_utf8(raw) {
        return s.to_string();
    }
    if utf8_flag {
        return String::from_utf8_lossy(raw).into_owned();
    }
    raw.iter()
        .map(|&b| {
            if b < 0x80 {
                b as char
            } else {
                CP437_HIGH.chars().nth((b - 0x80) as usize).unwrap_or('?')
            }
        })
        .collect()
}

fn dos_to_unix(date: u16, time: u16) -> i64 {
    let year = 1980 + (date >> 9) as i64;
    let month = (((date >> 5) & 0xF) as i64).clamp(1, 12);
    let day = ((date & 0x1F) as i64).max(1);
    let (h, m, s) = (
        (time >> 11) as i64,
        ((time >> 5) & 0x3F) as i64,
        ((time & 0x1F) * 2) as i64,
    );
    crate::time::days_from_civil(year, month, day) * 86400 + h * 3600 + m * 60 + s
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counting<'a>(&'a [u8], AtomicUsize);
    impl ReadAt for Counting<'_> {
        fn read_at(&self, offset: u64, len: u64) -> Result<Vec<u8>, ArchiveError> {
            self.1.fetch_add(1, Ordering::SeqCst);
            self.0.read_at(offset, len)
        }
    }

    /// A ZIP of `(name, bytes, deflated)`; a name ending in `/` is a directory.
    pub(crate) fn make_zip(files: &[(&str, &[u8], bool)]) -> Vec<u8> {
        let mut w = ::zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, data, deflate) in files {
            let m = if *deflate {
                ::zip::CompressionMethod::Deflated
            } else {
                ::zip::CompressionMethod::Stored
            };
            let opts = ::zip::write::SimpleFileOptions::default().compression_method(m);
            if name.ends_with('/') {
                w.add_directory(*name, opts).unwrap();
            } else {
                w.start_file(*name, opts).unwrap();
                w.write_all(data).unwrap();
            }
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn lists_stored_and_deflated_members_in_one_tail_read() {
        let big = vec![7u8; 100_000];
        let z = make_zip(&[
            ("train/", b"", false),
            ("train/a.png", b"hello", false),
            ("train/b.png", &big, true),
        ]);
        let r = Counting(&z, AtomicUsize::new(0));
        let list = list(&r, z.len() as u64).unwrap();
        assert_eq!(
            r.1.load(Ordering::SeqCst),
            1,
            "small zip: the tail holds the directory"
        );
        assert_eq!(list.len(), 3);
        assert!(list[0].is_dir);
        let b = &list[2];
        assert_eq!(b.path, vec!["train", "b.png"]);
        assert_eq!(
            (b.method, b.size, b.crc32),
            (METHOD_DEFLATED, 100_000, crc32fast::hash(&big))
        );
        assert!(b.compressed_size < 1000);
        let h = z.read_at(b.header_offset, LOCAL_HEADER_LEN).unwrap();
        let data_at = b.header_offset + local_data_offset(&h).unwrap();
        let packed = z.read_at(data_at, b.compressed_size).unwrap();
        let mut out = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::DeflateDecoder::new(&packed[..]),
            &mut out,
        )
        .unwrap();
        assert_eq!(out, big);
    }

    #[test]
    fn large_directory_is_read_with_a_second_request() {
        let names: Vec<String> = (0..3000)
            .map(|i| format!("images/class_{}/img_{i:05}.png", i % 7))
            .collect();
        let files: Vec<(&str, &[u8], bool)> = names
            .iter()
            .map(|n| (n.as_str(), &b"x"[..], false))
            .collect();
        let z = make_zip(&files);
        let r = Counting(&z, AtomicUsize::new(0));
        let list = list(&r, z.len() as u64).unwrap();
        assert_eq!(list.len(), 3000);
        assert_eq!(
            r.1.load(Ordering::SeqCst),
            2,
            "short tail, then the directory"
        );
    }

    #[test]
    fn truncated_and_non_zip_blobs_are_refused() {
        let z = make_zip(&[("a.txt", b"hello", false)]);
        let cut = &z[..z.len() - 10];
        assert!(
            list(cut, cut.len() as u64)
                .unwrap_err()
                .to_string()
                .contains("end of central directory")
        );
        let png = b"\x89PNG\r\n\x1a\n not a zip at all, just bytes";
        assert!(list(&png[..], png.len() as u64).is_err());
    }

    #[test]
    fn hostile_member_path_is_refused() {
        let z = make_zip(&[("ok.txt", b"1", false), ("evil/../../x", b"2", false)]);
        let e = list(&z[..], z.len() as u64).unwrap_err().to_string();
        assert!(e.contains("refused member") && e.contains(".."), "{e}");
    }

    #[test]
    fn zip64_records_and_data_descriptors_are_followed() {
        // Members written with ZIP64 extra fields, through a streaming writer (data descriptors).
        let mut w = ::zip::ZipWriter::new_stream(Vec::new());
        let opts = ::zip::write::SimpleFileOptions::default()
            .compression_method(::zip::CompressionMethod::Deflated)
            .large_file(true);
        for i in 0..3 {
            w.start_file(format!("vol/{i}.nii"), opts).unwrap();
            w.write_all(&vec![i as u8; 10_000]).unwrap();
        }
        let z = w.finish().unwrap().into_inner();
        let list = list(&z[..], z.len() as u64).unwrap();
        assert_eq!(list.len(), 3);
        for (i, e) in list.iter().enumerate() {
            assert_eq!(e.size, 10_000);
            let h = z.read_at(e.header_offset, LOCAL_HEADER_LEN).unwrap();
            assert_ne!(u16_at(&h, 6) & 0x8, 0, "written with a data descriptor");
            let at = e.header_offset + local_data_offset(&h).unwrap();
            let packed = z.read_at(at, e.compressed_size).unwrap();
            let mut out = Vec::new();
            std::io::Read::read_to_end(
                &mut flate2::read::DeflateDecoder::new(&packed[..]),
                &mut out,
            )
            .unwrap();
            assert_eq!(out, vec![i as u8; 10_000]);
        }
    }

    #[test]
    fn more_than_65535_entries_use_the_zip64_end_record() {
        let mut w = ::zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts = ::zip::write::SimpleFileOptions::default()
            .compression_method(::zip::CompressionMethod::Stored);
        for i in 0..70_000 {
            w.start_file(format!("{i}"), opts).unwrap();
        }
        let z = w.finish().unwrap().into_inner();
        assert_eq!(list(&z[..], z.len() as u64).unwrap().len(), 70_000);
    }

    #[test]
    fn overlapping_members_and_impossible_ratios_are_refused() {
        let z = make_zip(&[
            ("a.png", &[1u8; 5000], false),
            ("b.png", &[2u8; 5000], false),
        ]);
        // Point the second central entry's local header offset at the first member.
        let mut evil = z.clone();
        let cd = (0..evil.len() - 4)
            .rev()
            .filter(|&i| u32_at(&evil, i) == CDH_SIG)
            .min()
            .unwrap();
        let second = cd + 46 + u16_at(&evil, cd + 28) as usize;
        evil[second + 42..second + 46].copy_from_slice(&0u32.to_le_bytes());
        let e = super::list(&evil[..], evil.len() as u64)
            .unwrap_err()
            .to_string();
        assert!(e.contains("overlaps"), "{e}");
        // Claim 10 GB from a 5000-byte member.
        let mut bomb = make_zip(&[("x", &[0u8; 5000], true)]);
        let cd = (0..bomb.len() - 4)
            .rev()
            .find(|&i| u32_at(&bomb, i) == CDH_SIG)
            .unwrap();
        bomb[cd + 24..cd + 28].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        let e = super::list(&bomb[..], bomb.len() as u64)
            .unwrap_err()
            .to_string();
        assert!(e.contains("zip bomb"), "{e}");
    }

    #[test]
    fn cp437_names_decode() {
        assert_eq!(decode_name(b"caf\x82.png", false), "café.png");
        assert_eq!(decode_name("naïve.png".as_bytes(), true), "naïve.png");
    }

    #[test]
    fn dos_dates_convert() {
        // 2020-02-29 13:45:30
        let date = ((2020 - 1980) << 9) | (2 << 5) | 29;
        let time = (13 << 11) | (45 << 5) | 15;
        assert_eq!(dos_to_unix(date, time), 1582983930);
    }
}
