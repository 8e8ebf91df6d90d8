//! `Target`: one upstream address, its health, and the requests in flight to it.
//!
//! Draining is the heart of zero-downtime deploys, so its protocol lives here:
//! - a request *claims* the target and holds an `InflightGuard` until its response body is
//!   done (upgraded connections hold one too);
//! - `drain` refuses new claims, closes upgraded connections at once, waits for in-flight
//!   requests up to the deadline, then cancels the rest (they get 504, or a cut stream).
//!
//! Claims and drains meet on two `SeqCst` atomics, so a claim racing a drain either is
//! waited for or backs off and is re-routed by the caller; it is never lost.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::uri::Authority;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::drain_bell;
use super::target_resolver::{ResolveError, TargetResolver};
use super::target_state::TargetState;
use crate::control::TargetAddress;

/// Cancellation for one drain generation. A drain swaps in fresh tokens and cancels the
/// old ones, so a target that is drained for a pause can serve again after resume.
///
/// Every request holds its generation through one `Arc` (taken without a lock). Its wait
/// for the deadline is on its own thread's bell (`drain_bell`), not on anything of the
/// target's: a lock of the target's would be written by every request on every core.
#[derive(Default)]
pub struct DrainTokens {
    /// Cancelled when a drain starts: upgraded connections close at once.
    pub upgrades: CancellationToken,
    /// Set at the drain deadline: what is still running is cut off.
    cut: AtomicBool,
}

impl DrainTokens {
    /// Whether the drain deadline passed: requests still running are to be cut off.
    pub fn is_cut(&self) -> bool {
        drain_bell::is_cut(&self.cut)
    }

    /// Completes when the drain deadline passes.
    pub async fn until_cut(&self) {
        drain_bell::until_cut(&self.cut).await;
    }

    fn cut_requests(&self) {
        drain_bell::cut(&self.cut);
    }
}

pub struct Target {
    address: TargetAddress,
    /// Parsed once for building upstream URIs on the request path.
    authority: Authority,
    /// Where the address points, asked for each new connection and health check.
    resolver: Arc<TargetResolver>,
    state: AtomicU8,
    draining: AtomicBool,
    inflight: AtomicUsize,
    idle: Notify,
    /// Loaded on claim, swapped on drain.
    tokens: ArcSwap<DrainTokens>,
}

/// What a target does once drained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainMode {
    /// Replaced by a deploy: refuse claims for good, so a request that picked it just
    /// before the swap is re-routed to the new targets.
    Retire,
    /// Paused or stopped: serve again after resume.
    Reopen,
}

/// Proof that a request is in flight to a target; dropping it ends the claim.
pub struct InflightGuard {
    target: Arc<Target>,
    tokens: Arc<DrainTokens>,
}

impl InflightGuard {
    pub fn target(&self) -> &Arc<Target> {
        &self.target
    }

    pub fn tokens(&self) -> &Arc<DrainTokens> {
        &self.tokens
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        if self.target.inflight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.target.idle.notify_waiters();
        }
    }
}

impl Target {
    pub fn new(address: TargetAddress, resolver: &Arc<TargetResolver>) -> Arc<Self> {
        // Infallible: `TargetAddress` only admits `host:port` forms that are valid authorities.
        let authority = address
            .authority()
            .parse()
            .expect("validated target authority");
        Arc::new(Target {
            address,
            authority,
            resolver: Arc::clone(resolver),
            state: AtomicU8::new(TargetState::Adding as u8),
            draining: AtomicBool::new(false),
            inflight: AtomicUsize::new(0),
            idle: Notify::new(),
            tokens: ArcSwap::default(),
        })
    }

    pub fn address(&self) -> &TargetAddress {
        &self.address
    }

    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// The socket address to connect to now, on the target's port or `port`.
    pub async fn resolve(&self, port: Option<u16>) -> Result<SocketAddr, ResolveError> {
        self.resolver.resolve(&self.address, port).await
    }

