//! `Attachments`: the daemon's side of the Kamal bridge, the one kamal-proxy container
//! attached to it over the control socket.
//!
//! Kamal sends every proxy command into a container it boots itself, so that container
//! (our image, `kamal-proxy run` in attach mode) calls `Attach` and then holds the
//! connection open. While it does, the daemon mirrors its log into the pipe the container
//! passed (what `kamal proxy logs` shows) and asks the container's `Resolver` for target
//! names the host cannot resolve (container ids, known only to Docker's DNS). When the
//! connection ends, both stop, and the resolver keeps the container's last answers.
//!
//! One container at a time: a second `Attach` is refused while the first is connected, so
//! two containers never both claim to speak for Docker's DNS.

use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::future::BoxFuture;

use super::resolver::ResolverProxy;
use super::ControlError;
use crate::logging::{LogMirror, MirrorId};
use crate::service::target_resolver::{PeerError, PeerResolver, TargetResolver};

pub struct Attachments {
    resolver: Arc<TargetResolver>,
    mirror: &'static LogMirror,
    current: Mutex<Option<Attached>>,
}

struct Attached {
    /// The connection's server GUID, unique per control-socket connection.
    connection: String,
    container: String,
    since: Instant,
    mirror: MirrorId,
}

/// The attached container's resolver, as the domain's `PeerResolver`.
struct ContainerResolver {
    proxy: ResolverProxy<'static>,
}

impl PeerResolver for ContainerResolver {
    fn resolve<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<IpAddr>, PeerError>> {
        Box::pin(async move {
            let addresses = self
                .proxy
                .resolve(name)
                .await
                .map_err(|error| match error {
                    // The container looked: its lookup failed.
                    zbus::Error::MethodError(_, text, _) => {
                        PeerError::NotFound(text.unwrap_or_else(|| "the lookup failed".into()))
                    }
                    other => PeerError::Unreachable(other.to_string()),
                })?;
            addresses
                .iter()
                .map(|text| {
                    text.parse().map_err(|_| {
                        PeerError::NotFound(format!(
                            "the container answered \"{text}\", not an address"
                        ))
                    })
                })
                .collect()
        })
    }
}

impl Attachments {
    pub fn new(resolver: Arc<TargetResolver>, mirror: &'static LogMirror) -> Self {
        Attachments {
            resolver,
            mirror,
            current: Mutex::new(None),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Attached>> {
        // A panic while holding the lock leaves the slot either set or not.
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes `connection`'s container the attached one: its log pipe is `pipe`, its
    /// resolver answers for names the host does not know.
    pub async fn attach(
        &self,
        connection: &zbus::Connection,
        container: String,
        pipe: OwnedFd,
    ) -> Result<(), ControlError> {
        let id = connection.server_guid().to_string();
        if let Some(attached) = self.lock().as_ref() {
            return Err(ControlError::AlreadyAttached(format!(
                "another kamal-proxy container ({}) has been attached for {}; only one may be",
                attached.container,
                crate::go_duration::format(std::time::Duration::from_secs(
                    attached.since.elapsed().as_secs()
                ))
            )));
        }
        let proxy = ResolverProxy::new(connection).await.map_err(|e| {
            ControlError::Failed(format!("cannot reach the container's resolver: {e}"))
        })?;
        let mut current = self.lock();
        // Checked again: another container may have attached while the proxy was made.
        if current.is_some() {
            return Err(ControlError::AlreadyAttached(
                "another kamal-proxy container attached at the same moment; only one may be".into(),
            ));
        }
        let mirror = self.mirror.attach(pipe).map_err(|e| {
            ControlError::InvalidArgs(format!("the log pipe cannot be written: {e}"))
        })?;
        self.resolver.attach(Arc::new(ContainerResolver { proxy }));
        tracing::info!(container = %container, "Container attached");
        *current = Some(Attached {
            connection: id,
            container,
            since: Instant::now(),
            mirror,
        });
        Ok(())
    }

    /// `connection` has closed: if its container was the attached one, it is no longer.
    pub fn connection_closed(&self, connection: &zbus::Connection) {
        let mut current = self.lock();
        if current
            .as_ref()
            .is_some_and(|attached| attached.connection == connection.server_guid().as_str())
        {
            if let Some(attached) = current.take() {
                self.resolver.detach();
                self.mirror.detach(attached.mirror);
                tracing::info!(container = %attached.container, "Container detached");
            }
        }
    }
}
