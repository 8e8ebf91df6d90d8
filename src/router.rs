//! `Router`: the typed control API (`deploy`, `remove`, `pause`, `rollout_deploy`, ...) and
//! the owner of every service.
//!
//! Slow work stays unlocked, as in Go's `router.go`: a deploy waits for health and drains
//! the old targets outside any lock; only the swap of the service map and routing table
//! takes the (std, never held across `.await`) mutex. The data plane reads the routing
//! table through `ArcSwap` and never waits for a deploy. Every change is saved before the
//! call returns; a save failure is logged loudly but does not fail the call, because the
//! traffic switch has already happened and reporting failure would make Kamal stop the
//! container that is now serving. Each change is announced as a `ProxyEvent` once done.
//!
//! Every change is a function of the service as it is *at the swap* (`update`), so a deploy
//! keeps a rollout group or split set while it was waiting for health, and vice versa.
//! Each swap also settles TLS across services: path-prefix services inherit their host's
//! root service's TLS policy, and the default TLS host (for clients without SNI) is chosen.
//! Certificate files are loaded before the swap (a bad file refuses the deploy); automatic
//! certificates are handed to the ACME manager, which orders them in the background.
//! Files a deploy sends as contents are checked up front and written to the daemon's own
//! copies (`FileCopies`) after the health wait, before the swap; the saved state names the
//! copies, and each successful save sweeps the copies it no longer names.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::{ArcSwap, ArcSwapOption};
use rustls::sign::CertifiedKey;

use crate::control::{
    ControlError, DeployOptions, FileContents, Host, PathPrefix, PauseOptions,
    RolloutDeployOptions, RolloutSetOptions, ServiceName, ServiceSummary, StopOptions,
    TargetAddress,
};
use crate::event::{self, EventSender, ProxyEvent, ServiceChange};
use crate::routing::RoutingTable;
use crate::service::error_pages::ErrorPages;
use crate::service::health_check::HealthClient;
use crate::service::load_balancer::LoadBalancer;
use crate::service::options::{self, DeployTimings, DEFAULT_DRAIN_TIMEOUT};
use crate::service::options::{HealthCheckConfig, DEFAULT_DEPLOY_TIMEOUT};
use crate::service::pause_controller::{PauseController, PauseStatus, DEFAULT_MAX_PAUSE};
use crate::service::rollout_controller::RolloutController;
use crate::service::sent_files::{CheckedFiles, SentFiles};
use crate::service::target::DrainMode;
use crate::service::target_resolver::TargetResolver;
use crate::service::tls_policy::TlsPolicy;
use crate::service::Service;
use crate::state::{
    CopyPlan, FileCopies, LoadOutcome, SavedPause, SavedRollout, SavedService, StagedCopies,
    StateError, StateFile,
};
use crate::tls::acme::AcmeManager;
use crate::tls::certificate::{self, CertificateError};

pub type Routes = RoutingTable<Arc<Service>>;

/// A `Deploy` call: which service, which writer targets, and what the caller set.
#[derive(Debug, Clone)]
pub struct DeployRequest {
    pub service: ServiceName,
    pub targets: Vec<TargetAddress>,
    pub options: DeployOptions,
}

/// A `RolloutDeploy` call: the service, the rollout group's writers, and what the caller set.
#[derive(Debug, Clone)]
pub struct RolloutDeployRequest {
    pub service: ServiceName,
    pub targets: Vec<TargetAddress>,
    pub options: RolloutDeployOptions,
}

pub struct Router {
    /// Short critical sections only (swap, list, snapshot for saving).
    services: Mutex<BTreeMap<ServiceName, Arc<Service>>>,
    routes: ArcSwap<Routes>,
    /// Services with a deploy in flight; a second deploy of one is refused, not raced.
    deploying: Mutex<HashSet<ServiceName>>,
    state_file: Arc<StateFile>,
    /// The daemon's copies of files deploys sent as contents, beside the state file.
    copies: Arc<FileCopies>,
    /// Orders saves so that an older snapshot never overwrites a newer one.
    save_order: tokio::sync::Mutex<()>,
    health_client: HealthClient,
    /// Where the targets' names point; the attached Kamal container answers for containers.
    resolver: Arc<TargetResolver>,
    /// Where service changes are announced (the D-Bus signals); health checks share it.
    events: EventSender,
    /// The host a handshake without SNI gets; recomputed at every swap.
    default_tls_host: ArcSwapOption<Host>,
    acme: Arc<AcmeManager>,
}

