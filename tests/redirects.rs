//! Per-service request rewriting: `--canonical-host` redirects, `--scope-cookie-paths` and
//! `--client-ip-header`.
//!
//! A request for another of the service's hosts gets Go's `http.Redirect` 301 to the
//! canonical host (port dropped, request URI kept, `Connection: close`), even while the
//! service is paused. Cookies an app under a stripped prefix sets are scoped to that prefix
//! when they are for this host. A client IP header replaces `X-Forwarded-For` before the
//! forwarded-headers rules and is what the log calls `remote_addr`.

mod support;

use http::Method;
use support::{send, Backend, Proxy, Response};

async fn canonical(proxy: &Proxy, app: &Backend) {
    proxy
        .deploy(
            "web",
            &app.target(),
            &[
                "--host=example.com,www.example.com",
                "--canonical-host=example.com",
            ],
        )
        .await;
}

fn assert_redirect(response: &Response, content_type: Option<&str>, body: &str) {
    assert_eq!(response.status(), 301);
    assert_eq!(
        response.header("location"),
        Some("http://example.com/a/b?x=1&y=%20")
    );
    assert_eq!(response.header("connection"), Some("close"));
    assert_eq!(response.header("content-type"), content_type);
    assert_eq!(response.body, body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_hosts_get_a_301_to_the_canonical_host() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    canonical(&proxy, &app).await;
    let host = format!("www.example.com:{}", proxy.port());
    let path = "/a/b?x=1&y=%20";

    let get = send(
        proxy.port(),
        Method::GET,
        &host,
        path,
        &[("x-request-id", "r-1")],
    )
    .await;
    assert_redirect(
        &get,
        Some("text/html; charset=utf-8"),
        "<a href=\"http://example.com/a/b?x=1&amp;y=%20\">Moved Permanently</a>.\n\n",
    );
    let head = send(proxy.port(), Method::HEAD, &host, path, &[]).await;
    assert_redirect(&head, Some("text/html; charset=utf-8"), "");
    let post = send(proxy.port(), Method::POST, &host, path, &[]).await;
    assert_redirect(&post, None, "");
    assert!(app.app_requests().is_empty(), "nothing was proxied");
    let log = proxy.request_log("r-1").await;
    assert_eq!(
        (log["status"].as_u64(), log["service"].as_str()),
        (Some(301), Some("web"))
    );

    let served = send(proxy.port(), Method::GET, "example.com", path, &[]).await;
    assert_eq!(served.backend(), "app");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_canonical_redirect_comes_before_pause_handling() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    canonical(&proxy, &app).await;
    proxy.cli_ok(&["stop", "web", "--drain-timeout=1s"]).await;
    let redirected = send(
        proxy.port(),
        Method::GET,
        "www.example.com",
        "/a/b?x=1&y=%20",
        &[],
    )
    .await;
    assert_eq!(redirected.status(), 301);
    let stopped = send(proxy.port(), Method::GET, "example.com", "/", &[]).await;
    stopped.assert_error_page(503, "503 — Service Temporarily Unavailable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canonical_host_is_checked_at_deploy() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    let target = format!("--target={}", app.target());
    proxy
        .cli_err(
            &["deploy", "web", &target, "--host=a.example.com", "--canonical-host=b.example.com"],
            "service options invalid: canonical-host 'b.example.com' must be present in the hosts list: [a.example.com]",
        )
        .await;
    let output = proxy
        .cli(&["deploy", "web", &target, "--canonical-host=not a host"])
        .await;
    support::assert_error_naming(&output, &["deploy"], &["not a host"]);
    assert_eq!(proxy.list_json().await, serde_json::json!([]));
}

async fn cookies_set_through(proxy: &Proxy, host: &str, path: &str) -> Vec<String> {
    let replies = [
        ("x-reply-header", "Set-Cookie: root=1; Path=/"),
        (
            "x-reply-header",
            "Set-Cookie: nested=2; Path=/admin; HttpOnly",
        ),
        ("x-reply-header", "Set-Cookie: bare=3"),
        (
            "x-reply-header",
            "Set-Cookie: mine=4; Domain=app.example.com",
        ),
        (
            "x-reply-header",
            "Set-Cookie: parent=5; Domain=example.com; Path=/",
        ),
    ];
    let response = send(proxy.port(), Method::GET, host, path, &replies).await;
    assert_eq!(response.status(), 200);
    response
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_paths_are_scoped_to_the_stripped_prefix() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    let other = Backend::start("other").await;
    proxy
        .deploy(
            "api",
            &app.target(),
            &[
                "--host=app.example.com",
                "--path-prefix=/api",
                "--scope-cookie-paths",
            ],
        )
        .await;
    proxy
        .deploy("site", &other.target(), &["--host=app.example.com"])
        .await;

    assert_eq!(
        cookies_set_through(&proxy, "app.example.com:8080", "/api/login").await,
        [
            "root=1; Path=/api",
            "nested=2; Path=/api/admin; HttpOnly",
            "bare=3; Path=/api",
            "mine=4; Domain=app.example.com; Path=/api",
            "parent=5; Domain=example.com; Path=/",
        ]
    );
    assert_eq!(
        cookies_set_through(&proxy, "app.example.com", "/login").await[0],
        "root=1; Path=/",
        "the root service is not scoped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_paths_are_left_alone_without_the_flag_or_without_stripping() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    proxy
        .deploy("plain", &app.target(), &["--path-prefix=/plain"])
        .await;
    proxy
        .deploy(
            "kept",
            &app.target(),
            &[
                "--path-prefix=/kept",
                "--strip-path-prefix=false",
                "--scope-cookie-paths",
            ],
        )
        .await;
    for path in ["/plain/x", "/kept/x"] {
        let cookies = cookies_set_through(&proxy, "app.example.com", path).await;
        assert_eq!(cookies[0], "root=1; Path=/", "{path}");
        assert_eq!(cookies[2], "bare=3", "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ip_header_replaces_forwarded_for_and_is_logged() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    proxy
        .deploy(
            "trusting",
            &app.target(),
            &[
                "--host=t.example.com",
                "--client-ip-header=CF-Connecting-IP",
            ],
        )
        .await;
    proxy
        .deploy(
            "strict",
            &app.target(),
            &[
                "--host=s.example.com",
                "--client-ip-header=CF-Connecting-IP",
                "--forward-headers=false",
            ],
        )
        .await;
    let headers = [
        ("cf-connecting-ip", "9.9.9.9"),
        ("x-forwarded-for", "1.1.1.1"),
    ];

    let trusting = send(
        proxy.port(),
        Method::GET,
        "t.example.com",
        "/",
        &[&headers[..], &[("x-request-id", "t-1")]].concat(),
    )
    .await;
    let seen = &trusting.json()["headers"];
    assert_eq!(seen["x-forwarded-for"], "9.9.9.9, 127.0.0.1");
    assert_eq!(seen["cf-connecting-ip"], "9.9.9.9");
    assert_eq!(proxy.request_log("t-1").await["remote_addr"], "9.9.9.9");

    let strict = send(
        proxy.port(),
        Method::GET,
        "s.example.com",
        "/",
        &[&headers[..], &[("x-request-id", "s-1")]].concat(),
    )
    .await;
    assert_eq!(strict.json()["headers"]["x-forwarded-for"], "127.0.0.1");
    assert_eq!(proxy.request_log("s-1").await["remote_addr"], "9.9.9.9");

    let absent = send(
        proxy.port(),
        Method::GET,
        "t.example.com",
        "/",
        &[("x-forwarded-for", "1.1.1.1"), ("x-request-id", "t-2")],
    )
    .await;
    assert_eq!(
        absent.json()["headers"]["x-forwarded-for"],
        "1.1.1.1, 127.0.0.1"
    );
    assert_eq!(proxy.request_log("t-2").await["remote_addr"], "1.1.1.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_client_ip_header_is_refused_at_deploy() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    let output = proxy
        .cli(&[
            "deploy",
            "web",
            &format!("--target={}", app.target()),
            "--client-ip-header=Bad Header",
        ])
        .await;
    support::assert_error_naming(
        &output,
        &["deploy"],
        &["\"Bad Header\"", "client-ip-header"],
    );
    assert_eq!(proxy.list_json().await, serde_json::json!([]));
}
