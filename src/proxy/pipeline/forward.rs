//! Forwarding one request to its target over a pooled HTTP/1.1 connection.
//!
//! The request body is buffered first and the response body after, when the service asks
//! for it. The wait for response headers is bounded by `--target-timeout` (504), a
//! connection or protocol failure is a 502, and a drain that reaches its deadline first is
//! a 504. Every way forwarding can fail is a `ForwardError`, and its status is decided
//! here, in one place (Go's `handleProxyError`). For an upgrade (WebSocket) the two
//! upgraded connections are spliced in a task that holds the target's in-flight guard and
//! closes the moment a drain starts.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::Poll;

use crate::error_chain::error_chain;
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{StatusCode, Uri, Version};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::proxy::body::proxy_response::ProxyResponse;
use crate::proxy::body::relay_body::{RelayBody, RelayError, ResponseBody};
use crate::proxy::body::request_body::{RequestBody, RequestBodyError};
use crate::proxy::body::request_buffer::{self, RequestBufferError};
use crate::proxy::body::response_buffer::{self, ResponseBufferError};
use crate::proxy::body::spill_buffer::SpillDir;
use crate::proxy::body::spill_buffer::{FillError, SpillError};
use crate::proxy::h1::client::upstream_body::TargetTunnel;
use crate::proxy::h1::client::upstream_connection::ExchangeError;
use crate::proxy::h1::client::upstream_pool::{UpstreamError, UpstreamPool};
use crate::proxy::pipeline::added_headers::AddedHeaders;
use crate::proxy::pipeline::client_upgrade::ClientUpgrade;
use crate::proxy::pipeline::deadline_timers::DeadlineTimers;
use crate::proxy::request_log::CLIENT_CLOSED_REQUEST;
use crate::service::options::TargetOptions;
use crate::service::target::{InflightGuard, Target};

#[derive(Debug)]
pub enum ForwardError {
    /// Could not connect or the target broke the protocol: 502.
    Unreachable(String),
    /// No response headers within the target timeout: 504.
    Timeout,
    /// A drain reached its deadline: 504.
    Drained,
    /// The client's body was malformed (bad chunked encoding): 400.
    MalformedRequest,
    /// The client went away before its request was read: 499, for the log only.
    ClientGone,
    /// A buffered request body over `--max-request-body`: 413.
    RequestTooLarge,
    /// A buffered response body over `--max-response-body`: 500.
    ResponseTooLarge,
    /// A spill file could not be written or read: 500.
    Spill(String),
}

