//! An HTTP connection's stream whose writes fail once they have made no progress for
//! `send_timeout`: a client that asks for a large file (or a stream) and then reads nothing
//! would otherwise keep its socket, and the file, for ever; hyper closes the connection on the
//! error. Only writes that wait count: an idle connection, or one read slowly but steadily, is
//! never timed out here.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

pub(crate) struct SendTimeout<S> {
    inner: S,
    /// Zero: writes may wait for ever.
    limit: Duration,
    /// Made when a write first waits, kept for the connection's life (a slow download waits
    /// again and again): set again each time a write begins to wait.
    timer: Option<Pin<Box<Sleep>>>,
    /// The timer runs for the write under way: it has waited since the timer was set.
    waiting: bool,
}

impl<S> SendTimeout<S> {
    pub(crate) fn new(inner: S, limit: Duration) -> Self {
        SendTimeout {
            inner,
            limit,
            timer: None,
            waiting: false,
        }
    }

    pub(crate) fn into_inner(self) -> S {
        self.inner
    }

    /// What a write that made no progress answers: still waiting, or failed past the limit.
    fn waited<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        if self.limit.is_zero() {
            return Poll::Pending;
        }
        let limit = self.limit;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if !std::mem::replace(&mut self.waiting, true) {
            timer.as_mut().reset(tokio::time::Instant::now() + limit);
        }
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client took nothing for {limit:?} (send_timeout)"),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn after<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match poll {
            Poll::Pending => self.waited(cx),
            done => {
                self.waiting = false;
                done
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SendTimeout<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SendTimeout<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.after(cx, poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.after(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_flush(cx);
        this.after(cx, poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.after(cx, poll)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::time::Instant;

    const LIMIT: Duration = Duration::from_secs(60);

    #[tokio::test(start_paused = true)]
    async fn a_write_that_waits_past_the_limit_fails() {
        // A pipe of 64 bytes whose other end reads nothing.
        let (_client, server) = tokio::io::duplex(64);
        let mut server = SendTimeout::new(server, LIMIT);
        server.write_all(&[0; 64]).await.unwrap();
        let started = Instant::now();
        let err = server.write_all(&[0; 1]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), LIMIT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_reads_slowly_but_steadily_is_not_timed_out() {
        let (mut client, server) = tokio::io::duplex(64);
        let reader = tokio::spawn(async move {
            let (mut buf, mut got) = ([0; 16], 0);
            while got < 256 {
                tokio::time::sleep(Duration::from_secs(50)).await;
                got += client.read(&mut buf).await.unwrap();
            }
        });
        let mut server = SendTimeout::new(server, LIMIT);
        let started = Instant::now();
        server.write_all(&[0; 256]).await.unwrap();
        assert!(started.elapsed() > LIMIT * 5, "{:?}", started.elapsed());
        reader.await.unwrap();
    }
}
