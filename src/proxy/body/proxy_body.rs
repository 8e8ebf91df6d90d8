//! `ProxyBody`: every response body the proxy sends, and the end of each request's life.
//!
//! A proxied body carries the target's `InflightGuard`, so the target counts the request as
//! in flight until the last byte is sent, and watches the drain's cancellation, so a
//! request still streaming at the drain deadline is cut off. Dropping the body writes the
//! request log line with the bytes actually sent, and with status 499 when the client left
//! before the body was over (a body that ended in an error was cut off by us or the target,
//! not by the client, and keeps its status).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::proxy::body::relay_body::ResponseBody;
use crate::proxy::request_log::RequestLog;
use crate::service::target::InflightGuard;

pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

const DRAINED: &str = "request cancelled due to draining";

enum Kind {
    Full(Option<Bytes>),
    Upstream {
        body: ResponseBody,
        /// Waits for the drain deadline; made only once the body has to wait for the target
        /// (most bodies never do, and the wait is an allocation).
        deadline: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
        guard: InflightGuard,
    },
}

pub struct ProxyBody {
    kind: Kind,
    sent: u64,
    /// The last frame was polled, or an error ended the body.
    over: bool,
    log: Option<RequestLog>,
}

impl ProxyBody {
    pub fn full(bytes: Bytes, log: RequestLog) -> Self {
        ProxyBody {
            kind: Kind::Full(Some(bytes).filter(|b| !b.is_empty())),
            sent: 0,
            over: false,
            log: Some(log),
        }
    }

    /// Ends a body that is not sent at all (the response to HEAD, a 204, a 304, a 101): it
    /// is logged with its status, not as a client that left.
    pub fn discard(mut self) {
        self.over = true;
    }

    pub fn upstream(body: ResponseBody, guard: InflightGuard, log: RequestLog) -> Self {
        ProxyBody {
            kind: Kind::Upstream {
                body,
                deadline: None,
                guard,
            },
            sent: 0,
            over: false,
            log: Some(log),
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let polled = match &mut this.kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Upstream {
                body,
                deadline,
                guard,
            } => {
                if guard.tokens().is_cut() {
                    this.over = true;
                    return Poll::Ready(Some(Err(DRAINED.into())));
                }
                let polled = Pin::new(body).poll_frame(cx).map_err(|e| e.into());
                if polled.is_pending() {
                    let deadline = deadline.get_or_insert_with(|| {
                        let tokens = Arc::clone(guard.tokens());
                        Box::pin(async move { tokens.until_cut().await })
                    });
                    if deadline.as_mut().poll(cx).is_ready() {
                        this.over = true;
                        return Poll::Ready(Some(Err(DRAINED.into())));
                    }
                }
                polled
            }
        };
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.sent += data.len() as u64;
                }
            }
            Poll::Ready(None | Some(Err(_))) => this.over = true,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Upstream { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Upstream { body, .. } => body.size_hint(),
        }
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        if let Some(mut log) = self.log.take() {
            if !self.over && !self.is_end_stream() {
                log.client_left();
            }
            log.write(self.sent);
        }
    }
}
