//! HTTP plumbing shared by every myha daemon and client.
//!
//! * [`serve`] / [`serve_with_stats`]: serve an axum [`Router`](axum::Router)
//!   over plain TCP or TLS (rustls, ring provider) with limits against hostile
//!   clients: a connection cap with eviction of the connection that has waited
//!   longest for request headers, header-read / keep-alive idle / write-stall
//!   timeouts, a per-request handler timeout, a TLS handshake timeout and a
//!   graceful shutdown bounded by a grace period.
//! * [`server_tls`]: build a rustls server configuration from PEM files,
//!   optionally requiring client certificates signed by a CA.
//! * [`client`]: build a reqwest client (plain `http://` and `https://`) that
//!   trusts only a given CA (or the system roots) and can present a client
//!   identity.
//! * [`raise_nofile_limit`]: raise the soft `RLIMIT_NOFILE` to the hard limit.
#![forbid(unsafe_code)]

mod client;
mod error;
pub mod metrics;
mod server;
mod tls;

pub use client::{client, ClientOptions};
pub use error::HttpError;
pub use server::{bind, serve, serve_with_stats, Limits, PeerCertificate, Stats, StatsSnapshot};
pub use tls::{install_crypto_provider, server_tls, TlsFiles};

/// Raises the soft `RLIMIT_NOFILE` of this process to its hard limit and
/// returns the new soft limit (unchanged when it already was the hard limit).
pub fn raise_nofile_limit() -> Result<u64, HttpError> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(HttpError::Rlimit)?;
    if soft >= hard {
        return Ok(soft);
    }
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(HttpError::Rlimit)?;
    let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE).map_err(HttpError::Rlimit)?;
    Ok(soft)
}

/// A client for `config`'s HTTP APIs: it trusts `tls.ca_file` and, with
/// `tls.client_auth`, presents this process's certificate.
pub fn client_for(
    config: &myha_config::Config,
    connect_timeout: std::time::Duration,
    timeout: std::time::Duration,
) -> Result<reqwest::Client, HttpError> {
    let tls = config.tls.as_ref();
    client(&ClientOptions {
        ca_file: tls.map(|t| t.ca_file.clone()),
        identity: tls
            .filter(|t| t.client_auth)
            .and_then(|t| t.cert_file.clone().zip(t.key_file.clone())),
        connect_timeout,
        timeout,
    })
}

/// The TLS of this process's HTTP server under `config` (`None`: plain
/// HTTP).
pub fn server_tls_for(
    config: &myha_config::Config,
) -> Result<Option<std::sync::Arc<rustls::ServerConfig>>, HttpError> {
    let Some(tls) = &config.tls else {
        return Ok(None);
    };
    let (Some(cert_file), Some(key_file)) = (&tls.cert_file, &tls.key_file) else {
        return Err(HttpError::NoCertificate(tls.ca_file.clone()));
    };
    server_tls(&TlsFiles {
        cert_file: cert_file.clone(),
        key_file: key_file.clone(),
        ca_file: Some(tls.ca_file.clone()),
        client_auth: tls.client_auth,
    })
    .map(Some)
}

/// Milliseconds since the Unix epoch, by the wall clock (0 before 1970):
/// the time stamps of reports, events and leases.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raise_nofile_reaches_hard_limit() -> Result<(), HttpError> {
        let soft = raise_nofile_limit()?;
        let (s, h) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map_err(HttpError::Rlimit)?;
        assert_eq!(soft, s);
        assert_eq!(s, h);
        // idempotent
        assert_eq!(raise_nofile_limit()?, soft);
        Ok(())
    }
}
