//! `Handler`: the request pipeline, from a parsed request to the response sent back.
//!
//! Order, as in Go: request id and start time; ACME HTTP-01 answers (before anything else,
//! so a redirect never hides them); route by host and path (404); client IP header;
//! redirects (301); HTTPS to a service without TLS (503); pause/stop (with the health-check
//! pass-through); an HTTP/2 WebSocket becomes an HTTP/1.1 upgrade (`extended_connect`); pick
//! the active or rollout group, and a healthy target in it (503); forward (502/504); cookie
//! paths and writer affinity on the response. Errors the proxy raises become its own error
//! pages here, in one place.
//! Every request is counted in the metrics; once routed, under its service.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{HeaderValue, CONNECTION, CONTENT_TYPE, HOST};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Version};
use http_body::Body;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::control::PathPrefix;
use crate::metrics::{RequestMetrics, WorkerMetrics};
use crate::proxy::body::proxy_body::ProxyBody;
use crate::proxy::body::proxy_response::ProxyResponse;
use crate::proxy::body::request_body::RequestBody;
use crate::proxy::body::spill_buffer::SpillDir;
use crate::proxy::h1::client::upstream_pool::{self, UpstreamPool};
use crate::proxy::h1::headers;
use crate::proxy::pipeline::added_headers::AddedHeaders;
use crate::proxy::pipeline::client_ip::apply_client_ip_header;
use crate::proxy::pipeline::client_upgrade::ClientUpgrade;
use crate::proxy::pipeline::cookie_scope::scope_cookie_paths;
use crate::proxy::pipeline::deadline_timers::DeadlineTimers;
use crate::proxy::pipeline::error_page;
use crate::proxy::pipeline::extended_connect::{self, Handshake};
use crate::proxy::pipeline::forward::{self, ForwardError, Outgoing};
use crate::proxy::pipeline::forwarded_headers::ForwardedHeaders;
use crate::proxy::pipeline::redirect::{self, RedirectRule};
use crate::proxy::pipeline::request_stamp::RequestStamp;
use crate::proxy::request_log::{Peer, RequestLog};
use crate::router::Router;
use crate::routing::request_host;
use crate::service::load_balancer::RequestKind;
use crate::service::pause_controller::PauseWaitAction;
use crate::service::pause_state::PauseState;
use crate::service::target::InflightGuard;
use crate::service::writer_affinity::WriterAffinity;
use crate::service::Service;
use crate::tls::challenges::HTTP01_PREFIX;

/// A claim can lose a race with a deploy that retires the target it picked; the request is
/// then routed again on the new table. Two retries cover back-to-back deploys.
const CLAIM_ATTEMPTS: usize = 3;

pub struct Handler {
    router: Arc<Router>,
    metrics: Arc<WorkerMetrics>,
    /// This thread's keep-alive connections to the targets.
    upstreams: UpstreamPool,
    /// This thread's timers for the target timeout.
    deadlines: DeadlineTimers,
    /// Where buffered bodies too big for memory go.
    spill_dir: Arc<SpillDir>,
    /// Upgraded connections, closed at shutdown.
    tunnels: TaskTracker,
    shutdown: CancellationToken,
}

/// What the pause controller decided for a request.
enum PauseOutcome {
    Proceed,
    /// Paused or stopped, but this is the health-check path: answer 200 ourselves, so outer
    /// load balancers do not eject the host.
    HealthCheckPassThrough,
    Refuse(StatusCode, Option<String>),
}

/// How the request arrived: the connection it came on and the stamp it was given, which
/// the target is told of, and the client side of the upgrade it asks for, if it does.
struct Arrival<'a> {
    peer: Peer,
    stamp: &'a RequestStamp,
    client_side: Option<ClientUpgrade>,
}

/// Where the request was routed: the service and the path the target sees.
struct Route {
    service: Arc<Service>,
    upstream_path: PathAndQuery,
    /// The non-root prefix removed from the path, if one was (for `--scope-cookie-paths`).
    stripped_prefix: Option<PathPrefix>,
}

