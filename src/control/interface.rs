//! `ProxyInterface`: `org.kamal.Proxy1` as the daemon serves it.
//!
//! A thin adapter: decode the arguments into the typed requests, call the `Router`, map
//! the error. Each call runs in its own task (zbus's default), so a `Deploy` blocked on
//! health checks never delays `List` or a deploy of another service. The signals are
//! declared here and emitted by `server.rs`, which relays the domain's `ProxyEvent`s.

use std::sync::Arc;

use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::zvariant::OwnedFd;

use super::attachment::Attachments;
use super::{
    caller, AttachOptions, ControlError, DeployOptions, OptionDict, PauseOptions,
    RolloutDeployOptions, RolloutSetOptions, ServiceName, ServiceSummary, StopOptions,
    TargetAddress,
};
use crate::lock::{DeployLocks, LockError};
use crate::router::{DeployRequest, RolloutDeployRequest, Router};

/// The domain objects the interface adapts; cloned into each connection's interface.
#[derive(Clone)]
pub struct ControlApi {
    pub router: Arc<Router>,
    pub locks: Arc<DeployLocks>,
    pub attachments: Arc<Attachments>,
}

pub struct ProxyInterface {
    api: ControlApi,
}

impl ProxyInterface {
    pub fn new(api: ControlApi) -> Self {
        ProxyInterface { api }
    }
}

fn service_name(text: &str) -> Result<ServiceName, ControlError> {
    ServiceName::parse(text).map_err(ControlError::InvalidOptions)
}

/// A lock scope: `""` (the host) or a service name, which need not be deployed yet.
fn lock_scope(text: &str) -> Result<String, ControlError> {
    if text.is_empty() {
        return Ok(String::new());
    }
    service_name(text).map(|name| name.as_str().to_string())
}

impl From<LockError> for ControlError {
    fn from(error: LockError) -> Self {
        match error {
            LockError::Held { .. } => ControlError::Locked(error.to_string()),
            LockError::InvalidMessage(_) => ControlError::InvalidOptions(error.to_string()),
            LockError::Save(_) => ControlError::Failed(error.to_string()),
        }
    }
}

fn target_addresses(targets: &[String]) -> Result<Vec<TargetAddress>, ControlError> {
    targets
        .iter()
        .map(|t| TargetAddress::parse(t))
        .collect::<Result<Vec<_>, _>>()
        .map_err(ControlError::InvalidOptions)
}

#[zbus::interface(name = "org.kamal.Proxy1")]
impl ProxyInterface {
    /// Deploys `targets` as the service's writers; returns once they are healthy, traffic has
    /// switched, and the previous targets have drained.
    async fn deploy(
        &self,
        service: String,
        targets: Vec<String>,
        options: OptionDict,
    ) -> Result<(), ControlError> {
        let request = DeployRequest {
            service: service_name(&service)?,
            targets: target_addresses(&targets)?,
            options: DeployOptions::from_dict(options)?,
        };
        self.api.router.deploy(request).await
    }

    /// Removes the service at once (no drain).
    async fn remove(&self, service: String) -> Result<(), ControlError> {
        self.api.router.remove(&service_name(&service)?).await
    }

    /// Every service: name, hosts, path prefixes, targets, state, TLS.
    async fn list(&self) -> Vec<ServiceSummary> {
        self.api.router.list()
    }

    /// The service's automatic (ACME) certificates, one `(host, state, detail)` per host:
    /// state `pending`, `valid` (detail: expiry) or `failed` (detail: the CA's reason and the
    /// next attempt). Empty for services without automatic TLS.
    async fn certificate_status(
        &self,
        service: String,
    ) -> Result<Vec<(String, String, String)>, ControlError> {
        self.api.router.certificate_status(&service_name(&service)?)
    }

    /// Holds new requests (up to `max_pause_usec`) and drains the ones in flight.
    async fn pause(&self, service: String, options: OptionDict) -> Result<(), ControlError> {
        let options = PauseOptions::from_dict(options)?;
        self.api
            .router
            .pause(&service_name(&service)?, options)
            .await
    }

    /// Maintenance mode: new requests get 503 with `message`; in-flight ones drain.
    async fn stop(&self, service: String, options: OptionDict) -> Result<(), ControlError> {
        let options = StopOptions::from_dict(options)?;
        self.api
            .router
            .stop(&service_name(&service)?, options)
            .await
    }

    /// Undoes `Pause` and `Stop`.
    async fn resume(&self, service: String) -> Result<(), ControlError> {
        self.api.router.resume(&service_name(&service)?).await
    }

