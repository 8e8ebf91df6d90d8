//! The command line Kamal drives, end to end against a real daemon.
//!
//! Every argv shape Kamal emits (kamal-client.md §2-§3) must be accepted: `--flag="value"`
//! after shell unquoting, bare booleans and `=false`, repeated and comma-separated lists,
//! fractional durations such as `2.5s`. Bad input must fail with exit 1 and one
//! `Error: ...` line that names the culprit, and leave the routing table untouched.

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{assert_error, assert_error_naming, get, Backend, Proxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepts_the_minimal_kamal_deploy_line() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    // `kamal-proxy deploy app-web --target="<id>:80" --deploy-timeout="30s" ...` after the
    // remote shell removed the quotes.
    let target = format!("--target={}", app.target());
    proxy
        .cli_ok(&[
            "deploy",
            "app-web",
            &target,
            "--deploy-timeout=30s",
            "--drain-timeout=30s",
            "--buffer-requests",
            "--buffer-responses",
            "--log-request-header=Cache-Control",
            "--log-request-header=Last-Modified",
            "--log-request-header=User-Agent",
        ])
        .await;

    assert_eq!(
        proxy.list_json().await,
        json!([{
            "name": "app-web", "hosts": [], "path_prefixes": ["/"],
            "targets": [app.target()], "state": "running", "tls": false
        }])
    );
    let response = support::send(
        proxy.port(),
        http::Method::GET,
        "anything.example.com",
        "/",
        &[("x-request-id", "kamal-minimal"), ("user-agent", "curl/8")],
    )
    .await;
    assert_eq!(response.backend(), "app");
    let line = proxy.request_log("kamal-minimal").await;
    assert_eq!(line["req_user_agent"], "curl/8");
    assert_eq!(line["req_cache_control"], "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepts_a_full_kamal_deploy_line() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    let target = format!("--target={}", app.target());
    proxy
        .cli_ok(&[
            "deploy",
            "app-web-staging",
            &target,
            "--host=app.example.com",
            "--host=www.example.com",
            "--deploy-timeout=10s",
            "--drain-timeout=2s",
            "--health-check-interval=1s",
            "--health-check-timeout=5s",
            "--health-check-path=/up",
            "--target-timeout=30s",
            "--buffer-requests=false",
            "--buffer-responses=false",
            "--buffer-memory=2000000",
            "--max-request-body=1000000",
            "--max-response-body=0",
            "--path-prefix=/app",
            "--path-prefix=/admin",
            "--strip-path-prefix=false",
            "--forward-headers=false",
            "--tls-redirect=false",
            "--log-request-header=Cache-Control",
            "--log-response-header=X-Backend",
        ])
        .await;

    assert_eq!(
        proxy.list_json().await,
        json!([{
            "name": "app-web-staging",
            "hosts": ["app.example.com", "www.example.com"],
            "path_prefixes": ["/admin", "/app"],
            "targets": [app.target()],
            "state": "running",
            "tls": false
        }])
    );
    let echo = support::send(
        proxy.port(),
        http::Method::GET,
        "www.example.com",
        "/app/x",
        &[("x-forwarded-for", "203.0.113.1")],
    )
    .await
    .json();
    assert_eq!(echo["path"], "/app/x", "--strip-path-prefix=false");
    assert_eq!(
        echo["headers"]["x-forwarded-for"], "127.0.0.1",
        "--forward-headers=false"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepts_space_separated_flag_values_and_comma_lists() {
    let proxy = Proxy::start();
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let targets = format!("{},{}", a.target(), b.target());
    proxy
        .cli_ok(&[
            "deploy",
            "web",
            "--target",
            &targets,
            "--host",
            "a.example.com,b.example.com",
            "--host=c.example.com",
            "--health-check-interval",
            "100ms",
            "--path-prefix=/x,/y",
        ])
        .await;

    assert_eq!(
        proxy.list_json().await,
        json!([{
            "name": "web",
            "hosts": ["a.example.com", "b.example.com", "c.example.com"],
            "path_prefixes": ["/x", "/y"],
            "targets": [a.target(), b.target()],
            "state": "running",
            "tls": false
        }])
    );
    assert_eq!(get(proxy.port(), "c.example.com", "/y").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepts_kamal_maintenance_and_live_commands() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    proxy.deploy("app-web", &app.target(), &[]).await;

    // `kamal app maintenance --drain_timeout 2.5 --message "Testing Maintence Mode"`.
    let started = Instant::now();
    proxy
        .cli_ok(&[
            "stop",
            "app-web",
            "--drain-timeout=2.5s",
            "--message=Testing Maintence Mode",
        ])
        .await;
    assert!(started.elapsed() < Duration::from_secs(5));
    let page = get(proxy.port(), "example.com", "/").await;
    page.assert_error_page(503, "503 — Service Temporarily Unavailable");
    assert!(
        page.body.contains("<p>Testing Maintence Mode</p>"),
        "{}",
        page.body
    );

    // `kamal app live`.
    proxy.cli_ok(&["resume", "app-web"]).await;
    assert_eq!(get(proxy.port(), "example.com", "/").await.backend(), "app");

    // The Ruby API's bare form, then `kamal app stop`.
    proxy.cli_ok(&["stop", "app-web"]).await;
    proxy.cli_ok(&["remove", "app-web"]).await;
    assert_eq!(proxy.list_json().await, json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renders_a_kamal_custom_maintenance_page() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    let pages = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        pages.path().join("503.html"),
        "<html><body>Custom Maintenance Page: {{ .Message }}</body></html>\n",
    )
    .expect("write 503.html");
    let error_pages = format!("--error-pages={}", pages.path().display());
    proxy
        .deploy("app-web", &app.target(), &[&error_pages])
        .await;

    proxy
        .cli_ok(&[
            "stop",
            "app-web",
            "--drain-timeout=1s",
            "--message=Testing Maintence Mode",
        ])
        .await;
    let page = get(proxy.port(), "example.com", "/").await;
    assert_eq!(page.status(), 503);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(
        page.body,
        "<html><body>Custom Maintenance Page: Testing Maintence Mode</body></html>\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_body_needs_its_buffering_flag_but_false_counts_as_given() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    let target = format!("--target={}", app.target());

    let args = ["deploy", "web", &target, "--max-request-body=10"];
    proxy
        .cli_err(
            &args,
            "max-request-body can only be set when request buffering is enabled",
        )
        .await;
    let args = ["deploy", "web", &target, "--max-response-body=10"];
    proxy
        .cli_err(
            &args,
            "max-response-body can only be set when response buffering is enabled",
        )
        .await;
    assert_eq!(proxy.list_json().await, json!([]));

    // Go's quirk, which Kamal's app_with_roles fixture relies on.
    proxy
        .deploy(
            "web",
            &app.target(),
            &["--buffer-requests=false", "--max-request-body=10"],
        )
        .await;
    assert_eq!(proxy.list_json().await[0]["name"], "web");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejects_bad_arguments_naming_the_culprit_and_changes_nothing() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    proxy
        .deploy("web", &app.target(), &["--host=app.example.com"])
        .await;
    let listed = proxy.list_json().await;
    let target = format!("--target={}", app.target());

    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["deploy", "web", &target, "--colour=blue"],
            vec!["--colour"],
        ),
        (
            vec!["deploy", "web", &target, "--deploy-timeout=30"],
            vec!["deploy-timeout", "missing unit in duration \"30\""],
        ),
        (
            vec!["deploy", "web", &target, "--drain-timeout=soon"],
            vec!["drain-timeout", "soon"],
        ),
        (
            vec!["deploy", "web", &target, "--buffer-memory=1MB"],
            vec!["buffer-memory", "1MB"],
        ),
        (vec!["deploy", "web", "--target=http://x"], vec!["http://x"]),
        (vec!["deploy", "web", "--target="], vec!["target"]),
        (vec!["deploy", "web", "--target=a b"], vec!["a b"]),
        (vec!["deploy", "web", &target, "--host=a b"], vec!["a b"]),
        (
            vec!["deploy", "web", &target, "--host=x.*.com"],
            vec!["x.*.com"],
        ),
        (
            vec!["deploy", "web", &target, "--path-prefix=/a b"],
            vec!["/a b"],
        ),
        (
            vec!["deploy", "web", &target, "--strip-path-prefix=maybe"],
            vec!["strip-path-prefix", "maybe"],
        ),
        (
            vec!["pause", "web", "--max-pause=forever"],
            vec!["max-pause", "forever"],
        ),
        (vec!["frobnicate"], vec!["frobnicate"]),
    ];
    for (args, culprits) in &cases {
        let output = proxy.cli(args).await;
        assert_error_naming(&output, args, culprits);
        assert_eq!(
            proxy.list_json().await,
            listed,
            "after `{}`",
            args.join(" ")
        );
    }

    let args = ["deploy", "web"];
    proxy
        .cli_err(&args, "required flag(s) \"target\" not set")
        .await;
    // Cobra's text for a wrong number of arguments.
    let args = ["deploy", "web", &target, "extra-argument"];
    proxy.cli_err(&args, "accepts 1 arg(s), received 2").await;
    assert_eq!(proxy.list_json().await, listed);
    assert_eq!(
        get(proxy.port(), "app.example.com", "/").await.backend(),
        "app"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_a_missing_daemon_as_an_error() {
    let proxy = Proxy::start();
    let mut proxy = proxy;
    assert_eq!(proxy.terminate().code(), Some(0));
    let output = proxy.cli(&["list"]).await;
    let socket = proxy.socket_path();
    assert_error_naming(&output, &["list"], &[socket.to_str().expect("utf-8 path")]);
}

/// `kamal-proxy run` with an environment variable that is not a port: refused, naming it.
async fn run_with_bad_port_variable(variable: &str) {
    let proxy = Proxy::start(); // only for its isolated environment
    let mut command = tokio::process::Command::from(proxy.command());
    command
        .env(variable, "abc")
        .args([
            "--bus",
            "none",
            "run",
            "--https-port",
            "0",
            "--bind",
            "127.0.0.1",
        ])
        .env(
            "KAMAL_PROXY_SOCKET",
            proxy.socket_path().with_extension("other"),
        )
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(10), command.output())
        .await
        .unwrap_or_else(|_| panic!("`run` with {variable}=abc kept running instead of failing"))
        .expect("run kamal-proxy");
    assert_error_naming(
        &output,
        &["run", &format!("({variable}=abc)")],
        &[variable, "abc"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_refuses_a_non_numeric_http_port_variable() {
    run_with_bad_port_variable("HTTP_PORT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_refuses_a_non_numeric_prefixed_http_port_variable() {
    run_with_bad_port_variable("KAMAL_PROXY_HTTP_PORT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_errors_from_the_daemon_keep_the_error_prefix() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    let target = format!("--target={}", app.target());
    let args = [
        "deploy",
        "web",
        &target,
        "--tls",
        "--path-prefix=/api",
        "--host=a.example.com",
    ];
    let output = proxy.cli(&args).await;
    assert_error(
        &output,
        &args,
        "service options invalid: TLS settings must be specified on the root path service",
    );
    let args = ["deploy", "web", &target, "--tls"];
    proxy
        .cli_err(
            &args,
            "service options invalid: host must be set when using TLS",
        )
        .await;
    assert_eq!(proxy.list_json().await, json!([]));
}