fn upstream_path(request_uri: &http::Uri, prefix: &PathPrefix, strip: bool) -> PathAndQuery {
    let original = request_uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    if !strip || prefix.is_root() {
        return original;
    }
    let rest = &request_uri.path()[prefix.as_str().len()..];
    let path = if rest.is_empty() { "/" } else { rest };
    let rebuilt = match request_uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_string(),
    };
    // Infallible in practice: a suffix of a valid path plus the original query is valid.
    PathAndQuery::try_from(rebuilt).unwrap_or(original)
}

fn request_kind<B>(request: &Request<B>, service: &Service, upgrade: bool) -> RequestKind {
    let read_method = matches!(*request.method(), Method::GET | Method::HEAD);
    if read_method && (!upgrade || service.options.read_targets_accept_websockets) {
        RequestKind::Read
    } else {
        RequestKind::Write
    }
}

/// HTTP/2 carries the host in the URI, and so does an HTTP/1.1 request in absolute form;
/// the request is routed by it, and the target, which speaks HTTP/1.1, must see the same
/// host in `Host` (RFC 9112 §3.2.2: the authority replaces any `Host` sent with it), as
/// must the request log.
fn host_header_from_authority<B>(request: &mut Request<B>) {
    let Some(authority) = request.uri().authority() else {
        return;
    };
    if let Ok(value) = HeaderValue::from_str(authority.as_str()) {
        request.headers_mut().insert(HOST, value);
    }
}

/// The key authorization an ACME CA asked for (HTTP-01).
fn challenge_response(answer: String, mut log: RequestLog) -> ProxyResponse<ProxyBody> {
    let mut headers = http::HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    log.record_response(StatusCode::OK, &headers, &[]);
    let mut response = Response::new(ProxyBody::full(Bytes::from(answer), log));
    *response.headers_mut() = headers;
    response.into()
}

/// The proxy's own error response: the service's custom page when it has one for the
/// status, else the built-in page.
fn error_response(
    status: StatusCode,
    message: Option<&str>,
    service: Option<&Service>,
    mut log: RequestLog,
) -> ProxyResponse<ProxyBody> {
    let page = error_page::for_service(status, message, service);
    let mut headers = http::HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    log.record_response(status, &headers, &[]);
    let mut response = Response::new(ProxyBody::full(page, log));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response.into()
}

/// A failed forward: logged when the operator should see it, answered with the proxy's page.
fn forward_failure(
    error: ForwardError,
    service: &Service,
    target: &str,
    log: RequestLog,
) -> ProxyResponse<ProxyBody> {
    error.log(service.name.as_str(), target);
    error_response(error.status(), None, Some(service), log)
}

impl Handler {
    pub fn new(
        router: Arc<Router>,
        metrics: Arc<WorkerMetrics>,
        shutdown: CancellationToken,
    ) -> Self {
        Handler {
            router,
            metrics,
            upstreams: UpstreamPool::default(),
            deadlines: DeadlineTimers::default(),
            spill_dir: Arc::new(SpillDir::from_env()),
            tunnels: TaskTracker::new(),
            shutdown,
        }
    }

    /// Closes idle target connections that expired or that the target closed, every
    /// `SWEEP_INTERVAL` until `shutdown`.
    pub async fn sweep_idle_upstreams(self: Arc<Self>, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval(upstream_pool::SWEEP_INTERVAL);
        loop {
            tokio::select! {
                _ = ticks.tick() => self.upstreams.sweep(),
                () = shutdown.cancelled() => break,
            }
        }
    }

    /// Waits for upgraded connections to close (they are told to at shutdown).
    pub async fn close_tunnels(&self) {
        self.tunnels.close();
        self.tunnels.wait().await;
    }

    fn route(&self, host: &str, uri: &http::Uri) -> Option<Route> {
        let routes = self.router.routes();
        let matched = routes.lookup(host, uri.path())?;
        let service = Arc::clone(matched.value);
        let strip = service.options.strip_prefix;
        let upstream_path = upstream_path(uri, matched.prefix, strip);
        let stripped_prefix = (strip && !matched.prefix.is_root()).then(|| matched.prefix.clone());
        Some(Route {
            service,
            upstream_path,
            stripped_prefix,
        })
    }

