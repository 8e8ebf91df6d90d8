//! `TargetResolver`: where a target's name points, asked afresh for every new connection.
//!
//! Targets keep the names they were deployed with (`list`, the state file and the request
//! log show them), so that a container that restarts with a new address is followed. A
//! name is resolved by the host (its resolver, `/etc/hosts`) or by the *peer resolver*: the
//! kamal-proxy container attached to the daemon, which sees Docker's DNS, where the
//! container ids Kamal deploys as targets live. The host never needs `docker.sock`.
//!
//! Which is asked first: the one that answered the name before; for a new name, the peer
//! when the name looks like a container's (one label, not `localhost`), else the host. So
//! container ids do not leak to the host's DNS servers, and host names cost no trip through
//! the container. The other is asked when the first does not know the name.
//!
//! Every answer is fresh: a cached address could belong, after a restart, to another
//! container that took it, which would then get the app's traffic. So when the attached
//! container looked and found nothing (Docker's DNS knows only running containers), the
//! target has no address, whatever it had; and it is not asked again for a moment
//! (`NOT_FOUND_TTL`), so a stopped app under load does not become a storm of lookups. The
//! last answer the peer gave is used only when no peer can be asked (the container is being
//! rebooted, or the daemon restarted before it reattached), when it is the best anyone
//! knows. Pooled connections need no lookup: a keep-alive target pays one per connection.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use tokio::sync::Notify;

use crate::control::TargetAddress;

/// How long one lookup (host or peer) may take before it counts as failed.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a name the peer did not know is answered "unknown" without asking again.
const NOT_FOUND_TTL: Duration = Duration::from_secs(1);
/// How long what is known of a name no deployed target has is kept (a deploy resolves its
/// targets before they are deployed).
const UNDEPLOYED_KEPT: Duration = Duration::from_secs(600);

/// Why the peer has no address for a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerError {
    /// It looked, and the name has no address where it is (or its lookup failed).
    NotFound(String),
    /// It could not be asked (it went away, or did not answer).
    Unreachable(String),
}

/// Something that can resolve names the host cannot: the attached container.
pub trait PeerResolver: Send + Sync {
    /// The addresses `name` has where the peer stands.
    fn resolve<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<IpAddr>, PeerError>>;
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

/// What is known of a name, and since when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    /// The host resolved it (its answers are not kept: the host's resolver caches).
    OnHost,
    /// The peer's last answer.
    ByPeer(IpAddr),
    /// The peer did not know it.
    NotFound,
}

/// How the host resolves a name: its resolver, or a test's stand-in.
type HostLookup = fn(String, u16) -> BoxFuture<'static, Result<SocketAddr, String>>;

pub struct TargetResolver {
    host: HostLookup,
    /// The attached peer, if any; replaced on attach and detach, read per lookup.
    peer: RwLock<Option<Arc<dyn PeerResolver>>>,
    known: Mutex<HashMap<Box<str>, (Known, Instant)>>,
    /// Told when a peer's answer changed, for whoever keeps them (`daemon::resolved_names`).
    changed: Notify,
}

impl Default for TargetResolver {
    fn default() -> Self {
        TargetResolver {
            host: |name, port| Box::pin(async move { lookup_on_host(&name, port).await }),
            peer: RwLock::default(),
            known: Mutex::default(),
            changed: Notify::new(),
        }
    }
}

/// Whether `name` is a host name as Docker names containers: one label (a container's id or
/// name), and not the one single label every host has.
fn looks_like_a_container(name: &str) -> bool {
    !name.contains('.') && !name.eq_ignore_ascii_case("localhost")
}

impl TargetResolver {
    /// Names are asked of `peer` from now on.
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

