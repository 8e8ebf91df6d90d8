//! Reading a target's response head: the status and headers, and how its body is framed.
//!
//! Framing follows RFC 9112 §6.3 strictly, because a target whose framing we misread would
//! leave the rest of one response to be taken as the next one on the kept-alive connection
//! (response desynchronisation). So: no body for HEAD, 1xx, 204 and 304; a final `chunked`
//! coding wins over `Content-Length` (which is then dropped, and the connection is not
//! reused); several `Content-Length` values must agree; anything else is read until the
//! target closes. Whatever cannot be framed for sure is an error, and the exchange a 502.
//!
//! Header values are slices of the one frozen head buffer, not copies.

use bytes::BytesMut;
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Version};

use super::header_block::{self, BlockError, Spans, MAX_HEAD_LEN};
use super::header_maps;
use super::headers;
use super::message_body::Framing;

/// A parsed head: the response without its body, how the body is framed, and whether the
/// connection can carry another request once the body is read.
#[derive(Debug)]
pub struct ResponseHead {
    pub response: Response<()>,
    pub framing: Framing,
    pub reusable: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeadError {
    #[error("malformed response head: {0}")]
    Malformed(httparse::Error),
    #[error("response head larger than {MAX_HEAD_LEN} bytes")]
    TooLarge,
    #[error("invalid status code {0}")]
    InvalidStatus(u16),
    #[error("invalid response header {0:?}")]
    InvalidHeader(String),
    #[error("invalid Content-Length in response")]
    InvalidContentLength,
}

impl From<BlockError> for HeadError {
    fn from(error: BlockError) -> Self {
        match error {
            BlockError::TooLarge => HeadError::TooLarge,
            BlockError::Malformed(error) => HeadError::Malformed(error),
        }
    }
}

/// Parses the head at the front of `buf`, removing it. `Ok(None)` means the head is not
/// complete yet. Interim (1xx) responses other than 101 are returned like any other: the
/// caller skips them.
pub fn parse(buf: &mut BytesMut, method: &Method) -> Result<Option<ResponseHead>, HeadError> {
    let mut spans = Spans::new();
    let (head_len, minor_version, code) = {
        let mut fields = header_block::uninit();
        let mut parsed = httparse::Response::new(&mut []);
        let status = httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut parsed,
            buf,
            &mut fields,
        );
        let Some(head_len) = header_block::head_length(status, buf.len())? else {
            return Ok(None);
        };
        spans.record(buf, parsed.headers);
        // A complete parse always sets the version and the code.
        (
            head_len,
            parsed.version.unwrap_or(1),
            parsed.code.unwrap_or_default(),
        )
    };
    let status = StatusCode::from_u16(code).map_err(|_| HeadError::InvalidStatus(code))?;
    let head = buf.split_to(head_len).freeze();
    // The connection-level headers steer framing and reuse here and go no further (hop-by-hop,
    // RFC 9110 §7.6.1), except the handshake of a 101, which the client needs.
    let upgraded = status == StatusCode::SWITCHING_PROTOCOLS;
    let mut hop = HopByHop::default();
    let mut headers = header_maps::take(spans.len());
    for field in spans.fields(&head) {
        let (name, value) = field.map_err(|invalid| HeadError::InvalidHeader(invalid.0))?;
        if hop.take(&name, &value) && !(upgraded && (name == CONNECTION || name == UPGRADE)) {
            continue;
        }
        headers.append(name, value);
    }
    for name in &hop.named {
        headers.remove(name);
    }
    let version = if minor_version == 0 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let (framing, reusable) = framing(&mut headers, &hop, version, status, method)?;
    let mut response = Response::new(());
    *response.status_mut() = status;
    *response.version_mut() = version;
    *response.headers_mut() = headers;
    Ok(Some(ResponseHead {
        response,
        framing,
        reusable,
    }))
}

/// What the hop-by-hop headers of a response said.
#[derive(Default)]
struct HopByHop {
    /// `Connection: close`.
    close: bool,
    /// The last `Transfer-Encoding` value.
    transfer_encoding: Option<HeaderValue>,
    /// Other headers that `Connection` names (rare).
    named: Vec<HeaderName>,
}

impl HopByHop {
    /// Notes `name: value` if it is hop-by-hop; says whether it is.
    fn take(&mut self, name: &HeaderName, value: &HeaderValue) -> bool {
        if !headers::is_hop_by_hop(name) {
            return false;
        }
        if name == CONNECTION {
            for token in headers::tokens(value) {
                if token.eq_ignore_ascii_case(b"close") {
                    self.close = true;
                } else if let Some(named) = headers::named_by_connection(token) {
                    self.named.push(named);
                }
            }
        } else if name == TRANSFER_ENCODING {
            self.transfer_encoding = Some(value.clone());
        }
        true
    }
}

