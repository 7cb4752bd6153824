//! The inbound half of permessage-deflate, as a layer under the message reader (which rejects
//! any frame with RSV1 set): client frames pass through as they are, except the frames of a
//! compressed message, whose payload is unmasked, inflated and handed on as ordinary
//! uncompressed fragments (masked with a zero key, as the reader wants from a client). The
//! reader then checks everything it checks on a plain connection (UTF-8, fragmentation, control
//! frames, close, package_max_length) on what the application will see.
//!
//! RSV1 where RFC 7692 does not allow it (a continuation or control frame, RSV2/RSV3 too, an
//! unmasked frame, a compressed frame inside a message) is passed through untouched, so
//! the reader fails the connection with 1002 as it does without negotiation. Inflated output
//! is made at most [`OUT_LIMIT`] bytes at a time and counted by the reader against
//! package_max_length: a decompression bomb is closed with 1009 after package_max_length bytes,
//! with memory bounded by that. The compressed bytes of one message are held to that limit plus
//! what deflate may add to incompressible data ([`max_compressed`]): deflate can also shrink
//! (empty blocks inflate to nothing), and this bounds such a message too. A message that
//! inflates past 64 KiB, to more than 8 times its compressed bytes, goes on only while it holds
//! a slot of `large_slot`, which bounds what such messages hold across connections.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use flate2::{Decompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Semaphore;

use super::large_slot::{LargeSlot, LARGE, RATIO};
use crate::client_frames::{header_len, masked_header, payload_len, FIN, MASKED, OP_CONTINUATION};

/// Inflated bytes made before they are handed to the reader (plus one frame).
const OUT_LIMIT: usize = 16 * 1024;
/// The largest fragment we make out of inflated data, inflated into a buffer on the stack.
const CHUNK: usize = 1024;
/// Bytes read from the socket at once.
const READ: usize = 4096;
/// What a sync flush ends with; RFC 7692 7.2.2: appended to a message's payload to inflate it.
const TAIL: [u8; 4] = [0, 0, 0xff, 0xff];
/// What is fed after a message's payload: the TAIL, then an empty final block (BFINAL, fixed
/// Huffman codes, the end-of-block code: 10 bits). The stream ends there only if the payload
/// ended between blocks, as RFC 7692 7.2.1 has it end (with the header of an empty stored block,
/// whose length the TAIL is). A payload cut inside a block reads these bytes as more of that
/// block: it does not end the stream, or does not inflate, and is refused (1007) instead of
/// delivered with what they inflate to. Ending the stream is harmless: with no context takeover
/// the inflater is reset after every message. A payload that is empty, or that ends with the
/// whole sync flush (a client that did not take its last 4 bytes off), is between blocks
/// already: it gets only the final block (`END[4..]`), and is read as zlib-based receivers that
/// only append the TAIL read it (a payload as RFC 7692 has it end never ends with 0xff).
const END: [u8; 6] = [0, 0, 0xff, 0xff, 0x03, 0x00];

const RSV1: u8 = 0x40;
const RSV23: u8 = 0x30;

/// The most compressed bytes a message of at most `max_message` bytes may come in: deflate
/// makes incompressible data a little larger, and a message of random bytes just under the limit
/// must be accepted compressed as it is plain. This is zlib's deflateBound() for any parameters
/// (its bound for fixed blocks of 9-bit literals, about 13%, which is over its bound for
/// stored blocks of 127 bytes, about 4%), plus 64 bytes for the sync flush and what a compressor
/// adds per message. zlib's tight bound for its default parameters (about 0.03%) is not enough:
/// Python's websockets compresses with memLevel 5, which puts random data in stored blocks of
/// about 2 KiB, 0.25% more. The inflated size is still held to `max_message`; this bounds only
/// a message that inflates to little (empty blocks), to about the time its bytes take to read.
fn max_compressed(max_message: usize) -> u64 {
    let max = max_message as u64;
    max.saturating_add(max / 8 + max / 256 + max / 512 + 64)
}

/// What the reader reports (as an I/O error) when a compressed message cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InflateError {
    /// It does not inflate.
    BadData,
    /// Its compressed bytes are over the message size limit.
    TooBig,
    /// It held a large message slot longer than `large_slot::SLOT_TIME` and has not all come.
    TooSlow,
}

impl std::fmt::Display for InflateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            InflateError::BadData => "compressed message does not inflate",
            InflateError::TooBig => "compressed message over the size limit",
            InflateError::TooSlow => "large compressed message too slow to arrive",
        })
    }
}

impl std::error::Error for InflateError {}

