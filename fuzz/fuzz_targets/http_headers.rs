#![no_main]
//! Any header values: `Content-Range` (of a 206 to any range, and of a 416), `Retry-After`,
//! `Last-Modified`, `Link`, `Location` (resolved against a request URL), and signed URLs'
//! expiry. Each gives `None`, an error, or a value that holds together: a range inside its
//! total, a date that prints back as itself, a redirect whose credential host is the host the
//! request goes to.
use libfuzzer_sys::fuzz_target;
use medimg::credentials::host_of;
use medimg::source::http;

fuzz_target!(|data: &[u8]| {
    if data.len() < 16 {
        return;
    }
    let (nums, rest) = data.split_at(16);
    let start = u64::from_le_bytes(nums[..8].try_into().unwrap_or_default());
    let len = u64::from_le_bytes(nums[8..].try_into().unwrap_or_default()) % (1 << 40) + 1;
    let Some(end) = start.checked_add(len) else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let v = text.as_ref();
    if let Some((a, b, total)) = http::parse_content_range(v) {
        assert!(a <= b && b < total, "{v:?} gave {a}-{b}/{total}");
    }
    if let Ok(total) = http::partial_total(&(start..end), v) {
        assert!(start < total, "{v:?} for {start}..{end}: total {total}");
    }
    let _ = http::unsatisfied_total(v);
    if let Some(t) = http::parse_http_date(v) {
        let shown = httpdate::fmt_http_date(
            std::time::UNIX_EPOCH
                + std::time::Duration::from_secs(u64::try_from(t).expect("a date after 1970")),
        );
        assert_eq!(http::parse_http_date(&shown), Some(t), "{v:?} is {shown:?}");
    }
    let _ = http::retry_after(v, start);
    let _ = http::link_next(v);
    let _ = http::signed_expiry(v);
    let once = http::redact(v);
    assert_eq!(http::redact(&once), once);
    for base in ["https://api.example.org/a/b?x=1", v] {
        if let Some(to) = http::redirect_target(base, v) {
            let url = reqwest::Url::parse(&to).expect("a redirect target is a URL");
            let host = url
                .host_str()
                .map(|h| h.trim_matches(['[', ']']).to_ascii_lowercase());
            // A credential goes where host_of says; the request goes where the URL parser says.
            assert_eq!(host_of(&to), host, "{to:?}");
        }
    }
    if let Ok(url) = reqwest::Url::parse(v)
        && let Some(h) = host_of(v)
    {
        let real = url
            .host_str()
            .map(|h| h.trim_matches(['[', ']']).to_ascii_lowercase());
        assert_eq!(Some(h), real, "{v:?}");
    }
});
