//! `CertResolver`: which certificate a TLS handshake gets.
//!
//! As in Go: an `acme-tls/1` handshake gets the TLS-ALPN-01 challenge certificate; otherwise
//! the SNI name is routed like a request for `(name, "/")` (exact, wildcard, catch-all), and
//! the service found decides: its certificate files, or the ACME certificate for that name.
//! A service without TLS, or no service, fails the handshake. A client that sends no SNI
//! gets the default TLS host (the first host of the alphabetically first TLS service)
//! instead of a failed handshake, with a warning.

use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::ACME_TLS_ALPN;
use crate::router::Router;
use crate::service::options::TlsMode;

pub struct CertResolver {
    router: Arc<Router>,
}

impl std::fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CertResolver")
    }
}

impl CertResolver {
    pub fn new(router: Arc<Router>) -> Self {
        CertResolver { router }
    }

    fn certificate_for(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let routes = self.router.routes();
        let service = routes.lookup(name, "/")?.value;
        if !service.tls.enabled {
            return None;
        }
        match &service.options.tls {
            TlsMode::Off => None,
            TlsMode::Certificate { .. } => service.certificate.clone(),
            TlsMode::Acme { .. } => self.router.acme().certificate(name),
        }
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = match hello.server_name() {
            Some(name) => name.trim_end_matches('.').to_ascii_lowercase(),
            None => {
                let default = self.router.default_tls_host()?;
                tracing::warn!(host = %default, "No server name; using default TLS hostname");
                default.to_string()
            }
        };
        let challenge = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
        if challenge {
            return self
                .router
                .acme()
                .challenges()
                .tls_alpn01_certificate(&name);
        }
        self.certificate_for(&name)
    }
}
