#![no_main]
//! Any bytes as a bzip2, xz or zstd stream (the first byte picks the codec), decoded with
//! checkpoints at stream starts; resuming from each checkpoint must give the same bytes as the
//! first pass, and output stays under the bomb limit.
use std::io::Read;

use libfuzzer_sys::fuzz_target;
use medimg::archive::compressed::{Codec, Unpack};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, data)) = data.split_first() else {
        return;
    };
    let codec = [Codec::Bzip2, Codec::Xz, Codec::Zstd][pick as usize % 3];
    let mut s = Unpack::indexing(codec, data, 4096).with_bomb_limit(16 << 20, 1032);
    let mut out = Vec::new();
    if s.read_to_end(&mut out).is_err() {
        return;
    }
    for cp in s.into_checkpoints() {
        let mut r = Unpack::resume(codec, &data[cp.input as usize..], &cp);
        let mut again = Vec::new();
        if r.read_to_end(&mut again).is_ok() {
            assert_eq!(again, out[cp.out as usize..]);
        }
    }
});
