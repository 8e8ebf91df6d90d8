//! The accept loops of the HTTP and HTTPS listeners, and their graceful end.
//!
//! Each connection is served in a tracked task: plain HTTP by our own HTTP/1.1 server
//! (`client`); HTTPS by hyper after a TLS handshake (in the connection's task, so a slow
//! client never holds up the accept loop), as HTTP/2 (with WebSockets by extended CONNECT,
//! RFC 8441) or HTTP/1.1 by ALPN. An `acme-tls/1` handshake is a TLS-ALPN-01 validation: it ends once the
//! handshake has shown the challenge certificate.
//! A worker serves the connections it accepts unless it already serves more than its share;
//! then it hands them to another worker (`handoff`).
//! At shutdown the listener stops accepting, each connection is told to finish its current
//! request and close (idle keep-alive connections close at once; a new one that has not
//! sent its first request yet gets `FIRST_REQUEST_GRACE` to do so), and requests in flight
//! get up to `SHUTDOWN_GRACE` to finish.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::proxy::body::proxy_body::ProxyBody;
use crate::proxy::body::request_body::RequestBody;
use crate::proxy::h1::server;
use crate::proxy::listen::handoff::{Handoff, Placed};
use crate::proxy::pipeline::handler::Handler;
use crate::proxy::request_log::{ListenerInfo, Peer};
use crate::tls::{HttpsAcceptor, ACME_TLS_ALPN};

/// How long in-flight requests may run after shutdown begins (Go's limit).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How long a connection accepted before shutdown may take to send its first request.
/// hyper's graceful shutdown closes a connection it has read nothing from at once, which
/// would fail a client that connected just before SIGTERM and whose request is still on its
/// way: `systemctl restart` must not lose it.
pub const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(1);

/// The hyper service of one connection: every request goes through `handler`, and the first
/// one cancels `first_request`.
fn connection_service(
    handler: &Arc<Handler>,
    peer: Peer,
    first_request: &CancellationToken,
) -> impl hyper::service::Service<
    http::Request<Incoming>,
    Response = http::Response<ProxyBody>,
    Error = Infallible,
    Future = impl Future<Output = Result<http::Response<ProxyBody>, Infallible>> + Send,
> + Clone {
    let handler = Arc::clone(handler);
    let first_request = first_request.clone();
    service_fn(move |request| {
        if !first_request.is_cancelled() {
            first_request.cancel();
        }
        let handler = Arc::clone(&handler);
        async move {
            let request = request.map(RequestBody::Hyper);
            Ok::<_, Infallible>(handler.handle(request, peer).await.into_http())
        }
    })
}

/// Runs a served connection to its end. At shutdown a connection that has not sent its first
/// request gets `FIRST_REQUEST_GRACE`, then every connection is asked to finish and close.
async fn drive<C, E>(
    connection: C,
    graceful_shutdown: fn(Pin<&mut C>),
    shutdown: CancellationToken,
    first_request: CancellationToken,
) where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
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
            graceful_shutdown(connection.as_mut());
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(error = %error, "Connection ended with an error");
    }
}

/// Accepts until `shutdown`, serving each connection this worker keeps, and each one another
/// worker hands over, with `serve_connection` in a tracked task; then waits (up to the grace
/// period) for those tasks.
async fn accept_loop<F, Fut>(
    listener: TcpListener,
    mut handoff: Handoff,
    info: ListenerInfo,
    shutdown: CancellationToken,
    serve_connection: F,
) where
    F: Fn(TcpStream, Peer, CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let connections = TaskTracker::new();
    let serve = |placed: Placed| {
        let _ = placed.stream.set_nodelay(true);
        let peer = Peer::new(info, placed.client);
        let served = serve_connection(placed.stream, peer, shutdown.clone());
        let load = placed.load;
        connections.spawn(async move {
            served.await;
            drop(load);
        });
    };
    loop {
        let placed = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, client)) => handoff.place(stream, client),
                Err(error) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    tracing::error!(error = %error, "Failed to accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            moved = handoff.next_moved() => moved,
            () = shutdown.cancelled() => break,
        };
        if let Some(placed) = placed {
            serve(placed);
        }
    }
    drop(listener);
    handoff.close().into_iter().for_each(serve);
    connections.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("Closing active connections");
    }
}

/// Serves plain HTTP on `listener` until `shutdown` is cancelled, then drains its connections.
pub async fn serve(
    listener: TcpListener,
    handoff: Handoff,
    handler: Arc<Handler>,
    info: ListenerInfo,
    shutdown: CancellationToken,
) {
    let notice = server::ShutdownNotice::of(&shutdown);
    accept_loop(listener, handoff, info, shutdown, move |stream, peer, _| {
        server::serve(stream, peer, Arc::clone(&handler), Arc::clone(&notice))
    })
    .await;
}

/// Serves HTTPS on `listener` (HTTP/2 and HTTP/1.1 by ALPN) until `shutdown` is cancelled.
/// Takes any bound listener, so a socket systemd passed in serves the same way.
pub async fn serve_tls(
    listener: TcpListener,
    handoff: Handoff,
    handler: Arc<Handler>,
    info: ListenerInfo,
    acceptor: Arc<HttpsAcceptor>,
    shutdown: CancellationToken,
) {
    accept_loop(
        listener,
        handoff,
        info,
        shutdown,
        move |stream, peer, shutdown| {
            let first_request = CancellationToken::new();
            let service = connection_service(&handler, peer, &first_request);
            let acceptor = Arc::clone(&acceptor);
            async move {
                let mut stream = tokio::select! {
                    result = acceptor.accept(stream) => match result {
                        Ok(stream) => stream,
                        Err(error) => {
                            tracing::debug!(error = %error, "TLS handshake failed");
                            return;
                        }
                    },
                    () = shutdown.cancelled() => return,
                };
                if stream.get_ref().1.alpn_protocol() == Some(ACME_TLS_ALPN) {
                    let _ = stream.shutdown().await;
                    return;
                }
                let mut builder = auto::Builder::new(TokioExecutor::new());
                builder.http1().timer(TokioTimer::new());
                // Advertise RFC 8441 so browsers open WebSockets as streams of this connection.
                builder
                    .http2()
                    .timer(TokioTimer::new())
                    .enable_connect_protocol();
                let connection =
                    builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                drive(
                    connection,
                    |c| c.graceful_shutdown(),
                    shutdown,
                    first_request,
                )
                .await;
            }
        },
    )
    .await;
}
