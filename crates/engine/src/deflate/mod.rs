//! permessage-deflate (RFC 7692), with no context takeover in either direction: every message
//! is compressed and inflated on its own, so a connection keeps no compression state between
//! messages (an idle connection costs nothing more) and a message compressed once is the same
//! bytes for every client that negotiated it.
//!
//! Negotiation is here; outbound compression is [`compress`] (used by `frame::Encoded`);
//! inbound frames are inflated by [`inflate::Inflating`] under the message reader.

use std::cell::RefCell;

use flate2::{Compress, Compression, FlushCompress};

pub(crate) mod inflate;
pub(crate) mod large_slot;

/// The extension's token in `Sec-WebSocket-Extensions`.
const NAME: &str = "permessage-deflate";

/// The largest window (2^15 bytes), what a client that asks for no limit gets.
pub const MAX_WINDOW_BITS: u8 = 15;

/// Payloads shorter than this are sent in stored blocks, not compressed: chat-like JSON of 32
/// and 64 bytes shrank by 3-5% at level 1, of 96 bytes by 29%, of 128 by 42%, while each
/// compression costs several microseconds (a reset compressor) whatever the size.
const MIN_COMPRESS: usize = 128;

/// Level 1 (fastest): on chat and JSON messages it gives most of the size reduction of the
/// default level at a fraction of the CPU, which a broadcast server spends on every message.
const LEVEL: u32 = 1;

/// What was agreed for one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Agreed {
    /// The client's `server_max_window_bits`, or 15.
    pub window_bits: u8,
    /// The `Sec-WebSocket-Extensions` value of our answer.
    pub response: String,
}

/// Accepts the first acceptable permessage-deflate offer among the client's
/// `Sec-WebSocket-Extensions` header values; None if there is none.
pub(crate) fn negotiate<'a>(offers: impl IntoIterator<Item = &'a str>) -> Option<Agreed> {
    offers
        .into_iter()
        .flat_map(|value| value.split(','))
        .find_map(accept)
}

/// One offer (`permessage-deflate; param[=value]; ...`), if we can honour it. We always answer
/// with no context takeover both ways (RFC 7692 7.1.1.1 and 7.1.1.2 let a server do so even if
/// the client did not ask). A `client_max_window_bits` value needs nothing from us: our
/// inflater's 15-bit window reads anything.
fn accept(offer: &str) -> Option<Agreed> {
    let mut parts = offer.split(';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case(NAME) {
        return None;
    }
    let mut seen: Vec<&str> = Vec::new();
    let mut window_bits = None;
    for param in parts {
        let (name, value) = match param.split_once('=') {
            Some((name, value)) => (name.trim(), Some(value.trim().trim_matches('"'))),
            None => (param, None),
        };
        // RFC 7692 7.1: an offer with a parameter twice, an unknown parameter or a bad value
        // is declined (we go on to the next offer).
        if seen.contains(&name) {
            return None;
        }
        seen.push(name);
        match (name, value) {
            ("server_no_context_takeover" | "client_no_context_takeover", None) => {}
            ("server_max_window_bits", Some(v)) => window_bits = Some(bits(v)?),
            ("client_max_window_bits", None) => {}
            ("client_max_window_bits", Some(v)) => {
                bits(v)?;
            }
            _ => return None,
        }
    }
    let mut response = format!("{NAME}; server_no_context_takeover; client_no_context_takeover");
    if let Some(bits) = window_bits {
        response.push_str(&format!("; server_max_window_bits={bits}"));
    }
    Some(Agreed {
        window_bits: window_bits.unwrap_or(MAX_WINDOW_BITS),
        response,
    })
}

/// A window size parameter: 8 to 15, digits only.
fn bits(value: &str) -> Option<u8> {
    if value.is_empty()
        || value.len() > 2
        || !value.bytes().all(|b| b.is_ascii_digit())
        || value.starts_with('0')
    {
        return None;
    }
    value
        .parse()
        .ok()
        .filter(|b| (8..=MAX_WINDOW_BITS).contains(b))
}

/// Whether a compressed payload of `len` bytes can be sent to a client that allows a window
/// of 2^`window_bits` bytes. Our compressor always works with a 32 KiB window, but with no
/// context takeover it never refers further back than the start of the message, so a message
/// no longer than the window is within it; a longer one goes in stored blocks.
pub fn fits_window(len: usize, window_bits: u8) -> bool {
    window_bits >= MAX_WINDOW_BITS || len <= 1 << window_bits
}

/// `payload` as deflate stored blocks (no compression, up to 65535 bytes each): what RFC 7692
/// calls a compressed message, at 5 bytes per block and one more at the end.
pub fn stored(payload: &[u8]) -> Vec<u8> {
    stored_in(payload, 0xffff)
}

/// `payload` as stored blocks of `size` bytes (1 to 65535); see [`stored`].
pub(crate) fn stored_in(payload: &[u8], size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 5 * (payload.len() / size) + 6);
    for block in payload.chunks(size) {
        // BFINAL 0, BTYPE 00 (stored), padding to the byte; LEN and its one's complement.
        let len = block.len() as u16;
        out.push(0);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    // The header byte of the empty stored block a sync flush ends with; its LEN and NLEN are the
    // `00 00 ff ff` that RFC 7692 7.2.1 leaves out and the receiver appends. Without this byte,
    // those four bytes read as the start of a 65280-byte block, and a client that keeps one
    // inflate stream for the connection (Chromium does) reads the next message as its contents.
    out.push(0);
    out
}

thread_local! {
    /// One compressor per network thread, reset between messages: a fresh one allocates and
    /// clears a few hundred KiB.
    static COMPRESSOR: RefCell<Compress> = RefCell::new(Compress::new(Compression::new(LEVEL), false));
}

