//! A request's input as PHP itself would give it to a script: query strings and form fields go
//! through PHP's own parser (the `treat_data` behind `$_GET`, `$_POST` and `parse_str()`, so
//! `tags[]=a&tags[]=b` nests, `a.b` becomes `a_b`, and `max_input_vars` holds), and uploaded
//! files are laid out as `$_FILES` and registered as uploads, so that `is_uploaded_file()` and
//! `move_uploaded_file()` accept them (Laravel's `file` validation rule asks the first).

use std::ffi::{c_char, c_int};

use ext_php_rs::alloc::estrdup;
use ext_php_rs::boxed::ZBox;
use ext_php_rs::types::{ArrayKey, ZendHashTable, Zval};
use ext_php_rs::zend::{ProcessGlobals, SapiGlobals, SapiModule};
use percent_encoding::{percent_encode, NON_ALPHANUMERIC};
use surge_engine::multipart_form::{MultipartForm, TempPath, Upload};

/// PHP's `max_file_uploads` ini setting (20 unless php.ini says otherwise): the uploads one
/// request may write; the engine skips the file parts past it, as PHP does.
pub fn max_file_uploads() -> usize {
    ini_int("max_file_uploads").map_or(20, |n| n.max(0) as usize)
}

/// PHP's `max_multipart_body_parts` ini setting (-1 unless php.ini says otherwise, which means
/// `max_input_vars` + `max_file_uploads`): the parts one form may have, fields, files and file
/// inputs left empty alike; the engine leaves out the rest of a form, as PHP does.
pub fn max_multipart_body_parts(max_files: usize) -> usize {
    match ini_int("max_multipart_body_parts") {
        Some(n) if n >= 0 => n as usize,
        _ => max_input_vars().saturating_add(max_files),
    }
}

/// PHP's `max_input_vars` (1000 unless php.ini says otherwise): the most variables one input
/// (a query string, a form's fields, the cookies) gives.
pub fn max_input_vars() -> usize {
    usize::try_from(ProcessGlobals::get().max_input_vars).unwrap_or(usize::MAX)
}

unsafe extern "C" {
    // Exported by PHP (Zend/zend_ini.h): an ini setting's value, and whether PHP has the
    // setting; ext-php-rs has no binding for it.
    fn zend_ini_string_ex(
        name: *const c_char,
        name_length: usize,
        orig: c_int,
        exists: *mut bool,
    ) -> *const c_char;
}

/// An ini setting read as PHP 8.2 reads the two above (`INI_INT`: C's strtoll in base 0, so
/// "2K" is 2 and "0x10" is 16); None if this PHP has no such setting.
fn ini_int(name: &str) -> Option<i64> {
    let mut exists = false;
    // SAFETY: PHP reads `name_length` bytes of the name; the value is PHP's own NUL-terminated
    // string, only read here.
    let value = unsafe { zend_ini_string_ex(name.as_ptr().cast(), name.len(), 0, &mut exists) };
    if !exists {
        return None;
    }
    if value.is_null() {
        return Some(0);
    }
    // SAFETY: as above.
    Some(unsafe { libc::strtoll(value, std::ptr::null_mut(), 0) })
}

/// Whether a form of `len` bytes is over PHP's `post_max_size` (8M unless php.ini says
/// otherwise; 0: no limit). PHP leaves `$_POST` empty then, with a warning, and so does
/// `$request->post`: parsed into PHP's memory, a form of tens of MB raised by
/// package_max_length exceeded memory_limit before any code of the app ran, and ended the
/// server.
pub fn over_post_max_size(len: usize) -> bool {
    let max = SapiGlobals::get().post_max_size;
    let over = max > 0 && i64::try_from(len).map_or(true, |len| len > max);
    if over {
        log::warn!(target: "surge", "a form of {len} bytes is over post_max_size ({max} bytes): $request->post is left empty, as PHP leaves $_POST");
    }
    over
}

/// `PARSE_STRING` of PHP's `main/php_variables.h`: parse the string given, as `parse_str()`.
const PARSE_STRING: c_int = 3;

pub fn empty_array() -> Zval {
    let mut zv = Zval::new();
    zv.set_hashtable(ZendHashTable::new());
    zv
}

/// `a=1&b[]=2` as PHP's `parse_str()` makes it an array.
pub fn parse_str(input: &[u8]) -> Zval {
    let mut array = empty_array();
    add_pairs(input, &mut array);
    array
}

/// Adds the `name=value` pairs of `input` to `array` as PHP would.
fn add_pairs(input: &[u8], array: &mut Zval) {
    if input.is_empty() {
        return;
    }
    let Some(treat_data) = SapiModule::get().treat_data else {
        return;
    };
    // treat_data reads to the NUL and frees the buffer with efree: an emalloc'd copy.
    let buffer = estrdup(input);
    // SAFETY: `buffer` is ours to give away; `array` is a live array zval, not shared.
    unsafe { treat_data(PARSE_STRING, buffer, array) };
}

/// One `name=value` pair of a multipart form, given to PHP's parser encoded, so that any byte
/// (`&`, `=`, NUL) in either stays in it.
fn add_pair(name: &[u8], value: &[u8], array: &mut Zval) {
    let pair = format!(
        "{}={}",
        percent_encode(name, NON_ALPHANUMERIC),
        percent_encode(value, NON_ALPHANUMERIC)
    );
    add_pairs(pair.as_bytes(), array);
}

/// The temporary files of a request's uploads: deleted (and forgotten as uploads) when the
/// request is freed, but for those PHP moved away.
pub struct Uploads {
    files: Vec<TempPath>,
}

