//! `RequestLog`: the one log line per request, with the Go proxy's field names and order.
//!
//! It is filled in as the request moves through the pipeline and written when the response
//! body is finished (or dropped), so `duration` and `resp_content_length` cover the whole
//! exchange, not just the headers. The request's metrics ride along and are recorded at
//! the same moment, with the same status and duration.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, Version};

use crate::logging::LoggedHeader;
use crate::logging::{
    key, JournalRecord, JsonLine, Key, LogFields, LogMirror, RequestOutput, TextLine, PRIORITY_INFO,
};
use crate::metrics::RequestMetrics;
use crate::proxy::body::proxy_response::HeaderValues;
use crate::proxy::listen::ip_text::IpText;
use crate::proxy::pipeline::client_ip::X_FORWARDED_FOR;
use crate::proxy::pipeline::request_stamp::{RequestId, RequestStamp};

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
    /// Where this listener's request lines are written (JSON stdout, text or the journal).
    pub log: RequestOutput,
    /// Where they are copied while a Kamal container is attached (`None`: request lines off).
    pub mirror: Option<&'static LogMirror>,
}

/// One client connection: the listener it came in on and the client's address.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub listener: ListenerInfo,
    pub client: SocketAddr,
    /// The client's address as text, for `X-Forwarded-For` and the log: spelled once for
    /// all of the connection's requests.
    pub client_ip: IpText,
}

impl Peer {
    pub fn new(listener: ListenerInfo, client: SocketAddr) -> Self {
        Peer {
            listener,
            client,
            client_ip: IpText::new(client.ip()),
        }
    }
}

/// The request's line, boxed: it rides in every future and body on the request's path,
/// and those are moved several times per request; a pointer moves for free, the 580 bytes
/// of its fields do not (measured: memcpy was the largest single item in the profile).
pub struct RequestLog(Box<Entry>);

pub struct Entry {
    start: Instant,
    peer: Peer,
    method: Method,
    uri: Uri,
    version: Version,
    host: Option<HeaderValue>,
    request_id: RequestId,
    req_content_length: Option<HeaderValue>,
    req_content_type: Option<HeaderValue>,
    user_agent: Option<HeaderValue>,
    forwarded_for: Option<HeaderValue>,
    pub status: StatusCode,
    /// Shared with the service and target, not copied: two allocations per request saved.
    pub service: Option<Arc<str>>,
    pub target: Option<Arc<str>>,
    resp_content_type: Option<HeaderValue>,
    /// `req_<name>` / `resp_<name>` fields chosen by `--log-*-header`, the names spelled as
    /// `Key` reads them.
    /// The logged headers' fields: the key, and the value (`None`: not sent, or not text).
    extra: Vec<(Arc<str>, Option<HeaderValue>)>,
    /// Replaced by the handler once the request is routed.
    pub metrics: RequestMetrics,
    written: bool,
}

/// A log dropped unwritten belongs to a request whose handling was abandoned: hyper drops
/// the request's future when its client disconnects before the response started (while the
/// target is still thinking, say). Go logs those as 499, and so does this.
impl Drop for RequestLog {
    fn drop(&mut self) {
        if !self.0.written {
            self.0.status = CLIENT_CLOSED_REQUEST;
            self.0.emit(0);
        }
    }
}

impl std::ops::Deref for RequestLog {
    type Target = Entry;

    fn deref(&self) -> &Entry {
        &self.0
    }
}

impl std::ops::DerefMut for RequestLog {
    fn deref_mut(&mut self) -> &mut Entry {
        &mut self.0
    }
}

/// The value of `name` as logged: the one value, or every value that is visible ASCII
/// (as `HeaderValue::to_str` has it) joined by commas.
fn joined(headers: &impl HeaderValues, name: &HeaderName) -> Option<HeaderValue> {
    let mut values = headers.values_of(name);
    let first = values.next()?;
    let Some(second) = values.next() else {
        return HeaderValue::from_bytes(first).ok();
    };
    let visible = |value: &&[u8]| {
        value
            .iter()
            .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
    };
    let all: Vec<&[u8]> = [first, second]
        .into_iter()
        .chain(values)
        .filter(visible)
        .collect();
    HeaderValue::from_bytes(&all.join(&b","[..])).ok()
}

