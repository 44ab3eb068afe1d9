//! RAR archives (RAR 4 and RAR 5; solid RAR 5 too), decoded by libarchive through the
//! `compress-tools` binding, which hands libarchive a `Read + Seek` source: here the blob's
//! bytes through the block cache, fetched by range.
//!
//! RAR keeps each member's header just before its data, with no table at the end, so the
//! member list is a walk of the whole archive. Listing decodes every member once
//! ([`list`]): it checks every member before anything is shown, and measures what each
//! really holds. A later read ([`decode_from`]) walks the headers again to its member: in a
//! non-solid archive libarchive skips the members before it (seeking over those past 64 KiB,
//! whose blocks are then never fetched), in a solid one it must decode them, as every RAR
//! reader must.
//!
//! Besides libarchive, medimg walks the archive's block headers itself (`headers`: the
//! framing only, each header's size, flags, declared size and CRC-32; never the compressed
//! data). libarchive 3.6 does not check the CRC of a member stored without compression (its
//! stored path ends a member by its size, before its check), and its binding drops the
//! warning in which libarchive says a member is encrypted (the member is then decoded as if
//! it were not, and fails with a misleading message); the walk gives both.
//!
//! # Invariants
//! - Nothing is trusted: the archive must start with a RAR 4 or RAR 5 signature (libarchive
//!   would otherwise take any format it knows); libarchive's entries must match the walked
//!   headers one for one, a regular member must hold exactly the bytes its header declares,
//!   and output past [`BOMB_FLOOR`] at more than [`BOMB_RATIO`] times the archive's size is
//!   refused as a bomb while it is decoded.
//! - Every member's CRC-32 is checked by medimg at its last byte, before any byte of the
//!   next member is handed over (libarchive also checks compressed members, and RAR 5's
//!   BLAKE2 hashes of compressed members); a stored RAR 5 member with a BLAKE2 hash and no
//!   CRC-32, which nothing would check, is not served. A mismatch, a truncated archive or
//!   a decoding error is an error, never short or wrong bytes.
//! - Encrypted archives are refused with that reason: medimg has no password to give.
//! - What libarchive cannot decode (a solid RAR 4: libarchive reads RAR 4 only when each
//!   member is compressed on its own; a volume of a multi-volume archive; the stored BLAKE2
//!   member above) is [`ArchiveError::Unsupported`]: the archive can stay a file.
//! - Member paths are normalised as every archive's are; entries other than files and
//!   folders (links) are skipped and reported.
//! - A member is numbered by its position among the archive's file headers
//!   ([`RarEntry::entry`]), which is how a read finds it again.

use std::cell::Cell;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use compress_tools::{ArchiveContents, ArchiveIteratorBuilder};

use super::compressed::{BOMB_FLOOR, BOMB_RATIO};
use super::sevenz::BlobCursor;
use super::{ArchiveError, ReadAt, normalize_member_path};

/// The first bytes of a RAR 4 archive (RAR 1.5 to 4.x).
pub const SIGNATURE_V4: &[u8] = b"Rar!\x1a\x07\x00";
/// The first bytes of a RAR 5 archive.
pub const SIGNATURE_V5: &[u8] = b"Rar!\x1a\x07\x01\x00";

/// The file type bits of `st_mode`, and the two kinds kept.
const S_IFMT: u32 = 0o170_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;

/// One member of a RAR archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RarEntry {
    /// Normalised path components.
    pub path: Vec<String>,
    /// Whether it is a folder.
    pub is_dir: bool,
    /// Its size once decoded.
    pub size: u64,
    /// Its position among the archive's headers (from 0, every header counted).
    pub entry: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
}

fn malformed(msg: impl std::fmt::Display) -> ArchiveError {
    ArchiveError::Malformed(format!("RAR: {msg}"))
}

/// A [`ReadAt`] that keeps its first failure, so that a fetch error reaches the caller with
/// its type rather than as libarchive's text.
struct Recording<R> {
    inner: R,
    failed: Arc<Mutex<Option<ArchiveError>>>,
}

