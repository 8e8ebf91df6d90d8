//! `TargetResolver`: where a target's name points, asked afresh for every new connection.
//!
//! Targets keep the names they were deployed with (`list`, the state file and the request
//! log show them), so that a container that restarts with a new address is followed. A
//! name is looked up on the host first (its resolver, `/etc/hosts`); a name the host does
//! not know (Kamal's targets are container ids, which only Docker's DNS on the `kamal`
//! network knows) is asked of the *peer resolver*: the kamal-proxy container attached to the
//! daemon, which sees Docker's DNS. The host never needs `docker.sock` for this.
//!
//! Every answer is fresh: a cached address could belong, after a restart, to another
//! container that took it, which would then get the app's traffic. The last answer the peer
//! gave is kept only for when no peer can be asked (the container is being rebooted, or the
//! daemon restarted and it has not reattached yet), when it is the best anyone knows.
//! Pooled connections need no lookup, so a keep-alive target pays for one lookup per
//! connection, not per request.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::Notify;

use crate::control::TargetAddress;

/// How long one lookup (host or peer) may take before it counts as failed.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// Something that can resolve names the host cannot: the attached container.
pub trait PeerResolver: Send + Sync {
    /// The addresses `name` has where the peer stands, or why it has none.
    fn resolve<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<IpAddr>, String>>;
}

/// Why a target has no address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot resolve target \"{target}\": {why}")]
pub struct ResolveError {
    target: String,
    why: String,
}

impl From<ResolveError> for io::Error {
    fn from(error: ResolveError) -> Self {
        io::Error::new(io::ErrorKind::NotFound, error.to_string())
    }
}

#[derive(Default)]
pub struct TargetResolver {
    /// The attached peer, if any; replaced on attach and detach, read per lookup.
    peer: RwLock<Option<Arc<dyn PeerResolver>>>,
    /// The peer's last answer for each name it resolved (see the module doc).
    last_answers: Mutex<HashMap<Box<str>, IpAddr>>,
    /// Told when an answer changed, for whoever keeps them (`daemon::resolved_names`).
    changed: Notify,
}

impl TargetResolver {
    /// Names the host cannot resolve are asked of `peer` from now on.
    pub fn attach(&self, peer: Arc<dyn PeerResolver>) {
        *self.peer.write().unwrap_or_else(|e| e.into_inner()) = Some(peer);
    }

