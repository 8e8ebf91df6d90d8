//! TLS fixtures: test certificate authorities and certificates made with rcgen, and an
//! HTTPS client that reports what the handshake negotiated.
//!
//! - [`TestCa`]: a root CA (ECDSA P-256) that issues leaf certificates, optionally through an
//!   intermediate (for chains), with ECDSA or the static RSA test key.
//! - [`https_request`]: one request over a fresh TLS connection with a chosen SNI (or none)
//!   and ALPN list, trusting only the given roots; HTTP/2 when the server picks `h2`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::Response;

/// A 2048-bit RSA key (PKCS#8), generated once with openssl: ring cannot generate RSA keys.
pub const RSA_TEST_KEY: &str = include_str!("rsa_test_key.pem");

/// A root CA that signs test certificates.
pub struct TestCa {
    key: KeyPair,
    params: CertificateParams,
    pub pem: String,
}

/// A certificate chain and its key, in PEM.
pub struct Issued {
    pub chain_pem: String,
    pub key_pem: String,
}

impl Issued {
    /// Writes `cert.pem` and `key.pem` into `dir`; returns their paths.
    pub fn write(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{stem}-cert.pem"));
        let key = dir.join(format!("{stem}-key.pem"));
        std::fs::write(&cert, &self.chain_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        (cert, key)
    }

    /// The `deploy` flags serving `host` over TLS with this certificate, its files written
    /// to `dir` under `stem`.
    pub fn deploy_flags(&self, dir: &Path, stem: &str, host: &str) -> [String; 4] {
        let (cert, key) = self.write(dir, stem);
        [
            "--tls".to_string(),
            format!("--host={host}"),
            format!("--tls-certificate-path={}", cert.display()),
            format!("--tls-private-key-path={}", key.display()),
        ]
    }
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
}

fn leaf_params(names: &[&str]) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = names
        .iter()
        .map(|name| match name.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName((*name).try_into().unwrap()),
        })
        .collect();
    params
}

impl TestCa {
    pub fn new() -> TestCa {
        let key = KeyPair::generate().unwrap();
        let params = ca_params("kamal-proxy test root");
        let pem = params.self_signed(&key).unwrap().pem();
        TestCa { key, params, pem }
    }

    fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }

    /// A leaf for `names` (DNS names or IP addresses) with a fresh ECDSA key.
    pub fn issue(&self, names: &[&str]) -> Issued {
        let key = KeyPair::generate().unwrap();
        let cert = leaf_params(names).signed_by(&key, &self.issuer()).unwrap();
        Issued {
            chain_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A leaf for `names` with the static RSA key.
    pub fn issue_rsa(&self, names: &[&str]) -> Issued {
        let key = KeyPair::from_pem(RSA_TEST_KEY).unwrap();
        let cert = leaf_params(names).signed_by(&key, &self.issuer()).unwrap();
        Issued {
            chain_pem: cert.pem(),
            key_pem: RSA_TEST_KEY.to_string(),
        }
    }

    /// A leaf signed by an intermediate CA; the chain file holds leaf then intermediate.
    pub fn issue_through_intermediate(&self, names: &[&str]) -> Issued {
        let intermediate_key = KeyPair::generate().unwrap();
        let intermediate_params = ca_params("kamal-proxy test intermediate");
        let intermediate = intermediate_params
            .signed_by(&intermediate_key, &self.issuer())
            .unwrap();
        let key = KeyPair::generate().unwrap();
        let issuer = Issuer::from_params(&intermediate_params, &intermediate_key);
        let cert = leaf_params(names).signed_by(&key, &issuer).unwrap();
        Issued {
            chain_pem: format!("{}{}", cert.pem(), intermediate.pem()),
            key_pem: key.serialize_pem(),
        }
    }
}

/// A root store holding the PEM certificates in `pem`.
pub fn roots(pem: &str) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots.add(certificate.unwrap()).unwrap();
    }
    roots
}

/// What an HTTPS exchange negotiated, and its response.
#[derive(Debug)]
pub struct TlsExchange {
    pub alpn: Option<Vec<u8>>,
    /// The server's chain, leaf first, DER.
    pub peer_chain: Vec<Vec<u8>>,
    pub response: Response,
}

/// How to connect: SNI (`None` sends none; the certificate is then checked against `verify_as`).
pub struct TlsClient<'a> {
    pub port: u16,
    pub sni: Option<&'a str>,
    pub verify_as: &'a str,
    pub roots: rustls::RootCertStore,
    pub alpn: &'a [&'a [u8]],
}

impl TlsClient<'_> {
    /// A fresh TLS connection to the proxy, handshake done (a failed one is `handshake: ...`).
    pub async fn connect(&self) -> Result<TlsStream<TcpStream>, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut config = rustls::ClientConfig::builder()
            .with_root_certificates(self.roots.clone())
            .with_no_client_auth();
        config.alpn_protocols = self.alpn.iter().map(|p| p.to_vec()).collect();
        config.enable_sni = self.sni.is_some();
        let name = self.sni.unwrap_or(self.verify_as).to_string();
        let server_name = ServerName::try_from(name).map_err(|e| e.to_string())?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(("127.0.0.1", self.port))
            .await
            .map_err(|e| e.to_string())?;
        connector
            .connect(server_name, tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))
    }

    /// `GET path` with `Host: host` over a fresh TLS connection.
    pub async fn get(&self, host: &str, path: &str) -> Result<TlsExchange, String> {
        let exchange = async {
            let tls = self.connect().await?;
            let (_, session) = tls.get_ref();
            let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
            let peer_chain = session
                .peer_certificates()
                .unwrap_or_default()
                .iter()
                .map(|c| c.as_ref().to_vec())
                .collect();
            let h2 = alpn.as_deref() == Some(b"h2");
            let request = Request::builder()
                .uri(if h2 {
                    format!("https://{host}{path}")
                } else {
                    path.to_string()
                })
                .header("host", host)
                .body(Full::new(Bytes::new()))
                .map_err(|e| e.to_string())?;
            let response = if h2 {
                let (mut sender, connection) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                        .await
                        .map_err(|e| e.to_string())?;
                tokio::spawn(connection);
                sender.send_request(request).await
            } else {
                let (mut sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(tls))
                        .await
                        .map_err(|e| e.to_string())?;
                tokio::spawn(connection);
                sender.send_request(request).await
            }
            .map_err(|e| format!("{e:?}"))?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await.map_err(|e| format!("{e:?}"))?;
            Ok(TlsExchange {
                alpn,
                peer_chain,
                response: Response {
                    status: parts.status,
                    headers: parts.headers,
                    body: String::from_utf8_lossy(&body.to_bytes()).into_owned(),
                },
            })
        };
        tokio::time::timeout(Duration::from_secs(20), exchange)
            .await
            .map_err(|_| "no response within 20s".to_string())?
    }
}
