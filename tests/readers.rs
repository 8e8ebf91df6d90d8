//! Read targets: reads (GET/HEAD, not upgrades) go to readers, writes to writers, and
//! writer affinity keeps a client that just wrote on the writers for a while.
//!
//! With readers and a non-zero `--writer-affinity-timeout`, a write's response carries
//! `kamal-writer=<expiry ms>; Path=/; Expires=<expiry + 1s>; HttpOnly` unless the app sent
//! `X-Writer-Affinity: false`, and the proxy never passes that header on. A read with an
//! unexpired cookie goes to a writer. `--read-target-websockets` lets upgrades go to
//! readers. `X-Kamal-Target` names whichever target was picked.

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use http::Method;
use support::{send, websocket_connect, websocket_echo, Backend, Proxy, Response};

const HOST: &str = "app.example.com";

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

async fn with_reader(proxy: &Proxy, writer: &Backend, reader: &Backend, extra: &[&str]) {
    let read_target = format!("--read-target={}", reader.target());
    let args: Vec<&str> = [&[read_target.as_str()][..], extra].concat();
    proxy.deploy("web", &writer.target(), &args).await;
}

fn set_cookies(response: &Response) -> Vec<String> {
    response
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

/// Checks the cookie's exact shape and returns its expiry (unix ms).
fn writer_cookie_expiry(response: &Response) -> u128 {
    let cookies = set_cookies(response);
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    let cookie = &cookies[0];
    let rest = cookie.strip_prefix("kamal-writer=").expect(cookie);
    let (value, attributes) = rest.split_once("; ").expect(cookie);
    let expiry: u128 = value.parse().expect(cookie);
    let expires = attributes
        .strip_prefix("Path=/; Expires=")
        .and_then(|a| a.strip_suffix("; HttpOnly"))
        .expect(cookie);
    let expires = httpdate::parse_http_date(expires).expect(cookie);
    let expires_ms = expires.duration_since(UNIX_EPOCH).unwrap().as_millis();
    // Expires is the expiry plus a second, truncated to whole seconds by the HTTP date.
    assert_eq!(expires_ms / 1000, (expiry + 1000) / 1000, "{cookie}");
    expiry
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_grant_writer_affinity_and_later_reads_follow_it() {
    let proxy = Proxy::start();
    let writer = Backend::start("writer").await;
    let reader = Backend::start("reader").await;
    with_reader(&proxy, &writer, &reader, &["--writer-affinity-timeout=10s"]).await;

    assert_eq!(
        send(proxy.port(), Method::GET, HOST, "/", &[])
            .await
            .backend(),
        "reader"
    );
    let before = now_ms();
    let write = send(proxy.port(), Method::POST, HOST, "/", &[]).await;
    assert_eq!(write.backend(), "writer");
    let expiry = writer_cookie_expiry(&write);
    assert!(
        (before + 9_000..=now_ms() + 10_000).contains(&expiry),
        "expiry {expiry} is about 10s from now"
    );

    let cookie = format!("kamal-writer={expiry}");
    let read = send(proxy.port(), Method::GET, HOST, "/", &[("cookie", &cookie)]).await;
    assert_eq!(read.backend(), "writer", "a read right after a write");
    assert!(set_cookies(&read).is_empty(), "reads grant nothing");
    let expired = format!("kamal-writer={}", now_ms() - 1);
    let read = send(
        proxy.port(),
        Method::GET,
        HOST,
        "/",
        &[("cookie", &expired)],
    )
    .await;
    assert_eq!(read.backend(), "reader", "an expired cookie is ignored");
    let head = send(
        proxy.port(),
        Method::HEAD,
        HOST,
        "/",
        &[("cookie", &cookie)],
    )
    .await;
    assert_eq!(head.header("x-backend"), Some("writer"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_can_opt_out_of_writer_affinity_and_the_header_is_consumed() {
    let proxy = Proxy::start();
    let writer = Backend::start("writer").await;
    let reader = Backend::start("reader").await;
    with_reader(&proxy, &writer, &reader, &[]).await;

    let opted_out = send(
        proxy.port(),
        Method::POST,
        HOST,
        "/",
        &[("x-reply-header", "X-Writer-Affinity: false")],
    )
    .await;
    assert_eq!(opted_out.backend(), "writer");
    assert!(set_cookies(&opted_out).is_empty());
    assert_eq!(opted_out.header("x-writer-affinity"), None);

    let kept = send(
        proxy.port(),
        Method::DELETE,
        HOST,
        "/",
        &[("x-reply-header", "X-Writer-Affinity: true")],
    )
    .await;
    assert_eq!(kept.header("x-writer-affinity"), None);
    writer_cookie_expiry(&kept);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_writer_affinity_without_readers_or_with_a_zero_timeout() {
    let proxy = Proxy::start();
    let writer = Backend::start("writer").await;
    let reader = Backend::start("reader").await;
    proxy
        .deploy("solo", &writer.target(), &["--host=solo.example.com"])
        .await;
    let write = send(proxy.port(), Method::POST, "solo.example.com", "/", &[]).await;
    assert!(set_cookies(&write).is_empty(), "no readers");

    with_reader(&proxy, &writer, &reader, &["--writer-affinity-timeout=0s"]).await;
    let write = send(proxy.port(), Method::POST, HOST, "/", &[]).await;
    assert_eq!(write.backend(), "writer");
    assert!(set_cookies(&write).is_empty(), "timeout 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_go_to_writers_unless_read_targets_accept_them() {
    let proxy = Proxy::start();
    let writer = Backend::start("writer").await;
    let reader = Backend::start("reader").await;
    with_reader(&proxy, &writer, &reader, &[]).await;
    let mut socket = websocket_connect(proxy.port(), HOST, "/ws").await;
    websocket_echo(&mut socket, "hi").await;
    assert_eq!((writer.count("/ws"), reader.count("/ws")), (1, 0));
    drop(socket);

    with_reader(&proxy, &writer, &reader, &["--read-target-websockets"]).await;
    let mut socket = websocket_connect(proxy.port(), HOST, "/ws").await;
    websocket_echo(&mut socket, "hi").await;
    assert_eq!((writer.count("/ws"), reader.count("/ws")), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_kamal_target_names_the_reader_or_writer_picked() {
    let proxy = Proxy::start();
    let writer = Backend::start("writer").await;
    let reader = Backend::start("reader").await;
    with_reader(&proxy, &writer, &reader, &["--forward-headers=false"]).await;

    let read = send(
        proxy.port(),
        Method::GET,
        HOST,
        "/",
        &[("x-kamal-target", "spoof")],
    )
    .await;
    assert_eq!(read.json()["headers"]["x-kamal-target"], reader.target());
    let write = send(proxy.port(), Method::PUT, HOST, "/", &[]).await;
    assert_eq!(write.json()["headers"]["x-kamal-target"], writer.target());
}