/// Removes the service from `deploying` however the deploy ends.
struct DeployingGuard<'a> {
    router: &'a Router,
    name: ServiceName,
}

impl Drop for DeployingGuard<'_> {
    fn drop(&mut self) {
        lock(&self.router.deploying).remove(&self.name);
    }
}

/// Poisoning means a panic in a short section that only moves `Arc`s; the data is intact.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

type BindingKey = (Option<Host>, PathPrefix);

fn bindings(options: &options::ServiceOptions) -> Vec<BindingKey> {
    let hosts: Vec<Option<Host>> = if options.hosts.is_empty() {
        vec![None]
    } else {
        options.hosts.iter().cloned().map(Some).collect()
    };
    hosts
        .into_iter()
        .flat_map(|host| {
            options
                .path_prefixes
                .iter()
                .map(move |prefix| (host.clone(), prefix.clone()))
        })
        .collect()
}

/// Gives each path-prefix service the TLS policy of the service that handles its first host's
/// root path (Go's rule); root services keep their own.
fn settle_tls(services: &mut BTreeMap<ServiceName, Arc<Service>>) {
    let table = build_routes(services);
    let inherited: Vec<(ServiceName, TlsPolicy)> = services
        .values()
        .filter(|service| {
            !service
                .options
                .path_prefixes
                .iter()
                .any(PathPrefix::is_root)
        })
        .map(|service| {
            let host = service.options.hosts.first().map_or("", Host::as_str);
            let root = table.lookup(host, "/").map(|m| m.value.tls);
            (service.name.clone(), TlsPolicy::inherited(root))
        })
        .collect();
    for (name, policy) in inherited {
        if let Some(service) = services.get_mut(&name) {
            if service.tls != policy {
                let mut changed = Service::clone(service);
                changed.tls = policy;
                *service = Arc::new(changed);
            }
        }
    }
}

/// The first host of the alphabetically first service with TLS on (on-demand services
/// excluded, as in Go): stable, unlike Go's map order.
fn default_tls_host(services: &BTreeMap<ServiceName, Arc<Service>>) -> Option<Host> {
    services
        .values()
        .filter(|service| service.tls.enabled)
        .filter(|service| {
            !matches!(&service.options.tls, options::TlsMode::Acme(acme) if acme.on_demand_url.is_some())
        })
        .find_map(|service| service.options.hosts.first().cloned())
}

/// Loads certificate files off the async runtime.
async fn load_certificate(
    tls: &options::TlsMode,
) -> Result<Option<Arc<CertifiedKey>>, CertificateError> {
    let options::TlsMode::Certificate {
        certificate_path,
        private_key_path,
    } = tls
    else {
        return Ok(None);
    };
    let (certificate_path, private_key_path) = (certificate_path.clone(), private_key_path.clone());
    tokio::task::spawn_blocking(move || {
        certificate::load_files(
            std::path::Path::new(&certificate_path),
            std::path::Path::new(&private_key_path),
        )
    })
    .await
    .map_err(|e| CertificateError::InvalidCertificate(e.to_string()))?
    .map(Some)
}

fn build_routes(services: &BTreeMap<ServiceName, Arc<Service>>) -> Routes {
    RoutingTable::build(services.values().flat_map(|service| {
        bindings(&service.options)
            .into_iter()
            .map(move |(host, prefix)| (host, prefix, Arc::clone(service)))
    }))
}

/// The service, other than `name`, that already owns one of `candidate`'s bindings.
fn conflicting_service<'a>(
    services: &'a BTreeMap<ServiceName, Arc<Service>>,
    name: &ServiceName,
    candidate: &options::ServiceOptions,
) -> Option<&'a ServiceName> {
    let owners: HashMap<BindingKey, &ServiceName> = services
        .iter()
        .filter(|(other, _)| *other != name)
        .flat_map(|(other, service)| {
            bindings(&service.options)
                .into_iter()
                .map(move |key| (key, other))
        })
        .collect();
    bindings(candidate)
        .iter()
        .find_map(|key| owners.get(key).copied())
}