impl<R: ReadAt> ReadAt for Recording<R> {
    fn read_at(&self, offset: u64, len: u64) -> Result<Vec<u8>, ArchiveError> {
        self.inner.read_at(offset, len).map_err(|e| {
            // The binding hands this text to libarchive as a C string, and a NUL in it would
            // abort the process.
            let msg = e.to_string().replace('\0', " ");
            if let Ok(mut slot) = self.failed.lock() {
                slot.get_or_insert(e);
            }
            ArchiveError::Malformed(msg)
        })
    }
}

/// A source that calls `tick` before each read of the archive's bytes: progress while
/// libarchive decodes members it skips, and a way to stop it (`tick` returns `false`).
struct Ticking<S> {
    inner: S,
    tick: Box<dyn FnMut() -> bool>,
}

impl<S: Read> Read for Ticking<S> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if !(self.tick)() {
            return Err(io::Error::other(
                "stopped: nobody reads this member any more",
            ));
        }
        self.inner.read(out)
    }
}

impl<S: Seek> Seek for Ticking<S> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.inner.seek(to)
    }
}

/// Whether `head` (the first bytes of a blob) starts a RAR archive.
pub fn is_rar(head: &[u8]) -> bool {
    head.starts_with(SIGNATURE_V4) || head.starts_with(SIGNATURE_V5)
}

/// Names as stored, lossily made UTF-8 (the binding's default refuses other bytes, which would
/// fail the whole archive for one name).
fn decode_name(bytes: &[u8]) -> compress_tools::Result<String> {
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

/// What a libarchive failure means for the caller: the fetch error behind it if a read of
/// the blob failed, a clear refusal for encryption, else the library's message.
fn failure(e: compress_tools::Error, failed: &Mutex<Option<ArchiveError>>) -> ArchiveError {
    if let Some(fe) = failed.lock().ok().and_then(|mut s| s.take()) {
        return fe;
    }
    let msg = e.to_string();
    let lower = msg.to_ascii_lowercase();
    if lower.contains("solid archive support unavailable") {
        return ArchiveError::Unsupported(
            "a solid RAR 4 archive: libarchive decodes RAR 4 only when each member is \
             compressed on its own (RAR 5 solid archives are decoded)"
                .into(),
        );
    }
    if lower.contains("encrypt") || lower.contains("passphrase") || lower.contains("password") {
        return malformed(format!(
            "the archive has encrypted members; medimg has no password to give it ({msg})"
        ));
    }
    malformed(msg)
}

/// What medimg reads of one file header itself (see the module notes): the framing only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    /// Declared size once decoded.
    size: u64,
    /// The content's CRC-32, when the header has one (RAR 5 may keep a BLAKE2 hash instead).
    crc: Option<u32>,
    /// Stored without compression.
    stored: bool,
    /// A folder.
    dir: bool,
}

/// The walk's verdict on a whole archive.
#[derive(Debug, Default)]
struct Headers {
    /// Every file header, in order (libarchive's entries).
    files: Vec<Header>,
    /// Headers or a member's data are encrypted.
    encrypted: bool,
    /// A volume of a multi-volume archive, or a member split across volumes.
    volume: bool,
}

/// The most headers walked (a bound on a hostile chain).
const MAX_HEADERS: usize = 10_000_000;

