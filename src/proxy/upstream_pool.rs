//! `UpstreamPool`: this worker thread's keep-alive HTTP/1.1 connections to the targets.
//!
//! Each data-plane thread owns one pool (in its `Handler`), so a connection's task, the
//! request that uses it and the client connection all run on the same thread: no
//! cross-thread wake-ups, and the lock is never contended. hyper-util's general-purpose
//! pool cost more per request than everything else in forwarding together (a checkout
//! future, a SipHash map, a spawned task per response to wait for the connection to idle).
//!
//! A connection goes back to the pool only when its response body has been read to the end
//! (`UpstreamBody`); a body dropped half-way closes it, as a reused connection would
//! otherwise deliver the rest of the old body to the next request. An idle connection is
//! taken newest first (warm, and the oldest age out), must be ready at once (one still
//! finishing a request upload is left for later), and is dropped after `IDLE_TIMEOUT` or
//! once the target closed it. A request that met a connection the target had just closed
//! is sent again on a new one: when hyper says it was never sent, or when it is a bodyless
//! idempotent request on a connection that had been idle a while (app servers close idle
//! keep-alive connections after a few seconds, and the close can cross the request on the
//! wire; Go's transport retries these too). Only those requests pay for the copy.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::uri::Authority;
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::relay_body::RelayBody;
use super::spill_buffer::SpilledBody;
use super::upstream_body::UpstreamBody;

/// Idle connections kept per target, enough for a busy app server's worker pool.
const MAX_IDLE_PER_TARGET: usize = 256;
/// Drop connections the app has not used for this long, before it drops them itself.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often closed and expired connections are swept out.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(30);
/// A connection idle at least this long may be being closed by the target: a bodyless
/// idempotent request sent on it keeps a copy to send again. Busy connections are reused
/// within microseconds and never pay for the copy.
const REPLAY_AFTER_IDLE: Duration = Duration::from_secs(1);
/// TCP keep-alive probes on upstream connections, to notice a target host that vanished.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

struct Idle {
    sender: SendRequest<RelayBody>,
    since: Instant,
}

impl Idle {
    fn usable(&self, now: Instant) -> bool {
        !self.sender.is_closed() && now.duration_since(self.since) < IDLE_TIMEOUT
    }
}

/// Keyed by the target's `host:port` text. FNV-1a rather than SipHash: the keys are a
/// handful of short strings the operator chose, hashed twice per request.
#[derive(Default)]
struct Idles {
    by_target: HashMap<Box<str>, Vec<Idle>, BuildHasherDefault<Fnv1a>>,
}

struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv1a {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A pool shared by a thread's handler and the bodies it returns.
#[derive(Clone, Default)]
pub struct UpstreamPool {
    idle: Arc<Mutex<Idles>>,
}

/// Why an exchange with a target failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("dial tcp {target}: {source}")]
    Connect {
        target: Authority,
        #[source]
        source: io::Error,
    },
    #[error("the target closed a new connection before the request was sent")]
    ClosedBeforeSending,
    #[error(transparent)]
    Exchange(#[from] hyper::Error),
}

/// A connection lent to one exchange; `UpstreamBody` hands it back.
pub struct Checkin {
    pool: UpstreamPool,
    target: Authority,
    sender: SendRequest<RelayBody>,
}

impl Checkin {
    pub fn give_back(self) {
        let mut idle = self.pool.lock();
        let list = match idle.by_target.get_mut(self.target.as_str()) {
            Some(list) => list,
            None => idle
                .by_target
                .entry(self.target.as_str().into())
                .or_default(),
        };
        if list.len() < MAX_IDLE_PER_TARGET {
            list.push(Idle {
                sender: self.sender,
                since: Instant::now(),
            });
        }
    }
}

impl UpstreamPool {
    fn lock(&self) -> std::sync::MutexGuard<'_, Idles> {
        // A panic while holding the lock cannot leave the lists inconsistent.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends `request` (origin-form URI, `Host` set) to `target` and returns the response,
    /// whose body returns the connection to the pool when read to the end.
    pub async fn send(
        &self,
        target: &Authority,
        request: Request<RelayBody>,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let mut request = request;
        if let Some((sender, idle_for)) = self.take_ready(target) {
            let replay = if idle_for >= REPLAY_AFTER_IDLE {
                replayable_copy(&request)
            } else {
                None
            };
            match self.exchange(target, sender, request).await {
                Ok(response) => return Ok(response),
                Err(Ok(unsent)) => request = unsent,
                Err(Err(UpstreamError::Exchange(error))) if error.is_incomplete_message() => {
                    match replay {
                        Some(copy) => {
                            tracing::debug!(target = %target, "Target closed an idle connection as a request was sent; sending it again");
                            request = copy;
                        }
                        None => return Err(UpstreamError::Exchange(error)),
                    }
                }
                Err(Err(error)) => return Err(error),
            }
        }
        let sender = Box::pin(connect(target)).await?;
        match self.exchange(target, sender, request).await {
            Ok(response) => Ok(response),
            Err(Ok(_unsent)) => Err(UpstreamError::ClosedBeforeSending),
            Err(Err(error)) => Err(error),
        }
    }

    /// `Err(Ok(request))` when the connection closed before the request went out.
    async fn exchange(
        &self,
        target: &Authority,
        mut sender: SendRequest<RelayBody>,
        request: Request<RelayBody>,
    ) -> Result<Response<UpstreamBody>, Result<Request<RelayBody>, UpstreamError>> {
        match sender.try_send_request(request).await {
            Ok(response) => {
                // An upgraded connection belongs to the tunnel from now on.
                let checkin =
                    (response.status() != StatusCode::SWITCHING_PROTOCOLS).then(|| Checkin {
                        pool: self.clone(),
                        target: target.clone(),
                        sender,
                    });
                Ok(response.map(|body| UpstreamBody::new(body, checkin)))
            }
            Err(mut error) => match error.take_message() {
                Some(unsent) => Err(Ok(unsent)),
                None => Err(Err(UpstreamError::Exchange(error.into_error()))),
            },
        }
    }

    /// The newest idle connection to `target` that can take a request right now, and how
    /// long it was idle.
    fn take_ready(&self, target: &Authority) -> Option<(SendRequest<RelayBody>, Duration)> {
        let now = Instant::now();
        let mut idle = self.lock();
        let list = idle.by_target.get_mut(target.as_str())?;
        let mut busy = Vec::new();
        let mut found = None;
        while let Some(mut candidate) = list.pop() {
            if !candidate.usable(now) {
                continue;
            }
            match poll_once(|cx| candidate.sender.poll_ready(cx)) {
                Poll::Ready(Ok(())) => {
                    found = Some((candidate.sender, now.duration_since(candidate.since)));
                    break;
                }
                Poll::Ready(Err(_)) => {}
                Poll::Pending => busy.push(candidate),
            }
        }
        list.extend(busy.into_iter().rev());
        found
    }

    /// Drops closed and expired connections, and targets left with none.
    pub fn sweep(&self) {
        let now = Instant::now();
        let mut idle = self.lock();
        idle.by_target.retain(|_, list| {
            list.retain(|connection| connection.usable(now));
            !list.is_empty()
        });
    }
}

/// A copy of `request` to send again, if that is safe: an idempotent method and no body.
fn replayable_copy(request: &Request<RelayBody>) -> Option<Request<RelayBody>> {
    let idempotent = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    );
    if !idempotent || !request.body().is_end_stream() {
        return None;
    }
    let mut copy = Request::new(RelayBody::Buffered(SpilledBody::empty()));
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    Some(copy)
}

/// Opens a new connection to `target` and starts its task on this thread's runtime.
async fn connect(target: &Authority) -> Result<SendRequest<RelayBody>, UpstreamError> {
    let connect_error = |source| UpstreamError::Connect {
        target: target.clone(),
        source,
    };
    let stream = TcpStream::connect(target.as_str())
        .await
        .map_err(connect_error)?;
    stream.set_nodelay(true).map_err(connect_error)?;
    let keepalive = socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE);
    // Best effort: without probes a vanished host is still noticed by the target timeout.
    let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.with_upgrades().await {
            tracing::debug!(error = %error, "Upstream connection ended with an error");
        }
    });
    Ok(sender)
}

/// Polls `poll` once with a waker that does nothing: a readiness probe, not a wait.
fn poll_once<T>(mut poll: impl FnMut(&mut Context<'_>) -> Poll<T>) -> Poll<T> {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    poll(&mut cx)
}
