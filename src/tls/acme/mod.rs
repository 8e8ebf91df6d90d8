//! Automatic certificates: the ACME manager.
//!
//! A service deployed with `--tls` and no certificate files is *watched*: one background
//! task per service loads its hosts' certificates from the cache, orders the missing ones at
//! once (a deploy never waits for the CA), renews them before expiry, and retries failed
//! orders with backoff. Issued certificates are published by swapping a new `Arc` map, so the
//! TLS handshake reads them without a lock (rust-rpxy's approach). A failed renewal leaves
//! the previous certificate in service. Redeploying with the same settings keeps the task.

mod account;
mod cache;
pub mod challenge_kind;
mod order;
mod schedule;
mod status;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::sign::CertifiedKey;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::certificate::{CertificateError, Validity};
use super::challenges::Challenges;
use crate::control::{Host, ServiceName};
use crate::service::options::AcmeSettings;
use cache::CertCache;
use challenge_kind::ChallengeKind;
pub use status::CertificateState;

/// Re-evaluate at least this often, so a changed clock cannot postpone renewal for weeks.
const LONGEST_SLEEP: Duration = Duration::from_secs(60 * 60);

/// Why an account or order failed; the text is what operators see in `list`.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("ACME account: {0}")]
    Account(instant_acme::Error),
    #[error("{reason}")]
    Order {
        reason: String,
        retry_after: Option<Duration>,
    },
    #[error("{0}")]
    Rejected(String),
    #[error("the CA offered no challenge this proxy can answer")]
    NoSupportedChallenge,
    #[error("cannot generate a key: {0}")]
    KeyGeneration(rcgen::Error),
    #[error("the CA sent an unusable certificate: {0}")]
    Certificate(CertificateError),
    #[error("certificate cache: {0}")]
    Cache(std::io::Error),
    #[error("--acme-ca-cert: {0}")]
    CaCertificate(String),
    #[error("external account binding HMAC key is not base64url: {0}")]
    ExternalAccountKey(String),
}

/// What the daemon decided about ACME at start-up.
#[derive(Debug, Clone)]
pub struct AcmeConfig {
    /// `<state dir>/certs`, used unless a service names its own cache path.
    pub cache_root: PathBuf,
    /// An extra root to trust when talking to the CA (`run --acme-ca-cert`).
    pub ca_certificate: Option<PathBuf>,
    pub challenges: Vec<ChallengeKind>,
}

/// What one service's task maintains.
#[derive(Debug, Clone, PartialEq)]
struct Watch {
    hosts: Vec<Host>,
    settings: AcmeSettings,
}

struct Running {
    watch: Watch,
    stop: CancellationToken,
}

pub struct AcmeManager {
    config: AcmeConfig,
    challenges: Arc<Challenges>,
    /// Host -> certificate; replaced whole on every change, read lock-free by handshakes.
    certificates: ArcSwap<HashMap<String, Arc<CertifiedKey>>>,
    /// Host -> state, for `list` and D-Bus; short sections only.
    states: Mutex<HashMap<String, CertificateState>>,
    /// Service -> its task; short sections only.
    running: Mutex<HashMap<ServiceName, Running>>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

/// Poisoning means a panic inside a short map operation; the map is intact.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl AcmeManager {
    pub fn new(
        config: AcmeConfig,
        challenges: Arc<Challenges>,
        shutdown: CancellationToken,
    ) -> Self {
        AcmeManager {
            config,
            challenges,
            certificates: ArcSwap::from_pointee(HashMap::new()),
            states: Mutex::new(HashMap::new()),
            running: Mutex::new(HashMap::new()),
            tasks: TaskTracker::new(),
            shutdown,
        }
    }

    /// The challenge answers on offer, shared with the listeners.
    pub fn challenges(&self) -> &Arc<Challenges> {
        &self.challenges
    }

    /// The certificate served for `host`, if one has been issued or cached.
    pub fn certificate(&self, host: &str) -> Option<Arc<CertifiedKey>> {
        self.certificates.load().get(host).cloned()
    }

