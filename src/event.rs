//! `ProxyEvent`: what changed in the proxy, told to whoever listens (the D-Bus signals).
//!
//! The domain (router, health checks) announces changes on a `tokio::sync::broadcast`
//! channel handed to it at construction, and never learns who listens: `control/server.rs`
//! turns each event into a D-Bus signal on every connection. Sending never blocks and never
//! fails the change it reports; a listener that falls behind loses the oldest events.

use std::fmt;

use tokio::sync::broadcast;

use crate::control::{ServiceName, TargetAddress};
use crate::service::target_state::TargetState;

/// How many events a slow listener may fall behind before it loses some.
const CAPACITY: usize = 256;

/// The sending half the domain holds; cheap to clone.
pub type EventSender = broadcast::Sender<ProxyEvent>;

/// A channel with no listener yet; listeners call `subscribe` on the sender.
pub fn channel() -> EventSender {
    broadcast::channel(CAPACITY).0
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyEvent {
    ServiceChanged {
        service: ServiceName,
        change: ServiceChange,
    },
    TargetHealthChanged {
        /// As the health check knows it (the name of an already deployed service).
        service: String,
        target: TargetAddress,
        state: TargetState,
    },
}

/// What happened to a service; `Display` is the signal's `event` string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceChange {
    Deployed,
    Removed,
    Paused,
    Stopped,
    Resumed,
    RolloutDeployed,
    RolloutSet,
    RolloutStopped,
}

impl fmt::Display for ServiceChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServiceChange::Deployed => "deployed",
            ServiceChange::Removed => "removed",
            ServiceChange::Paused => "paused",
            ServiceChange::Stopped => "stopped",
            ServiceChange::Resumed => "resumed",
            ServiceChange::RolloutDeployed => "rollout-deployed",
            ServiceChange::RolloutSet => "rollout-set",
            ServiceChange::RolloutStopped => "rollout-stopped",
        })
    }
}

/// Announces `event`; having no listener (no control connection yet) is normal.
pub fn announce(events: &EventSender, event: ProxyEvent) {
    let _ = events.send(event);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivers_events_to_every_subscriber_and_ignores_having_none() {
        let events = channel();
        let service = ServiceName::parse("web").unwrap();
        let change = ProxyEvent::ServiceChanged {
            service,
            change: ServiceChange::Deployed,
        };
        announce(&events, change.clone());
        let mut first = events.subscribe();
        let mut second = events.subscribe();
        announce(&events, change.clone());
        assert_eq!(first.try_recv().unwrap(), change);
        assert_eq!(second.try_recv().unwrap(), change);
    }

    #[test]
    fn names_service_changes_as_the_signal_does() {
        let names: Vec<String> = [
            ServiceChange::Deployed,
            ServiceChange::Removed,
            ServiceChange::Paused,
            ServiceChange::Stopped,
            ServiceChange::Resumed,
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(
            names,
            ["deployed", "removed", "paused", "stopped", "resumed"]
        );
    }
}