    pub async fn handle(
        &self,
        mut request: Request<RequestBody>,
        peer: Peer,
    ) -> ProxyResponse<ProxyBody> {
        let start = Instant::now();
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        host_header_from_authority(&mut request);
        // Written into the head for the target, not into the request's headers.
        let stamp = RequestStamp::new(request.headers(), now_ms);
        let metrics = self.metrics.unrouted(request.method());
        let mut log = RequestLog::new(&request, peer, start, stamp.id().clone(), metrics);

        if peer.listener.scheme == "http" && request.uri().path().starts_with(HTTP01_PREFIX) {
            let challenges = self.router.acme().challenges();
            if let Some(answer) = challenges.http01_answer(request.uri().path()) {
                return challenge_response(answer, log);
            }
        }
        let host = match request_host(&request) {
            Ok(host) => host.into_owned(),
            Err(_) => return error_response(StatusCode::BAD_REQUEST, None, None, log),
        };
        let Some(mut route) = self.route(&host, request.uri()) else {
            return error_response(StatusCode::NOT_FOUND, None, None, log);
        };
        log.service = Some(route.service.name.shared());
        log.metrics = self.routed_metrics(&request, &route);
        log.record_request_headers(
            request.headers(),
            &stamp,
            &route.service.target_options.log_request_headers,
        );
        if let Some(header) = &route.service.options.client_ip_header {
            if let Some(client_ip) = apply_client_ip_header(request.headers_mut(), header) {
                log.record_client_ip(client_ip);
            }
        }
        let rule = RedirectRule::for_service(&route.service, peer.listener.https_port);
        if let Some(location) =
            redirect::target_url(rule, peer.listener.scheme, &host, request.uri())
        {
            return redirect::response(&location, request.method(), log).into();
        }
        if peer.listener.scheme == "https" && !route.service.tls.enabled {
            return error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                Some(&route.service),
                log,
            );
        }

        match self.hold_while_paused(&request, &route).await {
            PauseOutcome::Proceed => {}
            PauseOutcome::HealthCheckPassThrough => {
                return Response::new(ProxyBody::full(Bytes::new(), log)).into()
            }
            PauseOutcome::Refuse(status, message) => {
                return error_response(status, message.as_deref(), Some(&route.service), log)
            }
        }