/// Reads the pages off the async runtime: a directory on a slow disk must not stall traffic.
async fn load_error_pages(path: String) -> Result<ErrorPages, String> {
    tokio::task::spawn_blocking(move || ErrorPages::load(std::path::Path::new(&path)))
        .await
        .map_err(|e| format!("unable to load error pages: {e}"))?
}

fn summary(service: &Service) -> ServiceSummary {
    let lb = &service.active;
    ServiceSummary {
        name: service.name.to_string(),
        hosts: service
            .options
            .hosts
            .iter()
            .map(ToString::to_string)
            .collect(),
        path_prefixes: service
            .options
            .path_prefixes
            .iter()
            .map(ToString::to_string)
            .collect(),
        targets: lb
            .writers()
            .iter()
            .chain(lb.readers())
            .map(|t| t.address().to_string())
            .collect(),
        state: service.pause.status().state.to_string(),
        tls: service.options.tls.is_enabled(),
    }
}

fn saved(service: &Service) -> SavedService {
    let pause = service.pause.status();
    let addresses = |targets: &[Arc<crate::service::target::Target>]| {
        targets
            .iter()
            .map(|t| t.address().clone())
            .collect::<Vec<_>>()
    };
    SavedService {
        name: service.name.clone(),
        service_options: service.options.clone(),
        target_options: service.target_options.clone(),
        active_targets: addresses(service.active.writers()),
        active_readers: addresses(service.active.readers()),
        rollout_targets: service
            .rollout
            .as_ref()
            .map_or_else(Vec::new, |lb| addresses(lb.writers())),
        rollout_readers: service
            .rollout
            .as_ref()
            .map_or_else(Vec::new, |lb| addresses(lb.readers())),
        pause: SavedPause {
            state: pause.state,
            stop_message: pause.stop_message,
            fail_after: pause.fail_after,
        },
        rollout: service
            .rollout_controller
            .as_ref()
            .map(|controller| SavedRollout {
                percentage: controller.percentage(),
                split_point: controller.split_point(),
                allowlist: controller.allowlist().to_vec(),
            }),
    }
}

/// The service as it is, with `change` applied; `service not found` when it is gone.
fn existing_with(
    existing: Option<&Arc<Service>>,
    change: impl FnOnce(&mut Service),
) -> Result<Option<Arc<Service>>, ControlError> {
    let mut service = Service::clone(existing.ok_or_else(ControlError::service_not_found)?);
    change(&mut service);
    Ok(Some(Arc::new(service)))
}

impl Router {
    pub fn new(
        state_file: StateFile,
        events: EventSender,
        acme: Arc<AcmeManager>,
        resolver: Arc<TargetResolver>,
    ) -> Self {
        Router {
            resolver,
            services: Mutex::new(BTreeMap::new()),
            routes: ArcSwap::from_pointee(RoutingTable::default()),
            deploying: Mutex::new(HashSet::new()),
            copies: Arc::new(FileCopies::new(state_file.directory().join("files"))),
            state_file: Arc::new(state_file),
            save_order: tokio::sync::Mutex::new(()),
            health_client: HealthClient::new(events.clone()),
            events,
            default_tls_host: ArcSwapOption::empty(),
            acme,
        }
    }

    /// A balancer for restored targets: healthy at once, as in Go, and checked from then on
    /// when there is more than one target (a lone one would only turn a 502 into a 503).
    fn restored_balancer(
        &self,
        writers: &[TargetAddress],
        readers: &[TargetAddress],
        config: &HealthCheckConfig,
        service: &ServiceName,
    ) -> Arc<LoadBalancer> {
        let lb = Arc::new(LoadBalancer::new(writers, readers, &self.resolver));
        lb.mark_all_healthy();
        if writers.len() + readers.len() > 1 {
            lb.start_health_checks(&self.health_client, config, service.as_str());
        }
        lb
    }

    /// The host part of every deployed target (active, readers, rollout), for pruning what
    /// is kept about names no target has any more.
    pub fn target_hosts(&self) -> HashSet<String> {
        lock(&self.services)
            .values()
            .flat_map(|service| service.load_balancers())
            .flat_map(|lb| lb.writers().iter().chain(lb.readers()))
            .map(|target| target.address().host().to_string())
            .collect()
    }

