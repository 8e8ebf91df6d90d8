//! How the proxy's HTTP/1.1 listener treats its clients, byte for byte: the contract any
//! client-facing server must keep.
//!
//! That server is our own (`src/proxy/h1/server/`). These tests were written against hyper's
//! `server::conn::http1`, which it replaced, and pin what hyper did, so the replacement is
//! held to the same behaviour; the few written since cover what it decides itself. They
//! cover:
//!
//! - persistence: keep-alive by default for HTTP/1.1, opt-in for HTTP/1.0, and
//!   `Connection: close`; pipelined requests answered in order;
//! - request smuggling defences (RFC 9112 §6.3, §11.2): conflicting or malformed framing
//!   (`Content-Length` with `Transfer-Encoding`, two lengths, signed or hex lengths, codings
//!   other than chunked, bad chunk sizes) and malformed heads (obs-fold, whitespace before
//!   a colon, NUL/CR/DEL in a value) are refused before any byte reaches the target (a bad
//!   chunk size: before a whole request does), and the connection closes after the error;
//! - limits: the largest head that must pass, and what answers a head, a request line or a
//!   header count over the limit;
//! - `Expect: 100-continue`, absolute-form request targets, request bodies (chunked with
//!   extensions and trailers, a GET with a body, one the proxy refuses unread), HEAD,
//!   unknown methods and CONNECT;
//! - the response framing a client gets: chunked to HTTP/1.1, close-delimited to HTTP/1.0,
//!   and the `date`/`server` headers;
//! - a head trickling in a byte at a time, garbage, and a connection closed unused.
//!
//! Clients are raw TCP connections writing exact bytes (`support::raw_target::RawClient`,
//! whose every read times out after 5 s); the target is `support::raw_target`'s scripted
//! one, which records the raw head and body of every request it reads. Where today's
//! behaviour is a choice rather than a requirement, the test says so. Three defects it
//! found are fixed: a plain CONNECT reached the app as `CONNECT /` (now 501), an
//! absolute-form request kept a conflicting `Host`, and an HTTP/1.0 client was promised a
//! keep-alive on a close-delimited body.
//!
//! Not tested: the header-read timeout (30 s, as hyper's was) closes a client that sent
//! part of a head and stalled; a test would take too long.

mod support;

use support::raw_target::{
    assert_ok, proxy_serving, RawClient, RawResponse, RawTarget, Reply, FRAMING_HOST as HOST,
};
use support::Proxy;

