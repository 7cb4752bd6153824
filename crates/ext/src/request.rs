//! `Surge\Http\Request`: an HTTP request or a WebSocket handshake, as PHP arrays built once.

use bytes::Bytes;
use ext_php_rs::exception::PhpResult;
use ext_php_rs::prelude::*;
use ext_php_rs::types::Zval;
use surge_engine::{cookie, HttpRequest};

use crate::convert::{binary_zval, pairs_zval, Assoc};
use crate::form_input::{self, empty_array, Uploads};

#[php_class]
#[php(name = "Surge\\Http\\Request")]
pub struct Request {
    fd: u64,
    get: Zval,
    post: Zval,
    files: Zval,
    header: Zval,
    server: Zval,
    cookie: Zval,
    method: String,
    body: Bytes,
    /// The uploaded files' temporary files: deleted when the request is freed.
    _uploads: Option<Uploads>,
}

/// The cookies, at most `max_input_vars` of them as in PHP's `$_COOKIE` (a head may carry
/// thousands, whose names PHP's unseeded hash lets an attacker make collide).
fn cookies(req: &HttpRequest) -> Vec<(String, String)> {
    let headers = req.headers.iter().filter(|(k, _)| k == "cookie");
    let mut cookies = cookie::parse(headers.map(|(_, v)| v.as_str()));
    let max_vars = form_input::max_input_vars();
    if cookies.len() > max_vars {
        log::warn!(target: "surge", "a request had more than max_input_vars ({max_vars}) cookies; the rest were dropped");
        cookies.truncate(max_vars);
    }
    cookies
}

/// Headers by lowercase name; a repeated header's values are joined with ", " as HTTP allows.
fn headers(req: &HttpRequest) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(req.headers.len());
    for (k, v) in &req.headers {
        match out.iter_mut().find(|(name, _)| name == k) {
            Some((_, value)) => {
                value.push_str(", ");
                value.push_str(v);
            }
            None => out.push((k.clone(), v.clone())),
        }
    }
    out
}

/// Swoole's `path_info`: the path decoded as PHP's urldecode() decodes (`+` a space too).
fn url_decoded(path: &str) -> Vec<u8> {
    percent_encoding::percent_decode_str(&path.replace('+', " ")).collect()
}

fn server_vars(req: &HttpRequest) -> PhpResult<Zval> {
    let mut s = Assoc::new();
    s.set("request_method", req.method.as_str())?;
    s.set("request_uri", req.path.as_str())?;
    s.set("path_info", binary_zval(&url_decoded(&req.path)))?;
    if !req.query.is_empty() {
        s.set("query_string", req.query.as_str())?;
    }
    s.set("server_protocol", req.protocol)?;
    s.set("remote_addr", req.remote.ip().to_string())?;
    s.set("remote_port", i64::from(req.remote.port()))?;
    s.set("server_port", i64::from(req.server_port))?;
    s.set("request_time", req.time as i64)?;
    s.set("request_time_float", req.time)?;
    Ok(s.into_zval())
}

impl Request {
    pub fn from_engine(mut req: HttpRequest) -> PhpResult<Self> {
        let is_form = req.header("content-type").is_some_and(|ct| {
            ct.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
        let (post, files, uploads) = match req.form.take() {
            Some(form) => {
                let (post, files, uploads) = form_input::multipart(form);
                (post, files, Some(uploads))
            }
            None if is_form && !form_input::over_post_max_size(req.body.len()) => {
                (form_input::parse_str(&req.body), empty_array(), None)
            }
            None => (empty_array(), empty_array(), None),
        };
        Ok(Request {
            fd: req.fd,
            get: form_input::parse_str(req.query.as_bytes()),
            post,
            files,
            header: pairs_zval(headers(&req))?,
            server: server_vars(&req)?,
            cookie: pairs_zval(cookies(&req))?,
            method: std::mem::take(&mut req.method),
            body: req.body,
            _uploads: uploads,
        })
    }
}

#[php_impl]
impl Request {
    /// The connection's id.
    #[php(getter)]
    pub fn get_fd(&self) -> i64 {
        self.fd as i64
    }

    /// Query-string parameters, as PHP's $_GET (`a[]` and `a[b]` nest).
    #[php(getter)]
    pub fn get_get(&self) -> Zval {
        self.get.shallow_clone()
    }

    /// Form fields of an application/x-www-form-urlencoded or multipart/form-data body, as
    /// PHP's $_POST (`a[]` and `a[b]` nest).
    #[php(getter)]
    pub fn get_post(&self) -> Zval {
        self.post.shallow_clone()
    }

    /// Files uploaded in a multipart/form-data body, as PHP's $_FILES: name, full_path, type,
    /// tmp_name, error, size. The temporary files are deleted when the request is freed,
    /// unless moved away first (move_uploaded_file() accepts them).
    #[php(getter)]
    pub fn get_files(&self) -> Zval {
        self.files.shallow_clone()
    }

    /// Request headers, names lowercased.
    #[php(getter)]
    pub fn get_header(&self) -> Zval {
        self.header.shallow_clone()
    }

    /// request_method, request_uri, path_info, query_string, server_protocol, remote_addr,
    /// remote_port, server_port, request_time, request_time_float.
    #[php(getter)]
    pub fn get_server(&self) -> Zval {
        self.server.shallow_clone()
    }

    /// Cookies sent with the request.
    #[php(getter)]
    pub fn get_cookie(&self) -> Zval {
        self.cookie.shallow_clone()
    }

    /// The raw request body; empty for a multipart form (its parts are in post and files).
    pub fn raw_content(&self) -> Zval {
        binary_zval(&self.body)
    }

    /// Same as rawContent() (Swoole's other name for it).
    pub fn get_content(&self) -> Zval {
        binary_zval(&self.body)
    }

    /// The request method, as $server['request_method'] has it ("GET" for a handshake).
    pub fn get_method(&self) -> String {
        self.method.clone()
    }
}
