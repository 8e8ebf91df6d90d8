//! The metrics listener: `GET /metrics` answers the text exposition, every other path 404.
//!
//! Go serves the registry on every path; one path leaves room for others later and makes a
//! mistyped scrape URL fail loudly. Connections are tracked and closed at shutdown, like
//! the proxy's own listeners, but there is nothing to drain: a scrape is one quick answer.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::exposition::{self, CONTENT_TYPE as EXPOSITION};
use super::Metrics;

const PATH: &str = "/metrics";

fn answer<B>(request: &Request<B>, metrics: &Metrics) -> Response<Full<Bytes>> {
    let plain = |status: StatusCode, text: &'static str| {
        let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
        *response.status_mut() = status;
        response
    };
    if request.uri().path() != PATH {
        return plain(StatusCode::NOT_FOUND, "404 page not found\n");
    }
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response
            .headers_mut()
            .insert(ALLOW, http::HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let mut response = Response::new(Full::new(Bytes::from(exposition::render(metrics))));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, http::HeaderValue::from_static(EXPOSITION));
    response
}

/// Serves `metrics` on `listener` until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, shutdown: CancellationToken) {
    let connections = TaskTracker::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::error!(error = %error, "Failed to accept a metrics connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let metrics = Arc::clone(&metrics);
        let service = service_fn(move |request: Request<hyper::body::Incoming>| {
            let response = answer(&request, &metrics);
            async move { Ok::<_, Infallible>(response) }
        });
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .serve_connection(TokioIo::new(stream), service);
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
                tracing::debug!(error = %error, "Metrics connection ended with an error");
            }
        });
    }
    connections.close();
    connections.wait().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str, method: Method) -> Response<Full<Bytes>> {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(())
            .unwrap();
        answer(&request, &Metrics::default())
    }

    #[test]
    fn answers_only_get_metrics_with_the_text_format() {
        let response = get("/metrics", Method::GET);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[CONTENT_TYPE], EXPOSITION);
        assert_eq!(get("/", Method::GET).status(), StatusCode::NOT_FOUND);
        assert_eq!(
            get("/metrics/x", Method::GET).status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            get("/metrics", Method::POST).status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }
}
