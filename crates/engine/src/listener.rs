//! The accept loop and HTTP/1.1 (hyper) on every TCP connection: WebSocket handshakes are
//! upgraded here, other requests go to PHP's `request` callback or get a clear status.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Either, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::ext::ReasonPhrase;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, Version};
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, Semaphore};
use tokio::time::error::Elapsed;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::{open_file_limit, Config};
use crate::connection;
use crate::deflate::{self, inflate::Inflating};
use crate::events::{Answer, Event, HttpRequest, HttpResponse, Responder};
use crate::http_compression;
use crate::http_file::FileBody;
use crate::http_stream::ChunkBody;
use crate::lingering_close::{Linger, LingeringClose};
use crate::listener_not_inherited::Listening;
use crate::logging::Throttle;
use crate::multipart_form;
use crate::registry::Conn;
use crate::send_timeout::SendTimeout;
use crate::shared::{unix_ms, Shared};
use crate::socket::Socket;
use crate::static_files;
use crate::stats::bump;
use crate::tls;

/// Refused connections answered at once, at most. Each holds its socket (and with TLS does a
/// handshake) for up to a few seconds to say why; past this many, a refused connection is
/// closed at once, so that a flood of them cannot use up the file descriptors (and the CPU)
/// that max_connection and max_connections_per_ip are there to bound.
const REFUSALS_AT_ONCE: usize = 256;

/// Refused connections answered at once however few files are left: a max_connection at or
/// above the open-file limit (Swoole configurations carry 100000) leaves none, and every
/// client refused (by max_connections_per_ip too) was reset unanswered.
const REFUSALS_AT_LEAST: usize = 16;

/// How many refusals may be answered at once: at most half the files left beside
/// max_connection (64 by default), so that the connections served keep the files they open
/// (a sendfile(), an upload) when a flood is refused.
fn refusals_at_once(config: &Config) -> usize {
    let spare = open_file_limit().saturating_sub(config.max_connection);
    REFUSALS_AT_ONCE.min(spare / 2).max(REFUSALS_AT_LEAST)
}

/// With `tls`, every connection does its TLS handshake before HTTP. `not_inherited` is the
/// listener's, made when it was bound (before `workerStart`, which may fork).
pub(crate) async fn accept_loop(
    listener: TcpListener,
    not_inherited: Listening,
    shared: Arc<Shared>,
    tls: Option<TlsAcceptor>,
) {
    accept_until_stopped(&listener, shared, tls).await;
    // Before the socket closes: its number may then be another file's.
    drop(not_inherited);
}

const REFUSALS_WARN_EVERY: Duration = Duration::from_secs(10);

/// What to do when out of files: the line said only "Too many open files". Open files other
/// than connections (the app's own: a database, log files, a sendfile()) count against the
/// limit too.
fn out_of_files_hint(err: &std::io::Error, config: &Config) -> String {
    match err.raw_os_error() {
        Some(libc::EMFILE) => format!(
            " (the open-file limit is {}, max_connection {}: the app's own files count too; raise the limit with ulimit -n or systemd's LimitNOFILE; clients wait in the kernel's queue meanwhile)",
            open_file_limit(),
            config.max_connection
        ),
        _ => String::new(),
    }
}