    /// Fails at once, naming the target and why, when a target has no address anyone can
    /// find: waiting out the deploy timeout would only hide the reason.
    async fn check_resolvable(
        &self,
        targets: impl Iterator<Item = &TargetAddress>,
    ) -> Result<(), ControlError> {
        let lookups = targets.map(|target| self.resolver.resolve(target, None));
        for result in futures_util::future::join_all(lookups).await {
            result.map_err(|error| ControlError::TargetUnresolvable(error.to_string()))?;
        }
        Ok(())
    }

    /// The ACME manager: automatic certificates and the challenge answers on offer.
    pub fn acme(&self) -> &Arc<AcmeManager> {
        &self.acme
    }

    /// The host whose certificate a handshake without SNI gets.
    pub fn default_tls_host(&self) -> Option<Arc<Host>> {
        self.default_tls_host.load_full()
    }

    /// Where each of the service's automatic certificates stands: (host, state, detail).
    pub fn certificate_status(
        &self,
        name: &ServiceName,
    ) -> Result<Vec<(String, String, String)>, ControlError> {
        let service = self.service(name)?;
        if !matches!(service.options.tls, options::TlsMode::Acme(_)) {
            return Ok(Vec::new());
        }
        let now = std::time::SystemTime::now();
        Ok(self
            .acme
            .states(&service.name)
            .into_iter()
            .map(|(host, state)| {
                let (state, detail) = state.describe(now);
                (host, state, detail)
            })
            .collect())
    }

    /// Starts or stops automatic certificates for the service as its options say.
    fn manage_certificates(&self, service: &Service) {
        match &service.options.tls {
            options::TlsMode::Acme(acme) => {
                self.acme.watch(&service.name, &service.options.hosts, acme)
            }
            _ => self.acme.unwatch(&service.name),
        }
    }

    fn announce(&self, service: &ServiceName, change: ServiceChange) {
        event::announce(
            &self.events,
            ProxyEvent::ServiceChanged {
                service: service.clone(),
                change,
            },
        );
    }

    /// The current routing table; the data plane's only view of the router.
    pub fn routes(&self) -> arc_swap::Guard<Arc<Routes>> {
        self.routes.load()
    }

    fn service(&self, name: &ServiceName) -> Result<Arc<Service>, ControlError> {
        lock(&self.services)
            .get(name)
            .cloned()
            .ok_or_else(ControlError::service_not_found)
    }

    /// Replaces (or with `None` removes) a service and publishes the new table; returns the
    /// previous service.
    fn install(
        &self,
        name: &ServiceName,
        service: Option<Arc<Service>>,
    ) -> Result<Option<Arc<Service>>, ControlError> {
        self.update(name, |_| Ok(service))
    }

    /// Computes the service's replacement from the current one and publishes it, in one
    /// critical section; returns the previous service.
    fn update(
        &self,
        name: &ServiceName,
        change: impl FnOnce(Option<&Arc<Service>>) -> Result<Option<Arc<Service>>, ControlError>,
    ) -> Result<Option<Arc<Service>>, ControlError> {
        let mut services = lock(&self.services);
        let service = change(services.get(name))?;
        if let Some(service) = &service {
            if let Some(owner) = conflicting_service(&services, name, &service.options) {
                tracing::info!(service = %name, other = %owner, "Host settings conflict with another service");
                return Err(ControlError::host_conflict());
            }
        }
        let previous = match service {
            Some(service) => services.insert(name.clone(), service),
            None => services.remove(name),
        };
        self.publish(&mut services);
        Ok(previous)
    }

    /// Settles TLS across services and publishes the routing table and default TLS host;
    /// called with the service map locked, after every change to it.
    fn publish(&self, services: &mut BTreeMap<ServiceName, Arc<Service>>) {
        settle_tls(services);
        self.default_tls_host
            .store(default_tls_host(services).map(Arc::new));
        self.routes.store(Arc::new(build_routes(services)));
    }

