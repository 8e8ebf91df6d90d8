//! Writing a request head for a target: request line, headers, and the body's framing.
//!
//! The request reached us through hyper's server, so its method, path and header values are
//! already valid (no CR or LF can be in them). The framing header is ours to decide, from
//! the body the target will actually get: an exact length when it is known, `chunked`
//! otherwise, nothing for a request without a body. The client's own framing headers were
//! removed as hop-by-hop, or agree with the length (hyper checked it).
//!
//! The headers the proxy adds (`AddedHeaders`) are written here too, straight from the
//! values it holds on the stack, and the client's headers they replace are skipped: adding
//! them to the request's `HeaderMap` first would cost an allocation per value and a hash
//! per insert and removal, on every request.

use http::header::{HeaderName, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::request::Parts;
use http_body::SizeHint;

use crate::proxy::pipeline::forwarded_headers::ForwardedHeaders;
use crate::proxy::pipeline::request_stamp::RequestStamp;

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

/// The headers the proxy adds to every request it forwards.
pub struct AddedHeaders<'a> {
    pub stamp: &'a RequestStamp,
    pub forwarded: ForwardedHeaders<'a>,
}

/// Where header lines go: the encoded head (`Vec<u8>`), or a list for a `HeaderMap`.
pub trait HeaderLines {
    /// Adds `name` with the elements of `value` joined by ", " (a single value is one).
    fn line<'v>(&mut self, name: &HeaderName, value: impl IntoIterator<Item = &'v [u8]>);
}

impl HeaderLines for Vec<u8> {
    fn line<'v>(&mut self, name: &HeaderName, value: impl IntoIterator<Item = &'v [u8]>) {
        self.extend_from_slice(name.as_str().as_bytes());
        self.extend_from_slice(b": ");
        push_list(self, value);
        self.extend_from_slice(b"\r\n");
    }
}

