//! Swoole's static handler (`enable_static_handler`, `document_root`,
//! `static_handler_locations`): a GET or HEAD for a file under the document root is answered on
//! the I/O side with the file, and PHP is not called; any other request goes on to the `request`
//! callback. A page's scripts, styles and images then cost PHP nothing.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use hyper::header::{HeaderMap, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, RANGE};

use crate::config::Config;
use crate::events::HttpResponse;
use crate::http_file::{open_to_read, FileToSend};

/// What the static handler makes of a request path.
#[derive(Debug, PartialEq)]
pub(crate) enum Found {
    /// Serve this file.
    File(PathBuf),
    /// A directory with an index file, named without its trailing slash: the browser is sent
    /// to the path with it, so that the index page's relative links resolve inside the directory.
    DirectoryWithoutSlash,
}

/// The file `uri_path` names under `document_root` when the static handler is on: a regular
/// file (for a directory, its first `http_index_files` entry that exists), reached through one
/// of `static_handler_locations` (URL path prefixes; empty: any). The path is read as the URL
/// names it: `..` (also encoded) never climbs above the root, and an encoded slash is a slash.
/// Symbolic links in the root are followed wherever they lead, as Swoole's handler and nginx
/// follow them (Laravel's `public/storage` is one): what the root links to is its owner's
/// choice. PHP scripts and hidden files are never served (see [`servable`]), by the name in
/// the URL or by the name of the file a link leads to.
pub(crate) fn find(config: &Config, uri_path: &str) -> Option<Found> {
    let root = (config.document_root.as_deref()).filter(|_| config.enable_static_handler)?;
    // Bytes, not UTF-8 text: a file may be named in the charset it was uploaded in (GBK,
    // Shift_JIS), as Linux names are bytes; the checks below read such names lossily.
    let decoded: Vec<u8> = percent_encoding::percent_decode_str(uri_path).collect();
    if decoded.contains(&0) {
        return None;
    }
    let inside = below_root(&decoded)?;
    let text = String::from_utf8_lossy(&inside);
    if !servable(&text) {
        return None;
    }
    let locations = &config.static_handler_locations;
    if !locations.is_empty() && !locations.iter().any(|l| under(&format!("/{text}"), l)) {
        return None;
    }
    let path = root.join(OsStr::from_bytes(&inside));
    if path.is_dir() {
        let index = config.http_index_files.iter().map(|name| path.join(name));
        let index = index
            .filter(|file| {
                (file.strip_prefix(root).ok()).is_some_and(|f| servable(&f.to_string_lossy()))
            })
            .find(|file| leads_to_servable(root, file))?;
        return Some(if uri_path.ends_with('/') {
            Found::File(index)
        } else {
            Found::DirectoryWithoutSlash
        });
    }
    // `/index.html/` names a directory, which a file is not (nginx: 404).
    let as_directory = decoded.ends_with(b"/") || decoded.ends_with(b"/.");
    (!as_directory && leads_to_servable(root, &path)).then_some(Found::File(path))
}

/// The path below the root that a decoded URL path names (empty: the root itself), its `..`
/// taken away with what they undo; None when one would climb above the root.
fn below_root(decoded: &[u8]) -> Option<Vec<u8>> {
    let mut parts = Vec::new();
    for part in decoded.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                parts.pop()?;
            }
            part => parts.push(part),
        }
    }
    Some(parts.join(&b'/'))
}

/// Whether `path` is a regular file (through its links) that may be served as it is where it
/// leads: a link named `notes.txt` to `index.php` or `.env` is refused as they are, and one to
/// a hidden directory of the root (`git -> .git`) as it is. Outside the root, where a link
/// leads is its owner's choice (the root's own path may hold hidden directories): the file's
/// name is checked alone.
fn leads_to_servable(root: &Path, path: &Path) -> bool {
    std::fs::canonicalize(path).is_ok_and(|target| {
        let name = match target.strip_prefix(root) {
            Ok(inside) => Some(inside.as_os_str()),
            Err(_) => target.file_name(),
        };
        target.is_file() && name.is_some_and(|name| servable(&name.to_string_lossy()))
    })
}