/// The body's framing (RFC 9112 §6.3) and whether the connection survives the exchange.
fn framing(
    headers: &mut HeaderMap,
    hop: &HopByHop,
    version: Version,
    status: StatusCode,
    method: &Method,
) -> Result<(Framing, bool), HeadError> {
    let mut reusable = version == Version::HTTP_11 && !hop.close;
    if *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok((Framing::Empty, reusable));
    }
    if let Some(coding) = &hop.transfer_encoding {
        // Both framings at once is how smuggling starts: trust the coding, drop the length,
        // and never reuse the connection.
        if headers.remove(CONTENT_LENGTH).is_some() {
            reusable = false;
        }
        let chunked = headers::tokens(coding)
            .last()
            .is_some_and(|last| last.eq_ignore_ascii_case(b"chunked"));
        return Ok(if chunked {
            (Framing::Chunked, reusable)
        } else {
            (Framing::UntilClose, false)
        });
    }
    match content_length(headers)? {
        Some(0) => Ok((Framing::Empty, reusable)),
        Some(length) => Ok((Framing::Length(length), reusable)),
        None => Ok((Framing::UntilClose, false)),
    }
}

/// The one length every `Content-Length` field (and list element) states, if any.
fn content_length(headers: &HeaderMap) -> Result<Option<u64>, HeadError> {
    let mut length = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        for element in value.as_bytes().split(|&b| b == b',') {
            let element = element.trim_ascii();
            if element.is_empty() || element.len() > 19 || !element.iter().all(u8::is_ascii_digit) {
                return Err(HeadError::InvalidContentLength);
            }
            let parsed = element
                .iter()
                .fold(0u64, |n, &digit| n * 10 + u64::from(digit - b'0'));
            if length.is_some_and(|known| known != parsed) {
                return Err(HeadError::InvalidContentLength);
            }
            length = Some(parsed);
        }
    }
    Ok(length)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::header_block::MAX_HEADERS;

    fn head(text: &str, method: Method) -> Result<Option<ResponseHead>, HeadError> {
        parse(&mut BytesMut::from(text), &method)
    }

    fn framing_of(text: &str) -> (Framing, bool) {
        let head = head(text, Method::GET).unwrap().unwrap();
        (head.framing, head.reusable)
    }

    #[test]
    fn parses_a_head_and_leaves_the_body_in_the_buffer() {
        let mut buf = BytesMut::from(
            "HTTP/1.1 201 Created\r\nx-a: 1\r\nX-A: 2\r\ncontent-length: 2\r\n\r\nok",
        );
        let head = parse(&mut buf, &Method::POST).unwrap().unwrap();
        assert_eq!(head.response.status(), StatusCode::CREATED);
        let values: Vec<_> = head.response.headers().get_all("x-a").iter().collect();
        assert_eq!(values, ["1", "2"]);
        assert_eq!(head.framing, Framing::Length(2));
        assert!(head.reusable);
        assert_eq!(&buf[..], b"ok");
    }

    #[test]
    fn waits_for_the_rest_of_a_partial_head() {
        let mut buf = BytesMut::from("HTTP/1.1 200 OK\r\ncontent-le");
        assert!(parse(&mut buf, &Method::GET).unwrap().is_none());
        assert_eq!(buf.len(), 27);
    }

    #[test]
    fn has_no_body_for_head_requests_and_bodiless_statuses() {
        let head = head(
            "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n",
            Method::HEAD,
        );
        let head = head.unwrap().unwrap();
        assert_eq!(head.framing, Framing::Empty);
        assert_eq!(head.response.headers()[CONTENT_LENGTH], "100");
        assert_eq!(
            framing_of("HTTP/1.1 204 No Content\r\n\r\n"),
            (Framing::Empty, true)
        );
        assert_eq!(
            framing_of("HTTP/1.1 304 Not Modified\r\ncontent-length: 9\r\n\r\n"),
            (Framing::Empty, true)
        );
        assert_eq!(
            framing_of("HTTP/1.1 100 Continue\r\n\r\n"),
            (Framing::Empty, true)
        );
    }

    #[test]
    fn chunked_wins_over_a_length_and_spoils_the_connection() {
        let head = head(
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n",
            Method::GET,
        );
        let head = head.unwrap().unwrap();
        assert_eq!((head.framing, head.reusable), (Framing::Chunked, false));
        assert!(!head.response.headers().contains_key(CONTENT_LENGTH));
        assert_eq!(
            framing_of("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, Chunked\r\n\r\n"),
            (Framing::Chunked, true)
        );
        assert_eq!(
            framing_of("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n"),
            (Framing::UntilClose, false)
        );
    }

    #[test]
    fn reads_until_close_without_framing_or_when_the_target_says_so() {
        assert_eq!(
            framing_of("HTTP/1.1 200 OK\r\n\r\n"),
            (Framing::UntilClose, false)
        );
        assert_eq!(
            framing_of(
                "HTTP/1.1 200 OK\r\nconnection: keep-alive, Close\r\ncontent-length: 1\r\n\r\n"
            ),
            (Framing::Length(1), false)
        );
        assert_eq!(
            framing_of("HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n"),
            (Framing::Length(1), false)
        );
    }

    #[test]
    fn accepts_repeated_lengths_that_agree() {
        assert_eq!(
            framing_of("HTTP/1.1 200 OK\r\ncontent-length: 3, 3\r\ncontent-length: 3\r\n\r\n"),
            (Framing::Length(3), true)
        );
        assert_eq!(
            framing_of("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"),
            (Framing::Empty, true)
        );
    }

    #[test]
    fn rejects_lengths_that_disagree_or_are_not_numbers() {
        for length in [
            "3, 4",
            "-1",
            "+3",
            "0x10",
            "",
            "99999999999999999999",
            "1 2",
        ] {
            let text = format!("HTTP/1.1 200 OK\r\ncontent-length: {length}\r\n\r\n");
            assert_eq!(
                head(&text, Method::GET).unwrap_err(),
                HeadError::InvalidContentLength,
                "{length:?}"
            );
        }
        let twice = "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\n";
        assert_eq!(
            head(twice, Method::GET).unwrap_err(),
            HeadError::InvalidContentLength
        );
    }

    #[test]
    fn rejects_malformed_and_oversized_heads() {
        assert!(matches!(
            head("HTTP/1.1 2000 OK\r\n\r\n", Method::GET),
            Err(HeadError::Malformed(_))
        ));
        assert!(matches!(
            head("garbage\r\n\r\n", Method::GET),
            Err(HeadError::Malformed(_))
        ));
        assert!(matches!(
            head("HTTP/1.1 200 OK\r\nno colon\r\n\r\n", Method::GET),
            Err(HeadError::Malformed(_))
        ));
        let huge = format!("HTTP/1.1 200 OK\r\nx-big: {}", "a".repeat(MAX_HEAD_LEN));
        assert_eq!(head(&huge, Method::GET).unwrap_err(), HeadError::TooLarge);
        let many: String = (0..=MAX_HEADERS).map(|i| format!("x-{i}: 1\r\n")).collect();
        let many = format!("HTTP/1.1 200 OK\r\n{many}\r\n");
        assert_eq!(head(&many, Method::GET).unwrap_err(), HeadError::TooLarge);
    }

    #[test]
    fn leaves_hop_by_hop_headers_and_those_connection_names_behind() {
        let text = "HTTP/1.1 200 OK\r\nconnection: keep-alive, X-Secret\r\nkeep-alive: 5\r\n\
                    x-secret: 1\r\nx-app: 1\r\ntransfer-encoding: chunked\r\n\r\n";
        let head = head(text, Method::GET).unwrap().unwrap();
        let names: Vec<_> = head.response.headers().keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["x-app"]);
        assert_eq!((head.framing, head.reusable), (Framing::Chunked, true));
    }

    #[test]
    fn keeps_the_handshake_of_a_switch() {
        let text = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\
                    Upgrade: websocket\r\nkeep-alive: 5\r\n\r\n";
        let head = head(text, Method::GET).unwrap().unwrap();
        let headers = head.response.headers();
        assert_eq!(headers[CONNECTION], "Upgrade");
        assert_eq!(headers[UPGRADE], "websocket");
        assert_eq!(headers.len(), 2);
    }

    #[test]
    fn keeps_obs_text_in_values_byte_for_byte() {
        let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nx-name: caf\xe9\r\n\r\n"[..]);
        let head = parse(&mut buf, &Method::GET).unwrap().unwrap();
        assert_eq!(head.response.headers()["x-name"].as_bytes(), b"caf\xe9");
    }
}
