#![no_main]
//! Any bytes as a gzip stream, decoded with checkpoints; resuming from each checkpoint must
//! give the same bytes as the first pass.
use std::io::Read;

use libfuzzer_sys::fuzz_target;
use medimg::archive::gzip::GzStream;

fuzz_target!(|data: &[u8]| {
    let mut s = GzStream::indexing(data, 4096);
    let mut out = Vec::new();
    if s.read_to_end(&mut out).is_err() || out.len() > 16 << 20 {
        return;
    }
    for cp in s.into_checkpoints() {
        let mut r = GzStream::resume(&data[cp.input as usize..], &cp);
        let mut again = Vec::new();
        if r.read_to_end(&mut again).is_ok() {
            assert_eq!(again, out[cp.out as usize..]);
        }
    }
});
