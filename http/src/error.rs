use std::path::PathBuf;

/// Errors of this crate. Each names the file or operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot read TLS {what} {path}: {source}")]
    ReadFile {
        /// "certificate", "private key" or "CA certificate"
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid PEM in TLS {what} {path}: {detail}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        detail: String,
    },
    #[error("no certificate in {0}")]
    NoCertificate(PathBuf),
    #[error("no private key in {0}")]
    NoPrivateKey(PathBuf),
    #[error("invalid CA certificate in {path}: {detail}")]
    BadCa { path: PathBuf, detail: String },
    #[error("TLS client authentication is required but no CA file is configured to verify client certificates")]
    ClientAuthWithoutCa,
    #[error("TLS configuration with certificate {cert} and key {key}: {source}")]
    TlsConfig {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("TLS client verifier with CA {path}: {detail}")]
    ClientVerifier { path: PathBuf, detail: String },
    #[error("TLS protocol versions: {0}")]
    TlsVersions(#[source] rustls::Error),
    #[error("building HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("bind {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("RLIMIT_NOFILE: {0}")]
    Rlimit(#[source] nix::Error),
}
