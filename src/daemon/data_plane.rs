//! `DataPlane`: the proxy's worker threads, one per core, each running a single-threaded
//! runtime with its own accept loops, upstream connection pool and upgraded connections.
//!
//! Why not one multi-threaded runtime: on a busy proxy the CPU goes to moving a request
//! between tasks, and with work stealing a request, its client connection and its pooled
//! upstream connection are woken on different threads, paying for cross-thread wake-ups and
//! context switches (the profile showed the kernel's scheduler above any of our code). A
//! worker keeps a connection for its whole life, so wake-ups stay on one thread, as in
//! nginx's worker processes. Every worker accepts on the same listening sockets; the kernel
//! hands each connection to one of them, and a worker ahead of the others hands it on
//! (`proxy::Handoff`). The router, metrics and TLS acceptor are shared
//! (`Arc`, read without locks on the request path); the control plane, health checks and
//! ACME stay on the main runtime.

use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::Metrics;
use crate::proxy::{self, Handler, Handoff, ListenerInfo, WorkerLoads};
use crate::router::Router;
use crate::tls::HttpsAcceptor;

/// The sockets the workers serve, and how each kind is logged.
pub struct Sockets {
    pub http: Vec<std::net::TcpListener>,
    pub https: Vec<std::net::TcpListener>,
    pub http_info: ListenerInfo,
    pub https_info: ListenerInfo,
}

/// What every worker shares.
#[derive(Clone)]
pub struct Shared {
    pub router: Arc<Router>,
    pub metrics: Arc<Metrics>,
    pub tls: Arc<HttpsAcceptor>,
}

pub struct DataPlane {
    workers: Vec<JoinHandle<()>>,
}

/// A worker's copy of a listening socket, and its end of that socket's handoff.
type Listener = (std::net::TcpListener, Handoff);

/// Each worker's copies of `listeners`, with their handoffs: one list per worker.
fn share(
    listeners: &[std::net::TcpListener],
    loads: &Arc<WorkerLoads>,
    workers: usize,
) -> Result<Vec<Vec<Listener>>, String> {
    let mut shared: Vec<Vec<Listener>> = (0..workers).map(|_| Vec::new()).collect();
    for listener in listeners {
        for (copies, handoff) in shared.iter_mut().zip(Handoff::for_workers(loads)) {
            let copy = listener
                .try_clone()
                .map_err(|e| format!("cannot share a listening socket with a worker: {e}"))?;
            copies.push((copy, handoff));
        }
    }
    Ok(shared)
}

/// One worker's life: serve until `shutdown`, drain, then close upgraded connections.
async fn work(
    http: Vec<Listener>,
    https: Vec<Listener>,
    sockets: (ListenerInfo, ListenerInfo),
    shared: Shared,
    shutdown: CancellationToken,
) {
    let handler = Arc::new(Handler::new(
        shared.router,
        shared.metrics.worker(),
        shutdown.clone(),
    ));
    let flusher = tokio::spawn(crate::logging::flush_periodically(shutdown.clone()));
    tokio::spawn(Arc::clone(&handler).sweep_idle_upstreams(shutdown.clone()));
    let loops = TaskTracker::new();
    let tokio_listener = |(listener, handoff)| match TcpListener::from_std(listener) {
        Ok(listener) => Some((listener, handoff)),
        Err(error) => {
            tracing::error!(error = %error, "A worker cannot use a listening socket");
            None
        }
    };
    for (listener, handoff) in http.into_iter().filter_map(tokio_listener) {
        loops.spawn(proxy::serve(
            listener,
            handoff,
            Arc::clone(&handler),
            sockets.0,
            shutdown.clone(),
        ));
    }
    for (listener, handoff) in https.into_iter().filter_map(tokio_listener) {
        loops.spawn(proxy::serve_tls(
            listener,
            handoff,
            Arc::clone(&handler),
            sockets.1,
            Arc::clone(&shared.tls),
            shutdown.clone(),
        ));
    }
    loops.close();
    loops.wait().await;
    handler.close_tunnels().await;
    // Last: lines of requests that ended while draining.
    let _ = flusher.await;
    crate::logging::flush();
}

impl DataPlane {
    /// Starts one worker per core; they serve until `shutdown` is cancelled.
    pub fn start(
        sockets: &Sockets,
        shared: &Shared,
        shutdown: &CancellationToken,
    ) -> Result<Self, String> {
        let count = std::thread::available_parallelism().map_or(1, |n| n.get());
        let loads = WorkerLoads::new(count);
        let http = share(&sockets.http, &loads, count)?;
        let https = share(&sockets.https, &loads, count)?;
        let mut workers = Vec::with_capacity(count);
        for (index, (http, https)) in http.into_iter().zip(https).enumerate() {
            // I/O and timers only: the signal and process drivers would take a lock on
            // every park, and signals are the main runtime's business.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .build()
                .map_err(|e| format!("cannot start a worker runtime: {e}"))?;
            let infos = (sockets.http_info, sockets.https_info);
            let (shared, shutdown) = (shared.clone(), shutdown.child_token());
            let worker = std::thread::Builder::new()
                .name(format!("kamal-proxy-worker-{index}"))
                .spawn(move || runtime.block_on(work(http, https, infos, shared, shutdown)))
                .map_err(|e| format!("cannot start a worker thread: {e}"))?;
            workers.push(worker);
        }
        Ok(DataPlane { workers })
    }

    /// Waits, off the async runtime, until every worker has drained and stopped.
    pub async fn join(self) {
        let joined = tokio::task::spawn_blocking(move || {
            for worker in self.workers {
                // A worker that panicked has already been reported by the panic hook.
                let _ = worker.join();
            }
        });
        let _ = joined.await;
    }
}
