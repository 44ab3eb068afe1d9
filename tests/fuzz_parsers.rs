//! Deterministic mutation fuzzing of the archive parsers on stable Rust (the cargo-fuzz targets
//! in `fuzz/` explore further with coverage guidance). Every mutant of a valid archive must
//! give an error or entries that lie inside the blob, never a panic or an escaping path.

use std::io::{Read, Write};

use medimg::archive::{gzip, tar, zip};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*: a fixed seed makes every run test the same mutants.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut v = base.to_vec();
    match rng.below(4) {
        0 => {
            for _ in 0..1 + rng.below(8) {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
        }
        1 => v.truncate(rng.below(v.len())),
        2 => {
            // Overwrite a 2- or 4-byte field with an extreme value.
            let i = rng.below(v.len().saturating_sub(4).max(1));
            let val: [u8; 4] = [
                0xFF,
                0xFF,
                0xFF,
                if rng.below(2) == 0 { 0xFF } else { 0x7F },
            ];
            let n = (2 + 2 * rng.below(2)).min(v.len() - i);
            v[i..i + n].copy_from_slice(&val[..n]);
        }
        _ => {
            let i = rng.below(v.len());
            let extra: Vec<u8> = (0..rng.below(64)).map(|_| rng.next() as u8).collect();
            v.splice(i..i, extra);
        }
    }
    v
}

fn sample_zip() -> Vec<u8> {
    let mut w = ::zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (i, m) in [
        ::zip::CompressionMethod::Stored,
        ::zip::CompressionMethod::Deflated,
    ]
    .iter()
    .cycle()
    .take(6)
    .enumerate()
    {
        let opts = ::zip::write::SimpleFileOptions::default().compression_method(*m);
        w.start_file(format!("d{}/f{i}.png", i % 2), opts).unwrap();
        w.write_all(&vec![i as u8; 300 + i * 50]).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn sample_tar_gz() -> (Vec<u8>, Vec<u8>) {
    let mut b = ::tar::Builder::new(Vec::new());
    for i in 0..5 {
        let data = vec![b'a' + i as u8; 700 * (i + 1)];
        let mut h = ::tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append_data(&mut h, format!("x/{i}.dcm"), &data[..])
            .unwrap();
    }
    let t = b.into_inner().unwrap();
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(&t).unwrap();
    (t, e.finish().unwrap())
}

#[test]
fn mutated_zips_never_panic_or_point_outside_the_blob() {
    let base = sample_zip();
    let mut rng = Rng(0x9E3779B97F4A7C15);
    for _ in 0..20_000 {
        let m = mutate(&mut rng, &base);
        if let Ok(entries) = zip::list(&m[..], m.len() as u64) {
            for e in entries {
                assert!(e.header_offset + 30 + e.compressed_size <= m.len() as u64);
                assert!(
                    e.path
                        .iter()
                        .all(|c| c != ".." && !c.is_empty() && !c.contains('/'))
                );
            }
        }
    }
}

#[test]
fn mutated_tar_and_gzip_streams_never_panic() {
    let (t, gz) = sample_tar_gz();
    let mut rng = Rng(0xD1B54A32D192ED03);
    for _ in 0..5_000 {
        let m = mutate(&mut rng, &t);
        if let Ok((entries, _)) = tar::list(&m[..]) {
            for e in entries {
                assert!(e.data_offset + e.size <= m.len() as u64 || e.is_dir);
                assert!(e.path.iter().all(|c| c != ".."));
            }
        }
        let m = mutate(&mut rng, &gz);
        let mut s = gzip::GzStream::indexing(&m[..], 1024);
        let mut out = Vec::new();
        // A mutant either decodes (to some bytes) or fails its checks; it never panics.
        if s.read_to_end(&mut out).is_ok() {
            assert!(out.len() <= 64 << 20);
        }
    }
}
