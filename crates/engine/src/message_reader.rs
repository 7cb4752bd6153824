//! The read half of a server's WebSocket connection (RFC 6455 section 5): client frames parsed,
//! checked, unmasked and assembled into messages.
//!
//! Ours rather than tungstenite's: its reader sat behind a compatibility layer (wakers swapped
//! in on every poll, `WouldBlock` errors made and dropped for every `Pending`) and a read buffer
//! of its own, about 2,000 instructions per small message that missed the instruction cache on
//! every round trip (BENCHMARKS.md, "Echo: level instructions, not level cycles"). This one
//! reads up to 16 KiB at once into a buffer on the stack, parses frames where the read put
//! them, and copies each payload once, unmasked, into the message handed on; a large frame's
//! payload is appended to its message as it comes. It holds no buffer between messages: only
//! the start of a frame cut short by a read (at most a header or a control frame), what
//! followed a message in its read, or a message in the making is kept on the heap.
//!
//! Under it is the socket, or with permessage-deflate the inflate layer (`deflate::inflate`),
//! which hands compressed messages on as plain fragments.

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, ReadBuf};

use crate::client_frames::{header_len, payload_len, FIN, MASKED, OP_CONTINUATION, RSV};
use crate::frame::{OP_BINARY, OP_CLOSE, OP_PING, OP_PONG};

/// The most read at once: a large message costs one system call per 16 KiB.
const READ: usize = 16 * 1024;

/// What a client sent.
#[derive(Debug, PartialEq)]
pub(crate) enum Incoming {
    /// A text message, valid UTF-8.
    Text(Bytes),
    Binary(Bytes),
    /// To be answered with a pong of the same payload.
    Ping(Bytes),
    Pong,
    /// The client's close frame, with its status code if it gave one. Nothing is read after it.
    Close(Option<u16>),
}

/// Why the client's input was refused; the connection is failed with the close code each
/// names. Nothing is read after it.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// Against RFC 6455 (1002): the reason, for the log.
    Protocol(&'static str),
    /// A text message or close reason that is not UTF-8 (1007).
    Utf8,
    /// A frame over `package_max_length` (1009).
    FrameTooBig,
    /// A message over `package_max_length` (1009).
    MessageTooBig,
    /// The socket failed, or a layer under it refused the input (see `InflateError`).
    Io(io::Error),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Protocol(what) => write!(f, "protocol error: {what}"),
            ReadError::Utf8 => f.write_str("invalid UTF-8 in a text message or close reason"),
            ReadError::FrameTooBig => f.write_str("frame over the size limit"),
            ReadError::MessageTooBig => f.write_str("message over the size limit"),
            ReadError::Io(err) => write!(f, "{err}"),
        }
    }
}

pub(crate) struct MessageReader {
    /// Bytes read and not yet taken, from `taken` on: what followed a message in the read that
    /// brought it, or the start of a frame cut short (part of a header, or of a control frame).
    /// Unallocated between frames.
    pending: Vec<u8>,
    taken: usize,
    frames: Frames,
    /// A close frame or an error was read: the stream has ended.
    ended: bool,
    /// The last `poll_next` read bytes from the socket.
    took_input: bool,
}

/// What is known between reads: the size limit and the message being assembled.
struct Frames {
    /// `package_max_length`: for a frame, and for a message of several frames.
    max: usize,
    /// A message of several frames, or of one frame that more than one read brings. Boxed: an
    /// idle connection pays one pointer.
    message: Option<Box<Assembly>>,
}

struct Assembly {
    binary: bool,
    data: Vec<u8>,
    /// Bytes of `data` known to be valid UTF-8 (text only): the check goes on from there.
    valid: usize,
    /// The data frame being read: its payload bytes still to come (0 between fragments), its
    /// masking key, where its payload starts in `data`, and whether it ends the message.
    left: usize,
    mask: [u8; 4],
    frame_start: usize,
    fin: bool,
    /// Header bytes of the empty continuation frames that did not end it, counted against
    /// `max` with its data: a message of endless empty fragments never grew and never ended,
    /// and kept a core busy. (Only those: the inflate layer hands a compressed message on in
    /// fragments of its own, never empty but the first and the last.)
    empty_fragments: usize,
}