async fn accept_until_stopped(
    listener: &TcpListener,
    shared: Arc<Shared>,
    tls: Option<TlsAcceptor>,
) {
    let mut stopping = shared.stopping.subscribe();
    let mut signalled = shared.signalled.subscribe();
    let refusals = Arc::new(Semaphore::new(refusals_at_once(&shared.config)));
    // An accept failing again and again (out of files) is logged once until one succeeds.
    let mut failing = false;
    // A server turning clients away says so (it said nothing: a worker full after a reload
    // refused a third of all clients for minutes, seen only in stats()).
    let refusing = Throttle::new(REFUSALS_WARN_EVERY);
    loop {
        let accepted = tokio::select! {
            _ = stopping.wait_for(Option::is_some) => break,
            // A stop signal ends accepting before PHP hears of it (it may be in a long
            // callback): the port is free at once for the server that replaces this one (a
            // worker orphaned by a killed master held it until then, and took clients in only
            // to close them).
            _ = signalled.wait_for(|s| *s) => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, remote)) => {
                failing = false;
                let _ = stream.set_nodelay(true);
                match admit(&shared, remote.ip()) {
                    Ok(admitted) => {
                        bump(&shared.stats.accepted, 1);
                        tokio::spawn(serve_tcp(
                            stream,
                            remote,
                            shared.clone(),
                            tls.clone(),
                            admitted,
                        ));
                    }
                    Err(why) => {
                        bump(&shared.stats.rejected, 1);
                        if refusing.due() {
                            let so_far = shared.stats.rejected.load(Relaxed);
                            log::warn!(target: "surge", "refusing connections: {} ({so_far} refused so far; said at most every {}s)", why.trim_end(), REFUSALS_WARN_EVERY.as_secs());
                        }
                        // Without a permit the stream is dropped here: closed unanswered.
                        if let Ok(permit) = refusals.clone().try_acquire_owned() {
                            let (tls, wait) = (tls.clone(), shared.config.handshake_timeout);
                            tokio::spawn(async move {
                                refuse_tcp(stream, why, tls, wait).await;
                                drop(permit);
                            });
                        }
                    }
                }
            }
            Err(err) => {
                // Out of file descriptors or similar: say so once per burst and let the
                // system recover instead of spinning.
                if !std::mem::replace(&mut failing, true) {
                    log::error!(target: "surge", "accept failed: {err}{}", out_of_files_hint(&err, &shared.config));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// What a connection let in holds: its place in `max_connection`, and in
/// `max_connections_per_ip` when that is set.
struct Admitted {
    live: HttpLive,
    slot: Option<Arc<IpSlot>>,
}

/// Whether a new connection from `ip` may be served (counted live at once: a burst accepted
/// before the first of it ran went past max_connection, at its default out of files); if not,
/// why (the body of a 503).
fn admit(shared: &Arc<Shared>, ip: IpAddr) -> Result<Admitted, String> {
    let max = shared.config.max_connection;
    if shared.live_connections() >= max {
        return Err(format!(
            "server is at its connection limit (max_connection = {max})\n"
        ));
    }
    let per_ip = shared.config.max_connections_per_ip;
    let slot = if per_ip == 0 {
        None
    } else {
        let mut counts = shared.per_ip.lock();
        let open = counts.entry(ip).or_insert(0);
        if *open >= per_ip {
            return Err(format!(
                "too many connections from {ip} (max_connections_per_ip = {per_ip})\n"
            ));
        }
        *open += 1;
        Some(Arc::new(IpSlot {
            counts: shared.per_ip.clone(),
            ip,
        }))
    };
    Ok(Admitted {
        live: HttpLive::new(shared),
        slot,
    })
}

/// One connection's place in `max_connections_per_ip`, held by its HTTP connection and then
/// its WebSocket; given back when the last holder drops it.
#[derive(Debug)]
pub(crate) struct IpSlot {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock();
        if let Some(open) = counts.get_mut(&self.ip) {
            *open -= 1;
            if *open == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// A refused connection gets its 503 in the protocol it speaks.
async fn refuse_tcp(stream: TcpStream, why: String, tls: Option<TlsAcceptor>, wait: Duration) {
    match tls {
        None => refuse(stream, "503 Service Unavailable", &why, wait).await,
        Some(tls) => {
            if let Some(stream) = tls_handshake(&tls, stream, wait).await {
                refuse(stream, "503 Service Unavailable", &why, wait).await;
            }
        }
    }
}

/// The TLS handshake, within `wait`. A client speaking plain HTTP to the TLS port is told so.
async fn tls_handshake(
    tls: &TlsAcceptor,
    stream: TcpStream,
    wait: Duration,
) -> Option<TlsStream<TcpStream>> {
    let handshake = async {
        let mut first = [0u8; 1];
        if stream.peek(&mut first).await.ok()? == 0 {
            return None;
        }
        if first[0] != tls::HANDSHAKE_RECORD {
            refuse(
                stream,
                "400 Bad Request",
                "this port speaks TLS: connect with wss:// or https://\n",
                wait,
            )
            .await;
            return None;
        }
        tls.accept(stream)
            .await
            .map_err(|err| log::debug!(target: "surge", "TLS handshake failed: {err}"))
            .ok()
    };
    if wait.is_zero() {
        handshake.await
    } else {
        tokio::time::timeout(wait, handshake).await.ok().flatten()
    }
}

/// A clear answer (`status` such as "503 Service Unavailable"), then the connection is closed.
async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    status: &str,
    body: &str,
    wait: Duration,
) {
    // Answer once the request head is in: a client still sending its request when the answer
    // and the close arrive may fail on its write and never read the answer.
    read_until(&mut stream, wait, |seen| {
        seen.windows(4).any(|w| w == b"\r\n\r\n")
    })
    .await;
    let retry = if status.starts_with("503") {
        "retry-after: 5\r\n"
    } else {
        ""
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n{retry}\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(reply.as_bytes())).await;
    let _ = stream.shutdown().await;
    // Closing with unread input would send a reset, which can make the client drop the 503
    // before reading it: read until the client closes too.
    read_until(&mut stream, Duration::from_secs(1), |_| false).await;
}

/// Reads (and drops) from `stream` until `done` says so about the last 16 KiB read, the client
/// closes, 64 KiB have been read, or `wait` has passed.
async fn read_until<S: AsyncRead + Unpin>(
    stream: &mut S,
    wait: Duration,
    done: impl Fn(&[u8]) -> bool,
) {
    let _ = tokio::time::timeout(wait, async {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        let mut total = 0;
        while total < 64 * 1024 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    total += n;
                    seen.extend_from_slice(&buf[..n]);
                    if done(&seen) {
                        return;
                    }
                    let excess = seen.len().saturating_sub(16 * 1024);
                    seen.drain(..excess);
                }
            }
        }
    })
    .await;
}

/// Counts a TCP connection as live for `max_connection` while it speaks HTTP. Shared by hyper's
/// connection and the requests it serves: an upgrade holds it until its WebSocket is in the
/// registry, which counts it from then on, so the connection is never counted nowhere (for a
/// moment it is counted twice: a client arriving then at the limit is refused, never let past).
struct HttpLive(Arc<Shared>);

impl HttpLive {
    fn new(shared: &Arc<Shared>) -> Self {
        shared.http_live.fetch_add(1, Relaxed);
        HttpLive(shared.clone())
    }
}

impl Drop for HttpLive {
    fn drop(&mut self) {
        self.0.http_live.fetch_sub(1, Relaxed);
        self.0.http_ended.fetch_add(1, Relaxed);
    }
}

async fn serve_tcp(
    stream: TcpStream,
    remote: SocketAddr,
    shared: Arc<Shared>,
    tls: Option<TlsAcceptor>,
    Admitted { live, slot }: Admitted,
) {
    let peer = Peer {
        fd: shared.next_fd(),
        remote,
        server_port: stream.local_addr().map(|a| a.port()).unwrap_or(0),
        connect_time: unix_ms() / 1000,
        _slot: slot,
        live: Some(Arc::new(live)),
        linger: Linger::default(),
    };
    match tls {
        None => serve_http(stream, peer, shared).await,
        Some(tls) => {
            // A handshake under way when the server stops is dropped: the stop waits for
            // requests being answered, not for connections that have not begun one.
            let handshake = tls_handshake(&tls, stream, shared.config.handshake_timeout);
            if let Some(Some(stream)) = unless_stopping(&shared, handshake).await {
                serve_http(stream, peer, shared).await;
            }
        }
    }
}

/// hyper's read buffer for a request head (request line and headers): nginx's default buffers
/// (4 x 8 KiB) and a margin for large cookies.
const MAX_HEAD_BYTES: usize = 64 * 1024;

async fn serve_http<S>(stream: S, peer: Peer, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let fd = peer.fd;
    let linger = peer.linger.clone();
    let timeout = shared.config.handshake_timeout;
    let svc = {
        let shared = shared.clone();
        service_fn(move |req| {
            let (shared, peer) = (shared.clone(), peer.clone());
            async move {
                let res = handle(req, peer, shared).await;
                // An error is hyper's way to close the connection without an answer.
                match res.extensions().get::<Dropped>() {
                    Some(_) => Err(Dropped),
                    None => Ok(res),
                }
            }
        })
    };
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new());
    // hyper's own limit (about 400 KiB) let each client that sends most of a head and waits
    // hold that much: 1,000 of them, 414 MB for the timeout. The buffer grows in steps, so a
    // head up to about twice this may still be read whole; past it, 431.
    builder.max_buf_size(MAX_HEAD_BYTES);
    if !timeout.is_zero() {
        // Drops a client that trickles its headers (or never sends any) after the timeout.
        builder.header_read_timeout(timeout);
    }
    let mut conn = std::pin::pin!(builder
        .serve_connection(
            TokioIo::new(SendTimeout::new(
                LingeringClose::new(stream, linger),
                shared.config.send_timeout,
            )),
            svc,
        )
        .with_upgrades());
    let ended = match unless_stopping(&shared, conn.as_mut()).await {
        Some(ended) => ended,
        None => {
            // Finish the request under way (its callback may still be answering it), then
            // close: the stop waits for that answer, not for a keep-alive client's next request.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(err) = ended {
        log::debug!(target: "surge", "fd {fd}: http connection ended: {err}");
    }
}

/// `work`'s output, or None if the server begins to stop first.
async fn unless_stopping<T>(shared: &Shared, work: impl Future<Output = T>) -> Option<T> {
    let mut stopping = shared.stopping.subscribe();
    tokio::select! {
        done = work => Some(done),
        _ = stopping.wait_for(Option::is_some) => None,
    }
}

/// Serves one in-memory connection as if accepted from 127.0.0.1 (fuzzing and its tests).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) async fn serve_stream<S>(stream: S, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let fd = shared.next_fd();
    let peer = Peer {
        fd,
        remote: ([127, 0, 0, 1], 40000).into(),
        server_port: 9501,
        connect_time: 0,
        _slot: None,
        live: None,
        linger: Linger::default(),
    };
    serve_http(stream, peer, shared).await
}

