//! The accept loop of one listener, and its graceful end.
//!
//! Each connection is served by hyper (HTTP/1.1 with upgrades) in a tracked task: at
//! shutdown the listener stops accepting, each connection is told to finish its current
//! request and close (idle keep-alive connections close at once; a new one that has not
//! sent its first request yet gets `FIRST_REQUEST_GRACE` to do so), and requests in flight
//! get up to `SHUTDOWN_GRACE` to finish.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::handler::Handler;
use super::request_log::{ListenerInfo, Peer};

/// How long in-flight requests may run after shutdown begins (Go's limit).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How long a connection accepted before shutdown may take to send its first request.
/// hyper's graceful shutdown closes a connection it has read nothing from at once, which
/// would fail a client that connected just before SIGTERM and whose request is still on its
/// way: `systemctl restart` must not lose it.
const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(1);

/// Serves `listener` until `shutdown` is cancelled, then drains its connections.
pub async fn serve(
    listener: TcpListener,
    handler: Arc<Handler>,
    info: ListenerInfo,
    shutdown: CancellationToken,
) {
    let connections = TaskTracker::new();
    loop {
        let (stream, client) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    tracing::error!(error = %error, "Failed to accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let handler = Arc::clone(&handler);
        // Cancelled when the first request arrives (see FIRST_REQUEST_GRACE).
        let first_request = CancellationToken::new();
        let request_seen = first_request.clone();
        let service = service_fn(move |request| {
            let handler = Arc::clone(&handler);
            if !request_seen.is_cancelled() {
                request_seen.cancel();
            }
            async move {
                Ok::<_, Infallible>(
                    handler
                        .handle(
                            request,
                            Peer {
                                listener: info,
                                client,
                            },
                        )
                        .await,
                )
            }
        });
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                () = shutdown.cancelled() => 'shutdown: {
                    if !first_request.is_cancelled() {
                        tokio::select! {
                            result = connection.as_mut() => break 'shutdown result,
                            () = first_request.cancelled() => {}
                            () = tokio::time::sleep(FIRST_REQUEST_GRACE) => {}
                        }
                    }
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = result {
                tracing::debug!(error = %error, "Connection ended with an error");
            }
        });
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("Closing active connections");
    }
}
