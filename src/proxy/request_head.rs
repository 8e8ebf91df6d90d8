//! Writing a request head for a target: request line, headers, and the body's framing.
//!
//! The request reached us through hyper's server, so its method, path and header values are
//! already valid (no CR or LF can be in them). The framing header is ours to decide, from
//! the body the target will actually get: an exact length when it is known, `chunked`
//! otherwise, nothing for a request without a body. The client's own framing headers were
//! removed as hop-by-hop, or agree with the length (hyper checked it).

use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::request::Parts;
use http_body::SizeHint;

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

/// Appends the head of `parts` to `out` (HTTP/1.1, origin-form target).
pub fn encode(parts: &Parts, framing: BodyFraming, out: &mut Vec<u8>) {
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let headers = &parts.headers;
    out.reserve(64 + path.len() + headers.len() * 32);
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        if name == TRANSFER_ENCODING || (name == CONTENT_LENGTH && framing != BodyFraming::None) {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
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
    use http::Request;

    fn encoded(request: Request<()>, framing: BodyFraming) -> String {
        let (parts, ()) = request.into_parts();
        let mut out = Vec::new();
        encode(&parts, framing, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn writes_the_request_line_and_headers_in_order() {
        let request = Request::get("/a?b=c")
            .header("host", "example.com")
            .header("x-many", "1")
            .header("x-many", "2")
            .body(())
            .unwrap();
        assert_eq!(
            encoded(request, BodyFraming::None),
            "GET /a?b=c HTTP/1.1\r\nhost: example.com\r\nx-many: 1\r\nx-many: 2\r\n\r\n"
        );
    }

    #[test]
    fn states_the_framing_of_the_body_the_target_gets() {
        let request = || {
            Request::post("/")
                .header("content-length", "99")
                .header("transfer-encoding", "chunked")
                .body(())
                .unwrap()
        };
        assert_eq!(
            encoded(request(), BodyFraming::Length(3)),
            "POST / HTTP/1.1\r\ncontent-length: 3\r\n\r\n"
        );
        assert_eq!(
            encoded(request(), BodyFraming::Chunked),
            "POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n"
        );
    }

    #[test]
    fn keeps_a_zero_length_of_an_empty_body() {
        let request = Request::post("/")
            .header("content-length", "0")
            .body(())
            .unwrap();
        assert_eq!(
            encoded(request, BodyFraming::None),
            "POST / HTTP/1.1\r\ncontent-length: 0\r\n\r\n"
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
