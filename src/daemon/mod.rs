//! The daemon: startup and shutdown order.
//!
//! Start: logging, the rustls crypto provider, listeners taken from systemd or bound (so a
//! busy port fails before anything else happens), saved state and deploy locks restored,
//! the data plane's worker threads started (one per core, see `data_plane`) and the metrics
//! accept loop, control interface served, `Server started`
//! and `READY=1` (then `STATUS=` and `WATCHDOG=1` while running). The daemon owns the shared
//! handles (metrics, event channel, locks) and passes them down; nothing is global.
//! Stop (SIGTERM/SIGINT): `STOPPING=1`, stop accepting, let in-flight requests finish
//! (10 s at most), close upgraded connections and the control interface, stop health
//! checks, exit 0. Under socket activation new connections wait in systemd's socket
//! meanwhile, so a restart refuses none.
//! Every task is spawned under a tracker and awaited; cancellation flows from one root token.

mod config;
mod data_plane;
mod listeners;
mod notify;
mod resolved_names;
mod socket_activation;

pub use config::RunConfig;
use listeners::{ListenerSource, Listeners};

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::control::{Attachments, ControlApi, ControlServer};
use crate::lock::{self, DeployLocks};
use crate::logging::RequestOutput;
use crate::metrics::{self, Metrics};
use crate::proxy::ListenerInfo;
use crate::router::Router;
use crate::service::target_resolver::TargetResolver;
use crate::state::{ResolvedNames, StateFile};
use crate::tls::acme::{AcmeConfig, AcmeManager};
use crate::tls::HttpsAcceptor;

/// Watches SIGTERM and SIGINT from the moment it is called; the future completes at the
/// first. It must be called before readiness is announced: until a signal is watched, its
/// default action kills the process, and a supervisor may send it as soon as we are ready.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, String> {
    let mut terminate =
        signal(SignalKind::terminate()).map_err(|e| format!("cannot watch SIGTERM: {e}"))?;
    let mut interrupt =
        signal(SignalKind::interrupt()).map_err(|e| format!("cannot watch SIGINT: {e}"))?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    })
}

fn into_tokio(listeners: Vec<std::net::TcpListener>) -> Result<Vec<TcpListener>, String> {
    listeners
        .into_iter()
        .map(|l| TcpListener::from_std(l).map_err(|e| format!("cannot use listener: {e}")))
        .collect()
}

/// The port the first listener got (the kernel's choice when asked for port 0).
fn first_port(listeners: &[std::net::TcpListener]) -> Option<u16> {
    listeners
        .first()
        .and_then(|l| l.local_addr().ok())
        .map(|address| address.port())
}

/// The deploy locks kept beside the state file; a file that cannot be read is logged and
/// replaced by the next lock change.
fn restore_locks(state_directory: &std::path::Path) -> DeployLocks {
    let (locks, outcome) = DeployLocks::load(state_directory);
    match outcome {
        lock::LoadOutcome::Missing => {}
        lock::LoadOutcome::Loaded(count) => {
            tracing::info!(path = %locks.path().display(), locks = count, "Restored deploy locks")
        }
        lock::LoadOutcome::Unreadable(error) => {
            tracing::error!(path = %locks.path().display(), error = %error, "Failed to read deploy locks; starting with none")
        }
    }
    locks
}

/// systemd's sockets decide where the proxy listens; flags that say otherwise would be
/// silently ignored, and an operator who set them must hear it.
fn warn_of_ignored_listen_flags(config: &RunConfig, http_port: u16, https_port: u16) {
    let mut ignored = Vec::new();
    if config.http_port != http_port {
        ignored.push(format!("--http-port {}", config.http_port));
    }
    if config.https_port != https_port {
        ignored.push(format!("--https-port {}", config.https_port));
    }
    if !config.bind.is_empty() {
        ignored.push("--bind".to_string());
    }
    if !ignored.is_empty() {
        tracing::warn!(
            http = http_port,
            https = https_port,
            ignored = %ignored.join(", "),
            "Listening on the sockets systemd passed; change ListenStream= in the socket units to move them"
        );
    }
}

