//! Server-to-client data frames, encoded by us rather than by tungstenite, so that one message
//! broadcast to many clients is encoded once and the same bytes are written to every socket
//! (server frames are never masked, so they are the same for every recipient).

use std::sync::{Arc, OnceLock};

use bytes::{BufMut, Bytes, BytesMut};

use crate::deflate;

pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub(crate) const OP_CLOSE: u8 = 0x8;
pub(crate) const OP_PING: u8 = 0x9;
pub(crate) const OP_PONG: u8 = 0xA;
const FIN: u8 = 0x80;
/// RSV1: the payload is compressed (permessage-deflate).
const RSV1: u8 = 0x40;

/// One data message queued for one or many connections: the frame every plain client gets,
/// and the compressed frame made the first time a permessage-deflate connection writes it, so
/// a broadcast is compressed at most once, on a network thread, and only if some recipient
/// negotiated compression.
#[derive(Debug)]
pub struct Encoded {
    opcode: u8,
    plain: Bytes,
    /// The RSV1 frame: deflated, or in stored blocks when compressing does not pay.
    deflated: OnceLock<Bytes>,
    /// The RSV1 frame in stored blocks, for a window too small for the payload.
    stored: OnceLock<Bytes>,
}

impl Encoded {
    pub fn new(opcode: u8, payload: &[u8]) -> Arc<Self> {
        Arc::new(Encoded {
            opcode,
            plain: encode(opcode, payload),
            deflated: OnceLock::new(),
            stored: OnceLock::new(),
        })
    }

    /// A frame made by [`encode`] elsewhere (another worker's, over the bus); None if `plain`
    /// is not a whole final data frame.
    pub(crate) fn from_plain(plain: Bytes) -> Option<Arc<Self>> {
        let header = match *plain.get(1)? {
            126 => 4,
            127 => 10,
            len if len < 126 => 2,
            _ => return None,
        };
        let opcode = plain[0] & 0x0F;
        let whole = plain.len() >= header
            && payload_len(&plain) == declared_len(&plain[..header])
            && plain[0] & 0xF0 == FIN;
        (whole && matches!(opcode, OP_TEXT | OP_BINARY)).then(|| {
            Arc::new(Encoded {
                opcode,
                plain,
                deflated: OnceLock::new(),
                stored: OnceLock::new(),
            })
        })
    }

    /// The whole frame, uncompressed.
    pub fn plain(&self) -> &Bytes {
        &self.plain
    }

    pub fn payload_len(&self) -> usize {
        payload_len(&self.plain)
    }

    /// The frame for a connection that negotiated permessage-deflate with this window. Every
    /// message on such a connection is sent with RSV1: RFC 7692 allows plain ones too, but
    /// some clients (Autobahn's kosoku) then mishandle them, and stored blocks cost 6 bytes.
    /// Made once per message and kept with it, like the plain frame.
    fn for_deflate(&self, window_bits: u8) -> &Bytes {
        let payload = &self.plain[self.plain.len() - self.payload_len()..];
        let rsv1_frame = |data: &[u8]| encode_first(FIN | RSV1 | self.opcode, data);
        if !deflate::fits_window(payload.len(), window_bits) {
            // Stored blocks hold no back references, so any window reads them.
            return self
                .stored
                .get_or_init(|| rsv1_frame(&deflate::stored(payload)));
        }
        self.deflated.get_or_init(|| {
            rsv1_frame(&deflate::compress(payload).unwrap_or_else(|| deflate::stored(payload)))
        })
    }

    /// The frame for a connection: `deflate` is the window it agreed, if it negotiated
    /// permessage-deflate.
    pub fn for_connection(&self, deflate: Option<u8>) -> &Bytes {
        match deflate {
            Some(window_bits) => self.for_deflate(window_bits),
            None => &self.plain,
        }
    }
}

/// The frame of the last message pushed, handed out again for a push of the same bytes: the
/// articles' loop (`foreach ($server->connections as $fd) $server->push($fd, $msg)`) then
/// queues one frame for all its clients, as `broadcast()` does, instead of a copy each (and a
/// permessage-deflate client's frame is compressed once, not once per client). Forgotten when
/// the burst is over, so that it keeps no large message alive.
#[derive(Default)]
pub(crate) struct LastFrame(Option<Arc<Encoded>>);

impl LastFrame {
    /// `frame`, or the last one if it has the same bytes.
    pub(crate) fn share(&mut self, frame: Arc<Encoded>) -> Arc<Encoded> {
        match &self.0 {
            Some(last) if last.plain == frame.plain => last.clone(),
            _ => self.0.insert(frame).clone(),
        }
    }

    /// As [`Encoded::from_plain`], with no copy of `plain` if the last frame has its bytes.
    pub(crate) fn share_plain(&mut self, plain: &[u8]) -> Option<Arc<Encoded>> {
        match &self.0 {
            Some(last) if last.plain == plain => Some(last.clone()),
            _ => Some(
                self.0
                    .insert(Encoded::from_plain(Bytes::copy_from_slice(plain))?)
                    .clone(),
            ),
        }
    }

