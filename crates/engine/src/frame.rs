//! Server-to-client data frames, encoded by us rather than by tungstenite, so that one message
//! broadcast to many clients is encoded once and the same bytes are written to every socket
//! (server frames are never masked, so they are the same for every recipient).

use bytes::{BufMut, Bytes, BytesMut};

pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;

/// A whole, final (FIN) frame: header then payload, ready to be written to any client.
pub fn encode(opcode: u8, payload: &[u8]) -> Bytes {
    let len = payload.len();
    let mut buf = BytesMut::with_capacity(len + 10);
    buf.put_u8(0x80 | opcode);
    if len < 126 {
        buf.put_u8(len as u8);
    } else if len <= u16::MAX as usize {
        buf.put_u8(126);
        buf.put_u16(len as u16);
    } else {
        buf.put_u8(127);
        buf.put_u64(len as u64);
    }
    buf.put_slice(payload);
    buf.freeze()
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
}
