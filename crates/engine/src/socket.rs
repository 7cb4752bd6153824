//! The stream under an established WebSocket connection.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::lingering_close::LingeringClose;
use crate::send_timeout::SendTimeout;

pub(crate) enum Socket {
    /// Plain TCP, taken back out of hyper's `Upgraded`: every read and write would otherwise
    /// cross its boxed stream, its rewind layer and two adapters between hyper's and Tokio's
    /// I/O traits.
    Tcp(TcpStream),
    /// TLS, and the in-memory streams of the fuzzing harness, stay inside `Upgraded`.
    Upgraded(TokioIo<Upgraded>),
}

impl Socket {
    /// The stream, and what hyper had already read past the handshake (a client may send its
    /// first frames right behind it).
    pub fn from_upgraded(upgraded: Upgraded) -> (Socket, Bytes) {
        // A plain connection is let out of its HTTP send timeout: a WebSocket's slow readers
        // are the outbox's and the heartbeat's business.
        match upgraded.downcast::<TokioIo<SendTimeout<LingeringClose<TcpStream>>>>() {
            Ok(parts) => (
                Socket::Tcp(parts.io.into_inner().into_inner().into_inner()),
                parts.read_buf,
            ),
            Err(upgraded) => (Socket::Upgraded(TokioIo::new(upgraded)), Bytes::new()),
        }
    }
}

/// Runs `$call` on whichever stream `$socket` holds.
macro_rules! on_stream {
    ($socket:expr, $s:ident => $call:expr) => {
        match $socket {
            Socket::Tcp($s) => $call,
            Socket::Upgraded($s) => $call,
        }
    };
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        on_stream!(self.get_mut(), s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        on_stream!(self.get_mut(), s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        on_stream!(self.get_mut(), s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        on_stream!(self, s => s.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        on_stream!(self.get_mut(), s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        on_stream!(self.get_mut(), s => Pin::new(s).poll_shutdown(cx))
    }
}