/// Whether a file at `inside` (its path below the root, or its name) may be sent as it is: not
/// PHP source (a Laravel `public/` holds `index.php`: its source must not leak, its URL is the
/// request callback's), nor an editor's or a deploy's copy of it (`index.php~`,
/// `config.php.bak`, `x.php5`, `x.inc`), and nothing hidden (`.env`, `.git/`, `.htaccess`) but
/// what is under `.well-known/` (RFC 8615: ACME challenges, `security.txt`, app links).
/// Those go to the `request` callback, as in Swoole, whose static handler serves only known
/// file types.
fn servable(inside: &str) -> bool {
    let name = inside
        .rsplit('/')
        .next()
        .unwrap_or(inside)
        .to_ascii_lowercase();
    let hidden = (inside.split('/')).any(|part| part.starts_with('.') && part != ".well-known");
    // `.php`, `.php5`, `.phps`, `.phtml`, `.phar`, and what copies make of them: `.php-bak`,
    // `.php_old`, `.php (copy)`, `.php~`; `.inc` but not `.include`.
    let php = |part: &str| {
        ["php", "pht", "phar"].iter().any(|p| part.starts_with(p))
            || part
                .strip_prefix("inc")
                .is_some_and(|rest| !rest.starts_with(|c: char| c.is_ascii_alphabetic()))
    };
    // Any dotted part of the name, not only the last: `index.php.bak`.
    let source = name.split('.').skip(1).any(php);
    let backup = name.ends_with('~')
        || [".bak", ".orig", ".swp", ".save", ".old"]
            .iter()
            .any(|end| name.ends_with(end));
    !hidden && !source && !backup
}

/// Whether `path` is `location` or below it (`/assets` holds `/assets/a.js`, not `/assets2`).
fn under(path: &str, location: &str) -> bool {
    let location = location.trim_end_matches('/');
    path.strip_prefix(location)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// What to answer for a file found, given the request's headers: 304 when the client's copy is
/// the file's version (`If-None-Match` names its `ETag`, or without that header,
/// `If-Modified-Since` is as new as the file); 206 and the part when one byte range is asked
/// (`Range`, of the version the client has if `If-Range` says which, by date or `ETag`), 416
/// when it lies past the end; else 200 and the whole file. None if the file cannot be opened
/// after all.
pub(crate) fn answer(path: &Path, asked: &HeaderMap) -> Option<(HttpResponse, Option<FileToSend>)> {
    let opened = match open_to_read(path) {
        Ok(file) => file,
        // Out of file descriptors (a flood of slow downloads): say so, rather than hand the
        // file's URL to the request callback.
        Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
            log::debug!(target: "surge", "cannot open {}: {e}: answered 503", path.display());
            let mut busy = HttpResponse::text(503, "too many open files, try again\n");
            busy.headers.push(("retry-after".into(), "1".into()));
            return Some((busy, None));
        }
        Err(_) => return None,
    };
    let file = FileToSend::from_file(opened, path, 0, 0).ok()?;
    let size = file.length();
    let modified = file.modified().and_then(http_time);
    let last_modified = modified.map(httpdate::fmt_http_date);
    let etag = modified.map(|m| entity_tag(m, size));
    let mut headers = vec![
        ("content-type".to_string(), file.content_type().to_string()),
        ("accept-ranges".to_string(), "bytes".to_string()),
    ];
    if let (Some(date), Some(tag)) = (&last_modified, &etag) {
        headers.push(("last-modified".into(), date.clone()));
        headers.push(("etag".into(), tag.clone()));
    }
    let header = |name| asked.get(name).and_then(|v| v.to_str().ok());
    let head = |status, headers| HttpResponse {
        status,
        reason: None,
        headers,
        body: Default::default(),
    };
    // RFC 9110 13.2.2: If-None-Match, when sent, decides alone.
    let client_has = match header(IF_NONE_MATCH) {
        Some(tags) => etag.as_deref().is_some_and(|tag| names_tag(tags, tag)),
        None => {
            let since = header(IF_MODIFIED_SINCE).and_then(|d| httpdate::parse_http_date(d).ok());
            matches!((modified, since), (Some(m), Some(c)) if m <= c)
        }
    };
    if client_has {
        return Some((head(304, headers), None));
    }
    // If-Range compares strongly: a date as sent with Last-Modified, or the ETag itself.
    let same_version = header(IF_RANGE)
        .is_none_or(|v| Some(v) == last_modified.as_deref() || Some(v) == etag.as_deref());
    let range = header(RANGE).filter(|_| same_version);
    match range.and_then(|r| byte_range(r, size)) {
        None => Some((head(200, headers), Some(file))),
        Some(Some((offset, length))) => {
            let last = offset + length - 1;
            headers.push((
                "content-range".into(),
                format!("bytes {offset}-{last}/{size}"),
            ));
            Some((head(206, headers), Some(file.part(offset, length)?)))
        }
        Some(None) => {
            headers.push(("content-range".into(), format!("bytes */{size}")));
            Some((head(416, headers), None))
        }
    }
}

