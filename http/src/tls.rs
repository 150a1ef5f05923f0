//! PEM loading and rustls configurations (ring provider only).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use crate::HttpError;

/// The TLS files of a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM CA certificate(s) that sign client certificates; required when
    /// `client_auth` is true, ignored otherwise.
    pub ca_file: Option<PathBuf>,
    /// Require clients to present a certificate signed by `ca_file`.
    pub client_auth: bool,
}

/// The ring crypto provider: the only one this project uses.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Installs ring as the process-wide default rustls crypto provider (once;
/// later calls and an already installed provider are fine).
///
/// Needed by code that builds a reqwest client itself
/// (`reqwest::Client::builder().build()`): this crate enables reqwest's
/// `rustls-no-provider` feature (to keep aws-lc-rs out), and with it reqwest
/// panics when building a client if no default provider is installed.
/// [`client`](crate::client) and [`server_tls`] call this; daemons should
/// call it first thing in `main`.
pub fn install_crypto_provider() {
    if CryptoProvider::get_default().is_none() {
        // Err means another thread installed one meanwhile: fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, HttpError> {
    std::fs::read(path).map_err(|source| HttpError::ReadFile {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// Reads every certificate of a PEM file; fails when there is none.
pub(crate) fn load_certs(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, HttpError> {
    let pem = read(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| HttpError::Pem {
            what,
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(HttpError::NoCertificate(path.to_path_buf()));
    }
    Ok(certs)
}

/// Reads the first private key of a PEM file.
pub(crate) fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, HttpError> {
    let pem = read("private key", path)?;
    match PrivateKeyDer::from_pem_slice(&pem) {
        Ok(key) => Ok(key),
        Err(rustls::pki_types::pem::Error::NoItemsFound) => {
            Err(HttpError::NoPrivateKey(path.to_path_buf()))
        }
        Err(e) => Err(HttpError::Pem {
            what: "private key",
            path: path.to_path_buf(),
            detail: e.to_string(),
        }),
    }
}

/// A root store holding exactly the certificates of a CA file.
pub(crate) fn load_ca(path: &Path) -> Result<RootCertStore, HttpError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs("CA certificate", path)? {
        roots.add(cert).map_err(|e| HttpError::BadCa {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
    }
    Ok(roots)
}

/// Builds the rustls server configuration (ring provider, TLS 1.2 and 1.3,
/// ALPN `http/1.1`). With `client_auth`, clients must present a certificate
/// signed by `ca_file`; otherwise no client certificate is asked for.
pub fn server_tls(files: &TlsFiles) -> Result<Arc<ServerConfig>, HttpError> {
    install_crypto_provider();
    let provider = provider();
    let certs = load_certs("certificate", &files.cert_file)?;
    let key = load_key(&files.key_file)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(HttpError::TlsVersions)?;
    let builder = if files.client_auth {
        let ca = files
            .ca_file
            .as_ref()
            .ok_or(HttpError::ClientAuthWithoutCa)?;
        let roots = load_ca(ca)?;
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| HttpError::ClientVerifier {
                path: ca.clone(),
                detail: e.to_string(),
            })?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut config =
        builder
            .with_single_cert(certs, key)
            .map_err(|source| HttpError::TlsConfig {
                cert: files.cert_file.clone(),
                key: files.key_file.clone(),
                source,
            })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str, content: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("myha-http-tls-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let p = dir.join(name);
        let _ = std::fs::write(&p, content);
        p
    }

    #[test]
    fn errors_name_the_file() {
        let missing = PathBuf::from("/nonexistent/x/y.pem");
        let files = TlsFiles {
            cert_file: missing.clone(),
            key_file: missing.clone(),
            ca_file: None,
            client_auth: false,
        };
        let msg = server_tls(&files)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            msg.starts_with("cannot read TLS certificate /nonexistent/x/y.pem: "),
            "{msg}"
        );

        let empty = tmp("empty.pem", "hello\n");
        let msg = load_key(&empty)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(msg, format!("no private key in {}", empty.display()));
        let msg = load_certs("certificate", &empty)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(msg, format!("no certificate in {}", empty.display()));
    }

    #[test]
    fn client_auth_needs_ca() {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let c = tmp("c.pem", &cert.cert.pem());
        let k = tmp("k.pem", &cert.signing_key.serialize_pem());
        let files = TlsFiles {
            cert_file: c,
            key_file: k,
            ca_file: None,
            client_auth: true,
        };
        assert!(matches!(
            server_tls(&files),
            Err(HttpError::ClientAuthWithoutCa)
        ));
        let files = TlsFiles {
            client_auth: false,
            ..files
        };
        let cfg = server_tls(&files);
        assert!(cfg.is_ok(), "{:?}", cfg.err());
    }
}