pub async fn run(config: RunConfig) -> Result<(), String> {
    let outputs = crate::logging::init(config.debug, config.log_format);
    let (log, mirror) = if config.log_requests {
        (outputs.requests, Some(outputs.mirror))
    } else {
        (RequestOutput::Off, None)
    };
    crate::tls::install_crypto_provider();
    let Listeners {
        http,
        https,
        source,
    } = Listeners::take_or_bind(&config.bind, config.http_port, config.https_port)?;
    let http_port = first_port(&http).unwrap_or(config.http_port);
    let https_port = first_port(&https).unwrap_or(config.https_port);
    if source == ListenerSource::Systemd {
        warn_of_ignored_listen_flags(&config, http_port, https_port);
    }
    if https.is_empty() {
        tracing::warn!(
            "systemd passed no https socket (FileDescriptorName=https); HTTPS is not served"
        );
    }

    let metrics_listeners = match config.metrics_port {
        Some(port) => listeners::bind(&config.bind, port)?,
        None => Vec::new(),
    };

    let events = crate::event::channel();
    let state_file = StateFile::locate();
    let locks = Arc::new(restore_locks(state_file.directory()));
    let root = CancellationToken::new();
    let acme = AcmeConfig {
        cache_root: state_file.directory().join("certs"),
        ca_certificate: config.acme_ca_cert.clone(),
        challenges: config.acme_challenges.clone(),
    };
    let acme = Arc::new(AcmeManager::new(acme, Arc::default(), root.child_token()));
    let resolver = Arc::new(TargetResolver::default());
    let names = ResolvedNames::beside(&state_file);
    resolved_names::restore(&resolver, &names);
    let router = Arc::new(Router::new(
        state_file,
        events.clone(),
        acme,
        Arc::clone(&resolver),
    ));
    router.restore().await;

    let metrics = Arc::new(Metrics::default());
    let sockets = data_plane::Sockets {
        http,
        https,
        http_info: ListenerInfo {
            port: http_port,
            scheme: "http",
            https_port,
            log,
            mirror,
        },
        https_info: ListenerInfo {
            port: https_port,
            scheme: "https",
            https_port,
            log,
            mirror,
        },
    };
    let shared = data_plane::Shared {
        router: Arc::clone(&router),
        metrics: Arc::clone(&metrics),
        tls: Arc::new(HttpsAcceptor::new(Arc::clone(&router))),
    };
    let data_plane = data_plane::DataPlane::start(&sockets, &shared, &root)?;
    drop(sockets);
    let background = TaskTracker::new();
    background.spawn(resolved_names::keep(
        Arc::clone(&resolver),
        names,
        Arc::clone(&router),
        root.child_token(),
    ));
    let metrics_port = first_port(&metrics_listeners);
    let metrics_listeners = into_tokio(metrics_listeners)?;
    for listener in metrics_listeners {
        background.spawn(metrics::serve(
            listener,
            Arc::clone(&metrics),
            root.child_token(),
        ));
    }
    let api = ControlApi {
        router: Arc::clone(&router),
        locks,
        attachments: Arc::new(Attachments::new(resolver, outputs.mirror)),
    };
    let control = match ControlServer::start(api, &events, &config.bus, root.child_token()).await {
        Ok(control) => control,
        Err(error) => {
            root.cancel();
            background.close();
            background.wait().await;
            data_plane.join().await;
            return Err(error);
        }
    };
    let signal = shutdown_signal();
    let systemd_sockets = source == ListenerSource::Systemd;
    tracing::info!(http = http_port, https = https_port, metrics = metrics_port, socket = %control.socket_path().display(), systemd_sockets, "Server started");
    outputs.mirror.started();
    notify::ready(&router);
    let supervisor = tokio::spawn(notify::supervise(Arc::clone(&router), root.child_token()));

    let signal = match signal {
        Ok(signalled) => {
            signalled.await;
            Ok(())
        }
        Err(error) => Err(error),
    };
    notify::stopping();
    tracing::info!("Server stopping");
    root.cancel();
    background.close();
    background.wait().await;
    data_plane.join().await;
    // The supervisor only ends by cancellation; a panic in it is already reported.
    let _ = supervisor.await;
    control.close().await;
    router.shutdown().await;
    tracing::info!("Server stopped");
    signal
}