    pub async fn deploy(&self, request: DeployRequest) -> Result<(), ControlError> {
        let DeployRequest {
            service: name,
            targets,
            mut options,
        } = request;
        let sent = SentFiles::take(&mut options, self.copies.plan(&name))?;
        let (service_options, target_options) = options::resolve(&options)?;
        let timings = DeployTimings::resolve(&options);
        let CheckedFiles {
            certificate,
            error_pages,
            plan,
            copies,
        } = sent.check(&service_options)?;
        let certificate = match certificate {
            Some(sent) => Some(sent),
            None => load_certificate(&service_options.tls)
                .await
                .map_err(|e| ControlError::InvalidOptions(e.deploy_message()))?,
        };
        if targets.is_empty() {
            return Err(ControlError::InvalidOptions(
                "at least one target is required".into(),
            ));
        }
        if !lock(&self.deploying).insert(name.clone()) {
            return Err(ControlError::deploy_in_progress(name.as_str()));
        }
        let _deploying = DeployingGuard {
            router: self,
            name: name.clone(),
        };
        let error_pages = match (error_pages, service_options.error_page_path.clone()) {
            (Some(sent), _) => Some(sent),
            (None, None) => None,
            (None, Some(path)) => Some(Arc::new(
                load_error_pages(path)
                    .await
                    .map_err(ControlError::InvalidOptions)?,
            )),
        };
        // Fail fast on a conflict instead of after a long health wait; checked again at the swap.
        if conflicting_service(&lock(&self.services), &name, &service_options).is_some() {
            return Err(ControlError::host_conflict());
        }

        let readers = options.read_targets.clone().unwrap_or_default();
        self.check_resolvable(targets.iter().chain(&readers))
            .await?;
        let target_list: Vec<&str> = targets.iter().map(TargetAddress::as_str).collect();
        tracing::info!(service = %name, hosts = ?service_options.hosts.iter().map(Host::as_str).collect::<Vec<_>>(), targets = ?target_list, "Deploying");
        let active = Arc::new(LoadBalancer::new(&targets, &readers, &self.resolver));
        active.start_health_checks(
            &self.health_client,
            &target_options.health_check,
            name.as_str(),
        );
        if !timings.force && !active.wait_until_healthy(timings.deploy_timeout).await {
            active.stop_health_checks().await;
            return Err(ControlError::target_unhealthy(timings.deploy_timeout));
        }
        let staged = match self.keep_copies(plan, copies).await {
            Ok(staged) => staged,
            Err(error) => {
                active.stop_health_checks().await;
                return Err(error);
            }
        };

        // Pause state and the rollout group survive a deploy, as in Go.
        let installed = self.update(&name, |existing| {
            Ok(Some(Arc::new(Service {
                name: name.clone(),
                tls: TlsPolicy::own(&service_options),
                certificate,
                options: service_options,
                target_options,
                active,
                pause: existing.map_or_else(
                    || Arc::new(PauseController::new(PauseStatus::default())),
                    |e| Arc::clone(&e.pause),
                ),
                error_pages,
                rollout: existing.and_then(|e| e.rollout.clone()),
                rollout_controller: existing.and_then(|e| e.rollout_controller.clone()),
            })))
        });
        let previous = match installed {
            Ok(previous) => previous,
            Err(error) => {
                self.discard_copies(staged).await;
                return Err(error);
            }
        };
        if let Ok(installed) = self.service(&name) {
            self.manage_certificates(&installed);
        }
        self.save().await;
        // Saved (or, if the save failed, still in the table the next save writes): from
        // here the state decides whether the copies stay.
        drop(staged);
        self.announce(&name, ServiceChange::Deployed);
        if let Some(previous) = previous {
            previous.active.stop_health_checks().await;
            previous
                .active
                .drain(timings.drain_timeout, DrainMode::Retire)
                .await;
        }
        tracing::info!(service = %name, targets = ?target_list, "Deployed");
        Ok(())
    }

    /// Writes the copies a deploy uses of the files it sent, off the async runtime; `None`
    /// when it sent none.
    async fn keep_copies(
        &self,
        plan: CopyPlan,
        files: Vec<(PathBuf, FileContents)>,
    ) -> Result<Option<StagedCopies>, ControlError> {
        if files.is_empty() {
            return Ok(None);
        }
        let copies = Arc::clone(&self.copies);
        let written = tokio::task::spawn_blocking(move || copies.write(&plan, &files))
            .await
            .map_err(|e| ControlError::Failed(e.to_string()))?;
        written.map(Some).map_err(|error| {
            ControlError::Failed(format!("unable to keep a copy of the sent files: {error}"))
        })
    }

