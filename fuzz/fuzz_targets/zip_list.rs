#![no_main]
//! Any bytes as a ZIP archive: an error or members inside the blob, never a panic.
use libfuzzer_sys::fuzz_target;
use medimg::archive::zip;

fuzz_target!(|data: &[u8]| {
    if let Ok(entries) = zip::list(data, data.len() as u64) {
        for e in entries {
            assert!(e.header_offset + 30 + e.compressed_size <= data.len() as u64);
            assert!(e.path.iter().all(|c| c != ".."));
        }
    }
});