/// Marks a reply that is not to be sent: PHP closed the connection instead
/// ([`crate::Responder::close_connection`]).
#[derive(Debug, Clone, Copy)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("closed by PHP without an answer")
    }
}

impl std::error::Error for Dropped {}

/// A whole body, or one PHP writes in chunks (`Response::write()`), or a file
/// (`Response::sendfile()`).
type Reply = Response<Either<Full<Bytes>, Either<ChunkBody, FileBody>>>;

/// Who is on the other end of one TCP connection.
#[derive(Clone)]
struct Peer {
    fd: u64,
    remote: SocketAddr,
    server_port: u16,
    /// Unix seconds.
    connect_time: u64,
    /// Held as long as the connection lives (see `max_connections_per_ip`).
    _slot: Option<Arc<IpSlot>>,
    /// Held while the connection speaks HTTP, and by an upgrade until it is registered.
    live: Option<Arc<HttpLive>>,
    /// Armed by an answer that leaves part of its request unread.
    linger: Linger,
}

async fn handle(req: Request<Incoming>, peer: Peer, shared: Arc<Shared>) -> Reply {
    bump(&shared.stats.http_requests, 1);
    if shared.is_stopping() {
        return reply(HttpResponse::text(503, "server is shutting down\n"));
    }
    if !one_host(&req) {
        let refused = HttpResponse::text(400, "a request names its host once (Host)\n");
        return closing(refused, req.version(), &peer.linger);
    }
    if wants_websocket(&req) {
        let mut res = upgrade(req, peer, shared).await;
        // A refused handshake ends its connection: a proxy that opens a tunnel on seeing
        // Upgrade, without looking for the 101, would hand its client a raw connection here
        // for what follows (WebSocket smuggling).
        if res.status() != StatusCode::SWITCHING_PROTOCOLS {
            (res.headers_mut()).insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        return res;
    }
    if shared.pusher.is_api_path(req.uri().path()) {
        let version = req.version();
        return match crate::pusher::api::serve(req, &shared).await {
            Ok(response) => reply(response),
            Err(refused) => closing(refused, version, &peer.linger),
        };
    }
    if let Some(file) = static_file(&req, &shared) {
        return file;
    }
    if !shared.handlers.request.load(Relaxed) {
        if let Some(unknown) =
            crate::pusher::api::unknown_app(&shared, req.method(), req.uri().path())
        {
            return reply(unknown);
        }
        let mut res = reply(HttpResponse::text(
            426,
            "This is a WebSocket server: connect with a WebSocket client (Upgrade: websocket).\n",
        ));
        res.headers_mut()
            .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        return res;
    }
    let (parts, body) = req.into_parts();
    // No body (a GET with a form's Content-Type, an empty POST) is no form: PHP runs the
    // script with empty $_POST then.
    let boundary = (parts.headers.get(header::CONTENT_TYPE))
        .filter(|_| !hyper::body::Body::is_end_stream(&body))
        .and_then(|value| value.to_str().ok())
        .and_then(multipart_form::boundary);
    // A multipart form goes to temporary files as it arrives; another body is read whole.
    let read = match boundary {
        Some(boundary) => read_form(body, boundary, &shared)
            .await
            .map(|form| (Bytes::new(), Some(form))),
        None => read_body(
            body,
            BodyLimit::package_max_length(&shared.config),
            &shared.config,
        )
        .await
        .map(|body| (body, None)),
    };
    let (body, form) = match read {
        Ok(read) => read,
        Err((status, message)) => {
            return closing(
                HttpResponse::text(status, &format!("{message}\n")),
                parts.version,
                &peer.linger,
            )
        }
    };
    let mut request = http_request(
        &parts.method,
        &parts.uri,
        parts.version,
        &parts.headers,
        body,
        &peer,
    );
    request.form = form;
    let (tx, rx) = oneshot::channel();
    let held = shared.hold_inbound(request.body.len()).await;
    if shared
        .events
        .send(Event::Request {
            request: Box::new(request),
            reply: Responder {
                tx,
                stream_limit: shared.config.socket_buffer_size,
            },
            held,
        })
        .await
        .is_err()
    {
        return reply(HttpResponse::text(503, "server is shutting down\n"));
    }
    answered(
        rx.await,
        parts.method == Method::HEAD,
        &parts.headers,
        &shared,
    )
}

/// What PHP answered to a request (`request_headers` its headers), as hyper sends it.
fn answered(
    answer: Result<Answer, oneshot::error::RecvError>,
    head_request: bool,
    request_headers: &header::HeaderMap,
    shared: &Shared,
) -> Reply {
    match answer {
        Ok(Answer::Whole(mut response)) => {
            drop_framing(&mut response, head_request);
            if !head_request {
                http_compression::apply(&mut response, request_headers, &shared.config);
            }
            reply(response)
        }
        Ok(Answer::Streamed(mut head, chunks)) => {
            // Sent chunked: a Content-Length of PHP's that the chunks do not add up to made
            // hyper cut the response off (nothing at all when it was too large).
            drop_framing(&mut head, head_request);
            let mut stopping = shared.stopping.subscribe();
            let stop = async move {
                let _ = stopping.wait_for(Option::is_some).await;
            };
            let first = std::mem::take(&mut head.body);
            let body = ChunkBody::new(first, chunks, stop);
            with_head(head, Either::Right(Either::Left(body)))
        }
        Ok(Answer::File(mut head, file)) => {
            drop_framing(&mut head, false);
            with_head(head, Either::Right(Either::Right(FileBody::new(file))))
        }
        Ok(Answer::Dropped) => {
            let mut res = reply(HttpResponse::text(500, ""));
            res.extensions_mut().insert(Dropped);
            res
        }
        // Only a handshake's answer can be one (see `upgrade`).
        Ok(Answer::Admitted(_)) | Err(_) => {
            reply(HttpResponse::text(500, "the callback sent no response\n"))
        }
    }
}

/// Takes out the framing headers PHP set on a response whose body Surge has whole: hyper frames
/// it, and writes a Content-Length as given, so one that is not the body's would end the
/// response early (the rest read as the next response on a keep-alive connection) or leave the
/// client waiting. For HEAD, PHP's Content-Length stays: it tells the size of what GET sends.
fn drop_framing(response: &mut HttpResponse, head_request: bool) {
    response.headers.retain(|(name, _)| {
        !name.eq_ignore_ascii_case("transfer-encoding")
            && (head_request || !name.eq_ignore_ascii_case("content-length"))
    });
}

/// Swoole's static handler: the answer for a file under `document_root`, if the request names
/// one.
fn static_file(req: &Request<Incoming>, shared: &Shared) -> Option<Reply> {
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return None;
    }
    let path = match static_files::find(&shared.config, req.uri().path())? {
        static_files::Found::File(path) => path,
        static_files::Found::DirectoryWithoutSlash => {
            let uri = req.uri();
            let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
            let mut moved = HttpResponse::text(301, "");
            // One leading slash: `//docs/` (or `/\docs/`: browsers read `\` as `/`) would
            // be another host's address to a browser.
            let path = uri
                .path()
                .trim_start_matches(['/', '\\'])
                .replace('\\', "%5C");
            (moved.headers).push(("location".into(), format!("/{path}/{query}")));
            return Some(reply(moved));
        }
    };
    let (head, file) = static_files::answer(&path, req.headers())?;
    Some(match file {
        Some(file) => with_head(head, Either::Right(Either::Right(FileBody::new(file)))),
        None => reply(head),
    })
}

