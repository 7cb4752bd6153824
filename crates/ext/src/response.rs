//! `Surge\Http\Response`: the answer to one HTTP request, sent whole by `end()`, in chunks by
//! `write()` and then `end()`, or read from a file by `sendfile()`.

use std::cell::{Cell, RefCell};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::rc::Rc;
use std::time::SystemTime;

use ext_php_rs::exception::PhpResult;
use ext_php_rs::prelude::*;
use ext_php_rs::types::{ZendClassObject, Zval};
use surge_engine::cookie::SetCookie;
use surge_engine::http_file::FileToSend;
use surge_engine::{Admission, HttpResponse, Responder};

use crate::convert::{bytes_arg, int_arg, text_arg, truthy};
use crate::event_loop::with_serving;
use crate::exception::error;
use crate::unanswered::{self, Answer, Client};

#[php_class]
#[php(name = "Surge\\Http\\Response")]
pub struct Response {
    fd: u64,
    /// The head (status and headers) until sent; after write() sent it, the body until end().
    /// Shared with the list of unanswered requests, through which close($fd) may take it.
    answer: Rc<Answer>,
    status: Cell<u16>,
    reason: RefCell<Option<String>>,
    headers: RefCell<Vec<(String, String)>>,
    /// The Set-Cookie values of cookie() and rawCookie(), apart from header()'s as Swoole keeps
    /// them: a header('Set-Cookie', ...) replaces only what header() set.
    cookies: RefCell<Vec<String>>,
    /// The answer to a WebSocket handshake (the `handshake` callback's): a 101 lets the
    /// connection in through this.
    admission: RefCell<Option<Admission>>,
}

impl Response {
    /// The answer to the request from `client` on `fd`.
    pub fn new(fd: u64, reply: Responder, client: Client) -> Self {
        let answer = Rc::new(Answer {
            reply: RefCell::new(Some(reply)),
            stream: RefCell::new(None),
        });
        unanswered::add(fd, client, &answer);
        Response {
            fd,
            answer,
            status: Cell::new(200),
            reason: RefCell::new(None),
            headers: RefCell::new(Vec::new()),
            cookies: RefCell::new(Vec::new()),
            admission: RefCell::new(None),
        }
    }

    /// The answer to a WebSocket handshake: status(101) and end() let the connection in, any
    /// other answer refuses it.
    pub fn for_handshake(fd: u64, reply: Responder, client: Client, admission: Admission) -> Self {
        let response = Response::new(fd, reply, client);
        *response.admission.borrow_mut() = Some(admission);
        response
    }

    /// After the `handshake` callback returned (`accepted`: it returned true): a handshake it
    /// did not answer is let in if accepted (Surge's own handshake, with the headers it set),
    /// refused with a 403 otherwise. True if let in here.
    pub fn after_handshake(response: &Zval, accepted: bool) -> bool {
        let response = response
            .object()
            .and_then(ZendClassObject::<Response>::from_zend_obj);
        let Some(response) = response else {
            return false;
        };
        if response.head_sent() {
            return false;
        }
        if accepted {
            response.status.set(101);
            return response.end(None).unwrap_or(false);
        }
        if let Some(reply) = response.answer.reply.borrow_mut().take() {
            reply.send(HttpResponse::text(
                403,
                "the handshake callback refused this connection\n",
            ));
        }
        false
    }

    /// Throws for a body on a handshake's 101 (the connection speaks WebSocket after it).
    fn no_body_after_101(&self, what: &str) -> PhpResult<()> {
        match self.status.get() == 101 && !self.head_sent() {
            true => Err(error(format!(
                "a 101 (the handshake's answer) has no body: {what}; end() without data lets the connection in"
            ))),
            false => Ok(()),
        }
    }

    /// The status and headers set so far, with `body`.
    fn head(&self, body: Vec<u8>) -> HttpResponse {
        let mut headers = std::mem::take(&mut *self.headers.borrow_mut());
        // Swoole's default, which pages written for it count on (a browser told `nosniff`
        // would show an untyped page as text). Not on a 204 or 304, which have no body (a
        // cache would copy a 304's headers onto what it keeps).
        let status = self.status.get();
        if !matches!(status, 101 | 204 | 304)
            && !(headers.iter()).any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        {
            headers.push(("Content-Type".to_string(), "text/html".to_string()));
        }
        HttpResponse {
            status,
            reason: self.reason.borrow_mut().take(),
            headers: (headers.into_iter())
                .chain(
                    self.cookies
                        .take()
                        .into_iter()
                        .map(|c| ("Set-Cookie".to_string(), c)),
                )
                .collect(),
            body: body.into(),
        }
    }

