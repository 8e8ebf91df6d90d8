//! Pause, stop (maintenance) and resume.
//!
//! A paused service holds new requests until it is resumed, or answers 504 once a request
//! has waited `--max-pause`. A stopped service answers 503 with the stop message in the
//! built-in page. While paused or stopped the health-check path is answered 200 by the proxy
//! itself so outer load balancers keep the host. Resume restores normal service, and `list`
//! shows the state throughout.

mod support;

use std::time::{Duration, Instant};

use http::Method;
use support::{get, poll_until, send, Backend, Proxy};

const HOST: &str = "app.example.com";

async fn running_service() -> (Proxy, Backend) {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    proxy.deploy("web", &app.target(), &[]).await;
    (proxy, app)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_requests_wait_until_resume() {
    let (proxy, app) = running_service().await;
    proxy
        .cli_ok(&["pause", "web", "--drain-timeout=1s", "--max-pause=20s"])
        .await;
    assert_eq!(proxy.list_json().await[0]["state"], "paused");

    let port = proxy.port();
    let held = tokio::spawn(async move { get(port, HOST, "/held").await });
    // An absence cannot be polled for: give the request time to (wrongly) get through.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!held.is_finished(), "a paused service answered a request");
    assert_eq!(
        app.count("/held"),
        0,
        "a paused service forwarded a request"
    );

    let resumed_at = Instant::now();
    proxy.cli_ok(&["resume", "web"]).await;
    let response = tokio::time::timeout(Duration::from_secs(5), held)
        .await
        .expect("released by resume")
        .expect("join");
    assert_eq!(response.backend(), "app");
    assert_eq!(response.json()["path"], "/held");
    assert!(resumed_at.elapsed() < Duration::from_secs(3));
    assert_eq!(proxy.list_json().await[0]["state"], "running");
    assert_eq!(get(port, HOST, "/").await.backend(), "app");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_paused_longer_than_max_pause_gets_504() {
    let (proxy, app) = running_service().await;
    proxy
        .cli_ok(&["pause", "web", "--drain-timeout=1s", "--max-pause=300ms"])
        .await;

    let started = Instant::now();
    let response = get(proxy.port(), HOST, "/late").await;
    let waited = started.elapsed();
    response.assert_error_page(504, "504 — Gateway Timeout");
    assert!(
        waited >= Duration::from_millis(280) && waited < Duration::from_secs(3),
        "rejected after max-pause: {waited:?}"
    );
    assert_eq!(app.count("/late"), 0);
    proxy
        .wait_for_log("the expired pause to be logged", |entry| {
            entry["msg"] == "Rejecting request due to expired pause" && entry["level"] == "WARN"
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_service_answers_503_with_the_message() {
    let (proxy, app) = running_service().await;
    proxy
        .cli_ok(&[
            "stop",
            "web",
            "--drain-timeout=1s",
            "--message=Back at <b>noon</b> & later",
        ])
        .await;
    assert_eq!(proxy.list_json().await[0]["state"], "stopped");

    let response = get(proxy.port(), HOST, "/").await;
    response.assert_error_page(503, "503 — Service Temporarily Unavailable");
    assert!(
        response
            .body
            .contains("<p>Back at &lt;b&gt;noon&lt;/b&gt; &amp; later</p>"),
        "the message, HTML-escaped, is in the page: {}",
        response.body
    );
    assert!(app.app_requests().is_empty(), "{:?}", app.app_requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_service_without_message_shows_the_stock_page() {
    let (proxy, _app) = running_service().await;
    proxy.cli_ok(&["stop", "web", "--drain-timeout=1s"]).await;

    let response = get(proxy.port(), HOST, "/").await;
    response.assert_error_page(503, "503 — Service Temporarily Unavailable");
    assert!(
        response
            .body
            .contains("The service is temporarily unavailable."),
        "{}",
        response.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_releases_paused_requests_with_503() {
    let (proxy, _app) = running_service().await;
    proxy
        .cli_ok(&["pause", "web", "--drain-timeout=1s", "--max-pause=20s"])
        .await;
    let port = proxy.port();
    let held = tokio::spawn(async move { get(port, HOST, "/held").await });
    // Nothing signals that a request is waiting; give it time to arrive, then check that it
    // is held (an absence cannot be polled for).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!held.is_finished(), "a paused service answered a request");

    proxy
        .cli_ok(&["stop", "web", "--drain-timeout=1s", "--message=maintenance"])
        .await;
    let response = tokio::time::timeout(Duration::from_secs(5), held)
        .await
        .expect("released by stop")
        .expect("join");
    response.assert_error_page(503, "503 — Service Temporarily Unavailable");
    assert!(
        response.body.contains("<p>maintenance</p>"),
        "{}",
        response.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_check_path_answers_200_while_paused_or_stopped() {
    let (proxy, app) = running_service().await;
    let port = proxy.port();

    for (command, state) in [
        (
            &["pause", "web", "--drain-timeout=1s", "--max-pause=20s"][..],
            "paused",
        ),
        (&["stop", "web", "--drain-timeout=1s"][..], "stopped"),
    ] {
        proxy.cli_ok(command).await;
        assert_eq!(proxy.list_json().await[0]["state"], state);
        for method in [Method::GET, Method::HEAD] {
            let started = Instant::now();
            let response = send(port, method.clone(), HOST, "/up", &[]).await;
            assert_eq!(response.status(), 200, "{method} /up while {state}");
            assert_eq!(response.body, "", "{method} /up while {state}");
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "answered at once"
            );
        }
        // Answered by the proxy itself, not forwarded.
        assert!(
            app.app_requests().iter().all(|r| r.path != "/up"),
            "{:?}",
            app.app_requests()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_stop_serves_again() {
    let (proxy, _app) = running_service().await;
    proxy.cli_ok(&["stop", "web", "--drain-timeout=1s"]).await;
    assert_eq!(get(proxy.port(), HOST, "/").await.status(), 503);

    proxy.cli_ok(&["resume", "web"]).await;
    assert_eq!(proxy.list_json().await[0]["state"], "running");
    assert_eq!(get(proxy.port(), HOST, "/").await.backend(), "app");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_returns_after_in_flight_requests_finish() {
    let (proxy, app) = running_service().await;
    let port = proxy.port();
    let slow = tokio::spawn(async move { get(port, HOST, "/slow?ms=1000").await });
    poll_until(
        Duration::from_secs(5),
        "the slow request to start",
        || async { app.in_flight() == 1 },
    )
    .await;

    let started = std::time::Instant::now();
    proxy
        .cli_ok(&["pause", "web", "--drain-timeout=10s", "--max-pause=20s"])
        .await;
    // The drain ends when the proxy has sent the last byte; the client may read it a moment
    // later, so the proof is the time the pause took, and the answer arriving whole.
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "pause returned after {:?}, before the slow request could have finished",
        started.elapsed()
    );
    let answered = tokio::time::timeout(Duration::from_secs(2), slow)
        .await
        .expect("the slow request was answered after the pause");
    assert_eq!(answered.expect("join").backend(), "app");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_state_survives_a_redeploy() {
    let (proxy, _app) = running_service().await;
    let next = Backend::start("next").await;
    proxy
        .cli_ok(&["stop", "web", "--drain-timeout=1s", "--message=later"])
        .await;

    proxy.deploy("web", &next.target(), &[]).await;
    assert_eq!(proxy.list_json().await[0]["state"], "stopped");
    let response = get(proxy.port(), HOST, "/").await;
    response.assert_error_page(503, "503 — Service Temporarily Unavailable");
    assert!(response.body.contains("<p>later</p>"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_stop_and_resume_of_an_unknown_service_fail() {
    let proxy = Proxy::start();
    proxy.cli_err(&["pause", "nope"], "service not found").await;
    proxy.cli_err(&["stop", "nope"], "service not found").await;
    proxy
        .cli_err(&["resume", "nope"], "service not found")
        .await;
}
