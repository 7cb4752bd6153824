//! A response body PHP writes piece by piece (`Response::write()`, for server-sent events or a
//! long download): the chunks go through a channel to the connection's task, bounded by the bytes
//! waiting there, and the body ends when PHP ends or drops it (as Swoole ends one freed without
//! `end()`), when the client goes away (the sender sees the channel closed), or when the server
//! stops (after the chunks already queued). One cut short by a fatal error, or one with a hole
//! (a chunk refused, then later ones taken), closes the connection without the chunked body's
//! last chunk, so the client knows it is incomplete.

use std::cell::Cell;
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
    cut: Arc<AtomicBool>,
    limit: usize,
    /// The last chunk refused, until the next one is taken.
    refused: Cell<Option<Bytes>>,
    /// Another chunk came after one was refused: the body has a hole.
    hole: Cell<bool>,
}

/// The connection's side, handed over with the response's head.
#[derive(Debug)]
pub(crate) struct ChunkReceiver {
    rx: mpsc::UnboundedReceiver<Bytes>,
    queued: Arc<AtomicUsize>,
    /// Set by `cut_short`: the channel closing then fails the body instead of ending it.
    cut: Arc<AtomicBool>,
}

/// A channel that refuses chunks while more than `limit` bytes wait to be written.
pub(crate) fn channel(limit: usize) -> (ChunkSender, ChunkReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    let cut = Arc::new(AtomicBool::new(false));
    let sender = ChunkSender {
        tx,
        queued: queued.clone(),
        cut: cut.clone(),
        limit,
        refused: Cell::new(None),
        hole: Cell::new(false),
    };
    (sender, ChunkReceiver { rx, queued, cut })
}

impl ChunkSender {
    /// Queues a chunk for the client. False, queueing nothing, when the client has gone away or
    /// when more than the limit already waits for a slow client (then `is_open()` stays true).
    /// Code that writes on after a refusal (Swoole adapters write a whole download so, never
    /// looking) leaves a hole in the body, which then ends as incomplete (see `finish`); code
    /// that stops there, or writes the refused chunk again (alone or with more after it) until
    /// it is taken, leaves none.
    pub fn send(&self, chunk: Bytes) -> bool {
        if chunk.is_empty() {
            return self.is_open();
        }
        let refused = self.refused.take();
        // A chunk that does not begin with the one refused (written again, or kept and added
        // to): that one is missing.
        self.hole
            .set(self.hole.get() || refused.is_some_and(|r| !chunk.starts_with(&r)));
        if self.queued.load(Relaxed) > self.limit {
            self.refused.set(Some(chunk));
            return false;
        }
        self.queue(chunk)
    }

    /// Queues the last chunk whatever already waits (an end() never loses its data), and ends
    /// the body once it is written; as incomplete if it has a hole (a client taking it for
    /// whole would keep a file with data missing from its middle).
    pub fn finish(self, chunk: Bytes) -> bool {
        if self.hole.get() {
            self.cut.store(true, Release);
        }
        self.queue(chunk)
    }

    /// Ends the body as incomplete (after a fatal error): what is queued still goes out.
    pub fn cut_short(self) {
        // Before the sender is dropped, which is what the receiver sees.
        self.cut.store(true, Release);
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
    /// Ready once the server stops: no chunk is taken after that, and the body ends once those
    /// queued are written, so a stream never holds up the stop.
    stop: Pin<Box<dyn Future<Output = ()> + Send>>,
    stopping: bool,
    /// Cut short: the next poll fails the body. Not at once, as hyper would then close the
    /// connection without writing what it holds (the head included).
    failing: bool,
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
            stopping: false,
            failing: false,
        }
    }
}

impl Body for ChunkBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if self.failing {
            return Poll::Ready(Some(Err(io::Error::other(
                "the response was cut short (a fatal error in its callback)",
            ))));
        }
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        if !self.stopping && self.stop.as_mut().poll(cx).is_ready() {
            self.stopping = true;
            self.chunks.rx.close();
        }
        match self.chunks.rx.poll_recv(cx) {
            Poll::Ready(Some(chunk)) => {
                self.chunks.queued.fetch_sub(chunk.len(), Relaxed);
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            Poll::Ready(None) if self.chunks.cut.load(Acquire) => {
                self.failing = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether the body a sender ended is cut short, after `writes` (true: room for it).
    fn cut_after(writes: &[(&'static str, bool)]) -> bool {
        let (sender, receiver) = channel(0);
        for (chunk, room) in writes {
            // Nothing waits, or more than the limit of 0 bytes.
            receiver.queued.store(usize::from(!room), Relaxed);
            assert_eq!(sender.send(Bytes::from_static(chunk.as_bytes())), *room);
        }
        sender.finish(Bytes::new());
        receiver.cut.load(Acquire)
    }

    #[test]
    fn a_hole_cuts_the_body_and_a_chunk_written_again_leaves_none() {
        assert!(!cut_after(&[("a", true), ("b", true)]));
        // Stopped at the refusal: what was taken is whole.
        assert!(!cut_after(&[("a", true), ("b", false)]));
        // The refused chunk written again once there is room, or kept and added to.
        assert!(!cut_after(&[
            ("a", true),
            ("b", false),
            ("bc", false),
            ("bcd", true)
        ]));
        assert!(!cut_after(&[
            ("a", true),
            ("b", false),
            ("b", false),
            ("b", true),
            ("c", true)
        ]));
        // Written on regardless: "b" is missing between "a" and "c", or from the end.
        assert!(cut_after(&[("a", true), ("b", false), ("c", true)]));
        assert!(cut_after(&[
            ("a", true),
            ("b", false),
            ("c", false),
            ("c", true)
        ]));
        assert!(cut_after(&[("a", true), ("b", false), ("c", false)]));
    }
}
