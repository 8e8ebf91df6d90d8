//! Rollouts: a second group of targets that takes a chosen share of a service's traffic.
//!
//! `rollout deploy` brings the group up (health-gated, with the service's own options) but
//! sends it nothing; `rollout set` picks requests by their `kamal-rollout` cookie (allowlist
//! first, then FNV-1a-32 of the value against a split point); `rollout stop` hands all
//! traffic back while the group stays deployed. A normal deploy and a restart keep the group
//! and the split; `list` never shows rollout targets. Bad input changes nothing.

mod support;

use http::Method;
use support::{get, send, Backend, Proxy};

const HOST: &str = "app.example.com";

/// Go's `hash/fnv` 32-bit FNV-1a, computed independently of the proxy.
fn fnv1a(value: &str) -> u32 {
    value.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

fn takes_rollout(value: &str, percent: u32) -> bool {
    f64::from(fnv1a(value)) <= f64::from(u32::MAX) * (f64::from(percent) / 100.0)
}

/// Which backend answers a GET carrying `kamal-rollout=<value>` (no cookie for `None`).
async fn backend_for(proxy: &Proxy, value: Option<&str>) -> String {
    let cookie = value.map(|v| format!("kamal-rollout={v}"));
    let headers: Vec<(&str, &str)> = cookie.iter().map(|c| ("cookie", c.as_str())).collect();
    send(proxy.port(), Method::GET, HOST, "/", &headers)
        .await
        .backend()
}

/// A service `web` on `app` with a rollout group on `next`.
async fn with_rollout(proxy: &Proxy, app: &Backend, next: &Backend) {
    proxy.deploy("web", &app.target(), &[]).await;
    let target = format!("--target={}", next.target());
    proxy
        .cli_ok(&["rollout", "deploy", "web", &target, "--drain-timeout=1s"])
        .await;
}

fn has_log(proxy: &Proxy, message: &str) -> bool {
    proxy
        .logs()
        .iter()
        .any(|entry| entry["msg"] == message && entry["service"] == "web")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_deploy_sends_nothing_until_a_split_is_set() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    let next = Backend::start("next").await;
    with_rollout(&proxy, &app, &next).await;

    assert!(
        next.count("/up") > 0,
        "the rollout targets were health-checked"
    );
    assert!(has_log(&proxy, "Deploying for rollout") && has_log(&proxy, "Deployed for rollout"));
    assert_eq!(backend_for(&proxy, Some("42")).await, "app");
    let listed = proxy.list_json().await;
    assert_eq!(
        listed[0]["targets"],
        serde_json::json!([app.target()]),
        "list never shows rollout targets: {listed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_split_follows_the_cookie_hash_deterministically() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    let next = Backend::start("next").await;
    with_rollout(&proxy, &app, &next).await;
    proxy
        .cli_ok(&["rollout", "set", "web", "--percent=50"])
        .await;
    assert!(has_log(&proxy, "Set rollout split"));

    let values: Vec<String> = (1..=24).map(|n| format!("account-{n}")).collect();
    let expected: Vec<&str> = values
        .iter()
        .map(|v| if takes_rollout(v, 50) { "next" } else { "app" })
        .collect();
    assert!(
        expected.contains(&"next") && expected.contains(&"app"),
        "both sides are exercised"
    );
    for _ in 0..2 {
        let mut routed = Vec::new();
        for value in &values {
            routed.push(backend_for(&proxy, Some(value)).await);
        }
        assert_eq!(routed, expected, "routing by FNV-1a of the cookie value");
    }
    assert_eq!(backend_for(&proxy, None).await, "app", "no cookie: active");
    assert_eq!(
        backend_for(&proxy, Some("")).await,
        "app",
        "empty cookie: active"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_allowlist_and_the_percent_extremes() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    let next = Backend::start("next").await;
    with_rollout(&proxy, &app, &next).await;

    proxy
        .cli_ok(&["rollout", "set", "web", "--percent=0", "--list=7,staff"])
        .await;
    assert_eq!(backend_for(&proxy, Some("7")).await, "next");
    assert_eq!(backend_for(&proxy, Some("staff")).await, "next");
    for value in ["1", "8", "account-3", "a"] {
        assert_eq!(
            backend_for(&proxy, Some(value)).await,
            "app",
            "{value} at 0%"
        );
    }

    proxy
        .cli_ok(&["rollout", "set", "web", "--percent=100"])
        .await;
    for value in ["1", "8", "account-3", "a"] {
        assert_eq!(
            backend_for(&proxy, Some(value)).await,
            "next",
            "{value} at 100%"
        );
    }
    assert_eq!(
        backend_for(&proxy, None).await,
        "app",
        "no cookie stays active"
    );

    proxy.cli_ok(&["rollout", "stop", "web"]).await;
    assert!(has_log(&proxy, "Stopped rollout"));
    assert_eq!(backend_for(&proxy, Some("7")).await, "app");
    // Still deployed: a new split needs no new rollout deploy.
    proxy.cli_ok(&["rollout", "set", "web", "--list=7"]).await;
    assert_eq!(backend_for(&proxy, Some("7")).await, "next");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_commands_refuse_unknown_services_and_missing_rollouts() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    proxy
        .cli_err(
            &[
                "rollout",
                "deploy",
                "ghost",
                &format!("--target={}", app.target()),
            ],
            "service not found",
        )
        .await;
    proxy
        .cli_err(
            &["rollout", "set", "ghost", "--percent=5"],
            "service not found",
        )
        .await;
    proxy
        .cli_err(&["rollout", "stop", "ghost"], "service not found")
        .await;
    proxy.deploy("web", &app.target(), &[]).await;
    proxy
        .cli_err(
            &["rollout", "set", "web", "--percent=50"],
            "rollout target not set",
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_bad_input_is_refused_and_changes_nothing() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    let next = Backend::start("next").await;
    with_rollout(&proxy, &app, &next).await;
    proxy.cli_ok(&["rollout", "set", "web", "--list=7"]).await;
    let target = format!("--target={}", next.target());

    proxy
        .cli_err(
            &["rollout", "set", "web"],
            "at least one of the flags in the group [percent list] is required",
        )
        .await;
    proxy
        .cli_err(
            &["rollout", "set", "web", "--percent=101"],
            "percent must be between 0 and 100, not 101",
        )
        .await;
    for bad in [
        vec!["rollout", "set", "web", "--percent=half"],
        vec!["rollout", "set", "web", "--percent"],
        vec!["rollout", "deploy", "web"],
        vec!["rollout", "deploy", "web", &target, "--deploy-timeout=5"],
        vec!["rollout", "deploy", "web", &target, "--drain-timeout=soon"],
        vec!["rollout", "deploy", "web", &target, "--read-target=x:99999"],
        vec!["rollout", "deploy", "web", "a", &target],
        vec!["rollout", "stop"],
        vec!["rollout", "frobnicate", "web"],
    ] {
        let output = proxy.cli(&bad).await;
        support::assert_error_naming(&output, &bad, &[]);
    }
    let dead = Backend::start("dead").await;
    dead.set_healthy(false);
    proxy
        .cli_err(
            &[
                "rollout",
                "deploy",
                "web",
                &format!("--target={}", dead.target()),
                "--deploy-timeout=300ms",
            ],
            "target failed to become healthy within configured timeout (300ms)",
        )
        .await;

    assert_eq!(
        backend_for(&proxy, Some("7")).await,
        "next",
        "split unchanged"
    );
    assert_eq!(backend_for(&proxy, Some("8")).await, "app");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_rollout_deploy_replaces_the_rollout_group() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    let next = Backend::start("next").await;
    let newer = Backend::start("newer").await;
    with_rollout(&proxy, &app, &next).await;
    proxy.cli_ok(&["rollout", "set", "web", "--list=7"]).await;
    proxy
        .cli_ok(&[
            "rollout",
            "deploy",
            "web",
            &format!("--target={}", newer.target()),
        ])
        .await;
    assert_eq!(
        backend_for(&proxy, Some("7")).await,
        "newer",
        "the split stays"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_normal_deploy_keeps_the_rollout_group_and_split() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    let next = Backend::start("next").await;
    let app2 = Backend::start("app2").await;
    with_rollout(&proxy, &app, &next).await;
    proxy.cli_ok(&["rollout", "set", "web", "--list=7"]).await;
    proxy.deploy("web", &app2.target(), &[]).await;

    assert_eq!(backend_for(&proxy, Some("7")).await, "next");
    assert_eq!(backend_for(&proxy, Some("8")).await, "app2");
    assert_eq!(get(proxy.port(), HOST, "/").await.backend(), "app2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_the_rollout_group_and_split() {
    let mut proxy = Proxy::start();
    let app = Backend::start("app").await;
    let next = Backend::start("next").await;
    let reader = Backend::start("reader").await;
    proxy.deploy("web", &app.target(), &[]).await;
    proxy
        .cli_ok(&[
            "rollout",
            "deploy",
            "web",
            &format!("--target={}", next.target()),
            &format!("--read-target={}", reader.target()),
        ])
        .await;
    proxy
        .cli_ok(&["rollout", "set", "web", "--percent=25", "--list=7"])
        .await;
    let saved = std::fs::read_to_string(proxy.state_file()).unwrap();
    assert!(
        saved.contains(&format!(r#""rollout_targets":["{}"]"#, next.target())),
        "{saved}"
    );
    assert!(
        saved.contains(&format!(r#""rollout_readers":["{}"]"#, reader.target())),
        "{saved}"
    );
    assert!(
        saved.contains(r#""rollout_controller":{"percentage":25,"percentage_split_point":1073741823.75,"allowlist":["7"]}"#),
        "{saved}"
    );

    proxy.restart();
    let expected = |value: &str| {
        if value == "7" || takes_rollout(value, 25) {
            "next"
        } else {
            "app"
        }
    };
    for value in ["7", "1", "2", "3", "4", "5", "6", "8", "9"] {
        // A write, so the rollout group's reader cannot answer it.
        let cookie = format!("kamal-rollout={value}");
        let response = send(
            proxy.port(),
            Method::POST,
            HOST,
            "/",
            &[("cookie", &cookie)],
        )
        .await;
        assert_eq!(
            response.backend(),
            expected(value),
            "cookie {value} after restart"
        );
    }
    let listed = proxy.list_json().await;
    assert_eq!(listed[0]["targets"], serde_json::json!([app.target()]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_deploy_is_refused_while_another_deploy_of_the_service_runs() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    let slow = Backend::start("slow").await;
    let other = Backend::start("other").await;
    slow.set_healthy(false);
    proxy
        .deploy("web", &app.target(), &["--health-check-interval=100ms"])
        .await;

    let first = {
        let mut command = tokio::process::Command::from(proxy.command());
        command.args([
            "rollout",
            "deploy",
            "web",
            &format!("--target={}", slow.target()),
            "--deploy-timeout=20s",
        ]);
        command.kill_on_drop(true);
        command.output()
    };
    let first = tokio::spawn(first);
    support::poll_until(
        std::time::Duration::from_secs(5),
        "the rollout deploy to start checking",
        || async { slow.count("/up") > 0 },
    )
    .await;

    let message = "a deploy of service \"web\" is already in progress; wait for it to finish";
    let target = format!("--target={}", other.target());
    proxy
        .cli_err(&["rollout", "deploy", "web", &target], message)
        .await;
    proxy.cli_err(&["deploy", "web", &target], message).await;

    slow.set_healthy(true);
    let first = first.await.expect("join").expect("run the rollout deploy");
    support::assert_success_silent(&first, &["rollout", "deploy", "web"]);
    // The refused deploy changed nothing: the app still serves, nothing reached `other`.
    assert_eq!(get(proxy.port(), HOST, "/").await.backend(), "app");
    assert_eq!(other.count("/up"), 0);
}
