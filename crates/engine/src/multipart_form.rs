//! A `multipart/form-data` body split as PHP splits it for `$_POST` and `$_FILES`: text fields,
//! and uploaded files written to temporary files that are removed when the request is freed
//! (unless PHP moved them away first, as `move_uploaded_file()` does).

use std::io::Write;
use std::path::Path;

use bytes::Bytes;
pub use tempfile::TempPath;

/// PHP's `UPLOAD_ERR_*` codes that Surge can give (`$_FILES[...]['error']`).
pub const UPLOAD_ERR_OK: i64 = 0;
pub const UPLOAD_ERR_NO_FILE: i64 = 4;
pub const UPLOAD_ERR_CANT_WRITE: i64 = 7;

/// The fields of a `multipart/form-data` body, in the order sent.
#[derive(Debug, Default)]
pub struct MultipartForm {
    /// Parts without a file name: `(name, value)`, the value as sent (not necessarily UTF-8).
    pub fields: Vec<(String, Bytes)>,
    pub files: Vec<Upload>,
}

/// One part with a file name: what `$_FILES` says about it.
#[derive(Debug)]
pub struct Upload {
    /// The form field's name, brackets and all (`photos[]`).
    pub field: String,
    /// The client's file name without its directories, as PHP's `name`.
    pub name: String,
    /// The client's file name as sent (a folder upload sends `dir/file`), as PHP's `full_path`.
    pub full_path: String,
    /// The part's `Content-Type` as the client sent it; empty if none.
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

/// Splits `body` into fields and files, writing each file under `tmp_dir` (on a blocking
/// thread: the caller is a network task); file parts past the first `max_files` are skipped,
/// not written. Err: why the body is not valid multipart.
pub async fn parse(
    body: Bytes,
    boundary: String,
    tmp_dir: &Path,
    max_files: usize,
) -> Result<MultipartForm, String> {
    let stream = futures_util::stream::once(async { Ok::<_, std::convert::Infallible>(body) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    let mut form = MultipartForm::default();
    let mut skipped = 0;
    while let Some(field) = multipart.next_field().await.map_err(|e| e.to_string())? {
        // A part without a name has nowhere to go in $_POST or $_FILES: PHP skips it too.
        let Some(name) = field.name().map(str::to_owned) else {
            continue;
        };
        let file_name = field.file_name().map(str::to_owned);
        let content_type = field
            .content_type()
            .map(|mime| mime.to_string())
            .unwrap_or_default();
        let data = field.bytes().await.map_err(|e| e.to_string())?;
        match file_name {
            None => form.fields.push((name, data)),
            Some(_) if form.files.len() == max_files => skipped += 1,
            Some(full_path) => form
                .files
                .push(upload(name, full_path, content_type, data, tmp_dir).await),
        }
    }
    if skipped > 0 {
        log::warn!("a form had more files than max_file_uploads ({max_files}): {skipped} skipped");
    }
    Ok(form)
}

async fn upload(
    field: String,
    full_path: String,
    content_type: String,
    data: Bytes,
    tmp_dir: &Path,
) -> Upload {
    let name = base_name(&full_path).to_owned();
    let size = data.len() as u64;
    let mut upload = Upload {
        field,
        name,
        full_path,
        content_type,
        file: None,
        size: 0,
        error: UPLOAD_ERR_NO_FILE,
    };
    // A file input left empty sends a part with an empty file name.
    if upload.full_path.is_empty() {
        return upload;
    }
    let dir = tmp_dir.to_owned();
    match tokio::task::spawn_blocking(move || write_temporary(&dir, &data)).await {
        Ok(Ok(path)) => {
            upload.file = Some(path);
            upload.size = size;
            upload.error = UPLOAD_ERR_OK;
        }
        Ok(Err(e)) => {
            log::warn!(
                "could not write the upload {:?} under {}: {e}",
                upload.name,
                tmp_dir.display()
            );
            upload.error = UPLOAD_ERR_CANT_WRITE;
        }
        Err(e) => {
            log::warn!("the upload {:?} was not written: {e}", upload.name);
            upload.error = UPLOAD_ERR_CANT_WRITE;
        }
    }
    upload
}

fn write_temporary(dir: &Path, data: &[u8]) -> std::io::Result<TempPath> {
    let mut file = tempfile::Builder::new()
        .prefix("surge.upload.")
        .tempfile_in(dir)?;
    file.write_all(data)?;
    Ok(file.into_temp_path())
}

/// The file name after its last `/` or `\` (a browser on Windows may send a whole path).
fn base_name(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

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

    #[tokio::test]
    async fn fields_and_files_are_split_and_files_removed_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let form = parse(
            body(&[
                ("title", None, "hello"),
                ("photos[]", Some("C:\\pics\\a.txt"), "first file"),
                ("photos[]", Some(""), ""),
            ]),
            "XyZ".into(),
            dir.path(),
            20,
        )
        .await
        .unwrap();
        assert_eq!(form.fields, vec![("title".into(), Bytes::from("hello"))]);
        let [sent, empty] = &form.files[..] else {
            panic!("two files expected: {:?}", form.files);
        };
        assert_eq!(
            (
                sent.field.as_str(),
                sent.name.as_str(),
                sent.full_path.as_str()
            ),
            ("photos[]", "a.txt", "C:\\pics\\a.txt")
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
            body(&[("doc", Some("a.txt"), "x")]),
            "XyZ".into(),
            Path::new("/nonexistent/surge"),
            20,
        )
        .await
        .unwrap();
        assert_eq!(form.files[0].error, UPLOAD_ERR_CANT_WRITE);
        assert_eq!(form.files[0].tmp_name(), "");
        let cut = Bytes::from("--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nno end");
        assert!(parse(cut, "XyZ".into(), Path::new("/tmp"), 20)
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
        let form = parse(body(&parts), "XyZ".into(), dir.path(), 1)
            .await
            .unwrap();
        assert_eq!(form.files.len(), 1);
        assert_eq!(form.files[0].field, "a");
        assert_eq!(form.fields.len(), 1);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