    /// The state of each of `hosts`' certificates.
    pub fn states(&self, hosts: &[Host]) -> Vec<(String, CertificateState)> {
        let states = lock(&self.states);
        hosts
            .iter()
            .map(|host| {
                let state = states
                    .get(host.as_str())
                    .cloned()
                    .unwrap_or(CertificateState::Pending);
                (host.to_string(), state)
            })
            .collect()
    }

    /// Keeps `hosts` supplied with certificates for `service`; replaces the previous watch
    /// of the service unless it is the same.
    pub fn watch(self: &Arc<Self>, service: &ServiceName, hosts: &[Host], settings: &AcmeSettings) {
        let watch = Watch {
            hosts: hosts.to_vec(),
            settings: settings.clone(),
        };
        let stop = self.shutdown.child_token();
        {
            let mut running = lock(&self.running);
            if running.get(service).is_some_and(|r| r.watch == watch) {
                return;
            }
            if let Some(previous) = running.insert(
                service.clone(),
                Running {
                    watch: watch.clone(),
                    stop: stop.clone(),
                },
            ) {
                previous.stop.cancel();
                self.forget_hosts(&previous.watch.hosts, hosts);
            }
        }
        let manager = Arc::clone(self);
        let service = service.clone();
        self.tasks
            .spawn(async move { manager.maintain(service, watch, stop).await });
    }

    /// Stops maintaining `service`'s certificates and stops serving them.
    pub fn unwatch(&self, service: &ServiceName) {
        if let Some(previous) = lock(&self.running).remove(service) {
            previous.stop.cancel();
            self.forget_hosts(&previous.watch.hosts, &[]);
        }
    }

    /// Waits for every task to end; the shutdown token has been cancelled.
    pub async fn close(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }

    fn forget_hosts(&self, old: &[Host], keep: &[Host]) {
        let gone: Vec<&str> = old
            .iter()
            .filter(|host| !keep.contains(host))
            .map(Host::as_str)
            .collect();
        if gone.is_empty() {
            return;
        }
        self.certificates.rcu(|current| {
            let mut next = HashMap::clone(current);
            next.retain(|host, _| !gone.contains(&host.as_str()));
            next
        });
        lock(&self.states).retain(|host, _| !gone.contains(&host.as_str()));
    }

    fn publish(&self, host: &str, certificate: Arc<CertifiedKey>, validity: Validity) {
        self.certificates.rcu(|current| {
            let mut next = HashMap::clone(current);
            next.insert(host.to_string(), Arc::clone(&certificate));
            next
        });
        self.set_state(
            host,
            CertificateState::Valid {
                not_after: validity.not_after,
            },
        );
    }

    fn set_state(&self, host: &str, state: CertificateState) {
        lock(&self.states).insert(host.to_string(), state);
    }

    fn cache(&self, settings: &AcmeSettings) -> CertCache {
        let root = settings
            .cache_path
            .as_ref()
            .map_or_else(|| self.config.cache_root.clone(), PathBuf::from);
        CertCache::new(&root, &settings.directory)
    }

