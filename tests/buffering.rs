//! Request and response buffering, body limits, and the statuses for broken requests.
//!
//! With `--buffer-requests` the whole body reaches the target with an exact Content-Length,
//! spilling past `--buffer-memory` to nameless files, and a body over `--max-request-body`
//! is refused with 413 before the target sees it. With `--buffer-responses` a body over
//! `--max-response-body` is a 500, and a response goes on only once its body is whole
//! (at once when it came whole with its head), while server-sent events still stream live. A malformed
//! chunked body is a 400, an oversized request head a 431, a client that leaves mid-response is
//! logged as 499, and memory stays bounded under concurrent uploads.

mod support;

use std::convert::Infallible;
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body::Frame;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use support::raw_target::{assert_ok, RawClient, RawTarget, Reply, FRAMING_HOST};
use support::{body_hash, get, raw_request, Backend, Proxy};

const HOST: &str = "app.example.com";

type Upload = UnsyncBoxBody<Bytes, Infallible>;

/// `len` bytes that differ from position to position, so a reordering would show.
fn pattern(len: usize) -> Bytes {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

/// `body` sent chunked (no Content-Length), in 64 KiB pieces.
fn chunked(body: Bytes) -> Upload {
    let pieces: Vec<_> = (0..body.len())
        .step_by(64 * 1024)
        .map(|start| {
            Ok::<_, Infallible>(Frame::data(
                body.slice(start..body.len().min(start + 64 * 1024)),
            ))
        })
        .collect();
    StreamBody::new(futures_util::stream::iter(pieces)).boxed_unsync()
}

/// `len` bytes of one static block repeated, chunked: costs the test no memory.
fn repeated(len: usize) -> Upload {
    static BLOCK: [u8; 64 * 1024] = [b'k'; 64 * 1024];
    let pieces = (0..len.div_ceil(BLOCK.len())).map(move |i| {
        let size = BLOCK.len().min(len - i * BLOCK.len());
        Ok::<_, Infallible>(Frame::data(Bytes::from_static(&BLOCK[..size])))
    });
    StreamBody::new(futures_util::stream::iter(pieces)).boxed_unsync()
}

/// Opens a fresh connection and sends `POST path` with `body`; returns the response head
/// and its body, not yet read.
async fn post(port: u16, path: &str, body: Upload) -> http::Response<Incoming> {
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = Request::post(path).header("host", HOST).body(body).unwrap();
    tokio::time::timeout(Duration::from_secs(60), sender.send_request(request))
        .await
        .expect("a response within a minute")
        .expect("the proxy answered")
}

/// `GET path` on a fresh connection, the body not yet read.
async fn open(port: u16, path: &str, request_id: &str) -> http::Response<Incoming> {
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = Request::get(path)
        .header("host", HOST)
        .header("x-request-id", request_id)
        .body(Full::new(Bytes::new()))
        .unwrap();
    sender.send_request(request).await.expect("response head")
}

async fn echo_of(response: http::Response<Incoming>) -> Value {
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).expect("a JSON echo")
}

fn status_line(response: &str) -> &str {
    response.lines().next().unwrap_or("")
}

