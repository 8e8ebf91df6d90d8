//! `RequestLog`: the one log line per request, with the Go proxy's field names and order.
//!
//! It is filled in as the request moves through the pipeline and written when the response
//! body is finished (or dropped), so `duration` and `resp_content_length` cover the whole
//! exchange, not just the headers. The request's metrics ride along and are recorded at
//! the same moment, with the same status and duration.

use std::net::SocketAddr;
use std::time::Instant;

use http::header::{CONTENT_LENGTH, CONTENT_TYPE, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, Version};

use crate::logging::JsonLine;
use crate::metrics::RequestMetrics;

/// nginx's "client closed request": logged when the client left before its response was
/// complete; never actually sent (Go's choice).
pub const CLIENT_CLOSED_REQUEST: StatusCode = match StatusCode::from_u16(499) {
    Ok(status) => status,
    Err(_) => panic!("499 is a valid status code"),
};

/// What the request arrived on.
#[derive(Debug, Clone, Copy)]
pub struct ListenerInfo {
    pub port: u16,
    pub scheme: &'static str,
    /// Where HTTPS is served, for http→https redirects.
    pub https_port: u16,
}

/// One client connection: the listener it came in on and the client's address.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub listener: ListenerInfo,
    pub client: SocketAddr,
}

pub struct RequestLog {
    start: Instant,
    listener: ListenerInfo,
    client: SocketAddr,
    method: Method,
    uri: Uri,
    version: Version,
    host: Option<HeaderValue>,
    request_id: HeaderValue,
    req_content_length: Option<HeaderValue>,
    req_content_type: Option<HeaderValue>,
    user_agent: Option<HeaderValue>,
    forwarded_for: Option<HeaderValue>,
    pub status: StatusCode,
    pub service: Option<String>,
    pub target: Option<String>,
    resp_content_type: Option<HeaderValue>,
    /// `req_<name>` / `resp_<name>` fields chosen by `--log-*-header`.
    extra: Vec<(String, String)>,
    /// Replaced by the handler once the request is routed.
    pub metrics: RequestMetrics,
}

fn field_name(prefix: &str, header: &HeaderName) -> String {
    format!("{prefix}{}", header.as_str().replace('-', "_"))
}

fn joined(headers: &HeaderMap, name: &HeaderName) -> String {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",")
}

impl RequestLog {
    pub fn new<B>(
        request: &Request<B>,
        peer: Peer,
        start: Instant,
        request_id: HeaderValue,
        metrics: RequestMetrics,
    ) -> Self {
        let headers = request.headers();
        RequestLog {
            start,
            listener: peer.listener,
            client: peer.client,
            method: request.method().clone(),
            uri: request.uri().clone(),
            version: request.version(),
            host: headers.get(http::header::HOST).cloned(),
            request_id,
            req_content_length: headers.get(CONTENT_LENGTH).cloned(),
            req_content_type: headers.get(CONTENT_TYPE).cloned(),
            user_agent: headers.get(USER_AGENT).cloned(),
            forwarded_for: headers.get("x-forwarded-for").cloned(),
            status: StatusCode::OK,
            service: None,
            target: None,
            resp_content_type: None,
            extra: Vec::new(),
            metrics,
        }
    }

    /// The client address a trusted `--client-ip-header` named, logged as `remote_addr`.
    pub fn record_client_ip(&mut self, client_ip: HeaderValue) {
        self.forwarded_for = Some(client_ip);
    }

    pub fn record_request_headers(&mut self, headers: &HeaderMap, names: &[HeaderName]) {
        for name in names {
            self.extra
                .push((field_name("req_", name), joined(headers, name)));
        }
    }

    pub fn record_response(
        &mut self,
        status: StatusCode,
        headers: &HeaderMap,
        names: &[HeaderName],
    ) {
        self.status = status;
        self.resp_content_type = headers.get(CONTENT_TYPE).cloned();
        for name in names {
            self.extra
                .push((field_name("resp_", name), joined(headers, name)));
        }
    }

    /// The response body was dropped unfinished: the client went away (499). hyper never
    /// sends the body of a HEAD response, so there it means nothing.
    pub fn client_left(&mut self) {
        if self.method != Method::HEAD {
            self.status = CLIENT_CLOSED_REQUEST;
        }
    }

    pub fn write(self, bytes_sent: u64) {
        let duration = self.start.elapsed();
        self.metrics.finish(self.status, duration);
        let text = |value: &Option<HeaderValue>| {
            value
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let client_addr = self.client.ip().to_string();
        let host = text(&self.host);
        let host = host
            .rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(host.as_str(), |(h, _)| h);
        let mut line = JsonLine::new("INFO", "Request");
        line.str("host", host)
            .u64("port", u64::from(self.listener.port))
            .str("path", self.uri.path())
            .str("request_id", self.request_id.to_str().unwrap_or(""))
            .u64("status", u64::from(self.status.as_u16()))
            .str("service", self.service.as_deref().unwrap_or(""))
            .str("target", self.target.as_deref().unwrap_or(""))
            .u64(
                "duration",
                u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX),
            )
            .str("method", self.method.as_str())
            .i64(
                "req_content_length",
                text(&self.req_content_length).parse().unwrap_or(0),
            )
            .str("req_content_type", &text(&self.req_content_type))
            .u64("resp_content_length", bytes_sent)
            .str("resp_content_type", &text(&self.resp_content_type))
            .str("client_addr", &client_addr)
            .str("client_port", &self.client.port().to_string())
            .str(
                "remote_addr",
                self.forwarded_for
                    .as_ref()
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or(&client_addr),
            )
            .str("user_agent", &text(&self.user_agent))
            .str(
                "proto",
                match self.version {
                    Version::HTTP_10 => "HTTP/1.0",
                    Version::HTTP_2 => "HTTP/2.0",
                    Version::HTTP_3 => "HTTP/3.0",
                    _ => "HTTP/1.1",
                },
            )
            .str("scheme", self.listener.scheme)
            .str("query", self.uri.query().unwrap_or(""));
        for (name, value) in &self.extra {
            line.str(name, value);
        }
        line.write_to_stdout();
    }
}
