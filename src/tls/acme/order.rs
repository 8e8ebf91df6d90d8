//! One certificate order for one host: answer a challenge, wait for the CA, send a CSR for a
//! fresh ECDSA P-256 key, collect the chain.
//!
//! The challenge answer is offered before the CA is told to validate and withdrawn however
//! the order ends (`Offered` drops it), so answers never pile up. A refused order reports the
//! CA's own reason (the failed challenge's problem detail), because "order invalid" alone
//! tells an operator nothing.

use std::sync::Arc;
use std::time::Duration;

use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewOrder, OrderStatus, RetryPolicy,
};
use rustls::pki_types::PrivateKeyDer;

use super::challenge_kind::ChallengeKind;
use super::AcmeError;
use crate::tls::certificate::CertificateError;
use crate::tls::challenges::Challenges;

/// How long to wait for the CA to validate and to issue.
const POLL: RetryPolicy = RetryPolicy::new()
    .initial_delay(Duration::from_millis(250))
    .backoff(1.5)
    .timeout(Duration::from_secs(90));

/// A newly issued certificate, in PEM.
pub struct Issued {
    pub key_pem: String,
    pub chain_pem: String,
}

/// The answers offered for one order; withdrawn on drop.
struct Offered<'a> {
    challenges: &'a Challenges,
    tokens: Vec<String>,
    alpn_hosts: Vec<String>,
}

impl Drop for Offered<'_> {
    fn drop(&mut self) {
        for token in &self.tokens {
            self.challenges.withdraw_http01(token);
        }
        for host in &self.alpn_hosts {
            self.challenges.withdraw_tls_alpn01(host);
        }
    }
}

/// The self-signed certificate TLS-ALPN-01 validation expects (RFC 8737).
fn tls_alpn01_certificate(
    host: &str,
    digest: &[u8],
) -> Result<Arc<rustls::sign::CertifiedKey>, AcmeError> {
    let key = rcgen::KeyPair::generate().map_err(AcmeError::KeyGeneration)?;
    let mut params =
        rcgen::CertificateParams::new(vec![host.to_string()]).map_err(AcmeError::KeyGeneration)?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let certificate = params.self_signed(&key).map_err(AcmeError::KeyGeneration)?;
    // Not `certificate::from_der`: its key check parses the certificate with webpki, which
    // refuses the critical acmeIdentifier extension this certificate exists to carry.
    let signing_key = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(key.serialize_der().into()))
        .map_err(|e| AcmeError::Certificate(CertificateError::UnsupportedKey(e)))?;
    Ok(Arc::new(rustls::sign::CertifiedKey::new(
        vec![certificate.der().clone()],
        signing_key,
    )))
}

fn order_error(error: instant_acme::Error) -> AcmeError {
    AcmeError::Order(match &error {
        instant_acme::Error::Api(problem) => problem
            .detail
            .clone()
            .unwrap_or_else(|| problem.to_string()),
        other => other.to_string(),
    })
}

/// Orders a certificate for `host`, answering the first challenge in `preference` the CA offers.
pub async fn issue(
    account: &Account,
    host: &str,
    challenges: &Challenges,
    preference: &[ChallengeKind],
) -> Result<Issued, AcmeError> {
    let identifiers = [Identifier::Dns(host.to_string())];
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(order_error)?;
    let mut offered = Offered {
        challenges,
        tokens: Vec::new(),
        alpn_hosts: Vec::new(),
    };
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization = authorization.map_err(order_error)?;
        match authorization.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => {
                return Err(AcmeError::Rejected(format!(
                    "authorization for {host} is {other:?}"
                )))
            }
        }
        let kind = preference
            .iter()
            .copied()
            .find(|kind| {
                authorization
                    .challenges
                    .iter()
                    .any(|c| c.r#type == kind.acme_type())
            })
            .ok_or(AcmeError::NoSupportedChallenge)?;
        let mut challenge = authorization
            .challenge(kind.acme_type())
            .ok_or(AcmeError::NoSupportedChallenge)?;
        let key_authorization = challenge.key_authorization();
        match kind {
            ChallengeKind::Http01 => {
                challenges.offer_http01(&challenge.token, key_authorization.as_str());
                offered.tokens.push(challenge.token.clone());
            }
            ChallengeKind::TlsAlpn01 => {
                let certificate =
                    tls_alpn01_certificate(host, key_authorization.digest().as_ref())?;
                challenges.offer_tls_alpn01(host, certificate);
                offered.alpn_hosts.push(host.to_string());
            }
        }
        challenge.set_ready().await.map_err(order_error)?;
    }

    let status = order.poll_ready(&POLL).await.map_err(order_error)?;
    if status != OrderStatus::Ready {
        return Err(AcmeError::Rejected(invalid_reason(&mut order, host).await));
    }
    drop(offered);

    let key = rcgen::KeyPair::generate().map_err(AcmeError::KeyGeneration)?;
    let mut params =
        rcgen::CertificateParams::new(vec![host.to_string()]).map_err(AcmeError::KeyGeneration)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params
        .serialize_request(&key)
        .map_err(AcmeError::KeyGeneration)?;
    order.finalize_csr(csr.der()).await.map_err(order_error)?;
    let chain_pem = order.poll_certificate(&POLL).await.map_err(order_error)?;
    Ok(Issued {
        key_pem: key.serialize_pem(),
        chain_pem,
    })
}

/// The CA's reason for an invalid order: its own error, else the failed challenge's.
async fn invalid_reason(order: &mut instant_acme::Order, host: &str) -> String {
    if let Some(problem) = &order.state().error {
        return problem
            .detail
            .clone()
            .unwrap_or_else(|| problem.to_string());
    }
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authorization)) = authorizations.next().await {
        if let Ok(state) = authorization.refresh().await {
            let failed = state
                .challenges
                .iter()
                .filter_map(|c| c.error.as_ref())
                .map(|p| p.detail.clone().unwrap_or_else(|| p.to_string()))
                .next();
            if let Some(reason) = failed {
                return reason;
            }
        }
    }
    format!("the CA refused the order for {host}")
}

impl ChallengeKind {
    fn acme_type(self) -> ChallengeType {
        match self {
            ChallengeKind::Http01 => ChallengeType::Http01,
            ChallengeKind::TlsAlpn01 => ChallengeType::TlsAlpn01,
        }
    }
}
