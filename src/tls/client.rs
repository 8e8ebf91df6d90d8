//! The proxy's own outgoing HTTPS: to the ACME CA, and to an external on-demand check
//! endpoint. One way to build the client, so both trust the same roots: the system's, plus
//! any the operator adds (`run --acme-ca-cert`).

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use rustls::pki_types::CertificateDer;

pub type HttpsClient<B> = Client<HttpsConnector<HttpConnector>, B>;

/// Which URLs the client may fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schemes {
    /// `https://` only: an ACME CA must be talked to over TLS (RFC 8555 §6.1).
    HttpsOnly,
    /// `http://` too: an operator's check endpoint may be on a private network.
    HttpAndHttps,
}

/// An HTTP/1.1 client trusting the system's roots and `extra_roots`; an unusable extra
/// root is an error, an unusable system one is skipped.
pub fn https_client<B>(
    extra_roots: Vec<CertificateDer<'static>>,
    schemes: Schemes,
) -> Result<HttpsClient<B>, rustls::Error>
where
    B: http_body::Body + Send,
    B::Data: Send,
{
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(certificate);
    }
    for certificate in extra_roots {
        roots.add(certificate)?;
    }
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls);
    let connector = match schemes {
        Schemes::HttpsOnly => connector.https_only(),
        Schemes::HttpAndHttps => connector.https_or_http(),
    };
    Ok(Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(connector.enable_http1().build()))
}
