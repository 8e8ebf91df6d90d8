//! Headers the proxy removes, adds and rewrites on the way to the target.
//!
//! Hop-by-hop headers (and whatever `Connection` names) never reach the target;
//! `X-Request-ID` and `X-Request-Start` are added when the client sent none and kept when
//! it did; `X-Forwarded-For/Proto/Host` follow the `--forward-headers` rule (on without TLS:
//! the client's values are trusted and the peer appended; off: the client's are replaced);
//! a client's `Forwarded` header is always dropped.

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use http::Method;
use support::{send, Backend, Proxy};

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis()
}

async fn proxy_with_app(extra: &[&str]) -> (Proxy, Backend) {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    proxy.deploy("app", &app.target(), extra).await;
    (proxy, app)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removes_hop_by_hop_headers() {
    let (proxy, app) = proxy_with_app(&[]).await;

    let response = send(
        proxy.port(),
        Method::GET,
        "example.com",
        "/hop",
        &[
            ("connection", "keep-alive, X-Secret-Hop"),
            ("x-secret-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("proxy-authorization", "Basic Zm9vOmJhcg=="),
            ("proxy-authenticate", "Basic"),
            ("upgrade", "h2c"),
            ("trailer", "X-Checksum"),
            ("x-end-to-end", "kept"),
        ],
    )
    .await;
    assert_eq!(response.status(), 200, "{}", response.body);

    let recorded = app.requests_to("/hop");
    assert_eq!(recorded.len(), 1);
    for name in [
        "x-secret-hop",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "proxy-authenticate",
        "upgrade",
        "trailer",
    ] {
        assert_eq!(
            recorded[0].header_values(name),
            Vec::<&str>::new(),
            "{name} must not reach the target"
        );
    }
    assert!(
        recorded[0]
            .header_values("connection")
            .iter()
            .all(|v| !v.to_ascii_lowercase().contains("x-secret-hop")),
        "the client's Connection header must not be forwarded: {:?}",
        recorded[0].header_values("connection")
    );
    assert_eq!(recorded[0].header_values("x-end-to-end"), vec!["kept"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adds_request_id_and_request_start_when_absent() {
    let (proxy, app) = proxy_with_app(&[]).await;

    let before = now_ms();
    let response = send(proxy.port(), Method::GET, "example.com", "/", &[]).await;
    let after = now_ms();
    assert_eq!(response.status(), 200);

    let recorded = &app.requests_to("/")[0];
    let request_id = recorded.header("x-request-id").expect("X-Request-ID added");
    let parsed = uuid::Uuid::parse_str(request_id).expect("X-Request-ID is a UUID");
    assert_eq!(parsed.get_version_num(), 4, "a random (v4) UUID");
    assert_eq!(request_id.len(), 36, "hyphenated form: {request_id}");

    let start = recorded
        .header("x-request-start")
        .expect("X-Request-Start added");
    let millis: u128 = start
        .strip_prefix("t=")
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("X-Request-Start is t=<unix ms>, got {start:?}"));
    assert!(
        (before..=after).contains(&millis),
        "X-Request-Start {millis} within [{before}, {after}]"
    );

    // Request headers only: the client does not get them back.
    assert_eq!(response.header("x-request-id"), None);
    assert_eq!(response.header("x-request-start"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_request_id_and_request_start_sent_by_the_client() {
    let (proxy, app) = proxy_with_app(&[]).await;

    let response = send(
        proxy.port(),
        Method::GET,
        "example.com",
        "/",
        &[
            ("x-request-id", "client-chosen-id"),
            ("x-request-start", "t=1234567890123"),
        ],
    )
    .await;
    assert_eq!(response.status(), 200);
    let recorded = &app.requests_to("/")[0];
    assert_eq!(
        recorded.header_values("x-request-id"),
        vec!["client-chosen-id"]
    );
    assert_eq!(
        recorded.header_values("x-request-start"),
        vec!["t=1234567890123"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn computes_forwarded_headers_when_the_client_sent_none() {
    let (proxy, app) = proxy_with_app(&[]).await;

    send(proxy.port(), Method::GET, "app.example.com", "/", &[]).await;
    let recorded = &app.requests_to("/")[0];
    assert_eq!(recorded.header_values("x-forwarded-for"), vec!["127.0.0.1"]);
    assert_eq!(recorded.header_values("x-forwarded-proto"), vec!["http"]);
    assert_eq!(
        recorded.header_values("x-forwarded-host"),
        vec!["app.example.com"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusts_client_forwarded_headers_by_default_without_tls() {
    let (proxy, app) = proxy_with_app(&[]).await;

    send(
        proxy.port(),
        Method::GET,
        "app.example.com",
        "/",
        &[
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-for", "198.51.100.1, 10.0.0.1"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "www.example.org"),
        ],
    )
    .await;
    let recorded = &app.requests_to("/")[0];
    assert_eq!(
        recorded.header_values("x-forwarded-for"),
        vec!["203.0.113.7, 198.51.100.1, 10.0.0.1, 127.0.0.1"]
    );
    assert_eq!(recorded.header_values("x-forwarded-proto"), vec!["https"]);
    assert_eq!(
        recorded.header_values("x-forwarded-host"),
        vec!["www.example.org"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaces_client_forwarded_headers_when_forward_headers_is_off() {
    let (proxy, app) = proxy_with_app(&["--forward-headers=false"]).await;

    send(
        proxy.port(),
        Method::GET,
        "app.example.com",
        "/",
        &[
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "www.example.org"),
        ],
    )
    .await;
    let recorded = &app.requests_to("/")[0];
    assert_eq!(recorded.header_values("x-forwarded-for"), vec!["127.0.0.1"]);
    assert_eq!(recorded.header_values("x-forwarded-proto"), vec!["http"]);
    assert_eq!(
        recorded.header_values("x-forwarded-host"),
        vec!["app.example.com"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_forward_headers_true_trusts_the_client() {
    let (proxy, app) = proxy_with_app(&["--forward-headers"]).await;

    send(
        proxy.port(),
        Method::GET,
        "app.example.com",
        "/",
        &[("x-forwarded-for", "203.0.113.7")],
    )
    .await;
    let recorded = &app.requests_to("/")[0];
    assert_eq!(
        recorded.header_values("x-forwarded-for"),
        vec!["203.0.113.7, 127.0.0.1"]
    );
    // Absent from the client: computed.
    assert_eq!(recorded.header_values("x-forwarded-proto"), vec!["http"]);
    assert_eq!(
        recorded.header_values("x-forwarded-host"),
        vec!["app.example.com"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drops_the_forwarded_header() {
    for extra in [&[][..], &["--forward-headers=false"][..]] {
        let (proxy, app) = proxy_with_app(extra).await;
        send(
            proxy.port(),
            Method::GET,
            "example.com",
            "/",
            &[("forwarded", "for=192.0.2.60;proto=https;by=203.0.113.43")],
        )
        .await;
        let recorded = &app.requests_to("/")[0];
        assert_eq!(
            recorded.header_values("forwarded"),
            Vec::<&str>::new(),
            "with {extra:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tells_the_target_its_own_address() {
    let (proxy, app) = proxy_with_app(&[]).await;

    send(proxy.port(), Method::GET, "example.com", "/", &[]).await;
    let recorded = &app.requests_to("/")[0];
    assert_eq!(
        recorded.header_values("x-kamal-target"),
        vec![app.target().as_str()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_response_headers_and_status_through() {
    let (proxy, _app) = proxy_with_app(&[]).await;

    let response = send(proxy.port(), Method::GET, "example.com", "/", &[]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.header("x-backend"), Some("app"));
    assert_eq!(response.header("content-type"), Some("application/json"));
}
