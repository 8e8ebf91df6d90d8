//! `UpstreamPool`: this worker thread's keep-alive HTTP/1.1 connections to the targets.
//!
//! Each data-plane thread owns one pool (in its `Handler`), so a connection, the request
//! that uses it and the client connection all live on the same thread: no cross-thread
//! wake-ups, and the lock is never contended.
//!
//! A connection goes back to the pool only when its response body has been read to the end
//! (`UpstreamBody`). An idle connection is taken newest first (warm, and the oldest age
//! out), and only if nothing arrived on it since its last response; it is dropped after
//! `IDLE_TIMEOUT` or once the target closed it. A bodyless idempotent request that got no
//! response at all on a reused connection is sent again on a new one: app servers close
//! idle keep-alive connections, and the close can cross the request on the wire (Go's
//! transport retries these too). The request head is kept encoded, so this costs nothing.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::request::Parts;
use http::uri::Authority;
use http::{Method, StatusCode};
use http_body::Body;

use crate::proxy::body::proxy_response::ProxyResponse;
use crate::proxy::body::relay_body::RelayBody;
use crate::proxy::h1::client::request_head::{self, AddedLines, BodyFraming};
use crate::proxy::h1::client::upstream_body::UpstreamBody;
use crate::proxy::h1::client::upstream_connection::{ExchangeError, Exchanged, UpstreamConnection};
use crate::proxy::h1::header_maps;
use crate::service::target::Target;

/// Idle connections kept per target, enough for a busy app server's worker pool.
const MAX_IDLE_PER_TARGET: usize = 256;
/// Drop connections the app has not used for this long, before it drops them itself.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often closed and expired connections are swept out.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

struct Idle {
    connection: Box<UpstreamConnection>,
    since: Instant,
}

impl Idle {
    fn usable(&self, now: Instant) -> bool {
        now.duration_since(self.since) < IDLE_TIMEOUT && self.connection.is_open_and_quiet()
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
    #[error(transparent)]
    Exchange(#[from] ExchangeError),
}

/// Where a lent connection goes back to; `UpstreamBody` hands it back.
pub struct Checkin {
    pool: UpstreamPool,
    target: Authority,
}

impl Checkin {
    pub fn give_back(self, connection: Box<UpstreamConnection>) {
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
                connection,
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

    /// Sends the request with head `parts` (origin-form URI, `Host` set; its header map is
    /// taken, once encoded) and `body`, with the headers the proxy `added`, to `target` and
    /// returns the response, whose body returns the connection to the pool when read to the
    /// end.
    pub async fn send(
        &self,
        to: &Target,
        parts: &mut Parts,
        body: RelayBody,
        added: &impl AddedLines,
    ) -> Result<ProxyResponse<UpstreamBody>, UpstreamError> {
        let target = to.authority();
        let framing = BodyFraming::of(body.is_end_stream(), &body.size_hint());
        let mut idle = self.take_idle(target);
        // Encoded into the last head sent on the connection, which has the room for it.
        let mut head = idle
            .as_mut()
            .map(|connection| std::mem::take(&mut connection.head))
            .unwrap_or_default();
        head.clear();
        request_head::encode(parts, framing, added, &mut head);
        header_maps::give_back(std::mem::take(&mut parts.headers));
        let mut body = (framing != BodyFraming::None).then_some((body, framing));
        if let Some(mut connection) = idle {
            match connection.exchange(&head, body.take(), &parts.method).await {
                Ok(exchanged) => {
                    connection.keep_head(head);
                    return Ok(self.response(target, connection, exchanged));
                }
                Err(ExchangeError::NoResponse(error))
                    if framing == BodyFraming::None && is_idempotent(&parts.method) =>
                {
                    tracing::debug!(target = %target, error = %error, "Target closed an idle connection as a request was sent; sending it again");
                }
                Err(error) => return Err(error.into()),
            }
        }
        // A new connection goes where the target's name points now (a container may have
        // moved); pooled ones were made to the target as it was then, and live or die with it.
        let connect = async {
            let address = to.resolve(None).await?;
            UpstreamConnection::connect(address).await
        };
        let mut connection = Box::pin(connect)
            .await
            .map_err(|source| UpstreamError::Connect {
                target: target.clone(),
                source,
            })?;
        let exchanged = connection.exchange(&head, body, &parts.method).await?;
        connection.keep_head(head);
        Ok(self.response(target, connection, exchanged))
    }

    fn response(
        &self,
        target: &Authority,
        connection: Box<UpstreamConnection>,
        exchanged: Exchanged,
    ) -> ProxyResponse<UpstreamBody> {
        let Exchanged { head, reusable } = exchanged;
        let body = if head.status == StatusCode::SWITCHING_PROTOCOLS {
            UpstreamBody::upgraded(connection)
        } else {
            let checkin = reusable.then(|| Checkin {
                pool: self.clone(),
                target: target.clone(),
            });
            UpstreamBody::new(head.framing, connection, checkin)
        };
        ProxyResponse::from_target(head.status, head.fields, body)
    }

    /// The newest idle connection to `target` that can take a request right now.
    fn take_idle(&self, target: &Authority) -> Option<Box<UpstreamConnection>> {
        let now = Instant::now();
        let mut idle = self.lock();
        let list = idle.by_target.get_mut(target.as_str())?;
        while let Some(candidate) = list.pop() {
            if candidate.usable(now) {
                return Some(candidate.connection);
            }
        }
        None
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

/// Methods whose request may be sent twice (RFC 9110 §9.2.2); POST and PATCH may not.
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}
