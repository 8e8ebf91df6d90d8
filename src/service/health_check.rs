//! Health checks: `GET <path>` on each target until it is healthy, and for load balancers
//! with more than one target, for as long as the target is deployed.
//!
//! Any 2xx is healthy, as in Go (its README says 200; its code says 2xx). Redirects are
//! *not* followed: a 301 from `/up` is reported with its status, which tells the operator
//! more than Go's failure on the redirected https URL (Kamal #1041). Checks run in a task
//! per target that dies with the load balancer's cancellation token. Every state change is
//! announced as a `ProxyEvent` (the D-Bus `TargetHealthChanged` signal).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::error_chain::error_chain;
use bytes::Bytes;
use http::header::{HOST, USER_AGENT};
use http::{Request, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::options::HealthCheckConfig;
use super::target::Target;
use super::target_state::TargetState;
use crate::event::{self, EventSender, ProxyEvent};

/// The client all health checks share: pooled, so a check every second reuses a connection;
/// and where they announce state changes.
#[derive(Clone)]
pub struct HealthClient {
    http: Client<HttpConnector, Empty<Bytes>>,
    events: EventSender,
}

impl HealthClient {
    pub fn new(events: EventSender) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        HealthClient {
            http: Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(2)
                .build(connector),
            events,
        }
    }

    /// One `GET path` to `address`, with `host` as its Host header.
    async fn check(
        &self,
        address: SocketAddr,
        path: &str,
        host: &str,
        timeout: Duration,
    ) -> Result<(), String> {
        let uri: Uri = format!("http://{address}{path}")
            .parse()
            .map_err(|e: http::uri::InvalidUri| e.to_string())?;
        // Infallible: the path was checked at deploy, the Host value is a checked target or host.
        let request = Request::get(uri)
            .header(USER_AGENT, "kamal-proxy")
            .header(HOST, host)
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let attempt = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| error_chain(&e))?;
            let status = response.status();
            response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?;
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("unexpected status {}", status.as_u16()))
            }
        };
        tokio::time::timeout(timeout, attempt)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "no response within {}",
                    crate::go_duration::format(timeout)
                ))
            })
    }
}

pub struct HealthCheck {
    client: HealthClient,
    target: Arc<Target>,
    /// `--health-check-port`, else the target's.
    port: Option<u16>,
    path: String,
    /// `--health-check-host`, else the target as deployed (name and port), as Go sends it.
    host: String,
    /// What the log shows: the URL by the target's name.
    url: String,
    interval: Duration,
    timeout: Duration,
    service: String,
}

impl HealthCheck {
    pub fn new(
        client: HealthClient,
        target: Arc<Target>,
        config: &HealthCheckConfig,
        service: &str,
    ) -> Self {
        let port = config.port.unwrap_or(target.address().port());
        let host = config
            .host
            .clone()
            .unwrap_or_else(|| format!("{}:{port}", target.address().host()));
        let url = format!("http://{}:{port}{}", target.address().host(), config.path);
        HealthCheck {
            client,
            url,
            target,
            port: config.port,
            path: config.path.clone(),
            host,
            interval: config.interval,
            timeout: config.timeout,
            service: service.to_string(),
        }
    }

    /// Resolves the target afresh (a container may have moved), then checks it.
    async fn check(&self) -> Result<(), String> {
        let address = self
            .target
            .resolve(self.port)
            .await
            .map_err(|e| e.to_string())?;
        self.client
            .check(address, &self.path, &self.host, self.timeout)
            .await
    }

    /// Checks now, then every interval, until cancelled; with `stop_when_healthy` (a lone
    /// writer, as in Go) the first success ends the checks.
    pub async fn run(
        self,
        stop_when_healthy: bool,
        changed: Arc<Notify>,
        cancel: CancellationToken,
    ) {
        loop {
            let result = tokio::select! {
                result = self.check() => result,
                () = cancel.cancelled() => return,
            };
            let healthy = result.is_ok();
            if let Err(error) = &result {
                tracing::info!(service = %self.service, target = %self.target.address(), url = %self.url, error = %error, "Healthcheck failed");
            }
            let was = self.target.state();
            let now = match (was, healthy) {
                (_, true) => TargetState::Healthy,
                (TargetState::Adding, false) => TargetState::Adding,
                (_, false) => TargetState::Unhealthy,
            };
            if now != was {
                self.target.set_state(now);
                tracing::info!(service = %self.service, target = %self.target.address(), state = %now, was = %was, "Target health updated");
                event::announce(
                    &self.client.events,
                    ProxyEvent::TargetHealthChanged {
                        service: self.service.clone(),
                        target: self.target.address().clone(),
                        state: now,
                    },
                );
                changed.notify_waiters();
            }
            if healthy && stop_when_healthy {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(self.interval) => {}
                () = cancel.cancelled() => return,
            }
        }
    }
}
