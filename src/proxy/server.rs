//! The accept loop of one listener, and its graceful end.
//!
//! Each connection is served by hyper (HTTP/1.1 with upgrades) in a tracked task: at
//! shutdown the listener stops accepting, each connection is told to finish its current
//! request and close (idle keep-alive connections close at once), and requests in flight
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
        let service = service_fn(move |request| {
            let handler = Arc::clone(&handler);
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
        // hyper answers 431 to a request head over its read buffer limit (about 400 KiB).
        // Go allows 1 MiB, but raising the limit lets every busy upload's read buffer grow
        // to it too (measured: about 1.7 MiB more per connection), and heads that large
        // are refused long before by browsers and CDNs anyway.
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                () = shutdown.cancelled() => {
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