/// The one byte range (offset, length) a `Range` header asks of a `size`-byte file; Some(None)
/// when it starts past the end (416). None, to send the whole file as RFC 9110 allows, for no
/// range, several ranges, or one that is not valid (a last byte before the first).
fn byte_range(header: &str, size: u64) -> Option<Option<(u64, u64)>> {
    let (unit, spec) = header.trim().split_once('=')?;
    if !unit.eq_ignore_ascii_case("bytes") {
        return None;
    }
    let (first, last) = spec.trim().split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // The last `n` bytes.
        let n = position(last)?;
        return Some((n > 0 && size > 0).then(|| (size - n.min(size), n.min(size))));
    }
    let first = position(first)?;
    let last = match last {
        "" => u64::MAX,
        n => position(n)?,
    };
    if last < first {
        return None;
    }
    if first >= size {
        return Some(None);
    }
    let last = last.min(size - 1);
    Some(Some((first, last - first + 1)))
}

/// A byte position as RFC 9110 writes it: digits only; past what u64 holds, the largest.
fn position(digits: &str) -> Option<u64> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(digits.parse().unwrap_or(u64::MAX))
}

/// A file's version as an `ETag`: its modification second and its size, as web servers commonly
/// make it (a file rewritten within one second to the same size keeps its tag, as it keeps its
/// `Last-Modified`).
fn entity_tag(modified: SystemTime, size: u64) -> String {
    let secs = modified
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    format!("\"{secs:x}-{size:x}\"")
}

/// Whether an `If-None-Match` value names `tag`: `*`, or a list of tags compared weakly (a `W/`
/// prefix does not matter).
fn names_tag(list: &str, tag: &str) -> bool {
    list.trim() == "*"
        || list
            .split(',')
            .any(|t| t.trim().trim_start_matches("W/") == tag)
}