/// A chunked response from the target, `hello`.
fn chunked_hello() -> Reply {
    Reply::raw("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
}

/// Reads on until the proxy closes `client`, and asserts nothing more came first.
async fn assert_closed(client: &mut RawClient) {
    let rest = client.read_to_close().await;
    assert!(
        rest.is_empty(),
        "bytes after the response: {:?}",
        String::from_utf8_lossy(&rest)
    );
}

/// Sends `request` on a new connection to `proxy`: the client gets `status` with an empty
/// body, the connection closes, and the target never read a byte of the request.
async fn assert_refused_on(proxy: &Proxy, target: &RawTarget, request: &[u8], status: u16) {
    let mut client = RawClient::connect(proxy.addr()).await;
    client.send(request).await;
    let response = client.read_response(false).await;
    let shown = String::from_utf8_lossy(request);
    assert_eq!(response.status, status, "{shown:?}: {response:?}");
    // Today's choice, as hyper's was: a refused head gets no body.
    assert_eq!(response.body_text(), "", "{shown:?}");
    assert_closed(&mut client).await;
    assert_eq!(target.heads_read(), 0, "the target read {shown:?}");
}

/// [`assert_refused_on`] a proxy of its own.
async fn assert_refused(request: impl AsRef<[u8]>, status: u16) {
    let (proxy, target) = proxy_serving(vec![]).await;
    assert_refused_on(&proxy, &target, request.as_ref(), status).await;
}

/// `GET path` with the test host and `extra` header lines (each ending in CRLF).
fn get(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: {HOST}\r\n{extra}\r\n")
}

/// A `POST /upload` with `headers` (each ending in CRLF) and `body`.
fn post(headers: &str, body: &str) -> String {
    format!("POST /upload HTTP/1.1\r\nhost: {HOST}\r\n{headers}\r\n{body}")
}

/// `response` has today's date header: one value, an IMF-fixdate.
fn assert_has_a_date(response: &RawResponse) {
    let date = response.header("date").expect("a date header");
    assert!(
        date.ends_with(" GMT") && date.len() == "Sun, 06 Nov 1994 08:49:37 GMT".len(),
        "{date}"
    );
}

// ---------------------------------------------------------------------------------------
// Persistence and pipelining
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_three_requests_in_sequence_on_one_connection() {
    let (proxy, target) = proxy_serving(vec![]).await;
    let mut client = RawClient::connect(proxy.addr()).await;

    for path in ["/one", "/two", "/three"] {
        let response = client.get(HOST, path).await;
        assert_ok(&response, path);
        assert!(
            response.head_text().starts_with("HTTP/1.1 200 OK\r\n"),
            "{}",
            response.head_text()
        );
        assert!(response.header("connection").is_none(), "{response:?}");
    }
    let paths: Vec<_> = target.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/one", "/two", "/three"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closes_an_http_1_0_connection_after_its_response_when_it_did_not_ask_for_keep_alive() {
    let (proxy, target) = proxy_serving(vec![]).await;
    let mut client = RawClient::connect(proxy.addr()).await;

    client
        .send(format!("GET /old HTTP/1.0\r\nhost: {HOST}\r\n\r\n").as_bytes())
        .await;
    let response = client.read_response(false).await;
    assert_ok(&response, "/old");
    // Today's choice: the status line carries the client's version.
    assert!(
        response.head_text().starts_with("HTTP/1.0 200 OK\r\n"),
        "{}",
        response.head_text()
    );
    assert!(response.header("connection").is_none(), "{response:?}");
    assert_closed(&mut client).await;
    // The target is spoken to in HTTP/1.1 whatever the client's version.
    assert_eq!(target.request("/old").request_line(), "GET /old HTTP/1.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_an_http_1_0_connection_open_when_it_asks_for_keep_alive() {
    let (proxy, _target) = proxy_serving(vec![]).await;
    let mut client = RawClient::connect(proxy.addr()).await;

    for path in ["/first", "/second"] {
        client
            .send(
                format!("GET {path} HTTP/1.0\r\nhost: {HOST}\r\nconnection: keep-alive\r\n\r\n")
                    .as_bytes(),
            )
            .await;
        let response = client.read_response(false).await;
        assert_ok(&response, path);
        assert!(response.head_text().starts_with("HTTP/1.0 200 OK\r\n"));
        // The answer confirms the keep-alive, as HTTP/1.0 requires.
        assert_eq!(response.header("connection").as_deref(), Some("keep-alive"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closes_the_connection_after_answering_a_request_that_says_connection_close() {
    let (proxy, target) = proxy_serving(vec![]).await;
    let mut client = RawClient::connect(proxy.addr()).await;

    // A second request follows in the same write: it is never read.
    let mut bytes = get("/last", "connection: close\r\n");
    bytes.push_str(&get("/ignored", ""));
    client.send(bytes.as_bytes()).await;
    let response = client.read_response(false).await;
    assert_ok(&response, "/last");
    assert_eq!(response.header("connection").as_deref(), Some("close"));
    assert_closed(&mut client).await;
    let paths: Vec<_> = target.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/last"]);
    // `connection` is hop-by-hop: the target does not see the client's `close`.
    assert!(target
        .request("/last")
        .header_values("connection")
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_pipelined_requests_in_order() {
    let (proxy, target) = proxy_serving(vec![("/two", chunked_hello())]).await;
    let mut client = RawClient::connect(proxy.addr()).await;

    let pipelined = [get("/one", ""), get("/two", ""), get("/three", "")].concat();
    client.send(pipelined.as_bytes()).await;
    assert_ok(&client.read_response(false).await, "/one");
    assert_ok(&client.read_response(false).await, "hello");
    assert_ok(&client.read_response(false).await, "/three");
    let paths: Vec<_> = target.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/one", "/two", "/three"]);
    // Still open and in step.
    assert_ok(&client.get(HOST, "/four").await, "/four");
}

// ---------------------------------------------------------------------------------------
// Request smuggling defences
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drops_the_content_length_of_a_chunked_request_and_closes_after_answering() {
    // RFC 9112 §6.1: a server may reject both framings or let Transfer-Encoding win, and
    // must then close the connection. Today's choice: chunked wins, in either order. The
    // length here is wrong on purpose: a server believing it would read `5\r\nh` as the
    // body and the rest as a second request.
    let (proxy, target) = proxy_serving(vec![]).await;
    for headers in [
        "content-length: 5\r\ntransfer-encoding: chunked\r\n",
        "transfer-encoding: chunked\r\ncontent-length: 5\r\n",
    ] {
        let mut client = RawClient::connect(proxy.addr()).await;
        client
            .send(post(headers, "5\r\nhello\r\n0\r\n\r\n").as_bytes())
            .await;
        let response = client.read_response(false).await;
        assert_ok(&response, "/upload");
        assert_eq!(response.header("connection").as_deref(), Some("close"));
        assert_closed(&mut client).await;
    }
    let requests = target.requests();
    assert_eq!(requests.len(), 2);
    for request in requests {
        // Never both framings on to the target.
        assert_eq!(request.header_values("transfer-encoding"), ["chunked"]);
        assert!(request.header_values("content-length").is_empty());
        assert_eq!(request.decoded_body(), b"hello");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_two_different_content_lengths() {
    assert_refused(
        post("content-length: 5\r\ncontent-length: 6\r\n", "hello!"),
        400,
    )
    .await;
    // Two lengths in one field are refused as well, even equal ones.
    assert_refused(post("content-length: 5, 5\r\n", "hello"), 400).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merges_two_equal_content_length_fields() {
    // Today's choice (RFC 9110 §8.6 allows it): repeated identical fields are one length.
    let (proxy, target) = proxy_serving(vec![]).await;
    let mut client = RawClient::connect(proxy.addr()).await;

    client
        .send(post("content-length: 5\r\ncontent-length: 5\r\n", "hello").as_bytes())
        .await;
    assert_ok(&client.read_response(false).await, "/upload");
    let request = target.request("/upload");
    assert_eq!(request.header_values("content-length"), ["5"]);
    assert_eq!(request.body, b"hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_a_content_length_that_is_not_plain_digits() {
    let (proxy, target) = proxy_serving(vec![]).await;
    for length in ["+5", "-1", "0x5", "5 5", ""] {
        let request = post(&format!("content-length: {length}\r\n"), "hello");
        assert_refused_on(&proxy, &target, request.as_bytes(), 400).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_a_transfer_coding_that_does_not_end_in_chunked() {
    // 400 rather than 501 (today's choice; RFC 9112 §6.1 allows either for an unknown
    // coding, and requires 400 when chunked is not last).
    let (proxy, target) = proxy_serving(vec![]).await;
    for headers in [
        "transfer-encoding: gzip\r\n",
        "transfer-encoding: chunked, gzip\r\n",
        "transfer-encoding: identity\r\ncontent-length: 5\r\n",
    ] {
        let request = post(headers, "hello");
        assert_refused_on(&proxy, &target, request.as_bytes(), 400).await;
    }
    // Chunked from an HTTP/1.0 client, which cannot know it (RFC 9112 §6.1).
    let request = format!(
        "POST /upload HTTP/1.0\r\nhost: {HOST}\r\ntransfer-encoding: chunked\r\n\r\n\
         5\r\nhello\r\n0\r\n\r\n"
    );
    assert_refused_on(&proxy, &target, request.as_bytes(), 400).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepts_a_coding_list_that_ends_in_chunked_and_sends_only_chunked_on() {
    // Today's choice: `gzip, chunked` is taken as chunked, and only `chunked` goes to the
    // target; the gzip coding is dropped with it (the body bytes are passed as they are).
    let (proxy, target) = proxy_serving(vec![]).await;
    let mut client = RawClient::connect(proxy.addr()).await;

    client
        .send(
            post(
                "transfer-encoding: gzip, chunked\r\n",
                "5\r\nhello\r\n0\r\n\r\n",
            )
            .as_bytes(),
        )
        .await;
    assert_ok(&client.read_response(false).await, "/upload");
    let request = target.request("/upload");
    assert_eq!(request.header_values("transfer-encoding"), ["chunked"]);
    assert_eq!(request.decoded_body(), b"hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_an_invalid_chunk_size_and_never_completes_the_request_to_the_target() {
    let (proxy, target) = proxy_serving(vec![]).await;
    for body in [
        "zz\r\nhello\r\n0\r\n\r\n",
        "fffffffffffffffff\r\nhello\r\n0\r\n\r\n",
    ] {
        let mut client = RawClient::connect(proxy.addr()).await;
        client
            .send(post("transfer-encoding: chunked\r\n", body).as_bytes())
            .await;
        let response = client.read_response(false).await;
        // This one is the proxy's answer to a body that failed (the bad size shows when
        // the body is read), hence its small HTML body.
        assert_eq!(response.status, 400, "{body:?}: {response:?}");
        assert_eq!(response.body_text(), "<h1>400 Bad Request</h1>");
        assert_closed(&mut client).await;
    }
    // Today the head may or may not have reached the target (the body is streamed, and
    // whether the bad size was read before the head went out is a race), but no request
    // did: the proxy dropped the target connection mid-body rather than ending the body.
    assert!(target.requests().is_empty(), "{:#?}", target.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_an_obs_folded_header_line() {
    assert_refused(get("/", "x-a: 1\r\n  continued\r\n"), 400).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_whitespace_before_a_header_colon_or_inside_a_name() {
    let (proxy, target) = proxy_serving(vec![]).await;
    let host_with_space = format!("GET / HTTP/1.1\r\nhost : {HOST}\r\n\r\n");
    for request in [
        host_with_space,
        get("/", "x-a : 1\r\n"),
        get("/", "x a: 1\r\n"),
    ] {
        assert_refused_on(&proxy, &target, request.as_bytes(), 400).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepts_bare_lf_line_endings() {
    // Today's choice (RFC 9112 §2.2 allows it): a lone LF ends a line. The target gets the
    // request with CRLF line endings.
    let (proxy, target) = proxy_serving(vec![]).await;
    let mut client = RawClient::connect(proxy.addr()).await;

    client
        .send(format!("GET /lf HTTP/1.1\nhost: {HOST}\nx-a: 1\n\n").as_bytes())
        .await;
    assert_ok(&client.read_response(false).await, "/lf");
    let request = target.request("/lf");
    assert!(
        request
            .head_text()
            .starts_with(&format!("GET /lf HTTP/1.1\r\nhost: {HOST}\r\nx-a: 1\r\n")),
        "{}",
        request.head_text()
    );
    assert_ok(&client.get(HOST, "/next").await, "/next");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_a_nul_cr_or_del_inside_a_header_value() {
    let (proxy, target) = proxy_serving(vec![]).await;
    for value in ["a\0b", "a\rb", "a\x7fb"] {
        let request = get("/", &format!("x-a: {value}\r\n"));
        assert_refused_on(&proxy, &target, request.as_bytes(), 400).await;
    }
    // A tab inside a value is allowed, and passed on as is.
    let mut client = RawClient::connect(proxy.addr()).await;
    client.send(get("/tab", "x-a: a\tb\r\n").as_bytes()).await;
    assert_ok(&client.read_response(false).await, "/tab");
    assert_eq!(target.request("/tab").header_values("x-a"), ["a\tb"]);
}

// ---------------------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_a_request_head_of_a_hundred_fields_and_384_kib() {
    // The floor the server must not go below. Its limits sit just above it, where hyper's
    // were: more than 100 fields (431), or a head of more than 408 KiB (431).
    let (proxy, target) = proxy_serving(vec![]).await;
    let mut client = RawClient::connect(proxy.addr()).await;
    let mut extra = format!("x-large: {}\r\n", "l".repeat(384 * 1024));
    for n in 0..98 {
        extra.push_str(&format!("x-header-{n}: {n}\r\n"));
    }

    client.send(get("/large", &extra).as_bytes()).await;
    assert_ok(&client.read_response(false).await, "/large");
    let request = target.request("/large");
    assert_eq!(request.header_values("x-large")[0].len(), 384 * 1024);
    assert_eq!(request.header_values("x-header-97"), ["97"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_431_and_closes_when_the_request_head_is_over_the_limit() {
    assert_refused(
        get("/", &format!("x-huge: {}\r\n", "x".repeat(512 * 1024))),
        431,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_431_to_more_than_a_hundred_header_fields() {
    // `host` and 100 more: 101 fields.
    let extra: String = (0..100).map(|n| format!("x-header-{n}: {n}\r\n")).collect();
    assert_refused(get("/", &extra), 431).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_414_to_a_request_target_over_64_kib() {
    // Today's limit is the `http` crate's: a URI of up to 65534 bytes passes.
    let (proxy, target) = proxy_serving(vec![]).await;
    let longest = format!("/{}", "a".repeat(65533));
    let mut client = RawClient::connect(proxy.addr()).await;
    assert_ok(&client.get(HOST, &longest).await, &longest);

    let too_long = get(&format!("/{}", "a".repeat(100 * 1024)), "");
    let mut client = RawClient::connect(proxy.addr()).await;
    client.send(too_long.as_bytes()).await;
    let response = client.read_response(false).await;
    assert_eq!(response.status, 414, "{response:?}");
    assert_eq!(response.body_text(), "");
    assert_closed(&mut client).await;
    assert_eq!(target.heads_read(), 1, "only the 65534-byte one reached it");
}

// ---------------------------------------------------------------------------------------
// Expect, absolute form, bodies, methods
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_100_continue_before_the_body_is_sent_and_forwards_the_body() {
    let (proxy, target) = proxy_serving(vec![]).await;
    let mut client = RawClient::connect(proxy.addr()).await;

    client
        .send(post("content-length: 11\r\nexpect: 100-continue\r\n", "").as_bytes())
        .await;
    // Nothing of the body has been sent: the interim response must come first.
    let interim = client.read_through(b"\r\n\r\n").await;
    assert_eq!(interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    client.send(b"hello world").await;
    assert_ok(&client.read_response(false).await, "/upload");
    let request = target.request("/upload");
    assert_eq!(request.body, b"hello world");
    assert_eq!(request.header_values("content-length"), ["11"]);
    // The expectation is passed on too (RFC 9110 §10.1.1), so the target may answer 100
    // as well: the proxy drops interim responses (see `upstream_framing`).
    assert_eq!(request.header_values("expect"), ["100-continue"]);
}

/// A `POST /upload` for a host nothing serves: answered 404 without its body being read.
fn post_unrouted(headers: &str, body: &str) -> String {
    format!("POST /upload HTTP/1.1\r\nhost: nowhere.test\r\n{headers}\r\n{body}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_off_a_small_body_nobody_read_and_keeps_the_connection() {
    let (proxy, _target) = proxy_serving(vec![]).await;
    let mut client = RawClient::connect(proxy.addr()).await;

    client
        .send(post_unrouted("content-length: 5\r\n", "hello").as_bytes())
        .await;
    let refused = client.read_response(false).await;
    assert_eq!(refused.status, 404, "{refused:?}");
    assert!(refused.header("connection").is_none(), "{refused:?}");
    // The body was read off: the next request is not taken for its continuation.
    assert_ok(&client.get(HOST, "/next").await, "/next");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn says_close_and_closes_when_a_large_unread_body_is_still_coming() {
    let (proxy, _target) = proxy_serving(vec![]).await;
    let mut client = RawClient::connect(proxy.addr()).await;

    let start = "x".repeat(1000);
    let request = post_unrouted("content-length: 10000000\r\n", &start);
    assert_refused_with_close(&mut client, &request).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_asks_for_a_body_it_refuses_and_closes_after_refusing() {
    // RFC 9110 §10.1.1: a server that answers without reading the body need not send 100;
    // the client may then never send the body, so the connection cannot go on.
    let (proxy, _target) = proxy_serving(vec![]).await;
    let mut client = RawClient::connect(proxy.addr()).await;

    let request = post_unrouted("content-length: 5\r\nexpect: 100-continue\r\n", "");
    assert_refused_with_close(&mut client, &request).await;
}

/// Sends `request`: the client gets a 404 that says the connection closes, and it does.
async fn assert_refused_with_close(client: &mut RawClient, request: &str) {
    client.send(request.as_bytes()).await;
    let refused = client.read_response(false).await;
    assert_eq!(refused.status, 404, "{refused:?}");
    assert_eq!(refused.header("connection").as_deref(), Some("close"));
    assert_closed(client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_an_absolute_form_request_by_its_authority() {
    let (proxy, target) = proxy_serving(vec![]).await;
    let mut client = RawClient::connect(proxy.addr()).await;

    // With a matching Host, and (today's leniency: RFC 9112 §3.2 says 400) without one.
    for (path, host_line) in [
        ("/with-host", format!("host: {HOST}\r\n")),
        ("/bare", String::new()),
    ] {
        client
            .send(format!("GET http://{HOST}{path}?q=1 HTTP/1.1\r\n{host_line}\r\n").as_bytes())
            .await;
        let expected = format!("{path}?q=1");
        assert_ok(&client.read_response(false).await, &expected);
        // The target gets the origin form and the authority as its Host.
        let request = target.request(&expected);
        assert_eq!(request.request_line(), format!("GET {expected} HTTP/1.1"));
        assert_eq!(request.header_values("host"), [HOST]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaces_a_conflicting_host_with_the_absolute_form_authority() {
    let (proxy, target) = proxy_serving(vec![]).await;
    let mut client = RawClient::connect(proxy.addr()).await;

    client
        .send(
            format!("GET http://{HOST}/abs HTTP/1.1\r\nhost: other.example.com\r\n\r\n").as_bytes(),
        )
        .await;
    assert_ok(&client.read_response(false).await, "/abs");
    let request = target.request("/abs");
    assert_eq!(request.header_values("host"), [HOST]);
    assert_eq!(request.header_values("x-forwarded-host"), [HOST]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_a_chunked_request_body_re_chunked_without_extensions_or_trailers() {
    let (proxy, target) = proxy_serving(vec![]).await;
    let mut client = RawClient::connect(proxy.addr()).await;

    client
        .send(
            post(
                "transfer-encoding: chunked\r\ntrailer: x-t\r\n",
                "5;a=b\r\nhello\r\n6;c\r\n world\r\n0\r\nx-t: 1\r\n\r\n",
            )
            .as_bytes(),
        )
        .await;
    assert_ok(&client.read_response(false).await, "/upload");
    let request = target.request("/upload");
    assert_eq!(request.header_values("transfer-encoding"), ["chunked"]);
    let wire = String::from_utf8_lossy(&request.body).into_owned();
    assert!(!wire.contains(';'), "extensions passed on: {wire:?}");
    // Today's choice: request trailers stop at the proxy.
    assert!(
        wire.ends_with("\r\n0\r\n\r\n"),
        "trailers passed on: {wire:?}"
    );
    assert_eq!(request.decoded_body(), b"hello world");
    // The trailers were consumed: the connection is in step.
    assert_ok(&client.get(HOST, "/next").await, "/next");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_the_body_of_a_get_with_a_content_length() {
    let (proxy, target) = proxy_serving(vec![]).await;
    let mut client = RawClient::connect(proxy.addr()).await;

    client
        .send(
            format!("GET /search HTTP/1.1\r\nhost: {HOST}\r\ncontent-length: 5\r\n\r\nquery")
                .as_bytes(),
        )
        .await;
    assert_ok(&client.read_response(false).await, "/search");
    let request = target.request("/search");
    assert_eq!(request.header_values("content-length"), ["5"]);
    assert_eq!(request.body, b"query");
    assert_ok(&client.get(HOST, "/next").await, "/next");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_a_head_request_with_its_status_though_no_body_is_sent() {
    let (proxy, _target) = proxy_serving(vec![]).await;
    let mut client = RawClient::connect(proxy.addr()).await;

    client
        .send(b"HEAD / HTTP/1.1\r\nhost: nowhere.test\r\nx-request-id: head-1\r\n\r\n")
        .await;
    let head = client.read_response(true).await;
    assert_eq!(head.status, 404, "{head:?}");
    // The error page's body is not sent to a HEAD: that is not a client that left (499).
    let line = proxy.request_log("head-1").await;
    assert_eq!(line["status"], 404, "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_head_with_the_content_length_and_no_body() {
    let (proxy, _target) = proxy_serving(vec![(
        "/head",
        Reply::raw("HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n"),
    )])
    .await;
    let mut client = RawClient::connect(proxy.addr()).await;

    // The HEAD and a GET in one write: had any body bytes followed the HEAD's head, the
    // GET's response would not start where it does.
    let both = [
        format!("HEAD /head HTTP/1.1\r\nhost: {HOST}\r\n\r\n"),
        get("/next", ""),
    ]
    .concat();
    client.send(both.as_bytes()).await;
    let head = client.read_response(true).await;
    assert_eq!(head.status, 200, "{head:?}");
    assert_eq!(head.header("content-length").as_deref(), Some("100"));
    assert_ok(&client.read_response(false).await, "/next");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_an_unknown_method() {
    let (proxy, target) = proxy_serving(vec![]).await;
    let mut client = RawClient::connect(proxy.addr()).await;

    client
        .send(format!("PURGE /cached HTTP/1.1\r\nhost: {HOST}\r\n\r\n").as_bytes())
        .await;
    assert_ok(&client.read_response(false).await, "/cached");
    assert_eq!(
        target.request("/cached").request_line(),
        "PURGE /cached HTTP/1.1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_connect_by_its_authority_and_answers_404_for_an_unknown_host() {
    let (proxy, target) = proxy_serving(vec![]).await;
    let mut client = RawClient::connect(proxy.addr()).await;

    client
        .send(b"CONNECT example.org:443 HTTP/1.1\r\nhost: example.org:443\r\n\r\n")
        .await;
    let response = client.read_response(false).await;
    assert_eq!(response.status, 404, "{response:?}");
    assert_eq!(target.heads_read(), 0);
    assert_ok(&client.get(HOST, "/next").await, "/next");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_connect_for_a_served_host() {
    // A reverse proxy is no tunnel: the client should get an error answer, and the target
    // should not get a CONNECT whose request target was rewritten to `/`.
    let (proxy, target) = proxy_serving(vec![]).await;
    let mut client = RawClient::connect(proxy.addr()).await;

    client
        .send(format!("CONNECT {HOST}:443 HTTP/1.1\r\nhost: {HOST}:443\r\n\r\n").as_bytes())
        .await;
    let response = client.read_response(false).await;
    assert_eq!(response.status, 501, "{response:?}");
    assert_eq!(target.heads_read(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_on_what_a_client_sends_right_behind_its_upgrade_request() {
    // A client may send the new protocol's first bytes in the same write as its upgrade
    // request: they were read along with the head and must reach the target after the 101.
    let (proxy, _target) = proxy_serving(vec![(
        "/socket",
        Reply::raw(
            "HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n",
        )
        .then_echo(),
    )])
    .await;
    let mut client = RawClient::connect(proxy.addr()).await;
    let upgrade = get("/socket", "connection: upgrade\r\nupgrade: websocket\r\n");
    client
        .send(format!("{upgrade}early bytes").as_bytes())
        .await;

    let switched = client.read_response(false).await;
    assert_eq!(switched.status, 101, "{}", switched.head_text());
    assert_eq!(client.read_through(b"early bytes").await, b"early bytes");
    client.send(b"later").await;
    assert_eq!(client.read_through(b"later").await, b"later");
}

// ---------------------------------------------------------------------------------------
// The response to the client
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_a_chunked_response_to_an_http_1_1_client_chunked() {
    let (proxy, _target) = proxy_serving(vec![("/chunked", chunked_hello())]).await;
    let mut client = RawClient::connect(proxy.addr()).await;

    let response = client.get(HOST, "/chunked").await;
    assert_ok(&response, "hello");
    assert!(response.chunked, "{response:?}");
    assert!(response.header("content-length").is_none(), "{response:?}");
    assert_ok(&client.get(HOST, "/next").await, "/next");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_a_chunked_response_to_an_http_1_0_client_close_delimited() {
    let (proxy, _target) = proxy_serving(vec![("/chunked", chunked_hello())]).await;
    let mut client = RawClient::connect(proxy.addr()).await;

    client
        .send(format!("GET /chunked HTTP/1.0\r\nhost: {HOST}\r\n\r\n").as_bytes())
        .await;
    // No framing header: the body runs to the close.
    let response = client.read_response(false).await;
    assert!(response.head_text().starts_with("HTTP/1.0 200 OK\r\n"));
    assert!(
        response.header("transfer-encoding").is_none(),
        "{response:?}"
    );
    assert!(response.header("content-length").is_none(), "{response:?}");
    assert_eq!(response.body_text(), "hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn does_not_promise_keep_alive_on_a_close_delimited_response() {
    let (proxy, _target) = proxy_serving(vec![("/chunked", chunked_hello())]).await;
    let mut client = RawClient::connect(proxy.addr()).await;

    client
        .send(
            format!("GET /chunked HTTP/1.0\r\nhost: {HOST}\r\nconnection: keep-alive\r\n\r\n")
                .as_bytes(),
        )
        .await;
    let response = client.read_response(false).await;
    assert!(
        response.header("transfer-encoding").is_none(),
        "{response:?}"
    );
    assert_eq!(response.body_text(), "hello");
    // Only the close ends this body, so the connection cannot persist.
    assert_ne!(
        response.header("connection").as_deref(),
        Some("keep-alive"),
        "{response:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adds_a_date_but_no_server_header_and_keeps_the_targets_own() {
    let (proxy, _target) = proxy_serving(vec![(
        "/dated",
        Reply::raw(
            "HTTP/1.1 200 OK\r\ndate: Mon, 01 Jan 2001 00:00:00 GMT\r\nserver: target/1\r\n\
             content-length: 2\r\n\r\nok",
        ),
    )])
    .await;
    let mut client = RawClient::connect(proxy.addr()).await;

    // Today's choice: the proxy dates a response the target did not, and names no server.
    let plain = client.get(HOST, "/plain").await;
    assert_ok(&plain, "/plain");
    assert_has_a_date(&plain);
    assert!(plain.header("server").is_none(), "{plain:?}");
    // The target's own are passed on, not replaced or doubled.
    let dated = client.get(HOST, "/dated").await;
    assert_ok(&dated, "ok");
    assert_eq!(
        dated.header("date").as_deref(),
        Some("Mon, 01 Jan 2001 00:00:00 GMT")
    );
    assert_eq!(dated.header("server").as_deref(), Some("target/1"));
}

// ---------------------------------------------------------------------------------------
// Slow clients and garbage
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_a_request_head_sent_one_byte_at_a_time() {
    let (proxy, target) = proxy_serving(vec![]).await;
    let mut client = RawClient::connect(proxy.addr()).await;

    for byte in get("/slow", "x-a: 1\r\n").bytes() {
        client.send(&[byte]).await;
        tokio::task::yield_now().await;
    }
    assert_ok(&client.read_response(false).await, "/slow");
    assert_eq!(target.request("/slow").header_values("x-a"), ["1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_400_and_closes_on_a_garbage_request_line() {
    assert_refused("HELLO\r\n\r\n", 400).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_nothing_for_a_connection_closed_before_its_first_request() {
    let (proxy, _target) = proxy_serving(vec![]).await;
    drop(RawClient::connect(proxy.addr()).await);
    // A request after it, so the proxy has handled the close by the time it is logged.
    let mut client = RawClient::connect(proxy.addr()).await;
    client
        .send(get("/after", "x-request-id: after-the-empty-one\r\n").as_bytes())
        .await;
    assert_ok(&client.read_response(false).await, "/after");
    proxy.request_log("after-the-empty-one").await;

    let complaints: Vec<_> = proxy
        .logs()
        .into_iter()
        .filter(|entry| entry["level"] != "INFO")
        .collect();
    assert!(complaints.is_empty(), "{complaints:#?}");
}
