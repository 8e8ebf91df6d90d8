//! Writing a request head for a target: request line, headers, and the body's framing.
//!
//! The request reached us through hyper's server, so its method, path and header values are
//! already valid (no CR or LF can be in them). The framing header is ours to decide, from
//! the body the target will actually get: an exact length when it is known, `chunked`
//! otherwise, nothing for a request without a body. The client's own framing headers were
//! removed as hop-by-hop, or agree with the length (hyper checked it).
//!
//! The headers the proxy adds (`AddedLines`) are written here too, straight from the
//! values it holds on the stack, and the client's headers they replace are skipped: adding
//! them to the request's `HeaderMap` first would cost an allocation per value and a hash
//! per insert and removal, on every request.

use http::header::{HeaderName, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::request::Parts;
use http::HeaderMap;
use http_body::SizeHint;

use crate::proxy::h1::header_lines::HeaderLines;

/// How the request body goes to the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    None,
    Length(u64),
    Chunked,
}

impl BodyFraming {
    /// `end_stream` says the body is known to be empty.
    pub fn of(end_stream: bool, size: &SizeHint) -> Self {
        match size.exact() {
            _ if end_stream => BodyFraming::None,
            Some(length) => BodyFraming::Length(length),
            None => BodyFraming::Chunked,
        }
    }
}

/// The header lines the proxy adds to a request, written after the client's. The codec
/// knows only which of the client's lines they replace; what they say is the pipeline's
/// (`pipeline::added_headers`). Generic, not `dyn`: `encode` is on every request's path.
pub trait AddedLines {
    /// Whether the client's `name` lines are left out, because these replace them.
    fn replaces(&self, name: &HeaderName) -> bool;
    /// Writes the lines; `client` is the client's headers, for chains these extend.
    fn write(&self, client: &HeaderMap, out: &mut Vec<u8>);
}

/// Room for the lines `AddedLines` writes (some 200 bytes unless the client sent chains
/// to extend), so the head is allocated once.
const ADDED_LINES: usize = 256;

/// Appends the head of `parts`, with the headers the proxy adds, to `out` (HTTP/1.1,
/// origin-form target).
pub fn encode(parts: &Parts, framing: BodyFraming, added: &impl AddedLines, out: &mut Vec<u8>) {
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let headers = &parts.headers;
    out.reserve(64 + ADDED_LINES + path.len() + headers.len() * 32);
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        let framing_header =
            name == TRANSFER_ENCODING || (name == CONTENT_LENGTH && framing != BodyFraming::None);
        if framing_header || added.replaces(name) {
            continue;
        }
        out.line(name, [value.as_bytes()]);
    }
    added.write(headers, out);
    match framing {
        BodyFraming::None => {}
        BodyFraming::Length(length) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(length).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        BodyFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// The line that opens a chunk of `len` bytes.
pub fn chunk_header(len: usize) -> Vec<u8> {
    format!("{len:x}\r\n").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::request::Builder;
    use http::Request;

    /// Adds `x-added: 1` and replaces the client's `x-replaced`.
    struct Added;

    impl AddedLines for Added {
        fn replaces(&self, name: &HeaderName) -> bool {
            name == "x-replaced"
        }
        fn write(&self, _client: &HeaderMap, out: &mut Vec<u8>) {
            out.extend_from_slice(b"x-added: 1\r\n");
        }
    }

    fn encoded(request: Builder, framing: BodyFraming) -> String {
        let (parts, ()) = request.body(()).unwrap().into_parts();
        let mut out = Vec::new();
        encode(&parts, framing, &Added, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn writes_the_request_line_and_headers_in_order_then_the_added_ones() {
        let request = Request::get("/a?b=c")
            .header("host", "example.com")
            .header("x-many", "1")
            .header("x-replaced", "old")
            .header("x-many", "2");
        assert_eq!(
            encoded(request, BodyFraming::None),
            "GET /a?b=c HTTP/1.1\r\n\
             host: example.com\r\nx-many: 1\r\nx-many: 2\r\nx-added: 1\r\n\r\n"
        );
    }

    #[test]
    fn states_the_framing_of_the_body_the_target_gets() {
        let request = || {
            Request::post("/")
                .header("content-length", "99")
                .header("transfer-encoding", "chunked")
        };
        assert_eq!(
            encoded(request(), BodyFraming::Length(3)),
            "POST / HTTP/1.1\r\nx-added: 1\r\ncontent-length: 3\r\n\r\n"
        );
        assert_eq!(
            encoded(request(), BodyFraming::Chunked),
            "POST / HTTP/1.1\r\nx-added: 1\r\ntransfer-encoding: chunked\r\n\r\n"
        );
    }

    #[test]
    fn keeps_a_zero_length_of_an_empty_body() {
        let request = Request::post("/").header("content-length", "0");
        assert_eq!(
            encoded(request, BodyFraming::None),
            "POST / HTTP/1.1\r\ncontent-length: 0\r\nx-added: 1\r\n\r\n"
        );
    }

    #[test]
    fn frames_by_what_is_known_of_the_body() {
        assert_eq!(
            BodyFraming::of(true, &SizeHint::with_exact(0)),
            BodyFraming::None
        );
        assert_eq!(
            BodyFraming::of(false, &SizeHint::with_exact(5)),
            BodyFraming::Length(5)
        );
        assert_eq!(
            BodyFraming::of(false, &SizeHint::default()),
            BodyFraming::Chunked
        );
    }

    #[test]
    fn opens_chunks_with_their_length_in_hex() {
        assert_eq!(chunk_header(255), b"ff\r\n");
    }
}