    /// Removes the copies of a deploy that was refused at the swap; a failure only leaves
    /// them for the next sweep.
    async fn discard_copies(&self, staged: Option<StagedCopies>) {
        let Some(staged) = staged else { return };
        let discarded = tokio::task::spawn_blocking(move || staged.discard()).await;
        if let Ok(Err(error)) = discarded {
            tracing::warn!(error = %error, "Failed to remove the copies of a refused deploy");
        }
    }

    pub async fn remove(&self, name: &ServiceName) -> Result<(), ControlError> {
        let removed = self
            .install(name, None)?
            .ok_or_else(ControlError::service_not_found)?;
        self.acme.unwatch(name);
        self.save().await;
        self.announce(name, ServiceChange::Removed);
        for lb in removed.load_balancers() {
            lb.stop_health_checks().await;
        }
        tracing::info!(service = %name, "Removed service");
        Ok(())
    }

    pub fn list(&self) -> Vec<ServiceSummary> {
        lock(&self.services)
            .values()
            .map(|service| summary(service))
            .collect()
    }

    pub async fn pause(
        &self,
        name: &ServiceName,
        options: PauseOptions,
    ) -> Result<(), ControlError> {
        let service = self.service(name)?;
        service
            .pause
            .pause(options.max_pause.unwrap_or(DEFAULT_MAX_PAUSE));
        self.save().await;
        self.announce(name, ServiceChange::Paused);
        tracing::info!(service = %name, "Service paused");
        self.drain_for_pause(&service, options.drain_timeout).await;
        Ok(())
    }

    pub async fn stop(&self, name: &ServiceName, options: StopOptions) -> Result<(), ControlError> {
        let service = self.service(name)?;
        service.pause.stop(options.message.unwrap_or_default());
        self.save().await;
        self.announce(name, ServiceChange::Stopped);
        tracing::info!(service = %name, "Service stopped");
        self.drain_for_pause(&service, options.drain_timeout).await;
        Ok(())
    }

    async fn drain_for_pause(&self, service: &Service, drain_timeout: Option<std::time::Duration>) {
        let timeout = drain_timeout.unwrap_or(DEFAULT_DRAIN_TIMEOUT);
        let drains = service
            .load_balancers()
            .map(|lb| lb.drain(timeout, DrainMode::Reopen));
        futures_util::future::join_all(drains).await;
        tracing::info!(service = %service.name, "Service drained");
    }

    pub async fn resume(&self, name: &ServiceName) -> Result<(), ControlError> {
        self.service(name)?.pause.resume();
        self.save().await;
        self.announce(name, ServiceChange::Resumed);
        tracing::info!(service = %name, "Service resumed");
        Ok(())
    }

    /// Deploys a rollout group beside the active one: waits for its health with the service's
    /// current options, installs it in the rollout slot and drains the group it replaces.
    pub async fn rollout_deploy(&self, request: RolloutDeployRequest) -> Result<(), ControlError> {
        let RolloutDeployRequest {
            service: name,
            targets,
            options,
        } = request;
        if targets.is_empty() {
            return Err(ControlError::InvalidOptions(
                "at least one target is required".into(),
            ));
        }
        let current = self.service(&name)?;
        // One deploy of a service at a time, rollout or not: two would each drain what the
        // other just installed.
        if !lock(&self.deploying).insert(name.clone()) {
            return Err(ControlError::deploy_in_progress(name.as_str()));
        }
        let _deploying = DeployingGuard {
            router: self,
            name: name.clone(),
        };
        let deploy_timeout = options.deploy_timeout.unwrap_or(DEFAULT_DEPLOY_TIMEOUT);
        let drain_timeout = options.drain_timeout.unwrap_or(DEFAULT_DRAIN_TIMEOUT);
        let readers = options.read_targets.unwrap_or_default();
        self.check_resolvable(targets.iter().chain(&readers))
            .await?;
        let target_list: Vec<&str> = targets.iter().map(TargetAddress::as_str).collect();
        tracing::info!(service = %name, targets = ?target_list, "Deploying for rollout");
        let rollout = Arc::new(LoadBalancer::new(&targets, &readers, &self.resolver));
        rollout.start_health_checks(
            &self.health_client,
            &current.target_options.health_check,
            name.as_str(),
        );
        drop(current);
        if !rollout.wait_until_healthy(deploy_timeout).await {
            rollout.stop_health_checks().await;
            return Err(ControlError::target_unhealthy(deploy_timeout));
        }
        let installed = self.update(&name, |existing| {
            existing_with(existing, |service| {
                service.rollout = Some(Arc::clone(&rollout));
            })
        });
        let previous = match installed {
            Ok(previous) => previous,
            Err(error) => {
                rollout.stop_health_checks().await;
                return Err(error);
            }
        };
        self.save().await;
        if let Some(replaced) = previous.and_then(|service| service.rollout.clone()) {
            replaced.stop_health_checks().await;
            replaced.drain(drain_timeout, DrainMode::Retire).await;
        }
        tracing::info!(service = %name, targets = ?target_list, "Deployed for rollout");
        self.announce(&name, ServiceChange::RolloutDeployed);
        Ok(())
    }