        // An HTTP/2 WebSocket takes the form the target will see before a target is picked, so
        // it is routed as any WebSocket (writers, unless `--read-target-websockets`).
        let websocket = match extended_connect::translate(&mut request) {
            Ok(websocket) => websocket,
            Err(error) => return error_response(error.status(), None, Some(&route.service), log),
        };
        let upgrade = headers::is_upgrade(request.headers());
        let mut guard = None;
        let mut affinity = WriterAffinity::None;
        for _ in 0..CLAIM_ATTEMPTS {
            let kind = request_kind(&request, &route.service, upgrade);
            let lb = route.service.load_balancer_for(request.headers());
            affinity = WriterAffinity::decide(
                kind,
                !lb.readers().is_empty(),
                route.service.options.writer_affinity_timeout,
                request.headers(),
                SystemTime::now(),
            );
            guard = lb
                .pick(affinity.routed_kind(kind))
                .and_then(|target| target.claim());
            if guard.is_some() {
                break;
            }
            match self.route(&host, request.uri()) {
                Some(rerouted) => route = rerouted,
                None => break,
            }
        }
        let Some(guard) = guard else {
            return error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                Some(&route.service),
                log,
            );
        };
        let cookie_scope = route
            .stripped_prefix
            .clone()
            .filter(|_| route.service.target_options.scope_cookie_paths);
        let http10 = request.version() == Version::HTTP_10;
        let client_side = upgrade.then(|| ClientUpgrade::take(&mut request));
        // The head stays in this frame and is lent to the layers below: moved into each
        // one's future, its 224 bytes were copied at every step. Only the body moves on.
        let (mut head, body) = request.into_parts();
        let mut response = self
            .forward(
                Outgoing {
                    head: &mut head,
                    body,
                },
                route,
                guard,
                Arrival {
                    peer,
                    stamp: &stamp,
                    client_side,
                },
                log,
                websocket,
            )
            .await;
        // Only the close can end a body of unknown length for an HTTP/1.0 client; say so,
        // rather than let hyper promise the keep-alive the client asked for.
        if http10 && response.body().size_hint().exact().is_none() {
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        if let Some(prefix) = cookie_scope {
            scope_cookie_paths(response.headers_mut(), &prefix, &host);
        }
        if affinity.changes_response() {
            affinity.apply_to_response(response.headers_mut(), SystemTime::now());
        }
        response
    }

    /// `--exclude-metrics-path` matches the path exactly as the target sees it.
    fn routed_metrics<B>(&self, request: &Request<B>, route: &Route) -> RequestMetrics {
        let path = route.upstream_path.path();
        let excluded = &route.service.options.exclude_metrics_paths;
        if excluded.iter().any(|excluded| excluded == path) {
            RequestMetrics::excluded()
        } else {
            self.metrics
                .routed(request.method(), route.service.name.as_str())
        }
    }

    async fn hold_while_paused<B>(&self, request: &Request<B>, route: &Route) -> PauseOutcome {
        let pause = &route.service.pause;
        let is_health_check = matches!(*request.method(), Method::GET | Method::HEAD)
            && route.upstream_path.path() == route.service.target_options.health_check.path;
        if is_health_check && pause.status().state != PauseState::Running {
            return PauseOutcome::HealthCheckPassThrough;
        }
        match pause.wait().await {
            PauseWaitAction::Proceed => PauseOutcome::Proceed,
            PauseWaitAction::Stopped(message) => {
                PauseOutcome::Refuse(StatusCode::SERVICE_UNAVAILABLE, Some(message))
            }
            PauseWaitAction::TimedOut => {
                tracing::warn!(service = %route.service.name, "Rejecting request due to expired pause");
                PauseOutcome::Refuse(StatusCode::GATEWAY_TIMEOUT, None)
            }
        }
    }

    async fn forward(
        &self,
        request: Outgoing<'_>,
        route: Route,
        guard: InflightGuard,
        arrival: Arrival<'_>,
        mut log: RequestLog,
        websocket: Option<Handshake>,
    ) -> ProxyResponse<ProxyBody> {
        let Arrival {
            peer,
            stamp,
            client_side,
        } = arrival;
        let service = &route.service;
        let target = Arc::clone(guard.target());
        log.target = Some(target.address().shared());
        headers::remove_hop_by_hop(&mut request.head.headers, client_side.is_some());
        let added = AddedHeaders {
            stamp,
            forwarded: ForwardedHeaders {
                peer: &peer.client_ip,
                scheme: peer.listener.scheme,
                target: target.address().as_str(),
                trust_client: service.target_options.forward_headers,
            },
        };
        forward::retarget(request.head, route.upstream_path);

        let mut response = match forward::send(
            &self.upstreams,
            &self.deadlines,
            request,
            &service.target_options,
            &self.spill_dir,
            &guard,
            &added,
        )
        .await
        {
            Ok(response) => response,
            Err(error) => return forward_failure(error, service, target.address().as_str(), log),
        };

        // The codec already left the target's hop-by-hop headers behind.
        let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
        if let Some(Err(error)) = websocket.map(|handshake| handshake.answer(&mut response)) {
            return forward_failure(error, service, target.address().as_str(), log);
        }
        log.record_response(
            response.status(),
            &response,
            &service.target_options.log_response_headers,
        );
        if let (true, Some(client_side)) = (switching, client_side) {
            if let Some(target_side) = forward::take_tunnel(response.body_mut()) {
                forward::spawn_tunnel(
                    &self.tunnels,
                    client_side,
                    target_side,
                    guard,
                    self.shutdown.clone(),
                );
            }
            return response.map(|_| ProxyBody::full(Bytes::new(), log));
        }
        response.map(|body| ProxyBody::upstream(body, guard, log))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(uri: &str, prefix: &str, strip: bool) -> String {
        let uri: http::Uri = uri.parse().unwrap();
        upstream_path(&uri, &PathPrefix::parse(prefix).unwrap(), strip).to_string()
    }

    #[test]
    fn strips_the_matched_prefix_and_keeps_the_raw_query() {
        assert_eq!(
            path("/app/show?p1=a;b;c&p2=%x", "/app", true),
            "/show?p1=a;b;c&p2=%x"
        );
        assert_eq!(path("/app", "/app", true), "/");
        assert_eq!(path("/app?x=1", "/app", true), "/?x=1");
        assert_eq!(path("/app/show", "/app", false), "/app/show");
        assert_eq!(path("/a?b", "/", true), "/a?b");
    }
}
