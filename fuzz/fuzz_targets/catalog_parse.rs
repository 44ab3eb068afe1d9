#![no_main]
//! Any text as a catalog: an error with a message, or a catalog whose entries keep what
//! validation promises (unique slugs, plain `into` and file names) and whose renderings
//! (README, `catalog.csv`, `about/<id>.md`) are made without a panic, the CSV one row per
//! dataset of eleven fields that read back as written.
use libfuzzer_sys::fuzz_target;
use medimg::catalog::Catalog;
use medimg::credentials::Credentials;
use medimg::render;

/// The records of RFC 4180 text (quoted fields may hold commas, quotes and newlines).
fn csv_records(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let (mut row, mut field) = (Vec::new(), String::new());
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(
        !quoted && field.is_empty() && row.is_empty(),
        "CSV ends mid-record"
    );
    rows
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let c = match Catalog::parse(text, "fuzz") {
        Ok(c) => c,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    let mut ids = std::collections::HashSet::new();
    for d in &c.datasets {
        assert!(ids.insert(d.id.as_str()), "duplicate id {:?}", d.id);
        assert!(
            !d.id.is_empty()
                && d.id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        );
        for s in &d.sources {
            assert!(!s.into.starts_with('/'));
            assert!(s.into.split('/').all(|seg| seg != ".." && seg != "."));
            if let Some(name) = s.file_name() {
                assert!(!name.is_empty() && !name.contains('/') && name != "..");
            }
            let _ = s.type_name();
        }
        let _ = d.fingerprint();
        let st = render::state(d, &Credentials::none(), None, false);
        let _ = render::about(d, &st);
        let _ = render::status(d);
    }
    let _ = render::readme(&c);
    let csv = render::catalog_csv(&c, &|i| (i % 2 == 0).then(|| "g,\"x\"".to_string()));
    let rows = csv_records(&csv);
    assert_eq!(rows.len(), 1 + c.datasets.len());
    for (row, d) in rows[1..].iter().zip(&c.datasets) {
        assert_eq!(row.len(), 11, "{row:?}");
        assert_eq!(row[0], d.id);
        assert_eq!(row[1], d.title);
    }
});
