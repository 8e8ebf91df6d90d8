//! The deploy lifecycle: health checks, switching, load balancing and refusals.
//!
//! A deploy waits until every new target passes its health check (path, interval, port and
//! Host header as configured; any 2xx passes), switches traffic, drains the old targets and
//! only then returns. A timeout or a host conflict changes nothing. Several targets are
//! balanced round-robin, and a target that fails its checks leaves the rotation until it
//! passes again. A second deploy of a service while one is running is refused at once.
//! Once deployed, a target that refuses connections gives 502 and one that is slower than
//! `--target-timeout` gives 504.

mod support;

use std::time::{Duration, Instant};

use support::{assert_error, get, poll_until, Backend, HttpClient, Proxy};

const HOST: &str = "app.example.com";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_check_uses_the_configured_path() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    app.set_healthy(false); // `/up` fails; `/ready` is an ordinary 200 path.
    proxy
        .deploy("web", &app.target(), &["--health-check-path=/ready"])
        .await;

    let checks = app.requests_to("/ready");
    assert!(!checks.is_empty(), "the configured path was checked");
    assert_eq!(checks[0].method, "GET");
    assert_eq!(checks[0].header("user-agent"), Some("kamal-proxy"));
    assert_eq!(app.count("/up"), 0, "the default path was not checked");
    assert_eq!(get(proxy.port(), HOST, "/").await.backend(), "app");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_check_polls_at_the_configured_interval() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    app.set_healthy(false);
    let deploy = {
        let target = format!("--target={}", app.target());
        let args = [
            "deploy",
            "web",
            target.as_str(),
            "--health-check-interval=100ms",
            "--deploy-timeout=1s",
        ];
        proxy.cli(&args).await
    };
    assert_error(
        &deploy,
        &["deploy"],
        "target failed to become healthy within configured timeout (1s)",
    );
    // One immediate check and then one every 100ms for a second: about 11.
    let checks = app.count("/up");
    assert!(
        (6..=16).contains(&checks),
        "expected about 11 checks at 100ms over 1s, got {checks}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_check_uses_the_configured_port() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    let health = Backend::start("health").await;
    app.set_healthy(false);
    proxy
        .deploy(
            "web",
            &app.target(),
            &[&format!("--health-check-port={}", health.port())],
        )
        .await;

    assert!(health.count("/up") > 0, "checks went to the health port");
    assert_eq!(app.count("/up"), 0, "no checks went to the target port");
    assert_eq!(get(proxy.port(), HOST, "/").await.backend(), "app");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_check_sends_the_configured_host_header() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    proxy
        .deploy(
            "web",
            &app.target(),
            &["--health-check-host=health.internal"],
        )
        .await;

    let checks = app.requests_to("/up");
    assert!(!checks.is_empty());
    assert_eq!(checks[0].header_values("host"), vec!["health.internal"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_2xx_health_status_counts_as_healthy() {
    for status in [200, 204, 299] {
        let proxy = Proxy::start();
        let app = Backend::start("app").await;
        app.set_up_status(status);
        proxy.deploy("web", &app.target(), &[]).await;
        assert_eq!(
            get(proxy.port(), HOST, "/").await.backend(),
            "app",
            "{status}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_timeout_fails_with_go_message_and_changes_nothing() {
    let proxy = Proxy::start();
    let old = Backend::start("old").await;
    let new = Backend::start("new").await;
    proxy
        .deploy("web", &old.target(), &[&format!("--host={HOST}")])
        .await;
    let listed = proxy.list_json().await;
    let state = std::fs::read(proxy.state_file()).expect("state written after deploy");

    new.set_up_status(500);
    let target = format!("--target={}", new.target());
    let args = [
        "deploy",
        "web",
        &target,
        "--host=other.example.com",
        "--health-check-interval=100ms",
        "--deploy-timeout=500ms",
    ];
    let started = Instant::now();
    let output = proxy.cli(&args).await;
    assert_error(
        &output,
        &args,
        "target failed to become healthy within configured timeout (500ms)",
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "failed after the deploy timeout, not much later: {:?}",
        started.elapsed()
    );

    assert_eq!(proxy.list_json().await, listed);
    assert_eq!(get(proxy.port(), HOST, "/").await.backend(), "old");
    get(proxy.port(), "other.example.com", "/")
        .await
        .assert_error_page(404, "404 — Not Found");
    assert!(new.app_requests().is_empty());
    assert_eq!(
        std::fs::read(proxy.state_file()).expect("state file"),
        state,
        "a failed deploy writes no state"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeploy_switches_traffic_to_the_new_target() {
    let proxy = Proxy::start();
    let old = Backend::start("old").await;
    let new = Backend::start("new").await;
    let client = HttpClient::new(proxy.port());
    proxy.deploy("web", &old.target(), &[]).await;
    assert_eq!(client.get(HOST, "/").await.backend(), "old");

    proxy.deploy("web", &new.target(), &[]).await;
    // Same keep-alive client connection and a fresh one: both reach the new target at once.
    assert_eq!(client.get(HOST, "/").await.backend(), "new");
    assert_eq!(get(proxy.port(), HOST, "/").await.backend(), "new");
    assert_eq!(
        proxy.list_json().await[0]["targets"],
        serde_json::json!([new.target()])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_skips_the_health_wait_and_routes_once_healthy() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    app.set_healthy(false);

    let started = Instant::now();
    proxy
        .deploy("web", &app.target(), &["--force", "--deploy-timeout=30s"])
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "--force returned without waiting for health: {:?}",
        started.elapsed()
    );
    assert_eq!(proxy.list_json().await[0]["name"], "web");
    // Not yet healthy: no traffic reaches it.
    get(proxy.port(), HOST, "/")
        .await
        .assert_error_page(503, "503 — Service Temporarily Unavailable");
    assert!(app.app_requests().is_empty());

    app.set_healthy(true);
    poll_until(
        Duration::from_secs(5),
        "the forced target to take traffic",
        || async { get(proxy.port(), HOST, "/").await.status() == 200 },
    )
    .await;
    assert_eq!(get(proxy.port(), HOST, "/").await.backend(), "app");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robins_across_targets() {
    let proxy = Proxy::start();
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let c = Backend::start("c").await;
    let targets = format!("--target={},{}", b.target(), c.target());
    proxy.deploy("web", &a.target(), &[&targets]).await;

    let mut seen = Vec::new();
    for _ in 0..12 {
        seen.push(get(proxy.port(), HOST, "/").await.backend());
    }
    for name in ["a", "b", "c"] {
        assert_eq!(seen.iter().filter(|s| *s == name).count(), 4, "{seen:?}");
    }
    for window in seen.windows(3) {
        let mut names = window.to_vec();
        names.sort();
        assert_eq!(names, ["a", "b", "c"], "strict rotation: {seen:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhealthy_target_leaves_and_rejoins_the_rotation() {
    let proxy = Proxy::start();
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;
    let extra = format!("--target={}", b.target());
    proxy.deploy("web", &a.target(), &[&extra]).await;

    b.set_healthy(false);
    poll_until(
        Duration::from_secs(5),
        "b to leave the rotation",
        || async {
            let mut names = Vec::new();
            for _ in 0..4 {
                names.push(get(proxy.port(), HOST, "/").await.backend());
            }
            names.iter().all(|n| n == "a")
        },
    )
    .await;
    let b_served = b.app_requests().len();
    for _ in 0..10 {
        assert_eq!(get(proxy.port(), HOST, "/").await.backend(), "a");
    }
    assert_eq!(
        b.app_requests().len(),
        b_served,
        "b takes no traffic while unhealthy"
    );

    b.set_healthy(true);
    poll_until(
        Duration::from_secs(5),
        "b to rejoin the rotation",
        || async { get(proxy.port(), HOST, "/").await.backend() == "b" },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_conflict_is_refused_and_the_owner_keeps_serving() {
    let proxy = Proxy::start();
    let web = Backend::start("web").await;
    let other = Backend::start("other").await;
    proxy
        .deploy("web", &web.target(), &[&format!("--host={HOST}")])
        .await;
    let listed = proxy.list_json().await;

    let target = format!("--target={}", other.target());
    let args = [
        "deploy",
        "other",
        &target,
        "--host=x.example.com",
        "--host=App.Example.com",
        "--health-check-interval=100ms",
    ];
    let output = proxy.cli(&args).await;
    assert_error(
        &output,
        &args,
        "host settings conflict with another service",
    );

    assert_eq!(proxy.list_json().await, listed);
    assert_eq!(get(proxy.port(), HOST, "/").await.backend(), "web");
    get(proxy.port(), "x.example.com", "/")
        .await
        .assert_error_page(404, "404 — Not Found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_catch_all_services_conflict_but_other_prefixes_do_not() {
    let proxy = Proxy::start();
    let first = Backend::start("first").await;
    let second = Backend::start("second").await;
    proxy.deploy("first", &first.target(), &[]).await;

    let target = format!("--target={}", second.target());
    let args = ["deploy", "second", &target, "--health-check-interval=100ms"];
    let output = proxy.cli(&args).await;
    assert_error(
        &output,
        &args,
        "host settings conflict with another service",
    );

    // The same (empty) host under another prefix is a different binding.
    proxy
        .deploy("second", &second.target(), &["--path-prefix=/second"])
        .await;
    assert_eq!(get(proxy.port(), HOST, "/").await.backend(), "first");
    assert_eq!(get(proxy.port(), HOST, "/second").await.backend(), "second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_deploy_of_the_same_service_is_refused_while_one_runs() {
    let proxy = Proxy::start();
    let slow = Backend::start("slow").await;
    let other = Backend::start("other").await;
    slow.set_healthy(false);

    let first = {
        let mut command = tokio::process::Command::from(proxy.command());
        command.args([
            "deploy",
            "web",
            &format!("--target={}", slow.target()),
            "--health-check-interval=100ms",
            "--deploy-timeout=20s",
        ]);
        command.kill_on_drop(true);
        command.output()
    };
    let first = tokio::spawn(first);
    poll_until(
        Duration::from_secs(5),
        "the first deploy to start checking",
        || async { slow.count("/up") > 0 },
    )
    .await;

    let target = format!("--target={}", other.target());
    let args = ["deploy", "web", &target, "--health-check-interval=100ms"];
    let started = Instant::now();
    let output = proxy.cli(&args).await;
    assert_error(
        &output,
        &args,
        "a deploy of service \"web\" is already in progress; wait for it to finish",
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "refused at once, not after waiting: {:?}",
        started.elapsed()
    );

    slow.set_healthy(true);
    let first = first.await.expect("join").expect("run first deploy");
    support::assert_success_silent(&first, &["deploy", "web (first)"]);
    assert_eq!(get(proxy.port(), HOST, "/").await.backend(), "slow");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_returns_only_after_the_old_target_drained() {
    let proxy = Proxy::start();
    let old = Backend::start("old").await;
    let new = Backend::start("new").await;
    proxy.deploy("web", &old.target(), &[]).await;

    let port = proxy.port();
    let in_flight = tokio::spawn(async move { get(port, HOST, "/slow?ms=1500").await });
    poll_until(
        Duration::from_secs(5),
        "the slow request to reach the old target",
        || async { old.in_flight() == 1 },
    )
    .await;

    proxy
        .deploy("web", &new.target(), &["--drain-timeout=10s"])
        .await;
    assert!(
        in_flight.is_finished(),
        "deploy returned while a request on the old target was still running"
    );
    let response = in_flight.await.expect("join");
    assert_eq!(response.backend(), "old");
    assert_eq!(response.json()["path"], "/slow");
    assert_eq!(get(port, HOST, "/").await.backend(), "new");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploys_of_different_services_run_side_by_side() {
    let proxy = Proxy::start();
    let waiting = Backend::start("waiting").await;
    let quick = Backend::start("quick").await;
    waiting.set_healthy(false);

    let blocked = {
        let mut command = tokio::process::Command::from(proxy.command());
        command.args([
            "deploy",
            "blocked",
            &format!("--target={}", waiting.target()),
            "--host=blocked.example.com",
            "--health-check-interval=100ms",
            "--deploy-timeout=20s",
        ]);
        command.kill_on_drop(true);
        tokio::spawn(command.output())
    };
    poll_until(
        Duration::from_secs(5),
        "the blocked deploy to start checking",
        || async { waiting.count("/up") > 0 },
    )
    .await;

    let started = Instant::now();
    proxy
        .deploy("quick", &quick.target(), &["--host=quick.example.com"])
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        get(proxy.port(), "quick.example.com", "/").await.backend(),
        "quick"
    );
    assert!(!blocked.is_finished());

    waiting.set_healthy(true);
    let output = blocked.await.expect("join").expect("run blocked deploy");
    support::assert_success_silent(&output, &["deploy", "blocked"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_single_target_gives_502() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    proxy.deploy("web", &app.target(), &[]).await;
    assert_eq!(get(proxy.port(), HOST, "/").await.backend(), "app");

    app.stop();
    // A single healthy target is not checked any more, so it stays in rotation: 502, not 503.
    get(proxy.port(), HOST, "/")
        .await
        .assert_error_page(502, "502 — Bad Gateway");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_slower_than_target_timeout_gives_504() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    proxy
        .deploy("web", &app.target(), &["--target-timeout=300ms"])
        .await;

    let started = Instant::now();
    get(proxy.port(), HOST, "/slow?ms=3000")
        .await
        .assert_error_page(504, "504 — Gateway Timeout");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "gave up after the target timeout: {:?}",
        started.elapsed()
    );
    assert_eq!(
        get(proxy.port(), HOST, "/slow?ms=10").await.backend(),
        "app"
    );
}
