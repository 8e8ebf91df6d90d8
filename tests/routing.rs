//! Routing: which service a request reaches and what path and query the target sees.
//!
//! Host lookup is exact host, then the one-label wildcard, then the catch-all, with the
//! first step that finds an entry deciding (no fall-back); hosts compare case-insensitively
//! without the port. Path prefixes match on segment boundaries, longest first, and are
//! stripped unless `--strip-path-prefix=false`. The raw query and the Host header reach the
//! target unchanged.

mod support;

use support::{get, raw_request, Backend, Proxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_exact_host_then_wildcard_then_catch_all() {
    let proxy = Proxy::start();
    let exact = Backend::start("exact").await;
    let wildcard = Backend::start("wildcard").await;
    let fallback = Backend::start("fallback").await;
    proxy
        .deploy("exact", &exact.target(), &["--host=app.example.com"])
        .await;
    proxy
        .deploy("wildcard", &wildcard.target(), &["--host=*.example.com"])
        .await;
    proxy.deploy("fallback", &fallback.target(), &[]).await;

    let port = proxy.port();
    assert_eq!(get(port, "app.example.com", "/").await.backend(), "exact");
    assert_eq!(
        get(port, "other.example.com", "/").await.backend(),
        "wildcard"
    );
    // The wildcard covers exactly one label, and not the parent domain itself.
    assert_eq!(
        get(port, "a.b.example.com", "/").await.backend(),
        "fallback"
    );
    assert_eq!(get(port, "example.com", "/").await.backend(), "fallback");
    assert_eq!(get(port, "unrelated.test", "/").await.backend(), "fallback");
    assert_eq!(get(port, "localhost", "/").await.backend(), "fallback");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matches_hosts_ignoring_case_and_port() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    proxy
        .deploy("app", &app.target(), &["--host=App.Example.com"])
        .await;

    let port = proxy.port();
    assert_eq!(get(port, "app.example.com", "/").await.backend(), "app");
    assert_eq!(get(port, "APP.EXAMPLE.COM", "/").await.backend(), "app");
    assert_eq!(
        get(port, "app.example.com:8080", "/").await.backend(),
        "app"
    );
    assert_eq!(get(port, "App.Example.Com:80", "/").await.backend(), "app");
    get(port, "other.example.com", "/")
        .await
        .assert_error_page(404, "404 — Not Found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matches_path_prefixes_on_segment_boundaries() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    let root = Backend::start("root").await;
    proxy
        .deploy(
            "app",
            &app.target(),
            &["--host=example.com", "--path-prefix=/app"],
        )
        .await;
    proxy
        .deploy("root", &root.target(), &["--host=example.com"])
        .await;

    let port = proxy.port();
    for path in ["/app", "/app/", "/app/x", "/app/x/y"] {
        assert_eq!(
            get(port, "example.com", path).await.backend(),
            "app",
            "{path}"
        );
    }
    for path in ["/appointment", "/ap", "/", "/other/app"] {
        assert_eq!(
            get(port, "example.com", path).await.backend(),
            "root",
            "{path}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn longest_path_prefix_wins() {
    let proxy = Proxy::start();
    let api = Backend::start("api").await;
    let special = Backend::start("special").await;
    let root = Backend::start("root").await;
    // Deployed shortest first so that order of deployment cannot explain the result.
    proxy
        .deploy("root", &root.target(), &["--host=example.com"])
        .await;
    proxy
        .deploy(
            "api",
            &api.target(),
            &["--host=example.com", "--path-prefix=/api"],
        )
        .await;
    proxy
        .deploy(
            "special",
            &special.target(),
            &["--host=example.com", "--path-prefix=api/special/"],
        )
        .await;

    let port = proxy.port();
    assert_eq!(
        get(port, "example.com", "/api/special/x").await.backend(),
        "special"
    );
    assert_eq!(
        get(port, "example.com", "/api/special").await.backend(),
        "special"
    );
    assert_eq!(
        get(port, "example.com", "/api/specialist").await.backend(),
        "api"
    );
    assert_eq!(get(port, "example.com", "/api/x").await.backend(), "api");
    assert_eq!(get(port, "example.com", "/x").await.backend(), "root");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strips_the_matched_prefix_before_forwarding() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    proxy
        .deploy("app", &app.target(), &["--path-prefix=/app"])
        .await;

    let port = proxy.port();
    assert_eq!(
        get(port, "example.com", "/app/show").await.json()["path"],
        "/show"
    );
    assert_eq!(
        get(port, "example.com", "/app/a/b").await.json()["path"],
        "/a/b"
    );
    assert_eq!(get(port, "example.com", "/app").await.json()["path"], "/");
    assert_eq!(get(port, "example.com", "/app/").await.json()["path"], "/");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_the_prefix_when_stripping_is_off() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    proxy
        .deploy(
            "app",
            &app.target(),
            &["--path-prefix=/app", "--strip-path-prefix=false"],
        )
        .await;

    let port = proxy.port();
    assert_eq!(
        get(port, "example.com", "/app/show").await.json()["path"],
        "/app/show"
    );
    assert_eq!(
        get(port, "example.com", "/app").await.json()["path"],
        "/app"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn does_not_fall_back_to_catch_all_when_host_matches_but_path_does_not() {
    let proxy = Proxy::start();
    let api = Backend::start("api").await;
    let fallback = Backend::start("fallback").await;
    proxy
        .deploy(
            "api",
            &api.target(),
            &["--host=example.com", "--path-prefix=/api"],
        )
        .await;
    proxy.deploy("fallback", &fallback.target(), &[]).await;

    let port = proxy.port();
    assert_eq!(get(port, "example.com", "/api/x").await.backend(), "api");
    get(port, "example.com", "/")
        .await
        .assert_error_page(404, "404 — Not Found");
    get(port, "example.com", "/other")
        .await
        .assert_error_page(404, "404 — Not Found");
    assert_eq!(get(port, "elsewhere.test", "/").await.backend(), "fallback");
    assert!(
        fallback
            .app_requests()
            .iter()
            .all(|r| r.header("host") == Some("elsewhere.test")),
        "the catch-all saw a request for example.com: {:?}",
        fallback.app_requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_404_when_no_service_matches() {
    let proxy = Proxy::start();
    get(proxy.port(), "example.com", "/")
        .await
        .assert_error_page(404, "404 — Not Found");

    let app = Backend::start("app").await;
    proxy
        .deploy("app", &app.target(), &["--host=app.example.com"])
        .await;
    get(proxy.port(), "example.com", "/")
        .await
        .assert_error_page(404, "404 — Not Found");
    assert!(app.app_requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_the_raw_query_verbatim() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    proxy
        .deploy("app", &app.target(), &["--path-prefix=/app"])
        .await;

    let response = raw_request(
        proxy.port(),
        b"GET /app/search?p1=a;b;c&p2=%x&p3=ok&empty=&p3=again HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 200 "), "{response}");
    let recorded = app.requests_to("/search");
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(
        recorded[0].query.as_deref(),
        Some("p1=a;b;c&p2=%x&p3=ok&empty=&p3=again")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_the_client_host_header() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    proxy
        .deploy("app", &app.target(), &["--host=app.example.com"])
        .await;

    let echo = get(proxy.port(), "app.example.com", "/").await.json();
    assert_eq!(echo["headers"]["host"], "app.example.com");
    let echo = get(proxy.port(), "APP.example.com:8443", "/").await.json();
    assert_eq!(echo["headers"]["host"], "APP.example.com:8443");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejects_a_malformed_host_header_with_400() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    proxy.deploy("app", &app.target(), &[]).await;

    let response = raw_request(
        proxy.port(),
        b"GET / HTTP/1.1\r\nHost: bad host/x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 400 "), "{response}");
    assert!(app.app_requests().is_empty(), "{:?}", app.app_requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binds_every_host_of_a_service() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    proxy
        .deploy(
            "app",
            &app.target(),
            &["--host=a.example.com,b.example.com", "--host=c.example.com"],
        )
        .await;

    let port = proxy.port();
    for host in ["a.example.com", "b.example.com", "c.example.com"] {
        assert_eq!(get(port, host, "/").await.backend(), "app", "{host}");
    }
    get(port, "d.example.com", "/")
        .await
        .assert_error_page(404, "404 — Not Found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeploy_replaces_the_old_bindings() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    proxy
        .deploy("app", &app.target(), &["--host=old.example.com"])
        .await;
    proxy
        .deploy("app", &app.target(), &["--host=new.example.com"])
        .await;

    let port = proxy.port();
    assert_eq!(get(port, "new.example.com", "/").await.backend(), "app");
    get(port, "old.example.com", "/")
        .await
        .assert_error_page(404, "404 — Not Found");
}