/// How much of a request body is read, and the name a refusal gives that limit.
#[derive(Clone, Copy)]
pub(crate) struct BodyLimit {
    pub bytes: usize,
    pub name: &'static str,
}

impl BodyLimit {
    fn package_max_length(config: &Config) -> Self {
        BodyLimit {
            bytes: config.package_max_length,
            name: "package_max_length",
        }
    }
}

/// A request body read whole, within `limit` and its pauses within `handshake_timeout` (see
/// [`paced`]). Refused: the HTTP status and why.
pub(crate) async fn read_body(
    body: Incoming,
    limit: BodyLimit,
    config: &Config,
) -> Result<Bytes, (u16, String)> {
    // Sized from Content-Length (grown by doubling it would take a quarter more), up to 1 MiB:
    // a header alone should not make the server reserve the whole limit.
    let expected = hyper::body::Body::size_hint(&body).lower() as usize;
    let mut pieces = std::pin::pin!(paced(body, limit, config)?);
    let mut whole = bytes::BytesMut::with_capacity(expected.min(limit.bytes).min(1 << 20));
    while let Some(piece) = pieces.next().await {
        whole.extend_from_slice(&piece.map_err(|cause| refusal(&*cause, limit, config))?);
    }
    Ok(whole.freeze())
}

/// A body's pieces as they arrive: within `limit` in all, and (unless it is 0) with no pause
/// longer than `handshake_timeout` (a large body may take long; a stalled one may not). One
/// whose Content-Length is over the limit is refused before a byte of it is read (a client
/// that sent `Expect: 100-continue` then sends none).
fn paced(
    body: Incoming,
    limit: BodyLimit,
    config: &Config,
) -> Result<impl futures_util::Stream<Item = Result<Bytes, BoxError>>, (u16, String)> {
    let wait = config.handshake_timeout;
    if hyper::body::Body::size_hint(&body).lower() > limit.bytes as u64 {
        return Err(over_limit(limit));
    }
    let pieces = Limited::new(body, limit.bytes).into_data_stream();
    Ok(futures_util::stream::unfold(
        pieces,
        move |mut pieces| async move {
            let next = if wait.is_zero() {
                pieces.next().await
            } else {
                match tokio::time::timeout(wait, pieces.next()).await {
                    Ok(next) => next,
                    Err(elapsed) => Some(Err(elapsed.into())),
                }
            };
            next.map(|piece| (piece, pieces))
        },
    ))
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The refusal of a body that `paced` failed to read.
fn refusal(
    cause: &(dyn std::error::Error + Send + Sync + 'static),
    limit: BodyLimit,
    config: &Config,
) -> (u16, String) {
    if cause.is::<LengthLimitError>() {
        over_limit(limit)
    } else if cause.is::<Elapsed>() {
        let wait = config.handshake_timeout;
        (
            408,
            format!("the request body stopped arriving for handshake_timeout ({wait:?})"),
        )
    } else {
        (400, format!("the request body could not be read: {cause}"))
    }
}

/// RFC 9112 3.2: a request has one Host header, or none in HTTP/1.0. Two may be read one way by
/// a proxy and the other by the application (which host a cache keys, which PHP sees).
fn one_host<B>(req: &Request<B>) -> bool {
    match req.headers().get_all(header::HOST).iter().count() {
        1 => true,
        0 => req.version() == Version::HTTP_10,
        _ => false,
    }
}

/// `response` to a request whose body was refused before it was read whole: hyper closes the
/// connection after it (the rest of the body would be read as the next request), and it says
/// so, or a keep-alive client would send its next request on it and get a reset; the close
/// lingers (see `lingering_close`), so that a client still sending reads the answer. To
/// HTTP/1.0 as an HTTP/1.0 response: hyper then leaves keep-alive off (it would add its own
/// `keep-alive` beside a `close`).
fn closing(mut response: HttpResponse, version: Version, linger: &Linger) -> Reply {
    linger.arm();
    if version == Version::HTTP_10 {
        let mut res = reply(response);
        *res.version_mut() = Version::HTTP_10;
        return res;
    }
    (response.headers).push(("connection".into(), "close".into()));
    reply(response)
}

/// The refusal of a body (whole or a form) longer than its limit.
fn over_limit(limit: BodyLimit) -> (u16, String) {
    let BodyLimit { bytes, name } = limit;
    (413, format!("request body over {name} ({bytes} bytes)"))
}

/// A `multipart/form-data` body split into fields and files as it arrives, read as [`paced`]
/// reads. Refused: the HTTP status and why.
async fn read_form(
    body: Incoming,
    boundary: String,
    shared: &Shared,
) -> Result<multipart_form::MultipartForm, (u16, String)> {
    let config = &shared.config;
    let limit = BodyLimit::package_max_length(config);
    let pieces = paced(body, limit, config)?;
    let tmp_dir = &config.upload_tmp_dir;
    multipart_form::parse(
        pieces,
        boundary,
        tmp_dir,
        config.max_file_uploads,
        config.max_multipart_body_parts,
    )
    .await
    .map_err(|e| match &e {
        multer::Error::StreamReadFailed(cause) => refusal(&**cause, limit, config),
        _ => (400, format!("malformed multipart/form-data body: {e}")),
    })
}

fn reply(mut response: HttpResponse) -> Reply {
    let body = std::mem::take(&mut response.body);
    with_head(response, Either::Left(Full::new(body)))
}

/// `body` with the status and headers of `response` (whose own body is not used).
fn with_head<B>(response: HttpResponse, body: B) -> Response<B> {
    let mut res = Response::new(body);
    *res.status_mut() =
        StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    // A code with no phrase of its own (299, 600) would go out as `<none>`, hyper's word for it.
    let unknown = res
        .status()
        .canonical_reason()
        .is_none()
        .then(|| "Unknown".to_string());
    if let Some(reason) = (response.reason.or(unknown)).and_then(|r| ReasonPhrase::try_from(r).ok())
    {
        res.extensions_mut().insert(reason);
    }
    append_headers(res.headers_mut(), response.headers);
    res
}

/// PHP's headers, checked by the PHP layer (no control characters); an invalid one is left
/// out.
fn append_headers(to: &mut header::HeaderMap, headers: Vec<(String, String)>) {
    for (name, value) in headers {
        match (
            header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            (Ok(name), Ok(value)) => {
                to.append(name, value);
            }
            _ => log::warn!(target: "surge", "dropped invalid response header {name:?}"),
        }
    }
}

fn has_token(req: &Request<Incoming>, name: header::HeaderName, token: &str) -> bool {
    req.headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

fn wants_websocket(req: &Request<Incoming>) -> bool {
    has_token(req, header::UPGRADE, "websocket")
}

async fn upgrade(mut req: Request<Incoming>, peer: Peer, shared: Arc<Shared>) -> Reply {
    if req.method() != hyper::Method::GET || !has_token(&req, header::CONNECTION, "upgrade") {
        return reply(HttpResponse::text(
            400,
            "a WebSocket handshake must be a GET with Connection: Upgrade\n",
        ));
    }
    if req
        .headers()
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(|v| v.as_bytes())
        != Some(b"13")
    {
        let mut res = reply(HttpResponse::text(
            426,
            "unsupported WebSocket version: only 13 is spoken here\n",
        ));
        res.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return res;
    }
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .map(|o| o.to_str().unwrap_or("(not text)"));
    if !shared.config.origin_allowed(origin) {
        log::debug!(target: "surge", "fd {}: handshake from origin {origin:?} refused (allowed_origins)", peer.fd);
        return reply(HttpResponse::text(
            403,
            "this origin may not open a WebSocket here (allowed_origins)\n",
        ));
    }
    let Some(key) = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .filter(|k| k.len() == 24)
    else {
        return reply(HttpResponse::text(
            400,
            "missing or malformed Sec-WebSocket-Key\n",
        ));
    };
    let accept = accept_key(key.as_bytes());
    let offers = req.headers().get_all(header::SEC_WEBSOCKET_EXTENSIONS);
    let agreed = shared
        .config
        .websocket_compression
        .then(|| deflate::negotiate(offers.iter().filter_map(|v| v.to_str().ok())))
        .flatten();
    let window_bits = agreed.as_ref().map(|a| a.window_bits);
    let handshake = http_request(
        req.method(),
        req.uri(),
        req.version(),
        req.headers(),
        Bytes::new(),
        &peer,
    );
    let asked =
        shared.handlers.handshake.load(Relaxed) && !shared.pusher.is_socket_path(&handshake.path);
    let (arrival, php_headers) = if asked {
        match ask_php(handshake, &req, &peer, &shared).await {
            Ok((conn, headers)) => (Arrival::Admitted(Unopened::new(conn, &shared)), headers),
            Err(refused) => return refused,
        }
    } else {
        (Arrival::Handshake(Box::new(handshake)), Vec::new())
    };
    let protocol = subprotocol(req.headers(), &shared.config.websocket_subprotocol);
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => established(upgraded, window_bits, arrival, peer, shared).await,
            Err(err) => {
                log::debug!(target: "surge", "fd {}: upgrade failed: {err}", peer.fd);
                if let Arrival::Admitted(admitted) = arrival {
                    admitted.forget(&shared).await;
                }
            }
        }
    });
    let mut res = Response::new(Either::Left(Full::new(Bytes::new())));
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = res.headers_mut();
    append_headers(h, php_headers);
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).expect("base64 is a valid header"),
    );
    if let Some(agreed) = agreed {
        h.insert(
            header::SEC_WEBSOCKET_EXTENSIONS,
            HeaderValue::from_str(&agreed.response).expect("ASCII we wrote"),
        );
    }
    // A `handshake` callback's own choice stands.
    if let Some(chosen) = protocol.filter(|_| !h.contains_key(header::SEC_WEBSOCKET_PROTOCOL)) {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, chosen);
    }
    res
}

