//! The service lifecycle around deploys: list, remove, state across restarts, logs, version.
//!
//! `list` prints the Go proxy's table byte for byte (ANSI codes included, even off a TTY) and
//! `list --json` the same rows as JSON. `remove` unroutes at once. The routing table is saved
//! after every change and restored at start-up without redeploying, from our own file or from
//! one the Go proxy wrote, one service at a time (a broken entry does not drop the others).
//! Fresh starts log `No previous state to restore`; every request is logged with the Go
//! field names; SIGTERM exits 0.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::raw_target::{assert_ok, proxy_serving, RawClient, FRAMING_HOST};
use support::{get, Backend, Proxy};

/// The Go proxy's table: every cell styled and reset, padded to its column's widest cell,
/// then two spaces; the header italic bright blue, the first data column bold blue.
fn go_table(rows: &[[&str; 6]]) -> String {
    let header = ["Service", "Host", "Path", "Target", "State", "TLS"];
    let mut all = vec![header];
    all.extend_from_slice(rows);
    let widths: Vec<usize> = (0..6)
        .map(|i| all.iter().map(|row| row[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (row_number, row) in all.iter().enumerate() {
        for (i, cell) in row.iter().enumerate() {
            let style = match (row_number, i) {
                (0, _) => "3;94",
                (_, 0) => "1;34",
                _ => "",
            };
            out.push_str(&format!(
                "\x1b[{style}m{cell}\x1b[0m{}  ",
                " ".repeat(widths[i] - cell.len())
            ));
        }
        out.push('\n');
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_prints_the_go_table_with_ansi_codes() {
    let proxy = Proxy::start();
    let empty = proxy.cli(&["list"]).await;
    assert_eq!(empty.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&empty.stdout), go_table(&[]));
    assert_eq!(String::from_utf8_lossy(&empty.stderr), "");

    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let c = Backend::start("c").await;
    proxy
        .deploy(
            "web",
            &a.target(),
            &[
                "--host=app.example.com,www.example.com",
                &format!("--target={}", b.target()),
            ],
        )
        .await;
    proxy
        .deploy(
            "api-service",
            &c.target(),
            &["--path-prefix=/api", "--path-prefix=/v2"],
        )
        .await;
    proxy
        .cli_ok(&["stop", "api-service", "--drain-timeout=1s"])
        .await;

    let output = proxy.cli(&["ls"]).await;
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&output.stderr), "");
    let web_targets = format!("{},{}", a.target(), b.target());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        go_table(&[
            ["api-service", "*", "/api,/v2", &c.target(), "stopped", "no"],
            [
                "web",
                "app.example.com,www.example.com",
                "/",
                &web_targets,
                "running",
                "no"
            ],
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_json_describes_every_service_sorted_by_name() {
    let proxy = Proxy::start();
    assert_eq!(proxy.list_json().await, json!([]));

    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    proxy
        .deploy(
            "zeta",
            &a.target(),
            &["--host=z.example.com", "--path-prefix=api/"],
        )
        .await;
    proxy.deploy("alpha", &b.target(), &[]).await;
    proxy
        .cli_ok(&["pause", "zeta", "--drain-timeout=1s", "--max-pause=5s"])
        .await;

    assert_eq!(
        proxy.list_json().await,
        json!([
            {
                "name": "alpha",
                "hosts": [],
                "path_prefixes": ["/"],
                "targets": [b.target()],
                "state": "running",
                "tls": false
            },
            {
                "name": "zeta",
                "hosts": ["z.example.com"],
                "path_prefixes": ["/api"],
                "targets": [a.target()],
                "state": "paused",
                "tls": false
            }
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_unroutes_the_service_at_once() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    proxy
        .deploy("web", &app.target(), &["--host=app.example.com"])
        .await;
    assert_eq!(
        get(proxy.port(), "app.example.com", "/").await.backend(),
        "app"
    );

    proxy.cli_ok(&["remove", "web"]).await;
    get(proxy.port(), "app.example.com", "/")
        .await
        .assert_error_page(404, "404 — Not Found");
    assert_eq!(proxy.list_json().await, json!([]));

    // The alias works too, and the name is free for a new deploy.
    proxy.deploy("web", &app.target(), &[]).await;
    proxy.cli_ok(&["rm", "web"]).await;
    assert_eq!(proxy.list_json().await, json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_an_unknown_service_fails_with_service_not_found() {
    let proxy = Proxy::start();
    proxy
        .cli_err(&["remove", "ghost"], "service not found")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_a_restart_without_redeploying() {
    let mut proxy = Proxy::start();
    let web = Backend::start("web").await;
    let api = Backend::start("api").await;
    proxy
        .deploy(
            "web",
            &web.target(),
            &["--host=app.example.com", "--health-check-path=/ready"],
        )
        .await;
    proxy
        .deploy(
            "api",
            &api.target(),
            &["--host=app.example.com", "--path-prefix=/api"],
        )
        .await;
    proxy
        .cli_ok(&["stop", "api", "--drain-timeout=1s", "--message=upgrading"])
        .await;
    let listed = proxy.list_json().await;

    proxy.restart();

    assert_eq!(proxy.list_json().await, listed);
    // Restored targets take traffic at once, without a health wait.
    assert_eq!(
        get(proxy.port(), "app.example.com", "/x").await.backend(),
        "web"
    );
    let stopped = get(proxy.port(), "app.example.com", "/api/x").await;
    stopped.assert_error_page(503, "503 — Service Temporarily Unavailable");
    assert!(
        stopped.body.contains("<p>upgrading</p>"),
        "{}",
        stopped.body
    );
}

fn go_state_service(name: &str, hosts: Value, targets: Value, pause: Value, tls: bool) -> Value {
    json!({
        "name": name,
        "options": {
            "hosts": hosts,
            "path_prefixes": null,
            "tls_enabled": tls,
            "tls_certificate_path": if tls { "/nonexistent/cert.pem" } else { "" },
            "tls_private_key_path": if tls { "/nonexistent/key.pem" } else { "" },
            "tls_on_demand_url": "",
            "tls_redirect": true,
            "canonical_host": "",
            "acme_directory": "",
            "acme_cache_path": "",
            "error_page_path": "",
            "strip_prefix": true,
            "writer_affinity_timeout": 1_000_000_000u64,
            "read_targets_accept_websockets": false,
            "exclude_metrics_paths": null,
            "client_ip_header": ""
        },
        "target_options": {
            "health_check_config": {
                "path": "/up", "port": 0, "interval": 1_000_000_000u64,
                "timeout": 5_000_000_000u64, "host": ""
            },
            "response_timeout": 30_000_000_000u64,
            "buffer_requests": false,
            "buffer_responses": false,
            "max_memory_buffer_size": 1_048_576,
            "max_request_body_size": 0,
            "max_response_body_size": 0,
            "log_request_headers": null,
            "log_response_headers": null,
            "forward_headers": true,
            "scope_cookie_paths": false
        },
        "active_targets": targets,
        "active_readers": null,
        "rollout_targets": null,
        "rollout_readers": null,
        "pause_controller": pause,
        "rollout_controller": null
    })
}

fn write_go_state(state_dir: &std::path::Path, services: &[Value]) {
    // One line plus a newline, as Go's JSON encoder writes it.
    let mut text = serde_json::to_string(services).expect("serialise");
    text.push('\n');
    std::fs::write(state_dir.join("kamal-proxy.state"), text).expect("write state file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restores_a_state_file_written_by_the_go_proxy() {
    let web = Backend::start("web").await;
    let docs = Backend::start("docs").await;
    let running = json!({"state": 0, "stop_message": "", "fail_after": 30_000_000_000u64});
    let stopped =
        json!({"state": 2, "stop_message": "Back at 10:00", "fail_after": 30_000_000_000u64});
    let services = [
        go_state_service(
            "app-web",
            json!(["App.Example.com"]),
            json!([web.target()]),
            running,
            false,
        ),
        go_state_service(
            "docs",
            json!(["docs.example.com"]),
            json!([docs.target()]),
            stopped,
            false,
        ),
    ];
    let proxy = Proxy::start_with(|dir| write_go_state(dir, &services));

    assert_eq!(
        get(proxy.port(), "app.example.com", "/").await.backend(),
        "web"
    );
    let page = get(proxy.port(), "docs.example.com", "/").await;
    page.assert_error_page(503, "503 — Service Temporarily Unavailable");
    assert!(page.body.contains("<p>Back at 10:00</p>"), "{}", page.body);
    assert_eq!(
        proxy.list_json().await,
        json!([
            {
                "name": "app-web", "hosts": ["app.example.com"], "path_prefixes": ["/"],
                "targets": [web.target()], "state": "running", "tls": false
            },
            {
                "name": "docs", "hosts": ["docs.example.com"], "path_prefixes": ["/"],
                "targets": [docs.target()], "state": "stopped", "tls": false
            }
        ])
    );
    assert!(
        !proxy
            .logs()
            .iter()
            .any(|e| e["msg"] == "No previous state to restore"),
        "a state file was there"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_broken_service_in_the_state_file_does_not_drop_the_others() {
    let good = Backend::start("good").await;
    let running = json!({"state": 0, "stop_message": "", "fail_after": 30_000_000_000u64});
    let services = [
        go_state_service(
            "bad-target",
            json!(["bad.example.com"]),
            json!(["http://not a target"]),
            running.clone(),
            false,
        ),
        go_state_service(
            "good",
            json!(["good.example.com"]),
            json!([good.target()]),
            running.clone(),
            false,
        ),
        go_state_service(
            "missing-cert",
            json!(["cert.example.com"]),
            json!([good.target()]),
            running,
            true,
        ),
    ];
    let proxy = Proxy::start_with(|dir| write_go_state(dir, &services));

    assert_eq!(
        get(proxy.port(), "good.example.com", "/").await.backend(),
        "good"
    );
    let listed = proxy.list_json().await;
    let names: Vec<&str> = listed
        .as_array()
        .expect("array")
        .iter()
        .map(|s| s["name"].as_str().expect("name"))
        .collect();
    assert!(names.contains(&"good"), "{listed}");
    assert!(!names.contains(&"bad-target"), "{listed}");
    get(proxy.port(), "bad.example.com", "/")
        .await
        .assert_error_page(404, "404 — Not Found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_start_logs_no_previous_state_to_restore() {
    let proxy = Proxy::start();
    let logs = proxy.logs();
    let line = logs
        .iter()
        .find(|e| e["msg"] == "No previous state to restore")
        .unwrap_or_else(|| panic!("no `No previous state to restore` in {logs:?}"));
    assert_eq!(line["level"], "INFO");
    assert!(line["time"].is_string(), "{line}");
    let started = logs
        .iter()
        .find(|e| e["msg"] == "Server started")
        .expect("Server started");
    assert_eq!(started["level"], "INFO");
    assert_eq!(started["http"], proxy.port());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_every_request_with_the_go_fields() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    proxy
        .deploy(
            "web",
            &app.target(),
            &[
                "--host=app.example.com",
                "--log-request-header=X-Custom-In",
                "--log-response-header=X-Backend",
            ],
        )
        .await;

    let response = support::send(
        proxy.port(),
        http::Method::GET,
        "app.example.com",
        "/some/path?a=1&b=two",
        &[
            ("x-request-id", "log-test-1"),
            ("user-agent", "integration-test/1.0"),
            ("x-custom-in", "custom-value"),
        ],
    )
    .await;
    assert_eq!(response.status(), 200);
    let line = proxy.request_log("log-test-1").await;

    assert_eq!(line["level"], "INFO");
    assert_eq!(line["host"], "app.example.com");
    assert_eq!(line["port"], proxy.port());
    assert_eq!(line["path"], "/some/path");
    assert_eq!(line["status"], 200);
    assert_eq!(line["service"], "web");
    assert_eq!(line["target"], app.target());
    assert!(
        line["duration"].as_u64().is_some(),
        "duration in ns: {line}"
    );
    assert_eq!(line["method"], "GET");
    assert_eq!(line["req_content_length"], 0);
    assert_eq!(line["req_content_type"], "");
    assert_eq!(line["resp_content_length"], response.body.len());
    assert_eq!(line["resp_content_type"], "application/json");
    assert_eq!(line["client_addr"], "127.0.0.1");
    let client_port = line["client_port"]
        .as_str()
        .unwrap_or_else(|| panic!("client_port is a string, as in Go: {line}"));
    assert!(client_port.parse::<u16>().is_ok_and(|p| p > 0), "{line}");
    assert_eq!(line["remote_addr"], "127.0.0.1");
    assert_eq!(line["user_agent"], "integration-test/1.0");
    assert_eq!(line["proto"], "HTTP/1.1");
    assert_eq!(line["scheme"], "http");
    assert_eq!(line["query"], "a=1&b=two");
    assert_eq!(line["req_x_custom_in"], "custom-value");
    assert_eq!(line["resp_x_backend"], "app");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_before_the_response_is_logged_as_499() {
    use tokio::io::AsyncWriteExt;
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    proxy
        .deploy("web", &app.target(), &["--host=app.example.com"])
        .await;

    let mut stream = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    let request =
        "GET /slow?ms=2000 HTTP/1.1\r\nhost: app.example.com\r\nx-request-id: gone-1\r\n\r\n";
    stream.write_all(request.as_bytes()).await.unwrap();
    support::poll_until(
        Duration::from_secs(5),
        "the request reached the app",
        || async { app.in_flight() == 1 },
    )
    .await;
    drop(stream);

    let line = proxy.request_log("gone-1").await;
    assert_eq!(line["status"], 499, "{line}");
    assert_eq!(line["service"], "web");
    assert_eq!(line["target"], app.target());
    assert_eq!(line["resp_content_length"], 0);
    // The target's request was abandoned with it, not left to run.
    support::poll_until(Duration::from_secs(5), "the app saw it go", || async {
        app.in_flight() == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_log_fields_come_in_go_order() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    proxy
        .deploy(
            "web",
            &app.target(),
            &[
                "--log-request-header=X-Custom-In",
                "--log-response-header=X-Backend",
            ],
        )
        .await;
    support::send(
        proxy.port(),
        http::Method::GET,
        "example.com",
        "/",
        &[("x-request-id", "order-test-1")],
    )
    .await;
    proxy.request_log("order-test-1").await;

    let raw = proxy
        .raw_logs()
        .into_iter()
        .find(|line| line.contains("\"order-test-1\""))
        .expect("the raw request line");
    let order = [
        "time",
        "level",
        "msg",
        "host",
        "port",
        "path",
        "request_id",
        "status",
        "service",
        "target",
        "duration",
        "method",
        "req_content_length",
        "req_content_type",
        "resp_content_length",
        "resp_content_type",
        "client_addr",
        "client_port",
        "remote_addr",
        "user_agent",
        "proto",
        "scheme",
        "query",
        "req_x_custom_in",
        "resp_x_backend",
    ];
    let positions: Vec<usize> = order
        .iter()
        .map(|key| {
            raw.find(&format!("\"{key}\":"))
                .unwrap_or_else(|| panic!("{key} missing from {raw}"))
        })
        .collect();
    assert!(
        positions.windows(2).all(|pair| pair[0] < pair[1]),
        "fields must come in Go's order {order:?}: {raw}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_unrouted_requests_with_status_404_and_no_service() {
    let proxy = Proxy::start();
    let response = support::send(
        proxy.port(),
        http::Method::GET,
        "nowhere.example.com",
        "/",
        &[
            ("x-request-id", "unrouted-1"),
            ("x-forwarded-for", "203.0.113.9"),
        ],
    )
    .await;
    assert_eq!(response.status(), 404);
    let line = proxy.request_log("unrouted-1").await;
    assert_eq!(line["status"], 404);
    assert_eq!(line["service"], "");
    assert_eq!(line["target"], "");
    assert_eq!(line["remote_addr"], "203.0.113.9");
    assert_eq!(line["resp_content_type"], "text/html; charset=utf-8");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_shuts_down_gracefully_with_exit_0() {
    let mut proxy = Proxy::start();
    let status = proxy.terminate();
    assert_eq!(status.code(), Some(0));
    assert!(
        !proxy.socket_path().exists(),
        "the control socket is removed on shutdown"
    );
}

/// A GET for `path` on the framing target's host, kept alive.
fn keep_alive_get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nhost: {FRAMING_HOST}\r\n\r\n").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_idle_keep_alive_connections_at_once() {
    let (mut proxy, _target) = proxy_serving(vec![]).await;
    let mut client = RawClient::connect(proxy.addr()).await;
    client.send(&keep_alive_get("/one")).await;
    assert_ok(&client.read_response(false).await, "/one");

    // Idle between requests: shutdown closes it rather than waiting out the 10 s grace.
    let started = Instant::now();
    let status = tokio::task::spawn_blocking(move || proxy.terminate())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?} to exit with an idle connection open",
        started.elapsed()
    );
    assert!(client.read_to_close().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_still_serves_the_first_request_of_a_connection_made_before_it() {
    let (proxy, _target) = proxy_serving(vec![]).await;
    let mut client = RawClient::connect(proxy.addr()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pid = libc::pid_t::try_from(proxy.pid()).unwrap();
    // SAFETY: plain kill(2) on the pid of the daemon the test started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    tokio::time::sleep(Duration::from_millis(300)).await;

    client.send(&keep_alive_get("/late")).await;
    let response = client.read_response(false).await;
    assert_ok(&response, "/late");
    assert!(client.read_to_close().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_prints_the_package_version() {
    let proxy = Proxy::start();
    let output = proxy.cli(&["version"]).await;
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&output.stderr), "");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.ends_with('\n') && stdout.contains(env!("CARGO_PKG_VERSION")),
        "version output {stdout:?} names {}",
        env!("CARGO_PKG_VERSION")
    );
}
