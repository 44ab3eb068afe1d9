#![no_main]
//! Any text as a config file, a credentials file, a size, a deadline, a metrics address or a
//! mount helper's options: an error, or values inside the documented ranges.
use std::path::Path;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use medimg::config::{self, ConfigFile, Mirrors};
use medimg::credentials;
use medimg::source::limits::Limiter;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cfg) = ConfigFile::parse(text, Path::new("fuzz.toml")) {
        for m in &cfg.mirror {
            for v in [&m.from, &m.to] {
                assert!(v.starts_with("http://") || v.starts_with("https://"));
            }
        }
        for h in &cfg.host {
            assert!(!h.name.is_empty() && !h.name.contains(['/', ':', ' ']));
            let l = h.limit();
            assert!(l.concurrency >= 1);
            assert!(l.per_minute.is_none_or(|r| r.is_finite() && r > 0.0));
        }
        // Every configured budget admits its first request at once, whatever its numbers.
        let overrides = cfg
            .host
            .iter()
            .map(|h| (h.name.clone(), h.limit()))
            .collect();
        let limiter = Limiter::new(overrides);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime");
        for h in &cfg.host {
            rt.block_on(limiter.admit(&h.name));
        }
        let m = Mirrors::new(cfg.mirror.clone());
        let _ = m.rewrite("https://zenodo.org/records/1/files/a.zip");
        let _ = m.rewrite(text);
    }
    if let Ok(creds) = credentials::parse_file(text, "fuzz.toml") {
        for c in creds {
            assert!(!c.host.is_empty() && !c.host.contains(['/', ':']));
            assert_eq!(c.host, c.host.to_ascii_lowercase());
        }
    }
    let _ = credentials::netrc_entry(text, "physionet.org");
    for line in text.lines().take(8) {
        if let Ok(n) = config::parse_size(line) {
            assert!(n >= 1);
            let _ = config::human_size(n);
        }
        if let Ok(d) = config::parse_deadline(line) {
            assert!((Duration::from_secs(1)..=config::MAX_DEADLINE).contains(&d));
        }
        if let Ok(a) = config::parse_metrics_addr(line) {
            assert!(a.ip().is_loopback());
        }
    }
    let args: Vec<String> = text.split_whitespace().map(str::to_string).collect();
    if let Ok(out) = medimg::cli::helper_args(&args) {
        assert_eq!(out.first().map(String::as_str), Some("mount"));
    }
});
