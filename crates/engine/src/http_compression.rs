//! Swoole's `http_compression`: a whole response of the `request` callback goes out gzip (or
//! deflate) compressed when the client accepts it (`Accept-Encoding`), its type is text (no
//! `Content-Type`, `text/*`, JSON, JavaScript, XML, SVG), it is at least
//! `http_compression_min_length` bytes, and compressing makes it smaller. Streamed responses
//! (`write()`) and files (`sendfile()`, the static handler, whose Range requests need the
//! file's own bytes) go as they are, as does a response the callback encoded itself.

use std::io::Read;

use flate2::read::{GzEncoder, ZlibEncoder};
use flate2::Compression;
use hyper::header::{HeaderMap, ACCEPT_ENCODING};

use crate::config::Config;
use crate::events::HttpResponse;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coding {
    Gzip,
    Deflate,
}

/// Compresses `response` in place if the request (its `headers`) and the settings allow it.
pub(crate) fn apply(response: &mut HttpResponse, headers: &HeaderMap, config: &Config) {
    if !config.http_compression
        || response.body.len() < config.http_compression_min_length.max(1)
        || matches!(response.status, 204 | 206 | 304)
        || !compressible(response)
    {
        return;
    }
    let accept = headers.get_all(ACCEPT_ENCODING).iter();
    let Some(coding) = accepted(accept.filter_map(|v| v.to_str().ok())) else {
        return;
    };
    let level = Compression::new(config.http_compression_level);
    let body = &response.body[..];
    let compressed = match coding {
        Coding::Gzip => encoded(GzEncoder::new(body, level)),
        Coding::Deflate => encoded(ZlibEncoder::new(body, level)),
    };
    let Some(compressed) = compressed.filter(|c| c.len() < response.body.len()) else {
        return;
    };
    response.body = compressed.into();
    let name = match coding {
        Coding::Gzip => "gzip",
        Coding::Deflate => "deflate",
    };
    response
        .headers
        .push(("content-encoding".into(), name.into()));
    vary_on_accept_encoding(response);
    // Other bytes than the strong validator named: a weak one now (as nginx makes it).
    for (header, value) in &mut response.headers {
        if header.eq_ignore_ascii_case("etag") && value.starts_with('"') {
            *value = format!("W/{value}");
        }
    }
}

/// What `encoder` (or a decoder, in the tests) makes; None if it failed (it reads from memory:
/// it does not).
fn encoded(mut encoder: impl Read) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    encoder.read_to_end(&mut out).ok()?;
    Some(out)
}

/// Whether the response is text by its type (none given: PHP's default page is HTML) and not
/// encoded already.
fn compressible(response: &HttpResponse) -> bool {
    let header = |name: &str| {
        (response.headers.iter())
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    if header("content-encoding").is_some() || header("content-range").is_some() {
        return false;
    }
    let Some(content_type) = header("content-type") else {
        return true;
    };
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime.starts_with("text/")
        || mime.ends_with("json")
        || mime.ends_with("xml")
        || mime.ends_with("javascript")
        || mime == "image/svg+xml"
}

/// The coding to use from the request's `Accept-Encoding` values (RFC 9110 12.5.3): gzip if
/// it is accepted, else deflate; `q=0` refuses one, `*` stands for those not named.
fn accepted<'a>(values: impl Iterator<Item = &'a str>) -> Option<Coding> {
    let (mut gzip, mut deflate, mut any) = (None, None, None);
    for item in values.flat_map(|v| v.split(',')) {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q=").or(p.trim().strip_prefix("Q=")))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        let slot = match name.as_str() {
            "gzip" | "x-gzip" => &mut gzip,
            "deflate" => &mut deflate,
            "*" => &mut any,
            _ => continue,
        };
        *slot = Some(q > 0.0);
    }
    match (gzip.or(any), deflate.or(any)) {
        (Some(true), _) => Some(Coding::Gzip),
        (_, Some(true)) => Some(Coding::Deflate),
        _ => None,
    }
}