/// A connection's socket as the reader sees it: the socket itself, or, with permessage-deflate
/// negotiated, the socket with compressed messages inflated.
pub(crate) struct Inflating<S> {
    inner: S,
    /// Boxed: the many connections without compression pay one pointer.
    reader: Option<Box<Reader>>,
}

struct Reader {
    window_bits: u8,
    decoder: Decoder,
    /// Bytes read but not decoded yet (the decoder stops at OUT_LIMIT); empty when idle.
    input: Vec<u8>,
    /// Decoded bytes not yet handed to the reader, from `out_pos`; empty when idle.
    out: Vec<u8>,
    out_pos: usize,
    /// The decoder refused the input. Reported once the frames it decoded before are handed
    /// on (a message that came before a bad one in the same read is delivered, as without
    /// compression); nothing is decoded after it.
    failed: Option<InflateError>,
    large: LargeSlot,
}

impl<S> Inflating<S> {
    /// `window_bits`: None without permessage-deflate, else the window agreed for what we send.
    /// `max_message`: the largest message once inflated (its compressed bytes may be a little
    /// more, see [`max_compressed`]). `first`:
    /// bytes the client sent after its handshake, read with it: with permessage-deflate they are
    /// read before the socket; without, they are given back, for the reader above.
    /// `large_slots`: the process's (see `large_slot::slots`).
    pub fn new(
        inner: S,
        window_bits: Option<u8>,
        max_message: usize,
        first: Bytes,
        large_slots: &Arc<Semaphore>,
    ) -> (Self, Bytes) {
        let Some(window_bits) = window_bits else {
            let inflating = Inflating {
                inner,
                reader: None,
            };
            return (inflating, first);
        };
        let decoder = Decoder {
            max_compressed: max_compressed(max_message),
            ..Decoder::default()
        };
        let reader = Box::new(Reader {
            window_bits,
            decoder,
            input: first.to_vec(),
            out: Vec::new(),
            out_pos: 0,
            failed: None,
            large: LargeSlot::new(large_slots.clone()),
        });
        let inflating = Inflating {
            inner,
            reader: Some(reader),
        };
        (inflating, Bytes::new())
    }

    /// The window agreed for the messages we send, if permessage-deflate was negotiated.
    pub fn deflate_window(&self) -> Option<u8> {
        self.reader.as_ref().map(|r| r.window_bits)
    }

