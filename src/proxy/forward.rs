//! Forwarding one request to its target over a pooled HTTP/1.1 connection.
//!
//! The wait for response headers is bounded by `--target-timeout` (504), a connection or
//! protocol failure is a 502, and a drain that reaches its deadline first is a 504. For an
//! upgrade (WebSocket) the two upgraded connections are spliced in a task that holds the
//! target's in-flight guard and closes the moment a drain starts.

use std::time::Duration;

use crate::error_chain::error_chain;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::service::target::InflightGuard;

pub type UpstreamClient = Client<HttpConnector, Incoming>;

/// Keep-alive connections per target, enough for a busy app server's worker pool.
const MAX_IDLE_PER_TARGET: usize = 256;
/// Drop pooled connections the app has not used for this long, before it drops them itself.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

pub fn upstream_client() -> UpstreamClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_keepalive(Some(Duration::from_secs(60)));
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(MAX_IDLE_PER_TARGET)
        .pool_idle_timeout(IDLE_TIMEOUT)
        .build(connector)
}

#[derive(Debug)]
pub enum ForwardError {
    /// Could not connect or the target broke the protocol: 502.
    Unreachable(String),
    /// No response headers within the target timeout: 504.
    Timeout,
    /// A drain reached its deadline: 504.
    Drained,
}

impl ForwardError {
    pub fn status(&self) -> StatusCode {
        match self {
            ForwardError::Unreachable(_) => StatusCode::BAD_GATEWAY,
            ForwardError::Timeout | ForwardError::Drained => StatusCode::GATEWAY_TIMEOUT,
        }
    }
}

/// Points the request at the target: absolute URI for the client, HTTP/1.1 upstream.
pub fn retarget<B>(request: &mut Request<B>, authority: &Authority, path: PathAndQuery) {
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(Scheme::HTTP);
    parts.authority = Some(authority.clone());
    parts.path_and_query = Some(path);
    // Infallible: scheme, authority and path are all present and individually valid.
    *request.uri_mut() = Uri::from_parts(parts).expect("complete URI parts");
    *request.version_mut() = Version::HTTP_11;
}

pub async fn send(
    client: &UpstreamClient,
    request: Request<Incoming>,
    timeout: Duration,
    guard: &InflightGuard,
) -> Result<Response<Incoming>, ForwardError> {
    tokio::select! {
        result = tokio::time::timeout(timeout, client.request(request)) => match result {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) => Err(ForwardError::Unreachable(error_chain(&error))),
            Err(_) => Err(ForwardError::Timeout),
        },
        () = guard.tokens().requests.cancelled() => Err(ForwardError::Drained),
    }
}

/// Splices an upgraded client connection to the upgraded target connection until either
/// side closes, a drain starts, or the proxy shuts down.
pub fn spawn_tunnel(
    tasks: &TaskTracker,
    client_side: OnUpgrade,
    target_side: OnUpgrade,
    guard: InflightGuard,
    shutdown: CancellationToken,
) {
    tasks.spawn(async move {
        let drain = guard.tokens().upgrades.clone();
        let (client, target) = match tokio::try_join!(client_side, target_side) {
            Ok(pair) => pair,
            Err(error) => {
                tracing::debug!(error = %error, "Upgrade failed");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut target = TokioIo::new(target);
        tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut client, &mut target) => {}
            () = drain.cancelled() => {}
            () = shutdown.cancelled() => {}
        }
        drop(guard);
    });
}
