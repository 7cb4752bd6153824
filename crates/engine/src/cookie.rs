//! Cookies both ways, in the formats PHP users know: a `Set-Cookie` value built as PHP's
//! `setcookie()` builds it (for the PHP layer's `Response::cookie()`), and `Cookie` headers read
//! as PHP fills `$_COOKIE` (for `Request::$cookie`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// What PHP's `rawurlencode()` leaves as it is (RFC 3986's unreserved characters).
const COOKIE_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Characters that would end a cookie's name, value or attribute early (PHP refuses the same).
const FORBIDDEN: &[char] = &['=', ',', ';', ' ', '\t', '\r', '\n', '\x0b', '\x0c'];

/// Whether `text` holds one of `set` or another control character (which no header may hold).
fn breaks(text: &str, set: &[char]) -> bool {
    text.contains(set) || text.chars().any(|c| c.is_ascii_control())
}

/// The last second an HTTP date can name (9999-12-31T23:59:59Z).
pub(crate) const LAST_HTTP_DATE: i64 = 253_402_300_799;

/// One `Set-Cookie` header's attributes, as `cookie()` takes them.
pub struct SetCookie<'a> {
    pub name: &'a str,
    pub value: &'a str,
    /// Unix time; 0 or less makes a session cookie.
    pub expire: i64,
    pub path: &'a str,
    pub domain: &'a str,
    pub secure: bool,
    pub http_only: bool,
    pub same_site: &'a str,
    /// Send the value as given (`rawCookie()`, PHP's `setrawcookie()`) instead of URL-encoded;
    /// then it must not hold `,;` or white space.
    pub raw: bool,
}

impl SetCookie<'_> {
    /// The header's value, or why it cannot be sent: the value URL-encoded as PHP's
    /// `rawurlencode()` does; an empty value deletes the cookie in the browser (an expiry in the
    /// past), as in PHP.
    pub fn header_value(&self, now: SystemTime) -> Result<String, String> {
        if self.name.is_empty() || breaks(self.name, FORBIDDEN) {
            return Err(format!(
                "cookie name '{}' is empty or contains one of =,; or white space or a control character",
                self.name
            ));
        }
        for (what, text) in [("path", self.path), ("domain", self.domain)] {
            if breaks(text, &FORBIDDEN[1..]) {
                return Err(format!(
                    "cookie '{}' has one of ,; or white space or a control character in its {what}",
                    self.name
                ));
            }
        }
        let same_site = match self.same_site.to_ascii_lowercase().as_str() {
            "" => "",
            "lax" => "Lax",
            "strict" => "Strict",
            "none" => "None",
            _ => {
                return Err(format!(
                    "cookie '{}': samesite must be 'Lax', 'Strict', 'None' or '', got '{}'",
                    self.name, self.same_site
                ))
            }
        };
        if self.raw && breaks(self.value, &FORBIDDEN[1..]) {
            return Err(format!(
                "cookie '{}' has one of ,; or white space or a control character in its raw value",
                self.name
            ));
        }
        if self.expire > LAST_HTTP_DATE {
            return Err(format!(
                "cookie '{}' expires after the year 9999",
                self.name
            ));
        }

        let mut out = format!("{}=", self.name);
        if self.value.is_empty() {
            out.push_str("deleted; expires=Thu, 01 Jan 1970 00:00:01 GMT; Max-Age=0");
        } else {
            if self.raw {
                out.push_str(self.value);
            } else {
                out.extend(utf8_percent_encode(self.value, COOKIE_VALUE));
            }
            if self.expire > 0 {
                let at = UNIX_EPOCH + Duration::from_secs(self.expire as u64);
                // In whole seconds from the current second, as PHP counts (`expire - time()`).
                let now_secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
                let max_age = (self.expire as u64).saturating_sub(now_secs);
                out.push_str("; expires=");
                out.push_str(&httpdate::fmt_http_date(at));
                out.push_str(&format!("; Max-Age={max_age}"));
            }
        }
        for (attribute, text) in [("; path=", self.path), ("; domain=", self.domain)] {
            if !text.is_empty() {
                out.push_str(attribute);
                out.push_str(text);
            }
        }
        if self.secure {
            out.push_str("; secure");
        }
        if self.http_only {
            out.push_str("; HttpOnly");
        }
        if !same_site.is_empty() {
            out.push_str("; SameSite=");
            out.push_str(same_site);
        }
        Ok(out)
    }
}

