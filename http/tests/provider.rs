//! reqwest's `rustls-no-provider` feature (enabled by this crate, unified
//! into every crate of the workspace) makes `reqwest::Client::builder().build()`
//! panic unless a default crypto provider is installed. Alone in its test
//! binary: the default provider is process-wide.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[test]
fn plain_reqwest_builder_works_after_install() {
    let before = std::panic::catch_unwind(|| reqwest::Client::builder().build());
    assert!(
        before.is_err(),
        "reqwest no longer panics without a provider"
    );
    myha_http::install_crypto_provider();
    myha_http::install_crypto_provider();
    assert!(reqwest::Client::builder().build().is_ok());
    assert!(rustls::crypto::CryptoProvider::get_default().is_some());
}