    /// The socket under it, for bytes that are no longer read as messages.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Inflating<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(reader) = this.reader.as_deref_mut() else {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        };
        loop {
            if reader.out_pos < reader.out.len() {
                let n = buf.remaining().min(reader.out.len() - reader.out_pos);
                buf.put_slice(&reader.out[reader.out_pos..reader.out_pos + n]);
                reader.out_pos += n;
                if reader.out_pos == reader.out.len() {
                    reader.out.clear();
                    reader.out_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if let Some(failed) = reader.failed {
                return Poll::Ready(Err(io::Error::other(failed)));
            }
            // Every byte inflated is with the reader, which wants more: a message that ended has
            // been handed on, and its slot is free.
            reader
                .large
                .release_unless(reader.decoder.compressed_message());
            if let Some(message) = reader.decoder.large_message() {
                ready!(reader.large.poll_hold(message, cx));
            }
            if !reader.input.is_empty() || reader.decoder.has_output_pending() {
                match reader.decoder.feed(&reader.input, &mut reader.out) {
                    Ok(used) => {
                        reader.input.drain(..used);
                        if used > 0 || !reader.out.is_empty() {
                            continue;
                        }
                    }
                    Err(err) => {
                        reader.fail(err);
                        continue;
                    }
                }
            }
            let mut raw = [0u8; READ];
            let mut read = ReadBuf::new(&mut raw);
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Pending => {
                    if reader.decoder.compressed_message().is_some() && reader.large.overdue(cx) {
                        reader.fail(InflateError::TooSlow);
                        continue;
                    }
                    // Idle: hold no buffers.
                    if reader.input.is_empty() {
                        reader.input = Vec::new();
                        reader.out = Vec::new();
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Ready(Ok(())) => {
                    let raw = read.filled();
                    if raw.is_empty() {
                        return Poll::Ready(Ok(()));
                    }
                    if reader.input.is_empty() {
                        match reader.decoder.feed(raw, &mut reader.out) {
                            Ok(used) => reader.input.extend_from_slice(&raw[used..]),
                            Err(err) => reader.fail(err),
                        }
                    } else {
                        reader.input.extend_from_slice(raw);
                    }
                }
            }
        }
    }
}

impl Reader {
    fn fail(&mut self, err: InflateError) {
        self.failed = Some(err);
        self.input = Vec::new();
        // Nothing more is inflated: the slot is for the next one, not for the close that follows.
        self.large.release_unless(None);
    }
}

/// Writes pass straight through: the layer changes reading only.
impl<S: AsyncWrite + Unpin> AsyncWrite for Inflating<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Where the decoder is in the stream of client frames.
#[derive(Debug, Default)]
enum Part {
    /// Reading a frame header into `header`.
    #[default]
    Header,
    /// Copying this many payload bytes of a frame we do not touch.
    Pass(u64),
    /// Inflating this many payload bytes of a compressed frame.
    Inflate {
        left: u64,
        mask: [u8; 4],
        offset: usize,
        fin: bool,
    },
}

/// The message the frames belong to, for continuations.
#[derive(Debug, Default, PartialEq)]
enum Message {
    #[default]
    None,
    Plain,
    /// `opcode` until the first fragment is handed on, then 0 (continuation).
    Compressed {
        opcode: u8,
    },
}

/// Turns client frames into what the reader reads (see the module comment). Synchronous and
/// socket-free, so it is tested on bytes.
#[derive(Default)]
struct Decoder {
    header: [u8; 14],
    have: usize,
    part: Part,
    message: Message,
    /// While a compressed message is being read.
    inflater: Option<Box<Decompress>>,
    /// The message's deflate stream ended (BFINAL): anything after it is ignored.
    ended: bool,
    /// Bytes of END fed to the inflater at the end of the message.
    tail_fed: usize,
    /// Compressed payload bytes of the current message, and the most it may have with the
    /// header bytes of its empty fragments that did not end it (`empty_fragments`): endless
    /// ones never grew the message and never ended it.
    compressed: u64,
    empty_fragments: u64,
    max_compressed: u64,
    /// The last 4 compressed payload bytes of the current message inflated so far.
    last_bytes: [u8; 4],
    /// Compressed messages begun, the current one's number; the bytes it inflated to so far,
    /// and the compressed bytes those came from.
    messages: u64,
    inflated: u64,
    inflated_from: u64,
}

thread_local! {
    /// Inflaters ready for the next compressed message (one per thread): a fresh one
    /// allocates and clears about 40 KiB.
    static SPARE: RefCell<Option<Box<Decompress>>> = const { RefCell::new(None) };
}

fn take_inflater() -> Box<Decompress> {
    SPARE
        .with_borrow_mut(Option::take)
        .unwrap_or_else(|| Box::new(Decompress::new(false)))
}

fn give_back(mut inflater: Box<Decompress>) {
    inflater.reset(false);
    SPARE.with_borrow_mut(|spare| *spare = Some(inflater));
}

impl Decoder {
    /// The number of the compressed message being inflated, if one is.
    fn compressed_message(&self) -> Option<u64> {
        matches!(self.message, Message::Compressed { .. }).then_some(self.messages)
    }

    /// The number of the compressed message being inflated if it needs a slot: past [`LARGE`]
    /// bytes, and more than [`RATIO`] times the bytes they came in.
    fn large_message(&self) -> Option<u64> {
        let large = self.inflated >= LARGE && self.inflated > RATIO * self.inflated_from;
        self.compressed_message().filter(|_| large)
    }

    /// Whether the decoder can make output without more input (the end of a compressed
    /// message that was cut at OUT_LIMIT).
    fn has_output_pending(&self) -> bool {
        matches!(
            self.part,
            Part::Inflate {
                left: 0,
                fin: true,
                ..
            }
        )
    }

    /// Decodes from `input` into `out` until the input is used up or `out` holds OUT_LIMIT
    /// bytes; returns how much input was used. On an error `out` may hold frames decoded before
    /// it, to be handed on first; the decoder is not to be fed again.
    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, InflateError> {
        let mut used = 0;
        while out.len() < OUT_LIMIT {
            let rest = &input[used..];
            match self.part {
                Part::Header if rest.is_empty() => break,
                Part::Header => used += self.read_header(rest, out)?,
                Part::Pass(left) => {
                    let n = (left.min(rest.len() as u64)) as usize;
                    if n == 0 {
                        break;
                    }
                    out.extend_from_slice(&rest[..n]);
                    used += n;
                    self.part = if left == n as u64 {
                        Part::Header
                    } else {
                        Part::Pass(left - n as u64)
                    };
                }
                Part::Inflate {
                    left: 0, fin: true, ..
                } => self.finish(out)?,
                Part::Inflate {
                    left: 0,
                    fin: false,
                    ..
                } => self.part = Part::Header,
                Part::Inflate { .. } if rest.is_empty() => break,
                Part::Inflate {
                    left,
                    mask,
                    offset,
                    fin,
                } => {
                    let n = (left.min(rest.len().min(READ) as u64)) as usize;
                    let mut data = [0u8; READ];
                    for (i, (d, r)) in data.iter_mut().zip(&rest[..n]).enumerate() {
                        *d = r ^ mask[(offset + i) % 4];
                    }
                    let mut chunk = [0u8; CHUNK];
                    let (taken, made) = self.inflate(&data[..n], &mut chunk, false)?;
                    for &byte in &data[taken.saturating_sub(4)..taken] {
                        self.last_bytes.rotate_left(1);
                        self.last_bytes[3] = byte;
                    }
                    if made > 0 {
                        self.fragment(&chunk[..made], false, out);
                    } else if taken == 0 {
                        break;
                    }
                    used += taken;
                    self.inflated_from += taken as u64;
                    self.part = Part::Inflate {
                        left: left - taken as u64,
                        mask,
                        offset: (offset + taken) % 4,
                        fin,
                    };
                }
            }
        }
        Ok(used)
    }

    /// Takes header bytes from `rest`; once the header is whole, decides what to do with the
    /// frame. Returns how many bytes it took.
    fn read_header(&mut self, rest: &[u8], out: &mut Vec<u8>) -> Result<usize, InflateError> {
        let need = if self.have < 2 {
            2
        } else {
            header_len(self.header[1])
        };
        let n = (need - self.have).min(rest.len());
        self.header[self.have..self.have + n].copy_from_slice(&rest[..n]);
        self.have += n;
        if self.have < need || need == 2 && header_len(self.header[1]) > 2 {
            return Ok(n);
        }
        let header = &self.header[..self.have];
        self.have = 0;
        let (first, second) = (header[0], header[1]);
        let opcode = first & 0x0f;
        let fin = first & FIN != 0;
        let payload = payload_len(header);
        let header_bytes = header.len() as u64;
        let clean = first & RSV23 == 0 && second & MASKED != 0;
        let compressed_start = clean
            && first & RSV1 != 0
            && (opcode == 1 || opcode == 2)
            && self.message == Message::None;
        let compressed_next = clean
            && first & RSV1 == 0
            && opcode == OP_CONTINUATION
            && matches!(self.message, Message::Compressed { .. });
        if compressed_start || compressed_next {
            let mask = header[header.len() - 4..]
                .try_into()
                .expect("a masked header ends with its key");
            if compressed_start {
                self.message = Message::Compressed { opcode };
                self.inflater = Some(take_inflater());
                self.ended = false;
                self.tail_fed = 0;
                self.compressed = 0;
                self.empty_fragments = 0;
                self.last_bytes = [0; 4];
                self.messages += 1;
                (self.inflated, self.inflated_from) = (0, 0);
                if !fin {
                    // Tell the reader a fragmented message has begun, so that a data frame
                    // before its end is refused even if nothing has inflated yet.
                    self.fragment(&[], false, out);
                }
            }
            if payload == 0 && !fin && compressed_next {
                self.empty_fragments += header_bytes;
            }
            self.compressed = self.compressed.saturating_add(payload);
            if self.compressed.saturating_add(self.empty_fragments) > self.max_compressed {
                return Err(InflateError::TooBig);
            }
            self.part = Part::Inflate {
                left: payload,
                mask,
                offset: 0,
                fin,
            };
            return Ok(n);
        }
        // Not ours to change: the reader reads (or rejects) it as it is.
        match (opcode, fin) {
            (1 | 2, false) if self.message == Message::None => self.message = Message::Plain,
            (OP_CONTINUATION, true) if self.message == Message::Plain => {
                self.message = Message::None
            }
            _ => {}
        }
        out.extend_from_slice(header);
        self.part = if payload == 0 {
            Part::Header
        } else {
            Part::Pass(payload)
        };
        Ok(n)
    }

    /// Inflates what it can of `data` into `chunk`; returns how much of `data` it used and how
    /// many bytes it made. `last`: `data` is (the rest of) END, flush everything.
    fn inflate(
        &mut self,
        data: &[u8],
        chunk: &mut [u8],
        last: bool,
    ) -> Result<(usize, usize), InflateError> {
        if self.ended {
            return Ok((data.len(), 0));
        }
        let inflater = self
            .inflater
            .as_mut()
            .expect("a compressed message has an inflater");
        let (before_in, before_out) = (inflater.total_in(), inflater.total_out());
        let flush = if last {
            FlushDecompress::Sync
        } else {
            FlushDecompress::None
        };
        let status = inflater
            .decompress(data, chunk, flush)
            .map_err(|_| InflateError::BadData)?;
        self.ended = status == Status::StreamEnd;
        Ok((
            (inflater.total_in() - before_in) as usize,
            (inflater.total_out() - before_out) as usize,
        ))
    }

    /// The end of a compressed message: inflates END and hands on what comes out, the
    /// last of it as the final fragment (one CHUNK per call, so a bomb stops at OUT_LIMIT).
    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), InflateError> {
        let end = if self.compressed == 0 || self.compressed >= 4 && self.last_bytes == TAIL {
            &END[TAIL.len()..]
        } else {
            &END[..]
        };
        let mut chunk = [0u8; CHUNK];
        let (taken, made) = self.inflate(&end[self.tail_fed..], &mut chunk, true)?;
        self.tail_fed += taken;
        // Room left in the chunk means the inflater has nothing more to give.
        if !self.ended && self.tail_fed == end.len() && made < CHUNK {
            return Err(InflateError::BadData);
        }
        let done = self.ended;
        if made > 0 || done {
            self.fragment(&chunk[..made], done, out);
        }
        if done {
            self.message = Message::None;
            self.part = Part::Header;
            if let Some(inflater) = self.inflater.take() {
                give_back(inflater);
            }
        }
        Ok(())
    }

    /// Appends one uncompressed client frame (masked with a zero key) carrying `data`.
    fn fragment(&mut self, data: &[u8], fin: bool, out: &mut Vec<u8>) {
        let Message::Compressed { opcode } = &mut self.message else {
            unreachable!("fragments belong to a compressed message");
        };
        let (header, len) = masked_header(
            if fin { FIN } else { 0 } | *opcode,
            data.len() as u64,
            [0; 4],
        );
        *opcode = OP_CONTINUATION;
        self.inflated += data.len() as u64;
        out.extend_from_slice(&header[..len]);
        out.extend_from_slice(data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deflate::large_slot::slots;
    use crate::deflate::{noise, stored_in};
    use crate::fuzzing::client_frame;
    use crate::message_reader::{Incoming, MessageReader, ReadError};

    impl Decoder {
        fn new_for_test() -> Self {
            Decoder {
                max_compressed: u64::MAX,
                ..Decoder::default()
            }
        }
    }
    use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;

    fn deflated(data: &[u8]) -> Vec<u8> {
        let mut c = flate2::Compress::new(flate2::Compression::default(), false);
        let mut out = Vec::with_capacity(data.len() + 1024);
        c.compress_vec(data, &mut out, flate2::FlushCompress::Sync)
            .unwrap();
        assert!(out.ends_with(&TAIL));
        out.truncate(out.len() - 4);
        out
    }

    /// Runs `input` through a decoder `step` bytes at a time, as the socket layer does;
    /// returns the frames the reader would read: (first byte, payload unmasked).
    fn decode(input: &[u8], step: usize) -> Result<Vec<(u8, Vec<u8>)>, InflateError> {
        decode_with(Decoder::new_for_test(), input, step)
    }

    fn decode_with(
        mut decoder: Decoder,
        input: &[u8],
        step: usize,
    ) -> Result<Vec<(u8, Vec<u8>)>, InflateError> {
        let mut wire = Vec::new();
        let mut pending: Vec<u8> = Vec::new();
        for piece in input.chunks(step) {
            pending.extend_from_slice(piece);
            loop {
                let mut out = Vec::new();
                let used = decoder.feed(&pending, &mut out)?;
                assert!(out.len() <= OUT_LIMIT + CHUNK + 14, "output bounded");
                pending.drain(..used);
                wire.extend_from_slice(&out);
                if out.is_empty()
                    && (pending.is_empty() || used == 0)
                    && !decoder.has_output_pending()
                {
                    break;
                }
            }
        }
        let mut frames = Vec::new();
        let mut cursor = io::Cursor::new(&wire[..]);
        while (cursor.position() as usize) < wire.len() {
            let (header, len) = FrameHeader::parse(&mut cursor)
                .unwrap()
                .expect("whole frames");
            let start = cursor.position() as usize;
            let mut payload = wire[start..start + len as usize].to_vec();
            if let Some(key) = header.mask {
                payload
                    .iter_mut()
                    .enumerate()
                    .for_each(|(i, b)| *b ^= key[i % 4]);
            }
            cursor.set_position((start + len as usize) as u64);
            frames.push((wire[start - header_size(&header, len)], payload));
        }
        Ok(frames)
    }

    fn header_size(header: &FrameHeader, len: u64) -> usize {
        let ext = if len < 126 {
            0
        } else if len <= 0xffff {
            2
        } else {
            8
        };
        2 + ext + if header.mask.is_some() { 4 } else { 0 }
    }

    /// The messages in `frames` (first byte of the first fragment, reassembled payload).
    fn messages(frames: &[(u8, Vec<u8>)]) -> Vec<(u8, Vec<u8>)> {
        let mut done = Vec::new();
        let mut current: Option<(u8, Vec<u8>)> = None;
        for (first, payload) in frames {
            assert_eq!(
                first & (RSV1 | RSV23),
                0,
                "the reader sees no reserved bits"
            );
            assert!(
                payload.len() <= CHUNK,
                "a fragment of {} bytes",
                payload.len()
            );
            if first & 0x08 != 0 {
                done.push((*first, payload.clone()));
                continue;
            }
            let (_, data) = current.get_or_insert((*first & 0x0f, Vec::new()));
            data.extend_from_slice(payload);
            if first & FIN != 0 {
                done.push(current.take().unwrap());
            }
        }
        done
    }

    fn text(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| b"surge deflates messages "[i % 24] ^ (i / 997) as u8 & 0x1f)
            .collect()
    }

    #[test]
    fn compressed_messages_come_out_inflated_in_any_read_sizes() {
        let big = text(200_000);
        let compressed = deflated(&big);
        let (a, b) = compressed.split_at(compressed.len() / 3);
        let mut input = client_frame(FIN | RSV1 | 1, &deflated(b"hello"));
        input.extend(client_frame(FIN | 2, b"plain binary"));
        // A fragmented compressed message with a ping between its fragments.
        input.extend(client_frame(RSV1 | 2, a));
        input.extend(client_frame(FIN | 9, b"ping"));
        input.extend(client_frame(FIN, b));
        input.extend(client_frame(FIN | RSV1 | 1, &[0x00]));
        for step in [1, 7, 4096, input.len()] {
            let got = messages(&decode(&input, step).unwrap());
            let want: Vec<(u8, Vec<u8>)> = vec![
                (1, b"hello".to_vec()),
                (2, b"plain binary".to_vec()),
                (FIN | 9, b"ping".to_vec()),
                (2, big.clone()),
                (1, Vec::new()),
            ];
            assert_eq!(got.len(), want.len(), "step {step}");
            assert!(got == want, "step {step}");
        }
    }

    #[test]
    fn reserved_bits_where_they_are_not_allowed_reach_the_reader_untouched() {
        for bad in [
            client_frame(FIN | RSV1 | 9, b"ping"),
            client_frame(RSV1, b"continuation"),
            client_frame(FIN | RSV1 | 0x20 | 1, b"rsv2"),
        ] {
            let mut wire = Vec::new();
            Decoder::new_for_test().feed(&bad, &mut wire).unwrap();
            assert_eq!(wire, bad);
        }
        // A compressed frame inside a plain fragmented message.
        let mut input = client_frame(1, b"start");
        let second = client_frame(FIN | RSV1 | 1, b"x");
        input.extend(&second);
        let mut wire = Vec::new();
        Decoder::new_for_test().feed(&input, &mut wire).unwrap();
        assert_eq!(wire, input);
    }

    #[test]
    fn a_bomb_is_inflated_a_bounded_chunk_at_a_time() {
        let bomb = deflated(&vec![0u8; 50 << 20]);
        assert!(bomb.len() < 100 << 10);
        let input = client_frame(FIN | RSV1 | 2, &bomb);
        let mut decoder = Decoder::new_for_test();
        let mut out = Vec::new();
        let used = decoder.feed(&input, &mut out).unwrap();
        assert!(
            out.len() <= OUT_LIMIT + CHUNK + 14 && used < input.len(),
            "stops at OUT_LIMIT"
        );
    }

    #[test]
    fn garbage_is_an_error() {
        let input = client_frame(FIN | RSV1 | 2, &[0xff; 64]);
        let err = Decoder::new_for_test()
            .feed(&input, &mut Vec::new())
            .unwrap_err();
        assert_eq!(err, InflateError::BadData);
    }

    #[test]
    fn compressed_bytes_over_the_limit_are_refused() {
        let mut decoder = Decoder {
            max_compressed: 100,
            ..Decoder::default()
        };
        let mut out = Vec::new();
        // Empty stored blocks: valid, and they inflate to nothing.
        let empty_blocks = [0, 0, 0, 0xff, 0xff].repeat(12);
        decoder
            .feed(&client_frame(RSV1 | 2, &empty_blocks), &mut out)
            .unwrap();
        let err = decoder
            .feed(&client_frame(0, &empty_blocks), &mut out)
            .unwrap_err();
        assert_eq!(err, InflateError::TooBig);
    }

    #[test]
    fn a_compressed_message_of_endless_empty_fragments_is_refused() {
        let mut decoder = Decoder {
            max_compressed: 100,
            ..Decoder::default()
        };
        let mut input = client_frame(RSV1 | 2, &[]);
        for _ in 0..100 {
            input.extend(client_frame(0, &[]));
        }
        let err = decoder.feed(&input, &mut Vec::new()).unwrap_err();
        assert_eq!(err, InflateError::TooBig);
    }

    #[test]
    fn an_empty_compressed_message_in_empty_fragments_is_empty() {
        let mut input = client_frame(RSV1 | 1, &[]);
        input.extend(client_frame(0, &[]));
        input.extend(client_frame(FIN, &[]));
        assert_eq!(messages(&decode(&input, 1).unwrap()), [(1, Vec::new())]);
    }

    #[test]
    fn incompressible_messages_just_under_the_limit_are_accepted() {
        // Random bytes grow when deflated: a message a little under the limit is a little over
        // it compressed, by 0.03% from zlib's defaults (flate2 here), by 0.25% in stored blocks
        // of 2 KiB (Python's websockets, memLevel 5) and by 4% in stored blocks of 127 bytes
        // (zlib's memLevel 1).
        let max = 2 << 20;
        let data = noise(max - 100);
        let by_flate2 = deflated(&data);
        let in_2k_blocks = stored_in(&data, 2048);
        let in_127_byte_blocks = stored_in(&data, 127);
        for compressed in [by_flate2, in_2k_blocks, in_127_byte_blocks] {
            assert!(compressed.len() > max);
            let decoder = Decoder {
                max_compressed: max_compressed(max),
                ..Decoder::default()
            };
            let input = client_frame(FIN | RSV1 | 2, &compressed);
            let got = messages(&decode_with(decoder, &input, 4096).unwrap());
            assert!(got == [(2, data.clone())], "{} bytes", compressed.len());
        }
    }

    #[tokio::test]
    async fn a_large_message_waits_for_a_slot_until_the_one_before_is_handed_on() {
        let text = vec![b'a'; 1 << 20];
        let input = client_frame(FIN | RSV1 | 1, &deflated(&text));
        // A limit that leaves one slot.
        let (max, slots) = (1 << 30, slots(1 << 30));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let [(mut a, mut a_reader), (mut b, mut b_reader)] = [(); 2].map(|_| {
            let (socket, _) = Inflating::new(&input[..], Some(15), max, Bytes::new(), &slots);
            (socket, MessageReader::new(max, &[]))
        });
        let whole = |next| matches!(next, Poll::Ready(Some(Ok(Incoming::Text(t)))) if t == text);
        assert!(whole(a_reader.poll_next(&mut a, &mut cx)));
        // Past 64 KiB (and one output more), b waits for the slot a's message holds.
        assert!(b_reader.poll_next(&mut b, &mut cx).is_pending());
        let held = b.reader.as_ref().unwrap().decoder.inflated;
        assert!(
            (LARGE..LARGE + 2 * OUT_LIMIT as u64).contains(&held),
            "{held}"
        );
        // Once a's reader reads on, its message has been handed on: b has the slot.
        assert!(matches!(
            a_reader.poll_next(&mut a, &mut cx),
            Poll::Ready(None)
        ));
        assert!(whole(b_reader.poll_next(&mut b, &mut cx)));
    }

    #[tokio::test]
    async fn a_large_message_that_compresses_little_needs_no_slot() {
        // Bytes that do not compress (an upload) hold about what was sent: they never wait.
        let data = noise(1 << 20);
        let input = client_frame(FIN | RSV1 | 2, &deflated(&data));
        let (max, slots) = (1 << 30, slots(1 << 30));
        let _the_only_slot = slots.clone().try_acquire_owned().unwrap();
        let (mut socket, _) = Inflating::new(&input[..], Some(15), max, Bytes::new(), &slots);
        let mut reader = MessageReader::new(max, &[]);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let next = reader.poll_next(&mut socket, &mut cx);
        assert!(matches!(next, Poll::Ready(Some(Ok(Incoming::Binary(b)))) if b == data));
    }

    #[tokio::test(start_paused = true)]
    async fn a_large_message_that_stops_coming_gives_its_slot_up_after_slot_time() {
        use super::super::large_slot::SLOT_TIME;
        use tokio::io::AsyncWriteExt;

        let input = client_frame(FIN | RSV1 | 1, &deflated(&[b'a'; 1 << 20]));
        let (max, slots) = (1 << 30, slots(1 << 30));
        let (mut client, server) = tokio::io::duplex(1 << 20);
        // Half of it: far past 64 KiB inflated, and then nothing more.
        client.write_all(&input[..input.len() / 2]).await.unwrap();
        let (mut socket, _) = Inflating::new(server, Some(15), max, Bytes::new(), &slots);
        let mut reader = MessageReader::new(max, &[]);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(reader.poll_next(&mut socket, &mut cx).is_pending());
        assert_eq!(slots.available_permits(), 0);
        tokio::time::advance(SLOT_TIME).await;
        let Poll::Ready(Some(Err(ReadError::Io(err)))) = reader.poll_next(&mut socket, &mut cx)
        else {
            panic!("refused")
        };
        assert_eq!(
            err.get_ref().unwrap().downcast_ref(),
            Some(&InflateError::TooSlow)
        );
        assert_eq!(slots.available_permits(), 1);
    }

    #[test]
    fn messages_before_a_bad_one_in_the_same_read_are_handed_on_first() {
        let hello = client_frame(FIN | RSV1 | 1, &deflated(b"hello"));
        let plain = client_frame(FIN | 2, b"plain");
        let garbage = client_frame(FIN | RSV1 | 2, &[0xff; 64]);
        let mut huge = vec![FIN | RSV1 | 2, MASKED | 127];
        huge.extend((1u64 << 40).to_be_bytes());
        huge.extend([1, 2, 3, 4]);
        for (bad, error) in [
            (garbage, InflateError::BadData),
            (huge, InflateError::TooBig),
        ] {
            // One read brings all three frames.
            let input = [hello.clone(), plain.clone(), bad].concat();
            let (mut socket, _) =
                Inflating::new(&input[..], Some(15), 1 << 20, Bytes::new(), &slots(1 << 20));
            let mut reader = MessageReader::new(1 << 20, &[]);
            let mut cx = Context::from_waker(std::task::Waker::noop());
            let mut next = || match reader.poll_next(&mut socket, &mut cx) {
                Poll::Ready(Some(next)) => next,
                other => panic!("{other:?}"),
            };
            assert_eq!(
                next().unwrap(),
                Incoming::Text(Bytes::from_static(b"hello"))
            );
            assert_eq!(
                next().unwrap(),
                Incoming::Binary(Bytes::from_static(b"plain"))
            );
            let Err(ReadError::Io(err)) = next() else {
                panic!("an error")
            };
            assert_eq!(err.get_ref().unwrap().downcast_ref(), Some(&error));
        }
    }

    #[test]
    fn a_message_cut_inside_a_deflate_block_is_bad_data() {
        let whole = deflated(&text(2000));
        let mut accepted = Vec::new();
        for cut in 1..whole.len() {
            let input = client_frame(FIN | RSV1 | 1, &whole[..cut]);
            match decode(&input, input.len()) {
                Err(InflateError::BadData) => {}
                other => accepted.push((cut, other)),
            }
        }
        assert!(accepted.is_empty(), "{accepted:?}");
        // Whole, the same message inflates.
        let input = client_frame(FIN | RSV1 | 1, &whole);
        assert_eq!(messages(&decode(&input, 7).unwrap()), [(1, text(2000))]);
        // As zlib-based receivers read them: with the whole sync flush, and empty.
        let unstripped = [&whole[..], &TAIL].concat();
        let input = client_frame(FIN | RSV1 | 1, &unstripped);
        for step in [1, 7, input.len()] {
            assert_eq!(messages(&decode(&input, step).unwrap()), [(1, text(2000))]);
        }
        let input = client_frame(FIN | RSV1 | 1, &[]);
        assert_eq!(messages(&decode(&input, 1).unwrap()), [(1, vec![])]);
        // Cut inside a block, those same 4 bytes are refused.
        let input = client_frame(FIN | RSV1 | 1, &[&whole[..24], &TAIL].concat());
        assert_eq!(decode(&input, 1).unwrap_err(), InflateError::BadData);
        // RFC 7692's examples of "Hello" inflate (7.2.3.1, 7.2.3.3 to 7.2.3.6: one block, a
        // stored block, a final block, two blocks, fragments with an empty stored block at the
        // end of the first, the second 0x00 as the RFC has it, or empty).
        let hello = [(1, b"Hello".to_vec())];
        for payload in [
            &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00][..],
            &[
                0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
            ],
            &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00],
            &[
                0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00,
            ],
        ] {
            let input = client_frame(FIN | RSV1 | 1, payload);
            assert_eq!(messages(&decode(&input, 1).unwrap()), hello);
        }
        let first = [
            0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00, 0x00, 0xff, 0xff,
        ];
        for last in [&[0x00][..], &[]] {
            let input = [client_frame(RSV1 | 1, &first), client_frame(FIN, last)].concat();
            assert_eq!(messages(&decode(&input, 1).unwrap()), hello);
        }
    }
}
