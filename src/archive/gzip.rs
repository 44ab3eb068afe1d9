//! gzip streams with random access through decompression checkpoints (the zran.c idea, in pure
//! Rust on miniz_oxide's block-boundary support).
//!
//! [`GzStream`] turns compressed bytes (any [`BufRead`]) into uncompressed ones. Built with
//! [`GzStream::indexing`] it starts at a gzip header, checks every member's CRC-32 and length,
//! and records a [`Checkpoint`] at each member start and at the first deflate block boundary
//! after every `span` bytes of output: the compressed offset, the 0-7 bits of the previous byte
//! still to be used, and the 32 KiB window that back-references may reach. Built with
//! [`GzStream::resume`] from a checkpoint it decodes from there on, so reading a member deep in
//! a large `.tar.gz` inflates at most `span` bytes it does not need.
//!
//! Memory is bounded whatever the stream's size: a 128 KiB output ring, the input buffer, and
//! the checkpoints (32 KiB each, one per `span` of output).
//!
//! Concatenated gzip members (pigz, BGZF, multi-part archives joined) are one stream.

use std::io::{self, BufRead, Read};

use miniz_oxide::inflate::TINFLStatus;
use miniz_oxide::inflate::core::inflate_flags::{
    TINFL_FLAG_HAS_MORE_INPUT, TINFL_FLAG_STOP_ON_BLOCK_BOUNDARY,
};
use miniz_oxide::inflate::core::{BlockBoundaryState, DecompressorOxide, decompress};

/// Deflate's largest back-reference distance: what a checkpoint must keep of earlier output.
pub const WINDOW: usize = 32 * 1024;
/// The output ring; a power of two (miniz_oxide's wrapping mode) larger than the window.
const RING: usize = 128 * 1024;

/// A place in the stream where decoding can start.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    /// Uncompressed offset of the next output byte.
    pub out: u64,
    /// Compressed offset of the next input byte.
    pub input: u64,
    /// How many bits of the byte before `input` are still to be decoded (0-7).
    pub bits: u8,
    /// Those bits, in the low bits.
    pub bit_buf: u8,
    /// The output before `out`, up to [`WINDOW`] bytes (empty at a member start).
    pub window: Vec<u8>,
}

