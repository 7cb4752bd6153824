//! A `multipart/form-data` body split as PHP splits it for `$_POST` and `$_FILES`: text fields,
//! and uploaded files written to temporary files that are removed when the request is freed
//! (unless PHP moved them away first, as `move_uploaded_file()` does).

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
pub use tempfile::TempPath;
use tokio::io::AsyncWriteExt;

/// PHP's `UPLOAD_ERR_*` codes that Surge can give (`$_FILES[...]['error']`).
pub const UPLOAD_ERR_OK: i64 = 0;
pub const UPLOAD_ERR_NO_FILE: i64 = 4;
pub const UPLOAD_ERR_CANT_WRITE: i64 = 7;

/// The fields of a `multipart/form-data` body, in the order sent.
#[derive(Debug, Default)]
pub struct MultipartForm {
    /// Parts without a file name: `(name, value)`, both as sent (not necessarily UTF-8).
    pub fields: Vec<(Vec<u8>, Bytes)>,
    pub files: Vec<Upload>,
}

/// One part with a file name: what `$_FILES` says about it.
#[derive(Debug)]
pub struct Upload {
    /// The form field's name, brackets and all (`photos[]`).
    pub field: Vec<u8>,
    /// The client's file name without its directories, as PHP's `name`. As sent: a page in
    /// another charset than UTF-8 (GBK, Shift_JIS) sends its bytes in that one.
    pub name: Vec<u8>,
    /// The client's file name as sent (a folder upload sends `dir/file`), as PHP's `full_path`.
    pub full_path: Vec<u8>,
    /// The part's `Content-Type` as the client sent it, without parameters; empty if none or
    /// if nothing was written (as PHP).
    pub content_type: String,
    /// The temporary file holding the content; None when nothing was written (`error` says why).
    pub file: Option<TempPath>,
    pub size: u64,
    /// One of the `UPLOAD_ERR_*` codes.
    pub error: i64,
}

impl Upload {
    /// The temporary file's path, or "" (PHP's `tmp_name` when nothing was written).
    pub fn tmp_name(&self) -> &str {
        self.file
            .as_ref()
            .and_then(|path| path.to_str())
            .unwrap_or("")
    }
}

/// The boundary of a `multipart/form-data` content type; None for any other type.
pub fn boundary(content_type: &str) -> Option<String> {
    let essence = content_type.split(';').next()?.trim();
    if !essence.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    multer::parse_boundary(content_type).ok()
}

/// Splits a body, read as it arrives from `stream`, into fields and files: each file part is
/// written piece by piece to a temporary file under `tmp_dir` (never held whole in memory); file
/// parts past the first `max_files` are skipped, not written; the parts past the first
/// `max_parts` of any kind (file inputs left empty too) are left out, as PHP leaves them (its
/// `max_multipart_body_parts`): 12,000 empty file inputs in a 2 MiB form made PHP arrays that
/// went over `memory_limit` and ended the server. Err: the stream failed (its error in
/// `StreamReadFailed`) or the body is not valid multipart.
pub async fn parse<S, E>(
    stream: S,
    boundary: String,
    tmp_dir: &Path,
    max_files: usize,
    max_parts: usize,
) -> Result<MultipartForm, multer::Error>
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    let mut multipart = multer::Multipart::new(stream, boundary);
    let mut form = MultipartForm::default();
    let (mut uploads, mut skipped, mut parts) = (0, 0, 0);
    while let Some(field) = multipart.next_field().await? {
        // Read on to the end all the same: a reply before the body's end makes the client's
        // kernel reset the connection, and it may lose the reply.
        parts += 1;
        if parts > max_parts {
            continue;
        }
        let (name, file_name) = field
            .headers()
            .get(hyper::header::CONTENT_DISPOSITION)
            .map(|value| disposition(value.as_bytes()))
            .unwrap_or_default();
        // A part without a name has nowhere to go in $_POST or $_FILES: PHP skips it too.
        let Some(name) = name else {
            continue;
        };
        let Some(full_path) = file_name else {
            form.fields.push((name, field.bytes().await?));
            continue;
        };
        if uploads == max_files {
            skipped += 1;
            continue;
        }
        // As PHP, file inputs left empty do not count: the files after them are kept.
        uploads += usize::from(!full_path.is_empty());
        let upload = upload(field, name, full_path, tmp_dir).await?;
        form.files.push(upload);
    }
    if skipped > 0 {
        log::warn!("a form had more files than max_file_uploads ({max_files}): {skipped} skipped");
    }
    if parts > max_parts {
        log::warn!("a form had more than max_multipart_body_parts ({max_parts}) parts: the rest were left out");
    }
    Ok(form)
}