impl MessageReader {
    /// `max_message`: `package_max_length`, for frames and messages alike. `first`: bytes the
    /// client sent after its handshake, read with it.
    pub(crate) fn new(max_message: usize, first: &[u8]) -> Self {
        MessageReader {
            pending: first.to_vec(),
            taken: 0,
            frames: Frames {
                max: max_message,
                message: None,
            },
            ended: false,
            took_input: false,
        }
    }

    /// Whether the last `poll_next` read bytes, if only part of a message: the client is
    /// sending, even when one message takes longer than `heartbeat_idle_time` to come.
    pub(crate) fn took_input(&self) -> bool {
        self.took_input
    }

    /// The next message or control frame from `socket`; None once the stream has ended (the
    /// socket closed, or after a close frame or an error).
    pub(crate) fn poll_next<S: AsyncRead + Unpin>(
        &mut self,
        socket: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Incoming, ReadError>>> {
        self.took_input = false;
        if self.ended {
            return Poll::Ready(None);
        }
        let next = ready!(self.poll_read_next(socket, cx));
        let ends = match &next {
            Some(Ok(Incoming::Close(_)) | Err(_)) | None => true,
            Some(Ok(_)) => false,
        };
        if ends {
            self.ended = true;
            self.pending = Vec::new();
            self.frames.message = None;
        }
        Poll::Ready(next)
    }

    fn poll_read_next<S: AsyncRead + Unpin>(
        &mut self,
        socket: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Incoming, ReadError>>> {
        loop {
            while self.taken < self.pending.len() {
                let Some((used, incoming)) = self.frames.take(&self.pending[self.taken..])? else {
                    break;
                };
                self.taken += used;
                if self.taken == self.pending.len() {
                    (self.pending, self.taken) = (Vec::new(), 0);
                }
                if let Some(incoming) = incoming {
                    return Poll::Ready(Some(Ok(incoming)));
                }
            }
            if self.taken > 0 {
                // What is left is the start of a frame: keep it alone, in a buffer its size
                // (a client that stops there must not leave a read's worth held).
                self.pending = self.pending[self.taken..].to_vec();
                self.taken = 0;
            }
            let mut chunk = [MaybeUninit::<u8>::uninit(); READ];
            let mut read = ReadBuf::uninit(&mut chunk);
            if let Err(err) = ready!(Pin::new(&mut *socket).poll_read(cx, &mut read)) {
                return Poll::Ready(Some(Err(ReadError::Io(err))));
            }
            let got = read.filled();
            if got.is_empty() {
                return Poll::Ready(None);
            }
            self.took_input = true;
            if !self.pending.is_empty() {
                self.pending.extend_from_slice(got);
                continue;
            }
            // The usual case: the frames are taken where they were read, and only what follows
            // the first message is kept.
            let mut at = 0;
            while let Some((used, incoming)) = self.frames.take(&got[at..])? {
                at += used;
                if let Some(incoming) = incoming {
                    self.pending.extend_from_slice(&got[at..]);
                    return Poll::Ready(Some(Ok(incoming)));
                }
            }
            self.pending.extend_from_slice(&got[at..]);
        }
    }
}

impl Frames {
    /// Takes what it can from the start of `bytes`: a whole frame, a data frame's header, or
    /// payload bytes of the data frame being read. Returns how many bytes it took and the
    /// message they end, if any; None if it needs more bytes to take any. Frames that must be
    /// refused are refused as soon as their header is read.
    fn take(&mut self, bytes: &[u8]) -> Result<Option<(usize, Option<Incoming>)>, ReadError> {
        if let Some(message) = self.message.as_deref_mut().filter(|m| m.left > 0) {
            if bytes.is_empty() {
                return Ok(None);
            }
            let n = message.left.min(bytes.len());
            message.append(&bytes[..n])?;
            return Ok(Some((n, self.frame_read()?)));
        }
        let [first, second, ..] = *bytes else {
            return Ok(None);
        };
        let opcode = first & 0x0f;
        let fin = first & FIN != 0;
        if first & RSV != 0 {
            return Err(ReadError::Protocol("reserved bits set"));
        }
        if second & MASKED == 0 {
            return Err(ReadError::Protocol("unmasked client frame"));
        }
        let control = opcode & 0x8 != 0;
        if control {
            if !matches!(opcode, OP_CLOSE | OP_PING | OP_PONG) {
                return Err(ReadError::Protocol("reserved opcode"));
            }
            if !fin {
                return Err(ReadError::Protocol("fragmented control frame"));
            }
            if second & 0x7f > 125 {
                return Err(ReadError::Protocol("control frame over 125 bytes"));
            }
        } else if opcode > OP_BINARY {
            return Err(ReadError::Protocol("reserved opcode"));
        }
        let header = header_len(second);
        if bytes.len() < header {
            return Ok(None);
        }
        let len = payload_len(&bytes[..header]);
        if len >> 63 != 0 {
            return Err(ReadError::Protocol("payload length with its top bit set"));
        }
        // Control frames are up to 125 bytes whatever the limit (checked above).
        if !control && len > self.max as u64 {
            return Err(ReadError::FrameTooBig);
        }
        let len = len as usize;
        let mask: [u8; 4] = bytes[header - 4..header].try_into().expect("4 bytes");
        let whole = bytes.len() - header >= len;
        if control {
            if !whole {
                return Ok(None);
            }
            let payload = unmasked(&bytes[header..header + len], mask);
            let incoming = match opcode {
                OP_CLOSE => close(&payload)?,
                OP_PING => Incoming::Ping(payload.into()),
                _ => Incoming::Pong,
            };
            return Ok(Some((header + len, Some(incoming))));
        }
        // What the frame adds to its message's size (see `Assembly::empty_fragments`).
        let empty_fragment = opcode == OP_CONTINUATION && len == 0 && !fin;
        self.begin(opcode, if empty_fragment { header } else { len })?;
        if whole && fin && self.message.is_none() {
            // The usual case: a message in one frame, all of it here.
            let binary = opcode == OP_BINARY;
            let data = unmasked(&bytes[header..header + len], mask);
            if !binary {
                check_utf8(&data, &mut 0, true)?;
            }
            return Ok(Some((header + len, Some(data_message(binary, data)))));
        }
        // Its payload is appended to the message as it comes.
        let message = match self.message.as_deref_mut() {
            Some(message) => message,
            None => self.message.insert(Box::new(Assembly {
                binary: opcode == OP_BINARY,
                data: Vec::new(),
                valid: 0,
                left: 0,
                mask,
                frame_start: 0,
                fin,
                empty_fragments: 0,
            })),
        };
        if empty_fragment {
            message.empty_fragments += header;
        }
        // Room for what one read brings: the rest grows with what comes, not with what the
        // header claims.
        message.data.reserve(len.min(READ));
        (message.left, message.mask, message.fin) = (len, mask, fin);
        message.frame_start = message.data.len();
        Ok(Some((header, self.frame_read()?)))
    }

    /// Checks a data frame's header against the message it begins or continues, to which it
    /// adds `len` bytes.
    fn begin(&self, opcode: u8, len: usize) -> Result<(), ReadError> {
        let so_far = match (self.message.as_deref(), opcode) {
            (None, OP_CONTINUATION) => {
                return Err(ReadError::Protocol(
                    "continuation frame with no message to continue",
                ))
            }
            (Some(message), OP_CONTINUATION) => message.data.len() + message.empty_fragments,
            (Some(_), _) => {
                return Err(ReadError::Protocol("a new message inside a fragmented one"))
            }
            (None, _) => 0,
        };
        if so_far + len > self.max {
            return Err(ReadError::MessageTooBig);
        }
        Ok(())
    }

    /// After bytes of a data frame: the message, if they ended the frame that ends it.
    fn frame_read(&mut self) -> Result<Option<Incoming>, ReadError> {
        let done = self
            .message
            .as_deref()
            .is_some_and(|m| m.left == 0 && m.fin);
        if !done {
            return Ok(None);
        }
        let mut message = self.message.take().expect("checked above");
        if !message.binary {
            check_utf8(&message.data, &mut message.valid, true)?;
        }
        Ok(Some(data_message(message.binary, message.data)))
    }
}

impl Assembly {
    /// Appends payload bytes of the frame being read, unmasked, and checks the text so far.
    fn append(&mut self, payload: &[u8]) -> Result<(), ReadError> {
        let start = self.data.len();
        self.data.extend_from_slice(payload);
        // The key goes on from where the frame's previous bytes left it.
        let mut key = self.mask;
        key.rotate_left((start - self.frame_start) % 4);
        unmask(&mut self.data[start..], key);
        self.left -= payload.len();
        if !self.binary {
            check_utf8(&self.data, &mut self.valid, false)?;
        }
        Ok(())
    }
}

fn data_message(binary: bool, data: Vec<u8>) -> Incoming {
    if binary {
        Incoming::Binary(data.into())
    } else {
        Incoming::Text(data.into())
    }
}

/// A close frame's payload: nothing, or a status code RFC 6455 7.4 lets an endpoint send,
/// then a UTF-8 reason.
fn close(payload: &[u8]) -> Result<Incoming, ReadError> {
    match payload {
        [] => Ok(Incoming::Close(None)),
        [_] => Err(ReadError::Protocol("close frame of one byte")),
        [high, low, reason @ ..] => {
            let code = u16::from_be_bytes([*high, *low]);
            // 1004-1006 and 1015 are never sent; 1016-2999 are unassigned.
            if !matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) {
                return Err(ReadError::Protocol("invalid close code"));
            }
            std::str::from_utf8(reason).map_err(|_| ReadError::Utf8)?;
            Ok(Incoming::Close(Some(code)))
        }
    }
}

/// Checks `data` from byte `valid` on, and moves `valid` past what is valid. A character cut
/// at the end is fine until the message is `complete`.
fn check_utf8(data: &[u8], valid: &mut usize, complete: bool) -> Result<(), ReadError> {
    match std::str::from_utf8(&data[*valid..]) {
        Ok(_) => *valid = data.len(),
        Err(err) if err.error_len().is_none() && !complete => *valid += err.valid_up_to(),
        Err(_) => return Err(ReadError::Utf8),
    }
    Ok(())
}

fn unmasked(payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut data = payload.to_vec();
    unmask(&mut data, mask);
    data
}

/// XORs `data` with the masking key, eight bytes at a time (the key repeated).
fn unmask(data: &mut [u8], mask: [u8; 4]) {
    let key = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut words = data.chunks_exact_mut(8);
    for word in &mut words {
        let value = u64::from_ne_bytes((&*word).try_into().expect("8 bytes")) ^ key;
        word.copy_from_slice(&value.to_ne_bytes());
    }
    // The rest starts at a multiple of 8, so the key starts over with it.
    for (byte, key) in words.into_remainder().iter_mut().zip(mask.iter().cycle()) {
        *byte ^= key;
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use tokio::io::AsyncWriteExt;

    use super::*;
    use crate::fuzzing::client_frame;

    const MAX: usize = 4096;

    /// Everything the reader makes of `input`, up to the end or an error (as its Display text).
    async fn read_all(input: &[u8], writes: usize) -> Vec<Result<Incoming, String>> {
        read_with(input, writes, MAX, 0).await
    }

    /// `input` read in `writes` pieces, one a read (so frames are cut at every place over the
    /// tests), its first `first` bytes given as read with the handshake, to a reader of `max`.
    async fn read_with(
        input: &[u8],
        writes: usize,
        max: usize,
        first: usize,
    ) -> Vec<Result<Incoming, String>> {
        let rest = &input[first..];
        let piece = rest.len().div_ceil(writes.max(1)).max(1);
        let mut socket = Pieces(rest.chunks(piece).map(<[u8]>::to_vec).collect());
        let mut reader = MessageReader::new(max, &input[..first]);
        let mut out = Vec::new();
        while let Some(next) = poll_fn(|cx| reader.poll_next(&mut socket, cx)).await {
            let failed = next.is_err();
            out.push(next.map_err(|e| e.to_string()));
            if failed {
                break;
            }
        }
        assert!(reader.poll_next(&mut socket, &mut noop_cx()).is_ready());
        out
    }

    /// A socket that gives one piece a read, as if each came in a packet of its own, then ends.
    /// (A duplex pipe written by another task hands over everything written before the reader
    /// runs, so it would not cut the frames.)
    struct Pieces(std::collections::VecDeque<Vec<u8>>);

    impl AsyncRead for Pieces {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if let Some(mut piece) = self.0.pop_front() {
                let n = piece.len().min(buf.remaining());
                buf.put_slice(&piece[..n]);
                if n < piece.len() {
                    self.0.push_front(piece.split_off(n));
                }
            }
            Poll::Ready(Ok(()))
        }
    }

    fn noop_cx() -> Context<'static> {
        Context::from_waker(std::task::Waker::noop())
    }