/// Adds `Accept-Encoding` to `Vary` (caches must keep the compressed and the plain apart).
fn vary_on_accept_encoding(response: &mut HttpResponse) {
    let vary = (response.headers.iter_mut()).find(|(n, _)| n.eq_ignore_ascii_case("vary"));
    match vary {
        Some((_, value)) => {
            let named = value.split(',').any(|v| {
                matches!(v.trim(), "*") || v.trim().eq_ignore_ascii_case("accept-encoding")
            });
            if !named {
                value.push_str(", Accept-Encoding");
            }
        }
        None => (response.headers).push(("vary".into(), "Accept-Encoding".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn accepted_from(value: &str) -> Option<Coding> {
        accepted(std::iter::once(value))
    }

    #[test]
    fn the_coding_is_the_one_the_client_accepts() {
        assert_eq!(accepted_from("gzip, deflate, br"), Some(Coding::Gzip));
        assert_eq!(
            accepted_from("br;q=1.0, deflate;q=0.5"),
            Some(Coding::Deflate)
        );
        assert_eq!(accepted_from("gzip;q=0, deflate"), Some(Coding::Deflate));
        assert_eq!(accepted_from("GZIP;Q=0.1"), Some(Coding::Gzip));
        assert_eq!(accepted_from("*"), Some(Coding::Gzip));
        assert_eq!(accepted_from("*;q=0, deflate"), Some(Coding::Deflate));
        assert_eq!(accepted_from("gzip;q=0, *;q=0"), None);
        assert_eq!(accepted_from("identity"), None);
        assert_eq!(accepted_from(""), None);
    }

    fn page(content_type: Option<&str>, body: &str) -> HttpResponse {
        HttpResponse {
            status: 200,
            reason: None,
            headers: (content_type.iter())
                .map(|t| ("Content-Type".into(), t.to_string()))
                .chain([("ETag".into(), "\"v1\"".into())])
                .collect(),
            body: body.as_bytes().to_vec().into(),
        }
    }

    fn sent(mut response: HttpResponse, accept: &str, config: &Config) -> HttpResponse {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT_ENCODING, HeaderValue::from_str(accept).unwrap());
        apply(&mut response, &headers, config);
        response
    }

    fn header<'a>(response: &'a HttpResponse, name: &str) -> Option<&'a str> {
        (response.headers.iter())
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn text_is_compressed_and_the_rest_goes_as_it_is() {
        let config = Config::default();
        let html = "<p>hello</p>".repeat(20);
        let gz = sent(page(None, &html), "gzip", &config);
        assert_eq!(header(&gz, "content-encoding"), Some("gzip"));
        assert_eq!(header(&gz, "vary"), Some("Accept-Encoding"));
        assert_eq!(header(&gz, "etag"), Some("W/\"v1\""));
        assert_eq!(
            encoded(flate2::read::GzDecoder::new(&gz.body[..])).unwrap(),
            html.as_bytes()
        );
        let json = sent(
            page(Some("application/json; charset=utf-8"), &html),
            "deflate",
            &config,
        );
        assert_eq!(header(&json, "content-encoding"), Some("deflate"));
        let inflated = encoded(flate2::read::ZlibDecoder::new(&json.body[..]));
        assert_eq!(inflated.unwrap(), html.as_bytes());
        for (response, accept) in [
            (page(Some("image/png"), &html), "gzip"),
            (page(None, &html), "identity"),
            (page(None, "short"), "gzip"),
        ] {
            let body = response.body.clone();
            let out = sent(response, accept, &config);
            assert_eq!(header(&out, "content-encoding"), None);
            assert_eq!(out.body, body);
        }
        let off = Config {
            http_compression: false,
            ..Config::default()
        };
        assert_eq!(
            header(&sent(page(None, &html), "gzip", &off), "content-encoding"),
            None
        );
        let mut encoded = page(None, &html);
        (encoded.headers).push(("Content-Encoding".into(), "br".into()));
        assert_eq!(sent(encoded, "gzip", &config).body, html.as_bytes());
    }

    #[test]
    fn vary_gets_accept_encoding_once() {
        let mut response = page(None, "");
        (response.headers).push(("Vary".into(), "Origin".into()));
        vary_on_accept_encoding(&mut response);
        vary_on_accept_encoding(&mut response);
        assert_eq!(header(&response, "vary"), Some("Origin, Accept-Encoding"));
    }
}
