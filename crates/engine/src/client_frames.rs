//! What the layers under the message reader (`message_reader`) know of the frames a client
//! sends: their header lengths, and the splitting of large data frames into fragments.
//!
//! Why split: the reader takes a frame once it is whole, and keeps the bytes of one cut short
//! by a read until the rest comes. A 1 MB frame would be gathered whole (growing a buffer as it
//! came) and then copied into its message. Handed fragments of at most [`PIECE`] bytes instead,
//! the reader holds at most a piece apart from the message, and appends each piece to the
//! message as it arrives.
//!
//! Only the headers change. A piece starts at a multiple of 4 bytes into its frame, so the
//! frame's masking key still lines up and the payload bytes pass as they are. Frames that are
//! not plain masked data frames (control frames, RSV bits set: permessage-deflate's first
//! frame, or bad input) and frames over the size limit pass whole, so the reader and the
//! inflate layer judge them exactly as they came.

use tokio::io::ReadBuf;

/// The largest data frame handed on whole: about the most the reader holds of a frame.
pub(crate) const PIECE: u64 = 1024;
const _: () = assert!(
    PIECE.is_multiple_of(4),
    "pieces must keep the masking key aligned"
);

pub(crate) const FIN: u8 = 0x80;
const RSV: u8 = 0x70;
pub(crate) const MASKED: u8 = 0x80;
pub(crate) const OP_CONTINUATION: u8 = 0;
const OP_BINARY: u8 = 2;

/// Length of a client frame's header, from its second byte.
pub(crate) fn header_len(second: u8) -> usize {
    let extended = match second & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    2 + extended + if second & MASKED != 0 { 4 } else { 0 }
}

/// Payload length given in a whole header.
pub(crate) fn payload_len(header: &[u8]) -> u64 {
    match header[1] & 0x7f {
        126 => u16::from_be_bytes([header[2], header[3]]) as u64,
        127 => u64::from_be_bytes(header[2..10].try_into().expect("8 length bytes")),
        n => n as u64,
    }
}

