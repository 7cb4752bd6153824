//! Reading the socket in large pieces for a reader that asks for small ones, with large frames
//! handed on in pieces.
//!
//! This layer reads up to [`CHUNK`] bytes into a buffer on the stack, hands over what was asked
//! for, and keeps the rest only until it is taken: an idle connection holds nothing, a large
//! message costs one system call per 16 KiB. What it hands over goes through a
//! [`FrameSplitter`], so that the message reader above never gathers a large frame whole (see
//! `client_frames`).

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, ReadBuf};

use crate::client_frames::FrameSplitter;

/// The most read at once.
const CHUNK: usize = 16 * 1024;

pub(crate) struct ReadAhead<S> {
    inner: S,
    /// Bytes read and not yet handed over; None when there are none (a `Bytes` advanced to its
    /// end would still hold its allocation).
    ahead: Option<Bytes>,
    splitter: FrameSplitter,
}

impl<S> ReadAhead<S> {
    /// `ahead`: bytes already read from `inner`, handed over first. `max_frame`: frames larger
    /// than this are handed over whole, for the reader to refuse.
    pub(crate) fn with_ahead(inner: S, ahead: Bytes, max_frame: usize) -> Self {
        ReadAhead {
            inner,
            ahead: (!ahead.is_empty()).then_some(ahead),
            splitter: FrameSplitter::new(max_frame),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let start = buf.filled().len();
        // The splitter may take the start of a header and hand nothing on: read on until it
        // does, as an empty read would mean the end of the stream.
        while buf.filled().len() == start && buf.remaining() > 0 {
            if let Some(ahead) = &mut this.ahead {
                let used = this.splitter.pass(ahead, buf);
                ahead.advance(used);
                if ahead.is_empty() {
                    this.ahead = None;
                }
                continue;
            }
            let mut chunk = [MaybeUninit::<u8>::uninit(); CHUNK];
            let mut read = ReadBuf::uninit(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            let got = read.filled();
            if got.is_empty() {
                break;
            }
            let used = this.splitter.pass(got, buf);
            if used < got.len() {
                this.ahead = Some(Bytes::copy_from_slice(&got[used..]));
            }
        }
        Poll::Ready(Ok(()))
    }
}

write_through_to_inner!(ReadAhead);

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::fuzzing::client_frame;

    /// Client frames of every size up to `max`, one after another.
    fn frames(max: usize) -> Vec<u8> {
        (0..=max)
            .flat_map(|n| client_frame(0x82, &vec![(n % 251) as u8; n]))
            .collect()
    }

    #[tokio::test]
    async fn small_reads_get_every_byte_in_order_from_large_chunks() {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        // Frames the splitter leaves whole (see client_frames for those it splits).
        let data = frames(1024);
        assert!(data.len() > 4 * CHUNK);
        client.write_all(&data).await.unwrap();
        drop(client);
        let mut reader = ReadAhead::with_ahead(server, Bytes::new(), usize::MAX);
        let (mut got, mut small) = (Vec::new(), [0u8; 512]);
        loop {
            let n = reader.read(&mut small).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&small[..n]);
            assert!(reader.ahead.as_ref().is_none_or(|a| a.len() <= CHUNK));
        }
        assert_eq!(got, data);
        assert!(reader.ahead.is_none(), "nothing kept once all is taken");
        // Bytes read before (past the handshake) come first, even when they end inside a
        // header.
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let data = frames(300);
        client.write_all(&data[3..]).await.unwrap();
        drop(client);
        let mut reader =
            ReadAhead::with_ahead(server, Bytes::copy_from_slice(&data[..3]), usize::MAX);
        let mut got = Vec::new();
        reader.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, data);
    }
}
