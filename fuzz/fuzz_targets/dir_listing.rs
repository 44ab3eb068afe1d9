#![no_main]
//! Any pages as a web server's directory listing (HTML of nginx, Apache, lighttpd, Python;
//! nginx's XML and JSON; lighttpd's JSON). The first byte picks the `Content-Type` the pages
//! come with; the rest is the pages, in the order they are asked for, separated by NUL bytes.
//! Every file found lies below the listed directory by plain segments (no `..`, no `.`, no
//! empty segment, no `/` smuggled in as `%2F`), and a size is given only where a page prints
//! that number.
use libfuzzer_sys::fuzz_target;
use medimg::catalog::{Locator, Source};
use medimg::resolve;
use medimg::source::ApiReply;
use medimg::source::mock::Scripted;

const ROOT: &str = "https://files.example.org/d/";

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let content_type = [
        None,
        Some("application/json"),
        Some("text/xml"),
        Some("text/html"),
    ][usize::from(sel & 3)];
    let pages: Vec<&[u8]> = rest.split(|&b| b == 0).collect();
    let replies = || {
        pages
            .iter()
            .map(|body| ApiReply {
                body: body.to_vec(),
                content_type: content_type.map(str::to_string),
                next: None,
            })
            .collect()
    };
    let src = Source {
        locator: Locator::Dir { url: ROOT.into() },
        extract: false,
        files: Vec::new(),
        into: String::new(),
        mirror: None,
    };
    if let Ok(files) = resolve::list(&src, &Scripted::new(replies())) {
        for f in files {
            assert!(f.url.starts_with(ROOT), "{:?}", f.url);
            assert!(
                f.path
                    .split('/')
                    .all(|s| !s.is_empty() && s != "." && s != ".." && !s.contains('\0')),
                "{:?}",
                f.path
            );
            if let Some(n) = f.size {
                let printed = n.to_string();
                assert!(
                    pages
                        .iter()
                        .any(|p| p.windows(printed.len()).any(|w| w == printed.as_bytes())),
                    "size {n} of {:?} is printed nowhere",
                    f.path
                );
            }
        }
    }
    if let Ok(sizes) = resolve::sizes_on_page(&Scripted::new(replies()), ROOT) {
        for url in sizes.keys() {
            assert!(url.starts_with(ROOT), "{url:?}");
        }
    }
});