/// The payload of a compressed message (raw deflate, sync-flushed, without the final
/// `00 00 ff ff`), or None when it is too short to pay or would not be smaller.
pub fn compress(payload: &[u8]) -> Option<Vec<u8>> {
    if payload.len() < MIN_COMPRESS {
        return None;
    }
    COMPRESSOR.with_borrow_mut(|deflater| {
        deflater.reset();
        let mut out = Vec::with_capacity(payload.len() / 2 + 64);
        loop {
            let done = deflater.total_in() as usize;
            out.reserve(1024);
            deflater
                .compress_vec(&payload[done..], &mut out, FlushCompress::Sync)
                .ok()?;
            // A sync flush is complete once all input is in and the output was not cut short.
            if deflater.total_in() as usize == payload.len() && out.len() < out.capacity() {
                break;
            }
        }
        // RFC 7692 7.2.1: the sync flush ends with an empty stored block, which is not sent.
        if !out.ends_with(&[0, 0, 0xff, 0xff]) {
            return None;
        }
        out.truncate(out.len() - 4);
        (out.len() < payload.len()).then_some(out)
    })
}

/// `len` bytes that do not compress (xorshift), the same every time.
#[cfg(test)]
pub(crate) fn noise(len: usize) -> Vec<u8> {
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agreed(offers: &[&str]) -> Option<(u8, String)> {
        negotiate(offers.iter().copied()).map(|a| (a.window_bits, a.response))
    }

    const BOTH: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

    #[test]
    fn browser_and_python_offers_are_accepted_without_context_takeover() {
        assert_eq!(
            agreed(&["permessage-deflate; client_max_window_bits"]),
            Some((15, BOTH.into()))
        );
        assert_eq!(agreed(&["permessage-deflate"]), Some((15, BOTH.into())));
        assert_eq!(
            agreed(&["Permessage-Deflate ;client_max_window_bits=10"]),
            Some((15, BOTH.into()))
        );
    }

    #[test]
    fn server_max_window_bits_is_answered_and_kept() {
        let (bits, response) =
            agreed(&["permessage-deflate; server_max_window_bits=\"9\""]).unwrap();
        assert_eq!(
            (bits, response),
            (9, format!("{BOTH}; server_max_window_bits=9"))
        );
        assert_eq!(
            agreed(&["permessage-deflate; server_max_window_bits=8"])
                .unwrap()
                .0,
            8
        );
    }

    #[test]
    fn bad_offers_are_declined_and_the_next_one_taken() {
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; client_max_window_bits=abc",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; unknown_param",
            "x-webkit-deflate-frame",
        ] {
            assert_eq!(agreed(&[bad]), None, "{bad}");
            assert_eq!(
                agreed(&[&format!(
                    "{bad}, permessage-deflate; server_max_window_bits=12"
                )])
                .unwrap()
                .0,
                12,
                "{bad}"
            );
        }
        assert_eq!(
            agreed(&["foo", "permessage-deflate"]).unwrap().0,
            15,
            "offers in a second header line"
        );
        assert_eq!(agreed(&[]), None);
    }

    #[test]
    fn only_messages_within_a_small_window_are_compressed() {
        assert!(fits_window(1 << 20, 15));
        assert!(fits_window(256, 8) && !fits_window(257, 8));
    }

    fn inflate(data: &[u8]) -> Vec<u8> {
        inflate_with(&mut flate2::Decompress::new(false), data)
    }

    /// One message through an inflate stream that may have seen earlier messages.
    fn inflate_with(d: &mut flate2::Decompress, data: &[u8]) -> Vec<u8> {
        let mut input = data.to_vec();
        input.extend_from_slice(&[0, 0, 0xff, 0xff]);
        let mut out = Vec::with_capacity(1 << 20);
        let before = d.total_in();
        d.decompress_vec(&input, &mut out, flate2::FlushDecompress::Sync)
            .unwrap();
        assert_eq!(
            d.total_in() - before,
            input.len() as u64,
            "the message ends where a block ends"
        );
        out
    }

    #[test]
    fn messages_inflate_through_one_stream_kept_for_the_connection() {
        // Without context takeover a client may still keep one inflate stream (browsers do): each
        // message must leave it between blocks.
        let text = "{\"event\":\"chat\",\"data\":\"hello there, hello there\"} ".repeat(40);
        let payloads: [&[u8]; 5] = [b"short", b"", text.as_bytes(), &[7u8; 70_000], b"again"];
        let mut d = flate2::Decompress::new(false);
        for payload in payloads {
            let packed = compress(payload).unwrap_or_else(|| stored(payload));
            assert_eq!(inflate_with(&mut d, &packed), payload);
        }
    }

    #[test]
    fn stored_blocks_inflate_to_the_payload() {
        for len in [0usize, 1, 127, 0xffff, 0x10000, 200_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
            let packed = stored(&payload);
            assert_eq!(packed.len(), len + 5 * len.div_ceil(0xffff) + 1);
            assert_eq!(inflate(&packed), payload, "{len}");
        }
    }

    #[test]
    fn compressed_messages_inflate_back_each_on_its_own() {
        let text = "{\"event\":\"chat\",\"data\":\"hello there, hello there\"} ".repeat(40);
        for _ in 0..2 {
            let packed = compress(text.as_bytes()).expect("repetitive text compresses");
            assert!(packed.len() < text.len() / 5);
            assert_eq!(inflate(&packed), text.as_bytes());
        }
        assert_eq!(compress(b"short"), None, "under MIN_COMPRESS");
        assert_eq!(
            compress(&noise(4096)),
            None,
            "incompressible data goes plain"
        );
    }
}