/// The daemon's resident memory in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffered_request_reaches_the_target_whole_with_an_exact_content_length() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    let args = ["--buffer-requests", "--buffer-memory=65536"];
    proxy.deploy("web", &app.target(), &args).await;

    // 3 MiB sent chunked: mostly spilled to disk.
    let body = pattern(3 << 20);
    let echo = echo_of(post(proxy.port(), "/upload", chunked(body.clone())).await).await;
    assert_eq!(echo["body_length"], 3 << 20);
    assert_eq!(echo["body_hash"], body_hash(&body));
    assert_eq!(echo["headers"]["content-length"], "3145728");
    assert_eq!(echo["headers"]["transfer-encoding"], Value::Null);

    // A small body with its own Content-Length: held in memory.
    let body = pattern(1000);
    let upload = Full::new(body.clone()).boxed_unsync();
    let echo = echo_of(post(proxy.port(), "/upload", upload).await).await;
    assert_eq!(echo["body_hash"], body_hash(&body));
    assert_eq!(echo["headers"]["content-length"], "1000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_over_max_request_body_gets_413_and_never_reaches_the_target() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    let args = ["--buffer-requests", "--max-request-body=1000"];
    proxy.deploy("web", &app.target(), &args).await;
    let body = "x".repeat(2000);

    // Refused on its Content-Length, before reading.
    let declared = format!(
        "POST /upload HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 2000\r\nConnection: close\r\n\r\n{body}"
    );
    let response = raw_request(proxy.port(), declared.as_bytes()).await;
    assert_eq!(status_line(&response), "HTTP/1.1 413 Payload Too Large");
    assert!(response.contains("<title>413 — Content Too Large</title>"));

    // Chunked: refused while reading.
    let chunked = format!(
        "POST /upload HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n7d0\r\n{body}\r\n0\r\n\r\n"
    );
    let response = raw_request(proxy.port(), chunked.as_bytes()).await;
    assert_eq!(status_line(&response), "HTTP/1.1 413 Payload Too Large");
    assert_eq!(app.count("/upload"), 0, "the target never saw either");

    // Exactly at the limit is fine.
    let upload = Full::new(pattern(1000)).boxed_unsync();
    let echo = echo_of(post(proxy.port(), "/upload", upload).await).await;
    assert_eq!(echo["body_length"], 1000);
    assert_eq!(app.count("/upload"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffered_response_over_max_response_body_gets_500() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    let args = [
        "--buffer-responses",
        "--max-response-body=100000",
        "--buffer-memory=16384",
    ];
    proxy.deploy("web", &app.target(), &args).await;

    let over = get(proxy.port(), HOST, "/large?bytes=100001").await;
    assert_eq!(over.status(), 500);
    assert_eq!(
        over.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(over.body, "<h1>500 Internal Server Error</h1>");

    // Within the limit, spilled past the memory part, and passed on intact.
    let within = get(proxy.port(), HOST, "/large?bytes=100000").await;
    assert_eq!(within.status(), 200);
    assert_eq!(within.body, "x".repeat(100_000));
    assert_eq!(
        within.header("content-type"),
        Some("application/octet-stream")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffered_response_is_held_until_whole_and_its_connection_reused() {
    // The head and half the body come first: the client sees nothing until the rest does.
    let gate = Arc::new(Notify::new());
    let target = RawTarget::serving(vec![(
        "/halves",
        Reply::raw("HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhello")
            .then_wait_for(&gate)
            .then_write("world"),
    )])
    .await;
    let proxy = Proxy::start();
    let args = ["--host", FRAMING_HOST, "--buffer-responses"];
    proxy.deploy("raw", &target.address(), &args).await;

    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
    let request = format!("GET /halves HTTP/1.1\r\nhost: {FRAMING_HOST}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let early = tokio::time::timeout(Duration::from_millis(300), stream.read(&mut [0; 64])).await;
    assert!(
        early.is_err(),
        "a byte of a half-read response reached the client"
    );
    gate.notify_one();
    let mut client = RawClient::new(stream);
    assert_ok(&client.read_response(false).await, "helloworld");

    // A small response, whole as it arrives, goes on at once; its connection is reused.
    assert_ok(&client.get(FRAMING_HOST, "/small").await, "/small");
    let before = target.connections();
    assert_ok(&client.get(FRAMING_HOST, "/next").await, "/next");
    assert_eq!(target.connections(), before, "a new target connection");
    assert_eq!(
        target.request("/next").connection,
        target.request("/small").connection
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_pass_through_response_buffering_live() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    proxy
        .deploy("web", &app.target(), &["--buffer-responses"])
        .await;

    let start = Instant::now();
    let response = open(proxy.port(), "/sse?events=8&ms=300", "sse").await;
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    let first_after = start.elapsed();
    assert_eq!(first, "data: 0\n\n");
    assert!(
        first_after < Duration::from_millis(1500),
        "the first event arrived after {first_after:?}, so the stream was buffered"
    );
    let rest = body.collect().await.unwrap().to_bytes();
    assert!(rest.ends_with(b"data: 7\n\n"));
    assert!(start.elapsed() >= Duration::from_millis(2100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_chunked_request_body_gets_400() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    proxy
        .deploy("stream", &app.target(), &["--host=stream.example.com"])
        .await;
    proxy
        .deploy(
            "buffer",
            &app.target(),
            &["--host=buffer.example.com", "--buffer-requests"],
        )
        .await;

    for host in ["stream.example.com", "buffer.example.com"] {
        let request = format!(
            "POST /upload HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\nzz\r\nworld\r\n0\r\n\r\n"
        );
        let response = raw_request(proxy.port(), request.as_bytes()).await;
        assert_eq!(status_line(&response), "HTTP/1.1 400 Bad Request", "{host}");
    }
    let buffered = app
        .requests_to("/upload")
        .into_iter()
        .filter(|r| r.header("host") == Some("buffer.example.com"))
        .count();
    assert_eq!(
        buffered, 0,
        "a buffered malformed body never reaches the target"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_headers_get_431() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    proxy.deploy("web", &app.target(), &[]).await;

    let request = |size: usize| {
        format!(
            "GET / HTTP/1.1\r\nHost: {HOST}\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
            "a".repeat(size)
        )
    };
    // Over hyper's limit of about 400 KiB (Go's is 1 MiB; see `proxy/server.rs`).
    let response = raw_request(proxy.port(), request(500 * 1024).as_bytes()).await;
    assert_eq!(
        status_line(&response),
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
    let response = raw_request(proxy.port(), request(300 * 1024).as_bytes()).await;
    assert_eq!(status_line(&response), "HTTP/1.1 200 OK");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_mid_response_is_logged_with_499() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    proxy.deploy("web", &app.target(), &[]).await;

    let response = open(proxy.port(), "/sse?events=200&ms=20", "leaver").await;
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, "data: 0\n\n");
    drop(body); // closes the connection

    let line = proxy.request_log("leaver").await;
    assert_eq!(line["status"], 499, "{line}");

    // A finished response keeps its status.
    let response = open(proxy.port(), "/sse?events=2&ms=20", "stayer").await;
    response.into_body().collect().await.unwrap();
    assert_eq!(proxy.request_log("stayer").await["status"], 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spill_files_never_outlive_their_request() {
    let tmp = tempfile::tempdir().unwrap();
    let proxy = Proxy::start_with_env(&[("TMPDIR", tmp.path().to_str().unwrap())]);
    let app = Backend::start("app").await;
    let args = [
        "--buffer-requests",
        "--buffer-responses",
        "--buffer-memory=4096",
    ];
    proxy.deploy("web", &app.target(), &args).await;

    let echo = echo_of(post(proxy.port(), "/upload", repeated(1 << 20)).await).await;
    assert_eq!(echo["body_length"], 1 << 20);
    let large = get(proxy.port(), HOST, "/large?bytes=1048576").await;
    assert_eq!(large.body.len(), 1 << 20);

    let dir = tmp.path().join("kamal-proxy-buffers");
    let mode = std::fs::metadata(&dir)
        .expect("bodies past --buffer-memory were spilled here")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "the spill directory is private");
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert!(left.is_empty(), "spill files left behind: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_timeout_gives_504_with_buffering_on() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    let args = [
        "--buffer-requests",
        "--buffer-responses",
        "--target-timeout=300ms",
    ];
    proxy.deploy("web", &app.target(), &args).await;

    get(proxy.port(), HOST, "/slow?ms=2000")
        .await
        .assert_error_page(504, "504 — Gateway Timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_bounded_under_concurrent_buffered_uploads() {
    const UPLOADS: usize = 20;
    const SIZE: usize = 20 << 20;
    /// Allowed growth per upload beyond the 1 MiB held in memory: connection buffers,
    /// spill-file buffers, allocator slack.
    const SLACK_PER_UPLOAD_KIB: u64 = 3 * 1024;

    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    proxy
        .deploy("web", &app.target(), &["--buffer-requests"])
        .await;
    echo_of(post(proxy.port(), "/warm-up", repeated(2 << 20)).await).await;
    let pid = proxy.pid();
    let before = rss_kib(pid);

    let peak = Arc::new(AtomicU64::new(before));
    let sampler = {
        let peak = Arc::clone(&peak);
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let uploads: Vec<_> = (0..UPLOADS)
        .map(|_| {
            let port = proxy.port();
            tokio::spawn(async move { echo_of(post(port, "/", repeated(SIZE)).await).await })
        })
        .collect();
    for upload in uploads {
        assert_eq!(upload.await.unwrap()["body_length"], SIZE);
    }
    sampler.abort();
    let peak = peak.load(Ordering::Relaxed);

    let growth = peak.saturating_sub(before);
    let allowed = UPLOADS as u64 * (1024 + SLACK_PER_UPLOAD_KIB);
    eprintln!("RSS {before} KiB before, peak {peak} KiB: +{growth} KiB for {UPLOADS} uploads");
    assert!(
        growth <= allowed,
        "RSS grew by {growth} KiB for {UPLOADS} concurrent {SIZE}-byte uploads; allowed {allowed} KiB"
    );
}