    /// Sets which requests the rollout group takes; needs a rollout deployment.
    pub async fn rollout_set(
        &self,
        name: &ServiceName,
        options: RolloutSetOptions,
    ) -> Result<(), ControlError> {
        let controller = RolloutController::from_options(options)?;
        let (percentage, allowlist) = (controller.percentage(), controller.allowlist().to_vec());
        self.update(name, |existing| {
            if existing.is_some_and(|service| service.rollout.is_none()) {
                return Err(ControlError::rollout_not_set());
            }
            existing_with(existing, |service| {
                service.rollout_controller = Some(controller);
            })
        })?;
        self.save().await;
        tracing::info!(service = %name, percentage, allowlist = ?allowlist, "Set rollout split");
        self.announce(name, ServiceChange::RolloutSet);
        Ok(())
    }

    /// Sends every request to the active group again; the rollout group stays deployed.
    pub async fn rollout_stop(&self, name: &ServiceName) -> Result<(), ControlError> {
        self.update(name, |existing| {
            existing_with(existing, |service| service.rollout_controller = None)
        })?;
        self.save().await;
        tracing::info!(service = %name, "Stopped rollout");
        self.announce(name, ServiceChange::RolloutStopped);
        Ok(())
    }

    /// Writes the whole table, then sweeps the file copies it no longer names; see the
    /// module doc for why failure is logged, not returned.
    async fn save(&self) {
        let _order = self.save_order.lock().await;
        let snapshot: Vec<SavedService> = lock(&self.services)
            .values()
            .map(|service| saved(service))
            .collect();
        let file = Arc::clone(&self.state_file);
        let copies = Arc::clone(&self.copies);
        // Sweeping only after a successful save: until then the file on disk may still name
        // copies the table in memory has replaced.
        let result = tokio::task::spawn_blocking(move || {
            file.save(&snapshot)?;
            Ok::<_, StateError>(
                copies.sweep(snapshot.iter().flat_map(SavedService::referenced_files)),
            )
        })
        .await;
        match result {
            Ok(Ok(sweep_failures)) => {
                tracing::debug!(path = %self.state_file.path().display(), "Saved state");
                for error in sweep_failures {
                    tracing::warn!(error = %error, "Failed to remove file copies no longer in use");
                }
            }
            Ok(Err(error)) => {
                tracing::error!(error = %error, "Failed to save state; routes will not survive a restart")
            }
            Err(error) => {
                tracing::error!(error = %error, "Failed to save state; routes will not survive a restart")
            }
        }
    }