    /// Writes what callbacks pushed to other workers' connections before any of the response
    /// goes out: a client that acts on the response (its next request may land on that other
    /// worker, which pushes at once to its own connections) must not see those pushes overtaken.
    fn pushes_go_first() {
        with_serving(|server| server.engine().map(|engine| engine.write_pushes()));
    }

    fn head_sent(&self) -> bool {
        self.answer.reply.borrow().is_none()
    }

    /// False, adding nothing, once the head is sent.
    fn add_set_cookie(&self, cookie: SetCookie) -> PhpResult<bool> {
        let header = cookie.header_value(SystemTime::now()).map_err(error)?;
        if self.head_sent() {
            return Ok(false);
        }
        self.cookies.borrow_mut().push(header);
        Ok(true)
    }

    /// The header `name` is `values` from now on (none: taken away); false once the head is
    /// sent.
    fn replace_header(&self, name: &str, values: Vec<String>) -> PhpResult<bool> {
        // hyper refuses any control character but the tab: left in, the header would be
        // dropped after this call said it was set.
        if (values.iter()).any(|v| v.chars().any(|c| c.is_ascii_control() && c != '\t')) {
            return Err(error(format!(
                "header '{name}' has a control character (a line break?) in its value"
            )));
        }
        if self.head_sent() {
            return Ok(false);
        }
        let mut headers = self.headers.borrow_mut();
        headers.retain(|(set, _)| !set.eq_ignore_ascii_case(name));
        headers.extend(values.into_iter().map(|v| (name.to_string(), v)));
        Ok(true)
    }

    fn set_status(&self, code: i64, reason: String) -> PhpResult<bool> {
        // A handshake's 101 is final: the connection speaks WebSocket after it.
        let handshake_101 = code == 101 && self.admission.borrow().is_some();
        if !(200..=999).contains(&code) && !handshake_101 {
            return Err(error(format!(
                "status code must be between 200 and 999 (a 1xx is not a final response; 101 only in the handshake callback), got {code}"
            )));
        }
        if reason.chars().any(|c| c.is_control() && c != '\t') {
            return Err(error(format!(
                "the reason phrase of status {code} has a control character (a line break?)"
            )));
        }
        if self.head_sent() {
            return Ok(false);
        }
        self.status.set(code as u16);
        *self.reason.borrow_mut() = Some(reason).filter(|r| !r.is_empty());
        Ok(true)
    }

    /// cookie() and rawcookie(): their arguments (but the name) read as PHP reads a
    /// setcookie() call's, in its order: value, expire, path, domain, secure, httponly,
    /// samesite.
    fn cookie_from_args(&self, raw: bool, key: &str, args: [Option<&Zval>; 7]) -> PhpResult<bool> {
        let [value, expire, path, domain, secure, httponly, samesite] = args;
        let text =
            |zv: Option<&Zval>, what: &str| zv.map_or(Ok(String::new()), |zv| text_arg(zv, what));
        let path = match path.filter(|zv| !zv.is_null()) {
            Some(zv) => text_arg(zv, "cookie path")?,
            None => "/".to_string(),
        };
        self.add_set_cookie(SetCookie {
            name: key,
            value: &text(value, "cookie value")?,
            expire: expire.map_or(Ok(0), |zv| int_arg(zv, "cookie expire"))?,
            path: &path,
            domain: &text(domain, "cookie domain")?,
            secure: secure.is_some_and(truthy),
            http_only: httponly.is_some_and(truthy),
            same_site: &text(samesite, "cookie samesite")?,
            raw,
        })
    }

