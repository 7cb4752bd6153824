//! Signatures of the Pusher protocol: channel auth strings (`<key>:<hex hmac>`), HTTP API
//! request signatures and `body_md5`. Every comparison of a secret-derived value is done by
//! `hmac`'s constant-time verification.

use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &str, message: &[u8]) -> HmacSha256 {
    let mut mac =
        HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(message);
    mac
}

/// Lowercase hex of HMAC-SHA256(secret, message).
pub fn sign(secret: &str, message: &str) -> String {
    hex(&mac(secret, message.as_bytes()).finalize().into_bytes())
}

/// True if `signature_hex` is HMAC-SHA256(secret, message), compared in constant time.
pub fn verify(secret: &str, message: &str, signature_hex: &str) -> bool {
    match unhex(signature_hex) {
        Some(bytes) => mac(secret, message.as_bytes()).verify_slice(&bytes).is_ok(),
        None => false,
    }
}

/// Checks a subscription's `auth` (`<key>:<hex hmac of socket_id:channel[:channel_data]>`).
pub fn verify_channel_auth(
    key: &str,
    secret: &str,
    auth: &str,
    socket_id: &str,
    channel: &str,
    channel_data: Option<&str>,
) -> bool {
    let message = match channel_data {
        Some(data) => format!("{socket_id}:{channel}:{data}"),
        None => format!("{socket_id}:{channel}"),
    };
    verify_auth(key, secret, auth, &message)
}

/// Checks a `pusher:signin`'s `auth` (`<key>:<hex hmac of socket_id::user::user_data>`), as the
/// server SDKs' `authenticateUser()` signs it.
pub fn verify_user_auth(
    key: &str,
    secret: &str,
    auth: &str,
    socket_id: &str,
    user_data: &str,
) -> bool {
    verify_auth(
        key,
        secret,
        auth,
        &format!("{socket_id}::user::{user_data}"),
    )
}

/// `auth` is `<key>:<hex HMAC-SHA256(secret, message)>`.
fn verify_auth(key: &str, secret: &str, auth: &str, message: &str) -> bool {
    // The signature is hex; the key may hold a colon itself.
    let Some((auth_key, signature)) = auth.rsplit_once(':') else {
        return false;
    };
    // The key is public: a plain comparison leaks nothing.
    auth_key == key && verify(secret, message, signature)
}

pub fn md5_hex(body: &[u8]) -> String {
    hex(&Md5::digest(body))
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    s.as_bytes()
        .chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha256_known_answer() {
        // RFC 4231, test case 2.
        assert_eq!(
            sign("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(verify(
            "Jefe",
            "what do ya want for nothing?",
            "5BDCC146BF60754E6A042426089575C75A003F089D2739839DEC58B964EC3843"
        ));
        assert!(!verify(
            "Jefe",
            "what do ya want for nothing!",
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        ));
        assert!(!verify("Jefe", "x", "zz"));
    }

    #[test]
    fn channel_auth_covers_socket_channel_and_data() {
        let sig = sign("secret", "1.2:presence-room:{\"user_id\":1}");
        let auth = format!("key:{sig}");
        let verify = |key, auth: &str, socket, user| {
            let data = format!("{{\"user_id\":{user}}}");
            verify_channel_auth(key, "secret", auth, socket, "presence-room", Some(&data))
        };
        assert!(verify("key", &auth, "1.2", 1));
        assert!(!verify("key", &auth, "1.3", 1));
        assert!(!verify("key", &auth, "1.2", 2));
        assert!(!verify("other", &auth, "1.2", 1));
        assert!(!verify("key", &sig, "1.2", 1));
        // A key with a colon in it (Laravel signs `key:hex` whatever the key).
        assert!(verify("app:key", &format!("app:key:{sig}"), "1.2", 1));
        assert!(!verify("app", &format!("app:key:{sig}"), "1.2", 1));
    }

    #[test]
    fn user_auth_covers_socket_and_user_data() {
        let data = r#"{"id":"7"}"#;
        let auth = format!("key:{}", sign("secret", &format!("1.2::user::{data}")));
        assert!(verify_user_auth("key", "secret", &auth, "1.2", data));
        assert!(!verify_user_auth("key", "secret", &auth, "1.3", data));
        assert!(!verify_user_auth(
            "key",
            "secret",
            &auth,
            "1.2",
            r#"{"id":"8"}"#
        ));
        assert!(!verify_user_auth("key", "other", &auth, "1.2", data));
    }

    #[test]
    fn md5_known_answer() {
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
    }
}
