//! `Router`: the typed control API (`deploy`, `remove`, `pause`, ...) and the owner of every
//! service.
//!
//! Slow work stays unlocked, as in Go's `router.go`: a deploy waits for health and drains
//! the old targets outside any lock; only the swap of the service map and routing table
//! takes the (std, never held across `.await`) mutex. The data plane reads the routing
//! table through `ArcSwap` and never waits for a deploy. Every change is saved before the
//! call returns; a save failure is logged loudly but does not fail the call, because the
//! traffic switch has already happened and reporting failure would make Kamal stop the
//! container that is now serving.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;

use crate::control::{
    ControlError, DeployOptions, Host, PathPrefix, PauseOptions, ServiceName, ServiceSummary,
    StopOptions, TargetAddress,
};
use crate::routing::RoutingTable;
use crate::service::error_pages::ErrorPages;
use crate::service::health_check::HealthClient;
use crate::service::load_balancer::LoadBalancer;
use crate::service::options::{self, DeployTimings, DEFAULT_DRAIN_TIMEOUT};
use crate::service::pause_controller::{PauseController, PauseStatus, DEFAULT_MAX_PAUSE};
use crate::service::target::DrainMode;
use crate::service::Service;
use crate::state::{LoadOutcome, SavedPause, SavedService, StateFile};

pub type Routes = RoutingTable<Arc<Service>>;

/// A `Deploy` call: which service, which writer targets, and what the caller set.
#[derive(Debug, Clone)]
pub struct DeployRequest {
    pub service: ServiceName,
    pub targets: Vec<TargetAddress>,
    pub options: DeployOptions,
}

pub struct Router {
    /// Short critical sections only (swap, list, snapshot for saving).
    services: Mutex<BTreeMap<ServiceName, Arc<Service>>>,
    routes: ArcSwap<Routes>,
    /// Services with a deploy in flight; a second deploy of one is refused, not raced.
    deploying: Mutex<HashSet<ServiceName>>,
    state_file: Arc<StateFile>,
    /// Orders saves so that an older snapshot never overwrites a newer one.
    save_order: tokio::sync::Mutex<()>,
    health_client: HealthClient,
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
        rollout_targets: Vec::new(),
        rollout_readers: Vec::new(),
        pause: SavedPause {
            state: pause.state,
            stop_message: pause.stop_message,
            fail_after: pause.fail_after,
        },
        rollout: None,
    }
}

impl Router {
    pub fn new(state_file: StateFile) -> Self {
        Router {
            services: Mutex::new(BTreeMap::new()),
            routes: ArcSwap::from_pointee(RoutingTable::default()),
            deploying: Mutex::new(HashSet::new()),
            state_file: Arc::new(state_file),
            save_order: tokio::sync::Mutex::new(()),
            health_client: HealthClient::default(),
        }
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
        let mut services = lock(&self.services);
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
        self.routes.store(Arc::new(build_routes(&services)));
        Ok(previous)
    }