impl Drop for Uploads {
    fn drop(&mut self) {
        if self.files.is_empty() {
            return;
        }
        let globals = SapiGlobals::get_mut();
        // SAFETY: null, or PHP's table (or the one `register` made) until PHP's request ends,
        // which empties and frees it itself.
        if let Some(registered) = unsafe { globals.rfc1867_uploaded_files.as_mut() } {
            for file in &self.files {
                registered.remove(file.to_string_lossy().as_ref());
            }
        }
        // The TempPaths delete the files still there (not moved away) as they drop.
    }
}

/// `$request->post` and `$request->files` from a multipart form (PHP's `max_input_vars`
/// counts the fields), and the uploads to keep alive as long as the request.
pub fn multipart(form: MultipartForm) -> (Zval, Zval, Uploads) {
    let max_vars = max_input_vars();
    let mut post = empty_array();
    let mut files = empty_array();
    let mut kept = Vec::with_capacity(form.files.len());
    let size = (form.fields.iter()).map(|(name, value)| name.len() + value.len());
    if !over_post_max_size(size.sum()) {
        for (name, value) in form.fields.iter().take(max_vars) {
            add_pair(name, value, &mut post);
        }
    }
    // Files count against max_file_uploads only (see `multipart_form::parse`), as in PHP.
    for upload in form.files {
        add_upload(&upload, &mut files);
        if let Some(file) = upload.file {
            register(&file);
            kept.push(file);
        }
    }
    if form.fields.len() > max_vars {
        log::warn!(target: "surge", "a multipart form had more than max_input_vars ({max_vars}) fields; the rest were dropped");
    }
    integer_leaves(&mut files);
    (post, files, Uploads { files: kept })
}

/// An upload's entries as PHP's `$_FILES` has them: `doc[name]`, and for `photos[]`
/// `photos[name][]`, each of name, full_path, type, tmp_name, error, size.
fn add_upload(upload: &Upload, files: &mut Zval) {
    // PHP skips a file whose field name has unbalanced brackets rather than guess.
    if !balanced(&upload.field) {
        return;
    }
    let field = &upload.field;
    let (base, index) =
        field.split_at(field.iter().position(|&b| b == b'[').unwrap_or(field.len()));
    let size = upload.size.to_string();
    let error = upload.error.to_string();
    let entries: [(&str, &[u8]); 6] = [
        ("name", &upload.name),
        ("full_path", &upload.full_path),
        ("type", upload.content_type.as_bytes()),
        ("tmp_name", upload.tmp_name().as_bytes()),
        ("error", error.as_bytes()),
        ("size", size.as_bytes()),
    ];
    for (key, value) in entries {
        let name = [base, b"[", key.as_bytes(), b"]", index].concat();
        add_pair(&name, value, files);
    }
}

/// Whether the brackets of a field name pair up, each `]` followed by `[` or the end.
fn balanced(field: &[u8]) -> bool {
    let mut depth = 0i32;
    let mut bytes = field.iter().peekable();
    while let Some(b) = bytes.next() {
        match b {
            b'[' => depth += 1,
            b']' => {
                depth -= 1;
                if depth < 0 || bytes.peek().is_some_and(|&&next| next != b'[') {
                    return false;
                }
            }
            _ => {}
        }
    }
    depth == 0
}

/// `error` and `size` are integers in `$_FILES`; the parser gave strings.
fn integer_leaves(files: &mut Zval) {
    let Some(fields) = files.array_mut() else {
        return;
    };
    for key in owned_keys(fields) {
        let Some(entry) = fields.get_mut(key).and_then(Zval::array_mut) else {
            continue;
        };
        for what in ["error", "size"] {
            if let Some(leaves) = entry.get_mut(what) {
                to_integers(leaves);
            }
        }
    }
}

fn to_integers(zv: &mut Zval) {
    if let Some(n) = zv.str().and_then(|s| s.parse::<i64>().ok()) {
        zv.set_long(n);
    } else if let Some(array) = zv.array_mut() {
        for key in owned_keys(array) {
            if let Some(leaf) = array.get_mut(key) {
                to_integers(leaf);
            }
        }
    }
}

/// The keys of `array`, to look each up again while changing the values.
fn owned_keys(array: &ZendHashTable) -> Vec<ArrayKey<'static>> {
    array
        .iter()
        .map(|(key, _)| match key {
            ArrayKey::Long(index) => ArrayKey::Long(index),
            other => ArrayKey::String(other.to_string()),
        })
        .collect()
}

/// The table of uploads PHP keeps (`SG(rfc1867_uploaded_files)`): filled by PHP itself for a
/// multipart request, and emptied at the end of one (deleting the files still in it).
fn uploaded_files(globals: &mut SapiGlobals) -> &mut ZendHashTable {
    if globals.rfc1867_uploaded_files.is_null() {
        let table: ZBox<ZendHashTable> = ZendHashTable::new();
        globals.rfc1867_uploaded_files = table.into_raw();
    }
    // SAFETY: not null: PHP's table or the one made above, alive until PHP's request ends.
    unsafe { &mut *globals.rfc1867_uploaded_files }
}

/// Makes `path` an upload in PHP's eyes, as if PHP had received it.
fn register(path: &TempPath) {
    let mut globals = SapiGlobals::get_mut();
    let name = path.to_string_lossy().into_owned();
    if let Err(e) = uploaded_files(&mut globals).insert(name.as_str(), name.clone()) {
        log::warn!(target: "surge", "could not register the upload {name}: {e:?}");
    }
}
