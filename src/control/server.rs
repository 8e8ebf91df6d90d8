//! Serving `org.kamal.Proxy1`: always peer-to-peer on the control socket, and on a message
//! bus when one is chosen or (with `--bus auto`) reachable.
//!
//! The socket is created with mode 0660 so that root and the daemon's group may call it.
//! A socket file left by a crashed daemon is replaced; one that a live daemon answers on
//! is not, so two daemons cannot silently steal each other's control socket.
//!
//! Every connection (the bus one and each socket peer) relays the domain's `ProxyEvent`s as
//! the interface's signals, so `busctl monitor` and socket clients both see deploys and
//! health flips. A relay that falls behind skips the lost events rather than stall anyone.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use futures_util::StreamExt;
use tokio::net::UnixListener;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use zbus::connection::Builder;
use zbus::object_server::SignalEmitter;

use super::interface::{ControlApi, ProxyInterface};
use super::{socket_path, BusChoice, BUS_NAME, OBJECT_PATH};
use crate::event::{EventSender, ProxyEvent};

pub struct ControlServer {
    socket_path: PathBuf,
    /// Kept alive for as long as the daemon owns the bus name.
    bus: Option<zbus::Connection>,
    connections: TaskTracker,
}

async fn bus_connection(
    choice: &BusChoice,
    api: &ControlApi,
) -> Result<Option<zbus::Connection>, String> {
    let builder = match choice {
        BusChoice::None => return Ok(None),
        BusChoice::Auto | BusChoice::System => Builder::system(),
        BusChoice::Session => Builder::session(),
        BusChoice::Address(address) => Builder::address(address.as_str()),
    };
    let connection = async {
        builder?
            .name(BUS_NAME)?
            .serve_at(OBJECT_PATH, ProxyInterface::new(api.clone()))?
            .build()
            .await
    };
    match connection.await {
        Ok(connection) => Ok(Some(connection)),
        Err(error) if *choice == BusChoice::Auto => {
            tracing::info!(error = %error, "System bus not available; serving the control socket only");
            Ok(None)
        }
        Err(error) => Err(format!(
            "cannot serve {BUS_NAME} on the {choice:?} bus: {error}"
        )),
    }
}

fn bind_socket(path: &PathBuf) -> Result<UnixListener, String> {
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(format!(
            "another kamal-proxy is already serving the control socket {}",
            path.display()
        ));
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            return Err(format!(
                "cannot remove stale socket {}: {error}",
                path.display()
            ))
        }
    }
    let listener = UnixListener::bind(path)
        .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| format!("cannot set permissions on {}: {e}", path.display()))?;
    Ok(listener)
}

/// Sends `event` as its signal on `connection`.
async fn emit(connection: &zbus::Connection, event: &ProxyEvent) -> zbus::Result<()> {
    let emitter = SignalEmitter::new(connection, OBJECT_PATH)?;
    match event {
        ProxyEvent::ServiceChanged { service, change } => {
            ProxyInterface::service_changed(&emitter, service.as_str(), &change.to_string()).await
        }
        ProxyEvent::TargetHealthChanged {
            service,
            target,
            state,
        } => {
            ProxyInterface::target_health_changed(
                &emitter,
                service,
                target.as_str(),
                &state.to_string(),
            )
            .await
        }
    }
}

/// Relays one received event (or the news that some were lost) to `connection`.
async fn relay(connection: &zbus::Connection, received: Result<ProxyEvent, RecvError>) {
    match received {
        Ok(event) => {
            if let Err(error) = emit(connection, &event).await {
                tracing::debug!(error = %error, "Failed to emit a signal");
            }
        }
        Err(RecvError::Lagged(missed)) => {
            tracing::warn!(
                missed,
                "Control connection fell behind; signals were dropped"
            )
        }
        // The router holds the sender for the daemon's lifetime.
        Err(RecvError::Closed) => {}
    }
}

/// Relays events as signals on the bus connection until shutdown.
async fn relay_to_bus(
    connection: zbus::Connection,
    mut events: broadcast::Receiver<ProxyEvent>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            received = events.recv() => relay(&connection, received).await,
            () = shutdown.cancelled() => break,
        }
    }
}

/// Serves one peer until it hangs up or the daemon shuts down.
async fn serve_peer(
    stream: tokio::net::UnixStream,
    api: ControlApi,
    mut events: broadcast::Receiver<ProxyEvent>,
    shutdown: CancellationToken,
) {
    let attachments = Arc::clone(&api.attachments);
    let connection = async {
        Builder::unix_stream(stream)
            .server(zbus::Guid::generate())?
            .p2p()
            .serve_at(OBJECT_PATH, ProxyInterface::new(api))?
            .build()
            .await
    };
    let connection = match connection.await {
        Ok(connection) => connection,
        Err(error) => {
            tracing::debug!(error = %error, "Control connection failed");
            return;
        }
    };
    // The stream ends when the peer disconnects; the object server answers calls meanwhile.
    let mut messages = zbus::MessageStream::from(&connection);
    loop {
        tokio::select! {
            message = messages.next() => if message.is_none() { break },
            received = events.recv() => relay(&connection, received).await,
            () = shutdown.cancelled() => break,
        }
    }
    attachments.connection_closed(&connection);
}

impl ControlServer {
    /// Serves `api` and relays what `events` announces, until `shutdown`.
    pub async fn start(
        api: ControlApi,
        events: &EventSender,
        bus: &BusChoice,
        shutdown: CancellationToken,
    ) -> Result<Self, String> {
        let socket_path = socket_path();
        let listener = bind_socket(&socket_path)?;
        let bus = bus_connection(bus, &api).await?;
        let connections = TaskTracker::new();
        if let Some(bus) = &bus {
            connections.spawn(relay_to_bus(
                bus.clone(),
                events.subscribe(),
                shutdown.clone(),
            ));
        }
        let tracker = connections.clone();
        let events = events.clone();
        connections.spawn(async move {
            loop {
                let stream = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(error) => {
                            tracing::error!(error = %error, "Failed to accept a control connection");
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                    () = shutdown.cancelled() => break,
                };
                tracker.spawn(serve_peer(
                    stream,
                    api.clone(),
                    events.subscribe(),
                    shutdown.clone(),
                ));
            }
        });
        Ok(ControlServer {
            socket_path,
            bus,
            connections,
        })
    }

    pub fn socket_path(&self) -> &PathBuf {
        &self.socket_path
    }

    /// Waits for the control connections to end (shutdown must be cancelled first), then
    /// releases the bus name and the socket file.
    pub async fn close(self) {
        self.connections.close();
        self.connections.wait().await;
        drop(self.bus);
        let _ = std::fs::remove_file(&self.socket_path);
    }
}
