//! Internal requests: a `GET` the proxy itself sends through one of its services, for the
//! on-demand TLS check in its `/path` form (Go's `localHostPolicy`), so that the application
//! behind the service decides which hosts may get a certificate.
//!
//! It takes the service's own way to a target, as a client's request over plain HTTP would:
//! a paused service holds it, a stopped one answers 503 with its page; one healthy writer
//! is claimed, so a drain waits for it and cuts it at its deadline; the forwarded headers
//! follow the service's `--forward-headers`; `--target-timeout` bounds the wait for the
//! answer. It skips what belongs to a client's request: the TLS and canonical-host
//! redirects (so the target sees `X-Forwarded-Proto: http`, from `127.0.0.1`), the request
//! log and metrics, and buffering. The health-check pass-through of a paused service does
//! not apply either: it exists for outer load balancers, and a stopped service must deny.
//! The caller gets a response either way, as a client would: the target's, or the proxy's
//! own error page.

use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{HeaderValue, HOST};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Either, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::error_chain::error_chain;
use crate::proxy::listen::ip_text::IpText;
use crate::proxy::pipeline::error_page;
use crate::proxy::pipeline::forward::ForwardError;
use crate::proxy::pipeline::forwarded_headers::ForwardedHeaders;
use crate::service::load_balancer::RequestKind;
use crate::service::pause_controller::PauseWaitAction;
use crate::service::target::InflightGuard;
use crate::service::Service;

/// Who the target is told asked: the proxy itself.
const PROXY_ADDRESS: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// The answer's body: the target's, or the proxy's own page.
pub struct InternalBody {
    reply: Either<Incoming, Full<Bytes>>,
    /// Keeps the target claimed until the answer has been read, so a drain waits for it.
    _claim: Option<InflightGuard>,
}

impl Body for InternalBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.get_mut().reply).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.reply.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.reply.size_hint()
    }
}

/// The proxy's own answer: `status` with the page the service shows for it.
fn proxy_answer(
    status: StatusCode,
    message: Option<&str>,
    service: &Service,
) -> Response<InternalBody> {
    let page = error_page::for_service(status, message, Some(service));
    let mut response = Response::new(InternalBody {
        reply: Either::Right(Full::new(page)),
        _claim: None,
    });
    *response.status_mut() = status;
    response
}

/// Sends `GET <path>` with `Host: <host>` through `service` (see the module docs).
pub async fn get(service: &Service, host: &str, path: PathAndQuery) -> Response<InternalBody> {
    let Ok(host_header) = HeaderValue::from_str(host) else {
        return proxy_answer(StatusCode::BAD_REQUEST, None, service);
    };
    let mut request = Request::new(Empty::<Bytes>::new());
    request.headers_mut().insert(HOST, host_header);

    match service.pause.wait().await {
        PauseWaitAction::Proceed => {}
        PauseWaitAction::Stopped(message) => {
            return proxy_answer(StatusCode::SERVICE_UNAVAILABLE, Some(&message), service)
        }
        PauseWaitAction::TimedOut => {
            return proxy_answer(StatusCode::GATEWAY_TIMEOUT, None, service)
        }
    }
    let claim = service
        .load_balancer_for(request.headers())
        .pick(RequestKind::Write)
        .and_then(|target| target.claim());
    let Some(claim) = claim else {
        return proxy_answer(StatusCode::SERVICE_UNAVAILABLE, None, service);
    };
    let target = Arc::clone(claim.target());
    ForwardedHeaders {
        peer: &IpText::new(PROXY_ADDRESS),
        scheme: "http",
        target: target.address().as_str(),
        trust_client: service.target_options.forward_headers,
    }
    .apply_to(request.headers_mut());
    // Absolute form: this client picks its connection by the URI.
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(http::uri::Scheme::HTTP);
    parts.authority = Some(target.authority().clone());
    parts.path_and_query = Some(path);
    match http::Uri::from_parts(parts) {
        Ok(uri) => *request.uri_mut() = uri,
        Err(_) => return proxy_answer(StatusCode::BAD_REQUEST, None, service),
    }

    // A client of its own: the check is rare, and the data plane's pools belong to its
    // worker threads.
    let client = Client::builder(TokioExecutor::new()).build_http();
    let timeout = service.target_options.response_timeout;
    let outcome = tokio::select! {
        sent = tokio::time::timeout(timeout, client.request(request)) => match sent {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) => Err(ForwardError::Unreachable(error_chain(&error))),
            Err(_) => Err(ForwardError::Timeout),
        },
        () = claim.tokens().until_cut() => Err(ForwardError::Drained),
    };
    match outcome {
        Ok(response) => response.map(|body| InternalBody {
            reply: Either::Left(body),
            _claim: Some(claim),
        }),
        Err(error) => {
            error.log(service.name.as_str(), target.address().as_str());
            proxy_answer(error.status(), None, service)
        }
    }
}