/// Walk the block headers of the RAR over `r` (`size` bytes): each block's header is read,
/// its data sought over. Malformed framing is an error (libarchive reads the same bytes and
/// would fail too).
fn headers(r: &dyn ReadAt, size: u64) -> Result<Headers, ArchiveError> {
    let head = r.read_at(0, (SIGNATURE_V5.len() as u64).min(size))?;
    let at = |off: u64, len: u64| r.read_at(off, len.min(size.saturating_sub(off)));
    let short = || malformed("a block header runs past the end of the archive (truncated)");
    let mut out = Headers::default();
    if head.starts_with(SIGNATURE_V5) {
        let mut pos = SIGNATURE_V5.len() as u64;
        while pos < size && out.files.len() < MAX_HEADERS {
            let h = at(pos, 4 + 10)?;
            let mut i = 4;
            let hsize = vint(&h, &mut i).ok_or_else(short)?;
            let start = pos + i as u64;
            let end = start
                .checked_add(hsize)
                .filter(|&e| e <= size && hsize <= 2 << 20)
                .ok_or_else(short)?;
            let h = at(start, hsize)?;
            let mut i = 0;
            let next = |i: &mut usize| vint(&h, i).ok_or_else(short);
            let kind = next(&mut i)?;
            let flags = next(&mut i)?;
            let extra = if flags & 1 != 0 { next(&mut i)? } else { 0 };
            let data = if flags & 2 != 0 { next(&mut i)? } else { 0 };
            if flags & 0x18 != 0 {
                out.volume = true;
            }
            match kind {
                // The main header: archive flags, 0x1 a volume.
                1 => out.volume |= next(&mut i)? & 1 != 0,
                2 => {
                    let fflags = next(&mut i)?;
                    let unp = next(&mut i)?;
                    let _attributes = next(&mut i)?;
                    if fflags & 2 != 0 {
                        i += 4;
                    }
                    let crc = if fflags & 4 != 0 {
                        let b = h.get(i..i + 4).ok_or_else(short)?;
                        i += 4;
                        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    } else {
                        None
                    };
                    let info = next(&mut i)?;
                    // Records of the extra area: size (of what follows), type, data; type 1
                    // is encryption.
                    let ex = usize::try_from(extra).unwrap_or(usize::MAX);
                    if ex > 0 && ex <= h.len() {
                        let area = &h[h.len() - ex..];
                        let mut j = 0;
                        while let Some(len) = vint(area, &mut j) {
                            let mut t = j;
                            if vint(area, &mut t) == Some(1) {
                                out.encrypted = true;
                            }
                            j = j.saturating_add(usize::try_from(len).unwrap_or(usize::MAX));
                        }
                    }
                    out.files.push(Header {
                        size: unp,
                        crc,
                        stored: (info >> 7) & 7 == 0,
                        dir: fflags & 1 != 0,
                    });
                }
                4 => {
                    out.encrypted = true;
                    return Ok(out);
                }
                5 => return Ok(out),
                _ => {}
            }
            pos = end.checked_add(data).ok_or_else(short)?;
        }
        Ok(out)
    } else if head.starts_with(SIGNATURE_V4) {
        let mut pos = SIGNATURE_V4.len() as u64;
        while pos < size && out.files.len() < MAX_HEADERS {
            let h = at(pos, 40)?;
            if h.len() < 7 {
                return Err(short());
            }
            let u16_at = |i: usize| u16::from_le_bytes([h[i], h[i + 1]]);
            let u32_at = |i: usize| {
                h.get(i..i + 4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .ok_or_else(short)
            };
            let (kind, flags, hsize) = (h[2], u16_at(3), u64::from(u16_at(5)));
            if hsize < 7 {
                return Err(malformed(format!("a block header of {hsize} bytes")));
            }
            let mut add = 0u64;
            match kind {
                0x73 => {
                    if flags & 0x80 != 0 {
                        out.encrypted = true;
                        return Ok(out);
                    }
                    if flags & 0x01 != 0 {
                        out.volume = true;
                    }
                }
                0x74 | 0x7a => {
                    add = u64::from(u32_at(7)?);
                    let mut unp = u64::from(u32_at(11)?);
                    if flags & 0x100 != 0 {
                        add |= u64::from(u32_at(32)?) << 32;
                        unp |= u64::from(u32_at(36)?) << 32;
                    }
                    if kind == 0x74 {
                        if flags & 0x04 != 0 {
                            out.encrypted = true;
                        }
                        if flags & 0x03 != 0 {
                            out.volume = true;
                        }
                        out.files.push(Header {
                            size: unp,
                            crc: Some(u32_at(16)?),
                            stored: h.get(25) == Some(&0x30),
                            dir: flags & 0xe0 == 0xe0,
                        });
                    }
                }
                0x7b => return Ok(out),
                _ if flags & 0x8000 != 0 => add = u64::from(u32_at(7)?),
                _ => {}
            }
            pos = pos
                .checked_add(hsize)
                .and_then(|p| p.checked_add(add))
                .ok_or_else(short)?;
        }
        Ok(out)
    } else {
        Err(malformed("no RAR signature at the start"))
    }
}

/// RAR 5's variable-length integer at `b[*i..]` (7 bits a byte, high bit: more follow).
fn vint(b: &[u8], i: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*i)?;
        *i += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Walk the archive over `r` (`size` bytes) through libarchive: `wanted(entry)` says whether
/// a member's bytes are decoded (others are skipped), `each` gets every event. A panic in the
/// binding is caught and becomes an error.
fn walk<R: ReadAt>(
    r: R,
    size: u64,
    wanted: impl Fn(u32) -> bool + 'static,
    tick: Box<dyn FnMut() -> bool>,
    each: &mut dyn FnMut(u32, ArchiveContents) -> Result<bool, ArchiveError>,
) -> Result<(), ArchiveError> {
    if size < SIGNATURE_V4.len() as u64 {
        return Err(malformed(format!(
            "{size} bytes is too short for a RAR archive"
        )));
    }
    let head = r.read_at(0, SIGNATURE_V5.len().min(size as usize) as u64)?;
    if !is_rar(&head) {
        return Err(malformed("no RAR signature at the start"));
    }
    let hdrs = headers(&r, size)?;
    if hdrs.encrypted {
        return Err(malformed(
            "the archive has encrypted members; medimg has no password to give it",
        ));
    }
    if hdrs.volume {
        return Err(ArchiveError::Unsupported(
            "a volume of a multi-volume RAR (each volume is a file of its own upstream)".into(),
        ));
    }
    let failed = Arc::new(Mutex::new(None));
    let source = Ticking {
        // Small reads: libarchive asks 16 KiB at a time and seeks over what it skips, so a
        // larger buffer would only fetch blocks of members it is about to seek over.
        inner: BufReader::with_capacity(
            64 << 10,
            BlobCursor::new(
                Recording {
                    inner: r,
                    failed: failed.clone(),
                },
                size,
            ),
        ),
        tick,
    };
    let counter = Rc::new(Cell::new(0u32));
    let seen = counter.clone();
    let result = catch_unwind(AssertUnwindSafe(|| {
        let iter = ArchiveIteratorBuilder::new(source)
            .decoder(decode_name)
            .mtree_format(false)
            .filter(move |_, _| {
                let i = seen.get();
                seen.set(i.saturating_add(1));
                wanted(i)
            })
            .build();
        let iter = match iter {
            Ok(i) => i,
            Err(e) => return Err(failure(e, &failed)),
        };
        // The member being decoded: its header and the CRC-32 of its bytes so far.
        let mut current: Option<(Header, crc32fast::Hasher)> = None;
        for content in iter {
            // The entry the event belongs to: the last header the filter saw.
            let entry = counter.get().saturating_sub(1);
            if let ArchiveContents::Err(e) = content {
                return Err(failure(e, &failed));
            }
            match &content {
                ArchiveContents::Err(_) => {}
                ArchiveContents::StartOfEntry(name, stat) => {
                    let h = *hdrs.files.get(entry as usize).ok_or_else(|| {
                        malformed(format!(
                            "libarchive found entry {entry} ({name:?}) where the headers \
                             hold {}",
                            hdrs.files.len()
                        ))
                    })?;
                    // Links and the like: no content of their own to check.
                    if stat.st_mode & S_IFMT != S_IFREG {
                        current = None;
                    } else if u64::try_from(stat.st_size).ok() != Some(h.size) {
                        return Err(malformed(format!(
                            "{name:?}: libarchive says {} bytes, its header {}",
                            stat.st_size, h.size
                        )));
                    } else if h.crc.is_none() && h.stored && h.size > 0 {
                        return Err(ArchiveError::Unsupported(format!(
                            "{name:?} is stored with a BLAKE2 hash and no CRC-32, which \
                             neither libarchive nor medimg checks"
                        )));
                    } else {
                        current = Some((h, crc32fast::Hasher::new()));
                    }
                }
                ArchiveContents::DataChunk(bytes) => {
                    if let Some((_, crc)) = current.as_mut() {
                        crc.update(bytes);
                    }
                }
                ArchiveContents::EndOfEntry => {
                    // libarchive checks a compressed member's CRC, not a stored one's:
                    // every member with a CRC-32 is checked here, before the next one.
                    if let Some((h, crc)) = current.take()
                        && let Some(want) = h.crc
                        && crc.finalize() != want
                    {
                        return Err(malformed(format!(
                            "entry {entry} fails its CRC (damaged data)"
                        )));
                    }
                }
            }
            if !each(entry, content)? {
                return Ok(());
            }
        }
        // The iterator ends quietly on a failure it already reported; a read failure that
        // libarchive took for the end is still a failure.
        if let Some(fe) = failed.lock().ok().and_then(|mut s| s.take()) {
            return Err(fe);
        }
        // libarchive saw every file header the walk found: no member goes missing unseen.
        if counter.get() as usize != hdrs.files.len() {
            return Err(malformed(format!(
                "libarchive ended after {} entries where the headers hold {}",
                counter.get(),
                hdrs.files.len()
            )));
        }
        Ok(())
    }));
    result.unwrap_or_else(|_| Err(malformed("libarchive's binding gave up (a panic)")))
}

/// The members of the RAR over `r` (`size` bytes), decoding each once to check it (see the
/// module notes), and the names of entries skipped.
pub fn list<R: ReadAt>(r: R, size: u64) -> Result<(Vec<RarEntry>, Vec<String>), ArchiveError> {
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    // The member being decoded: its entry and declared size, and what it held so far.
    let mut current: Option<(RarEntry, u64)> = None;
    let mut total = 0u64;
    walk(r, size, |_| true, Box::new(|| true), &mut |entry, c| {
        match c {
            ArchiveContents::StartOfEntry(name, stat) => {
                let kind = stat.st_mode & S_IFMT;
                if kind != S_IFDIR && kind != S_IFREG {
                    skipped.push(format!("{name} (not a regular file)"));
                    current = None;
                    return Ok(true);
                }
                let declared = u64::try_from(stat.st_size)
                    .map_err(|_| malformed(format!("{name:?} declares a negative size")))?;
                let (path, dir_mark) = normalize_member_path(&name)?;
                let is_dir = kind == S_IFDIR || dir_mark;
                let m = RarEntry {
                    path,
                    is_dir,
                    size: if is_dir { 0 } else { declared },
                    entry,
                    mtime: stat.st_mtime,
                };
                current = Some((m, 0));
            }
            ArchiveContents::DataChunk(bytes) => {
                let n = bytes.len() as u64;
                total = total.saturating_add(n);
                if total > BOMB_FLOOR && total / size.max(1) > BOMB_RATIO {
                    return Err(ArchiveError::Hostile {
                        name: "(the whole archive)".into(),
                        reason: format!(
                            "it decodes to more than {total} bytes from {size} (a \
                             decompression bomb?)"
                        ),
                    });
                }
                if let Some((m, held)) = current.as_mut() {
                    *held += n;
                    if *held > m.size {
                        return Err(malformed(format!(
                            "{:?} holds more than the {} bytes its header declares",
                            m.path.join("/"),
                            m.size
                        )));
                    }
                }
            }
            ArchiveContents::EndOfEntry => {
                if let Some((m, held)) = current.take() {
                    if held != m.size {
                        return Err(malformed(format!(
                            "{:?} holds {held} bytes, its header declares {} (truncated?)",
                            m.path.join("/"),
                            m.size
                        )));
                    }
                    out.push(m);
                }
            }
            ArchiveContents::Err(_) => {}
        }
        Ok(true)
    })?;
    Ok((out, skipped))
}

/// Decode the archive over `r` (`size` bytes) from member `entry` on: `each(entry, offset in
/// it, bytes)` gets the bytes of `entry` and of every member after it, in order, and returns
/// `false` to stop. The members before it are skipped (sought over, or decoded and dropped in
/// a solid archive), with `tick` called before each read of the archive's bytes (it returns
/// `false` to stop). Each member's check is passed before any byte of the next one is handed
/// over; a member with no bytes gets no call.
pub fn decode_from<R: ReadAt>(
    r: R,
    size: u64,
    entry: u32,
    tick: Box<dyn FnMut() -> bool>,
    each: &mut dyn FnMut(u32, u64, &[u8]) -> bool,
) -> Result<(), ArchiveError> {
    let mut at = (entry, 0u64);
    walk(r, size, move |i| i >= entry, tick, &mut |i, c| {
        Ok(match c {
            ArchiveContents::StartOfEntry(..) => {
                at = (i, 0);
                true
            }
            ArchiveContents::DataChunk(bytes) => {
                if bytes.is_empty() {
                    return Ok(true);
                }
                let go = each(at.0, at.1, &bytes);
                at.1 += bytes.len() as u64;
                go
            }
            ArchiveContents::EndOfEntry | ArchiveContents::Err(_) => true,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// libarchive's own test archives (see tests/fixtures/README.md), made by RAR.
    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/rar/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    struct Owned(Vec<u8>);
    impl ReadAt for Owned {
        fn read_at(&self, offset: u64, len: u64) -> Result<Vec<u8>, ArchiveError> {
            self.0[..].read_at(offset, len)
        }
    }

    fn all(bytes: &[u8]) -> Result<(Vec<RarEntry>, Vec<String>), ArchiveError> {
        list(Owned(bytes.to_vec()), bytes.len() as u64)
    }

    fn member(bytes: &[u8], entry: u32) -> Result<Vec<u8>, ArchiveError> {
        let mut out = Vec::new();
        decode_from(
            Owned(bytes.to_vec()),
            bytes.len() as u64,
            entry,
            Box::new(|| true),
            &mut |i, off, b| {
                if i != entry {
                    return false;
                }
                assert_eq!(off, out.len() as u64);
                out.extend_from_slice(b);
                true
            },
        )?;
        Ok(out)
    }

    /// The real fixtures libarchive 3.6 decodes: RAR 4 (one with folders), RAR 5 (solid,
    /// stored).
    const READABLE: [&str; 6] = [
        "rar4.rar",
        "rar4_normal.rar",
        "rar3_subdirs.rar",
        "rar5_multiple_files.rar",
        "rar5_multiple_files_solid.rar",
        "rar5_stored.rar",
    ];

    #[test]
    fn rar4_and_rar5_members_are_listed_and_decoded() {
        for name in READABLE {
            let bytes = fixture(name);
            let (members, _) = all(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(members.iter().any(|m| !m.is_dir && m.size > 0), "{name}");
            for m in members.iter().filter(|m| !m.is_dir) {
                let got = member(&bytes, m.entry).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(got.len() as u64, m.size, "{name} {:?}", m.path);
            }
        }
    }

    #[test]
    fn a_solid_rar4_is_unsupported_not_malformed() {
        let e = all(&fixture("rar3_solid.rar")).unwrap_err();
        assert!(matches!(e, ArchiveError::Unsupported(_)), "{e}");
    }

    /// A member's path and bytes.
    type Content = (Vec<String>, Vec<u8>);

    /// Every regular member's bytes, or the first error.
    fn contents(bytes: &[u8]) -> Result<Vec<Content>, ArchiveError> {
        let (members, _) = all(bytes)?;
        let mut out = Vec::new();
        for m in members.iter().filter(|m| !m.is_dir) {
            out.push((m.path.clone(), member(bytes, m.entry)?));
        }
        Ok(out)
    }

    #[test]
    fn a_flipped_byte_is_an_error_not_other_bytes() {
        // libarchive 3.6 does not check a stored member's CRC: medimg does. Flip bytes
        // across each archive (every one of the small ones): every outcome is an error or
        // the very same content, never other bytes.
        for name in READABLE {
            let bytes = fixture(name);
            let good = contents(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            let mut failures = 0;
            for i in (8..bytes.len()).step_by((bytes.len() / 700).max(1)) {
                let mut bad = bytes.clone();
                bad[i] ^= 0x01;
                match contents(&bad) {
                    Err(_) => failures += 1,
                    Ok(got) => {
                        for (path, data) in got {
                            if let Some((_, want)) = good.iter().find(|(p, _)| *p == path) {
                                assert!(data == *want, "{name}: byte {i} flipped: {path:?}");
                            }
                        }
                    }
                }
            }
            assert!(failures > 0, "{name}");
        }
    }

    #[test]
    fn encrypted_truncated_and_foreign_archives_are_refused() {
        for name in ["rar5_encrypted.rar", "rar4_encrypted.rar"] {
            let e = all(&fixture(name)).unwrap_err().to_string();
            assert!(e.contains("encrypted"), "{name}: {e}");
        }
        let bytes = fixture("rar4_normal.rar");
        let e = all(&bytes[..bytes.len() / 2]).unwrap_err().to_string();
        assert!(e.contains("RAR"), "{e}");
        let e = all(b"PK\x03\x04 not a rar at all").unwrap_err().to_string();
        assert!(e.contains("no RAR signature"), "{e}");
    }
}
