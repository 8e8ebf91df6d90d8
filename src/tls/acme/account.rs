//! The ACME account a directory's orders are placed with: loaded from the cache, or
//! registered (terms accepted, optional contact and external account binding) and cached.
//!
//! It is only needed when an order is due, so a restart with valid cached certificates
//! never talks to the CA.

use std::path::Path;

use base64::Engine;
use instant_acme::{Account, AccountBuilder, AccountCredentials, ExternalAccountKey, NewAccount};

use super::cache::CertCache;
use super::AcmeError;
use crate::service::options::AcmeSettings;

/// An HTTP client for the CA: the system's roots, plus `extra_root` (a test CA, or a
/// private CA's root) when given.
fn builder(extra_root: Option<&Path>) -> Result<AccountBuilder, AcmeError> {
    let Some(extra_root) = extra_root else {
        return Account::builder().map_err(AcmeError::Account);
    };
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(certificate);
    }
    let extra = rustls::pki_types::CertificateDer::pem_file_iter(extra_root)
        .map_err(|e| AcmeError::CaCertificate(e.to_string()))?;
    for certificate in extra {
        let certificate = certificate.map_err(|e| AcmeError::CaCertificate(e.to_string()))?;
        roots
            .add(certificate)
            .map_err(|e| AcmeError::CaCertificate(e.to_string()))?;
    }
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(connector);
    Ok(Account::builder_with_http(Box::new(client)))
}

fn external_account(settings: &AcmeSettings) -> Result<Option<ExternalAccountKey>, AcmeError> {
    let Some(eab) = &settings.external_account_binding else {
        return Ok(None);
    };
    let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(eab.hmac_key.trim_end_matches('='))
        .map_err(|e| AcmeError::ExternalAccountKey(e.to_string()))?;
    Ok(Some(ExternalAccountKey::new(eab.key_id.clone(), &key)))
}

/// The cached account of this directory, or a newly registered one.
pub async fn account(
    cache: &CertCache,
    settings: &AcmeSettings,
    extra_root: Option<&Path>,
) -> Result<Account, AcmeError> {
    let builder = builder(extra_root)?;
    let cached = {
        let cache = cache.clone();
        tokio::task::spawn_blocking(move || cache.load_account())
            .await
            .map_err(|e| AcmeError::Cache(std::io::Error::other(e)))?
            .map_err(AcmeError::Cache)?
    };
    if let Some(bytes) = cached {
        if let Ok(credentials) = serde_json::from_slice::<AccountCredentials>(&bytes) {
            return builder
                .from_credentials(credentials)
                .await
                .map_err(AcmeError::Account);
        }
        tracing::warn!(path = %cache.directory().display(), "Ignoring an unreadable ACME account; registering a new one");
    }
    let contact = settings
        .contact
        .as_ref()
        .map(|email| format!("mailto:{email}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let (account, credentials) = builder
        .create(
            &NewAccount {
                contact: &contacts,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            settings.directory.clone(),
            external_account(settings)?.as_ref(),
        )
        .await
        .map_err(AcmeError::Account)?;
    let bytes = serde_json::to_vec(&credentials).map_err(|e| AcmeError::Cache(e.into()))?;
    let cache = cache.clone();
    tokio::task::spawn_blocking(move || cache.store_account(&bytes))
        .await
        .map_err(|e| AcmeError::Cache(std::io::Error::other(e)))?
        .map_err(AcmeError::Cache)?;
    tracing::info!(directory = %settings.directory, "Registered ACME account");
    Ok(account)
}