async fn upload(
    mut part: multer::Field<'_>,
    field: Vec<u8>,
    full_path: Vec<u8>,
    tmp_dir: &Path,
) -> Result<Upload, multer::Error> {
    let mut upload = Upload {
        field,
        name: base_name(&full_path).to_owned(),
        content_type: String::new(),
        full_path,
        file: None,
        size: 0,
        error: UPLOAD_ERR_NO_FILE,
    };
    // A file input left empty sends a part with an empty file name.
    if upload.full_path.is_empty() {
        return Ok(upload);
    }
    let mut written = match create_temporary(tmp_dir).await {
        Ok((file, path)) => {
            upload.file = Some(path);
            Ok(tokio::fs::File::from_std(file))
        }
        Err(e) => Err(e),
    };
    // Read to the part's end even when writing failed: the parts after it still count.
    while let Some(piece) = part.chunk().await? {
        upload.size += piece.len() as u64;
        if let Ok(file) = &mut written {
            if let Err(e) = file.write_all(&piece).await {
                written = Err(e);
            }
        }
    }
    if let Ok(file) = &mut written {
        if let Err(e) = file.flush().await {
            written = Err(e);
        }
    }
    match written {
        Ok(_) => {
            upload.error = UPLOAD_ERR_OK;
            upload.content_type = media_type(&part);
        }
        Err(e) => {
            log::warn!(
                "could not write the upload {:?} under {}: {e}",
                String::from_utf8_lossy(&upload.name),
                tmp_dir.display()
            );
            (upload.file, upload.size, upload.error) = (None, 0, UPLOAD_ERR_CANT_WRITE);
        }
    }
    Ok(upload)
}

/// How long an upload waits for a file descriptor while the process has none free.
const FD_WAIT: Duration = Duration::from_secs(5);

/// A new temporary file under `dir`, made on a blocking thread (the caller is a network task).
/// While the process is out of file descriptors (each upload under way holds one beside its
/// connection's), it waits for one up to [`FD_WAIT`], reading no more of the body meanwhile.
async fn create_temporary(dir: &Path) -> std::io::Result<(std::fs::File, TempPath)> {
    let deadline = tokio::time::Instant::now() + FD_WAIT;
    loop {
        let dir = dir.to_owned();
        // Opened here, not by tempfile, whose error would hide the errno under its path.
        let made = tokio::task::spawn_blocking(move || {
            tempfile::Builder::new()
                .prefix("surge.upload.")
                .make_in(dir, |path| {
                    use std::os::unix::fs::OpenOptionsExt;
                    let mut options = std::fs::File::options();
                    options.read(true).write(true).create_new(true).mode(0o600);
                    options.open(path)
                })
        })
        .await
        .map_err(std::io::Error::other)?;
        match made {
            Err(e) if out_of_fds(&e) && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            made => return Ok(made?.into_parts()),
        }
    }
}

fn out_of_fds(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// The part's `Content-Type` as PHP's `$_FILES` gives it: as sent, without its parameters.
fn media_type(part: &multer::Field<'_>) -> String {
    let sent = part.headers().get(hyper::header::CONTENT_TYPE);
    let value = sent.map_or(&b""[..], |value| value.as_bytes());
    let essence = value.split(|&b| b == b';').next().unwrap_or_default();
    String::from_utf8_lossy(essence).into_owned()
}

/// The file name after its last `/` or `\` (a browser on Windows may send a whole path).
fn base_name(path: &[u8]) -> &[u8] {
    path.rsplit(|&b| b == b'/' || b == b'\\')
        .next()
        .unwrap_or(path)
}

/// The `name` and `filename` of a part's Content-Disposition, read as PHP reads them: as bytes
/// (a file name in the page's charset, GBK say, is not UTF-8), parameter names in any case,
/// values quoted (`\"` inside) or not, `filename*` and everything else ignored.
fn disposition(value: &[u8]) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    let (mut name, mut file_name) = (None, None);
    for parameter in split_unquoted(value, b';') {
        let Some(equals) = parameter.iter().position(|&b| b == b'=') else {
            continue;
        };
        let (key, value) = (parameter[..equals].trim_ascii(), &parameter[equals + 1..]);
        if key.eq_ignore_ascii_case(b"name") {
            name = Some(unquote(value));
        } else if key.eq_ignore_ascii_case(b"filename") {
            file_name = Some(unquote(value));
        }
    }
    (name, file_name)
}