/// A header's value as `LogFields::header` takes it: empty when absent.
fn bytes(value: &Option<HeaderValue>) -> &[u8] {
    value.as_ref().map_or(&[], HeaderValue::as_bytes)
}

impl RequestLog {
    pub fn new<B>(
        request: &Request<B>,
        peer: Peer,
        start: Instant,
        request_id: RequestId,
        metrics: RequestMetrics,
    ) -> Self {
        let mut entry = Box::new(Entry {
            start,
            peer,
            method: request.method().clone(),
            uri: request.uri().clone(),
            version: request.version(),
            host: None,
            request_id,
            req_content_length: None,
            req_content_type: None,
            user_agent: None,
            forwarded_for: None,
            status: StatusCode::OK,
            service: None,
            target: None,
            resp_content_type: None,
            extra: Vec::new(),
            metrics,
            written: false,
        });
        // One pass over the headers finds the first value of each shown: cheaper than a
        // lookup (a hash and a probe) for each.
        for (name, value) in request.headers() {
            let shown = if name == HOST {
                &mut entry.host
            } else if name == CONTENT_LENGTH {
                &mut entry.req_content_length
            } else if name == CONTENT_TYPE {
                &mut entry.req_content_type
            } else if name == USER_AGENT {
                &mut entry.user_agent
            } else if name == X_FORWARDED_FOR {
                &mut entry.forwarded_for
            } else {
                continue;
            };
            if shown.is_none() {
                *shown = Some(value.clone());
            }
        }
        RequestLog(entry)
    }

    /// Writes the line and records the metrics, once the response is over.
    pub fn write(mut self, bytes_sent: u64) {
        self.0.emit(bytes_sent);
    }
}

impl Entry {
    /// The client address a trusted `--client-ip-header` named, logged as `remote_addr`.
    pub fn record_client_ip(&mut self, client_ip: HeaderValue) {
        self.forwarded_for = Some(client_ip);
    }

    /// The request headers chosen by `--log-request-header`, as the target gets them: those
    /// the proxy adds when the client sent none (`stamp`) included.
    pub fn record_request_headers(
        &mut self,
        headers: &HeaderMap,
        stamp: &RequestStamp,
        logged: &[LoggedHeader],
    ) {
        let first = self.extra.len();
        self.extra.extend(logged.iter().map(|header| {
            let added = stamp.added(&header.name);
            (
                Arc::clone(header.key()),
                added.and_then(|value| HeaderValue::from_bytes(value).ok()),
            )
        }));
        let slots = &mut self.extra[first..];
        // One pass over the request's fields, as in `new`, rather than a lookup (a hash of
        // the name) per logged header; a header sent more than once is joined afterwards.
        let mut repeated = false;
        for (name, value) in headers {
            for ((_, slot), header) in slots.iter_mut().zip(logged) {
                if header.name != name || stamp.added(&header.name).is_some() {
                    continue;
                }
                match slot {
                    // Nearly always: one value, shared rather than copied.
                    None => *slot = Some(value.clone()),
                    Some(_) => repeated = true,
                }
            }
        }
        if repeated {
            for ((_, slot), header) in slots.iter_mut().zip(logged) {
                if stamp.added(&header.name).is_none() {
                    *slot = joined(headers, &header.name);
                }
            }
        }
    }

    pub fn record_response(
        &mut self,
        status: StatusCode,
        headers: &impl HeaderValues,
        logged: &[LoggedHeader],
    ) {
        self.status = status;
        self.resp_content_type = headers
            .content_type()
            .and_then(|value| HeaderValue::from_bytes(value).ok());
        for header in logged {
            self.extra
                .push((Arc::clone(header.key()), joined(headers, &header.name)));
        }
    }

