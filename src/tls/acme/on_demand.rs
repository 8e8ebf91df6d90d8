//! The on-demand approval check (`--tls-on-demand-url`): may this host get a certificate?
//!
//! As in Go: `GET <url>` with the query parameter `host` set to the candidate (replacing one
//! already there); 200 approves, anything else denies. An external URL is asked directly,
//! redirects not followed. A `/path` is asked of the service itself, through its own
//! pipeline with `Host` set to the candidate (`proxy::internal_request`): the application
//! decides, and a stopped service denies. Two seconds at most either way; a denial carries
//! the status and the first 256 bytes of the body, so the operator sees what was said.

use std::time::Duration;

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Empty};

use crate::control::{OnDemandUrl, ServiceName};
use crate::proxy::internal_request;
use crate::service::Service;
use crate::tls::client::{https_client, HttpsClient, Schemes};

const TIMEOUT: Duration = Duration::from_secs(2);
const BODY_SHOWN: usize = 256;

/// Why a host gets no certificate; the text is Go's handshake error.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("{host} is not allowed to get a certificate (status: {status}, body: {body:?})")]
    Denied {
        host: String,
        status: u16,
        body: String,
    },
    #[error("{host}: on-demand check failed: {reason}")]
    Failed { host: String, reason: String },
    #[error("{host}: on-demand check timed out")]
    TimedOut { host: String },
}

impl Refusal {
    /// A denial is the endpoint's decision (Go's log line); a failure means it could not be
    /// asked.
    pub fn log(&self, service: &ServiceName) {
        match self {
            Refusal::Denied { host, status, body } => {
                tracing::warn!(service = %service, host, status, body, reason = %self, "TLS on-demand check denied host")
            }
            Refusal::Failed { host, .. } | Refusal::TimedOut { host } => {
                tracing::warn!(service = %service, host, reason = %self, "TLS on-demand check failed")
            }
        }
    }
}

/// `url` with `host=<host>` as its only `host` parameter.
fn check_url(url: &str, host: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut pairs: Vec<&str> = query
        .split('&')
        .filter(|pair| !pair.is_empty() && pair.split('=').next() != Some("host"))
        .collect();
    let own = format!("host={host}");
    pairs.push(&own);
    format!("{base}?{}", pairs.join("&"))
}

/// At most the first `limit` bytes of `body`; a body that breaks off is shown as far as it
/// came.
async fn first_bytes<B>(mut body: B, limit: usize) -> Vec<u8>
where
    B: Body<Data = Bytes> + Unpin,
{
    let mut kept = Vec::new();
    while kept.len() < limit {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    kept.extend_from_slice(&data[..data.len().min(limit - kept.len())]);
                }
            }
            Some(Err(_)) | None => break,
        }
    }
    kept
}

/// The endpoint's decision, from its answer.
async fn verdict<B>(host: &str, response: Response<B>) -> Result<(), Refusal>
where
    B: Body<Data = Bytes> + Unpin,
{
    let status = response.status();
    if status == StatusCode::OK {
        return Ok(());
    }
    let body = first_bytes(response.into_body(), BODY_SHOWN).await;
    Err(Refusal::Denied {
        host: host.to_string(),
        status: status.as_u16(),
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// `Ok` when `url` approves `host` for `service` (the service a handshake for `host`
/// reached); else why not.
pub async fn approve(service: &Service, url: &OnDemandUrl, host: &str) -> Result<(), Refusal> {
    let target = check_url(url.as_str(), host);
    let failed = |reason: String| Refusal::Failed {
        host: host.to_string(),
        reason,
    };
    let exchange = async {
        match url {
            OnDemandUrl::External(_) => {
                let uri: http::Uri = target
                    .parse()
                    .map_err(|e| failed(format!("invalid on-demand URL {target}: {e}")))?;
                let client: HttpsClient<Empty<Bytes>> =
                    https_client(Vec::new(), Schemes::HttpAndHttps)
                        .map_err(|e| failed(e.to_string()))?;
                let response = client.get(uri).await.map_err(|e| failed(e.to_string()))?;
                verdict(host, response).await
            }
            OnDemandUrl::ServicePath(_) => {
                let path = PathAndQuery::try_from(target.as_str())
                    .map_err(|e| failed(format!("invalid on-demand path {target}: {e}")))?;
                verdict(host, internal_request::get(service, host, path).await).await
            }
        }
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| Refusal::TimedOut {
            host: host.to_string(),
        })?
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, StreamBody};

    #[test]
    fn sets_the_host_parameter_replacing_any_given() {
        assert_eq!(
            check_url("http://auth/ok", "a.example.com"),
            "http://auth/ok?host=a.example.com"
        );
        assert_eq!(
            check_url("http://auth/ok?x=1&host=evil&y", "a.example.com"),
            "http://auth/ok?x=1&y&host=a.example.com"
        );
        assert_eq!(
            check_url("/allow?token=abc", "a.example.com"),
            "/allow?token=abc&host=a.example.com"
        );
    }

    fn answer(status: u16, body: &'static str) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *response.status_mut() = StatusCode::from_u16(status).unwrap();
        response
    }

    #[tokio::test]
    async fn approves_only_a_200() {
        assert!(verdict("a.example.com", answer(200, "")).await.is_ok());
        let refusal = verdict("a.example.com", answer(204, "")).await.unwrap_err();
        assert_eq!(
            refusal.to_string(),
            "a.example.com is not allowed to get a certificate (status: 204, body: \"\")"
        );
    }

    #[tokio::test]
    async fn shows_the_first_256_bytes_of_a_denial_in_go_form() {
        let long = "x".repeat(300).leak();
        let refusal = verdict("b.example.com", answer(403, long))
            .await
            .unwrap_err();
        let Refusal::Denied { status, body, .. } = &refusal else {
            panic!("{refusal}");
        };
        assert_eq!((*status, body.len()), (403, 256));
        let refusal = verdict("b.example.com", answer(403, "say \"no\""))
            .await
            .unwrap_err();
        assert_eq!(
            refusal.to_string(),
            r#"b.example.com is not allowed to get a certificate (status: 403, body: "say \"no\"")"#
        );
    }

    #[tokio::test]
    async fn keeps_what_a_broken_body_sent() {
        let frames: Vec<Result<http_body::Frame<Bytes>, std::io::Error>> = vec![
            Ok(http_body::Frame::data(Bytes::from_static(b"partial"))),
            Err(std::io::Error::other("connection reset")),
        ];
        let body = StreamBody::new(futures_util::stream::iter(frames));
        assert_eq!(first_bytes(body, BODY_SHOWN).await, b"partial");
    }
}
