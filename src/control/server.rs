//! Serving `org.kamal.Proxy1`: always peer-to-peer on the control socket, and on a message
//! bus when one is chosen or (with `--bus auto`) reachable.
//!
//! The socket is created with mode 0660 so that root and the daemon's group may call it.
//! A socket file left by a crashed daemon is replaced; one that a live daemon answers on
//! is not, so two daemons cannot silently steal each other's control socket.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use futures_util::StreamExt;
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use zbus::connection::Builder;

use super::interface::ProxyInterface;
use super::{socket_path, BusChoice, BUS_NAME, OBJECT_PATH};
use crate::router::Router;

pub struct ControlServer {
    socket_path: PathBuf,
    /// Kept alive for as long as the daemon owns the bus name.
    bus: Option<zbus::Connection>,
    connections: TaskTracker,
}

async fn bus_connection(
    choice: &BusChoice,
    router: &Arc<Router>,
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
            .serve_at(OBJECT_PATH, ProxyInterface::new(Arc::clone(router)))?
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

/// Serves one peer until it hangs up or the daemon shuts down.
async fn serve_peer(
    stream: tokio::net::UnixStream,
    router: Arc<Router>,
    shutdown: CancellationToken,
) {
    let connection = async {
        Builder::unix_stream(stream)
            .server(zbus::Guid::generate())?
            .p2p()
            .serve_at(OBJECT_PATH, ProxyInterface::new(router))?
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
            () = shutdown.cancelled() => break,
        }
    }
}

impl ControlServer {
    pub async fn start(
        router: Arc<Router>,
        bus: &BusChoice,
        shutdown: CancellationToken,
    ) -> Result<Self, String> {
        let socket_path = socket_path();
        let listener = bind_socket(&socket_path)?;
        let bus = bus_connection(bus, &router).await?;
        let connections = TaskTracker::new();
        let tracker = connections.clone();
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
                tracker.spawn(serve_peer(stream, Arc::clone(&router), shutdown.clone()));
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
