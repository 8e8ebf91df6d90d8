//! The daemon: startup and shutdown order.
//!
//! Start: logging, listeners bound (so a busy port fails before anything else happens),
//! saved state restored, accept loops started, control interface served, `Server started`.
//! Stop (SIGTERM/SIGINT): stop accepting, let in-flight requests finish (10 s at most),
//! close upgraded connections and the control interface, stop health checks, exit 0.
//! Every task is spawned under a tracker and awaited; cancellation flows from one root token.

mod config;
mod listeners;

pub use config::RunConfig;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::control::ControlServer;
use crate::proxy::{self, Handler, ListenerInfo};
use crate::router::Router;
use crate::state::StateFile;

async fn shutdown_signal() -> Result<(), String> {
    let mut terminate =
        signal(SignalKind::terminate()).map_err(|e| format!("cannot watch SIGTERM: {e}"))?;
    let mut interrupt =
        signal(SignalKind::interrupt()).map_err(|e| format!("cannot watch SIGINT: {e}"))?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    Ok(())
}

fn into_tokio(listeners: Vec<std::net::TcpListener>) -> Result<Vec<TcpListener>, String> {
    listeners
        .into_iter()
        .map(|l| TcpListener::from_std(l).map_err(|e| format!("cannot use listener: {e}")))
        .collect()
}

pub async fn run(config: RunConfig) -> Result<(), String> {
    crate::logging::init(config.debug);
    let http = into_tokio(listeners::bind(&config.bind, config.http_port)?)?;
    let http_port = http
        .first()
        .and_then(|l| l.local_addr().ok())
        .map_or(config.http_port, |address| address.port());

    let router = Arc::new(Router::new(StateFile::locate()));
    router.restore().await;

    let root = CancellationToken::new();
    let handler = Arc::new(Handler::new(Arc::clone(&router), root.child_token()));
    let listener_tasks = TaskTracker::new();
    let info = ListenerInfo {
        port: http_port,
        scheme: "http",
    };
    for listener in http {
        listener_tasks.spawn(proxy::serve(
            listener,
            Arc::clone(&handler),
            info,
            root.child_token(),
        ));
    }
    let control =
        match ControlServer::start(Arc::clone(&router), &config.bus, root.child_token()).await {
            Ok(control) => control,
            Err(error) => {
                root.cancel();
                listener_tasks.close();
                listener_tasks.wait().await;
                return Err(error);
            }
        };
    if let Some(port) = config.metrics_port {
        tracing::warn!(
            metrics_port = port,
            "Metrics are not available in this build yet; --metrics-port is ignored"
        );
    }
    tracing::info!(http = http_port, https = config.https_port, socket = %control.socket_path().display(), "Server started");

    let signal = shutdown_signal().await;
    tracing::info!("Server stopping");
    root.cancel();
    listener_tasks.close();
    listener_tasks.wait().await;
    handler.close_tunnels().await;
    control.close().await;
    router.shutdown().await;
    tracing::info!("Server stopped");
    signal
}
