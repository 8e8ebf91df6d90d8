//! `AddedHeaders`: the header lines the proxy adds to every request it forwards: the request
//! stamp (`X-Request-Id`, `X-Request-Start`) and the forwarding headers (`X-Forwarded-*`,
//! `X-Kamal-Target`), written by the codec's request encoder through `AddedLines` after the
//! client's own lines, which they replace where the service says so.

use http::header::HeaderName;
use http::HeaderMap;

use crate::proxy::h1::client::request_head::AddedLines;
use crate::proxy::pipeline::forwarded_headers::ForwardedHeaders;
use crate::proxy::pipeline::request_stamp::RequestStamp;

/// The headers the proxy adds to every request it forwards.
pub struct AddedHeaders<'a> {
    pub stamp: &'a RequestStamp,
    pub forwarded: ForwardedHeaders<'a>,
}

impl AddedLines for AddedHeaders<'_> {
    fn replaces(&self, name: &HeaderName) -> bool {
        self.forwarded.replaces(name)
    }

    fn write(&self, client: &HeaderMap, out: &mut Vec<u8>) {
        self.stamp.write(out);
        self.forwarded.write(client, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::h1::client::request_head::{encode, BodyFraming};
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
}
