//! Reading the socket in large pieces for a reader that asks for small ones.
//!
//! tungstenite reads at most `read_buffer_size` bytes per call, and we keep that at 512 so that
//! an idle connection's read buffer stays small; a 1 MiB message then took about 2,000 read
//! system calls. Under it, this layer reads up to [`CHUNK`] bytes into a buffer on the stack,
//! hands over what was asked for, and keeps the rest only until it is taken: an idle connection
//! holds nothing more, a large message costs one system call per 16 KiB.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, ReadBuf};

/// The most read at once.
const CHUNK: usize = 16 * 1024;

/// A reader asking for at least this much gets it straight from the socket (the deflate layer
/// reads 4 KiB at a time).
const DIRECT: usize = 4096;

pub(crate) struct ReadAhead<S> {
    inner: S,
    /// Bytes read and not yet handed over; None when there are none.
    ahead: Option<Bytes>,
}

impl<S> ReadAhead<S> {
    #[cfg(test)]
    fn new(inner: S) -> Self {
        Self::with_ahead(inner, Bytes::new())
    }

    /// `ahead`: bytes already read from `inner`, handed over first.
    pub(crate) fn with_ahead(inner: S, ahead: Bytes) -> Self {
        ReadAhead { inner, ahead: (!ahead.is_empty()).then_some(ahead) }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(ahead) = &mut this.ahead {
            let n = buf.remaining().min(ahead.len());
            buf.put_slice(&ahead[..n]);
            ahead.advance(n);
            if ahead.is_empty() {
                this.ahead = None;
            }
            return Poll::Ready(Ok(()));
        }
        if buf.remaining() >= DIRECT {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let mut chunk = [MaybeUninit::<u8>::uninit(); CHUNK];
        let mut read = ReadBuf::uninit(&mut chunk);
        ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
        let got = read.filled();
        let n = buf.remaining().min(got.len());
        buf.put_slice(&got[..n]);
        if n < got.len() {
            this.ahead = Some(Bytes::copy_from_slice(&got[n..]));
        }
        Poll::Ready(Ok(()))
    }
}

write_through_to_inner!(ReadAhead);

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn small_reads_get_every_byte_in_order_from_large_chunks() {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        client.write_all(&data).await.unwrap();
        drop(client);
        let mut reader = ReadAhead::new(server);
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
        // Bytes read before (past the handshake) come first.
        let (mut client, server) = tokio::io::duplex(1 << 20);
        client.write_all(b" world").await.unwrap();
        drop(client);
        let mut reader = ReadAhead::with_ahead(server, Bytes::from_static(b"hello"));
        let mut got = String::new();
        reader.read_to_string(&mut got).await.unwrap();
        assert_eq!(got, "hello world");
        // A large ask goes straight through.
        let (mut client, server) = tokio::io::duplex(1 << 20);
        client.write_all(&data[..8192]).await.unwrap();
        let mut reader = ReadAhead::new(server);
        let mut large = vec![0u8; 8192];
        assert_eq!(reader.read(&mut large).await.unwrap(), 8192);
        assert!(reader.ahead.is_none());
    }
}