    /// The peer is gone; its last answers are kept.
    pub fn detach(&self) {
        *self.peer.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn peer(&self) -> Option<Arc<dyn PeerResolver>> {
        self.peer.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn last_answer(&self, name: &str) -> Option<IpAddr> {
        self.lock_answers().get(name).copied()
    }

    /// Answers from before (saved by the last daemon), to use until the peer gives its own.
    pub fn remember(&self, answers: BTreeMap<String, IpAddr>) {
        let mut known = self.lock_answers();
        for (name, ip) in answers {
            known.entry(name.into()).or_insert(ip);
        }
    }

    /// Every name the peer resolved, with its last answer.
    pub fn answers(&self) -> BTreeMap<String, IpAddr> {
        self.lock_answers()
            .iter()
            .map(|(name, ip)| (name.to_string(), *ip))
            .collect()
    }

    /// Forgets the answers for names `keep` says are no longer wanted (no target has them).
    pub fn forget_unless(&self, keep: impl Fn(&str) -> bool) {
        self.lock_answers().retain(|name, _| keep(name));
    }

    /// Completes once an answer changed since the last time this completed.
    pub async fn answers_changed(&self) {
        self.changed.notified().await;
    }

    fn lock_answers(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, IpAddr>> {
        // A panic while holding the lock cannot leave the map half-written.
        self.last_answers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The address to connect to for `target` (port: the target's, or `port` when given).
    pub async fn resolve(
        &self,
        target: &TargetAddress,
        port: Option<u16>,
    ) -> Result<SocketAddr, ResolveError> {
        let port = port.unwrap_or(target.port());
        if let Some(ip) = target.ip() {
            return Ok(SocketAddr::new(ip, port));
        }
        let name = target.host();
        let fail = |why: String| ResolveError {
            target: target.to_string(),
            why,
        };
        // A name the peer answered before is not the host's: skip the host's lookup.
        let host_error = if self.last_answer(name).is_none() {
            match lookup_on_host(name, port).await {
                Ok(address) => return Ok(address),
                Err(error) => error,
            }
        } else {
            String::from("it resolved through the attached kamal-proxy container before")
        };
        let Some(peer) = self.peer() else {
            return match self.last_answer(name) {
                Some(ip) => Ok(SocketAddr::new(ip, port)),
                None => Err(fail(format!(
                    "the host cannot resolve \"{name}\" ({host_error}), and no kamal-proxy \
                     container is attached to resolve it through Docker's DNS"
                ))),
            };
        };
        let answer = tokio::time::timeout(LOOKUP_TIMEOUT, peer.resolve(name))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {LOOKUP_TIMEOUT:?}")));
        match answer.map(|addresses| addresses.first().copied()) {
            Ok(Some(ip)) => {
                let previous = self.lock_answers().insert(name.into(), ip);
                if previous != Some(ip) {
                    // A stored permit: a change while nobody waits is not lost.
                    self.changed.notify_one();
                    tracing::info!(target = %target, address = %ip, previous = ?previous, "Target resolved through the attached container");
                }
                Ok(SocketAddr::new(ip, port))
            }
            Ok(None) => Err(fail(format!(
                "neither the host nor the attached kamal-proxy container knows \"{name}\" \
                 (is the container running, and on the kamal network?)"
            ))),
            Err(why) => match self.last_answer(name) {
                // The peer is there but could not answer in time: the last answer beats none.
                Some(ip) => {
                    tracing::warn!(target = %target, error = %why, address = %ip, "Attached container could not resolve the target; using its last answer");
                    Ok(SocketAddr::new(ip, port))
                }
                None => Err(fail(format!(
                    "the host cannot resolve \"{name}\" ({host_error}), nor can the attached \
                     kamal-proxy container: {why}"
                ))),
            },
        }
    }
}

async fn lookup_on_host(name: &str, port: u16) -> Result<SocketAddr, String> {
    let lookup = tokio::net::lookup_host((name, port));
    match tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await {
        Ok(Ok(mut addresses)) => addresses.next().ok_or_else(|| "no addresses".to_string()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {LOOKUP_TIMEOUT:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A peer that knows one name, at an address the test can move.
    struct FakePeer {
        name: &'static str,
        address: Mutex<Result<IpAddr, String>>,
        asked: AtomicUsize,
    }

    impl FakePeer {
        fn new(name: &'static str, address: &str) -> Arc<Self> {
            Arc::new(FakePeer {
                name,
                address: Mutex::new(Ok(address.parse().unwrap())),
                asked: AtomicUsize::new(0),
            })
        }

        fn move_to(&self, address: Result<&str, &str>) {
            *self.address.lock().unwrap() =
                address.map(|a| a.parse().unwrap()).map_err(str::to_string);
        }
    }

    impl PeerResolver for FakePeer {
        fn resolve<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<IpAddr>, String>> {
            self.asked.fetch_add(1, Ordering::SeqCst);
            let answer = match name == self.name {
                true => self.address.lock().unwrap().clone().map(|ip| vec![ip]),
                false => Ok(vec![]),
            };
            Box::pin(async move { answer })
        }
    }

    fn target(text: &str) -> TargetAddress {
        TargetAddress::parse(text).unwrap()
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[tokio::test]
    async fn takes_addresses_as_they_are_and_asks_the_host_for_its_names() {
        let resolver = TargetResolver::default();
        assert_eq!(
            resolver.resolve(&target("127.0.0.1:3000"), None).await,
            Ok(addr("127.0.0.1:3000"))
        );
        assert_eq!(
            resolver.resolve(&target("[::1]:3000"), Some(81)).await,
            Ok(addr("[::1]:81"))
        );
        let localhost = resolver.resolve(&target("localhost:3000"), None).await;
        assert!(localhost.unwrap().ip().is_loopback());
    }

    #[tokio::test]
    async fn asks_the_peer_afresh_each_time_and_follows_a_moved_container() {
        let resolver = TargetResolver::default();
        let peer = FakePeer::new("a1b2c3d4e5f6.invalid", "172.18.0.5");
        resolver.attach(peer.clone());
        let app = target("a1b2c3d4e5f6.invalid:80");
        assert_eq!(
            resolver.resolve(&app, None).await,
            Ok(addr("172.18.0.5:80"))
        );
        peer.move_to(Ok("172.18.0.9"));
        assert_eq!(
            resolver.resolve(&app, None).await,
            Ok(addr("172.18.0.9:80"))
        );
        assert_eq!(peer.asked.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn keeps_the_last_answer_while_no_peer_can_answer() {
        let resolver = TargetResolver::default();
        let peer = FakePeer::new("a1b2c3d4e5f6.invalid", "172.18.0.5");
        resolver.attach(peer.clone());
        let app = target("a1b2c3d4e5f6.invalid:80");
        resolver.resolve(&app, None).await.unwrap();
        resolver.detach();
        assert_eq!(
            resolver.resolve(&app, None).await,
            Ok(addr("172.18.0.5:80"))
        );
        resolver.attach(peer.clone());
        peer.move_to(Err("docker's DNS timed out"));
        assert_eq!(
            resolver.resolve(&app, None).await,
            Ok(addr("172.18.0.5:80"))
        );
    }

    #[tokio::test]
    async fn serves_remembered_answers_until_the_peer_answers_and_tells_of_changes() {
        let resolver = TargetResolver::default();
        let app = target("a1b2c3d4e5f6.invalid:80");
        let saved = BTreeMap::from([(app.host().to_string(), "172.18.0.5".parse().unwrap())]);
        resolver.remember(saved.clone());
        assert_eq!(
            resolver.resolve(&app, None).await,
            Ok(addr("172.18.0.5:80"))
        );
        assert_eq!(resolver.answers(), saved);
        resolver.attach(FakePeer::new("a1b2c3d4e5f6.invalid", "172.18.0.7"));
        assert_eq!(
            resolver.resolve(&app, None).await,
            Ok(addr("172.18.0.7:80"))
        );
        tokio::time::timeout(Duration::from_secs(1), resolver.answers_changed())
            .await
            .expect("the change was told");
        resolver.forget_unless(|name| name != app.host());
        assert!(resolver.answers().is_empty());
    }

    #[tokio::test]
    async fn names_the_target_and_why_when_nobody_can_resolve_it() {
        let resolver = TargetResolver::default();
        let app = target("a1b2c3d4e5f6.invalid:80");
        let error = resolver.resolve(&app, None).await.unwrap_err().to_string();
        assert!(
            error.starts_with(
                "cannot resolve target \"a1b2c3d4e5f6.invalid:80\": the host cannot resolve"
            ) && error.contains("no kamal-proxy container is attached"),
            "{error}"
        );
        resolver.attach(FakePeer::new("other.invalid", "172.18.0.5"));
        let error = resolver.resolve(&app, None).await.unwrap_err().to_string();
        assert!(
            error.contains("neither the host nor the attached kamal-proxy container knows"),
            "{error}"
        );
    }
}