/// The cookies of a request's `Cookie` headers, by name, as PHP fills `$_COOKIE`: pairs split on
/// `;` only (a value may hold `&` or `=`), names and values URL-decoded, and of a name sent twice
/// the first kept (browsers send the cookie of the most specific path first).
/// A set of the names seen, not a search of those kept: one header may hold 100,000 cookies.
pub fn parse<'a>(headers: impl Iterator<Item = &'a str>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for pair in headers.flat_map(|h| h.split(';')) {
        let (name, value) = pair.trim().split_once('=').unwrap_or((pair.trim(), ""));
        let name = url_decode(name);
        if !name.is_empty() && seen.insert(name.clone()) {
            out.push((name, url_decode(value)));
        }
    }
    out
}

/// PHP's `urldecode()`: `+` is a space, `%XX` a byte; invalid UTF-8 is replaced, as keys and
/// values of Surge's arrays are strings.
fn url_decode(text: &str) -> String {
    let spaced = text.replace('+', " ");
    percent_decode_str(&spaced).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cookie<'a>(name: &'a str, value: &'a str) -> SetCookie<'a> {
        SetCookie {
            name,
            value,
            expire: 0,
            path: "/",
            domain: "",
            secure: false,
            http_only: false,
            same_site: "",
            raw: false,
        }
    }

    #[test]
    fn builds_what_php_setcookie_builds() {
        // Part way into a second: Max-Age counts from the whole second, as PHP's time() does.
        let now = UNIX_EPOCH + Duration::from_millis(1_700_000_000_700);
        let value = |c: SetCookie| c.header_value(now).unwrap();
        assert_eq!(
            value(cookie("sid", "a b&c/é")),
            "sid=a%20b%26c%2F%C3%A9; path=/"
        );
        let full = SetCookie {
            expire: 1_700_000_060,
            domain: "example.com",
            secure: true,
            http_only: true,
            same_site: "lax",
            ..cookie("sid", "v")
        };
        assert_eq!(
            value(full),
            "sid=v; expires=Tue, 14 Nov 2023 22:14:20 GMT; Max-Age=60; path=/; \
             domain=example.com; secure; HttpOnly; SameSite=Lax"
        );
        let past = SetCookie {
            expire: 1_600_000_000,
            ..cookie("sid", "v")
        };
        assert!(value(past).contains("; Max-Age=0;"));
        assert_eq!(
            value(cookie("sid", "")),
            "sid=deleted; expires=Thu, 01 Jan 1970 00:00:01 GMT; Max-Age=0; path=/"
        );
    }

    #[test]
    fn refuses_what_would_break_the_header() {
        let refused = |c: SetCookie| c.header_value(SystemTime::now()).is_err();
        for bad in ["", "a=b", "a;b", "a b", "a\r\nX: y"] {
            assert!(refused(cookie(bad, "v")), "{bad:?}");
        }
        assert!(!refused(cookie("sid", "a;b\r\n")), "the value is encoded");
        assert!(refused(SetCookie {
            path: "/\r\n",
            ..cookie("sid", "v")
        }));
        assert!(refused(SetCookie {
            same_site: "sometimes",
            ..cookie("sid", "v")
        }));
        assert!(refused(SetCookie {
            expire: i64::MAX,
            ..cookie("sid", "v")
        }));
        let raw = |value| SetCookie {
            raw: true,
            ..cookie("sid", value)
        };
        for bad in ["a;b", "a b", "a,b", "a\r\nX: y"] {
            assert!(refused(raw(bad)), "raw {bad:?}");
        }
        assert_eq!(
            raw("a%20b=c/é").header_value(SystemTime::now()).unwrap(),
            "sid=a%20b=c/é; path=/"
        );
    }

    #[test]
    fn parses_as_php_fills_cookie() {
        let got = parse(["a=1; b=x%26y+z; q=k=v&w=2", "a=2; c"].into_iter());
        let want = [("a", "1"), ("b", "x&y z"), ("q", "k=v&w=2"), ("c", "")];
        assert_eq!(
            got,
            want.map(|(n, v)| (n.to_string(), v.to_string())).to_vec()
        );
    }
}
