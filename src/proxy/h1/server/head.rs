//! Reading a client's request head: the request, how its body is framed, and whether the
//! connection may carry another request after it.
//!
//! This is where request smuggling is stopped (RFC 9112 §6.3, §11.2), so framing is read
//! strictly: `Content-Length` must be plain digits and every field must agree; a
//! `Transfer-Encoding` must end in `chunked` and comes only from HTTP/1.1 clients; with both,
//! chunked wins and the connection closes after the response, since a peer on the way
//! may have read the message the other way. Malformed lines (obs-fold, whitespace before a
//! colon, control bytes in values) are httparse's to refuse. Anything refused here never
//! reaches a target; the client gets the status and the connection closes.
//!
//! Header values are slices of the one frozen head buffer, not copies.

use bytes::BytesMut;
use http::header::{CONNECTION, CONTENT_LENGTH, EXPECT, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, Method, Request, StatusCode, Uri, Version};

use crate::proxy::h1::header_block::{self, BlockError, Spans, MAX_HEAD_LEN};
use crate::proxy::h1::header_maps;
use crate::proxy::h1::headers;
use crate::proxy::h1::message_body::{self, Framing};

/// The longest request target the `http` crate's `Uri` takes.
const MAX_URI_LEN: usize = 65534;

/// A parsed request head.
#[derive(Debug)]
pub struct RequestHead {
    pub request: Request<()>,
    pub framing: Framing,
    /// The client allows another request on the connection after this one.
    pub keep_alive: bool,
    /// The client waits for `100 Continue` before it sends the body.
    pub expect_continue: bool,
}

/// Why a head was refused; each is answered with its status, and the connection closed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeadError {
    #[error("malformed request head: {0}")]
    Malformed(httparse::Error),
    #[error(
        "request head larger than {MAX_HEAD_LEN} bytes or with more than {} fields",
        header_block::MAX_HEADERS
    )]
    TooLarge,
    #[error("request target longer than {MAX_URI_LEN} bytes")]
    UriTooLong,
    #[error("invalid request target")]
    InvalidUri,
    #[error("invalid request header {0:?}")]
    InvalidHeader(String),
    #[error("invalid Content-Length")]
    InvalidContentLength,
    #[error("unsupported Transfer-Encoding")]
    InvalidTransferEncoding,
}

