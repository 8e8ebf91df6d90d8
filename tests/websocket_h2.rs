//! WebSockets over HTTP/2 (RFC 8441) on the HTTPS listener, with a real certificate and an
//! HTTP/2 client that opens them as browsers do.
//!
//! The proxy advertises extended CONNECT. A `CONNECT` stream with `:protocol: websocket`
//! reaches the target as an HTTP/1.1 upgrade carrying a key of the proxy's own; the target's
//! checked 101 becomes a 200 that keeps the chosen subprotocol, and frames echo through the
//! stream. Several WebSockets share one connection; a redeploy closes them at once and
//! leaves the connection usable, and so does shutdown. A refused handshake comes back as the
//! target sent it; a target that does not switch is a 502; other protocols get 501. Readers
//! get HTTP/2 WebSockets only with `--read-target-websockets`, as HTTP/1.1 ones. A plain
//! CONNECT is forwarded as before, never turned into a WebSocket.

mod support;

use std::time::{Duration, Instant};

use support::h2_websocket::H2Connection;
use support::tls::{roots, TestCa, TlsClient};
use support::{
    assert_redeploy_closes_websocket, assert_websocket_closed, poll_until, websocket_echo, Backend,
    Proxy,
};

const HOST: &str = "a.example.com";

/// A daemon with a test CA whose certificate for `HOST` the deploys use.
struct Https {
    proxy: Proxy,
    ca: TestCa,
}

impl Https {
    fn start() -> Https {
        Https {
            proxy: Proxy::start(),
            ca: TestCa::new(),
        }
    }

    /// Deploys `web` on `HOST` with TLS to `target`, plus `extra` flags.
    async fn deploy(&self, target: &str, extra: &[&str]) {
        let issued = self.ca.issue(&[HOST]);
        let tls = issued.deploy_flags(&self.proxy.state_dir(), "web", HOST);
        let flags: Vec<&str> = tls
            .iter()
            .map(String::as_str)
            .chain(extra.iter().copied())
            .collect();
        self.proxy.deploy("web", target, &flags).await;
    }

    /// A daemon serving one backend, `app`, and an HTTP/2 connection to it.
    async fn serving_app() -> (Https, Backend, H2Connection) {
        let https = Https::start();
        let app = Backend::start("app").await;
        https.deploy(&app.target(), &[]).await;
        let connection = https.connect().await;
        (https, app, connection)
    }

