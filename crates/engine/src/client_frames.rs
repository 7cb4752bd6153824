//! What the message reader and the inflate layer both know of the frames a client sends:
//! their header lengths, and how a masked header is written.

pub(crate) const FIN: u8 = 0x80;
pub(crate) const RSV: u8 = 0x70;
pub(crate) const MASKED: u8 = 0x80;
pub(crate) const OP_CONTINUATION: u8 = 0;

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