    pub fn state(&self) -> TargetState {
        TargetState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Records a new health state; returns the previous one.
    pub fn set_state(&self, state: TargetState) -> TargetState {
        TargetState::from_u8(self.state.swap(state as u8, Ordering::AcqRel))
    }

    pub fn is_routable(&self) -> bool {
        self.state() == TargetState::Healthy && !self.draining.load(Ordering::Relaxed)
    }

    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::SeqCst)
    }

    /// Starts a request on this target, or `None` if it is draining.
    pub fn claim(self: &Arc<Self>) -> Option<InflightGuard> {
        self.inflight.fetch_add(1, Ordering::SeqCst);
        if self.draining.load(Ordering::SeqCst) {
            if self.inflight.fetch_sub(1, Ordering::SeqCst) == 1 {
                self.idle.notify_waiters();
            }
            return None;
        }
        Some(InflightGuard {
            target: Arc::clone(self),
            tokens: self.tokens.load_full(),
        })
    }

    /// Drains the target: see the module doc. Returns how many requests were cancelled at
    /// the deadline.
    pub async fn drain(&self, timeout: Duration, mode: DrainMode) -> usize {
        self.draining.store(true, Ordering::SeqCst);
        let old = self.tokens.swap(Arc::default());
        old.upgrades.cancel();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut cancelled = 0;
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            let remaining = self.inflight.load(Ordering::SeqCst);
            if remaining == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                cancelled = remaining;
                old.cut_requests();
                break;
            }
        }
        if mode == DrainMode::Reopen {
            self.draining.store(false, Ordering::SeqCst);
        }
        cancelled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Arc<Target> {
        Target::new(
            TargetAddress::parse("127.0.0.1:9").unwrap(),
            &Arc::default(),
        )
    }

    #[tokio::test]
    async fn drain_returns_at_once_when_idle() {
        assert_eq!(
            target()
                .drain(Duration::from_secs(5), DrainMode::Reopen)
                .await,
            0
        );
    }

    #[tokio::test]
    async fn drain_waits_for_inflight_requests_to_finish() {
        let target = target();
        let guard = target.claim().unwrap();
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(guard);
        });
        assert_eq!(
            target
                .drain(Duration::from_secs(5), DrainMode::Reopen)
                .await,
            0
        );
        release.await.unwrap();
        assert_eq!(target.inflight(), 0);
    }

    #[tokio::test]
    async fn drain_cancels_requests_still_running_at_the_deadline() {
        let target = target();
        let guard = target.claim().unwrap();
        let tokens = Arc::clone(guard.tokens());
        let upgrades = guard.tokens().upgrades.clone();
        let drain = tokio::spawn({
            let target = Arc::clone(&target);
            async move {
                target
                    .drain(Duration::from_millis(30), DrainMode::Reopen)
                    .await
            }
        });
        tokens.until_cut().await;
        assert!(upgrades.is_cancelled());
        drop(guard);
        assert_eq!(drain.await.unwrap(), 1);
    }

    #[tokio::test]
    async fn refuses_claims_while_draining_and_accepts_them_after() {
        let target = target();
        let guard = target.claim().unwrap();
        let drain = tokio::spawn({
            let target = Arc::clone(&target);
            async move {
                target
                    .drain(Duration::from_secs(5), DrainMode::Reopen)
                    .await
            }
        });
        while !target.draining.load(Ordering::SeqCst) {
            tokio::task::yield_now().await;
        }
        assert!(target.claim().is_none());
        drop(guard);
        drain.await.unwrap();
        let fresh = target.claim().unwrap();
        assert!(!fresh.tokens().upgrades.is_cancelled());
    }

    #[tokio::test]
    async fn refuses_claims_for_good_once_retired() {
        let target = target();
        target
            .drain(Duration::from_secs(1), DrainMode::Retire)
            .await;
        assert!(target.claim().is_none());
    }
}