    async fn connect(&self) -> H2Connection {
        H2Connection::open(&TlsClient {
            port: self.proxy.https_port(),
            sni: Some(HOST),
            verify_as: HOST,
            roots: roots(&self.ca.pem),
            alpn: &[b"h2"],
        })
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echoes_through_an_http2_stream_that_reaches_the_target_as_an_upgrade() {
    let (https, app, mut connection) = Https::serving_app().await;
    connection.assert_extended_connect_advertised().await;

    let (headers, mut socket) = connection
        .websocket(
            HOST,
            "/ws?room=1",
            &[("sec-websocket-protocol", "chat, superchat")],
        )
        .await
        .expect("the proxy accepts the WebSocket");
    assert_eq!(headers["sec-websocket-protocol"], "chat");
    for http1_only in ["upgrade", "connection", "sec-websocket-accept"] {
        assert!(
            !headers.contains_key(http1_only),
            "{http1_only}: {headers:?}"
        );
    }
    websocket_echo(&mut socket, "hello over HTTP/2").await;

    let upgrade = &app.requests_to("/ws")[0];
    assert_eq!(upgrade.method, "GET");
    assert_eq!(upgrade.query.as_deref(), Some("room=1"));
    assert_eq!(upgrade.header("host"), Some(HOST));
    assert_eq!(upgrade.header("upgrade"), Some("websocket"));
    assert_eq!(upgrade.header("connection"), Some("upgrade"));
    assert_eq!(upgrade.header("sec-websocket-version"), Some("13"));
    assert_eq!(
        upgrade.header("sec-websocket-protocol"),
        Some("chat, superchat")
    );
    assert_eq!(upgrade.header("x-forwarded-proto"), Some("https"));
    let key = upgrade.header("sec-websocket-key").expect("a key");
    assert!(key.len() == 24 && key.ends_with("=="), "16 bytes: {key}");

    let log = https
        .proxy
        .wait_for_log("the WebSocket's request line", |e| {
            e["msg"] == "Request" && e["path"] == "/ws"
        })
        .await;
    assert_eq!(log["method"], "CONNECT");
    assert_eq!(log["status"], 200, "what the HTTP/2 client got");
    assert_eq!(log["proto"], "HTTP/2.0");
    assert_eq!(log["query"], "room=1");
    assert_eq!(log["target"], app.target());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carries_two_websockets_on_one_http2_connection() {
    let (_https, app, mut connection) = Https::serving_app().await;

    let (_, mut first) = connection.websocket(HOST, "/ws", &[]).await.unwrap();
    let (_, mut second) = connection.websocket(HOST, "/ws", &[]).await.unwrap();
    websocket_echo(&mut first, "one").await;
    websocket_echo(&mut second, "two").await;
    websocket_echo(&mut first, "three").await;
    assert_eq!(app.count("/ws"), 2);

    drop(first);
    poll_until(
        Duration::from_secs(3),
        "the target to see the first WebSocket end",
        || async { app.websockets_closed() == 1 },
    )
    .await;
    websocket_echo(&mut second, "still open").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redeploy_closes_http2_websockets_at_once_and_keeps_the_connection() {
    let https = Https::start();
    let (old, new) = (Backend::start("old").await, Backend::start("new").await);
    https.deploy(&old.target(), &[]).await;
    let mut connection = https.connect().await;
    let (_, mut socket) = connection.websocket(HOST, "/ws", &[]).await.unwrap();
    websocket_echo(&mut socket, "before").await;

    let target = new.target();
    let redeploy = https.deploy(&target, &["--drain-timeout=20s"]);
    assert_redeploy_closes_websocket(&mut socket, &old, redeploy).await;

    let (_, mut socket) = connection.websocket(HOST, "/ws", &[]).await.unwrap();
    websocket_echo(&mut socket, "after").await;
    assert_eq!(new.count("/ws"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_http2_websockets() {
    let (mut https, _app, mut connection) = Https::serving_app().await;
    let (_, mut socket) = connection.websocket(HOST, "/ws", &[]).await.unwrap();
    websocket_echo(&mut socket, "hello").await;

    let started = Instant::now();
    let status = https.proxy.terminate();
    assert!(status.success(), "{status}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown waited on the WebSocket: {:?}",
        started.elapsed()
    );
    assert_websocket_closed(&mut socket).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_a_refused_handshake_back_and_fails_one_the_target_ignored() {
    let (https, app, mut connection) = Https::serving_app().await;

    let refused = connection
        .websocket(HOST, "/ws", &[("sec-websocket-version", "8")])
        .await
        .expect_err("the target refuses version 8");
    assert_eq!(refused.status(), 426);
    assert_eq!(refused.header("sec-websocket-version"), Some("13"));
    assert_eq!(refused.body, "unsupported WebSocket version");

    let ignored = connection
        .websocket(HOST, "/not-a-websocket", &[])
        .await
        .expect_err("a 200 that did not switch is no WebSocket");
    ignored.assert_error_page(502, "502 — Bad Gateway");
    https
        .proxy
        .wait_for_log("the broken handshake", |e| {
            e["msg"] == "Error while proxying"
                && e["error"]
                    == "the target answered a WebSocket request with 200 OK instead of switching protocols"
        })
        .await;

    let other = connection
        .extended_connect("connect-udp", HOST, "/udp", &[])
        .await
        .expect_err("only WebSockets are carried");
    assert_eq!(other.status(), 501);

    // A CONNECT without `:protocol` asks for a tunnel, which a reverse proxy does not open.
    let requests_before = app.app_requests().len();
    let plain = connection.plain_connect(&format!("{HOST}:443")).await;
    assert_eq!(plain.status(), 501);
    assert_eq!(
        app.app_requests().len(),
        requests_before,
        "the CONNECT reached the target"
    );

    // None of it broke the connection.
    let (_, mut socket) = connection.websocket(HOST, "/ws", &[]).await.unwrap();
    websocket_echo(&mut socket, "still usable").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_websockets_go_to_writers_unless_read_targets_accept_them() {
    let https = Https::start();
    let (writer, reader) = (
        Backend::start("writer").await,
        Backend::start("reader").await,
    );
    let read_target = format!("--read-target={}", reader.target());
    https.deploy(&writer.target(), &[&read_target]).await;
    let mut connection = https.connect().await;
    let (_, mut socket) = connection.websocket(HOST, "/ws", &[]).await.unwrap();
    websocket_echo(&mut socket, "hi").await;
    assert_eq!((writer.count("/ws"), reader.count("/ws")), (1, 0));

    https
        .deploy(
            &writer.target(),
            &[&read_target, "--read-target-websockets"],
        )
        .await;
    let (_, mut socket) = connection.websocket(HOST, "/ws", &[]).await.unwrap();
    websocket_echo(&mut socket, "hi").await;
    assert_eq!((writer.count("/ws"), reader.count("/ws")), (1, 1));
}
