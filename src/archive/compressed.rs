//! bzip2, xz and zstd streams with random access at stream boundaries: the uncompressed bytes
//! of a `.tar.bz2`, `.tar.xz` or `.tar.zst`, and the places decoding can start again.
//!
//! [`Unpack`] drives each codec's reference library at its low-level API (bzip2 through
//! libbz2-rs-sys, xz through liblzma, zstd through libzstd), one decoder per stream, so it knows
//! the exact compressed offset where each stream (bzip2 stream, xz stream, zstd frame) ends and
//! the next one starts. Such a start is a place decoding can begin with no state from before:
//! built with [`Unpack::indexing`], it records a [`Checkpoint`] (with no window and no bits)
//! at the first stream start after every `span` bytes of output; [`Unpack::resume`] starts
//! there later.
//!
//! Cost model: archives made by parallel compressors are many streams (pbzip2 and lbzip2 write
//! one bzip2 stream per 900 kB block; `xz -T0` since xz 5.4 and pixz write independent blocks,
//! but only `pxz`/concatenation give separate streams; `zstd -T0 --rsyncable` and seekable
//! zstd write many frames), so reading a member decodes at most about `span` plus one stream
//! it does not need. An archive that is one stream (the usual `tar cJf`, `tar --zstd`) has one
//! checkpoint, at its start: reading a member decodes everything before it in the archive.
//! (Resuming inside an xz or bzip2 stream would need the codecs' internal state at a block,
//! which their libraries do not expose.)
//!
//! # Invariants
//! - Every stream is checked as the codec defines it (bzip2 block and stream CRCs, xz's
//!   check, zstd's content checksum when the frame has one); a stream cut short is an error
//!   ("truncated"), never a short read.
//! - Output is bounded: past [`BOMB_FLOOR`] bytes, output more than [`BOMB_RATIO`] times the
//!   compressed bytes read is refused as a decompression bomb (deflate, the densest codec of
//!   the formats medimg read before, cannot pass 1032:1).
//! - Memory is bounded: one output buffer, the codec's state (xz's dictionary under
//!   [`XZ_MEMLIMIT`], zstd's window under its default 128 MiB limit).
//! - Zero bytes between streams (xz stream padding, tape blocking) are skipped.

use std::io::{self, BufRead, Read};

use super::gzip::Checkpoint;

/// Output past which a high compression ratio is refused as a bomb.
pub const BOMB_FLOOR: u64 = 1 << 30;
/// The largest ratio of output to compressed input accepted past [`BOMB_FLOOR`].
pub const BOMB_RATIO: u64 = 1032;
/// Memory an xz decoder may use (`xz -9` needs 65 MiB).
pub const XZ_MEMLIMIT: u64 = 256 << 20;
/// Output staging buffer.
const BUF: usize = 128 * 1024;

/// A compression format of a compressed tar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Codec {
    /// bzip2 (`.tar.bz2`, `.tbz2`).
    Bzip2,
    /// xz (`.tar.xz`, `.txz`).
    Xz,
    /// Zstandard (`.tar.zst`, `.tzst`).
    Zstd,
}

impl Codec {
    /// The name users know it by.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Bzip2 => "bzip2",
            Codec::Xz => "xz",
            Codec::Zstd => "zstd",
        }
    }

    fn decoder(self) -> io::Result<Box<dyn Decoder>> {
        Ok(match self {
            Codec::Bzip2 => Box::new(Bz2(bzip2::Decompress::new(false))),
            Codec::Xz => Box::new(Xz(liblzma::stream::Stream::new_stream_decoder(
                XZ_MEMLIMIT,
                0,
            )
            .map_err(|e| bad(format!("xz: cannot start a decoder: {e}")))?)),
            Codec::Zstd => Box::new(Zstd(zstd::stream::raw::Decoder::new()?)),
        })
    }
}

/// One stream's decoder: `step` consumes input and produces output, and says whether the
/// stream ended (all its output handed out).
trait Decoder: Send {
    fn step(&mut self, input: &[u8], output: &mut [u8]) -> io::Result<(usize, usize, bool)>;
}

