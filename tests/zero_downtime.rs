//! Zero downtime: redeploys under load lose nothing, in-flight requests finish, and drains
//! end on time.
//!
//! Clients on kept-alive connections and on fresh connections hammer a service while it is
//! redeployed back and forth; not one request may fail. A request already running on the old
//! target completes; one still running after `--drain-timeout` gets 504 (or, when its
//! response is already streaming, is cut off); an upgraded
//! (WebSocket) connection on the old target is closed at once instead of holding the drain.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::Method;
use support::{
    assert_redeploy_closes_websocket, get, poll_until, try_send, websocket_connect, websocket_echo,
    Backend, HttpClient, Proxy,
};

const HOST: &str = "app.example.com";

/// Outcome counters of a client loop.
#[derive(Default)]
struct Tally {
    ok: usize,
    by_backend: std::collections::BTreeMap<String, usize>,
    failures: Vec<String>,
}

fn record(tally: &Mutex<Tally>, outcome: Result<support::Response, String>) {
    let mut tally = tally.lock().unwrap();
    match outcome {
        Ok(response) if response.status() == 200 => {
            tally.ok += 1;
            let name = response.json()["name"].as_str().unwrap_or("?").to_string();
            *tally.by_backend.entry(name).or_default() += 1;
        }
        Ok(response) => {
            tally
                .failures
                .push(format!("status {}: {}", response.status(), response.body))
        }
        Err(error) => tally.failures.push(error),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeploys_under_load_without_failing_a_request() {
    let proxy = Proxy::start();
    let blue = Backend::start("blue").await;
    let green = Backend::start("green").await;
    proxy.deploy("web", &blue.target(), &[]).await;

    let stop = Arc::new(AtomicBool::new(false));
    let kept_alive = Arc::new(Mutex::new(Tally::default()));
    let fresh = Arc::new(Mutex::new(Tally::default()));
    let port = proxy.port();

    let mut loops = Vec::new();
    for _ in 0..2 {
        let (stop, tally) = (Arc::clone(&stop), Arc::clone(&kept_alive));
        let client = HttpClient::new(port);
        loops.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let outcome = client.try_send(Method::GET, HOST, "/", &[]).await;
                record(&tally, outcome);
            }
        }));
    }
    {
        let (stop, tally) = (Arc::clone(&stop), Arc::clone(&fresh));
        loops.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let outcome = try_send(port, Method::GET, HOST, "/", &[]).await;
                record(&tally, outcome);
            }
        }));
    }

    for round in 0..10 {
        let next = if round % 2 == 0 { &green } else { &blue };
        proxy
            .deploy("web", &next.target(), &["--drain-timeout=5s"])
            .await;
        let before = fresh.lock().unwrap().ok + kept_alive.lock().unwrap().ok;
        poll_until(
            Duration::from_secs(5),
            "traffic between redeploys",
            || async { fresh.lock().unwrap().ok + kept_alive.lock().unwrap().ok >= before + 10 },
        )
        .await;
    }
    stop.store(true, Ordering::SeqCst);
    for task in loops {
        task.await.expect("client loop");
    }

    for (kind, tally) in [("kept-alive", &kept_alive), ("fresh", &fresh)] {
        let tally = tally.lock().unwrap();
        assert_eq!(tally.failures, Vec::<String>::new(), "{kind} connections");
        assert!(
            tally.ok >= 50,
            "{kind} connections sent only {} requests",
            tally.ok
        );
        assert!(
            tally.by_backend.contains_key("blue") && tally.by_backend.contains_key("green"),
            "{kind} connections reached both targets: {:?}",
            tally.by_backend
        );
    }
    assert_eq!(get(port, HOST, "/").await.backend(), "blue");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_during_a_redeploy_completes() {
    let proxy = Proxy::start();
    let old = Backend::start("old").await;
    let new = Backend::start("new").await;
    proxy.deploy("web", &old.target(), &[]).await;

    let port = proxy.port();
    let slow = tokio::spawn(async move { get(port, HOST, "/slow?ms=1000").await });
    poll_until(
        Duration::from_secs(5),
        "the slow request to start",
        || async { old.in_flight() == 1 },
    )
    .await;
    proxy
        .deploy("web", &new.target(), &["--drain-timeout=10s"])
        .await;

    let response = slow.await.expect("join");
    assert_eq!(response.status(), 200, "{}", response.body);
    assert_eq!(response.json()["name"], "old");
    assert_eq!(response.json()["query"], "ms=1000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_still_running_after_the_drain_timeout_gets_504() {
    let proxy = Proxy::start();
    let old = Backend::start("old").await;
    let new = Backend::start("new").await;
    proxy.deploy("web", &old.target(), &[]).await;

    let port = proxy.port();
    let slow = tokio::spawn(async move { get(port, HOST, "/slow?ms=8000").await });
    poll_until(
        Duration::from_secs(5),
        "the slow request to start",
        || async { old.in_flight() == 1 },
    )
    .await;

    let started = Instant::now();
    proxy
        .deploy("web", &new.target(), &["--drain-timeout=500ms"])
        .await;
    let deploy_took = started.elapsed();
    assert!(
        deploy_took >= Duration::from_millis(450) && deploy_took < Duration::from_secs(4),
        "the deploy waited for the drain timeout and no longer: {deploy_took:?}"
    );

    let response = slow.await.expect("join");
    response.assert_error_page(504, "504 — Gateway Timeout");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the cancelled request ended with the drain, not with the upstream"
    );
    assert_eq!(get(port, HOST, "/").await.backend(), "new");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_still_streaming_after_the_drain_timeout_is_cut_off() {
    let proxy = Proxy::start();
    let old = Backend::start("old").await;
    let new = Backend::start("new").await;
    proxy.deploy("web", &old.target(), &[]).await;

    // One event at once, the next in ten seconds: only the drain can end the wait between.
    let port = proxy.port();
    let started = Instant::now();
    let streaming = tokio::spawn(async move {
        try_send(port, Method::GET, HOST, "/sse?events=2&ms=10000", &[]).await
    });
    poll_until(Duration::from_secs(5), "the stream to start", || async {
        old.count("/sse") == 1
    })
    .await;

    proxy
        .deploy("web", &new.target(), &["--drain-timeout=500ms"])
        .await;
    let outcome = streaming.await.expect("join");
    assert!(
        outcome.is_err(),
        "the stream was cut off at the drain deadline, not completed: {outcome:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the stream ended with the drain, not with the target: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redeploy_closes_upgraded_connections_at_once() {
    let proxy = Proxy::start();
    let old = Backend::start("old").await;
    let new = Backend::start("new").await;
    proxy.deploy("web", &old.target(), &[]).await;

    let mut socket = websocket_connect(proxy.port(), HOST, "/ws").await;
    websocket_echo(&mut socket, "hello through the proxy").await;
    assert_eq!(old.count("/ws"), 1);

    let target = new.target();
    let redeploy = proxy.deploy("web", &target, &["--drain-timeout=20s"]);
    assert_redeploy_closes_websocket(&mut socket, &old, redeploy).await;

    // New upgrades go to the new target.
    let mut socket = websocket_connect(proxy.port(), HOST, "/ws").await;
    websocket_echo(&mut socket, "again").await;
    assert_eq!(new.count("/ws"), 1);
}
