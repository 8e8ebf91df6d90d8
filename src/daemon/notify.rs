//! Talking to the service manager (`sd_notify(3)`): `READY=1` once state is restored and
//! every listener serves, `STATUS=` kept current, `WATCHDOG=1` while the runtime is alive,
//! `STOPPING=1` when shutdown begins. Outside systemd (`NOTIFY_SOCKET` unset) every call is
//! a no-op.
//!
//! The watchdog is fed from a task on the main runtime that also reads the router's health
//! counts: if the runtime stalls or the service map's lock is stuck, the pings stop and
//! systemd restarts the daemon (`Restart=on-failure`), which is the point of `WatchdogSec=`.

use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

use crate::router::{HealthCounts, Router};

/// How often `STATUS=` is refreshed when no watchdog asks for more.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);

/// A notification that failed is logged, never fatal: the proxy serves either way.
fn send(states: &[NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::warn!(error = %error, "Failed to notify the service manager");
    }
}

/// The `STATUS=` text, e.g. `3 services, 3 healthy targets`.
pub fn status_text(counts: HealthCounts) -> String {
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let mut text = format!(
        "{}, {}",
        plural(counts.services, "service", "services"),
        plural(counts.healthy_targets, "healthy target", "healthy targets")
    );
    let unhealthy = counts.targets - counts.healthy_targets.min(counts.targets);
    if unhealthy > 0 {
        text.push_str(&format!(", {unhealthy} not healthy"));
    }
    text
}

/// Startup is complete: the service manager may consider us running.
pub fn ready(router: &Router) {
    let status = status_text(router.health_counts());
    send(&[NotifyState::Ready, NotifyState::Status(&status)]);
}

/// Shutdown has begun.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("Stopping")]);
}

/// Feeds the watchdog (when `WatchdogSec=` is set) and keeps `STATUS=` current until
/// `shutdown`.
pub async fn supervise(router: Arc<Router>, shutdown: CancellationToken) {
    let watchdog = sd_notify::watchdog_enabled();
    // Half the watchdog interval, as sd_watchdog_enabled(3) recommends.
    let period = watchdog.map_or(STATUS_INTERVAL, |limit| (limit / 2).min(STATUS_INTERVAL));
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_status = String::new();
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let status = status_text(router.health_counts());
        let changed = status != last_status;
        match (watchdog.is_some(), changed) {
            (true, true) => send(&[NotifyState::Watchdog, NotifyState::Status(&status)]),
            (true, false) => send(&[NotifyState::Watchdog]),
            (false, true) => send(&[NotifyState::Status(&status)]),
            (false, false) => {}
        }
        last_status = status;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(services: usize, targets: usize, healthy_targets: usize) -> HealthCounts {
        HealthCounts {
            services,
            targets,
            healthy_targets,
        }
    }

    #[test]
    fn counts_services_and_healthy_targets_in_status_text() {
        assert_eq!(
            status_text(counts(3, 3, 3)),
            "3 services, 3 healthy targets"
        );
        assert_eq!(status_text(counts(1, 1, 1)), "1 service, 1 healthy target");
        assert_eq!(
            status_text(counts(0, 0, 0)),
            "0 services, 0 healthy targets"
        );
    }

    #[test]
    fn mentions_targets_that_are_not_healthy_in_status_text() {
        assert_eq!(
            status_text(counts(2, 4, 1)),
            "2 services, 1 healthy target, 3 not healthy"
        );
    }
}
