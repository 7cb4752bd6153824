//! A response body PHP writes piece by piece (`Response::write()`, for server-sent events or a
//! long download): the chunks go through a channel to the connection's task, bounded by the bytes
//! waiting there, and the body ends when PHP ends it, when the client goes away (the sender sees
//! the channel closed), or when the server stops. One PHP drops without `end()` (a fatal error,
//! a callback that returned) is cut short: the connection closes without the chunked body's
//! last chunk, so the client knows it did not get it all.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{
    AtomicBool, AtomicUsize, Ordering::Acquire, Ordering::Relaxed, Ordering::Release,
};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame};
use tokio::sync::mpsc;

/// The PHP side of a streamed body.
pub struct ChunkSender {
    tx: mpsc::UnboundedSender<Bytes>,
    queued: Arc<AtomicUsize>,
    ended: Arc<AtomicBool>,
    limit: usize,
}

/// The connection's side, handed over with the response's head.
#[derive(Debug)]
pub(crate) struct ChunkReceiver {
    rx: mpsc::UnboundedReceiver<Bytes>,
    queued: Arc<AtomicUsize>,
    /// Set by `finish`: the channel closing then ends the body, else it cuts it short.
    ended: Arc<AtomicBool>,
}

/// A channel that refuses chunks while more than `limit` bytes wait to be written.
pub(crate) fn channel(limit: usize) -> (ChunkSender, ChunkReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    let ended = Arc::new(AtomicBool::new(false));
    let sender = ChunkSender {
        tx,
        queued: queued.clone(),
        ended: ended.clone(),
        limit,
    };
    (sender, ChunkReceiver { rx, queued, ended })
}

impl ChunkSender {
    /// Queues a chunk for the client. False, queueing nothing, when the client has gone away or
    /// when more than the limit already waits for a slow client (then `is_open()` stays true:
    /// write again later).
    pub fn send(&self, chunk: Bytes) -> bool {
        if self.queued.load(Relaxed) > self.limit {
            return false;
        }
        self.queue(chunk)
    }

    /// Queues the last chunk whatever already waits (an end() never loses its data), and ends
    /// the body once it is written.
    pub fn finish(self, chunk: Bytes) -> bool {
        let queued = self.queue(chunk);
        // Before the sender is dropped, which is what the receiver sees.
        self.ended.store(true, Release);
        queued
    }

    fn queue(&self, chunk: Bytes) -> bool {
        if chunk.is_empty() {
            // An empty chunk would end a chunked body early; it says nothing anyway.
            return self.is_open();
        }
        self.queued.fetch_add(chunk.len(), Relaxed);
        self.tx.send(chunk).is_ok()
    }

    /// False once the client has gone away or the body has ended (the server stopped).
    pub fn is_open(&self) -> bool {
        !self.tx.is_closed()
    }
}

/// The body hyper writes: the first chunk sent with the head, then what the sender queues.
pub(crate) struct ChunkBody {
    first: Option<Bytes>,
    chunks: ChunkReceiver,
    /// Ready once the server stops: the body ends there, so a stream never holds up the stop.
    stop: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// Known to be cut short: the next poll fails the body. Not at once, as hyper would then
    /// close the connection without writing what it holds (the head included).
    cut: bool,
}

impl ChunkBody {
    pub(crate) fn new(
        first: Bytes,
        chunks: ChunkReceiver,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> Self {
        ChunkBody {
            first: (!first.is_empty()).then_some(first),
            chunks,
            stop: Box::pin(stop),
            cut: false,
        }
    }

    /// Fails the body at the next poll, once hyper has written what it holds.
    fn cut_short(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.cut = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Body for ChunkBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if self.cut {
            return Poll::Ready(Some(Err(cut_short())));
        }
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        if self.stop.as_mut().poll(cx).is_ready() {
            // The stop ends a body PHP still holds; one it dropped (a fatal error stops the
            // server too) is cut short all the same.
            let dropped = self.chunks.rx.is_closed() && !self.chunks.ended.load(Acquire);
            self.chunks.rx.close();
            return match dropped {
                true => self.cut_short(cx),
                false => Poll::Ready(None),
            };
        }
        match self.chunks.rx.poll_recv(cx) {
            Poll::Ready(Some(chunk)) => {
                self.chunks.queued.fetch_sub(chunk.len(), Relaxed);
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            Poll::Ready(None) if self.chunks.ended.load(Acquire) => Poll::Ready(None),
            Poll::Ready(None) => self.cut_short(cx),
            Poll::Pending => Poll::Pending,
        }
    }
}

fn cut_short() -> io::Error {
    io::Error::other("the response was dropped without end(): cut short")
}