/// The header of a masked client frame: first byte `first` (FIN, RSV bits, opcode), `len`
/// payload bytes, masking key `mask`. Returns the header and its length.
pub(crate) fn masked_header(first: u8, len: u64, mask: [u8; 4]) -> ([u8; 14], usize) {
    let mut header = [0u8; 14];
    header[0] = first;
    let n = if len < 126 {
        header[1] = MASKED | len as u8;
        2
    } else if len <= u16::MAX as u64 {
        header[1] = MASKED | 126;
        header[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        header[1] = MASKED | 127;
        header[2..10].copy_from_slice(&len.to_be_bytes());
        10
    };
    header[n..n + 4].copy_from_slice(&mask);
    (header, n + 4)
}

/// Rewrites the client's byte stream on its way to the reader (see the module comment).
pub(crate) struct FrameSplitter {
    /// Frames above this pass whole, so that the reader refuses them at their header.
    max_frame: u64,
    part: Part,
    /// A header being gathered (a read cut it short), then the header to hand on: that one,
    /// or the header of the next piece.
    header: [u8; 14],
    /// Bytes of a header gathered so far.
    gathered: u8,
    /// The first `to_send` bytes of `header` are to be handed on; `sent` of them are.
    to_send: u8,
    sent: u8,
}

#[derive(Debug, PartialEq)]
enum Part {
    /// Between frames.
    Header,
    /// Passing this many bytes (never 0) on as they are.
    Copy(u64),
    /// Handing on the pieces of a large frame: `left` payload bytes, `piece` of them in the
    /// current piece.
    Split {
        left: u64,
        piece: u64,
        fin: bool,
        mask: [u8; 4],
    },
}

impl FrameSplitter {
    pub fn new(max_frame: usize) -> Self {
        FrameSplitter {
            max_frame: max_frame as u64,
            part: Part::Header,
            header: [0; 14],
            gathered: 0,
            to_send: 0,
            sent: 0,
        }
    }

    /// Hands on what it can of `input` into `out`; returns how many bytes of `input` it took.
    /// It may take bytes without handing anything on yet (the start of a header).
    pub fn pass(&mut self, input: &[u8], out: &mut ReadBuf<'_>) -> usize {
        let mut used = self.pass_whole_frames(input, out);
        if used > 0 && used == input.len() {
            // All in whole frames: nothing is left half handed on.
            return used;
        }
        while out.remaining() > 0 {
            if self.sent < self.to_send {
                let header = &self.header[self.sent as usize..self.to_send as usize];
                let n = header.len().min(out.remaining());
                out.put_slice(&header[..n]);
                self.sent += n as u8;
                continue;
            }
            let rest = &input[used..];
            match self.part {
                Part::Header if rest.is_empty() => break,
                Part::Header => used += self.read_header(rest),
                Part::Copy(left) => {
                    let n = (left.min(rest.len().min(out.remaining()) as u64)) as usize;
                    if n == 0 {
                        break;
                    }
                    out.put_slice(&rest[..n]);
                    used += n;
                    self.part = if left == n as u64 {
                        Part::Header
                    } else {
                        Part::Copy(left - n as u64)
                    };
                }
                Part::Split {
                    left,
                    piece,
                    fin,
                    mask,
                } => {
                    if piece == 0 {
                        self.start_piece(left, OP_CONTINUATION, fin, mask);
                        continue;
                    }
                    let n = (piece.min(rest.len().min(out.remaining()) as u64)) as usize;
                    if n == 0 {
                        break;
                    }
                    out.put_slice(&rest[..n]);
                    used += n;
                    let (left, piece) = (left - n as u64, piece - n as u64);
                    self.part = if left == 0 {
                        Part::Header
                    } else {
                        Part::Split {
                            left,
                            piece,
                            fin,
                            mask,
                        }
                    };
                }
            }
        }
        used
    }

    /// Between frames, hands on in one copy the frames at the start of `input` that are there
    /// whole, fit in `out` and pass as they are (nearly always every frame of a read); returns
    /// how many bytes that was.
    #[inline]
    fn pass_whole_frames(&mut self, input: &[u8], out: &mut ReadBuf<'_>) -> usize {
        if self.part != Part::Header || self.gathered != 0 || self.sent < self.to_send {
            return 0;
        }
        let room = &input[..input.len().min(out.remaining())];
        let mut end = 0;
        while let [_, second, ..] = room[end..] {
            let header = header_len(second);
            let Some(header) = room.get(end..end + header) else {
                break;
            };
            let payload = payload_len(header);
            if self.splits(header, payload) || payload > (room.len() - end - header.len()) as u64 {
                break;
            }
            end += header.len() + payload as usize;
        }
        out.put_slice(&room[..end]);
        end
    }

    /// Takes header bytes from `rest` (which is not empty); once the header is whole, decides
    /// how its frame goes on. Returns how many bytes it took.
    fn read_header(&mut self, rest: &[u8]) -> usize {
        if self.gathered == 0 && rest.len() >= 2 && rest.len() >= header_len(rest[1]) {
            // The whole header is here, as it nearly always is.
            let header = &rest[..header_len(rest[1])];
            let payload = payload_len(header);
            if self.splits(header, payload) {
                self.start_split(header, payload);
                return header.len();
            }
            // Copied with its header.
            self.part = Part::Copy(payload.saturating_add(header.len() as u64));
            return 0;
        }
        let have = self.gathered as usize;
        let need = if have < 2 {
            2
        } else {
            header_len(self.header[1])
        };
        let n = (need - have).min(rest.len());
        self.header[have..have + n].copy_from_slice(&rest[..n]);
        let have = have + n;
        self.gathered = have as u8;
        if have < need || header_len(self.header[1]) > have {
            return n;
        }
        self.gathered = 0;
        let header = self.header;
        let header = &header[..have];
        let payload = payload_len(header);
        if self.splits(header, payload) {
            self.start_split(header, payload);
        } else {
            // Hand it on as it came.
            (self.to_send, self.sent) = (have as u8, 0);
            self.part = if payload == 0 {
                Part::Header
            } else {
                Part::Copy(payload)
            };
        }
        n
    }

    fn splits(&self, header: &[u8], payload: u64) -> bool {
        let (first, second) = (header[0], header[1]);
        payload > PIECE
            && payload <= self.max_frame
            && first & RSV == 0
            && second & MASKED != 0
            && first & 0x0f <= OP_BINARY
    }

    fn start_split(&mut self, header: &[u8], payload: u64) {
        let mask = header[header.len() - 4..]
            .try_into()
            .expect("a masked header ends with its key");
        self.start_piece(payload, header[0] & 0x0f, header[0] & FIN != 0, mask);
    }

    /// Makes the header of the next piece of a frame with `left` payload bytes to go: `opcode`
    /// (the frame's own on the first piece, continuation after), FIN on the last piece if the
    /// frame had it.
    fn start_piece(&mut self, left: u64, opcode: u8, fin: bool, mask: [u8; 4]) {
        let piece = left.min(PIECE);
        let (header, len) = masked_header(
            if piece == left && fin { FIN } else { 0 } | opcode,
            piece,
            mask,
        );
        self.header = header;
        (self.to_send, self.sent) = (len as u8, 0);
        self.part = Part::Split {
            left,
            piece,
            fin,
            mask,
        };
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;

    use super::*;
    use crate::fuzzing::client_frame;

    const MAX: usize = 1 << 20;

    /// Everything `input` turns into, taken `step` bytes at a time into outputs of `room`.
    fn split(input: &[u8], step: usize, room: usize) -> Vec<u8> {
        let mut splitter = FrameSplitter::new(MAX);
        let (mut got, mut pos) = (Vec::new(), 0);
        let mut space = vec![0u8; room];
        loop {
            let end = (pos + step).min(input.len());
            let mut out = ReadBuf::new(&mut space);
            pos += splitter.pass(&input[pos..end], &mut out);
            if out.filled().is_empty() && pos == input.len() {
                return got;
            }
            got.extend_from_slice(out.filled());
        }
    }

    /// The frames in `bytes`: first byte, unmasked payload.
    fn frames(bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut cursor = Cursor::new(bytes);
        let mut frames = Vec::new();
        while (cursor.position() as usize) < bytes.len() {
            let start = cursor.position() as usize;
            let (header, len) = FrameHeader::parse(&mut cursor)
                .unwrap()
                .expect("a whole header");
            let at = cursor.position() as usize;
            let mut payload = bytes[at..at + len as usize].to_vec();
            let mask = header.mask.expect("client frames are masked");
            payload
                .iter_mut()
                .enumerate()
                .for_each(|(i, b)| *b ^= mask[i % 4]);
            frames.push((bytes[start], payload));
            cursor.set_position((at + len as usize) as u64);
        }
        frames
    }

    #[test]
    fn frames_up_to_a_piece_control_frames_and_frames_over_the_limit_pass_unchanged() {
        let mut input = Vec::new();
        for n in [0, 1, 125, 126, 1000, PIECE as usize] {
            input.extend(client_frame(0x81, &vec![b'a'; n]));
        }
        input.extend(client_frame(0x89, b"ping"));
        input.extend(client_frame(0xc1, &[7; 5000])); // RSV1: permessage-deflate's to judge
        input.extend(client_frame(0x82, &vec![9; MAX + 1])); // for the reader to refuse
        let mut unmasked = client_frame(0x82, &[1; 5000]);
        unmasked[1] &= !MASKED;
        unmasked.drain(4..8);
        input.extend(unmasked);
        for (step, room) in [
            (input.len(), input.len()),
            (1, 1),
            (7, 512),
            (16384, 512),
            (3, 100_000),
        ] {
            assert_eq!(split(&input, step, room), input, "step {step}, room {room}");
        }
    }

    #[test]
    fn a_large_frame_goes_on_in_pieces_that_make_the_same_message() {
        let payload: Vec<u8> = (0..5000u32).map(|i| (i % 253) as u8).collect();
        let cases = [
            (0x82, 0x02, 0x80), // a whole binary message
            (0x01, 0x01, 0x00), // the first fragment of a text message
            (0x80, 0x00, 0x80), // its last fragment
        ];
        for (first, opcode, fin) in cases {
            let input = client_frame(first, &payload);
            for (step, room) in [(input.len(), input.len()), (1, 1), (5, 600), (16384, 512)] {
                let pieces = frames(&split(&input, step, room));
                assert_eq!(pieces.len(), 5, "step {step}, room {room}");
                for (i, (head, piece)) in pieces.iter().enumerate() {
                    let last = i == pieces.len() - 1;
                    assert_eq!(head & 0x0f, if i == 0 { opcode } else { 0 });
                    assert_eq!(head & FIN, if last { fin } else { 0 });
                    assert_eq!(head & RSV, 0);
                    assert_eq!(
                        piece.len(),
                        if last {
                            5000 - 4 * PIECE as usize
                        } else {
                            PIECE as usize
                        }
                    );
                }
                assert_eq!(
                    pieces
                        .into_iter()
                        .flat_map(|(_, piece)| piece)
                        .collect::<Vec<u8>>(),
                    payload
                );
            }
        }
    }

    #[tokio::test]
    async fn the_message_reader_reads_the_pieces_as_the_messages_sent() {
        use bytes::Bytes;
        use tokio::io::AsyncWriteExt;

        use crate::message_reader::{Incoming, MessageReader};
        use crate::read_ahead::ReadAhead;

        // UTF-8 characters of 2, 3 and 4 bytes cut by the piece boundaries.
        let text: String = "aé€😀".repeat(20_000);
        let binary: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let mut input = client_frame(0x81, text.as_bytes());
        input.extend(client_frame(0x89, b"between"));
        input.extend(client_frame(0x02, &binary[..200_000]));
        input.extend(client_frame(0x89, b"inside a message"));
        input.extend(client_frame(0x80, &binary[200_000..]));
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let writer = tokio::spawn(async move { client.write_all(&input).await });
        let mut socket = ReadAhead::with_ahead(server, Bytes::new(), MAX);
        let mut reader = MessageReader::new(MAX);
        let mut got = Vec::new();
        while let Some(next) = std::future::poll_fn(|cx| reader.poll_next(&mut socket, cx)).await {
            got.push(next.unwrap());
        }
        writer.await.unwrap().unwrap();
        assert_eq!(
            got,
            [
                Incoming::Text(text.into()),
                Incoming::Ping(Bytes::from_static(b"between")),
                Incoming::Ping(Bytes::from_static(b"inside a message")),
                Incoming::Binary(binary.into())
            ]
        );
    }
}
