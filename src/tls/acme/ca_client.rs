//! The HTTP client the ACME account talks to the CA with, wrapped to remember when the CA
//! asked us to come back.
//!
//! A CA that refuses for now (429 with `urn:ietf:params:acme:error:rateLimited`, or a 503
//! while it is down) says in `Retry-After` when to try again, and retrying sooner only
//! extends a rate limit. instant-acme turns such a response into an error with the problem
//! document but without the headers, so the client it is given (`HttpClient`) records the
//! `Retry-After` of every error response on the way through, in both of its forms
//! (delay-seconds and HTTP-date); the ACME task reads it when an attempt fails.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::RETRY_AFTER;
use http::{HeaderMap, Request};
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use rustls::pki_types::CertificateDer;

use super::AcmeError;
use crate::tls::client::{https_client, HttpsClient, Schemes};

const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// The `Retry-After` of the CA's last error response; shared by the client and its owner.
#[derive(Clone, Default)]
pub struct RetryAfter(Arc<Mutex<Option<SystemTime>>>);

impl RetryAfter {
    /// When the CA said to come back after its last error response, if it said; forgets it.
    pub fn take(&self) -> Option<SystemTime> {
        self.slot().take()
    }

    fn record(&self, at: Option<SystemTime>) {
        *self.slot() = at;
    }

    /// Short sections only; poisoning would need a panic while storing a time.
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<SystemTime>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A `Retry-After` value (RFC 9110 §10.2.3): delay-seconds, or an HTTP-date.
pub fn parse(value: &str, now: SystemTime) -> Option<SystemTime> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Absurd delays are clamped to a century; the schedule caps what it honours anyway.
        let seconds = value.parse().unwrap_or(u64::MAX).min(CENTURY.as_secs());
        return Some(now + Duration::from_secs(seconds));
    }
    httpdate::parse_http_date(value).ok()
}

fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<SystemTime> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    parse(value, now)
}

/// An `HttpClient` that records `Retry-After` from error responses into a `RetryAfter`.
struct RecordingClient {
    inner: Box<dyn HttpClient>,
    retry_after: RetryAfter,
}

impl HttpClient for RecordingClient {
    fn request(
        &self,
        request: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let response = self.inner.request(request);
        let slot = self.retry_after.clone();
        Box::pin(async move {
            let response = response.await?;
            let status = response.parts.status;
            if status.is_client_error() || status.is_server_error() {
                slot.record(retry_after(&response.parts.headers, SystemTime::now()));
            }
            Ok(response)
        })
    }
}

/// The client for the CA: the system's roots, plus `extra_root` (a test CA, or a private
/// CA's root) when given; its refusals' `Retry-After` lands in `retry_after`.
pub fn client(
    extra_root: Option<&Path>,
    retry_after: &RetryAfter,
) -> Result<Box<dyn HttpClient>, AcmeError> {
    use rustls::pki_types::pem::PemObject;
    let unusable = |e: &dyn std::fmt::Display| AcmeError::CaCertificate(e.to_string());
    let extra_roots = match extra_root {
        Some(path) => CertificateDer::pem_file_iter(path)
            .map_err(|e| unusable(&e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| unusable(&e))?,
        None => Vec::new(),
    };
    let inner: HttpsClient<BodyWrapper<Bytes>> =
        https_client(extra_roots, Schemes::HttpsOnly).map_err(|e| unusable(&e))?;
    Ok(Box::new(RecordingClient {
        inner: Box::new(inner),
        retry_after: retry_after.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Duration = Duration::from_secs(1_700_000_000);

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + NOW
    }

    #[test]
    fn reads_delay_seconds_and_http_dates() {
        assert_eq!(parse("120", now()), Some(now() + Duration::from_secs(120)));
        assert_eq!(parse(" 0 ", now()), Some(now()));
        assert_eq!(
            parse("Sun, 06 Nov 1994 08:49:37 GMT", now()),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777))
        );
        assert_eq!(
            parse("Sunday, 06-Nov-94 08:49:37 GMT", now()),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777)),
            "the obsolete RFC 850 form HTTP still allows"
        );
        assert!(parse("99999999999999999999999", now()).is_some_and(|at| at > now()));
    }

    #[test]
    fn ignores_what_is_neither() {
        for value in ["", "-5", "1.5", "soon", "Sun, 06 Nov 1994"] {
            assert_eq!(parse(value, now()), None, "{value:?}");
        }
    }

    /// Answers every request with the next canned response.
    struct Canned(Mutex<Vec<http::Response<http_body_util::Full<Bytes>>>>);

    impl HttpClient for Canned {
        fn request(
            &self,
            _: Request<BodyWrapper<Bytes>>,
        ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>>
        {
            let response = self.0.lock().unwrap().remove(0);
            Box::pin(async move { Ok(BytesResponse::from(response)) })
        }
    }

    fn response(
        status: u16,
        retry_after: Option<&str>,
    ) -> http::Response<http_body_util::Full<Bytes>> {
        let mut builder = http::Response::builder().status(status);
        if let Some(value) = retry_after {
            builder = builder.header(RETRY_AFTER, value);
        }
        builder.body(http_body_util::Full::default()).unwrap()
    }

    #[tokio::test]
    async fn remembers_the_retry_after_of_the_last_error_response() {
        let retry_after = RetryAfter::default();
        let client = RecordingClient {
            inner: Box::new(Canned(Mutex::new(vec![
                response(200, Some("600")),
                response(429, Some("3600")),
                response(503, Some("Sun, 06 Nov 2044 08:49:37 GMT")),
                response(400, None),
            ]))),
            retry_after: retry_after.clone(),
        };
        let send = || client.request(Request::new(BodyWrapper::default()));

        send().await.unwrap();
        assert_eq!(
            retry_after.take(),
            None,
            "a success's Retry-After is about polling"
        );
        let before = SystemTime::now();
        send().await.unwrap();
        let at = retry_after.take().unwrap();
        assert!(
            at >= before + Duration::from_secs(3600)
                && at <= SystemTime::now() + Duration::from_secs(3600)
        );
        assert_eq!(retry_after.take(), None, "taken once");
        send().await.unwrap();
        send().await.unwrap();
        assert_eq!(
            retry_after.take(),
            None,
            "the last error response did not ask to wait"
        );
    }

    #[tokio::test]
    async fn reads_an_http_date_from_a_503() {
        let retry_after = RetryAfter::default();
        let client = RecordingClient {
            inner: Box::new(Canned(Mutex::new(vec![response(
                503,
                Some("Sun, 06 Nov 2044 08:49:37 GMT"),
            )]))),
            retry_after: retry_after.clone(),
        };
        client
            .request(Request::new(BodyWrapper::default()))
            .await
            .unwrap();
        assert_eq!(
            retry_after.take(),
            httpdate::parse_http_date("Sun, 06 Nov 2044 08:49:37 GMT").ok()
        );
    }
}