impl Checkpoint {
    /// Where a stream starts (a gzip member; an xz, bzip2 or zstd stream): decoding needs
    /// nothing of the output before it.
    pub fn stream_start(out: u64, input: u64) -> Checkpoint {
        Checkpoint {
            out,
            input,
            bits: 0,
            bit_buf: 0,
            window: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting a gzip member header (or the end of the input after one member).
    Header,
    /// Inside a member's deflate data.
    Deflate,
    /// Done.
    End,
}

/// Uncompressed bytes from a gzip stream; see the module notes.
pub struct GzStream<I: BufRead> {
    input: I,
    /// Compressed offset of the input's next byte.
    in_pos: u64,
    dec: Box<DecompressorOxide>,
    ring: Vec<u8>,
    ring_pos: usize,
    /// Output in the ring not yet handed to the reader: `ring[pending.0 .. pending.0 + pending.1]`.
    pending: (usize, usize),
    /// Uncompressed offset of the next byte the decoder produces.
    produced: u64,
    /// Output of the current member so far (bounded by the window for checkpoints).
    member_out: u64,
    state: State,
    members: u32,
    /// CRC of the current member, when decoding started at its beginning.
    crc: Option<crc32fast::Hasher>,
    /// Checkpoint spacing and the checkpoints so far, when indexing.
    span: u64,
    checkpoints: Option<Vec<Checkpoint>>,
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl<I: BufRead> GzStream<I> {
    /// Decode a whole gzip stream whose first byte `input` yields, checking CRCs, and record a
    /// checkpoint every `span` bytes of output.
    pub fn indexing(input: I, span: u64) -> GzStream<I> {
        GzStream {
            input,
            in_pos: 0,
            dec: Box::default(),
            ring: vec![0; RING],
            ring_pos: 0,
            pending: (0, 0),
            produced: 0,
            member_out: 0,
            state: State::Header,
            members: 0,
            crc: None,
            span: span.max(1),
            checkpoints: Some(Vec::new()),
        }
    }

    /// Decode from `cp`; `input` must yield the compressed bytes from `cp.input` on.
    pub fn resume(input: I, cp: &Checkpoint) -> GzStream<I> {
        let mut ring = vec![0; RING];
        let w = cp.window.len().min(WINDOW);
        ring[..w].copy_from_slice(&cp.window[cp.window.len() - w..]);
        let st = BlockBoundaryState {
            num_bits: cp.bits,
            bit_buf: cp.bit_buf,
            ..BlockBoundaryState::default()
        };
        GzStream {
            input,
            in_pos: cp.input,
            dec: Box::new(DecompressorOxide::from_block_boundary_state(&st)),
            ring,
            ring_pos: w,
            pending: (0, 0),
            produced: cp.out,
            member_out: w as u64,
            state: State::Deflate,
            // Members end at a header; a later member start is found as usual.
            members: 1,
            crc: None,
            span: u64::MAX,
            checkpoints: None,
        }
    }

    /// The checkpoints recorded so far (indexing only).
    pub fn into_checkpoints(self) -> Vec<Checkpoint> {
        self.checkpoints.unwrap_or_default()
    }

    /// Compressed offset of the next input byte the decoder will consume.
    pub fn input_position(&self) -> u64 {
        self.in_pos
    }

    /// Uncompressed offset of the next byte [`Read::read`] returns.
    pub fn position(&self) -> u64 {
        self.produced - self.pending.1 as u64
    }

    /// Decode and drop output until [`GzStream::position`] is `target`.
    pub fn skip_to(&mut self, target: u64) -> io::Result<()> {
        let mut scratch = vec![0u8; 64 * 1024];
        while self.position() < target {
            let want = ((target - self.position()) as usize).min(scratch.len());
            if self.read(&mut scratch[..want])? == 0 {
                return Err(bad(format!("gzip stream ends before offset {target}")));
            }
        }
        Ok(())
    }

    fn read_exact_input(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.input.read_exact(buf)?;
        self.in_pos += buf.len() as u64;
        Ok(())
    }

    /// Parse a member header; returns false at a clean end of input after a member.
    fn header(&mut self) -> io::Result<bool> {
        if self.input.fill_buf()?.is_empty() {
            if self.members == 0 {
                return Err(bad("empty input: not a gzip stream".into()));
            }
            return Ok(false);
        }
        let mut h = [0u8; 10];
        self.read_exact_input(&mut h)
            .map_err(|_| bad("truncated gzip header".into()))?;
        if h[0] != 0x1f || h[1] != 0x8b {
            if self.members > 0 && h.iter().all(|&b| b == 0) {
                // Zero padding after the last member (some tape-style tools write it).
                let mut rest = Vec::new();
                self.input.read_to_end(&mut rest)?;
                if rest.iter().all(|&b| b == 0) {
                    return Ok(false);
                }
            }
            return Err(bad(format!(
                "no gzip header at compressed offset {}",
                self.in_pos - 10
            )));
        }
        if h[2] != 8 {
            return Err(bad(format!(
                "gzip compression method {} is not deflate",
                h[2]
            )));
        }
        let flags = h[3];
        if flags & 0x04 != 0 {
            let mut xlen = [0u8; 2];
            self.read_exact_input(&mut xlen)?;
            let mut extra = vec![0u8; u16::from_le_bytes(xlen) as usize];
            self.read_exact_input(&mut extra)?;
        }
        for bit in [0x08, 0x10] {
            if flags & bit != 0 {
                // A NUL-terminated name or comment.
                let mut b = [0u8; 1];
                loop {
                    self.read_exact_input(&mut b)?;
                    if b[0] == 0 {
                        break;
                    }
                }
            }
        }
        if flags & 0x02 != 0 {
            let mut crc16 = [0u8; 2];
            self.read_exact_input(&mut crc16)?;
        }
        self.members += 1;
        *self.dec = DecompressorOxide::new();
        self.member_out = 0;
        self.crc = Some(crc32fast::Hasher::new());
        if let Some(cps) = &mut self.checkpoints {
            cps.push(Checkpoint::stream_start(self.produced, self.in_pos));
        }
        Ok(true)
    }

    fn trailer(&mut self) -> io::Result<()> {
        let mut t = [0u8; 8];
        self.read_exact_input(&mut t)
            .map_err(|_| bad("gzip member ends without its CRC trailer (truncated)".into()))?;
        if let Some(h) = self.crc.take() {
            let want_crc = u32::from_le_bytes([t[0], t[1], t[2], t[3]]);
            let want_len = u32::from_le_bytes([t[4], t[5], t[6], t[7]]);
            let got = h.finalize();
            if got != want_crc || self.member_out as u32 != want_len {
                return Err(bad(format!(
                    "gzip member {} fails its check: CRC-32 {got:08x}, expected {want_crc:08x}",
                    self.members
                )));
            }
        }
        Ok(())
    }

    fn window(&self) -> Vec<u8> {
        let w = (self.member_out as usize).min(WINDOW);
        let start = (self.ring_pos + RING - w) % RING;
        if start + w <= RING {
            self.ring[start..start + w].to_vec()
        } else {
            let mut v = self.ring[start..].to_vec();
            v.extend_from_slice(&self.ring[..w - (RING - start)]);
            v
        }
    }

    /// Run the decoder until it produces output or the stream ends.
    fn step(&mut self) -> io::Result<()> {
        loop {
            match self.state {
                State::End => return Ok(()),
                State::Header => {
                    if self.header()? {
                        self.state = State::Deflate;
                    } else {
                        self.state = State::End;
                    }
                }
                State::Deflate => {
                    if self.ring_pos == RING {
                        self.ring_pos = 0;
                    }
                    let avail = self.input.fill_buf()?;
                    let eof = avail.is_empty();
                    let flags = TINFL_FLAG_STOP_ON_BLOCK_BOUNDARY
                        | if eof { 0 } else { TINFL_FLAG_HAS_MORE_INPUT };
                    let (status, used, written) =
                        decompress(&mut self.dec, avail, &mut self.ring, self.ring_pos, flags);
                    self.input.consume(used);
                    self.in_pos += used as u64;
                    let out = &self.ring[self.ring_pos..self.ring_pos + written];
                    if let Some(h) = &mut self.crc {
                        h.update(out);
                    }
                    self.pending = (self.ring_pos, written);
                    self.ring_pos += written;
                    self.produced += written as u64;
                    self.member_out += written as u64;
                    match status {
                        TINFLStatus::Done => {
                            self.trailer()?;
                            self.state = State::Header;
                        }
                        TINFLStatus::BlockBoundary => {
                            let due = self
                                .checkpoints
                                .as_ref()
                                .and_then(|c| c.last())
                                .is_some_and(|last| self.produced - last.out >= self.span);
                            if due {
                                let st = self
                                    .dec
                                    .block_boundary_state()
                                    .ok_or_else(|| bad("decoder not at a block boundary".into()))?;
                                let cp = Checkpoint {
                                    out: self.produced,
                                    input: self.in_pos,
                                    bits: st.num_bits,
                                    bit_buf: st.bit_buf,
                                    window: self.window(),
                                };
                                if let Some(c) = &mut self.checkpoints {
                                    c.push(cp);
                                }
                            }
                        }
                        TINFLStatus::NeedsMoreInput | TINFLStatus::HasMoreOutput => {
                            if eof && written == 0 && used == 0 {
                                return Err(bad("gzip stream is truncated".into()));
                            }
                        }
                        s => {
                            return Err(bad(format!(
                                "deflate data is damaged near compressed offset {} ({s:?})",
                                self.in_pos
                            )));
                        }
                    }
                    if written > 0 {
                        return Ok(());
                    }
                }
            }
        }
    }
}

impl<I: BufRead> std::fmt::Debug for GzStream<I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GzStream")
            .field("in_pos", &self.in_pos)
            .field("position", &self.position())
            .finish_non_exhaustive()
    }
}

impl<I: BufRead> Read for GzStream<I> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pending.1 == 0 {
            self.step()?;
        }
        let n = buf.len().min(self.pending.1);
        let (start, len) = self.pending;
        buf[..n].copy_from_slice(&self.ring[start..start + n]);
        self.pending = (start + n, len - n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn sample(n: usize) -> Vec<u8> {
        // Compressible but not trivially: words with a slowly changing counter.
        let mut v = Vec::with_capacity(n);
        let mut i = 0u64;
        while v.len() < n {
            v.extend_from_slice(format!("pixel {} value {} ", i % 977, (i * 31) % 1009).as_bytes());
            i += 1;
        }
        v.truncate(n);
        v
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn index(z: &[u8], span: u64) -> (Vec<u8>, Vec<Checkpoint>) {
        let mut s = GzStream::indexing(io::BufReader::with_capacity(4096, z), span);
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        (out, s.into_checkpoints())
    }

    #[test]
    fn indexing_decodes_and_checkpoints_resume_anywhere() {
        let data = sample(3 << 20);
        let z = gz(&data);
        let (out, cps) = index(&z, 256 << 10);
        assert_eq!(out, data);
        assert!(
            cps.len() >= 8,
            "{} checkpoints for 3 MiB at 256 KiB spans",
            cps.len()
        );
        assert!(
            cps.windows(2)
                .all(|w| w[0].out < w[1].out && w[0].input < w[1].input)
        );
        for cp in &cps {
            let mut s = GzStream::resume(io::BufReader::new(&z[cp.input as usize..]), cp);
            let mut got = vec![0u8; 10_000.min(data.len() - cp.out as usize)];
            s.read_exact(&mut got).unwrap();
            assert_eq!(
                got,
                data[cp.out as usize..cp.out as usize + got.len()],
                "at {}",
                cp.out
            );
        }
        // Skip from a checkpoint to an arbitrary offset.
        let cp = &cps[3];
        let mut s = GzStream::resume(io::BufReader::new(&z[cp.input as usize..]), cp);
        s.skip_to(cp.out + 12_345).unwrap();
        let mut got = [0u8; 100];
        s.read_exact(&mut got).unwrap();
        assert_eq!(got[..], data[cp.out as usize + 12_345..][..100]);
    }

    #[test]
    fn concatenated_members_are_one_stream_with_a_checkpoint_each() {
        let (a, b) = (sample(100_000), sample(50_000));
        let mut z = gz(&a);
        z.extend(gz(&b));
        let (out, cps) = index(&z, u64::MAX);
        assert_eq!(out, [a.clone(), b].concat());
        assert_eq!(
            cps.iter().map(|c| c.out).collect::<Vec<_>>(),
            [0, a.len() as u64]
        );
    }

    #[test]
    fn damage_and_truncation_are_errors_not_data() {
        let data = sample(200_000);
        let z = gz(&data);
        let mut damaged = z.clone();
        let n = damaged.len();
        damaged[n - 6] ^= 1; // inside the CRC trailer
        let mut s = GzStream::indexing(&damaged[..], 1 << 20);
        let e = s.read_to_end(&mut Vec::new()).unwrap_err().to_string();
        assert!(e.contains("fails its check"), "{e}");
        let cut = &z[..z.len() / 2];
        let mut s = GzStream::indexing(cut, 1 << 20);
        assert!(s.read_to_end(&mut Vec::new()).is_err());
        let mut s = GzStream::indexing(&b"PK\x03\x04 not gzip"[..], 1 << 20);
        assert!(
            s.read_to_end(&mut Vec::new())
                .unwrap_err()
                .to_string()
                .contains("no gzip header")
        );
    }
}