struct Bz2(bzip2::Decompress);

impl Decoder for Bz2 {
    fn step(&mut self, input: &[u8], output: &mut [u8]) -> io::Result<(usize, usize, bool)> {
        let (in0, out0) = (self.0.total_in(), self.0.total_out());
        let status = self
            .0
            .decompress(input, output)
            .map_err(|e| bad(format!("bzip2: {e}")))?;
        Ok((
            (self.0.total_in() - in0) as usize,
            (self.0.total_out() - out0) as usize,
            status == bzip2::Status::StreamEnd,
        ))
    }
}

struct Xz(liblzma::stream::Stream);

impl Decoder for Xz {
    fn step(&mut self, input: &[u8], output: &mut [u8]) -> io::Result<(usize, usize, bool)> {
        let (in0, out0) = (self.0.total_in(), self.0.total_out());
        let status = self
            .0
            .process(input, output, liblzma::stream::Action::Run)
            .map_err(|e| bad(format!("xz: {e}")))?;
        Ok((
            (self.0.total_in() - in0) as usize,
            (self.0.total_out() - out0) as usize,
            status == liblzma::stream::Status::StreamEnd,
        ))
    }
}

struct Zstd(zstd::stream::raw::Decoder<'static>);

impl Decoder for Zstd {
    fn step(&mut self, input: &[u8], output: &mut [u8]) -> io::Result<(usize, usize, bool)> {
        use zstd::stream::raw::Operation;
        let s = self
            .0
            .run_on_buffers(input, output)
            .map_err(|e| bad(format!("zstd: {e}")))?;
        // 0: the frame is decoded and all its output flushed.
        Ok((s.bytes_read, s.bytes_written, s.remaining == 0))
    }
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Uncompressed bytes of a bzip2, xz or zstd input (any [`BufRead`]); see the module notes.
pub struct Unpack<I: BufRead> {
    codec: Codec,
    input: I,
    /// Compressed offset of the input's next byte.
    in_pos: u64,
    /// Compressed offset decoding started at (for the ratio check).
    in_start: u64,
    /// Uncompressed offset decoding started at.
    out_start: u64,
    /// The current stream's decoder; `None` between streams.
    dec: Option<Box<dyn Decoder>>,
    buf: Vec<u8>,
    /// Output in `buf` not yet handed to the reader: `buf[pending.0..pending.1]`.
    pending: (usize, usize),
    /// Uncompressed offset of the next byte handed to the reader.
    pos: u64,
    /// Uncompressed offset of the next byte the decoder produces.
    produced: u64,
    streams: u64,
    span: u64,
    checkpoints: Option<Vec<Checkpoint>>,
    floor: u64,
    ratio: u64,
}

impl<I: BufRead> Unpack<I> {
    /// A decoder from the start of a compressed input, recording a checkpoint at the first
    /// stream start after every `span` bytes of output.
    pub fn indexing(codec: Codec, input: I, span: u64) -> Unpack<I> {
        let mut u = Unpack::at(codec, input, 0, 0);
        u.span = span;
        u.checkpoints = Some(Vec::new());
        u
    }

    /// A decoder from checkpoint `cp`; `input` must start at `cp.input`.
    pub fn resume(codec: Codec, input: I, cp: &Checkpoint) -> Unpack<I> {
        Unpack::at(codec, input, cp.input, cp.out)
    }

    fn at(codec: Codec, input: I, in_pos: u64, out: u64) -> Unpack<I> {
        Unpack {
            codec,
            input,
            in_pos,
            in_start: in_pos,
            out_start: out,
            dec: None,
            buf: vec![0; BUF],
            pending: (0, 0),
            pos: out,
            produced: out,
            streams: 0,
            span: 0,
            checkpoints: None,
            floor: BOMB_FLOOR,
            ratio: BOMB_RATIO,
        }
    }

    /// The same with another bomb limit (tests).
    pub fn with_bomb_limit(mut self, floor: u64, ratio: u64) -> Unpack<I> {
        self.floor = floor;
        self.ratio = ratio;
        self
    }

    /// Uncompressed offset of the next byte [`Read::read`] returns.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Discard output up to uncompressed offset `target` (no-op if already past it).
    pub fn skip_to(&mut self, target: u64) -> io::Result<()> {
        let mut sink = [0u8; 64 * 1024];
        while self.pos < target {
            let want = (target - self.pos).min(sink.len() as u64) as usize;
            let n = self.read(&mut sink[..want])?;
            if n == 0 {
                return Err(bad(format!(
                    "{}: the stream ends at byte {} of its output, before {target}",
                    self.codec.name(),
                    self.pos
                )));
            }
        }
        Ok(())
    }

    /// The checkpoints recorded (indexing only).
    pub fn into_checkpoints(self) -> Vec<Checkpoint> {
        self.checkpoints.unwrap_or_default()
    }

    /// Streams begun so far.
    pub fn streams(&self) -> u64 {
        self.streams
    }

    /// Decode more into `buf`; `false` at the end of the input after whole streams.
    fn fill(&mut self) -> io::Result<bool> {
        loop {
            if self.dec.is_none() {
                // Between streams: skip zero padding, then the end or a new stream.
                let data = self.input.fill_buf()?;
                if data.is_empty() {
                    if self.streams == 0 && self.in_pos == self.in_start {
                        return Err(bad(format!("{}: the input is empty", self.codec.name())));
                    }
                    return Ok(false);
                }
                let zeros = data.iter().take_while(|&&b| b == 0).count();
                if zeros > 0 {
                    self.input.consume(zeros);
                    self.in_pos += zeros as u64;
                    continue;
                }
                if let Some(cps) = &mut self.checkpoints {
                    let last = cps.last().map(|c| c.out);
                    if last.is_none_or(|l| self.produced >= l + self.span) {
                        cps.push(Checkpoint::stream_start(self.produced, self.in_pos));
                    }
                }
                self.dec = Some(self.codec.decoder()?);
                self.streams += 1;
            }
            let Some(dec) = self.dec.as_mut() else {
                continue;
            };
            let data = self.input.fill_buf()?;
            let at_eof = data.is_empty();
            let stepped = dec.step(data, &mut self.buf);
            let (used, made, ended) = match stepped {
                Ok(s) => s,
                Err(_) if at_eof => return Err(self.truncated()),
                Err(e) => return Err(e),
            };
            self.input.consume(used);
            self.in_pos += used as u64;
            self.produced += made as u64;
            self.pending = (0, made);
            if ended {
                self.dec = None;
            }
            let out = self.produced - self.out_start;
            let read = (self.in_pos - self.in_start).max(1);
            if out > self.floor && out / read > self.ratio {
                return Err(bad(format!(
                    "{}: {out} bytes of output from {read} compressed bytes (over {}:1 past {} \
                     MiB): a decompression bomb, refused",
                    self.codec.name(),
                    self.ratio,
                    self.floor >> 20
                )));
            }
            if made > 0 {
                return Ok(true);
            }
            if ended {
                continue;
            }
            if at_eof {
                return Err(self.truncated());
            }
            if used == 0 {
                return Err(bad(format!(
                    "{}: the decoder makes no progress at compressed byte {}",
                    self.codec.name(),
                    self.in_pos
                )));
            }
        }
    }

    fn truncated(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "{}: the input ends at compressed byte {} inside a stream (truncated)",
                self.codec.name(),
                self.in_pos
            ),
        )
    }
}