/// HTTP dates have whole seconds: a file changed within the second the client saw must not look
/// newer than it.
/// A file's modification time as HTTP dates carry it, in whole seconds; None for one HTTP
/// cannot write (the year 10000 or later: from an archive, or a wrong clock), which then goes
/// without Last-Modified and ETag.
fn http_time(time: SystemTime) -> Option<SystemTime> {
    let since = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    (since.as_secs() <= crate::cookie::LAST_HTTP_DATE as u64)
        .then(|| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(since.as_secs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A static handler over `root`, with these locations and index files.
    fn site(root: &Path, locations: &[&str], index_files: &[&str]) -> Config {
        Config {
            enable_static_handler: true,
            document_root: Some(root.to_owned()),
            static_handler_locations: locations.iter().map(|l| l.to_string()).collect(),
            http_index_files: index_files.iter().map(|f| f.to_string()).collect(),
            ..Config::default()
        }
    }

    fn file(path: PathBuf) -> Option<Found> {
        Some(Found::File(path))
    }

    #[test]
    fn finds_files_inside_the_root_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("public");
        std::fs::create_dir_all(root.join("assets/img")).unwrap();
        std::fs::create_dir_all(root.join("docs")).unwrap();
        std::fs::write(root.join("assets/app.js"), "js").unwrap();
        std::fs::write(root.join("assets/img/a b.png"), "png").unwrap();
        std::fs::write(root.join("index.html"), "html").unwrap();
        std::fs::write(root.join("docs/index.htm"), "htm").unwrap();
        std::fs::write(dir.path().join("secret.txt"), "secret").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret.txt"), root.join("link.txt")).unwrap();
        std::os::unix::fs::symlink(
            dir.path().join("secret.txt"),
            root.join("assets/index.html"),
        )
        .unwrap();
        let root = std::fs::canonicalize(&root).unwrap();
        let all = site(&root, &[], &[]);
        let found = |config: &Config, path: &str| find(config, path);
        assert_eq!(
            found(&all, "/assets/app.js"),
            file(root.join("assets/app.js"))
        );
        assert_eq!(
            found(&all, "/assets/img/a%20b.png"),
            file(root.join("assets/img/a b.png"))
        );
        assert_eq!(
            found(&all, "/assets/../index.html"),
            file(root.join("index.html"))
        );
        // A link the root holds is followed (Laravel's public/storage); `..` never climbs out.
        assert_eq!(found(&all, "/link.txt"), file(root.join("link.txt")));
        for outside in [
            "/../secret.txt",
            "/assets/..%2f..%2fsecret.txt",
            "/assets/%2e%2e/%2E%2E/secret.txt",
            "//etc/passwd",
        ] {
            assert_eq!(found(&all, outside), None, "{outside}");
        }
        // A file named by a URL of a directory is not served (nginx: 404).
        for nothing in [
            "/",
            "/assets",
            "/missing.js",
            "/index.html%00.js",
            "/%ff",
            "/index.html/",
            "/index.html/.",
        ] {
            assert_eq!(found(&all, nothing), None, "{nothing}");
        }
        // A name that is not UTF-8 (an upload kept under its GBK name) is served as named.
        let gbk = root.join(OsStr::from_bytes(b"caf\xe9.html"));
        std::fs::write(&gbk, "gbk").unwrap();
        assert_eq!(found(&all, "/caf%E9.html"), file(gbk));
        let off = Config {
            enable_static_handler: false,
            ..all.clone()
        };
        assert_eq!(found(&off, "/assets/app.js"), None);

        let assets = site(&root, &["/assets/"], &[]);
        assert_eq!(
            found(&assets, "/assets/app.js"),
            file(root.join("assets/app.js"))
        );
        assert_eq!(found(&assets, "/index.html"), None);
        assert_eq!(found(&assets, "/assets/../index.html"), None);

        let indexed = site(&root, &[], &["index.html", "index.htm"]);
        assert_eq!(found(&indexed, "/"), file(root.join("index.html")));
        assert_eq!(found(&indexed, "/docs/"), file(root.join("docs/index.htm")));
        assert_eq!(found(&indexed, "/docs"), Some(Found::DirectoryWithoutSlash));
        assert_eq!(
            found(&indexed, "/assets/"),
            file(root.join("assets/index.html")),
            "an index file that links out"
        );

        // A link to a hidden directory of the root is as hidden as it.
        std::fs::create_dir_all(root.join(".git")).unwrap();
        std::fs::write(root.join(".git/config"), "x").unwrap();
        std::os::unix::fs::symlink(root.join(".git"), root.join("git")).unwrap();
        assert_eq!(found(&all, "/git/config"), None);

        // Locations are URL paths, whatever a link in them leads to.
        std::os::unix::fs::symlink(root.join("assets"), root.join("built")).unwrap();
        let built = site(&root, &["/built"], &[]);
        assert_eq!(
            found(&built, "/built/app.js"),
            file(root.join("built/app.js"))
        );
        assert_eq!(found(&built, "/assets/app.js"), None);
    }

    #[test]
    fn well_known_is_the_one_hidden_directory_served() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir_all(root.join(".well-known/acme-challenge")).unwrap();
        std::fs::write(root.join(".well-known/acme-challenge/token"), "t").unwrap();
        std::fs::write(root.join(".well-known/.htpasswd"), "x").unwrap();
        let all = site(&root, &[], &[]);
        assert_eq!(
            find(&all, "/.well-known/acme-challenge/token"),
            file(root.join(".well-known/acme-challenge/token"))
        );
        assert_eq!(find(&all, "/.well-known/.htpasswd"), None);
    }

    #[test]
    fn php_source_its_copies_and_hidden_files_are_never_sent() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir_all(root.join(".git")).unwrap();
        std::fs::create_dir_all(root.join("admin")).unwrap();
        for name in [
            "index.php",
            "old.PHP",
            "tool.phar",
            "page.phtml",
            ".env",
            ".git/config",
            "admin/index.php",
            "robots.txt",
            "index.php~",
            "config.php.bak",
            "db.php5",
            "lib.inc",
            "source.phps",
            "old.pht",
            "notes.txt~",
            "style.css.orig",
            "photo.jpg",
            "archive.php.tar.gz",
            "config.php-bak",
            "wp-config.php_old",
            "index.php (copy)",
            "index.phpx",
            "menu.include.js",
        ] {
            std::fs::write(root.join(name), "x").unwrap();
        }
        std::os::unix::fs::symlink(root.join("index.php"), root.join("index.txt")).unwrap();
        let all = site(&root, &[], &[]);
        for refused in [
            "/index.php",
            "/old.PHP",
            "/tool.phar",
            "/page.phtml",
            "/.env",
            "/.git/config",
            "/index.txt",
            "/index.php~",
            "/config.php.bak",
            "/db.php5",
            "/lib.inc",
            "/source.phps",
            "/old.pht",
            "/notes.txt~",
            "/style.css.orig",
            "/archive.php.tar.gz",
            "/config.php-bak",
            "/wp-config.php_old",
            "/index.php%20(copy)",
            "/index.phpx",
        ] {
            assert_eq!(find(&all, refused), None, "{refused}");
        }
        assert_eq!(find(&all, "/robots.txt"), file(root.join("robots.txt")));
        assert_eq!(find(&all, "/photo.jpg"), file(root.join("photo.jpg")));
        assert_eq!(
            find(&all, "/menu.include.js"),
            file(root.join("menu.include.js"))
        );
        let indexed = site(&root, &[], &["index.php"]);
        assert_eq!(find(&indexed, "/admin/"), None, "a PHP index file");
    }

    /// The request headers of a test.
    fn asked(headers: &[(&'static str, &str)]) -> HeaderMap {
        (headers.iter())
            .map(|(name, value)| (name.parse().unwrap(), value.parse().unwrap()))
            .collect()
    }

    #[test]
    fn a_file_the_client_has_is_not_sent_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("style.css");
        std::fs::write(&path, "p {}").unwrap();
        let (head, file) = answer(&path, &asked(&[])).unwrap();
        assert_eq!((head.status, file.is_some()), (200, true));
        assert_eq!(head.headers[0], ("content-type".into(), "text/css".into()));
        let (name, modified) = &head.headers[2];
        assert_eq!(name, "last-modified");
        let (head, file) = answer(&path, &asked(&[("if-modified-since", modified)])).unwrap();
        assert_eq!((head.status, file.is_none()), (304, true));
        for older in ["Mon, 01 Jan 2001 00:00:00 GMT", "not a date"] {
            let (head, _) = answer(&path, &asked(&[("if-modified-since", older)])).unwrap();
            assert_eq!(head.status, 200);
        }
        let (name, tag) = &head.headers[3];
        assert_eq!(name, "etag");
        let weak = format!("W/{tag}");
        for has in [tag.as_str(), &format!("\"other\", {weak}"), "*"] {
            let (head, file) = answer(&path, &asked(&[("if-none-match", has)])).unwrap();
            assert_eq!((head.status, file.is_none()), (304, true), "{has}");
        }
        // A tag that does not match decides, whatever the date says.
        let stale = [
            ("if-none-match", "\"other\""),
            ("if-modified-since", modified),
        ];
        assert_eq!(answer(&path, &asked(&stale)).unwrap().0.status, 200);
        let by_tag = [("range", "bytes=0-0"), ("if-range", tag.as_str())];
        assert_eq!(answer(&path, &asked(&by_tag)).unwrap().0.status, 206);
        let other = [("range", "bytes=0-0"), ("if-range", "\"other\"")];
        assert_eq!(answer(&path, &asked(&other)).unwrap().0.status, 200);
    }

    #[test]
    fn a_file_dated_after_the_year_9999_goes_without_its_date() {
        let last = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(253_402_300_799);
        let later = last + std::time::Duration::from_millis(1500);
        assert_eq!(
            http_time(last + std::time::Duration::from_millis(300)),
            Some(last)
        );
        assert_eq!(http_time(later), None);
        assert_eq!(
            http_time(SystemTime::UNIX_EPOCH - std::time::Duration::from_secs(5)),
            Some(SystemTime::UNIX_EPOCH)
        );
    }

    #[test]
    fn one_byte_range_is_sent_as_a_part() {
        assert_eq!(byte_range("bytes=2-5", 10), Some(Some((2, 4))));
        assert_eq!(byte_range("bytes=2-", 10), Some(Some((2, 8))));
        assert_eq!(byte_range("bytes=8-100", 10), Some(Some((8, 2))));
        assert_eq!(byte_range("bytes=-3", 10), Some(Some((7, 3))));
        assert_eq!(byte_range("bytes=-30", 10), Some(Some((0, 10))));
        assert_eq!(byte_range("bytes=10-", 10), Some(None));
        assert_eq!(byte_range("bytes=-0", 10), Some(None));
        assert_eq!(byte_range("bytes=0-", 0), Some(None));
        assert_eq!(byte_range("Bytes=0-1", 10), Some(Some((0, 2))));
        assert_eq!(
            byte_range("bytes=8-5000000000000000000000", 10),
            Some(Some((8, 2)))
        );
        for whole in [
            "bytes=5-2",
            "bytes=10-5",
            "bytes=0-1,4-5",
            "items=0-1",
            "bytes=a-b",
            "bytes=-",
            "bytes=+1-2",
            "bytes=1-+2",
        ] {
            assert_eq!(byte_range(whole, 10), None, "{whole}");
        }

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clip.mp4");
        std::fs::write(&path, "0123456789").unwrap();
        let (head, file) = answer(&path, &asked(&[("range", "bytes=2-5")])).unwrap();
        assert_eq!((head.status, file.unwrap().length()), (206, 4));
        assert!(head
            .headers
            .contains(&("content-range".into(), "bytes 2-5/10".into())));
        let (head, file) = answer(&path, &asked(&[("range", "bytes=10-")])).unwrap();
        assert_eq!((head.status, file.is_none()), (416, true));
        assert!(head
            .headers
            .contains(&("content-range".into(), "bytes */10".into())));
        let changed = [
            ("range", "bytes=2-5"),
            ("if-range", "Mon, 01 Jan 2001 00:00:00 GMT"),
        ];
        let (head, file) = answer(&path, &asked(&changed)).unwrap();
        assert_eq!((head.status, file.unwrap().length()), (200, 10));
    }
}