    pub async fn deploy(&self, request: DeployRequest) -> Result<(), ControlError> {
        let DeployRequest {
            service: name,
            targets,
            options,
        } = request;
        let (service_options, target_options) = options::resolve(&options)?;
        let timings = DeployTimings::resolve(&options);
        if service_options.tls.is_enabled() {
            // Serving a TLS service over plain HTTP would silently drop the protection asked for.
            return Err(ControlError::InvalidOptions(
                "TLS is not available in this build yet: there is no HTTPS listener; deploy without --tls".into(),
            ));
        }
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
        let error_pages = match service_options.error_page_path.clone() {
            None => None,
            Some(path) => Some(Arc::new(
                load_error_pages(path)
                    .await
                    .map_err(ControlError::InvalidOptions)?,
            )),
        };
        // Fail fast on a conflict instead of after a long health wait; checked again at the swap.
        if conflicting_service(&lock(&self.services), &name, &service_options).is_some() {
            return Err(ControlError::host_conflict());
        }

        let target_list: Vec<&str> = targets.iter().map(TargetAddress::as_str).collect();
        tracing::info!(service = %name, hosts = ?service_options.hosts.iter().map(Host::as_str).collect::<Vec<_>>(), targets = ?target_list, "Deploying");
        let readers = options.read_targets.clone().unwrap_or_default();
        let active = Arc::new(LoadBalancer::new(&targets, &readers));
        active.start_health_checks(
            &self.health_client,
            &target_options.health_check,
            name.as_str(),
        );
        if !timings.force && !active.wait_until_healthy(timings.deploy_timeout).await {
            active.stop_health_checks().await;
            return Err(ControlError::target_unhealthy(timings.deploy_timeout));
        }

        let pause = lock(&self.services)
            .get(&name)
            .map(|existing| Arc::clone(&existing.pause))
            .unwrap_or_else(|| Arc::new(PauseController::new(PauseStatus::default())));
        let service = Arc::new(Service {
            name: name.clone(),
            options: service_options,
            target_options,
            active,
            pause,
            error_pages,
        });
        let previous = self.install(&name, Some(service))?;
        self.save().await;
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

    pub async fn remove(&self, name: &ServiceName) -> Result<(), ControlError> {
        let removed = self
            .install(name, None)?
            .ok_or_else(ControlError::service_not_found)?;
        self.save().await;
        removed.active.stop_health_checks().await;
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
        tracing::info!(service = %name, "Service paused");
        self.drain_for_pause(&service, options.drain_timeout).await;
        Ok(())
    }

    pub async fn stop(&self, name: &ServiceName, options: StopOptions) -> Result<(), ControlError> {
        let service = self.service(name)?;
        service.pause.stop(options.message.unwrap_or_default());
        self.save().await;
        tracing::info!(service = %name, "Service stopped");
        self.drain_for_pause(&service, options.drain_timeout).await;
        Ok(())
    }

    async fn drain_for_pause(&self, service: &Service, drain_timeout: Option<std::time::Duration>) {
        service
            .active
            .drain(
                drain_timeout.unwrap_or(DEFAULT_DRAIN_TIMEOUT),
                DrainMode::Reopen,
            )
            .await;
        tracing::info!(service = %service.name, "Service drained");
    }

    pub async fn resume(&self, name: &ServiceName) -> Result<(), ControlError> {
        self.service(name)?.pause.resume();
        self.save().await;
        tracing::info!(service = %name, "Service resumed");
        Ok(())
    }

    /// Writes the whole table; see the module doc for why failure is logged, not returned.
    async fn save(&self) {
        let _order = self.save_order.lock().await;
        let snapshot: Vec<SavedService> = lock(&self.services)
            .values()
            .map(|service| saved(service))
            .collect();
        let file = Arc::clone(&self.state_file);
        let result = tokio::task::spawn_blocking(move || file.save(&snapshot)).await;
        match result {
            Ok(Ok(())) => tracing::debug!(path = %self.state_file.path().display(), "Saved state"),
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
        let mut restored = 0;
        for saved in services {
            let name = saved.name.clone();
            let active = Arc::new(LoadBalancer::new(
                &saved.active_targets,
                &saved.active_readers,
            ));
            active.mark_all_healthy();
            if saved.active_targets.len() + saved.active_readers.len() > 1 {
                active.start_health_checks(
                    &self.health_client,
                    &saved.target_options.health_check,
                    name.as_str(),
                );
            }
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
            let service = Arc::new(Service {
                name: name.clone(),
                options: saved.service_options,
                target_options: saved.target_options,
                active,
                pause: Arc::new(PauseController::new(pause)),
                error_pages,
            });
            match self.install(&name, Some(service)) {
                Ok(_) => restored += 1,
                Err(error) => {
                    tracing::error!(service = %name, error = %error.message(), "Failed to restore service")
                }
            }
        }
        tracing::info!(path = %self.state_file.path().display(), services = restored, "Restored saved state");
    }

    /// Stops every health check; used at shutdown.
    pub async fn shutdown(&self) {
        let services: Vec<Arc<Service>> = lock(&self.services).values().cloned().collect();
        for service in services {
            service.active.stop_health_checks().await;
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
