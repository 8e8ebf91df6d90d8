//! The D-Bus signals `ServiceChanged(s service, s event)` and
//! `TargetHealthChanged(s service, s target, s state)`: seen by a subscriber on the bus and
//! by a peer on the control socket, as deploys happen and a backend's `/up` flips.

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use support::{Backend, Proxy, TestBus};
use zbus::{MatchRule, MessageStream};

const INTERFACE: &str = "org.kamal.Proxy1";

/// Waits for the signal `member` whose string arguments are `args`; panics after 20 s.
async fn expect_signal(stream: &mut MessageStream, member: &str, args: &[&str]) {
    let wanted: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let mut seen = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(Ok(message)) = stream.next().await {
            let header = message.header();
            if header.message_type() != zbus::message::Type::Signal
                || header.interface().map(|i| i.as_str()) != Some(INTERFACE)
            {
                continue;
            }
            let name = header.member().map(|m| m.to_string()).unwrap_or_default();
            let body: Vec<String> = match name.as_str() {
                "ServiceChanged" => {
                    let (a, b): (String, String) = message.body().deserialize().unwrap();
                    vec![a, b]
                }
                "TargetHealthChanged" => {
                    let (a, b, c): (String, String, String) = message.body().deserialize().unwrap();
                    vec![a, b, c]
                }
                _ => continue,
            };
            if name == member && body == wanted {
                return true;
            }
            seen.push(format!("{name}{body:?}"));
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "no {member}{wanted:?}; saw {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announces_deploys_and_health_flips_on_the_bus() {
    let bus = TestBus::start();
    let proxy = Proxy::start_on_bus(&bus.address);
    let a = Backend::start("a").await;
    let b = Backend::start("b").await;

    let connection = bus.connect().await;
    let rule = MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .interface(INTERFACE)
        .unwrap()
        .build();
    let mut stream = MessageStream::for_match_rule(rule, &connection, Some(64))
        .await
        .unwrap();

    let second = format!("--target={}", b.target());
    proxy.deploy("web", &a.target(), &[&second]).await;
    expect_signal(
        &mut stream,
        "TargetHealthChanged",
        &["web", &b.target(), "healthy"],
    )
    .await;
    expect_signal(&mut stream, "ServiceChanged", &["web", "deployed"]).await;

    b.set_healthy(false);
    expect_signal(
        &mut stream,
        "TargetHealthChanged",
        &["web", &b.target(), "unhealthy"],
    )
    .await;
    b.set_healthy(true);
    expect_signal(
        &mut stream,
        "TargetHealthChanged",
        &["web", &b.target(), "healthy"],
    )
    .await;

    for (command, event) in [
        ("pause", "paused"),
        ("resume", "resumed"),
        ("stop", "stopped"),
        ("remove", "removed"),
    ] {
        proxy.cli_ok(&[command, "web"]).await;
        expect_signal(&mut stream, "ServiceChanged", &["web", event]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_signals_to_peers_on_the_control_socket() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    let stream = tokio::net::UnixStream::connect(proxy.socket_path())
        .await
        .unwrap();
    let connection = zbus::connection::Builder::unix_stream(stream)
        .p2p()
        .build()
        .await
        .unwrap();
    let mut messages = MessageStream::from(&connection);

    proxy.deploy("web", &app.target(), &[]).await;
    expect_signal(&mut messages, "ServiceChanged", &["web", "deployed"]).await;
}
