//! Plain HTTP directory listings (nginx `autoindex`, Apache, lighttpd, `python -m
//! http.server`): the links of an index page, read recursively. Only links that stay below the
//! listed directory count (no parent, no sort links like `?C=N;O=D`, no other hosts).
//!
//! Sizes are taken from a page only where it prints them in exact bytes: nginx's HTML (its
//! default `autoindex_exact_size on`; PhysioNet's `/files/` pages are nginx's), its JSON and
//! XML formats, lighttpd's `data-value` cells and `?json`. A rounded size (`97K`, `1.2 MB`)
//! is never taken as exact: such a file, like one from a page with no sizes, is sized when a
//! user first asks for it (see [`crate::sizes`]). Pages are tokenized by `html5gum` (entities
//! decoded as browsers do) and `quick-xml`, never searched as strings.

use std::collections::{HashMap, HashSet};

use super::{Api, RemoteFile, ResolveError};

/// Directories nest at most this deep: deeper is an error (a server's symbolic link to a
/// directory above itself makes a tree with no bottom, `a/loop/loop/...`).
pub const MAX_DEPTH: usize = 32;
/// Directory pages one listing may read (one request each): a tree of two million files in
/// folders of twenty. A server whose pages keep linking to new directories is stopped here.
pub const MAX_DIRS: usize = 100_000;
/// A listing larger than this is refused rather than crawled for hours.
const MAX_FILES: usize = 2_000_000;

/// The files below directory `url` (ending in `/`).
pub fn list(api: &Api<'_>, url: &str) -> Result<Vec<RemoteFile>, ResolveError> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    walk(api, url, url, &mut Vec::new(), &mut out, &mut seen)?;
    Ok(out)
}

/// The entries of one page, relative to its directory.
type Entries = Vec<(String, Option<u64>)>;

fn walk(
    api: &Api<'_>,
    root: &str,
    dir: &str,
    above: &mut Vec<Entries>,
    out: &mut Vec<RemoteFile>,
    seen: &mut HashSet<String>,
) -> Result<(), ResolveError> {
    let endless = |message: String| ResolveError::Endless {
        url: dir.to_string(),
        message,
    };
    if above.len() > MAX_DEPTH {
        return Err(endless(format!(
            "directories nest deeper than {MAX_DEPTH} below {root} (medimg's bound; a link to \
             a directory above itself?)"
        )));
    }
    // A directory linked twice (from one page) is read once.
    if !seen.insert(dir.to_string()) {
        return Ok(());
    }
    if seen.len() > MAX_DIRS {
        return Err(endless(format!(
            "more than {MAX_DIRS} directories below {root} (medimg's bound)"
        )));
    }
    let entries = page(api, dir)?;
    // A directory listed exactly as one above it is a link back to it (`d/loop -> .`): its
    // tree would be listed again at every level down to MAX_DEPTH, and with two such links
    // 2^MAX_DEPTH pages would be asked for.
    let here: Entries = entries
        .iter()
        .map(|(t, size)| (t[dir.len()..].to_string(), *size))
        .collect();
    if above.contains(&here) {
        tracing::warn!("{dir} lists what a directory above it lists (a link loop?); skipped");
        return Ok(());
    }
    above.push(here);
    for (t, size) in entries {
        if t.ends_with('/') {
            walk(api, root, &t, above, out, seen)?;
        } else {
            let path = crate::catalog::percent_decode(&t[root.len()..]);
            out.push(RemoteFile {
                path,
                url: t,
                size,
                checksum: None,
                etag: None,
            });
            if out.len() > MAX_FILES {
                return Err(ResolveError::Shape {
                    url: root.to_string(),
                    message: format!("more than {MAX_FILES} files; list a subdirectory instead"),
                });
            }
        }
    }
    above.pop();
    Ok(())
}

