//! `ControlError`: every way a control call can fail, with its D-Bus error name.
//!
//! One enum for the whole control boundary so that clients branch on the error *name*
//! (`org.kamal.Proxy1.Error.HostConflict`) and show the *text*, which is the Go proxy's
//! where one exists because operators and scripts already know those messages.

use std::time::Duration;

use crate::go_duration;

#[derive(Debug, Clone, PartialEq, zbus::DBusError)]
#[zbus(prefix = "org.kamal.Proxy1.Error")]
pub enum ControlError {
    #[zbus(error)]
    ZBus(zbus::Error),
    /// No service by that name.
    ServiceNotFound(String),
    /// A (host, path prefix) pair is owned by another service.
    HostConflict(String),
    /// The options are well-typed but their values or combination are wrong.
    InvalidOptions(String),
    /// An option key is unknown or its value has the wrong D-Bus type.
    InvalidArgs(String),
    /// The new targets did not become healthy within the deploy timeout.
    TargetUnhealthy(String),
    /// Neither the host nor the attached Kamal container can resolve a target's name.
    TargetUnresolvable(String),
    /// Another kamal-proxy container is attached to the daemon already.
    AlreadyAttached(String),
    /// A rollout command needs a rollout deployment first.
    RolloutNotSet(String),
    /// The deploy lock is held by someone else.
    Locked(String),
    /// Another deploy of the same service is still running.
    DeployInProgress(String),
    /// Anything else; the text says what.
    Failed(String),
}

impl ControlError {
    pub fn service_not_found() -> Self {
        ControlError::ServiceNotFound("service not found".to_string())
    }

    pub fn host_conflict() -> Self {
        ControlError::HostConflict("host settings conflict with another service".to_string())
    }

    pub fn target_unhealthy(deploy_timeout: Duration) -> Self {
        ControlError::TargetUnhealthy(format!(
            "target failed to become healthy within configured timeout ({})",
            go_duration::format(deploy_timeout)
        ))
    }

    pub fn rollout_not_set() -> Self {
        ControlError::RolloutNotSet("rollout target not set".to_string())
    }

    pub fn deploy_in_progress(service: &str) -> Self {
        ControlError::DeployInProgress(format!(
            "a deploy of service \"{service}\" is already in progress; wait for it to finish"
        ))
    }

    /// Go's validation messages all carry this prefix.
    pub fn invalid_service_options(detail: impl std::fmt::Display) -> Self {
        ControlError::InvalidOptions(format!("service options invalid: {detail}"))
    }

    /// The text a user sees after `Error: `.
    pub fn message(&self) -> String {
        match self {
            ControlError::ZBus(error) => error.to_string(),
            ControlError::ServiceNotFound(text)
            | ControlError::HostConflict(text)
            | ControlError::InvalidOptions(text)
            | ControlError::InvalidArgs(text)
            | ControlError::TargetUnhealthy(text)
            | ControlError::TargetUnresolvable(text)
            | ControlError::AlreadyAttached(text)
            | ControlError::RolloutNotSet(text)
            | ControlError::Locked(text)
            | ControlError::DeployInProgress(text)
            | ControlError::Failed(text) => text.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zbus::DBusError;

    #[test]
    fn names_errors_under_our_prefix_with_go_text() {
        let error = ControlError::target_unhealthy(Duration::from_secs(30));
        assert_eq!(
            error.name().as_str(),
            "org.kamal.Proxy1.Error.TargetUnhealthy"
        );
        assert_eq!(
            error.message(),
            "target failed to become healthy within configured timeout (30s)"
        );
        assert_eq!(
            ControlError::host_conflict().name().as_str(),
            "org.kamal.Proxy1.Error.HostConflict"
        );
    }
}