/// `value` split at each `separator` outside double quotes.
fn split_unquoted(value: &[u8], separator: u8) -> impl Iterator<Item = &[u8]> {
    let (mut quoted, mut escaped) = (false, false);
    value.split(move |&b| {
        if std::mem::take(&mut escaped) {
            return false;
        }
        match b {
            b'\\' => escaped = quoted,
            b'"' => quoted = !quoted,
            _ => return b == separator && !quoted,
        }
        false
    })
}

/// A parameter's value: a quoted one without its quotes and with `\"` and `\\\\` taken as the
/// character escaped, an unquoted one up to its first space.
fn unquote(value: &[u8]) -> Vec<u8> {
    let value = value.trim_ascii_start();
    let Some(quoted) = value.strip_prefix(b"\"") else {
        let end = value.iter().position(u8::is_ascii_whitespace);
        return value[..end.unwrap_or(value.len())].to_vec();
    };
    let mut out = Vec::with_capacity(quoted.len());
    let mut bytes = quoted.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'"' => break,
            b'\\' => match bytes.next() {
                Some(&next @ (b'"' | b'\\')) => out.push(next),
                Some(&next) => out.extend_from_slice(&[b, next]),
                None => out.push(b),
            },
            _ => out.push(b),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use std::path::PathBuf;

    type Pieces = futures_util::stream::Iter<std::vec::IntoIter<Result<Bytes, Infallible>>>;

    /// `body` as a stream of pieces of `size` bytes, as the network gives it.
    fn pieces(body: Bytes, size: usize) -> Pieces {
        let pieces: Vec<_> = body
            .chunks(size)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        futures_util::stream::iter(pieces)
    }

    fn whole(body: Bytes) -> Pieces {
        let size = body.len().max(1);
        pieces(body, size)
    }

    fn body(parts: &[(&str, Option<&str>, &str)]) -> Bytes {
        let mut out = String::new();
        for (name, file_name, value) in parts {
            out.push_str("--XyZ\r\nContent-Disposition: form-data; name=\"");
            out.push_str(name);
            out.push('"');
            if let Some(file_name) = file_name {
                out.push_str(&format!(
                    "; filename=\"{file_name}\"\r\nContent-Type: text/plain"
                ));
            }
            out.push_str("\r\n\r\n");
            out.push_str(value);
            out.push_str("\r\n");
        }
        out.push_str("--XyZ--\r\n");
        Bytes::from(out)
    }

    #[test]
    fn the_boundary_is_found_only_in_multipart_form_data() {
        assert_eq!(
            boundary("multipart/form-data; boundary=XyZ").as_deref(),
            Some("XyZ")
        );
        assert_eq!(
            boundary("Multipart/Form-Data; boundary=\"a b\"").as_deref(),
            Some("a b")
        );
        assert_eq!(boundary("multipart/mixed; boundary=XyZ"), None);
        assert_eq!(boundary("application/x-www-form-urlencoded"), None);
        assert_eq!(boundary("multipart/form-data"), None);
    }

    #[test]
    fn content_disposition_is_read_as_php_reads_it() {
        /// A header's value, and the name and file name read from it.
        type Case<'a> = (&'a [u8], Option<&'a [u8]>, Option<&'a [u8]>);
        let cases: [Case; 7] = [
            // A file name in a GBK page's charset: bytes, not UTF-8.
            (
                b"form-data; name=\"photo\"; filename=\"\xd5\xd5\xc6\xac.jpg\"",
                Some(b"photo"),
                Some(b"\xd5\xd5\xc6\xac.jpg"),
            ),
            (
                b"form-data; filename=\"my name.txt\"; name=\"doc\"",
                Some(b"doc"),
                Some(b"my name.txt"),
            ),
            (
                b"form-data; NAME=doc; FileName=\"a.txt\"",
                Some(b"doc"),
                Some(b"a.txt"),
            ),
            (
                b"form-data; name=\"doc\"; filename*=UTF-8''a%20b.txt; filename=\"a b.txt\"",
                Some(b"doc"),
                Some(b"a b.txt"),
            ),
            (
                b"form-data; name=\"a;b\"; filename=\"say \\\"hi\\\".txt\"",
                Some(b"a;b"),
                Some(b"say \"hi\".txt"),
            ),
            (b"form-data; name=\"field\"", Some(b"field"), None),
            (b"form-data", None, None),
        ];
        for (value, name, file_name) in cases {
            let expected = (name.map(<[u8]>::to_vec), file_name.map(<[u8]>::to_vec));
            assert_eq!(disposition(value), expected, "{}", value.escape_ascii());
        }
    }

    #[tokio::test]
    async fn fields_and_files_are_split_and_files_removed_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let sent = body(&[
            ("title", None, "hello"),
            ("photos[]", Some("C:\\pics\\a.txt"), "first file"),
            ("photos[]", Some(""), ""),
        ]);
        let form = parse(pieces(sent, 7), "XyZ".into(), dir.path(), 20, 1020)
            .await
            .unwrap();
        assert_eq!(form.fields, vec![(b"title".to_vec(), Bytes::from("hello"))]);
        let [sent, empty] = &form.files[..] else {
            panic!("two files expected: {:?}", form.files);
        };
        assert_eq!(
            (&sent.field[..], &sent.name[..], &sent.full_path[..]),
            (&b"photos[]"[..], &b"a.txt"[..], &b"C:\\pics\\a.txt"[..])
        );
        assert_eq!(
            (sent.content_type.as_str(), sent.size, sent.error),
            ("text/plain", 10, 0)
        );
        let path = PathBuf::from(sent.tmp_name());
        assert!(path.starts_with(dir.path()));
        assert_eq!(std::fs::read(&path).unwrap(), b"first file");
        assert_eq!(
            (empty.tmp_name(), empty.size, empty.error),
            ("", 0, UPLOAD_ERR_NO_FILE)
        );
        drop(form);
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn an_unwritable_directory_gives_cant_write_and_a_broken_body_an_error() {
        let form = parse(
            whole(body(&[("doc", Some("a.txt"), "x")])),
            "XyZ".into(),
            Path::new("/nonexistent/surge"),
            20,
            1020,
        )
        .await
        .unwrap();
        assert_eq!(form.files[0].error, UPLOAD_ERR_CANT_WRITE);
        assert_eq!(form.files[0].tmp_name(), "");
        let cut = Bytes::from("--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nno end");
        assert!(parse(whole(cut), "XyZ".into(), Path::new("/tmp"), 20, 1020)
            .await
            .is_err());
    }

    #[tokio::test]
    async fn files_past_max_file_uploads_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let parts = [
            ("a", Some("1.txt"), "1"),
            ("b", Some("2.txt"), "2"),
            ("c", None, "field"),
        ];
        let form = parse(whole(body(&parts)), "XyZ".into(), dir.path(), 1, 1020)
            .await
            .unwrap();
        assert_eq!(form.files.len(), 1);
        assert_eq!(form.files[0].field, b"a");
        assert_eq!(form.fields.len(), 1);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[tokio::test]
    async fn parts_past_max_parts_are_left_out_empty_file_inputs_too() {
        let dir = tempfile::tempdir().unwrap();
        let parts = [
            ("a", Some(""), ""),
            ("b", None, "field"),
            ("c", Some(""), ""),
            ("d", Some("1.txt"), "1"),
            ("e", None, "field"),
        ];
        let form = parse(whole(body(&parts)), "XyZ".into(), dir.path(), 20, 3)
            .await
            .unwrap();
        let names = |files: &[Upload]| files.iter().map(|f| f.field.clone()).collect::<Vec<_>>();
        assert_eq!(names(&form.files), [b"a".to_vec(), b"c".to_vec()]);
        assert_eq!(form.fields.len(), 1);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn a_body_that_fails_halfway_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let sent = body(&[("doc", Some("a.txt"), "a long enough content")]);
        let first = sent.slice(..sent.len() - 20);
        let failing =
            futures_util::stream::iter(vec![Ok(first), Err(std::io::Error::other("gone"))]);
        let failed = parse(failing, "XyZ".into(), dir.path(), 20, 1020).await;
        assert!(
            matches!(failed, Err(multer::Error::StreamReadFailed(_))),
            "{failed:?}"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
