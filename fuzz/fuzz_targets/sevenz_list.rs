#![no_main]
//! Any bytes as a 7z archive: its header parsed and checked, its members listed with paths
//! inside the dataset, and each small member decoded (an error or bytes, never a panic).
use libfuzzer_sys::fuzz_target;
use medimg::archive::sevenz;

fuzz_target!(|data: &[u8]| {
    let Ok(archive) = sevenz::open(data, data.len() as u64) else {
        return;
    };
    let Ok((members, _)) = sevenz::list(&archive) else {
        return;
    };
    for m in members {
        assert!(m.path.iter().all(|c| c != ".." && !c.contains('/')));
        if m.size > 0 && m.size <= 1 << 20 {
            let mut got = 0u64;
            let _ = sevenz::decode_member(
                &archive,
                &mut std::io::Cursor::new(data),
                m.file,
                &mut |b| {
                    got += b.len() as u64;
                    got <= 16 << 20
                },
            );
        }
    }
});
