//! `ProxyInterface`: `org.kamal.Proxy1` as the daemon serves it.
//!
//! A thin adapter: decode the arguments into the typed requests, call the `Router`, map
//! the error. Each call runs in its own task (zbus's default), so a `Deploy` blocked on
//! health checks never delays `List` or a deploy of another service.

use std::sync::Arc;

use super::{
    ControlError, DeployOptions, OptionDict, PauseOptions, RolloutDeployOptions, RolloutSetOptions,
    ServiceName, ServiceSummary, StopOptions, TargetAddress,
};
use crate::router::{DeployRequest, RolloutDeployRequest, Router};

pub struct ProxyInterface {
    router: Arc<Router>,
}

impl ProxyInterface {
    pub fn new(router: Arc<Router>) -> Self {
        ProxyInterface { router }
    }
}

fn service_name(text: &str) -> Result<ServiceName, ControlError> {
    ServiceName::parse(text).map_err(ControlError::InvalidOptions)
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
        self.router.deploy(request).await
    }

    /// Removes the service at once (no drain).
    async fn remove(&self, service: String) -> Result<(), ControlError> {
        self.router.remove(&service_name(&service)?).await
    }

    /// Every service: name, hosts, path prefixes, targets, state, TLS.
    async fn list(&self) -> Vec<ServiceSummary> {
        self.router.list()
    }

    /// Holds new requests (up to `max_pause_usec`) and drains the ones in flight.
    async fn pause(&self, service: String, options: OptionDict) -> Result<(), ControlError> {
        let options = PauseOptions::from_dict(options)?;
        self.router.pause(&service_name(&service)?, options).await
    }

    /// Maintenance mode: new requests get 503 with `message`; in-flight ones drain.
    async fn stop(&self, service: String, options: OptionDict) -> Result<(), ControlError> {
        let options = StopOptions::from_dict(options)?;
        self.router.stop(&service_name(&service)?, options).await
    }

    /// Undoes `Pause` and `Stop`.
    async fn resume(&self, service: String) -> Result<(), ControlError> {
        self.router.resume(&service_name(&service)?).await
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
        self.router.rollout_deploy(request).await
    }

    /// Sends the requests whose `kamal-rollout` cookie is in `allowlist`, or hashes into the
    /// first `percent` of the hash space, to the rollout group.
    async fn rollout_set(&self, service: String, options: OptionDict) -> Result<(), ControlError> {
        let options = RolloutSetOptions::from_dict(options)?;
        self.router
            .rollout_set(&service_name(&service)?, options)
            .await
    }

    /// Sends every request to the active group again; the rollout group stays deployed.
    async fn rollout_stop(&self, service: String) -> Result<(), ControlError> {
        self.router.rollout_stop(&service_name(&service)?).await
    }

    #[zbus(property)]
    async fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").to_string()
    }
}