    pub(crate) fn forget(&mut self) {
        self.0 = None;
    }

    #[cfg(test)]
    pub(crate) fn holds_a_frame(&self) -> bool {
        self.0.is_some()
    }
}

/// A whole, final (FIN) frame: header then payload, ready to be written to any client.
pub fn encode(opcode: u8, payload: &[u8]) -> Bytes {
    encode_first(FIN | opcode, payload)
}

/// A ping or pong frame. Its payload is cut to the 125 bytes RFC 6455 allows.
pub(crate) fn control(opcode: u8, payload: &[u8]) -> Bytes {
    encode_first(FIN | opcode, &payload[..payload.len().min(125)])
}

/// A close frame: empty without a status code, else the code and the reason, cut to fit the
/// 125 bytes of a control frame at the start of a character.
pub(crate) fn close(code: Option<u16>, reason: &str) -> Bytes {
    let Some(code) = code else {
        return encode_first(FIN | OP_CLOSE, &[]);
    };
    let mut fits = reason.len().min(123);
    while !reason.is_char_boundary(fits) {
        fits -= 1;
    }
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(&reason.as_bytes()[..fits]);
    encode_first(FIN | OP_CLOSE, &payload)
}

/// A frame whose first byte (FIN, RSV bits, opcode) is `first`.
fn encode_first(first: u8, payload: &[u8]) -> Bytes {
    let len = payload.len();
    let header = match len {
        0..126 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    };
    // Exactly the frame's size: bytes then keeps the buffer as it is, where a spare byte made
    // it allocate a second block to share it.
    let mut buf = BytesMut::with_capacity(header + len);
    buf.put_u8(first);
    match header {
        2 => buf.put_u8(len as u8),
        4 => {
            buf.put_u8(126);
            buf.put_u16(len as u16);
        }
        _ => {
            buf.put_u8(127);
            buf.put_u64(len as u64);
        }
    }
    buf.put_slice(payload);
    debug_assert_eq!(buf.len(), buf.capacity());
    buf.freeze()
}

/// The payload length a frame's header (as [`encode`] writes it) declares.
fn declared_len(header: &[u8]) -> usize {
    match header.len() {
        4 => u16::from_be_bytes([header[2], header[3]]) as usize,
        10 => u64::from_be_bytes(header[2..10].try_into().unwrap()) as usize,
        _ => header[1] as usize,
    }
}

/// The payload length of a frame made by [`encode`] (for queue accounting and stats).
pub fn payload_len(frame: &[u8]) -> usize {
    let header = match frame[1] {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    frame.len() - header
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;

    #[test]
    fn a_push_of_the_last_bytes_shares_their_frame_and_no_other_does() {
        let mut last = LastFrame::default();
        let first = last.share(Encoded::new(OP_TEXT, b"hello"));
        assert!(Arc::ptr_eq(
            &last.share(Encoded::new(OP_TEXT, b"hello")),
            &first
        ));
        let plain = encode(OP_TEXT, b"hello");
        assert!(Arc::ptr_eq(&last.share_plain(&plain).unwrap(), &first));
        // Other bytes, or the same bytes as another opcode, are a frame of their own.
        let binary = last.share(Encoded::new(OP_BINARY, b"hello"));
        assert!(!Arc::ptr_eq(&binary, &first) && binary.plain()[0] == FIN | OP_BINARY);
        let other = last.share(Encoded::new(OP_BINARY, b"other"));
        assert_eq!(&other.plain()[2..], b"other");
        assert!(last.share_plain(&[0x81]).is_none(), "not a whole frame");
        last.forget();
        assert!(!Arc::ptr_eq(
            &last.share(Encoded::new(OP_BINARY, b"other")),
            &other
        ));
    }

    #[test]
    fn frames_parse_back_with_tungstenite() {
        for len in [0usize, 1, 125, 126, 127, 65_535, 65_536, 100_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let bytes = encode(OP_BINARY, &payload);
            let mut cursor = std::io::Cursor::new(&bytes[..]);
            let (header, length) = FrameHeader::parse(&mut cursor).unwrap().unwrap();
            assert!(header.is_final && header.mask.is_none());
            assert_eq!(length as usize, len);
            assert_eq!(&bytes[cursor.position() as usize..], &payload[..]);
            assert_eq!(payload_len(&bytes), len);
        }
    }

    #[test]
    fn control_frames_are_cut_to_125_bytes_at_a_character() {
        let ping = control(OP_PING, &[7; 300]);
        assert_eq!((ping[0], ping[1], ping.len()), (0x89, 125, 127));
        // A close reason of 2-byte characters: cut before the one that would straddle 125.
        let frame = close(Some(1000), &"é".repeat(100));
        assert_eq!((frame[0], frame[1]), (0x88, 124));
        assert_eq!(&frame[2..4], &1000u16.to_be_bytes());
        assert!(std::str::from_utf8(&frame[4..]).is_ok());
        assert_eq!(&close(Some(1001), "bye")[2..], b"\x03\xe9bye");
        assert_eq!(&close(None, "ignored")[..], &[0x88, 0]);
    }
}
