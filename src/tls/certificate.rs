//! Turning PEM (a certificate chain and its private key) into the `CertifiedKey` rustls
//! serves, and reading a certificate's expiry.
//!
//! Used for `--tls-certificate-path` / `--tls-private-key-path` (loaded at deploy, so a bad
//! file is refused with `unable to load certificate: <reason>` instead of failing every
//! handshake later) and for certificates the ACME manager issued or found in its cache.
//! Keys may be RSA, ECDSA or Ed25519, in PKCS#1, PKCS#8 or SEC1 PEM; the key must belong to
//! the first certificate.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::crypto::ring::default_provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// Why a certificate could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    #[error("cannot read {path}: {source}")]
    Unreadable {
        path: String,
        source: std::io::Error,
    },
    #[error("no certificate found in {0}")]
    NoCertificate(String),
    #[error("no private key found in {0}")]
    NoPrivateKey(String),
    #[error("unsupported private key: {0}")]
    UnsupportedKey(rustls::Error),
    #[error("the private key does not match the certificate")]
    KeyMismatch,
    #[error("invalid certificate: {0}")]
    InvalidCertificate(String),
}

impl CertificateError {
    /// The text a deploy is refused with (Go's prefix).
    pub fn deploy_message(&self) -> String {
        format!("unable to load certificate: {self}")
    }
}

fn read(path: &Path) -> Result<Vec<u8>, CertificateError> {
    std::fs::read(path).map_err(|source| CertificateError::Unreadable {
        path: path.display().to_string(),
        source,
    })
}

/// Loads the operator's certificate and key files (blocking: call off the runtime).
pub fn load_files(
    certificate_path: &Path,
    private_key_path: &Path,
) -> Result<Arc<CertifiedKey>, CertificateError> {
    let chain = read(certificate_path)?;
    let key = read(private_key_path)?;
    from_pem(
        &chain,
        &key,
        &certificate_path.display().to_string(),
        &private_key_path.display().to_string(),
    )
}

/// Builds the served key from PEM text; `chain_origin`/`key_origin` name the sources in errors.
pub fn from_pem(
    chain_pem: &[u8],
    key_pem: &[u8],
    chain_origin: &str,
    key_origin: &str,
) -> Result<Arc<CertifiedKey>, CertificateError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| CertificateError::InvalidCertificate(e.to_string()))?;
    if chain.is_empty() {
        return Err(CertificateError::NoCertificate(chain_origin.to_string()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|_| CertificateError::NoPrivateKey(key_origin.to_string()))?;
    from_der(chain, key)
}

/// Builds the served key from DER, checking that the key belongs to the leaf certificate.
pub fn from_der(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<CertifiedKey>, CertificateError> {
    let signing_key = default_provider()
        .key_provider
        .load_private_key(key)
        .map_err(CertificateError::UnsupportedKey)?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => Ok(Arc::new(certified)),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(CertificateError::KeyMismatch)
        }
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(Arc::new(certified))
        }
        Err(error) => Err(CertificateError::InvalidCertificate(error.to_string())),
    }
}

/// When the leaf certificate stops being valid, and how long it was valid for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Validity {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl Validity {
    pub fn of(certified: &CertifiedKey) -> Result<Validity, CertificateError> {
        let leaf = certified
            .end_entity_cert()
            .map_err(|e| CertificateError::InvalidCertificate(e.to_string()))?;
        let (_, parsed) = x509_parser::parse_x509_certificate(leaf)
            .map_err(|e| CertificateError::InvalidCertificate(e.to_string()))?;
        let time = |t: x509_parser::time::ASN1Time| {
            let seconds = u64::try_from(t.timestamp()).unwrap_or(0);
            SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
        };
        Ok(Validity {
            not_before: time(parsed.validity().not_before),
            not_after: time(parsed.validity().not_after),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn loads_a_matching_pair_and_reads_its_validity() {
        let (cert, key) = self_signed("a.example.com");
        let certified = from_pem(cert.as_bytes(), key.as_bytes(), "c", "k").unwrap();
        let validity = Validity::of(&certified).unwrap();
        assert!(validity.not_after > validity.not_before);
    }

    #[test]
    fn refuses_a_key_of_another_certificate() {
        let (cert, _) = self_signed("a.example.com");
        let (_, other_key) = self_signed("b.example.com");
        let error = from_pem(cert.as_bytes(), other_key.as_bytes(), "c", "k").unwrap_err();
        assert_eq!(
            error.deploy_message(),
            "unable to load certificate: the private key does not match the certificate"
        );
    }

    #[test]
    fn names_the_file_without_a_certificate_or_that_is_missing() {
        let (_, key) = self_signed("a.example.com");
        let error = from_pem(b"", key.as_bytes(), "cert.pem", "k").unwrap_err();
        assert_eq!(error.to_string(), "no certificate found in cert.pem");
        let missing = load_files(Path::new("/nonexistent/c.pem"), Path::new("/k")).unwrap_err();
        assert!(missing
            .to_string()
            .starts_with("cannot read /nonexistent/c.pem"));
    }
}
