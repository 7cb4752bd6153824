//! A response body PHP writes piece by piece (`Response::write()`, for server-sent events or a
//! long download): the chunks go through a channel to the connection's task, bounded by the bytes
//! waiting there, and the body ends when PHP ends or drops it, when the client goes away (the
//! sender sees the channel closed), or when the server stops.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame};
use tokio::sync::mpsc;

/// The PHP side of a streamed body.
pub struct ChunkSender {
    tx: mpsc::UnboundedSender<Bytes>,
    queued: Arc<AtomicUsize>,
    limit: usize,
}

/// The connection's side, handed over with the response's head.
#[derive(Debug)]
pub(crate) struct ChunkReceiver {
    rx: mpsc::UnboundedReceiver<Bytes>,
    queued: Arc<AtomicUsize>,
}

/// A channel that refuses chunks while more than `limit` bytes wait to be written.
pub(crate) fn channel(limit: usize) -> (ChunkSender, ChunkReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    let sender = ChunkSender {
        tx,
        queued: queued.clone(),
        limit,
    };
    (sender, ChunkReceiver { rx, queued })
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
        self.queue(chunk)
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
        }
    }
}

impl Body for ChunkBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        if self.stop.as_mut().poll(cx).is_ready() {
            self.chunks.rx.close();
            return Poll::Ready(None);
        }
        match self.chunks.rx.poll_recv(cx) {
            Poll::Ready(Some(chunk)) => {
                self.chunks.queued.fetch_sub(chunk.len(), Relaxed);
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}