/// The exact sizes the listing page of directory `dir` (ending in `/`) prints, by file URL.
/// Files whose size it rounds or omits are not in the map.
pub fn sizes_on_page(api: &Api<'_>, dir: &str) -> Result<HashMap<String, u64>, ResolveError> {
    Ok(page(api, dir)?
        .into_iter()
        .filter_map(|(url, size)| Some((url, size?)))
        .collect())
}

/// The entries of the listing page of `dir` directly below it: absolute URLs (a directory's
/// ending in `/`) and exact sizes where printed.
fn page(api: &Api<'_>, dir: &str) -> Result<Vec<(String, Option<u64>)>, ResolveError> {
    let reply = api.get(dir)?;
    let base = reqwest::Url::parse(dir).map_err(|e| ResolveError::Shape {
        url: dir.to_string(),
        message: format!("not a URL ({e})"),
    })?;
    let entries = entries(&reply.body, reply.content_type.as_deref()).map_err(|message| {
        ResolveError::Shape {
            url: dir.to_string(),
            message,
        }
    })?;
    let mut out = Vec::new();
    for Listed { href, size } in entries {
        let Ok(target) = base.join(&href) else {
            continue;
        };
        let mut t = target.to_string();
        if let Some(i) = t.find(['?', '#']) {
            if t[i..].len() > 1 {
                continue; // sort links and anchors
            }
            t.truncate(i);
        }
        let Some(rel) = t.strip_prefix(dir).filter(|r| !r.is_empty()) else {
            continue; // the parent, or another place
        };
        let name = rel.strip_suffix('/').unwrap_or(rel);
        if name.contains('/') {
            continue; // a link deeper down is listed by its own directory (or `a//`)
        }
        // Each entry is one path segment once decoded: `%2F` would smuggle in another level,
        // `%00` a name no file can have.
        let decoded = crate::catalog::percent_decode(name);
        if decoded.is_empty() || decoded == "." || decoded == ".." || decoded.contains(['/', '\0'])
        {
            continue;
        }
        out.push((t, size));
    }
    Ok(out)
}

/// One link of a listing page, and its size where the page prints it in exact bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Listed {
    /// Link target, relative to the page (a directory's ends in `/`).
    href: String,
    /// Exact size in bytes; `None` for directories and where the page rounds or omits it.
    size: Option<u64>,
}

/// The entries of one listing page, in whichever of the formats above it is.
fn entries(body: &[u8], content_type: Option<&str>) -> Result<Vec<Listed>, String> {
    let ct = content_type.unwrap_or("").to_ascii_lowercase();
    let head = body.trim_ascii_start();
    if ct.contains("json") || head.starts_with(b"[") {
        json_entries(body)
    } else if ct.contains("xml") || head.starts_with(b"<?xml") || head.starts_with(b"<list>") {
        xml_entries(body)
    } else {
        Ok(html_entries(body))
    }
}

/// nginx `autoindex_format json` (`"type": "file" | "directory"`) and lighttpd's `?json`
/// (`"dir"`): sizes are exact.
fn json_entries(body: &[u8]) -> Result<Vec<Listed>, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not a JSON listing ({e})"))?;
    let items = v
        .as_array()
        .ok_or("a JSON listing should be an array of entries")?;
    Ok(items
        .iter()
        .filter_map(|e| {
            let name = e["name"].as_str()?;
            match e["type"].as_str()? {
                "directory" | "dir" => Some(Listed {
                    href: format!("{}/", super::encode_path(name)),
                    size: None,
                }),
                "file" => Some(Listed {
                    href: super::encode_path(name),
                    size: e["size"].as_u64(),
                }),
                _ => None,
            }
        })
        .collect())
}

