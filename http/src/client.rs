//! HTTP(S) clients: reqwest with rustls on the ring provider.

use std::path::PathBuf;
use std::time::Duration;

use rustls::{ClientConfig, RootCertStore};
use tracing::warn;

use crate::tls::{install_crypto_provider, load_ca, load_certs, load_key, provider};
use crate::HttpError;

/// How to build a client with [`client`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// PEM CA certificate(s): when given, `https://` servers are verified
    /// against these only; otherwise against the system's root certificates.
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain and private key (PEM) to present to servers
    /// that ask for one.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// Timeout of the TCP connect (the TLS handshake is under `timeout`).
    pub connect_timeout: Duration,
    /// Timeout of a whole request, from connect to the end of the body.
    pub timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            ca_file: None,
            identity: None,
            connect_timeout: Duration::from_secs(3),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Builds a reqwest client for `http://` and `https://` URLs (HTTP/1.1).
///
/// The client ignores proxy environment variables (myha talks to its own
/// daemons, never through a proxy) and drops pooled connections idle for
/// 15 s, before a myha server's default 30 s keep-alive idle timeout.
pub fn client(opts: &ClientOptions) -> Result<reqwest::Client, HttpError> {
    install_crypto_provider();
    let roots = match &opts.ca_file {
        Some(ca) => load_ca(ca)?,
        None => system_roots(),
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(HttpError::TlsVersions)?
        .with_root_certificates(roots);
    let mut tls = match &opts.identity {
        Some((cert_file, key_file)) => {
            let certs = load_certs("certificate", cert_file)?;
            let key = load_key(key_file)?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|source| HttpError::TlsConfig {
                    cert: cert_file.clone(),
                    key: key_file.clone(),
                    source,
                })?
        }
        None => builder.with_no_client_auth(),
    };
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(opts.connect_timeout)
        .timeout(opts.timeout)
        .pool_idle_timeout(Duration::from_secs(15))
        .no_proxy()
        .http1_only()
        .build()
        .map_err(HttpError::Client)
}

/// The system's root certificates (`SSL_CERT_FILE` / `SSL_CERT_DIR` are
/// honoured). Problems are logged: plain `http://` still works without them.
fn system_roots() -> RootCertStore {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        warn!("loading system root certificates: {e}");
    }
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    if ignored > 0 {
        warn!("{ignored} system root certificates could not be parsed");
    }
    if added == 0 {
        warn!("no system root certificate: https:// without a CA file will fail");
    }
    roots
}
