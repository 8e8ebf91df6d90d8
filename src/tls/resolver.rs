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

    /// Obtains a certificate for `name` first when an on-demand service would serve it and
    /// has none yet (see `acceptor`).
    pub async fn prepare_on_demand(&self, name: &str) {
        let service = {
            let routes = self.router.routes();
            let Some(matched) = routes.lookup(name, "/") else {
                return;
            };
            Arc::clone(matched.value)
        };
        let on_demand = matches!(&service.options.tls,
            TlsMode::Acme(acme) if acme.on_demand_url.is_some());
        if on_demand && service.tls.enabled && self.router.acme().certificate(name).is_none() {
            self.router.acme().on_demand(&service, name).await;
        }
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