impl ForwardError {
    pub fn status(&self) -> StatusCode {
        match self {
            ForwardError::Unreachable(_) => StatusCode::BAD_GATEWAY,
            ForwardError::Timeout | ForwardError::Drained => StatusCode::GATEWAY_TIMEOUT,
            ForwardError::MalformedRequest => StatusCode::BAD_REQUEST,
            ForwardError::ClientGone => CLIENT_CLOSED_REQUEST,
            ForwardError::RequestTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ForwardError::ResponseTooLarge | ForwardError::Spill(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// The log line for failures an operator should see; the client's own faults and
    /// configured limits are routine and only show in the request log.
    pub fn log(&self, service: &str, target: &str) {
        match self {
            ForwardError::Unreachable(reason) => {
                tracing::error!(service, target, error = %reason, "Error while proxying")
            }
            ForwardError::Drained => {
                tracing::info!(service, target, "Request cancelled due to draining")
            }
            ForwardError::Spill(reason) => {
                tracing::error!(service, target, error = %reason, "Error while buffering")
            }
            ForwardError::Timeout
            | ForwardError::MalformedRequest
            | ForwardError::ClientGone
            | ForwardError::RequestTooLarge
            | ForwardError::ResponseTooLarge => {}
        }
    }

    /// A failure reading the client's body: a malformed body, or the client stopped
    /// sending.
    pub fn from_client_body(error: &RequestBodyError) -> Self {
        if error.is_malformed() {
            ForwardError::MalformedRequest
        } else {
            ForwardError::ClientGone
        }
    }

    /// A request body that could not be buffered: the client's fault, or over the limit,
    /// or the spill file's.
    fn from_request_buffer(error: RequestBufferError) -> Self {
        match error {
            FillError::Body(error) => Self::from_client_body(&error),
            FillError::Spill(SpillError::TooLarge(_)) => ForwardError::RequestTooLarge,
            FillError::Spill(error) => ForwardError::Spill(error_chain(&error)),
        }
    }

    /// A response body that could not be buffered: the target's fault, or over the limit,
    /// or the spill file's.
    fn from_response_buffer(error: ResponseBufferError) -> Self {
        match error {
            FillError::Body(error) => ForwardError::Unreachable(error_chain(&error)),
            FillError::Spill(SpillError::TooLarge(_)) => ForwardError::ResponseTooLarge,
            FillError::Spill(error) => ForwardError::Spill(error_chain(&error)),
        }
    }

    /// A failed exchange: the body we were sending may be what failed, and then whose fault
    /// it was decides the status; otherwise the target is to blame.
    fn from_exchange(error: &UpstreamError) -> Self {
        match error {
            UpstreamError::Exchange(ExchangeError::ClientBody(RelayError::Stream(client))) => {
                Self::from_client_body(client)
            }
            UpstreamError::Exchange(ExchangeError::ClientBody(RelayError::Spill(spill))) => {
                ForwardError::Spill(error_chain(spill))
            }
            _ => ForwardError::Unreachable(error_chain(error)),
        }
    }
}

/// A request on its way to the target: its head, lent by the handler, which keeps it (a
/// head moved into each layer's future was copied at every step), and its body.
pub struct Outgoing<'a> {
    pub head: &'a mut Parts,
    pub body: RequestBody,
}

/// Points the request at the target's path: origin-form URI, HTTP/1.1 upstream (the
/// connection, chosen by the pool, says which target).
pub fn retarget(head: &mut Parts, path: PathAndQuery) {
    head.uri = Uri::from(path);
    head.version = Version::HTTP_11;
}

/// Sends `request`, with the headers the proxy `added`, to the target and returns its
/// response, buffering either body as `options` say; a drain deadline cuts the whole
/// exchange short.
pub async fn send(
    pool: &UpstreamPool,
    deadlines: &DeadlineTimers,
    request: Outgoing<'_>,
    options: &TargetOptions,
    spill_dir: &Arc<SpillDir>,
    guard: &InflightGuard,
    added: &AddedHeaders<'_>,
) -> Result<ProxyResponse<ResponseBody>, ForwardError> {
    let target = guard.target();
    // The exchange first: the drain's wait (which takes its thread's bell's lock) is set
    // up only once the exchange has to wait for the target.
    // Both are polled where they are pinned: the exchange's future is large, and
    // `select!` would copy it in.
    let exchange = exchange(pool, deadlines, target, request, options, spill_dir, added);
    let mut exchanged = pin!(exchange);
    let mut drained = pin!(guard.tokens().until_cut());
    poll_fn(|cx| match exchanged.as_mut().poll(cx) {
        Poll::Ready(result) => Poll::Ready(result),
        Poll::Pending => drained
            .as_mut()
            .poll(cx)
            .map(|()| Err(ForwardError::Drained)),
    })
    .await
}

async fn exchange(
    pool: &UpstreamPool,
    deadlines: &DeadlineTimers,
    target: &Target,
    request: Outgoing<'_>,
    options: &TargetOptions,
    spill_dir: &Arc<SpillDir>,
    added: &AddedHeaders<'_>,
) -> Result<ProxyResponse<ResponseBody>, ForwardError> {
    let Outgoing { head, body } = request;
    let body = if options.buffer_requests {
        request_buffer::buffer(head, body, options, spill_dir)
            .await
            .map_err(ForwardError::from_request_buffer)?
    } else {
        RelayBody::Streamed(body)
    };
    let mut deadline = deadlines.after(options.response_timeout);
    let mut sent = pin!(pool.send(target, head, body, added));
    let sent = poll_fn(|cx| match sent.as_mut().poll(cx) {
        Poll::Ready(sent) => Poll::Ready(Some(sent)),
        Poll::Pending => Pin::new(&mut deadline).poll(cx).map(|()| None),
    });
    let response = match sent.await {
        Some(Ok(response)) => response,
        Some(Err(error)) => return Err(ForwardError::from_exchange(&error)),
        None => return Err(ForwardError::Timeout),
    };
    if options.buffer_responses && response.status() != StatusCode::SWITCHING_PROTOCOLS {
        response_buffer::buffer(response, options, spill_dir)
            .await
            .map_err(ForwardError::from_response_buffer)
    } else {
        Ok(response.map(RelayBody::Streamed))
    }
}

/// The target's upgraded connection, from a 101 response (never buffered).
pub fn take_tunnel(body: &mut ResponseBody) -> Option<TargetTunnel> {
    match body {
        RelayBody::Streamed(body) => body.take_tunnel(),
        RelayBody::Buffered(_) => None,
    }
}

/// Relays between the two sides of an upgrade, once each has what the other sent ahead.
async fn splice<C>(
    mut client: C,
    client_read_ahead: &[u8],
    target: TargetTunnel,
) -> io::Result<(u64, u64)>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let mut stream = target.stream;
    stream.write_all(client_read_ahead).await?;
    client.write_all(&target.read_ahead).await?;
    tokio::io::copy_bidirectional(&mut client, &mut stream).await
}

/// Splices an upgraded client connection to the upgraded target connection until either
/// side closes, a drain starts, or the proxy shuts down. What the target sent with its 101
/// goes to the client first.
pub fn spawn_tunnel(
    tasks: &TaskTracker,
    client_side: ClientUpgrade,
    target: TargetTunnel,
    guard: InflightGuard,
    shutdown: CancellationToken,
) {
    tasks.spawn(async move {
        let drain = guard.tokens().upgrades.clone();
        let splice = async move {
            match client_side {
                ClientUpgrade::Hyper(upgrade) => {
                    let client = TokioIo::new(upgrade.await.map_err(io::Error::other)?);
                    splice(client, &[], target).await
                }
                ClientUpgrade::Plain(upgrade) => {
                    let client = upgrade.await.map_err(io::Error::other)?;
                    splice(client.stream, &client.read_ahead, target).await
                }
            }
        };
        tokio::select! {
            result = splice => {
                if let Err(error) = result {
                    tracing::debug!(error = %error, "Tunnel ended with an error");
                }
            }
            () = drain.cancelled() => {}
            () = shutdown.cancelled() => {}
        }
        drop(guard);
    });
}