/// The first subprotocol the client asks for that `websocket_subprotocol` lists. A browser
/// that asked for one fails the connection when the answer names none, as RFC 6455 lets it.
fn subprotocol(headers: &header::HeaderMap, ours: &[String]) -> Option<HeaderValue> {
    let asked = headers.get_all(header::SEC_WEBSOCKET_PROTOCOL).iter();
    asked
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find(|p| ours.iter().any(|o| o == p))
        .and_then(|p| HeaderValue::from_str(p).ok())
}

/// Hands a handshake to the `handshake` callback. Let in: the connection (registered by
/// [`crate::events::Admission::admit`]) and the headers of PHP's 101 to send beside the
/// handshake's own; refused: PHP's answer, sent as to a request.
async fn ask_php(
    handshake: HttpRequest,
    req: &Request<Incoming>,
    peer: &Peer,
    shared: &Arc<Shared>,
) -> Result<(Arc<Conn>, Vec<(String, String)>), Reply> {
    let conn = Arc::new(Conn::new(
        peer.fd,
        peer.remote,
        peer.connect_time,
        shared.now_ms(),
    ));
    // Should this future be dropped (the client gone) after PHP let the connection in, the
    // guard takes it out again.
    let unopened = Unopened::new(conn.clone(), shared);
    let (tx, rx) = oneshot::channel();
    let event = Event::Handshake {
        request: Box::new(handshake),
        reply: Responder {
            tx,
            stream_limit: shared.config.socket_buffer_size,
        },
        admission: crate::events::Admission {
            conn,
            shared: shared.clone(),
        },
    };
    if shared.events.send(event).await.is_err() {
        return Err(reply(HttpResponse::text(503, "server is shutting down\n")));
    }
    match rx.await {
        Ok(Answer::Admitted(head)) => {
            // What the handshake itself says is Surge's to write (PHP's own Accept may be
            // wrong; extensions are the ones agreed here).
            let headers = (head.headers.into_iter())
                .filter(|(name, _)| {
                    !HANDSHAKE_OWN
                        .iter()
                        .any(|own| name.eq_ignore_ascii_case(own))
                })
                .collect();
            Ok((unopened.disarm(), headers))
        }
        answer => Err(answered(answer, false, req.headers(), shared)),
    }
}