impl HeadError {
    pub fn status(&self) -> StatusCode {
        match self {
            HeadError::TooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            HeadError::UriTooLong => StatusCode::URI_TOO_LONG,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl From<BlockError> for HeadError {
    fn from(error: BlockError) -> Self {
        match error {
            BlockError::TooLarge => HeadError::TooLarge,
            BlockError::Malformed(error) => HeadError::Malformed(error),
        }
    }
}

/// Parses the head at the front of `buf`, removing it. `Ok(None)` means it is not complete
/// yet. Empty lines before the request line are skipped (RFC 9112 §2.2).
pub fn parse(buf: &mut BytesMut) -> Result<Option<RequestHead>, HeadError> {
    let mut spans = Spans::new();
    let (head_len, minor_version, method, path) = {
        let mut fields = header_block::uninit();
        let mut parsed = httparse::Request::new(&mut []);
        let status = httparse::ParserConfig::default().parse_request_with_uninit_headers(
            &mut parsed,
            buf,
            &mut fields,
        );
        let Some(head_len) = header_block::head_length(status, buf.len())? else {
            return Ok(None);
        };
        // A complete parse always sets the method, the path and the version.
        let method = Method::from_bytes(parsed.method.unwrap_or_default().as_bytes())
            .map_err(|_| HeadError::Malformed(httparse::Error::Token))?;
        let path = parsed.path.unwrap_or_default();
        if path.len() > MAX_URI_LEN {
            return Err(HeadError::UriTooLong);
        }
        let base = buf.as_ptr() as usize;
        let path = (path.as_ptr() as usize - base)..(path.as_ptr() as usize - base + path.len());
        spans.record(buf, parsed.headers);
        (head_len, parsed.version.unwrap_or(1), method, path)
    };
    let head = buf.split_to(head_len).freeze();
    let uri = Uri::from_maybe_shared(head.slice(path)).map_err(|_| HeadError::InvalidUri)?;
    let mut headers = header_maps::take(spans.len());
    let mut present = Present::default();
    for field in spans.fields(&head) {
        let (name, value) = field.map_err(|invalid| HeadError::InvalidHeader(invalid.0))?;
        present.note(&name);
        headers.append(name, value);
    }
    let version = if minor_version == 0 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let (framing, both_framings) = framing(&headers, present, version)?;
    let keep_alive = !both_framings && wants_keep_alive(&headers, present, version);
    let expect_continue = version == Version::HTTP_11
        && framing != Framing::Empty
        && present.expect
        && headers
            .get(EXPECT)
            .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = headers;
    Ok(Some(RequestHead {
        request,
        framing,
        keep_alive,
        expect_continue,
    }))
}

/// Which of the fields that steer framing and persistence a head has, noted as its map is
/// built: most requests have none of them, and a field known to be absent is not looked up.
#[derive(Debug, Default, Clone, Copy)]
struct Present {
    transfer_encoding: bool,
    content_length: bool,
    connection: bool,
    expect: bool,
}

impl Present {
    fn note(&mut self, name: &HeaderName) {
        // Standard names: each comparison is of two small integers.
        if *name == TRANSFER_ENCODING {
            self.transfer_encoding = true;
        } else if *name == CONTENT_LENGTH {
            self.content_length = true;
        } else if *name == CONNECTION {
            self.connection = true;
        } else if *name == EXPECT {
            self.expect = true;
        }
    }
}

/// The body's framing, and whether the client sent both framings (RFC 9112 §6.1: chunked
/// wins, and the connection must close after the response).
fn framing(
    headers: &HeaderMap,
    present: Present,
    version: Version,
) -> Result<(Framing, bool), HeadError> {
    if present.transfer_encoding {
        let codings = headers.get_all(TRANSFER_ENCODING).iter();
        let last = codings
            .flat_map(|value| headers::tokens(value.as_bytes()))
            .last();
        let chunked = last.is_some_and(|last| last.eq_ignore_ascii_case(b"chunked"));
        if version != Version::HTTP_11 || !chunked {
            return Err(HeadError::InvalidTransferEncoding);
        }
        return Ok((Framing::Chunked, present.content_length));
    }
    if !present.content_length {
        return Ok((Framing::Empty, false));
    }
    let mut length = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        let parsed = message_body::content_length(value.as_bytes())
            .ok_or(HeadError::InvalidContentLength)?;
        if length.is_some_and(|known| known != parsed) {
            return Err(HeadError::InvalidContentLength);
        }
        length = Some(parsed);
    }
    let framing = match length {
        None | Some(0) => Framing::Empty,
        Some(length) => Framing::Length(length),
    };
    Ok((framing, false))
}

/// HTTP/1.1 persists unless the client says `close`; HTTP/1.0 only if it says `keep-alive`.
fn wants_keep_alive(headers: &HeaderMap, present: Present, version: Version) -> bool {
    let says = |word: &[u8]| {
        present.connection
            && headers
                .get_all(CONNECTION)
                .iter()
                .flat_map(|value| headers::tokens(value.as_bytes()))
                .any(|token| token.eq_ignore_ascii_case(word))
    };
    if version == Version::HTTP_11 {
        !says(b"close")
    } else {
        says(b"keep-alive")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Result<Option<RequestHead>, HeadError> {
        parse(&mut BytesMut::from(text))
    }

    fn parsed(text: &str) -> RequestHead {
        head(text).unwrap().expect("a complete head")
    }

    #[test]
    fn parses_a_head_and_leaves_the_body_in_the_buffer() {
        let mut buf = BytesMut::from(
            "\r\nPOST /a?b=c HTTP/1.1\r\nHost: x.test\r\nx-a: 1\r\nX-A: 2\r\ncontent-length: 2\r\n\r\nokGET",
        );
        let head = parse(&mut buf).unwrap().unwrap();
        let request = &head.request;
        assert_eq!(request.method(), Method::POST);
        assert_eq!(request.uri(), "/a?b=c");
        assert_eq!(request.version(), Version::HTTP_11);
        assert_eq!(request.headers()["host"], "x.test");
        let values: Vec<_> = request.headers().get_all("x-a").iter().collect();
        assert_eq!(values, ["1", "2"]);
        assert_eq!(head.framing, Framing::Length(2));
        assert!(head.keep_alive);
        assert!(!head.expect_continue);
        assert_eq!(&buf[..], b"okGET");
    }

    #[test]
    fn waits_for_the_rest_of_a_head() {
        assert!(head("GET / HTTP/1.1\r\nhost: x").unwrap().is_none());
        assert!(head("").unwrap().is_none());
    }

    #[test]
    fn decides_persistence_by_version_and_connection() {
        assert!(parsed("GET / HTTP/1.1\r\n\r\n").keep_alive);
        assert!(!parsed("GET / HTTP/1.1\r\nconnection: Close\r\n\r\n").keep_alive);
        assert!(!parsed("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(parsed("GET / HTTP/1.0\r\nconnection: keep-alive\r\n\r\n").keep_alive);
    }

    #[test]
    fn frames_by_length_or_chunked() {
        assert_eq!(parsed("GET / HTTP/1.1\r\n\r\n").framing, Framing::Empty);
        assert_eq!(
            parsed("POST / HTTP/1.1\r\ncontent-length: 0\r\n\r\n").framing,
            Framing::Empty
        );
        let equal = parsed("POST / HTTP/1.1\r\ncontent-length: 5\r\ncontent-length: 5\r\n\r\n");
        assert_eq!(equal.framing, Framing::Length(5));
        let chunked = parsed("POST / HTTP/1.1\r\ntransfer-encoding: gzip, chunked\r\n\r\n");
        assert_eq!(chunked.framing, Framing::Chunked);
        assert!(chunked.keep_alive);
    }

    #[test]
    fn lets_chunked_win_over_a_length_and_closes_after() {
        let both =
            parsed("POST / HTTP/1.1\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n");
        assert_eq!(both.framing, Framing::Chunked);
        assert!(!both.keep_alive);
    }

    #[test]
    fn refuses_lengths_that_are_not_one_plain_number() {
        for length in ["+5", "-1", "0x5", "5 5", "5, 5", "99999999999999999999"] {
            let text = format!("POST / HTTP/1.1\r\ncontent-length: {length}\r\n\r\n");
            assert_eq!(head(&text).unwrap_err(), HeadError::InvalidContentLength);
        }
        let two = "POST / HTTP/1.1\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n";
        assert_eq!(head(two).unwrap_err(), HeadError::InvalidContentLength);
    }

    #[test]
    fn refuses_codings_not_ending_in_chunked_and_chunked_from_http_1_0() {
        for coding in ["gzip", "chunked, gzip", "identity"] {
            let text = format!("POST / HTTP/1.1\r\ntransfer-encoding: {coding}\r\n\r\n");
            assert_eq!(head(&text).unwrap_err(), HeadError::InvalidTransferEncoding);
        }
        let old = "POST / HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n";
        assert_eq!(head(old).unwrap_err(), HeadError::InvalidTransferEncoding);
    }

    #[test]
    fn notes_a_wait_for_100_continue_only_with_a_body() {
        let text = "POST / HTTP/1.1\r\nexpect: 100-Continue\r\ncontent-length: 1\r\n\r\n";
        assert!(parsed(text).expect_continue);
        assert!(!parsed("GET / HTTP/1.1\r\nexpect: 100-continue\r\n\r\n").expect_continue);
    }

    #[test]
    fn refuses_malformed_heads_with_their_status() {
        let folded = head("GET / HTTP/1.1\r\nx-a: 1\r\n  more\r\n\r\n").unwrap_err();
        assert_eq!(folded.status(), StatusCode::BAD_REQUEST);
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_URI_LEN));
        assert_eq!(head(&long).unwrap_err().status(), StatusCode::URI_TOO_LONG);
        let many: String = (0..101).map(|n| format!("x-{n}: {n}\r\n")).collect();
        let many = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(
            head(&many).unwrap_err().status(),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
        let huge = format!("GET / HTTP/1.1\r\nx: {}", "a".repeat(MAX_HEAD_LEN));
        assert_eq!(head(&huge).unwrap_err(), HeadError::TooLarge);
        assert!(matches!(
            head("HELLO\r\n\r\n"),
            Err(HeadError::Malformed(_))
        ));
    }

    #[test]
    fn keeps_an_absolute_form_target() {
        let head = parsed("GET http://x.test/a HTTP/1.1\r\n\r\n");
        assert_eq!(head.request.uri().authority().unwrap(), "x.test");
    }
}
