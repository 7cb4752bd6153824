//! TLS (wss://, https://) with rustls and its ring provider. The certificate chain and key are
//! read once, at start; each accepted connection does its TLS handshake before HTTP. Also the
//! client side, for `https://` webhooks.

use std::sync::{Arc, OnceLock};

use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{crypto, ClientConfig, Error, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// The first byte of a TLS record carrying a handshake (a ClientHello opens with it).
pub(crate) const HANDSHAKE_RECORD: u8 = 0x16;

/// Builds the acceptor from PEM files; errors name the file and say what is wrong with it.
pub(crate) fn acceptor(cert_file: &str, key_file: &str) -> Result<TlsAcceptor, String> {
    let read = |key: &str, file: &str| {
        std::fs::read(file).map_err(|e| format!("cannot read {key} '{file}': {e}"))
    };
    let certs = CertificateDer::pem_slice_iter(&read("ssl_cert_file", cert_file)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("ssl_cert_file '{cert_file}' is not valid PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "ssl_cert_file '{cert_file}' holds no certificate (expected PEM with -----BEGIN CERTIFICATE-----)"
        ));
    }
    let key_pem = read("ssl_key_file", key_file)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        _ if encrypted(&key_pem) => format!(
            "ssl_key_file '{key_file}' is encrypted with a passphrase, which Surge does not take: \
             write it decrypted with `openssl pkey -in {key_file} -out <new file>` (readable by the server's user only)"
        ),
        pem::Error::NoItemsFound => format!(
            "ssl_key_file '{key_file}' holds no private key (expected PEM with -----BEGIN PRIVATE KEY-----, \
             RSA PRIVATE KEY or EC PRIVATE KEY)"
        ),
        e => format!("ssl_key_file '{key_file}' is not valid PEM: {e}"),
    })?;
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("cannot set up TLS: {e}"))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| match e {
                // rustls reads the certificate to check it against the key, and reads X.509 v3
                // only: the v1 ones that `openssl x509 -req -signkey` makes are refused here.
                Error::InvalidCertificate(why) => format!(
                    "ssl_cert_file '{cert_file}' cannot be served: {why:?} (if it is an X.509 v1 \
                     certificate, as `openssl x509 -req -signkey` makes without extensions, make a v3 one, \
                     e.g. `openssl req -x509 -key {key_file} -days 365 -subj /CN=localhost -out <new file>`)"
                ),
                e => format!("ssl_key_file '{key_file}' cannot serve ssl_cert_file '{cert_file}': {e}"),
            })?;
    // WebSocket handshakes are HTTP/1.1 requests; an HTTP/1.0 client (curl --http1.0, PHP's
    // curl asked for 1.0) offers only http/1.0, and would get a fatal alert without it.
    config.alpn_protocols = vec![b"http/1.1".to_vec(), b"http/1.0".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A key encrypted with a passphrase: PKCS#8's `ENCRYPTED PRIVATE KEY`, or the older
/// `Proc-Type: 4,ENCRYPTED` header of `openssl genrsa -aes256` (which the PEM reader takes
/// for bad base64).
fn encrypted(pem: &[u8]) -> bool {
    let has = |text: &[u8]| pem.windows(text.len()).any(|w| w == text);
    has(b"BEGIN ENCRYPTED PRIVATE KEY") || has(b"Proc-Type: 4,ENCRYPTED")
}

/// A TLS connection to `host` over `tcp`, its certificate verified against the system's roots
/// (or only those that `SSL_CERT_FILE` or `SSL_CERT_DIR` name, as for a TLS Redis).
pub(crate) async fn connect(host: &str, tcp: TcpStream) -> Result<TlsStream<TcpStream>, String> {
    let name = ServerName::try_from(host.to_owned()).map_err(|e| format!("bad host name: {e}"))?;
    TlsConnector::from(client_config()?)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS failed: {e}"))
}

/// The client side's settings, with the trusted roots read once (tens of ms): the first call
/// is best made at start.
pub(crate) fn client_config() -> Result<Arc<ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let mut roots = RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(found.certs);
        if roots.is_empty() {
            return Err(format!(
                "no trusted root certificates found: {:?}",
                found.errors
            ));
        }
        let config =
            ClientConfig::builder_with_provider(Arc::new(crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("cannot set up TLS: {e}"))?
                .with_root_certificates(roots)
                .with_no_client_auth();
        Ok(Arc::new(config))
    });
    config.clone()
}