    fn text(s: &str) -> Result<Incoming, String> {
        Ok(Incoming::Text(Bytes::copy_from_slice(s.as_bytes())))
    }

    #[tokio::test]
    async fn a_message_of_endless_empty_fragments_ends_at_the_size_limit() {
        // Each empty client frame is 6 bytes of header: MAX / 6 of them fill the limit.
        let mut input = client_frame(0x01, b"a");
        for _ in 0..MAX {
            input.extend(client_frame(0x00, b""));
        }
        let got = read_all(&input, 1).await;
        assert_eq!(got, vec![Err("message over the size limit".to_string())]);
    }

    #[tokio::test]
    async fn messages_come_whole_and_unmasked_however_the_reads_cut_them() {
        let big: Vec<u8> = (0..3000).map(|i| (i % 251) as u8).collect();
        let mut input = client_frame(0x81, b"hello");
        input.extend(client_frame(0x82, &big));
        input.extend(client_frame(0x89, b"are you there"));
        // A fragmented text message with a pong between its fragments, and a character cut
        // between two fragments.
        input.extend(client_frame(0x01, "h\u{e9}".as_bytes().split_at(2).0));
        input.extend(client_frame(0x8a, b""));
        input.extend(client_frame(0x00, &"h\u{e9}".as_bytes()[2..]));
        input.extend(client_frame(0x80, b" there"));
        input.extend(client_frame(0x88, &[0x03, 0xe8, b'b', b'y', b'e']));
        input.extend(client_frame(0x81, b"after the close: not read"));
        let expected = vec![
            text("hello"),
            Ok(Incoming::Binary(big.clone().into())),
            Ok(Incoming::Ping(Bytes::from_static(b"are you there"))),
            Ok(Incoming::Pong),
            text("h\u{e9} there"),
            Ok(Incoming::Close(Some(1000))),
        ];
        for writes in [1, 2, 3, 7, 50, input.len()] {
            assert_eq!(read_all(&input, writes).await, expected, "{writes} writes");
        }
        assert_eq!(
            read_all(&client_frame(0x88, b""), 1).await,
            vec![Ok(Incoming::Close(None))]
        );
        assert_eq!(read_all(b"", 1).await, vec![]);
    }

