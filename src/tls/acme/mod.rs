//! Automatic certificates: the ACME manager.
//!
//! A service deployed with `--tls` and no certificate files is *watched*: one background
//! task per service loads its hosts' certificates from the cache, orders the missing ones at
//! once (a deploy never waits for the CA), renews them before expiry, and retries failed
//! orders with backoff, never before the CA's `Retry-After` (`ca_client`). Issued certificates are published by swapping a new `Arc` map, so the
//! TLS handshake reads them without a lock (rust-rpxy's approach). A failed renewal leaves
//! the previous certificate in service. Redeploying with the same settings keeps the task.
//!
//! On-demand services (`--tls-on-demand-url`, no hosts) are watched with no hosts; a
//! handshake for an unknown name asks the service's task for it (`on_demand`) and waits: the
//! task takes a cached certificate if there is one, else asks the approval endpoint (for a
//! `/path`, the service the handshake reached), and then maintains the host like any other. Every certificate and state is owned by its
//! service, so removing the service stops serving them.

mod account;
mod ca_client;
mod cache;
pub mod challenge_kind;
mod on_demand;
mod order;
mod schedule;
mod status;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::sign::CertifiedKey;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::certificate::{CertificateError, Validity};
use super::challenges::Challenges;
use crate::control::{Host, ServiceName};
use crate::go_duration;
use crate::service::options::AcmeSettings;
use crate::service::Service;
use account::CaSession;
use cache::CertCache;
use challenge_kind::ChallengeKind;
pub use status::CertificateState;

/// Re-evaluate at least this often, so a changed clock cannot postpone renewal for weeks.
const LONGEST_SLEEP: Duration = Duration::from_secs(60 * 60);

/// The longest a handshake waits for an on-demand certificate.
const ON_DEMAND_WAIT: Duration = Duration::from_secs(60);

/// Why an account or order failed; the text is what operators see in `list`.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("ACME account: {0}")]
    Account(instant_acme::Error),
    #[error("{0}")]
    Order(String),
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
    /// Names handshakes asked for (on-demand services).
    requests: mpsc::UnboundedSender<OnDemandRequest>,
}

/// A handshake's request for a name; the reply is dropped once the name is served, refused
/// or failed.
struct OnDemandRequest {
    host: String,
    /// The service the handshake reached, as it was then: a `/path` check goes through it.
    service: Arc<Service>,
    reply: oneshot::Sender<()>,
}

/// A certificate (or its state) and the service it belongs to.
#[derive(Clone)]
struct Owned<T> {
    service: ServiceName,
    value: T,
}

