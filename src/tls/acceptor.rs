//! `HttpsAcceptor`: one TLS handshake on the HTTPS port.
//!
//! The ClientHello is read first (tokio-rustls' lazy acceptor): when its name belongs to an
//! on-demand service and has no certificate yet, the handshake waits while the ACME manager
//! asks the approval endpoint and orders one, because rustls' certificate resolver cannot
//! wait. Every other handshake goes straight on to the resolver. A client gets
//! `HANDSHAKE_TIMEOUT` for each of its two halves, so a silent one cannot hold a task.

use std::sync::Arc;
use std::time::Duration;

use rustls::server::Acceptor;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::LazyConfigAcceptor;

use super::{server_config, CertResolver, ACME_TLS_ALPN};
use crate::router::Router;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn timed_out(_: tokio::time::error::Elapsed) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")
}

pub struct HttpsAcceptor {
    config: Arc<rustls::ServerConfig>,
    resolver: Arc<CertResolver>,
}

impl HttpsAcceptor {
    pub fn new(router: Arc<Router>) -> Self {
        let resolver = Arc::new(CertResolver::new(router));
        HttpsAcceptor {
            config: server_config(Arc::clone(&resolver)),
            resolver,
        }
    }

    pub async fn accept(&self, stream: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        let start = LazyConfigAcceptor::new(Acceptor::default(), stream);
        let start = tokio::time::timeout(HANDSHAKE_TIMEOUT, start)
            .await
            .map_err(timed_out)??;
        let on_demand_name = {
            let hello = start.client_hello();
            let challenge = hello
                .alpn()
                .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
            hello
                .server_name()
                .filter(|_| !challenge)
                .map(|name| name.trim_end_matches('.').to_ascii_lowercase())
        };
        if let Some(name) = on_demand_name {
            self.resolver.prepare_on_demand(&name).await;
        }
        let finish = start.into_stream(Arc::clone(&self.config));
        tokio::time::timeout(HANDSHAKE_TIMEOUT, finish)
            .await
            .map_err(timed_out)?
    }
}