/// nginx `autoindex_format xml`: `<directory>name</directory>` and
/// `<file size="N">name</file>` inside `<list>`.
fn xml_entries(body: &[u8]) -> Result<Vec<Listed>, String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(body);
    let mut out = Vec::new();
    // The element being read: whether it is a directory, and its size.
    let mut open: Option<(bool, Option<u64>)> = None;
    let mut name = String::new();
    let mut buf = Vec::new();
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| format!("not an XML listing ({e})"))?;
        match event {
            Event::Start(e) => {
                let dir = match e.name().as_ref() {
                    "directory" => true,
                    "file" => false,
                    _ => continue,
                };
                let size = e
                    .try_get_attribute("size")
                    .ok()
                    .flatten()
                    .and_then(|a| exact_bytes(&a.value));
                open = Some((dir, size));
                name.clear();
            }
            Event::Text(t) if open.is_some() => name.push_str(&t.xml10_content()),
            Event::GeneralRef(r) if open.is_some() => {
                let ch = r
                    .resolve_char_ref()
                    .map_err(|e| format!("not an XML listing ({e})"))?;
                match ch
                    .map(String::from)
                    .or_else(|| quick_xml::escape::resolve_xml_entity(&r).map(str::to_string))
                {
                    Some(text) => name.push_str(&text),
                    None => return Err(format!("unknown XML entity &{};", &*r)),
                }
            }
            Event::End(_) => {
                if let Some((dir, size)) = open.take() {
                    out.push(if dir {
                        Listed {
                            href: format!("{}/", super::encode_path(&name)),
                            size: None,
                        }
                    } else {
                        Listed {
                            href: super::encode_path(&name),
                            size,
                        }
                    });
                }
            }
            Event::Eof => return Ok(out),
            _ => {}
        }
        buf.clear();
    }
}

/// The links of an HTML listing page, with exact sizes where the server prints them:
/// - nginx `autoindex` (`autoindex_exact_size on`, its default, which PhysioNet's `/files/`
///   also serves): after each link, `dd-Mon-yyyy hh:mm` and the size in bytes on the same line;
/// - lighttpd (1.4.77 on): a `data-value` attribute on the row's size cell, `class="s"`.
///
/// Anything else (Apache's `97K`, nginx with `autoindex_exact_size off`, lighttpd's visible
/// `1.2K`, Python's `http.server`, which prints no sizes) gives names only.
fn html_entries(body: &[u8]) -> Vec<Listed> {
    use html5gum::{Token, Tokenizer};
    let mut out: Vec<Listed> = Vec::new();
    // The last link seen, until its own text ends: the text after `</a>` is nginx's size.
    let mut in_link = false;
    let mut after_link = false;
    for Ok(token) in Tokenizer::new(body) {
        match token {
            Token::StartTag(tag) => {
                after_link = false;
                match &tag.name[..] {
                    b"a" => {
                        if let Some(href) = tag.attributes.get(b"href".as_slice()) {
                            out.push(Listed {
                                href: String::from_utf8_lossy(href).into_owned(),
                                size: None,
                            });
                            in_link = true;
                        }
                    }
                    b"td" => {
                        let class = tag.attributes.get(b"class".as_slice());
                        let value = tag.attributes.get(b"data-value".as_slice());
                        if let (Some(class), Some(value), Some(last)) =
                            (class, value, out.last_mut())
                            && &class[..] == b"s"
                        {
                            last.size = std::str::from_utf8(value).ok().and_then(exact_bytes);
                        }
                    }
                    _ => {}
                }
            }
            Token::EndTag(tag) => {
                after_link = in_link && &tag.name[..] == b"a";
                in_link = false;
            }
            Token::String(text) if after_link => {
                // nginx: `<a href="x">x</a>      24-Oct-2021 17:13     3840\r\n`.
                let line = String::from_utf8_lossy(&text);
                let line = line.lines().next().unwrap_or("");
                if let (Some(last), Some(size)) = (out.last_mut(), nginx_size(line)) {
                    last.size = Some(size);
                }
                after_link = false;
            }
            _ => {}
        }
    }
    out
}