    /// The task of one watched service.
    async fn maintain(&self, service: ServiceName, watch: Watch, stop: CancellationToken) {
        let cache = self.cache(&watch.settings);
        self.load_cached(&cache, &watch.hosts).await;
        let mut failures: HashMap<String, u32> = HashMap::new();
        let mut not_before: HashMap<String, SystemTime> = HashMap::new();
        let mut account = None;
        loop {
            let mut wake = SystemTime::now() + LONGEST_SLEEP;
            for host in &watch.hosts {
                let host = host.as_str();
                let due = self.due(host, not_before.get(host).copied());
                if due > SystemTime::now() {
                    wake = wake.min(due);
                    continue;
                }
                let attempt = self.obtain(&cache, &watch.settings, &mut account, host);
                let outcome = tokio::select! {
                    outcome = attempt => outcome,
                    () = stop.cancelled() => return,
                };
                match outcome {
                    Ok(validity) => {
                        failures.remove(host);
                        not_before.remove(host);
                        tracing::info!(service = %service, host, "Obtained TLS certificate");
                        wake = wake.min(schedule::renewal_time(validity));
                    }
                    Err(error) => {
                        let count = failures.entry(host.to_string()).or_default();
                        *count += 1;
                        let retry_after = order::retry_at(&error)
                            .and_then(|at| at.duration_since(SystemTime::now()).ok());
                        let retry_at =
                            SystemTime::now() + schedule::retry_delay(*count, retry_after);
                        tracing::error!(service = %service, host, error = %error, "Failed to obtain TLS certificate");
                        self.set_state(
                            host,
                            CertificateState::Failed {
                                reason: error.to_string(),
                                retry_at,
                            },
                        );
                        not_before.insert(host.to_string(), retry_at);
                        wake = wake.min(retry_at);
                    }
                }
            }
            let sleep = wake
                .duration_since(SystemTime::now())
                .unwrap_or_default()
                .min(LONGEST_SLEEP);
            tokio::select! {
                () = tokio::time::sleep(sleep) => {}
                () = stop.cancelled() => return,
            }
        }
    }

    /// When `host` needs an order: now without a certificate, else at renewal time; never
    /// before a failed order's retry time.
    fn due(&self, host: &str, retry_at: Option<SystemTime>) -> SystemTime {
        let renewal = self
            .certificate(host)
            .and_then(|c| Validity::of(&c).ok())
            .map_or(SystemTime::UNIX_EPOCH, schedule::renewal_time);
        renewal.max(retry_at.unwrap_or(SystemTime::UNIX_EPOCH))
    }

    async fn load_cached(&self, cache: &CertCache, hosts: &[Host]) {
        for host in hosts {
            let host = host.as_str();
            if self.certificate(host).is_some() {
                continue;
            }
            let (cache, name) = (cache.clone(), host.to_string());
            let loaded = tokio::task::spawn_blocking(move || cache.load(&name)).await;
            match loaded {
                Ok(Ok(Some(certificate))) => match Validity::of(&certificate) {
                    Ok(validity) if validity.not_after > SystemTime::now() => {
                        self.publish(host, certificate, validity)
                    }
                    _ => {}
                },
                Ok(Ok(None)) => {}
                Ok(Err(error)) => {
                    tracing::warn!(host, error = %error, "Ignoring an unusable cached certificate")
                }
                Err(error) => {
                    tracing::warn!(host, error = %error, "Failed to read the certificate cache")
                }
            }
        }
    }

    async fn obtain(
        &self,
        cache: &CertCache,
        settings: &AcmeSettings,
        account: &mut Option<instant_acme::Account>,
        host: &str,
    ) -> Result<Validity, AcmeError> {
        if self.certificate(host).is_none() {
            self.set_state(host, CertificateState::Pending);
        }
        let account = match account {
            Some(account) => account,
            None => account.insert(
                account::account(cache, settings, self.config.ca_certificate.as_deref()).await?,
            ),
        };
        let issued = order::issue(account, host, &self.challenges, &self.config.challenges).await?;
        let certificate = super::certificate::from_pem(
            issued.chain_pem.as_bytes(),
            issued.key_pem.as_bytes(),
            "the CA's response",
            "the generated key",
        )
        .map_err(AcmeError::Certificate)?;
        let validity = Validity::of(&certificate).map_err(AcmeError::Certificate)?;
        let (store, name) = (cache.clone(), host.to_string());
        let stored = tokio::task::spawn_blocking(move || {
            store.store(&name, &issued.key_pem, &issued.chain_pem)
        })
        .await;
        if let Err(error) = stored.map_err(std::io::Error::other).and_then(|r| r) {
            tracing::error!(host, error = %error, "Failed to cache TLS certificate; it will be ordered again after a restart");
        }
        self.publish(host, certificate, validity);
        Ok(validity)
    }
}
