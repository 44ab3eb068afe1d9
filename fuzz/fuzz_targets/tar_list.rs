#![no_main]
//! Any bytes as a tar stream: an error or members inside it, never a panic.
use libfuzzer_sys::fuzz_target;
use medimg::archive::tar;

fuzz_target!(|data: &[u8]| {
    if let Ok((entries, _)) = tar::list(data) {
        for e in entries {
            assert!(e.is_dir || e.data_offset + e.size <= data.len() as u64);
            assert!(e.path.iter().all(|c| c != ".."));
        }
    }
});