impl<I: BufRead> std::fmt::Debug for Unpack<I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unpack")
            .field("codec", &self.codec)
            .field("in_pos", &self.in_pos)
            .field("position", &self.pos)
            .finish_non_exhaustive()
    }
}

impl<I: BufRead> Read for Unpack<I> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        if self.pending.0 == self.pending.1 && !self.fill()? {
            return Ok(0);
        }
        let (a, b) = self.pending;
        let n = (b - a).min(out.len());
        out[..n].copy_from_slice(&self.buf[a..a + n]);
        self.pending.0 += n;
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn data(n: usize, seed: u32) -> Vec<u8> {
        // Compressible but not trivial: words from a small LCG.
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                b"abcdefgh \n"[(x >> 16) as usize % 10]
            })
            .collect()
    }

    fn compress(codec: Codec, raw: &[u8]) -> Vec<u8> {
        match codec {
            Codec::Bzip2 => {
                let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
                e.write_all(raw).unwrap();
                e.finish().unwrap()
            }
            Codec::Xz => {
                let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
                e.write_all(raw).unwrap();
                e.finish().unwrap()
            }
            Codec::Zstd => {
                // As the zstd tool writes them: with a content checksum.
                let mut e = zstd::stream::Encoder::new(Vec::new(), 1).unwrap();
                e.include_checksum(true).unwrap();
                e.write_all(raw).unwrap();
                e.finish().unwrap()
            }
        }
    }

    const ALL: [Codec; 3] = [Codec::Bzip2, Codec::Xz, Codec::Zstd];

    #[test]
    fn concatenated_streams_decode_and_resume_from_their_checkpoints() {
        for codec in ALL {
            let parts: Vec<Vec<u8>> = (0..5).map(|i| data(300_000, i)).collect();
            let raw = parts.concat();
            let mut packed = Vec::new();
            for p in &parts {
                packed.extend(compress(codec, p));
                // Padding between streams, as xz allows.
                packed.extend([0u8; 4]);
            }
            let mut u = Unpack::indexing(codec, &packed[..], 500_000);
            let mut out = Vec::new();
            u.read_to_end(&mut out).unwrap();
            assert_eq!(out, raw, "{codec:?}");
            assert_eq!(u.streams(), 5);
            let cps = u.into_checkpoints();
            // Streams start at 0, 300k, 600k, ...; one every 500k of output at least.
            let outs: Vec<u64> = cps.iter().map(|c| c.out).collect();
            assert_eq!(outs, vec![0, 600_000, 1_200_000], "{codec:?}");
            for cp in &cps {
                let mut r = Unpack::resume(codec, &packed[cp.input as usize..], cp);
                r.skip_to(cp.out + 12_345).unwrap();
                let mut got = vec![0u8; 100_000];
                r.read_exact(&mut got).unwrap();
                let at = cp.out as usize + 12_345;
                assert_eq!(got, raw[at..at + 100_000], "{codec:?} from {}", cp.out);
            }
        }
    }

    #[test]
    fn truncation_and_damage_are_errors_not_short_reads() {
        for codec in ALL {
            let raw = data(400_000, 7);
            let packed = compress(codec, &raw);
            for cut in [packed.len() - 1, packed.len() / 2, 10] {
                let mut u = Unpack::indexing(codec, &packed[..cut], 1 << 20);
                let e = io::copy(&mut u, &mut io::sink()).unwrap_err().to_string();
                assert!(e.contains(codec.name()), "{codec:?} cut at {cut}: {e}");
            }
            let mut damaged = packed.clone();
            let mid = damaged.len() / 2;
            damaged[mid] ^= 0x55;
            let mut u = Unpack::indexing(codec, &damaged[..], 1 << 20);
            let mut out = Vec::new();
            let r = u.read_to_end(&mut out);
            assert!(r.is_err() || out != raw, "{codec:?}: damage went unnoticed");
            // Checksummed codecs catch it.
            assert!(r.is_err(), "{codec:?}: damage not reported");
            assert!(
                Unpack::indexing(codec, &b""[..], 1)
                    .read(&mut [0; 8])
                    .is_err()
            );
        }
    }

    #[test]
    fn bombs_are_refused_past_the_floor() {
        for codec in ALL {
            let packed = compress(codec, &vec![0u8; 8 << 20]);
            let mut u = Unpack::indexing(codec, &packed[..], 1 << 20).with_bomb_limit(1 << 20, 100);
            let e = io::copy(&mut u, &mut io::sink()).unwrap_err().to_string();
            assert!(e.contains("decompression bomb"), "{codec:?}: {e}");
            // The same data under the default limit decodes.
            let mut u = Unpack::indexing(codec, &packed[..], 1 << 20);
            assert_eq!(io::copy(&mut u, &mut io::sink()).unwrap(), 8 << 20);
        }
    }
}