/// The headers of a 101 that Surge writes itself, whatever PHP set (Swoole code sets them all).
const HANDSHAKE_OWN: [&str; 8] = [
    "upgrade",
    "connection",
    "sec-websocket-accept",
    "sec-websocket-extensions",
    "sec-websocket-version",
    "content-length",
    "content-type",
    "transfer-encoding",
];

/// A connection the `handshake` callback let in (so registered) but not yet served: until it
/// is, dropping this takes it out of the registry and tells PHP it closed, since PHP was told
/// it was in.
struct Unopened {
    conn: Option<Arc<Conn>>,
    shared: Arc<Shared>,
}

impl Unopened {
    fn new(conn: Arc<Conn>, shared: &Arc<Shared>) -> Self {
        Unopened {
            conn: Some(conn),
            shared: shared.clone(),
        }
    }

    fn disarm(mut self) -> Arc<Conn> {
        self.conn.take().expect("armed until disarmed")
    }

    /// The connection ends unserved (the upgrade failed): its close event.
    async fn forget(self, shared: &Shared) {
        let conn = self.disarm();
        connection::forget(&conn, connection::ABNORMAL, false, shared).await;
    }
}

impl Drop for Unopened {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        // Not let in (refused, or PHP has not answered): nothing to undo.
        if !(self.shared.registry.get(conn.fd)).is_some_and(|c| Arc::ptr_eq(&c, &conn)) {
            return;
        }
        connection::forget_unserved(conn, self.shared.clone());
    }
}