    /// Takes the deploy lock of `scope` (a service, or "" for the host) for the calling
    /// user; fails with `Locked`, naming holder, time and message, if it is held.
    async fn acquire_lock(
        &self,
        scope: String,
        message: String,
        #[zbus(connection)] connection: &zbus::Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), ControlError> {
        let scope = lock_scope(&scope)?;
        let holder = caller::user(connection, &header).await?;
        let lock = self
            .api
            .locks
            .acquire(scope.clone(), holder, message)
            .await?;
        tracing::info!(scope = %scope, holder = %lock.holder, reason = %lock.message, "Deploy lock acquired");
        Ok(())
    }

    /// Frees the deploy lock of `scope`, whoever holds it (as `kamal lock release`).
    async fn release_lock(
        &self,
        scope: String,
        #[zbus(connection)] connection: &zbus::Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), ControlError> {
        let scope = lock_scope(&scope)?;
        let caller = caller::user(connection, &header).await?;
        if let Some(released) = self.api.locks.release(scope.clone()).await? {
            tracing::info!(scope = %scope, released_by = %caller, holder = %released.holder, reason = %released.message, "Deploy lock released");
        }
        Ok(())
    }

    /// Whether the deploy lock of `scope` is held, by whom, why, and since when (µs since
    /// the Unix epoch; 0 when free).
    async fn lock_status(
        &self,
        scope: String,
    ) -> Result<(bool, String, String, u64), ControlError> {
        let scope = lock_scope(&scope)?;
        Ok(match self.api.locks.status(&scope) {
            Some(lock) => (true, lock.holder, lock.message, lock.since_usec),
            None => (false, String::new(), String::new(), 0),
        })
    }

    /// Deploys `targets` as the service's rollout group, with the service's current options;
    /// returns once they are healthy and the rollout group they replace has drained.
    async fn rollout_deploy(
        &self,
        service: String,
        targets: Vec<String>,
        options: OptionDict,
    ) -> Result<(), ControlError> {
        let request = RolloutDeployRequest {
            service: service_name(&service)?,
            targets: target_addresses(&targets)?,
            options: RolloutDeployOptions::from_dict(options)?,
        };
        self.api.router.rollout_deploy(request).await
    }

    /// Sends the requests whose `kamal-rollout` cookie is in `allowlist`, or hashes into the
    /// first `percent` of the hash space, to the rollout group.
    async fn rollout_set(&self, service: String, options: OptionDict) -> Result<(), ControlError> {
        let options = RolloutSetOptions::from_dict(options)?;
        self.api
            .router
            .rollout_set(&service_name(&service)?, options)
            .await
    }

    /// Sends every request to the active group again; the rollout group stays deployed.
    async fn rollout_stop(&self, service: String) -> Result<(), ControlError> {
        self.api.router.rollout_stop(&service_name(&service)?).await
    }

    /// Attaches the calling kamal-proxy container (the image Kamal boots): the daemon
    /// writes its log, as JSON lines, into `log_pipe`, and resolves target names the host
    /// does not know through the `org.kamal.Proxy1.Resolver` object the caller serves at
    /// `/org/kamal/Proxy1/Resolver`, until the caller's connection ends. Control socket
    /// only; refused with `AlreadyAttached` while another container is attached.
    async fn attach(
        &self,
        log_pipe: OwnedFd,
        options: OptionDict,
        #[zbus(connection)] connection: &zbus::Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), ControlError> {
        let options = AttachOptions::from_dict(options)?;
        if header.sender().is_some() {
            return Err(ControlError::InvalidArgs(
                "Attach is served on the control socket only, not on a message bus".into(),
            ));
        }
        let container = options.container.unwrap_or_else(|| "unnamed".into());
        self.api
            .attachments
            .attach(connection, container, log_pipe.into())
            .await
    }

    #[zbus(property)]
    async fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").to_string()
    }

    /// `event` (deployed, removed, paused, stopped, resumed) happened to `service`.
    #[zbus(signal)]
    pub async fn service_changed(
        emitter: &SignalEmitter<'_>,
        service: &str,
        event: &str,
    ) -> zbus::Result<()>;

    /// A health check moved `target` of `service` to `state` (adding, healthy, unhealthy).
    #[zbus(signal)]
    pub async fn target_health_changed(
        emitter: &SignalEmitter<'_>,
        service: &str,
        target: &str,
        state: &str,
    ) -> zbus::Result<()>;
}
