#![no_main]
//! Any bytes as a RAR archive: medimg's header walk, then libarchive listing and checking
//! every member, paths inside the dataset, and each listed member decoded again to its
//! listed size (an error or bytes, never a panic or a crash in libarchive).
use libfuzzer_sys::fuzz_target;
use medimg::archive::rar;

fuzz_target!(|data: &[u8]| {
    let Ok((members, _)) = rar::list(data, data.len() as u64) else {
        return;
    };
    for m in members.iter().filter(|m| !m.is_dir) {
        assert!(m.path.iter().all(|c| c != ".." && !c.contains('/')));
        let mut got = 0u64;
        let r = rar::decode_from(
            data,
            data.len() as u64,
            m.entry,
            Box::new(|| true),
            &mut |i, _, b| {
                if i != m.entry {
                    return false;
                }
                got += b.len() as u64;
                true
            },
        );
        assert!(r.is_ok() && got == m.size);
    }
});
