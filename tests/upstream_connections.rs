//! Connections to targets: kept alive and reused, never reused with an unread body, and a
//! connection the target closed while idle costs the client nothing.
//!
//! The target is the scripted raw target of `support::raw_target`, so the test controls
//! exactly when it closes connections and can count them.

mod support;

use std::time::Duration;

use http::Method;
use support::raw_target::{proxy_in_front_of, RawClient, RawTarget, Reply};
use support::{HttpClient, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HOST: &str = "pool.example.com";
/// Big enough that a client which stops reading leaves most of it unread.
const BIG: usize = 4 * 1024 * 1024;

/// A target that answers each path with the path itself, `/close` the same but closes the
/// connection after answering (without announcing it), and `/big` with `BIG` bytes. With
/// `close_idle`, like an app server's keep-alive timeout crossing a request on the wire, it
/// closes without answering a request that arrives on a connection idle for at least that
/// long.
async fn target(close_idle: Option<Duration>) -> RawTarget {
    RawTarget::start(move |request| {
        if close_idle.is_some_and(|idle| request.idle_for >= idle) {
            return Reply::hang_up();
        }
        match request.path.as_str() {
            "/big" => Reply::ok(vec![b'x'; BIG]),
            "/close" => Reply::ok("/close").then_close(),
            path => Reply::ok(path),
        }
    })
    .await
}

async fn proxy_with_target() -> (Proxy, RawTarget) {
    let target = target(None).await;
    (proxy_in_front_of(&target, HOST).await, target)
}

/// Sends `GET path` on `client` and returns the body of its 200.
async fn exchange_on(client: &mut RawClient, path: &str) -> String {
    let response = client.get(HOST, path).await;
    assert_eq!(response.status, 200, "{}", response.head_text());
    assert!(response.complete, "{response:?}");
    response.body_text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuses_kept_alive_connections() {
    let (proxy, target) = proxy_with_target().await;
    let before = target.connections();
    // One client connection is served by one worker, which needs one connection to the
    // target for requests one after another.
    let mut client = RawClient::connect(proxy.addr()).await;
    for n in 0..50 {
        let path = format!("/{n}");
        assert_eq!(exchange_on(&mut client, &path).await, path);
    }
    assert_eq!(target.connections() - before, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_the_target_closed_is_replaced_without_an_error() {
    let (proxy, target) = proxy_with_target().await;
    let client = HttpClient::new(proxy.port());
    for n in 0..40 {
        // Every other request finds the pooled connection just closed by the target.
        let path = if n % 2 == 0 { "/close" } else { "/again" };
        let response = client.get(HOST, path).await;
        assert_eq!(response.status(), 200, "request {n}");
        assert_eq!(response.body, path, "request {n}");
    }
    assert!(target.connections() >= 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_left_unread_never_reaches_the_next_request() {
    let (proxy, target) = proxy_with_target().await;
    for n in 0..5 {
        // Read the head and a little of a big body, then hang up.
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        let request = format!("GET /big HTTP/1.1\r\nhost: {HOST}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut some = [0u8; 8192];
        let read = stream.read(&mut some).await.unwrap();
        assert!(String::from_utf8_lossy(&some[..read]).starts_with("HTTP/1.1 200"));
        drop(stream);

        let path = format!("/after-{n}");
        let response = support::send(proxy.port(), Method::GET, HOST, &path, &[]).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.body, path);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        target.connections() >= 5,
        "a half-read connection was reused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_crossing_the_targets_idle_close_is_sent_again() {
    let target = target(Some(Duration::from_millis(1200))).await;
    let proxy = proxy_in_front_of(&target, HOST).await;
    let mut client = RawClient::connect(proxy.addr()).await;
    assert_eq!(exchange_on(&mut client, "/first").await, "/first");
    // The pooled connection has been idle past the target's limit: the target drops the
    // next request on it unanswered, and the proxy sends it again on a new connection.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(exchange_on(&mut client, "/second").await, "/second");
}
