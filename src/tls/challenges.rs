//! The ACME challenge answers currently on offer: HTTP-01 key authorizations by token, and
//! TLS-ALPN-01 certificates by host.
//!
//! The ACME manager adds an answer before telling the CA to validate and removes it after.
//! Only challenge traffic reads it (`/.well-known/acme-challenge/` requests and `acme-tls/1`
//! handshakes), so a std `Mutex` held for one map operation never slows ordinary requests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use rustls::sign::CertifiedKey;

/// The path prefix HTTP-01 validation requests use.
pub const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";

#[derive(Default)]
pub struct Challenges {
    http01: Mutex<HashMap<String, String>>,
    tls_alpn01: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

/// Poisoning means a panic during one map operation; the map itself is intact.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Challenges {
    pub fn offer_http01(&self, token: &str, key_authorization: &str) {
        lock(&self.http01).insert(token.to_string(), key_authorization.to_string());
    }

    pub fn withdraw_http01(&self, token: &str) {
        lock(&self.http01).remove(token);
    }

    /// The key authorization for a request path, if it is an HTTP-01 challenge on offer.
    pub fn http01_answer(&self, path: &str) -> Option<String> {
        let token = path.strip_prefix(HTTP01_PREFIX)?;
        lock(&self.http01).get(token).cloned()
    }

    pub fn offer_tls_alpn01(&self, host: &str, certificate: Arc<CertifiedKey>) {
        lock(&self.tls_alpn01).insert(host.to_string(), certificate);
    }

    pub fn withdraw_tls_alpn01(&self, host: &str) {
        lock(&self.tls_alpn01).remove(host);
    }

    pub fn tls_alpn01_certificate(&self, host: &str) -> Option<Arc<CertifiedKey>> {
        lock(&self.tls_alpn01).get(host).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_only_offered_tokens_under_the_challenge_path() {
        let challenges = Challenges::default();
        challenges.offer_http01("tok", "tok.thumb");
        assert_eq!(
            challenges
                .http01_answer("/.well-known/acme-challenge/tok")
                .as_deref(),
            Some("tok.thumb")
        );
        assert_eq!(challenges.http01_answer("/tok"), None);
        challenges.withdraw_http01("tok");
        assert_eq!(
            challenges.http01_answer("/.well-known/acme-challenge/tok"),
            None
        );
    }
}
