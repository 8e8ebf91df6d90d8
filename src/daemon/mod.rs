//! The daemon: startup and shutdown order.
//!
//! Start: logging, listeners taken from systemd or bound (so a busy port fails before
//! anything else happens), saved state restored, accept loops started, control interface
//! served, `Server started` and `READY=1` (then `STATUS=` and `WATCHDOG=1` while running).
//! Stop (SIGTERM/SIGINT): `STOPPING=1`, stop accepting, let in-flight requests finish
//! (10 s at most), close upgraded connections and the control interface, stop health
//! checks, exit 0. Under socket activation new connections wait in systemd's socket
//! meanwhile, so a restart refuses none.
//! Every task is spawned under a tracker and awaited; cancellation flows from one root token.

mod config;
mod listeners;
mod notify;
mod socket_activation;

pub use config::RunConfig;
use listeners::{ListenerSource, Listeners};

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
    let log = crate::logging::init(config.debug, config.log_format);
    let Listeners {
        http,
        https,
        source,
    } = Listeners::take_or_bind(&config.bind, config.http_port)?;
    let http = into_tokio(http)?;
    let http_port = http
        .first()
        .and_then(|l| l.local_addr().ok())
        .map_or(config.http_port, |address| address.port());
    // No TLS listener yet: systemd's https socket is held open (so the socket unit stays
    // valid and the descriptor is ready for the TLS acceptor), but not served.
    if !https.is_empty() {
        tracing::warn!(
            sockets = https.len(),
            "TLS is not available in this build yet; the https socket passed by systemd is held but not served"
        );
    }

    let router = Arc::new(Router::new(StateFile::locate()));
    router.restore().await;

    let root = CancellationToken::new();
    let handler = Arc::new(Handler::new(Arc::clone(&router), root.child_token()));
    let listener_tasks = TaskTracker::new();
    let info = ListenerInfo {
        port: http_port,
        scheme: "http",
        log,
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
    let systemd_sockets = source == ListenerSource::Systemd;
    tracing::info!(http = http_port, https = config.https_port, socket = %control.socket_path().display(), systemd_sockets, "Server started");
    notify::ready(&router);
    let supervisor = tokio::spawn(notify::supervise(Arc::clone(&router), root.child_token()));

    let signal = shutdown_signal().await;
    notify::stopping();
    tracing::info!("Server stopping");
    root.cancel();
    listener_tasks.close();
    listener_tasks.wait().await;
    drop(https);
    // The supervisor only ends by cancellation; a panic in it is already reported.
    let _ = supervisor.await;
    handler.close_tunnels().await;
    control.close().await;
    router.shutdown().await;
    tracing::info!("Server stopped");
    signal
}