    /// The response body was dropped unfinished: the client went away (499). hyper never
    /// sends the body of a HEAD response, so there it means nothing.
    pub fn client_left(&mut self) {
        if self.method != Method::HEAD {
            self.status = CLIENT_CLOSED_REQUEST;
        }
    }

    fn emit(&mut self, bytes_sent: u64) {
        if self.written {
            return;
        }
        self.written = true;
        let duration = self.start.elapsed();
        match self.peer.listener.log {
            RequestOutput::Json => JsonLine::write_batched("INFO", "Request", |line| {
                self.fill(line, bytes_sent, duration);
            }),
            RequestOutput::Text => {
                let mut line = TextLine::new("INFO", "Request");
                self.fill(&mut line, bytes_sent, duration);
                line.write_batched();
            }
            RequestOutput::Journal(journal) => {
                let message = format!(
                    "{} {}{} {}",
                    self.method,
                    self.host_without_port(),
                    self.uri.path(),
                    self.status.as_u16()
                );
                let mut record = JournalRecord::new(PRIORITY_INFO, &message);
                self.fill(&mut record, bytes_sent, duration);
                journal.send(record);
            }
            RequestOutput::Off => {}
        }
        if let Some(mirror) = self.peer.listener.mirror.filter(|m| m.is_attached()) {
            mirror.append(|lines| {
                JsonLine::write_into(lines, "INFO", "Request", |line| {
                    self.fill(line, bytes_sent, duration);
                })
            });
        }
        // Recording consumes the metrics handle; nothing is recorded twice.
        std::mem::replace(&mut self.metrics, RequestMetrics::excluded())
            .finish(self.status, duration);
    }

    /// The `Host` header without a numeric port, as Go logs it.
    fn host_without_port(&self) -> &str {
        let host = self
            .host
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        // The cut falls before a colon, on a char boundary.
        &host[..without_port(host.as_bytes()).len()]
    }

    /// Every field of the line, in the Go proxy's order and with its names. What the proxy
    /// spelled itself goes `verbatim`, headers' values as bytes (`header`): the JSON line
    /// then makes one pass over each value, or none, rather than a validation pass and an
    /// escaping one.
    fn fill(&self, line: &mut impl LogFields, bytes_sent: u64, duration: Duration) {
        let client_addr = self.peer.client_ip.as_bytes();
        // What `without_port` cuts off is visible ASCII, so the rest is as loggable as the
        // whole header.
        line.header(key!("host"), without_port(bytes(&self.host)));
        line.u64(key!("port"), u64::from(self.peer.listener.port));
        line.str(key!("path"), self.uri.path());
        match &self.request_id {
            RequestId::Sent(value) => line.header(key!("request_id"), value.as_bytes()),
            RequestId::Generated(text) => line.verbatim(key!("request_id"), text),
        }
        line.u64(key!("status"), u64::from(self.status.as_u16()));
        line.str(key!("service"), self.service.as_deref().unwrap_or(""));
        line.str(key!("target"), self.target.as_deref().unwrap_or(""));
        line.duration(key!("duration"), duration);
        // A method is a token, which JSON never escapes (`http` checks it).
        line.verbatim(key!("method"), self.method.as_str().as_bytes());
        line.i64(
            key!("req_content_length"),
            self.req_content_length
                .as_ref()
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .unwrap_or(0),
        );
        line.header(key!("req_content_type"), bytes(&self.req_content_type));
        line.u64(key!("resp_content_length"), bytes_sent);
        line.header(key!("resp_content_type"), bytes(&self.resp_content_type));
        line.verbatim(key!("client_addr"), client_addr);
        line.verbatim(
            key!("client_port"),
            itoa::Buffer::new()
                .format(self.peer.client.port())
                .as_bytes(),
        );
        match self.forwarded_for.as_ref().and_then(|v| v.to_str().ok()) {
            Some(forwarded) => line.str(key!("remote_addr"), forwarded),
            None => line.verbatim(key!("remote_addr"), client_addr),
        }
        line.header(key!("user_agent"), bytes(&self.user_agent));
        let proto = match self.version {
            Version::HTTP_10 => "HTTP/1.0",
            Version::HTTP_2 => "HTTP/2.0",
            Version::HTTP_3 => "HTTP/3.0",
            _ => "HTTP/1.1",
        };
        line.verbatim(key!("proto"), proto.as_bytes());
        line.verbatim(key!("scheme"), self.peer.listener.scheme.as_bytes());
        line.str(key!("query"), self.uri.query().unwrap_or(""));
        for (key, value) in &self.extra {
            line.header(Key::from_json(key), bytes(value));
        }
    }
}