    #[tokio::test]
    async fn large_messages_are_assembled_as_they_come_between_control_frames() {
        // UTF-8 characters of 2, 3 and 4 bytes cut by the reads.
        let text: String = "aé€😀".repeat(20_000);
        let binary: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let mut input = client_frame(0x81, text.as_bytes());
        input.extend(client_frame(0x89, b"between"));
        input.extend(client_frame(0x02, &binary[..200_000]));
        input.extend(client_frame(0x89, b"inside a message"));
        input.extend(client_frame(0x80, &binary[200_000..]));
        let expected = vec![
            Ok(Incoming::Text(text.into())),
            Ok(Incoming::Ping(Bytes::from_static(b"between"))),
            Ok(Incoming::Ping(Bytes::from_static(b"inside a message"))),
            Ok(Incoming::Binary(binary.into())),
        ];
        for (writes, first) in [(1, 0), (33, 0), (1001, 0), (7, 3), (5, 300_000)] {
            assert_eq!(
                read_with(&input, writes, 1 << 20, first).await,
                expected,
                "{writes} writes, {first} bytes first"
            );
        }
    }

    #[tokio::test]
    async fn bad_input_is_refused_with_its_reason() {
        let refused = |input: Vec<u8>| async move {
            let got = read_all(&input, 1).await;
            got.last().unwrap().as_ref().unwrap_err().clone()
        };
        let mut unmasked = client_frame(0x81, b"hi");
        unmasked[1] &= 0x7f;
        for (input, reason) in [
            (client_frame(0xc1, b"x"), "reserved bits set"),
            (client_frame(0x83, b"x"), "reserved opcode"),
            (client_frame(0x8b, b"x"), "reserved opcode"),
            (unmasked, "unmasked client frame"),
            (client_frame(0x09, b"x"), "fragmented control frame"),
            (
                client_frame(0x89, &[0; 126]),
                "control frame over 125 bytes",
            ),
            (
                client_frame(0x80, b"x"),
                "continuation frame with no message",
            ),
            (
                [client_frame(0x01, b"x"), client_frame(0x81, b"y")].concat(),
                "a new message inside a fragmented one",
            ),
            (client_frame(0x88, &[3]), "close frame of one byte"),
            (
                client_frame(0x88, &1005u16.to_be_bytes()),
                "invalid close code",
            ),
            (
                client_frame(0x88, &2000u16.to_be_bytes()),
                "invalid close code",
            ),
            (client_frame(0x81, &[0xff]), "invalid UTF-8"),
            (client_frame(0x88, &[0x03, 0xe8, 0xff]), "invalid UTF-8"),
            (
                client_frame(0x82, &[0; MAX + 1]),
                "frame over the size limit",
            ),
            (
                [client_frame(0x02, &[0; MAX]), client_frame(0x80, b"x")].concat(),
                "message over the size limit",
            ),
        ] {
            let err = refused(input).await;
            assert!(err.contains(reason), "{err} should say {reason}");
        }
        // Refused at the header, before its payload comes: a frame that claims 1 GiB.
        let mut huge = vec![0x82, 0x80 | 127];
        huge.extend((1u64 << 30).to_be_bytes());
        huge.extend([1, 2, 3, 4]);
        assert_eq!(refused(huge).await, "frame over the size limit");
        // A 64-bit length must leave its top bit clear (RFC 6455 5.2): a protocol error.
        let mut bad = vec![0x82, 0x80 | 127];
        bad.extend((1u64 << 63).to_be_bytes());
        bad.extend([1, 2, 3, 4]);
        assert!(refused(bad).await.contains("top bit set"));
        // Invalid UTF-8 is refused in the fragment that brings it, before the message ends.
        let input = [client_frame(0x01, b"ok"), client_frame(0x00, &[0xc0, 0x80])].concat();
        assert!(refused(input).await.contains("UTF-8"));
    }

