//! nginx's lingering close, for an HTTP connection closed with part of a request unread (a body
//! refused with 413, 408 or 400 before it was read whole): closed at once, the kernel would
//! answer the bytes still arriving with a reset, and a client still sending (nginx in front
//! never reads the answer before its request is sent, nor do simple clients) would fail on its
//! write and never see the refusal: behind nginx, a 502 instead of "too large". Once armed, the
//! connection's shutdown sends its FIN after the answer, then reads and drops what the client
//! still sends until it closes too, for at most `LINGER_TIME` and `LINGER_BYTES`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

const LINGER_TIME: Duration = Duration::from_secs(5);
const LINGER_BYTES: usize = 16 << 20;

/// Arms the lingering close of one connection (shared with the requests it serves).
#[derive(Clone, Default)]
pub(crate) struct Linger(Arc<AtomicBool>);

impl Linger {
    /// The connection closes after this answer with part of the request unread.
    pub(crate) fn arm(&self) {
        self.0.store(true, Relaxed);
    }
}

pub(crate) struct LingeringClose<S> {
    inner: S,
    linger: Linger,
    /// Set once the write side is shut: what is left is the reading.
    draining: Option<Draining>,
}

struct Draining {
    deadline: Pin<Box<Sleep>>,
    left: usize,
}

impl<S> LingeringClose<S> {
    pub(crate) fn new(inner: S, linger: Linger) -> Self {
        LingeringClose {
            inner,
            linger,
            draining: None,
        }
    }

    pub(crate) fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: AsyncRead + Unpin> LingeringClose<S> {
    /// Reads and drops until the client closes, or the time or the bytes are up.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let draining = self.draining.as_mut().expect("draining");
        let mut scratch = [0u8; 8192];
        loop {
            if draining.deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ok(()));
            }
            let mut buf = ReadBuf::new(&mut scratch);
            match ready!(Pin::new(&mut self.inner).poll_read(cx, &mut buf)) {
                Ok(()) if !buf.filled().is_empty() => {
                    draining.left = draining.left.saturating_sub(buf.filled().len());
                    if draining.left == 0 {
                        return Poll::Ready(Ok(()));
                    }
                }
                // Closed by the client (or failed): nothing more to wait for.
                _ => return Poll::Ready(Ok(())),
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for LingeringClose<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for LingeringClose<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.draining.is_none() {
            ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
            if !this.linger.0.load(Relaxed) {
                return Poll::Ready(Ok(()));
            }
            this.draining = Some(Draining {
                deadline: Box::pin(tokio::time::sleep(LINGER_TIME)),
                left: LINGER_BYTES,
            });
        }
        this.poll_drain(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