/// How a WebSocket connection came in.
enum Arrival {
    /// Through Surge's own handshake: PHP's `open` is told, with the handshake.
    Handshake(Box<HttpRequest>),
    /// Let in by the `handshake` callback, so already registered; no `open` (Swoole's rule).
    Admitted(Unopened),
}

/// The Sec-WebSocket-Accept answer to a client's Sec-WebSocket-Key (RFC 6455 4.2.2).
fn accept_key(key: &[u8]) -> String {
    const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let mut sha1 = Sha1::new();
    sha1.update(key);
    sha1.update(GUID);
    data_encoding::BASE64.encode(&sha1.finalize())
}

/// `window_bits`: Some if permessage-deflate was agreed.
async fn established(
    upgraded: hyper::upgrade::Upgraded,
    window_bits: Option<u8>,
    arrival: Arrival,
    peer: Peer,
    shared: Arc<Shared>,
) {
    let fd = peer.fd;
    let pusher = matches!(&arrival, Arrival::Handshake(h) if shared.pusher.is_socket_path(&h.path));
    // A Pusher client's messages are small: a larger one is refused as it comes.
    let max = match pusher {
        true => crate::pusher::MAX_CLIENT_MESSAGE.min(shared.config.package_max_length),
        false => shared.config.package_max_length,
    };
    let (socket, read_past_handshake) = Socket::from_upgraded(upgraded);
    let (socket, first) = Inflating::new(
        socket,
        window_bits,
        max,
        read_past_handshake,
        &shared.large_messages,
    );
    let ws = connection::WebSocket::new(socket, max, &first);
    let (conn, handshake) = match arrival {
        Arrival::Admitted(unopened) => (unopened.disarm(), None),
        Arrival::Handshake(handshake) => {
            let conn = Arc::new(Conn::new(
                fd,
                peer.remote,
                peer.connect_time,
                shared.now_ms(),
            ));
            if pusher {
                // Served natively, not by PHP's open/message; marked as the Pusher protocol's
                // before it is registered, so that no broadcast() in between sends it a frame
                // pusher-js cannot read.
                crate::pusher::socket::open(&conn, &handshake, &shared);
            }
            // Registered before `open` is sent, so the open callback can already push to it.
            shared.registry.insert(conn.clone());
            (conn, (!pusher).then_some(handshake))
        }
    };
    log::debug!(target: "surge", "fd {fd} open from {}", peer.remote);
    shared.close_if_stopping(&conn);
    drop(peer.live);
    if let Some(handshake) = handshake {
        if !announce(handshake, &conn, &shared).await {
            shared.registry.remove(fd);
            return;
        }
    }
    // Its own task, so the long-lived future holds only what the connection needs, not this
    // function's handshake and upgrade state (they were 2.2 KB of every idle connection).
    // The connection keeps its place in max_connections_per_ip until it ends.
    tokio::spawn(connection::run(ws, conn, shared, peer._slot));
}

