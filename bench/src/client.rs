//! Opening WebSocket client connections: an optional source address, TCP_NODELAY, small
//! tungstenite buffers (the default 128 KiB read buffer is zero-filled on every read and would
//! make the client, not the server, the thing being measured).

use crate::args::Args;
use futures_util::StreamExt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub type Ws = WebSocketStream<TcpStream>;

/// Where to connect: the URL for the handshake, the resolved address, the source address.
#[derive(Clone)]
pub struct Target {
    pub url: String,
    addr: SocketAddr,
    bind: Option<IpAddr>,
    /// Offer permessage-deflate in the handshake (only for clients that never read data
    /// messages: this client cannot inflate them).
    offer_deflate: bool,
}

impl Target {
    /// `ws://host:port/path`; the benchmark only ever targets this machine.
    pub fn new(url: &str, bind: Option<IpAddr>) -> Result<Target, String> {
        let rest = url
            .strip_prefix("ws://")
            .ok_or_else(|| format!("--url must start with ws://, got '{url}'"))?;
        let authority = rest.split('/').next().unwrap_or_default();
        let addr = authority
            .to_socket_addrs()
            .map_err(|e| format!("--url {url}: {e}"))?
            .find(|a| bind.is_none_or(|b| b.is_ipv4() == a.is_ipv4()))
            .ok_or_else(|| format!("--url {url}: no usable address"))?;
        if !addr.ip().is_loopback() {
            return Err(format!("--url {url}: only loopback addresses are allowed"));
        }
        if let Some(b) = bind.filter(|b| !b.is_loopback()) {
            return Err(format!("--bind {b}: only loopback addresses are allowed"));
        }
        Ok(Target {
            url: url.to_string(),
            addr,
            bind,
            offer_deflate: false,
        })
    }

    /// From `--url` (required) and `--bind` (optional).
    pub fn from_args(args: &mut Args) -> Result<Target, String> {
        let url: String = args.required("url")?;
        Target::new(&url, args.optional("bind")?)
    }

    /// The same target, offering permessage-deflate (for idle connections).
    pub fn offering_deflate(self, offer: bool) -> Target {
        Target {
            offer_deflate: offer,
            ..self
        }
    }

    /// TCP connect (from the source address if one was given), then the WebSocket handshake,
    /// both within `limit`.
    pub async fn connect(&self, read_buffer: usize, limit: Duration) -> Result<Ws, String> {
        let attempt = async {
            let socket = if self.addr.is_ipv4() {
                TcpSocket::new_v4()
            } else {
                TcpSocket::new_v6()
            };
            let socket = socket.map_err(|e| format!("socket: {e}"))?;
            if let Some(ip) = self.bind {
                port_chosen_at_connect(&socket).map_err(|e| format!("bind {ip}: {e}"))?;
                socket
                    .bind(SocketAddr::new(ip, 0))
                    .map_err(|e| format!("bind {ip}: {e}"))?;
            }
            let stream = socket
                .connect(self.addr)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            stream
                .set_nodelay(true)
                .map_err(|e| format!("nodelay: {e}"))?;
            let config = WebSocketConfig::default()
                .read_buffer_size(read_buffer)
                .write_buffer_size(0);
            let mut request = self
                .url
                .as_str()
                .into_client_request()
                .map_err(|e| format!("--url: {e}"))?;
            if self.offer_deflate {
                request.headers_mut().insert(
                    "Sec-WebSocket-Extensions",
                    "permessage-deflate; client_max_window_bits"
                        .parse()
                        .expect("a valid header"),
                );
            }
            let (ws, _) =
                tokio_tungstenite::client_async_with_config(request, stream, Some(config))
                    .await
                    .map_err(|e| format!("handshake: {e}"))?;
            Ok(ws)
        };
        tokio::time::timeout(limit, attempt)
            .await
            .unwrap_or_else(|_| Err(format!("not connected within {} s", limit.as_secs_f64())))
    }
}

/// The next text or binary message; pings are answered by tungstenite on the next read.
pub async fn next_data(ws: &mut Ws) -> Result<Message, String> {
    loop {
        match ws.next().await {
            Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => return Ok(m),
            Some(Ok(Message::Close(frame))) => {
                return Err(match frame {
                    Some(f) => format!("server closed: {} {}", u16::from(f.code), f.reason),
                    None => "server closed without a code".into(),
                })
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(format!("read: {e}")),
            None => return Err("connection ended".into()),
        }
    }
}

/// Sends a close frame and waits (briefly) for the server's answer.
pub async fn close(mut ws: Ws) {
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        if ws.close(None).await.is_ok() {
            while let Some(Ok(_)) = ws.next().await {}
        }
    })
    .await;
}

/// A multi-thread Tokio runtime with `threads` workers.
pub fn runtime(threads: usize) -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))
}

/// IP_BIND_ADDRESS_NO_PORT: a bind() to a source address leaves the port to connect(), which
/// picks one free for this destination. bind() picking it alone searched the address's whole
/// port range: past about 13k connections from one address, connecting slowed to about 100 a
/// second per process, and late handshakes made the server look slow (a reconnect storm hit its
/// handshake_timeout).
fn port_chosen_at_connect(socket: &TcpSocket) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: a valid socket and an int option of the right size.
    let done = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    match done {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

#[cfg(test)]
mod tests {
    use super::Target;

    #[test]
    fn loopback_only() {
        assert!(Target::new("ws://127.0.0.1:9/", None).is_ok());
        assert!(Target::new("ws://127.0.0.1:9/", Some("127.0.0.2".parse().unwrap())).is_ok());
        assert!(Target::new("http://127.0.0.1:9/", None).is_err());
        assert!(Target::new("ws://10.0.0.1:9/", None).is_err());
        assert!(Target::new("ws://127.0.0.1:9/", Some("10.0.0.2".parse().unwrap())).is_err());
    }
}
