//! TLS: the HTTPS listener's rustls configuration, the certificate each handshake gets, and
//! where certificates come from (operator files, or ACME).
//!
//! - `certificate`: PEM files into a rustls `CertifiedKey`, checked at deploy time.
//! - `acceptor`: the handshake, paused for on-demand certificates.
//! - `resolver`: SNI -> service (the routing table's (host, "/") lookup) -> certificate.
//! - `challenges`: ACME challenge answers on offer (HTTP-01 tokens, TLS-ALPN-01 certs).
//! - `acme`: the manager that issues, caches and renews automatic certificates.
//! - `client`: the proxy's own outgoing HTTPS (the ACME CA, on-demand check endpoints).
//!
//! The handshake path reads only `ArcSwap` snapshots (routing table, issued certificates);
//! no lock a deploy or an order holds is ever taken there.

mod acceptor;
pub mod acme;
pub mod certificate;
pub mod challenges;
mod client;
mod resolver;

use std::sync::Arc;

pub use acceptor::HttpsAcceptor;
pub use resolver::CertResolver;

/// ALPN protocols offered on the HTTPS port, in server preference order.
const ALPN: [&[u8]; 3] = [b"h2", b"http/1.1", ACME_TLS_ALPN];

/// The ALPN protocol of TLS-ALPN-01 validation (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Makes ring rustls' process-wide provider; the daemon calls it first. A second call (tests
/// in one process) finds it installed, which is fine.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The HTTPS listener's configuration: TLS 1.2 and 1.3 with rustls' safe defaults, no
/// client certificates, certificates chosen per handshake by `resolver`.
fn server_config(resolver: Arc<CertResolver>) -> Arc<rustls::ServerConfig> {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default protocol versions")
    .with_no_client_auth()
    .with_cert_resolver(resolver);
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}