    fn lock_known(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, (Known, Instant)>> {
        // A panic while holding the lock cannot leave the map half-written.
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn known(&self, name: &str) -> Option<(Known, Instant)> {
        self.lock_known().get(name).copied()
    }

    /// Records what is now known of `name`; returns what was known before.
    fn learn(&self, name: &str, known: Known) -> Option<Known> {
        let previous = self
            .lock_known()
            .insert(name.into(), (known, Instant::now()))
            .map(|(known, _)| known);
        let was_answer = |k: Option<Known>| matches!(k, Some(Known::ByPeer(_)));
        if previous != Some(known) && (was_answer(Some(known)) || was_answer(previous)) {
            // A stored permit: a change while nobody waits is not lost.
            self.changed.notify_one();
        }
        previous
    }

    /// Answers from before (saved by the last daemon), to use until the peer gives its own.
    pub fn remember(&self, answers: BTreeMap<String, IpAddr>) {
        let mut known = self.lock_known();
        for (name, ip) in answers {
            known
                .entry(name.into())
                .or_insert((Known::ByPeer(ip), Instant::now()));
        }
    }

    /// The peer's last answers for the names `keep` wants kept or that were resolved lately;
    /// anything else known of other names is forgotten.
    pub fn answers_to_keep(&self, keep: impl Fn(&str) -> bool) -> BTreeMap<String, IpAddr> {
        let mut known = self.lock_known();
        known.retain(|name, (_, since)| keep(name) || since.elapsed() < UNDEPLOYED_KEPT);
        known
            .iter()
            .filter_map(|(name, (known, _))| match known {
                Known::ByPeer(ip) => Some((name.to_string(), *ip)),
                _ => None,
            })
            .collect()
    }

    /// Completes once a peer's answer changed since the last time this completed.
    pub async fn answers_changed(&self) {
        self.changed.notified().await;
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
        let known = self.known(name);
        let Some(peer) = self.peer() else {
            // The container is away: its last answer, if it gave one, else the host's.
            if let Some((Known::ByPeer(ip), _)) = known {
                return Ok(SocketAddr::new(ip, port));
            }
            return match self.on_host(name, port).await {
                Ok(address) => Ok(address),
                Err(host_error) => Err(fail(format!(
                    "the host cannot resolve \"{name}\" ({host_error}), and no kamal-proxy \
                     container is attached to resolve it through Docker's DNS"
                ))),
            };
        };
        let peer_first = match known {
            Some((Known::OnHost, _)) => false,
            Some((Known::ByPeer(_), _)) => true,
            _ => looks_like_a_container(name),
        };
        let mut host_error = None;
        if !peer_first {
            match self.on_host(name, port).await {
                Ok(address) => return Ok(address),
                Err(error) => host_error = Some(error),
            }
        }
        let not_found = match self.ask_peer(peer.as_ref(), target, known).await {
            Ok(ip) => return Ok(SocketAddr::new(ip, port)),
            Err(PeerError::NotFound(why)) => why,
            Err(PeerError::Unreachable(why)) => {
                return match known {
                    Some((Known::ByPeer(ip), _)) => {
                        tracing::warn!(target = %target, error = %why, address = %ip, "Attached container did not answer; using its last answer");
                        Ok(SocketAddr::new(ip, port))
                    }
                    _ => Err(fail(format!(
                        "the attached kamal-proxy container could not be asked about \"{name}\": {why}"
                    ))),
                };
            }
        };
        if host_error.is_none() {
            match self.on_host(name, port).await {
                Ok(address) => return Ok(address),
                Err(error) => host_error = Some(error),
            }
        }
        Err(fail(format!(
            "neither the host ({}) nor the attached kamal-proxy container ({not_found}) knows \
             \"{name}\" (is the container running, and on the kamal network?)",
            host_error.unwrap_or_default()
        )))
    }

    async fn on_host(&self, name: &str, port: u16) -> Result<SocketAddr, String> {
        let address = (self.host)(name.to_string(), port).await?;
        self.learn(name, Known::OnHost);
        Ok(address)
    }

    /// The peer's answer for the target's name, unless it said "unknown" a moment ago.
    async fn ask_peer(
        &self,
        peer: &dyn PeerResolver,
        target: &TargetAddress,
        known: Option<(Known, Instant)>,
    ) -> Result<IpAddr, PeerError> {
        let name = target.host();
        if let Some((Known::NotFound, since)) = known {
            if since.elapsed() < NOT_FOUND_TTL {
                return Err(PeerError::NotFound("not found a moment ago".into()));
            }
        }
        let answer = tokio::time::timeout(LOOKUP_TIMEOUT, peer.resolve(name))
            .await
            .unwrap_or_else(|_| {
                Err(PeerError::Unreachable(format!(
                    "no answer within {}",
                    crate::go_duration::format(LOOKUP_TIMEOUT)
                )))
            });
        match answer {
            Ok(addresses) => match addresses.first() {
                Some(&ip) => {
                    if let Some(Known::ByPeer(previous)) = self.learn(name, Known::ByPeer(ip)) {
                        if previous != ip {
                            tracing::info!(target = %target, address = %ip, previous = %previous, "Target moved to a new address");
                        }
                    }
                    Ok(ip)
                }
                None => {
                    self.learn(name, Known::NotFound);
                    Err(PeerError::NotFound("no such name".into()))
                }
            },
            Err(PeerError::NotFound(why)) => {
                self.learn(name, Known::NotFound);
                Err(PeerError::NotFound(why))
            }
            Err(unreachable) => Err(unreachable),
        }
    }
}

async fn lookup_on_host(name: &str, port: u16) -> Result<SocketAddr, String> {
    let lookup = tokio::net::lookup_host((name, port));
    match tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await {
        Ok(Ok(mut addresses)) => addresses.next().ok_or_else(|| "no addresses".to_string()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!(
            "no answer within {}",
            crate::go_duration::format(LOOKUP_TIMEOUT)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A peer that knows one name, at an address the test can move.
    struct FakePeer {
        name: &'static str,
        answer: Mutex<Result<Vec<IpAddr>, PeerError>>,
        asked: AtomicUsize,
    }

    impl FakePeer {
        fn new(name: &'static str, address: &str) -> Arc<Self> {
            Arc::new(FakePeer {
                name,
                answer: Mutex::new(Ok(vec![address.parse().unwrap()])),
                asked: AtomicUsize::new(0),
            })
        }

        fn answer(&self, answer: Result<&str, PeerError>) {
            *self.answer.lock().unwrap() = answer.map(|a| vec![a.parse().unwrap()]);
        }

        fn asked(&self) -> usize {
            self.asked.load(Ordering::SeqCst)
        }
    }

    impl PeerResolver for FakePeer {
        fn resolve<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<IpAddr>, PeerError>> {
            self.asked.fetch_add(1, Ordering::SeqCst);
            let answer = match name == self.name {
                true => self.answer.lock().unwrap().clone(),
                false => Ok(vec![]),
            };
            Box::pin(async move { answer })
        }
    }

    /// A resolver whose host knows `localhost` and `db.internal` only, asking no DNS server.
    fn resolver() -> TargetResolver {
        TargetResolver {
            host: |name, port| {
                Box::pin(async move {
                    match name.as_str() {
                        "localhost" => Ok(SocketAddr::from(([127, 0, 0, 1], port))),
                        "db.internal" => Ok(SocketAddr::from(([10, 0, 0, 9], port))),
                        _ => Err("Name or service not known".into()),
                    }
                })
            },
            ..TargetResolver::default()
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
        let resolver = resolver();
        assert_eq!(
            resolver.resolve(&target("127.0.0.1:3000"), None).await,
            Ok(addr("127.0.0.1:3000"))
        );
        assert_eq!(
            resolver.resolve(&target("[::1]:3000"), Some(81)).await,
            Ok(addr("[::1]:81"))
        );
        let peer = FakePeer::new("localhost", "172.18.0.5");
        resolver.attach(peer.clone());
        assert_eq!(
            resolver.resolve(&target("localhost:3000"), None).await,
            Ok(addr("127.0.0.1:3000"))
        );
        assert_eq!(
            resolver.resolve(&target("db.internal:5432"), None).await,
            Ok(addr("10.0.0.9:5432"))
        );
        assert_eq!(peer.asked(), 0, "host names are the host's");
    }

    #[tokio::test]
    async fn asks_the_peer_afresh_each_time_and_follows_a_moved_container() {
        let resolver = resolver();
        let peer = FakePeer::new("a1b2c3d4e5f6", "172.18.0.5");
        resolver.attach(peer.clone());
        let app = target("a1b2c3d4e5f6:80");
        assert_eq!(
            resolver.resolve(&app, None).await,
            Ok(addr("172.18.0.5:80"))
        );
        peer.answer(Ok("172.18.0.9"));
        assert_eq!(
            resolver.resolve(&app, None).await,
            Ok(addr("172.18.0.9:80"))
        );
        assert_eq!(peer.asked(), 2);
    }

    #[tokio::test]
    async fn keeps_the_last_answer_only_while_the_peer_cannot_be_asked() {
        let resolver = resolver();
        let peer = FakePeer::new("a1b2c3d4e5f6", "172.18.0.5");
        resolver.attach(peer.clone());
        let app = target("a1b2c3d4e5f6:80");
        resolver.resolve(&app, None).await.unwrap();
        resolver.detach();
        assert_eq!(
            resolver.resolve(&app, None).await,
            Ok(addr("172.18.0.5:80"))
        );
        resolver.attach(peer.clone());
        peer.answer(Err(PeerError::Unreachable("went away".into())));
        assert_eq!(
            resolver.resolve(&app, None).await,
            Ok(addr("172.18.0.5:80"))
        );
        // The container stopped: Docker's DNS no longer knows it, and its old address may be
        // another container's by now.
        peer.answer(Err(PeerError::NotFound(
            "Temporary failure in name resolution".into(),
        )));
        let error = resolver.resolve(&app, None).await.unwrap_err().to_string();
        assert!(
            error.contains("Temporary failure in name resolution"),
            "{error}"
        );
        resolver.detach();
        assert!(
            resolver.resolve(&app, None).await.is_err(),
            "no stale answer"
        );
    }

    #[tokio::test]
    async fn does_not_ask_again_at_once_about_a_name_the_peer_did_not_know() {
        let resolver = resolver();
        let peer = FakePeer::new("other", "172.18.0.5");
        resolver.attach(peer.clone());
        let app = target("a1b2c3d4e5f6:80");
        for _ in 0..5 {
            assert!(resolver.resolve(&app, None).await.is_err());
        }
        assert_eq!(peer.asked(), 1);
    }

    #[tokio::test]
    async fn serves_remembered_answers_until_the_peer_answers_and_tells_of_changes() {
        let resolver = resolver();
        let app = target("a1b2c3d4e5f6:80");
        let saved = BTreeMap::from([(app.host().to_string(), "172.18.0.5".parse().unwrap())]);
        resolver.remember(saved.clone());
        assert_eq!(
            resolver.resolve(&app, None).await,
            Ok(addr("172.18.0.5:80"))
        );
        assert_eq!(resolver.answers_to_keep(|_| true), saved);
        resolver.attach(FakePeer::new("a1b2c3d4e5f6", "172.18.0.7"));
        assert_eq!(
            resolver.resolve(&app, None).await,
            Ok(addr("172.18.0.7:80"))
        );
        tokio::time::timeout(Duration::from_secs(1), resolver.answers_changed())
            .await
            .expect("the change was told");
        assert_eq!(
            resolver.answers_to_keep(|_| false).len(),
            1,
            "resolved lately"
        );
    }

    #[tokio::test]
    async fn names_the_target_and_why_when_nobody_can_resolve_it() {
        let resolver = resolver();
        let app = target("a1b2c3d4e5f6:80");
        let error = resolver.resolve(&app, None).await.unwrap_err().to_string();
        assert_eq!(
            error,
            "cannot resolve target \"a1b2c3d4e5f6:80\": the host cannot resolve \"a1b2c3d4e5f6\" \
             (Name or service not known), and no kamal-proxy container is attached to resolve it \
             through Docker's DNS"
        );
        resolver.attach(FakePeer::new("other", "172.18.0.5"));
        let error = resolver.resolve(&app, None).await.unwrap_err().to_string();
        assert!(
            error.contains("neither the host (Name or service not known) nor the attached kamal-proxy container (no such name) knows \"a1b2c3d4e5f6\""),
            "{error}"
        );
    }
}