/// The size of an nginx `autoindex` line after its link: `dd-Mon-yyyy hh:mm` then digits.
/// A rounded size (`97K`, `autoindex_exact_size off`) or a directory's `-` gives `None`.
fn nginx_size(line: &str) -> Option<u64> {
    let mut words = line.split_whitespace();
    let (date, time, size) = (words.next()?, words.next()?, words.next()?);
    if words.next().is_some() {
        return None;
    }
    let date_ok = {
        let d: Vec<&str> = date.split('-').collect();
        d.len() == 3
            && d[0].len() == 2
            && d[0].bytes().all(|b| b.is_ascii_digit())
            && d[1].len() == 3
            && d[1].bytes().all(|b| b.is_ascii_alphabetic())
            && d[2].len() == 4
            && d[2].bytes().all(|b| b.is_ascii_digit())
    };
    let time_ok = time.len() == 5
        && time.as_bytes()[2] == b':'
        && time.bytes().filter(u8::is_ascii_digit).count() == 4;
    (date_ok && time_ok).then(|| exact_bytes(size))?
}

/// A size printed as plain decimal bytes; anything with a unit, a point or a sign is not.
fn exact_bytes(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(href: &str, size: Option<u64>) -> Listed {
        Listed {
            href: href.into(),
            size,
        }
    }

    #[test]
    fn a_tree_wider_than_its_bound_is_refused_after_that_many_pages() {
        let up = crate::source::mock::MockUpstream::new();
        let root = "https://h.example.org/d/";
        let mut page = String::new();
        for i in 0..=MAX_DIRS {
            page.push_str(&format!("<a href=\"s{i}/\">s{i}/</a>"));
            up.put(&format!("{root}s{i}/"), b"<html></html>".to_vec());
        }
        up.put(root, page.into_bytes());
        let e = list(&Api::new(&up), root).unwrap_err().to_string();
        assert!(
            e.contains("the listing does not end: more than 100000 directories below"),
            "{e}"
        );
        assert_eq!(up.request_count(), MAX_DIRS);
    }

    #[test]
    fn links_of_an_apache_index_have_no_exact_sizes() {
        let html = r#"<a href="?C=N;O=D">Name</a> <a href="/pub/">Parent Directory</a>
            <a href="images/">images/</a>   2021-10-24 17:13    -
            <a href='a%20b.png'>a b.png</a>  2021-10-24 17:13  97K
            <A HREF=c&amp;d.txt>c</A>  2021-10-24 17:13  512"#;
        assert_eq!(
            html_entries(html.as_bytes()),
            vec![
                listed("?C=N;O=D", None),
                listed("/pub/", None),
                listed("images/", None),
                listed("a%20b.png", None),
                listed("c&d.txt", None),
            ]
        );
    }

    #[test]
    fn nginx_autoindex_html_gives_exact_sizes_only_when_exact() {
        // As ngx_http_autoindex_module writes it: the link text cut at 50 columns, then the
        // date and the size right-aligned in 19 columns (`-` for directories).
        let html = "<html>\r\n<head><title>Index of /d/</title></head>\r\n<body>\r\n\
            <h1>Index of /d/</h1><hr><pre><a href=\"../\">../</a>\r\n\
            <a href=\"sub/\">sub/</a>                                               24-Oct-2021 17:13                   -\r\n\
            <a href=\"RECORDS.txt\">RECORDS.txt</a>                                        24-Oct-2021 17:13                3840\r\n\
            <a href=\"a%20very%20long%20name%20that%20nginx%20cuts%20at%20fifty%20columns.png\">a very long name that nginx cuts at fifty col..&gt;</a> 02-Dec-2026 09:00              102400\r\n\
            <a href=\"empty\">empty</a>                                              02-Dec-2026 09:00                   0\r\n\
            </pre><hr></body>\r\n</html>\r\n";
        assert_eq!(
            html_entries(html.as_bytes()),
            vec![
                listed("../", None),
                listed("sub/", None),
                listed("RECORDS.txt", Some(3840)),
                listed(
                    "a%20very%20long%20name%20that%20nginx%20cuts%20at%20fifty%20columns.png",
                    Some(102400)
                ),
                listed("empty", Some(0)),
            ]
        );
        // `autoindex_exact_size off` rounds: never taken as exact.
        let rounded = "<pre><a href=\"x.png\">x.png</a>   24-Oct-2021 17:13    97K\r\n\
            <a href=\"y.png\">y.png</a>   24-Oct-2021 17:13    1.2M\r\n</pre>";
        assert_eq!(
            html_entries(rounded.as_bytes()),
            vec![listed("x.png", None), listed("y.png", None)]
        );
    }

    #[test]
    fn lighttpd_rows_give_the_exact_size_of_their_data_value() {
        let html = r#"<table><tr><td class="n"><a href="../">..</a>/</td><td class="m">&nbsp;</td><td class="s">- &nbsp;</td></tr>
            <tr><td class="n"><a href="d/">d</a>/</td><td class="m">2024-Sep-14 18:43:31</td><td class="s" data-value="-1">- &nbsp;</td></tr>
            <tr><td class="n"><a href="x.png">x.png</a></td><td class="m">2024-Sep-14 18:43:31</td><td class="s" data-value="1234">1.2K</td><td class="t">image/png</td></tr></table>"#;
        assert_eq!(
            html_entries(html.as_bytes()),
            vec![
                listed("../", None),
                listed("d/", None),
                listed("x.png", Some(1234))
            ]
        );
    }

    #[test]
    fn nginx_xml_and_json_and_lighttpd_json_listings() {
        let xml = "<?xml version=\"1.0\"?>\r\n<list>\r\n\
            <directory mtime=\"2021-10-24T17:13:00Z\">sub</directory>\r\n\
            <file mtime=\"2021-10-24T17:13:00Z\" size=\"3840\">a &amp; b.png</file>\r\n\
            <other mtime=\"2021-10-24T17:13:00Z\">fifo</other>\r\n</list>\r\n";
        assert_eq!(
            entries(xml.as_bytes(), Some("text/xml")).unwrap(),
            vec![listed("sub/", None), listed("a%20%26%20b.png", Some(3840))]
        );
        let json = r#"[{ "name":"sub", "type":"directory", "mtime":"Sun, 24 Oct 2021 17:13:00 GMT" },
            { "name":"x.png", "type":"file", "mtime":"Sun, 24 Oct 2021 17:13:00 GMT", "size":3840 }]"#;
        assert_eq!(
            entries(json.as_bytes(), Some("application/json")).unwrap(),
            vec![listed("sub/", None), listed("x.png", Some(3840))]
        );
        let lighttpd = r#"[{"name":"d","type":"dir","size":4096,"mtime":1},{"name":"x","type":"file","size":7,"mtime":1}]"#;
        assert_eq!(
            entries(lighttpd.as_bytes(), None).unwrap(),
            vec![listed("d/", None), listed("x", Some(7))]
        );
        let e = entries(b"[1, 2", Some("application/json")).unwrap_err();
        assert!(e.contains("not a JSON listing"), "{e}");
    }

    /// Found by fuzzing (`host_answers`, `dir_listing`): links that join to more than one
    /// path segment, or to none, were listed as if they were one.
    #[test]
    fn every_entry_is_one_plain_segment_below_its_directory() {
        use crate::source::ApiReply;
        use crate::source::mock::Scripted;
        let page = |body: &str| ApiReply {
            body: body.as_bytes().to_vec(),
            ..ApiReply::default()
        };
        let up = Scripted::new(vec![
            // `su\/` joins to `su//`; the others decode to `/`, `..`, `.` and a NUL.
            page(
                r#"<a href="su\/">s</a> <a href="a%2Fb.png">x</a> <a href="%2E%2E%2F">x</a>
                <a href="%2e/">x</a> <a href="n%00.png">x</a> <a href="ok/">ok</a>"#,
            ),
            page(r#"<a href="x.png">x.png</a> 24-Oct-2021 17:13 12"#),
        ]);
        let files = list(&Api::new(&up), "https://h/d/").unwrap();
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["ok/x.png"]);
        assert_eq!(files[0].size, Some(12));
    }
}