    /// After a fatal error or an uncaught exception in the callback: a 500 that says so (`why`),
    /// unless the callback had answered. (Left to the object's drop, the client would read that
    /// end() was not called.)
    pub fn after_failure(response: &Zval, why: &str) {
        let response = response
            .object()
            .and_then(ZendClassObject::<Response>::from_zend_obj);
        let Some(response) = response else { return };
        // A body under way is cut short (its status is sent): the client sees it incomplete.
        if let Some(stream) = response
            .answer
            .stream
            .try_borrow_mut()
            .ok()
            .and_then(|mut s| s.take())
        {
            stream.cut_short();
        }
        let reply = response
            .answer
            .reply
            .try_borrow_mut()
            .ok()
            .and_then(|mut r| r.take());
        if let Some(reply) = reply {
            reply.send(HttpResponse::text(500, &format!("{why}\n")));
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

    /// Sets the status code (200-999) and, if given, a reason phrase of its own instead of the
    /// code's (Swoole's `$reason`); false once the head is sent. A 1xx is no final answer:
    /// hyper would replace it with a 500 and close the connection. Arguments are read as PHP's
    /// coercive typing reads them (`status('201')`, a reason of null), as Swoole's are.
    pub fn status(&self, code: &Zval, reason: Option<&Zval>) -> PhpResult<bool> {
        let code = int_arg(code, "status code")?;
        let reason = reason.map_or(Ok(String::new()), |zv| text_arg(zv, "reason phrase"))?;
        self.set_status(code, reason)
    }

    /// Sets a response header, replacing one set before under the same name (in any case), as
    /// Swoole does; an array value sends one header of that name per element, null takes the
    /// header away (cookie()'s Set-Cookie headers are kept apart: see `cookies`).
    /// `$format` is Swoole's (write the name as `Content-Type`): taken and not needed, header
    /// names are not case-sensitive and HTTP/1 clients read any case. Values are read as PHP's
    /// coercive typing reads a string (`header('Content-Length', strlen($body))`).
    #[php(defaults(format = true))]
    pub fn header(&self, name: String, value: &Zval, format: bool) -> PhpResult<bool> {
        let _ = format;
        if !valid_header_name(&name) {
            return Err(error(format!("invalid header name '{name}'")));
        }
        let values = match value.array() {
            Some(list) => (list.values())
                .map(|v| text_arg(v, "header value"))
                .collect::<PhpResult<Vec<_>>>()?,
            // Swoole's way to take a header away again.
            None if value.is_null() => Vec::new(),
            None => vec![text_arg(value, "header value")?],
        };
        self.replace_header(&name, values)
    }

    /// Swoole's alias of status().
    pub fn set_status_code(&self, code: &Zval, reason: Option<&Zval>) -> PhpResult<bool> {
        self.status(code, reason)
    }

    /// Swoole's alias of header().
    #[php(defaults(format = true))]
    pub fn set_header(&self, name: String, value: &Zval, format: bool) -> PhpResult<bool> {
        self.header(name, value, format)
    }

    /// Adds a Set-Cookie header as PHP's setcookie() writes it: the value URL-encoded, an empty
    /// value deletes the cookie, `$expire` is a Unix time (0: until the browser closes).
    /// Arguments are read as setcookie() reads them (Symfony's null domain or same-site, an
    /// expiry given as a string).
    #[allow(clippy::too_many_arguments)] // Swoole's and setcookie()'s parameters, in their order
    pub fn cookie(
        &self,
        key: String,
        value: Option<&Zval>,
        expire: Option<&Zval>,
        path: Option<&Zval>,
        domain: Option<&Zval>,
        secure: Option<&Zval>,
        httponly: Option<&Zval>,
        samesite: Option<&Zval>,
    ) -> PhpResult<bool> {
        let args = [value, expire, path, domain, secure, httponly, samesite];
        self.cookie_from_args(false, &key, args)
    }

    /// As cookie(), with the value sent as given (PHP's setrawcookie()): it must not hold `,;`
    /// or white space. (The same PHP parameters as cookie(): ext-php-rs declares each method's
    /// signature apart, the work is shared.)
    #[allow(clippy::too_many_arguments)] // Swoole's and setcookie()'s parameters, in their order
    pub fn raw_cookie(
        &self,
        key: String,
        value: Option<&Zval>,
        expire: Option<&Zval>,
        path: Option<&Zval>,
        domain: Option<&Zval>,
        secure: Option<&Zval>,
        httponly: Option<&Zval>,
        samesite: Option<&Zval>,
    ) -> PhpResult<bool> {
        let args = [value, expire, path, domain, secure, httponly, samesite];
        self.cookie_from_args(true, &key, args)
    }

    /// Swoole's alias of cookie() (named arguments too, hence the whole signature again).
    #[allow(clippy::too_many_arguments)]
    pub fn set_cookie(
        &self,
        key: String,
        value: Option<&Zval>,
        expire: Option<&Zval>,
        path: Option<&Zval>,
        domain: Option<&Zval>,
        secure: Option<&Zval>,
        httponly: Option<&Zval>,
        samesite: Option<&Zval>,
    ) -> PhpResult<bool> {
        self.cookie(key, value, expire, path, domain, secure, httponly, samesite)
    }

    /// Swoole's alias of rawCookie().
    #[allow(clippy::too_many_arguments)]
    pub fn set_raw_cookie(
        &self,
        key: String,
        value: Option<&Zval>,
        expire: Option<&Zval>,
        path: Option<&Zval>,
        domain: Option<&Zval>,
        secure: Option<&Zval>,
        httponly: Option<&Zval>,
        samesite: Option<&Zval>,
    ) -> PhpResult<bool> {
        self.raw_cookie(key, value, expire, path, domain, secure, httponly, samesite)
    }

    /// Ends the response as a redirect to `$location` with `$http_code` (300-399, default 302),
    /// replacing a Location set before.
    pub fn redirect(&self, location: &Zval, http_code: Option<&Zval>) -> PhpResult<bool> {
        let location = text_arg(location, "redirect location")?;
        let code = (http_code.filter(|zv| !zv.is_null()))
            .map_or(Ok(302), |zv| int_arg(zv, "redirect status code"))?;
        if !(300..=399).contains(&code) {
            return Err(error(format!(
                "a redirect's status code must be between 300 and 399, got {code}"
            )));
        }
        if self.head_sent() {
            return Ok(false);
        }
        self.replace_header("Location", vec![location])?;
        self.set_status(code, String::new())?;
        self.end(None)
    }

    /// Sends the status and headers if not yet sent, then `$data` as a chunk of the body, which
    /// goes on until end(). False, sending nothing, when the client has gone away, or when more
    /// than `socket_buffer_size` bytes already wait for a slow client (isWritable() stays true:
    /// write again later).
    pub fn write(&self, data: &Zval) -> PhpResult<bool> {
        let chunk = bytes_arg(data, "response body")?;
        self.no_body_after_101("write()")?;
        Self::pushes_go_first();
        if let Some(stream) = &*self.answer.stream.borrow() {
            return Ok(stream.send(chunk.into()));
        }
        let Some(reply) = self.answer.reply.borrow_mut().take() else {
            return Ok(false);
        };
        let sender = reply.stream(self.head(chunk));
        let started = sender.is_some();
        *self.answer.stream.borrow_mut() = sender;
        Ok(started)
    }

    /// Sends the response with `$data` as body, or after write() `$data` as the last chunk; false
    /// if it was already sent or the client left.
    pub fn end(&self, data: Option<&Zval>) -> PhpResult<bool> {
        let body = match data {
            Some(zv) if !zv.is_null() => bytes_arg(zv, "response body")?,
            _ => Vec::new(),
        };
        Self::pushes_go_first();
        if let Some(stream) = self.answer.stream.borrow_mut().take() {
            return Ok(stream.finish(body.into()));
        }
        if !body.is_empty() {
            self.no_body_after_101("end() with data")?;
        }
        let Some(reply) = self.answer.reply.borrow_mut().take() else {
            return Ok(false);
        };
        let admission = self.admission.borrow_mut().take();
        match admission {
            Some(admission) if self.status.get() == 101 => {
                Ok(admission.admit(reply, self.head(body)))
            }
            _ => Ok(reply.send(self.head(body))),
        }
    }

    /// Sends `$length` bytes of the file `$filename` from `$offset` (0: to its end) as the body,
    /// with a Content-Type from its extension unless one was set, and ends the response. The
    /// file is read as the client takes it. False if the response was already sent or the client
    /// left; throws if the file cannot be read or the range goes past its end.
    pub fn sendfile(
        &self,
        filename: &Zval,
        offset: Option<&Zval>,
        length: Option<&Zval>,
    ) -> PhpResult<bool> {
        // Bytes, as Linux names files: an upload kept under its GBK name is sent too.
        let filename = bytes_arg(filename, "sendfile filename")?;
        let offset = offset.map_or(Ok(0), |zv| int_arg(zv, "offset"))?;
        let length = length.map_or(Ok(0), |zv| int_arg(zv, "length"))?;
        if offset < 0 || length < 0 {
            return Err(error(format!(
                "offset and length must not be negative, got {offset} and {length}"
            )));
        }
        self.no_body_after_101("sendfile()")?;
        let file = FileToSend::open(
            Path::new(OsStr::from_bytes(&filename)),
            offset as u64,
            length as u64,
        )
        .map_err(error)?;
        Self::pushes_go_first();
        let Some(reply) = self.answer.reply.borrow_mut().take() else {
            return Ok(false);
        };
        let typed = (self.headers.borrow().iter())
            .any(|(name, _)| name.eq_ignore_ascii_case("content-type"));
        if !typed {
            let content_type = file.content_type().to_string();
            self.headers
                .borrow_mut()
                .push(("Content-Type".to_string(), content_type));
        }
        Ok(reply.send_file(self.head(Vec::new()), file))
    }

    /// True until end(), unless the client has gone away (a long callback may ask, and stop).
    pub fn is_writable(&self) -> bool {
        self.answer.owed()
    }
}

impl Drop for Response {
    fn drop(&mut self) {
        unanswered::forget(self.fd, &self.answer);
        // The callback neither ended the response nor kept it for later: say so to the client
        // instead of leaving it waiting.
        if let Some(reply) = self.answer.reply.borrow_mut().take() {
            reply.send(HttpResponse::text(
                500,
                "the request callback did not call $response->end()\n",
            ));
        }
    }
}
