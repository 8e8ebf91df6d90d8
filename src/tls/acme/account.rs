//! The ACME account a directory's orders are placed with: loaded from the cache, or
//! registered (terms accepted, optional contact and external account binding) and cached.
//!
//! It is only needed when an order is due, so a restart with valid cached certificates
//! never talks to the CA. Each ACME task keeps a `CaSession`: the account once it has one,
//! and when the CA last asked it to come back (`ca_client`), which outlives a failed
//! registration.

use std::path::Path;
use std::time::SystemTime;

use base64::Engine;
use instant_acme::{Account, AccountCredentials, ExternalAccountKey, NewAccount};

use super::ca_client::{self, RetryAfter};
use super::cache::CertCache;
use super::AcmeError;
use crate::service::options::AcmeSettings;

/// One ACME task's dealings with its CA.
#[derive(Default)]
pub struct CaSession {
    account: Option<Account>,
    retry_after: RetryAfter,
}

impl CaSession {
    /// The account, loaded or registered on first use.
    pub async fn account(
        &mut self,
        cache: &CertCache,
        settings: &AcmeSettings,
        extra_root: Option<&Path>,
    ) -> Result<&Account, AcmeError> {
        let account = match self.account.take() {
            Some(account) => account,
            None => load_or_register(cache, settings, extra_root, &self.retry_after).await?,
        };
        Ok(self.account.insert(account))
    }

    /// When the CA's last error response asked us to come back, if it did; forgets it.
    pub fn take_retry_after(&self) -> Option<SystemTime> {
        self.retry_after.take()
    }
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

/// The cached account of this directory, or a newly registered one; it talks to the CA
/// through a client that records the CA's `Retry-After` in `retry_after`.
async fn load_or_register(
    cache: &CertCache,
    settings: &AcmeSettings,
    extra_root: Option<&Path>,
    retry_after: &RetryAfter,
) -> Result<Account, AcmeError> {
    let builder = Account::builder_with_http(ca_client::client(extra_root, retry_after)?);
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