    /// Restores the saved table at start-up, service by service: one that cannot be restored
    /// is logged and skipped, the others serve (Go drops them all, its issue #233).
    pub async fn restore(&self) {
        let (services, skipped) = match self.state_file.load() {
            LoadOutcome::Missing => {
                tracing::info!(path = %self.state_file.path().display(), "No previous state to restore");
                return;
            }
            LoadOutcome::Unreadable { error, moved_to } => {
                tracing::error!(path = %self.state_file.path().display(), error = %error, moved_to = ?moved_to, "Failed to decode saved state");
                return;
            }
            LoadOutcome::Loaded { services, skipped } => (services, skipped),
        };
        for skip in skipped {
            tracing::error!(service = %skip.name, error = %skip.reason, "Failed to restore service");
        }
        let mut restored = Vec::with_capacity(services.len());
        for saved in services {
            let name = saved.name.clone();
            let check = &saved.target_options.health_check;
            let active =
                self.restored_balancer(&saved.active_targets, &saved.active_readers, check, &name);
            let has_rollout =
                !(saved.rollout_targets.is_empty() && saved.rollout_readers.is_empty());
            let rollout = has_rollout.then(|| {
                self.restored_balancer(&saved.rollout_targets, &saved.rollout_readers, check, &name)
            });
            // A split without a rollout group has nothing to send traffic to. The split point
            // is recomputed, so a hand-edited file cannot disagree with its own percentage.
            let rollout_controller = saved
                .rollout
                .filter(|_| has_rollout)
                .map(|split| RolloutController::new(split.percentage, split.allowlist));
            let pause = PauseStatus {
                state: saved.pause.state,
                stop_message: saved.pause.stop_message,
                fail_after: saved.pause.fail_after,
            };
            // Built-in pages rather than a dropped service when the directory went missing.
            let error_pages = match saved.service_options.error_page_path.clone() {
                None => None,
                Some(path) => match load_error_pages(path).await {
                    Ok(pages) => Some(Arc::new(pages)),
                    Err(error) => {
                        tracing::error!(service = %name, error = %error, "Failed to restore error pages; using the built-in ones");
                        None
                    }
                },
            };
            // A certificate file gone or broken turns off TLS for this service only.
            let (certificate, tls) = match load_certificate(&saved.service_options.tls).await {
                Ok(certificate) => (certificate, TlsPolicy::own(&saved.service_options)),
                Err(error) => {
                    tracing::error!(service = %name, error = %error.deploy_message(), "Failed to restore TLS certificate; serving without TLS");
                    (None, TlsPolicy::disabled(&saved.service_options))
                }
            };
            let service = Arc::new(Service {
                name: name.clone(),
                tls,
                certificate,
                options: saved.service_options,
                target_options: saved.target_options,
                active,
                pause: Arc::new(PauseController::new(pause)),
                error_pages,
                rollout,
                rollout_controller,
            });
            restored.push(service);
        }
        let installed = self.install_restored(restored);
        for service in &installed {
            self.manage_certificates(service);
        }
        let count = installed.len();
        tracing::info!(path = %self.state_file.path().display(), services = count, "Restored saved state");
    }

    /// Installs restored services in one pass and publishes the table once, so start-up stays
    /// linear in the number of services; one whose bindings another already holds is skipped.
    fn install_restored(&self, restored: Vec<Arc<Service>>) -> Vec<Arc<Service>> {
        let mut services = lock(&self.services);
        let mut owners: HashMap<BindingKey, ServiceName> = services
            .values()
            .flat_map(|s| {
                bindings(&s.options)
                    .into_iter()
                    .map(|key| (key, s.name.clone()))
            })
            .collect();
        let mut installed = Vec::with_capacity(restored.len());
        for service in restored {
            let keys = bindings(&service.options);
            if let Some(owner) = keys.iter().find_map(|key| owners.get(key)) {
                tracing::error!(service = %service.name, other = %owner, error = %ControlError::host_conflict().message(), "Failed to restore service");
                continue;
            }
            owners.extend(keys.into_iter().map(|key| (key, service.name.clone())));
            services.insert(service.name.clone(), Arc::clone(&service));
            installed.push(service);
        }
        self.publish(&mut services);
        installed
    }

    /// Stops every health check; used at shutdown.
    pub async fn shutdown(&self) {
        self.acme.close().await;
        let services: Vec<Arc<Service>> = lock(&self.services).values().cloned().collect();
        for service in services {
            for lb in service.load_balancers() {
                lb.stop_health_checks().await;
            }
        }
    }
}

// --- systemd status (issue 5): counts for the daemon's `STATUS=` line ---

/// How many services and targets there are, and how many targets are healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HealthCounts {
    pub services: usize,
    pub targets: usize,
    pub healthy_targets: usize,
}

impl Router {
    /// A short lock over the service map; cheap enough to call every second.
    pub fn health_counts(&self) -> HealthCounts {
        let services = lock(&self.services);
        let mut counts = HealthCounts {
            services: services.len(),
            ..HealthCounts::default()
        };
        for service in services.values() {
            for target in service
                .active
                .writers()
                .iter()
                .chain(service.active.readers())
            {
                counts.targets += 1;
                if target.state() == crate::service::target_state::TargetState::Healthy {
                    counts.healthy_targets += 1;
                }
            }
        }
        counts
    }
}