pub struct AcmeManager {
    config: AcmeConfig,
    challenges: Arc<Challenges>,
    /// Host -> certificate; replaced whole on every change, read lock-free by handshakes.
    certificates: ArcSwap<HashMap<String, Owned<Arc<CertifiedKey>>>>,
    /// Host -> state, for `list` and D-Bus; short sections only.
    states: Mutex<HashMap<String, Owned<CertificateState>>>,
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
        self.certificates
            .load()
            .get(host)
            .map(|owned| Arc::clone(&owned.value))
    }

    /// The state of each certificate of `service`, by host.
    pub fn states(&self, service: &ServiceName) -> Vec<(String, CertificateState)> {
        let mut states: Vec<(String, CertificateState)> = lock(&self.states)
            .iter()
            .filter(|(_, owned)| owned.service == *service)
            .map(|(host, owned)| (host.clone(), owned.value.clone()))
            .collect();
        states.sort_by(|a, b| a.0.cmp(&b.0));
        states
    }

    /// Asks `service`'s task (an on-demand service) for a certificate for `host` and waits
    /// until it is served or refused, for a minute at most.
    pub async fn on_demand(&self, service: &Arc<Service>, host: &str) {
        let Some(requests) = lock(&self.running)
            .get(&service.name)
            .map(|running| running.requests.clone())
        else {
            return;
        };
        let (reply, settled) = oneshot::channel();
        let request = OnDemandRequest {
            host: host.to_string(),
            service: Arc::clone(service),
            reply,
        };
        if requests.send(request).is_ok() {
            let _ = tokio::time::timeout(ON_DEMAND_WAIT, settled).await;
        }
    }

    /// Keeps `hosts` supplied with certificates for `service`; replaces the previous watch
    /// of the service unless it is the same.
    pub fn watch(self: &Arc<Self>, service: &ServiceName, hosts: &[Host], settings: &AcmeSettings) {
        let watch = Watch {
            hosts: hosts.to_vec(),
            settings: settings.clone(),
        };
        let stop = self.shutdown.child_token();
        let (requests, received) = mpsc::unbounded_channel();
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
                    requests,
                },
            ) {
                previous.stop.cancel();
                self.forget_hosts(service, hosts);
            }
        }
        let manager = Arc::clone(self);
        let service = service.clone();
        self.tasks.spawn(async move {
            manager.maintain(service, watch, received, stop).await;
        });
    }

    /// Stops maintaining `service`'s certificates and stops serving them.
    pub fn unwatch(&self, service: &ServiceName) {
        if let Some(previous) = lock(&self.running).remove(service) {
            previous.stop.cancel();
            self.forget_hosts(service, &[]);
        }
    }

    /// Waits for every task to end; the shutdown token has been cancelled.
    pub async fn close(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// Drops `service`'s certificates and states except those of `keep`.
    fn forget_hosts(&self, service: &ServiceName, keep: &[Host]) {
        let gone = |host: &str, owner: &ServiceName| {
            owner == service && !keep.iter().any(|k| k.as_str() == host)
        };
        self.certificates.rcu(|current| {
            let mut next = HashMap::clone(current);
            next.retain(|host, owned| !gone(host, &owned.service));
            next
        });
        lock(&self.states).retain(|host, owned| !gone(host, &owned.service));
    }

    fn publish(
        &self,
        service: &ServiceName,
        host: &str,
        certificate: Arc<CertifiedKey>,
        validity: Validity,
    ) {
        let owned = Owned {
            service: service.clone(),
            value: certificate,
        };
        self.certificates.rcu(|current| {
            let mut next = HashMap::clone(current);
            next.insert(host.to_string(), owned.clone());
            next
        });
        self.set_state(
            service,
            host,
            CertificateState::Valid {
                not_after: validity.not_after,
            },
        );
    }

    fn set_state(&self, service: &ServiceName, host: &str, state: CertificateState) {
        let owned = Owned {
            service: service.clone(),
            value: state,
        };
        lock(&self.states).insert(host.to_string(), owned);
    }

    fn cache(&self, settings: &AcmeSettings) -> CertCache {
        let root = settings
            .cache_path
            .as_ref()
            .map_or_else(|| self.config.cache_root.clone(), PathBuf::from);
        CertCache::new(&root, &settings.directory)
    }

    /// The task of one watched service.
    async fn maintain(
        &self,
        service: ServiceName,
        watch: Watch,
        mut requests: mpsc::UnboundedReceiver<OnDemandRequest>,
        stop: CancellationToken,
    ) {
        let cache = self.cache(&watch.settings);
        let mut hosts: Vec<String> = watch.hosts.iter().map(ToString::to_string).collect();
        for host in &hosts {
            self.load_cached(&service, &cache, host).await;
        }
        let mut failures: HashMap<String, u32> = HashMap::new();
        let mut not_before: HashMap<String, SystemTime> = HashMap::new();
        // Handshakes waiting for a name's first order; dropping a reply releases them.
        let mut waiting: HashMap<String, Vec<oneshot::Sender<()>>> = HashMap::new();
        let mut session = CaSession::default();
        loop {
            let mut wake = SystemTime::now() + LONGEST_SLEEP;
            for host in &hosts {
                let due = self.due(host, not_before.get(host).copied());
                if due > SystemTime::now() {
                    wake = wake.min(due);
                    continue;
                }
                // Only this attempt's refusals count.
                session.take_retry_after();
                let attempt = self.obtain(&service, &cache, &watch.settings, &mut session, host);
                let outcome = tokio::select! {
                    outcome = attempt => outcome,
                    () = stop.cancelled() => return,
                };
                waiting.remove(host);
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
                        let retry_after = session
                            .take_retry_after()
                            .and_then(|at| at.duration_since(SystemTime::now()).ok());
                        let delay = schedule::retry_delay(*count, retry_after);
                        let retry_at = SystemTime::now() + delay;
                        tracing::error!(service = %service, host, error = %error, retry_in = %go_duration::format(delay), "Failed to obtain TLS certificate");
                        self.set_state(
                            &service,
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
                Some(request) = requests.recv() => {
                    let admitted = self.admit(&request, &watch.settings, &cache, &hosts);
                    if admitted.await {
                        hosts.push(request.host.clone());
                        waiting.entry(request.host).or_default().push(request.reply);
                    }
                }
                () = stop.cancelled() => return,
            }
        }
    }

    /// Whether an on-demand name a handshake asked for needs an order from now on: not when
    /// it is maintained already or was cached, nor when the approval endpoint refuses it.
    async fn admit(
        &self,
        request: &OnDemandRequest,
        settings: &AcmeSettings,
        cache: &CertCache,
        hosts: &[String],
    ) -> bool {
        let (service, host) = (&request.service, request.host.as_str());
        if hosts.iter().any(|h| h == host) || self.load_cached(&service.name, cache, host).await {
            return false;
        }
        let Some(url) = &settings.on_demand_url else {
            return false;
        };
        match on_demand::approve(service, url, host).await {
            Ok(()) => true,
            Err(refusal) => {
                refusal.log(&service.name);
                false
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

    /// Serves `host`'s cached certificate if there is a usable one; says whether it did.
    async fn load_cached(&self, service: &ServiceName, cache: &CertCache, host: &str) -> bool {
        if self.certificate(host).is_some() {
            return true;
        }
        let (cache, name) = (cache.clone(), host.to_string());
        let loaded = tokio::task::spawn_blocking(move || cache.load(&name)).await;
        match loaded {
            Ok(Ok(Some(certificate))) => match Validity::of(&certificate) {
                Ok(validity) if validity.not_after > SystemTime::now() => {
                    self.publish(service, host, certificate, validity);
                    return true;
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
        false
    }

    async fn obtain(
        &self,
        service: &ServiceName,
        cache: &CertCache,
        settings: &AcmeSettings,
        session: &mut CaSession,
        host: &str,
    ) -> Result<Validity, AcmeError> {
        if self.certificate(host).is_none() {
            self.set_state(service, host, CertificateState::Pending);
        }
        let account = session
            .account(cache, settings, self.config.ca_certificate.as_deref())
            .await?;
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
        self.publish(service, host, certificate, validity);
        Ok(validity)
    }
}