/// Tells PHP about a new connection. Takes the handshake so that it is freed here, not kept
/// for the connection's whole life when nobody listens to `open`.
async fn announce(handshake: Box<HttpRequest>, conn: &Arc<Conn>, shared: &Shared) -> bool {
    if !shared.handlers.open.load(Relaxed) {
        return true;
    }
    let open = Event::Open {
        fd: conn.fd,
        request: handshake,
    };
    // Registered, so the heartbeat sees it: a wait for room while PHP is behind is the
    // server's, not the client's silence.
    conn.set_held(true);
    let sent = Box::pin(shared.events.send(open)).await.is_ok();
    conn.end_hold(shared.now_ms());
    sent
}

fn http_request(
    method: &hyper::Method,
    uri: &hyper::Uri,
    version: hyper::Version,
    headers: &hyper::HeaderMap,
    body: Bytes,
    peer: &Peer,
) -> HttpRequest {
    HttpRequest {
        fd: peer.fd,
        method: method.as_str().to_owned(),
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or("").to_owned(),
        protocol: if version == hyper::Version::HTTP_10 {
            "HTTP/1.0"
        } else {
            "HTTP/1.1"
        },
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
        form: None,
        remote: peer.remote,
        server_port: peer.server_port,
        connect_time: peer.connect_time,
        time: unix_ms() as f64 / 1000.0,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_accept_key_is_rfc_6455s_example() {
        assert_eq!(
            super::accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