/// `host` without a trailing `:<digits>`. By hand rather than with `rsplit_once`: a search
/// for a char costs more than this scan.
fn without_port(host: &[u8]) -> &[u8] {
    let digits = host.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    match host.len().checked_sub(digits + 1) {
        Some(colon) if host[colon] == b':' => &host[..colon],
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::LogFields;
    use std::collections::BTreeMap;
    use std::time::Duration;

    /// Collects what `fill` writes, as the journal would name it.
    #[derive(Default)]
    struct Fields(BTreeMap<String, String>);

    impl LogFields for Fields {
        fn str(&mut self, key: Key<'_>, value: &str) {
            self.0.insert(key.name().to_string(), value.to_string());
        }
        fn u64(&mut self, key: Key<'_>, value: u64) {
            self.0.insert(key.name().to_string(), value.to_string());
        }
        fn i64(&mut self, key: Key<'_>, value: i64) {
            self.0.insert(key.name().to_string(), value.to_string());
        }
        fn duration(&mut self, key: Key<'_>, value: Duration) {
            self.0.insert(
                format!("{}_usec", key.name()),
                value.as_micros().to_string(),
            );
        }
    }

    fn sample_log() -> RequestLog {
        let request = Request::get("/app/x?q=1")
            .header("host", "web.test:8080")
            .header("user-agent", "curl")
            .body(())
            .unwrap();
        let listener = ListenerInfo {
            port: 80,
            scheme: "http",
            https_port: 443,
            log: RequestOutput::Json,
            mirror: None,
        };
        let peer = Peer::new(listener, "192.0.2.7:5555".parse().unwrap());
        let mut log = RequestLog::new(
            &request,
            peer,
            Instant::now(),
            RequestId::Sent(HeaderValue::from_static("req-1")),
            crate::metrics::RequestMetrics::excluded(),
        );
        log.service = Some("web".into());
        log.target = Some("127.0.0.1:3000".into());
        log.record_response(StatusCode::BAD_GATEWAY, &HeaderMap::new(), &[]);
        log
    }

    #[test]
    fn fills_every_output_with_the_go_field_names() {
        let mut fields = Fields::default();
        sample_log().fill(&mut fields, 42, Duration::from_millis(5));
        let get = |key: &str| fields.0.get(key).map(String::as_str);
        assert_eq!(get("host"), Some("web.test"));
        assert_eq!(get("path"), Some("/app/x"));
        assert_eq!(get("query"), Some("q=1"));
        assert_eq!(get("status"), Some("502"));
        assert_eq!(get("service"), Some("web"));
        assert_eq!(get("target"), Some("127.0.0.1:3000"));
        assert_eq!(get("request_id"), Some("req-1"));
        assert_eq!(get("method"), Some("GET"));
        assert_eq!(get("resp_content_length"), Some("42"));
        assert!(get("duration_usec").is_some());
    }

    #[test]
    fn names_journal_fields_in_upper_case_when_writing_to_the_journal() {
        let mut record = JournalRecord::new(PRIORITY_INFO, "GET web.test/app/x 502");
        sample_log().fill(&mut record, 42, Duration::from_millis(5));
        let text = String::from_utf8_lossy(record.as_bytes()).to_string();
        for field in [
            "SERVICE=web\n",
            "TARGET=127.0.0.1:3000\n",
            "REQUEST_ID=req-1\n",
            "STATUS=502\n",
            "METHOD=GET\n",
            "PATH=/app/x\n",
            "HOST=web.test\n",
            "DURATION_USEC=",
            "CLIENT_ADDR=192.0.2.7\n",
        ] {
            assert!(text.contains(field), "{field} missing from {text}");
        }
    }

    #[test]
    fn logs_the_request_id_and_start_the_proxy_adds_as_request_headers() {
        let names = [
            LoggedHeader::request(HeaderName::from_static("x-request-id")),
            LoggedHeader::request(HeaderName::from_static("x-request-start")),
        ];
        let logged = |log: &RequestLog| -> Vec<(String, String)> {
            log.extra
                .iter()
                .map(|(key, value)| {
                    (
                        key.to_string(),
                        String::from_utf8_lossy(bytes(value)).to_string(),
                    )
                })
                .collect()
        };
        let mut headers = HeaderMap::new();
        let stamp = RequestStamp::new(&headers, 1234);
        let mut log = sample_log();
        log.record_request_headers(&headers, &stamp, &names);
        let generated = (
            ",\"req_x_request_id\":\"".to_string(),
            stamp.id().as_str().to_string(),
        );
        let start = (
            ",\"req_x_request_start\":\"".to_string(),
            "t=1234".to_string(),
        );
        assert_eq!(logged(&log), [generated, start.clone()]);

        headers.insert(&names[0].name, HeaderValue::from_static("client-id"));
        let stamp = RequestStamp::new(&headers, 1234);
        let mut log = sample_log();
        log.record_request_headers(&headers, &stamp, &names);
        let sent = (
            ",\"req_x_request_id\":\"".to_string(),
            "client-id".to_string(),
        );
        assert_eq!(logged(&log), [sent, start]);
    }

    /// Writes through `JsonLine::str` alone, as lines were written before `verbatim` and
    /// `header` had fast paths: the reference those must match byte for byte.
    struct StrOnly<'a, 'b>(&'a mut JsonLine<'b>);

    impl LogFields for StrOnly<'_, '_> {
        fn str(&mut self, key: Key<'_>, value: &str) {
            self.0.str(key, value);
        }
        fn u64(&mut self, key: Key<'_>, value: u64) {
            self.0.u64(key, value);
        }
        fn i64(&mut self, key: Key<'_>, value: i64) {
            self.0.i64(key, value);
        }
        fn duration(&mut self, key: Key<'_>, value: Duration) {
            LogFields::duration(self.0, key, value);
        }
    }

    /// The JSON line without its time, written by `JsonLine`'s fast paths or through `str`.
    fn json_fields(log: &RequestLog, str_only: bool) -> String {
        let mut buffer = Vec::new();
        JsonLine::write_into(&mut buffer, "INFO", "Request", |line| {
            let duration = Duration::from_nanos(7);
            if str_only {
                log.fill(&mut StrOnly(line), 42, duration);
            } else {
                log.fill(line, 42, duration);
            }
        });
        let text = String::from_utf8(buffer).unwrap();
        text.split_once("\",").unwrap().1.to_string()
    }

    #[test]
    fn writes_the_same_json_as_through_str_when_values_are_odd() {
        let header = |bytes: &[u8]| Some(HeaderValue::from_bytes(bytes).unwrap());
        let mut log = sample_log();
        log.0.written = true;
        log.0.peer = Peer::new(log.peer.listener, "[2001:db8::7]:443".parse().unwrap());
        log.0.request_id = RequestId::Sent(HeaderValue::from_static("\"id\" \\ 1"));
        log.0.host = header(b"w\xe9b.test:8080");
        log.0.user_agent = header(b"a\tb\"c");
        log.0.req_content_type = header(b"text/plain; caf\xe9");
        log.0.forwarded_for = header(b"198.51.100.\xff");
        log.0.extra = vec![(Arc::from(",\"req_x_trace\":\""), header(b"\\\""))];
        let fast = json_fields(&log, false);
        assert_eq!(fast, json_fields(&log, true));
        assert!(
            fast.contains(r#""host":"","#)
                && fast.contains(r#""request_id":"\"id\" \\ 1","#)
                && fast.contains(r#""client_addr":"2001:db8::7","client_port":"443","remote_addr":"2001:db8::7","user_agent":"a\tb\"c","#),
            "{fast}"
        );

        log.0.request_id = RequestStamp::new(&HeaderMap::new(), 0).id().clone();
        log.0.host = header(b"[::1]:80");
        log.0.forwarded_for = header(b"\"203.0.113.9\"");
        log.0.method = Method::from_bytes(b"PURGE").unwrap();
        assert_eq!(json_fields(&log, false), json_fields(&log, true));
    }

    /// The line as the Go proxy writes it, byte for byte but for the time.
    #[test]
    fn writes_json_in_the_go_order_and_escaping() {
        let request = Request::get("/app/x?q=1&b=\\")
            .header("host", "web.test:8080")
            .header("user-agent", "cu\"rl\\x")
            .header("x-trace", "a")
            .header("x-trace", "b\"c")
            .header("content-length", "12")
            .body(())
            .unwrap();
        let mut log = sample_log();
        log.0.uri = request.uri().clone();
        log.0.user_agent = request.headers().get(USER_AGENT).cloned();
        log.0.req_content_length = request.headers().get(CONTENT_LENGTH).cloned();
        let stamp = RequestStamp::new(request.headers(), 0);
        log.record_request_headers(
            request.headers(),
            &stamp,
            &[LoggedHeader::request(HeaderName::from_static("x-trace"))],
        );
        let mut response = HeaderMap::new();
        response.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        log.record_response(
            StatusCode::BAD_GATEWAY,
            &response,
            &[LoggedHeader::response(CONTENT_TYPE)],
        );
        log.0.written = true;
        let mut buffer = Vec::new();
        JsonLine::write_into(&mut buffer, "INFO", "Request", |line| {
            log.fill(line, 42, Duration::from_nanos(1_234_567));
        });
        let text = String::from_utf8(buffer).unwrap();
        let (time, rest) = text.split_once("\",").unwrap();
        assert!(
            time.starts_with("{\"time\":\"") && time.ends_with('Z'),
            "{time}"
        );
        assert_eq!(
            rest,
            concat!(
                r#""level":"INFO","msg":"Request","host":"web.test","port":80,"path":"/app/x","request_id":"req-1","status":502,"service":"web","target":"127.0.0.1:3000","duration":1234567,"method":"GET","req_content_length":12,"req_content_type":"","resp_content_length":42,"resp_content_type":"text/html; charset=utf-8","client_addr":"192.0.2.7","client_port":"5555","remote_addr":"192.0.2.7","user_agent":"cu\"rl\\x","proto":"HTTP/1.1","scheme":"http","query":"q=1&b=\\","req_x_trace":"a,b\"c","resp_content_type":"text/html; charset=utf-8"}"#,
                "\n"
            )
        );
    }

    #[test]
    fn drops_only_a_numeric_port_from_the_host() {
        for (host, logged) in [
            ("web.test:8080", "web.test"),
            ("web.test", "web.test"),
            ("web.test:", "web.test"),
            ("a:b:80", "a:b"),
            ("[::1]:443", "[::1]"),
            ("[::1]", "[::1]"),
            ("host:8a0", "host:8a0"),
            ("8080", "8080"),
            (":80", ""),
            ("", ""),
        ] {
            assert_eq!(without_port(host.as_bytes()), logged.as_bytes(), "{host}");
        }
    }
}
