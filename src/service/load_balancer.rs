//! `LoadBalancer`: the group of targets a service sends traffic to.
//!
//! Round-robin over healthy targets, writers and readers apart: a read (GET/HEAD that is not
//! an upgrade) goes to a healthy reader when there is one, everything else to writers. The
//! index advances before the pick, as in Go. A deploy builds a new balancer, waits for it
//! to become healthy, swaps it in and drains the old one; the balancer owns its targets'
//! health-check tasks and stops them when it is retired.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::health_check::{HealthCheck, HealthClient};
use super::options::HealthCheckConfig;
use super::target::{DrainMode, Target};
use super::target_resolver::TargetResolver;
use super::target_state::TargetState;
use crate::control::TargetAddress;

pub struct LoadBalancer {
    writers: Vec<Arc<Target>>,
    readers: Vec<Arc<Target>>,
    next_writer: AtomicUsize,
    next_reader: AtomicUsize,
    health_changed: Arc<Notify>,
    health_checks: CancellationToken,
    tasks: TaskTracker,
}

/// Whether a request may be served by a reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    Read,
    Write,
}

fn pick_from(targets: &[Arc<Target>], next: &AtomicUsize) -> Option<Arc<Target>> {
    let count = targets.len();
    if count == 0 {
        return None;
    }
    let start = next.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
    (0..count)
        .map(|offset| &targets[(start + offset) % count])
        .find(|t| t.is_routable())
        .cloned()
}

impl LoadBalancer {
    pub fn new(
        writers: &[TargetAddress],
        readers: &[TargetAddress],
        resolver: &Arc<TargetResolver>,
    ) -> Self {
        let targets = |addresses: &[TargetAddress]| {
            addresses
                .iter()
                .map(|address| Target::new(address.clone(), resolver))
                .collect()
        };
        LoadBalancer {
            writers: targets(writers),
            readers: targets(readers),
            next_writer: AtomicUsize::new(0),
            next_reader: AtomicUsize::new(0),
            health_changed: Arc::new(Notify::new()),
            health_checks: CancellationToken::new(),
            tasks: TaskTracker::new(),
        }
    }

    pub fn writers(&self) -> &[Arc<Target>] {
        &self.writers
    }

    pub fn readers(&self) -> &[Arc<Target>] {
        &self.readers
    }

    fn all_targets(&self) -> impl Iterator<Item = &Arc<Target>> {
        self.writers.iter().chain(&self.readers)
    }

    /// Starts checking every target now. A lone writer stops being checked once healthy, as
    /// in Go: with nowhere else to send traffic, taking it out of rotation would only turn
    /// a 502 into a 503.
    pub fn start_health_checks(
        &self,
        client: &HealthClient,
        config: &HealthCheckConfig,
        service: &str,
    ) {
        let stop_when_healthy = self.writers.len() == 1 && self.readers.is_empty();
        for target in self.all_targets() {
            let check = HealthCheck::new(client.clone(), Arc::clone(target), config, service);
            self.tasks.spawn(check.run(
                stop_when_healthy,
                Arc::clone(&self.health_changed),
                self.health_checks.child_token(),
            ));
        }
    }

    /// Marks every target healthy without a check (restored state, as in Go).
    pub fn mark_all_healthy(&self) {
        for target in self.all_targets() {
            target.set_state(TargetState::Healthy);
        }
    }

    pub fn all_healthy(&self) -> bool {
        self.all_targets()
            .all(|t| t.state() == TargetState::Healthy)
    }

    /// Waits until every target is healthy; `false` if the timeout passed first.
    pub async fn wait_until_healthy(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.health_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.all_healthy() {
                return true;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return self.all_healthy();
            }
        }
    }

    pub fn pick(&self, kind: RequestKind) -> Option<Arc<Target>> {
        if kind == RequestKind::Read {
            if let Some(reader) = pick_from(&self.readers, &self.next_reader) {
                return Some(reader);
            }
        }
        pick_from(&self.writers, &self.next_writer)
    }

    /// Stops the health checks and waits for their tasks to end.
    pub async fn stop_health_checks(&self) {
        self.health_checks.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// Drains every target in parallel; returns how many requests were cut off.
    pub async fn drain(&self, timeout: Duration, mode: DrainMode) -> usize {
        let drains = self.all_targets().map(|target| target.drain(timeout, mode));
        futures_util::future::join_all(drains)
            .await
            .into_iter()
            .sum()
    }
}

impl Drop for LoadBalancer {
    fn drop(&mut self) {
        self.health_checks.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn balancer(writers: &[&str], readers: &[&str]) -> LoadBalancer {
        let parse = |list: &[&str]| {
            list.iter()
                .map(|a| TargetAddress::parse(a).unwrap())
                .collect::<Vec<_>>()
        };
        LoadBalancer::new(&parse(writers), &parse(readers), &Arc::default())
    }

    fn picked(lb: &LoadBalancer, kind: RequestKind) -> Option<String> {
        lb.pick(kind).map(|t| t.address().to_string())
    }

    #[test]
    fn rotates_over_healthy_writers_starting_at_the_second() {
        let lb = balancer(&["w1:80", "w2:80", "w3:80"], &[]);
        lb.mark_all_healthy();
        let picks: Vec<_> = (0..4)
            .map(|_| picked(&lb, RequestKind::Write).unwrap())
            .collect();
        assert_eq!(picks, ["w2:80", "w3:80", "w1:80", "w2:80"]);
    }

    #[test]
    fn skips_unhealthy_targets_and_returns_none_when_all_are_down() {
        let lb = balancer(&["w1:80", "w2:80"], &[]);
        lb.writers()[0].set_state(TargetState::Healthy);
        assert_eq!(picked(&lb, RequestKind::Write).as_deref(), Some("w1:80"));
        assert_eq!(picked(&lb, RequestKind::Write).as_deref(), Some("w1:80"));
        lb.writers()[0].set_state(TargetState::Unhealthy);
        assert_eq!(picked(&lb, RequestKind::Write), None);
    }

    #[test]
    fn sends_reads_to_readers_and_writes_to_writers() {
        let lb = balancer(&["w1:80"], &["r1:80"]);
        lb.mark_all_healthy();
        assert_eq!(picked(&lb, RequestKind::Read).as_deref(), Some("r1:80"));
        assert_eq!(picked(&lb, RequestKind::Write).as_deref(), Some("w1:80"));
        lb.readers()[0].set_state(TargetState::Unhealthy);
        assert_eq!(picked(&lb, RequestKind::Read).as_deref(), Some("w1:80"));
    }

    #[tokio::test]
    async fn wait_until_healthy_times_out_when_a_target_never_passes() {
        let lb = balancer(&["w1:80"], &[]);
        assert!(!lb.wait_until_healthy(Duration::from_millis(20)).await);
        lb.mark_all_healthy();
        assert!(lb.wait_until_healthy(Duration::from_millis(20)).await);
    }
}
