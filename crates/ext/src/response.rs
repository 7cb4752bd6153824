//! `Surge\Http\Response`: the answer to one HTTP request, sent by `end()`.

use std::cell::{Cell, RefCell};
use std::time::SystemTime;

use ext_php_rs::exception::PhpResult;
use ext_php_rs::prelude::*;
use ext_php_rs::types::{ZendClassObject, Zval};
use surge_engine::cookie::SetCookie;
use surge_engine::{HttpResponse, Responder};

use crate::convert::bytes_arg;
use crate::exception::error;

#[php_class]
#[php(name = "Surge\\Http\\Response")]
pub struct Response {
    fd: u64,
    reply: RefCell<Option<Responder>>,
    status: Cell<u16>,
    headers: RefCell<Vec<(String, String)>>,
}

impl Response {
    pub fn new(fd: u64, reply: Responder) -> Self {
        Response {
            fd,
            reply: RefCell::new(Some(reply)),
            status: Cell::new(200),
            headers: RefCell::new(Vec::new()),
        }
    }

    /// After a fatal error in the request callback: a 500 that says so, unless the callback had
    /// answered. (Left to the object's drop, the client would read that end() was not called.)
    pub fn after_fatal_error(response: &Zval) {
        let response = response
            .object()
            .and_then(ZendClassObject::<Response>::from_zend_obj);
        let reply = response.and_then(|r| r.reply.try_borrow_mut().ok()?.take());
        if let Some(reply) = reply {
            reply.send(HttpResponse::text(
                500,
                "the request callback ended in a fatal error\n",
            ));
        }
    }
}

fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[php_impl]
impl Response {
    /// The connection's id.
    #[php(getter)]
    pub fn get_fd(&self) -> i64 {
        self.fd as i64
    }

    /// Sets the status code (100-999).
    pub fn status(&self, code: i64) -> PhpResult<bool> {
        if !(100..=999).contains(&code) {
            return Err(error(format!(
                "status code must be between 100 and 999, got {code}"
            )));
        }
        self.status.set(code as u16);
        Ok(true)
    }

    /// Adds a response header.
    pub fn header(&self, name: String, value: String) -> PhpResult<bool> {
        if !valid_header_name(&name) {
            return Err(error(format!("invalid header name '{name}'")));
        }
        if value.contains(['\r', '\n']) {
            return Err(error(format!(
                "header '{name}' has a line break in its value"
            )));
        }
        self.headers.borrow_mut().push((name, value));
        Ok(true)
    }

    /// Adds a Set-Cookie header as PHP's setcookie() writes it: the value URL-encoded, an empty
    /// value deletes the cookie, `$expire` is a Unix time (0: until the browser closes).
    #[allow(clippy::too_many_arguments)] // Swoole's and setcookie()'s parameters, in their order
    #[php(defaults(
        value = String::new(),
        expire = 0,
        path = "/".to_string(),
        domain = String::new(),
        secure = false,
        httponly = false,
        samesite = String::new()
    ))]
    pub fn cookie(
        &self,
        key: String,
        value: String,
        expire: i64,
        path: String,
        domain: String,
        secure: bool,
        httponly: bool,
        samesite: String,
    ) -> PhpResult<bool> {
        let cookie = SetCookie {
            name: &key,
            value: &value,
            expire,
            path: &path,
            domain: &domain,
            secure,
            http_only: httponly,
            same_site: &samesite,
        };
        let header = cookie.header_value(SystemTime::now()).map_err(error)?;
        self.headers
            .borrow_mut()
            .push(("Set-Cookie".to_string(), header));
        Ok(true)
    }

    /// Ends the response as a redirect to `$location` with `$http_code` (300-399, default 302).
    #[php(defaults(http_code = 302))]
    pub fn redirect(&self, location: String, http_code: i64) -> PhpResult<bool> {
        if !(300..=399).contains(&http_code) {
            return Err(error(format!(
                "a redirect's status code must be between 300 and 399, got {http_code}"
            )));
        }
        self.header("Location".to_string(), location)?;
        self.status(http_code)?;
        self.end(None)
    }

    /// Sends the response with `$data` as body; false if it was already sent or the client left.
    pub fn end(&self, data: Option<&Zval>) -> PhpResult<bool> {
        let body = match data {
            Some(zv) if !zv.is_null() => bytes_arg(zv, "response body")?,
            _ => Vec::new(),
        };
        let Some(reply) = self.reply.borrow_mut().take() else {
            return Ok(false);
        };
        let headers = std::mem::take(&mut *self.headers.borrow_mut());
        Ok(reply.send(HttpResponse {
            status: self.status.get(),
            headers,
            body: body.into(),
        }))
    }

    /// False once end() was called.
    pub fn is_writable(&self) -> bool {
        self.reply.borrow().is_some()
    }
}

impl Drop for Response {
    fn drop(&mut self) {
        // The callback neither ended the response nor kept it for later: say so to the client
        // instead of leaving it waiting.
        if let Some(reply) = self.reply.get_mut().take() {
            reply.send(HttpResponse::text(
                500,
                "the request callback did not call $response->end()\n",
            ));
        }
    }
}
