//! `--metrics-port`: the Go proxy's Prometheus series, scraped from the real daemon.
//!
//! Each test starts a daemon with metrics on a free port (bound like the proxy's own
//! listeners, on `--bind 127.0.0.1`), sends requests through the proxy and checks the
//! exact series: counts per service, method and status, `OTHER` for unknown methods,
//! `service=""` for unrouted requests, the in-flight gauge, and excluded paths.

mod support;

use std::time::Duration;

use http::Method;
use support::{free_port, get, poll_until, send, Backend, Proxy};

fn metrics_proxy() -> Proxy {
    let port = free_port().to_string();
    Proxy::start_with_run_args(&["--metrics-port", &port])
}

async fn scrape(proxy: &Proxy) -> String {
    let response = get(proxy.metrics_port(), "localhost", "/metrics").await;
    assert_eq!(response.status(), 200, "{}", response.body);
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    response.body
}

/// Scrapes until `series` appears (request counts land when the response body ends).
async fn scrape_until(proxy: &Proxy, series: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = scrape(proxy).await;
        if value(&text, series).is_some() {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {series} in:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of the series written exactly as `series` (name and labels), if present.
fn value(text: &str, series: &str) -> Option<String> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(str::to_string)
}

fn requests(service: &str, method: &str, status: u16) -> String {
    format!(
        "kamal_proxy_http_requests_total{{service=\"{service}\",method=\"{method}\",status=\"{status}\"}}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_requests_by_service_method_and_status() {
    let proxy = metrics_proxy();
    let app = Backend::start("app").await;
    proxy
        .deploy("web", &app.target(), &["--host=web.test"])
        .await;

    for _ in 0..2 {
        assert_eq!(get(proxy.port(), "web.test", "/").await.status(), 200);
    }
    let post = send(proxy.port(), Method::POST, "web.test", "/form", &[]).await;
    assert_eq!(post.status(), 200);
    let brew = Method::from_bytes(b"BREW").unwrap();
    assert_eq!(
        send(proxy.port(), brew, "web.test", "/", &[])
            .await
            .status(),
        200
    );
    assert_eq!(get(proxy.port(), "elsewhere.test", "/").await.status(), 404);

    let text = scrape_until(&proxy, &requests("", "GET", 404)).await;
    assert_eq!(
        value(&text, &requests("web", "GET", 200)).as_deref(),
        Some("2")
    );
    assert_eq!(
        value(&text, &requests("web", "POST", 200)).as_deref(),
        Some("1")
    );
    assert_eq!(
        value(&text, &requests("web", "OTHER", 200)).as_deref(),
        Some("1")
    );
    assert_eq!(
        value(&text, &requests("", "GET", 404)).as_deref(),
        Some("1")
    );
    let labels = "service=\"web\",method=\"GET\",status=\"200\"";
    let histogram = "kamal_proxy_http_request_duration_seconds";
    assert_eq!(
        value(&text, &format!("{histogram}_count{{{labels}}}")).as_deref(),
        Some("2")
    );
    assert_eq!(
        value(
            &text,
            &format!("{histogram}_bucket{{{labels},le=\"+Inf\"}}")
        )
        .as_deref(),
        Some("2")
    );
    for le in [
        "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10",
    ] {
        assert!(
            value(
                &text,
                &format!("{histogram}_bucket{{{labels},le=\"{le}\"}}")
            )
            .is_some(),
            "bucket {le} missing:\n{text}"
        );
    }
    assert_eq!(
        value(
            &text,
            "kamal_proxy_http_in_flight_requests{service=\"web\"}"
        )
        .as_deref(),
        Some("0")
    );
    assert!(
        !text.contains("kamal_proxy_http_in_flight_requests{service=\"\"}"),
        "unrouted requests have no gauge:\n{text}"
    );
    assert!(text.contains("# TYPE kamal_proxy_http_requests_total counter\n"));
    assert!(text.contains("# TYPE kamal_proxy_http_request_duration_seconds histogram\n"));
    assert!(text.contains("# TYPE kamal_proxy_http_in_flight_requests gauge\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shows_requests_in_flight_while_they_run() {
    let proxy = metrics_proxy();
    let app = Backend::start("app").await;
    proxy.deploy("web", &app.target(), &[]).await;

    let port = proxy.port();
    let slow = tokio::spawn(async move { get(port, "web.test", "/slow?ms=1500").await });
    let gauge = "kamal_proxy_http_in_flight_requests{service=\"web\"}";
    poll_until(
        Duration::from_secs(5),
        "the slow request in flight",
        || async { value(&scrape(&proxy).await, gauge).as_deref() == Some("1") },
    )
    .await;
    assert_eq!(slow.await.unwrap().status(), 200);
    poll_until(
        Duration::from_secs(5),
        "the slow request finished",
        || async { value(&scrape(&proxy).await, gauge).as_deref() == Some("0") },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skips_excluded_paths_as_the_target_sees_them() {
    let proxy = metrics_proxy();
    let app = Backend::start("app").await;
    proxy
        .deploy(
            "web",
            &app.target(),
            &["--path-prefix=/app", "--exclude-metrics-path=/skip"],
        )
        .await;

    // Stripped to /skip for the target: excluded. /app/skip/x is not an exact match.
    assert_eq!(
        get(proxy.port(), "any.test", "/app/skip").await.status(),
        200
    );
    assert_eq!(
        get(proxy.port(), "any.test", "/app/skip/x").await.status(),
        200
    );
    assert_eq!(app.count("/skip"), 1);

    let text = scrape_until(&proxy, &requests("web", "GET", 200)).await;
    assert_eq!(
        value(&text, &requests("web", "GET", 200)).as_deref(),
        Some("1")
    );
    assert_eq!(
        value(
            &text,
            "kamal_proxy_http_in_flight_requests{service=\"web\"}"
        )
        .as_deref(),
        Some("0")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_only_the_metrics_path_on_the_bound_addresses() {
    let proxy = metrics_proxy();
    let port = proxy.metrics_port();
    assert_eq!(get(port, "localhost", "/").await.status(), 404);
    assert_eq!(get(port, "localhost", "/metric").await.status(), 404);
    assert_eq!(
        send(port, Method::POST, "localhost", "/metrics", &[])
            .await
            .status(),
        405
    );
    let before_any_request = scrape(&proxy).await;
    assert!(
        before_any_request.contains("# TYPE kamal_proxy_http_in_flight_requests gauge"),
        "{before_any_request}"
    );
    // `--bind 127.0.0.1`: another loopback address is not listened on.
    assert!(tokio::net::TcpStream::connect(("127.0.0.2", port))
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn is_off_without_a_metrics_port() {
    let proxy = Proxy::start_with_run_args(&["--metrics-port=0"]);
    let started = proxy
        .wait_for_log("Server started", |entry| entry["msg"] == "Server started")
        .await;
    assert!(
        started.get("metrics").is_none_or(|port| port.is_null()),
        "{started}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_bad_or_busy_metrics_ports() {
    let proxy = Proxy::start();
    let run = |args: &[&str]| {
        let mut command = proxy.command();
        command
            .env(
                "KAMAL_PROXY_SOCKET",
                proxy.socket_path().with_extension("other"),
            )
            .args([
                "--bus=none",
                "run",
                "--http-port=0",
                "--https-port=0",
                "--bind=127.0.0.1",
            ])
            .args(args);
        command.output().expect("run the daemon")
    };
    for (args, needle) in [
        (&["--metrics-port=70000"][..], "expected a port number"),
        (&["--metrics-port=abc"], "expected a port number"),
        (&["--metrics-port="], "expected a port number"),
    ] {
        let output = run(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("Error: ") && stderr.contains(needle),
            "{args:?}: {stderr}"
        );
    }
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port().to_string();
    let output = run(&["--metrics-port", &busy_port]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{busy_port}")),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_lines_can_be_turned_off_while_metrics_still_count() {
    let port = free_port().to_string();
    let proxy = Proxy::start_with_run_args(&["--metrics-port", &port, "--log-requests=false"]);
    let app = Backend::start("app").await;
    proxy
        .deploy("web", &app.target(), &["--host=web.test"])
        .await;
    for _ in 0..3 {
        assert_eq!(get(proxy.port(), "web.test", "/").await.status(), 200);
    }
    let text = scrape_until(&proxy, &requests("web", "GET", 200)).await;
    assert_eq!(
        value(&text, &requests("web", "GET", 200)).as_deref(),
        Some("3")
    );
    // Past the request log's flush interval: nothing was held back either.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let logs = proxy.logs();
    assert!(
        logs.iter().any(|line| line["msg"] == "Deployed"),
        "{logs:?}"
    );
    assert!(
        !logs.iter().any(|line| line["msg"] == "Request"),
        "{logs:?}"
    );
}