/// Appends `elements` separated by ", ".
pub fn push_list<'v>(out: &mut Vec<u8>, elements: impl IntoIterator<Item = &'v [u8]>) {
    for (index, element) in elements.into_iter().enumerate() {
        if index > 0 {
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(element);
    }
}

/// Room for the lines `AddedHeaders` writes (some 200 bytes unless the client sent chains
/// to extend), so the head is allocated once.
const ADDED_LINES: usize = 256;

/// Appends the head of `parts`, with the headers the proxy adds, to `out` (HTTP/1.1,
/// origin-form target).
pub fn encode(parts: &Parts, framing: BodyFraming, added: &AddedHeaders<'_>, out: &mut Vec<u8>) {
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
        if framing_header || added.forwarded.replaces(name) {
            continue;
        }
        out.line(name, [value.as_bytes()]);
    }
    added.stamp.write(out);
    added.forwarded.write(headers, out);
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

    // Expected heads are spelled a part per source line: the request line, the client's
    // headers, the stamp's, the forwarding headers.

    const NOW_MS: u128 = 1_700_000_000_000;

    /// The head for `request`, and the stamp it got (for the id it was given).
    fn encoded_with(
        request: Request<()>,
        framing: BodyFraming,
        trust_client: bool,
    ) -> (String, RequestStamp) {
        let (parts, ()) = request.into_parts();
        let stamp = RequestStamp::new(&parts.headers, NOW_MS);
        let added = AddedHeaders {
            stamp: &stamp,
            forwarded: ForwardedHeaders::sample(trust_client),
        };
        let mut out = Vec::new();
        encode(&parts, framing, &added, &mut out);
        (String::from_utf8(out).unwrap(), stamp)
    }

    /// The head for a request that brings its own id (so the head is known in full).
    fn encoded(request: Builder, framing: BodyFraming) -> String {
        let request = request.header("x-request-id", "r1").body(()).unwrap();
        encoded_with(request, framing, true).0
    }

    /// What the proxy adds to a request that has its own id and no `Host`.
    const ADDED: &str = "x-request-start: t=1700000000000\r\n\
                         x-forwarded-for: 192.0.2.1\r\nx-forwarded-proto: https\r\n\
                         x-kamal-target: 10.0.0.5:3000\r\n";

    #[test]
    fn writes_the_request_line_and_headers_in_order_then_the_added_ones() {
        let request = Request::get("/a?b=c")
            .header("host", "example.com")
            .header("x-many", "1")
            .header("x-many", "2");
        assert_eq!(
            encoded(request, BodyFraming::None),
            "GET /a?b=c HTTP/1.1\r\n\
             host: example.com\r\nx-many: 1\r\nx-many: 2\r\nx-request-id: r1\r\n\
             x-request-start: t=1700000000000\r\n\
             x-forwarded-for: 192.0.2.1\r\nx-forwarded-proto: https\r\n\
             x-forwarded-host: example.com\r\nx-kamal-target: 10.0.0.5:3000\r\n\r\n"
        );
    }

    #[test]
    fn adds_a_generated_request_id_when_the_client_sent_none() {
        let request = Request::get("/")
            .header("x-request-start", "t=1")
            .body(())
            .unwrap();
        let (head, stamp) = encoded_with(request, BodyFraming::None, true);
        assert_eq!(
            head,
            format!(
                "GET / HTTP/1.1\r\nx-request-start: t=1\r\n\
                 x-request-id: {}\r\n\
                 x-forwarded-for: 192.0.2.1\r\nx-forwarded-proto: https\r\n\
                 x-kamal-target: 10.0.0.5:3000\r\n\r\n",
                stamp.id().as_str()
            )
        );
    }

    /// The client's forwarding headers, some repeated, between headers that stay.
    fn with_client_forwarding() -> Request<()> {
        Request::get("/")
            .header("host", "a.com")
            .header("x-forwarded-for", "1.1.1.1")
            .header("forwarded", "for=1.1.1.1")
            .header("x-forwarded-proto", "http")
            .header("x-app", "1")
            .header("x-forwarded-for", "2.2.2.2, 3.3.3.3")
            .header("x-forwarded-host", "b.com")
            .header("x-kamal-target", "edge:80")
            .header("x-request-id", "client-id")
            .body(())
            .unwrap()
    }

    #[test]
    fn folds_trusted_client_chains_into_its_own_and_replaces_untrusted_ones() {
        let trusted = "GET / HTTP/1.1\r\n\
                       host: a.com\r\nx-forwarded-proto: http\r\nx-app: 1\r\n\
                       x-forwarded-host: b.com\r\nx-request-id: client-id\r\n\
                       x-request-start: t=1700000000000\r\n\
                       x-forwarded-for: 1.1.1.1, 2.2.2.2, 3.3.3.3, 192.0.2.1\r\n\
                       x-kamal-target: edge:80, 10.0.0.5:3000\r\n\r\n";
        let untrusted = "GET / HTTP/1.1\r\n\
                         host: a.com\r\nx-app: 1\r\nx-request-id: client-id\r\n\
                         x-request-start: t=1700000000000\r\n\
                         x-forwarded-for: 192.0.2.1\r\nx-forwarded-proto: https\r\n\
                         x-forwarded-host: a.com\r\nx-kamal-target: 10.0.0.5:3000\r\n\r\n";
        for (trust_client, expected) in [(true, trusted), (false, untrusted)] {
            let (head, _) = encoded_with(with_client_forwarding(), BodyFraming::None, trust_client);
            assert_eq!(head, expected, "trust_client: {trust_client}");
        }
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
            format!("POST / HTTP/1.1\r\nx-request-id: r1\r\n{ADDED}content-length: 3\r\n\r\n")
        );
        assert_eq!(
            encoded(request(), BodyFraming::Chunked),
            format!(
                "POST / HTTP/1.1\r\nx-request-id: r1\r\n{ADDED}transfer-encoding: chunked\r\n\r\n"
            )
        );
    }

    #[test]
    fn keeps_a_zero_length_of_an_empty_body() {
        let request = Request::post("/").header("content-length", "0");
        assert_eq!(
            encoded(request, BodyFraming::None),
            format!("POST / HTTP/1.1\r\ncontent-length: 0\r\nx-request-id: r1\r\n{ADDED}\r\n")
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