    #[tokio::test]
    async fn control_frames_are_not_held_to_the_message_limit() {
        // package_max_length may be as low as 16; a ping, or a close reason, may have 125 bytes.
        let close = [&1000u16.to_be_bytes()[..], &[b'r'; 100]].concat();
        let input = [client_frame(0x89, &[7; 125]), client_frame(0x88, &close)].concat();
        assert_eq!(
            read_with(&input, 1, 16, 0).await,
            vec![
                Ok(Incoming::Ping(vec![7; 125].into())),
                Ok(Incoming::Close(Some(1000)))
            ]
        );
    }

    #[tokio::test]
    async fn what_is_held_follows_what_came_not_what_a_header_claims() {
        // Room for everything written, so the writes never wait for the reader.
        let (mut client, mut server) = tokio::io::duplex(2 << 20);
        let mut reader = MessageReader::new(1 << 20, b"");
        let stays_pending = |reader: &mut MessageReader, server: &mut tokio::io::DuplexStream| {
            assert!(reader.poll_next(server, &mut noop_cx()).is_pending());
        };
        // A frame that claims 1 MiB and brings 100 bytes: no more than a read's worth reserved.
        let big = client_frame(0x82, &vec![1; 1 << 20]);
        client.write_all(&big[..114]).await.unwrap();
        stays_pending(&mut reader, &mut server);
        let message = reader
            .frames
            .message
            .as_ref()
            .expect("a message in the making");
        assert_eq!(message.data.len(), 100);
        assert!(
            message.data.capacity() <= READ,
            "{}",
            message.data.capacity()
        );
        // The rest of it, two whole frames and 3 bytes of the next header, in one write: once
        // the whole frames are taken, the 3 bytes are kept in a buffer their size.
        client.write_all(&big[114..]).await.unwrap();
        let mut input = client_frame(0x81, b"one");
        input.extend(client_frame(0x81, b"two"));
        input.extend(&client_frame(0x81, b"three")[..3]);
        client.write_all(&input).await.unwrap();
        for expected in [
            Incoming::Binary(vec![1; 1 << 20].into()),
            Incoming::Text("one".into()),
        ] {
            let got = poll_fn(|cx| reader.poll_next(&mut server, cx)).await;
            assert_eq!(got.unwrap().unwrap(), expected);
        }
        assert_eq!(
            poll_fn(|cx| reader.poll_next(&mut server, cx))
                .await
                .unwrap()
                .unwrap(),
            Incoming::Text("two".into())
        );
        stays_pending(&mut reader, &mut server);
        assert_eq!(reader.pending.len(), 3);
        assert_eq!(reader.pending.capacity(), 3);
    }

    #[test]
    fn unmasking_matches_the_bytewise_definition() {
        let mask = [0x12, 0x34, 0x56, 0x78];
        for len in 0..40 {
            let plain: Vec<u8> = (0..len as u8).collect();
            let masked: Vec<u8> = plain
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            assert_eq!(unmasked(&masked, mask), plain);
        }
    }
}
