//! The D-Bus control interface `org.kamal.Proxy1` on a real (private) message bus.
//!
//! Each test starts its own `dbus-daemon` and a proxy that owns the bus name on it. The
//! interface must work for our CLI (`--bus <address>`), for `busctl` exactly as DESIGN.md
//! shows it, and for a raw client: an unknown option key or a wrongly typed value is an
//! `org.kamal.Proxy1.Error.InvalidArgs` naming the key, and a `List` is answered at once
//! while a `Deploy` of another service is blocked waiting for an unhealthy target.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use support::{assert_success_silent, busctl, get, poll_until, Backend, Proxy, TestBus};
use zbus::zvariant::Value;

const NAME: &str = "org.kamal.Proxy1";
const PATH: &str = "/org/kamal/Proxy1";

type Options<'a> = HashMap<&'a str, Value<'a>>;

async fn call_deploy(
    connection: &zbus::Connection,
    service: &str,
    targets: &[&str],
    options: Options<'_>,
) -> Result<(), zbus::Error> {
    connection
        .call_method(
            Some(NAME),
            PATH,
            Some(NAME),
            "Deploy",
            &(service, targets.to_vec(), options),
        )
        .await
        .map(|_| ())
}

type Row = (String, Vec<String>, Vec<String>, Vec<String>, String, bool);

async fn call_list(connection: &zbus::Connection) -> Vec<Row> {
    let reply = connection
        .call_method(Some(NAME), PATH, Some(NAME), "List", &())
        .await
        .expect("List succeeds");
    reply
        .body()
        .deserialize()
        .expect("List returns a(sasasassb)")
}

/// Asserts `result` is the D-Bus error `name` with exactly `message`.
fn assert_dbus_error(result: Result<(), zbus::Error>, name: &str, message: &str) {
    match result {
        Err(zbus::Error::MethodError(error_name, text, _)) => {
            assert_eq!(
                (error_name.as_str(), text.as_deref()),
                (name, Some(message))
            );
        }
        other => panic!("expected {name}: {message:?}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_deploys_over_the_bus() {
    let bus = TestBus::start();
    let proxy = Proxy::start_on_bus(&bus.address);
    let app = Backend::start("app").await;

    // The socket variable points nowhere, so only the bus can carry the call.
    let run = |args: &[&str]| {
        let mut command = proxy.command();
        command
            .env("KAMAL_PROXY_SOCKET", "/nonexistent/kamal-proxy.sock")
            .args(["--bus", &bus.address])
            .args(args);
        command.output().expect("run the CLI")
    };
    let target = format!("--target={}", app.target());
    let args = [
        "deploy",
        "web",
        target.as_str(),
        "--host=app.example.com",
        "--health-check-interval=100ms",
    ];
    let output = tokio::task::block_in_place(|| run(&args));
    assert_success_silent(&output, &args);
    assert_eq!(
        get(proxy.port(), "app.example.com", "/").await.backend(),
        "app"
    );

    let output = tokio::task::block_in_place(|| run(&["list", "--json"]));
    assert_eq!(output.status.code(), Some(0));
    let listed: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(
        listed,
        serde_json::json!([{
            "name": "web", "hosts": ["app.example.com"], "path_prefixes": ["/"],
            "targets": [app.target()], "state": "running", "tls": false
        }])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busctl_deploys_and_lists_as_documented() {
    let bus = TestBus::start();
    let proxy = Proxy::start_on_bus(&bus.address);
    let app = Backend::start("app").await;
    let target = app.target();

    let output = tokio::task::block_in_place(|| {
        busctl(
            &bus,
            &[
                "call",
                NAME,
                PATH,
                NAME,
                "Deploy",
                "sasa{sv}",
                "web",
                "1",
                &target,
                "1",
                "hosts",
                "as",
                "1",
                "app.example.com",
            ],
        )
    });
    assert_eq!(
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).as_ref()
        ),
        (Some(0), ""),
        "busctl Deploy"
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), "");
    assert_eq!(
        get(proxy.port(), "app.example.com", "/").await.backend(),
        "app"
    );

    let output = tokio::task::block_in_place(|| busctl(&bus, &["call", NAME, PATH, NAME, "List"]));
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!(
            "a(sasasassb) 1 \"web\" 1 \"app.example.com\" 1 \"/\" 1 \"{target}\" \"running\" false\n"
        )
    );

    let output = tokio::task::block_in_place(|| {
        busctl(&bus, &["get-property", NAME, PATH, NAME, "Version"])
    });
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!("s \"{}\"\n", env!("CARGO_PKG_VERSION"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busctl_reports_the_go_error_text() {
    let bus = TestBus::start();
    let _proxy = Proxy::start_on_bus(&bus.address);

    let output = tokio::task::block_in_place(|| {
        busctl(&bus, &["call", NAME, PATH, NAME, "Remove", "s", "ghost"])
    });
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "Call failed: service not found\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_option_keys_are_invalid_args_naming_the_key() {
    let bus = TestBus::start();
    let proxy = Proxy::start_on_bus(&bus.address);
    let app = Backend::start("app").await;
    let connection = bus.connect().await;
    let target = app.target();

    let options = Options::from([("colour", Value::from("blue"))]);
    assert_dbus_error(
        call_deploy(&connection, "web", &[&target], options).await,
        "org.kamal.Proxy1.Error.InvalidArgs",
        "unknown option \"colour\"",
    );
    // A duration without its unit suffix is an unknown key, too.
    let options = Options::from([("deploy_timeout", Value::U64(1_000_000))]);
    assert_dbus_error(
        call_deploy(&connection, "web", &[&target], options).await,
        "org.kamal.Proxy1.Error.InvalidArgs",
        "unknown option \"deploy_timeout\"",
    );
    assert_eq!(call_list(&connection).await, Vec::<Row>::new());
    assert_eq!(proxy.list_json().await, serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrongly_typed_options_are_invalid_args_naming_the_key() {
    let bus = TestBus::start();
    let _proxy = Proxy::start_on_bus(&bus.address);
    let app = Backend::start("app").await;
    let connection = bus.connect().await;
    let target = app.target();

    let options = Options::from([("tls", Value::from("yes"))]);
    assert_dbus_error(
        call_deploy(&connection, "web", &[&target], options).await,
        "org.kamal.Proxy1.Error.InvalidArgs",
        "option \"tls\" must have D-Bus type 'b', not 's'",
    );
    let options = Options::from([("deploy_timeout_usec", Value::from("30s"))]);
    assert_dbus_error(
        call_deploy(&connection, "web", &[&target], options).await,
        "org.kamal.Proxy1.Error.InvalidArgs",
        "option \"deploy_timeout_usec\" must have D-Bus type 't', not 's'",
    );
    let options = Options::from([("hosts", Value::from("app.example.com"))]);
    assert_dbus_error(
        call_deploy(&connection, "web", &[&target], options).await,
        "org.kamal.Proxy1.Error.InvalidArgs",
        "option \"hosts\" must have D-Bus type 'as', not 's'",
    );
    let pause = connection
        .call_method(
            Some(NAME),
            PATH,
            Some(NAME),
            "Pause",
            &("web", Options::from([("max_pause_usec", Value::I32(5))])),
        )
        .await
        .map(|_| ());
    assert_dbus_error(
        pause,
        "org.kamal.Proxy1.Error.InvalidArgs",
        "option \"max_pause_usec\" must have D-Bus type 't', not 'i'",
    );
    assert_eq!(call_list(&connection).await, Vec::<Row>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_their_names() {
    let bus = TestBus::start();
    let _proxy = Proxy::start_on_bus(&bus.address);
    let app = Backend::start("app").await;
    let other = Backend::start("other").await;
    let connection = bus.connect().await;

    let remove = connection
        .call_method(Some(NAME), PATH, Some(NAME), "Remove", &("ghost",))
        .await
        .map(|_| ());
    assert_dbus_error(
        remove,
        "org.kamal.Proxy1.Error.ServiceNotFound",
        "service not found",
    );

    let fast = || {
        Options::from([
            ("hosts", Value::from(vec!["app.example.com"])),
            ("health_check_interval_usec", Value::U64(100_000)),
        ])
    };
    call_deploy(&connection, "web", &[&app.target()], fast())
        .await
        .expect("first deploy");
    assert_dbus_error(
        call_deploy(&connection, "other", &[&other.target()], fast()).await,
        "org.kamal.Proxy1.Error.HostConflict",
        "host settings conflict with another service",
    );

    other.set_healthy(false);
    let mut options = fast();
    options.insert("deploy_timeout_usec", Value::U64(300_000));
    assert_dbus_error(
        call_deploy(&connection, "web", &[&other.target()], options).await,
        "org.kamal.Proxy1.Error.TargetUnhealthy",
        "target failed to become healthy within configured timeout (300ms)",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_answers_at_once_while_another_deploy_is_blocked() {
    let bus = TestBus::start();
    let proxy = Proxy::start_on_bus(&bus.address);
    let running = Backend::start("running").await;
    let waiting = Backend::start("waiting").await;
    let connection = bus.connect().await;
    call_deploy(
        &connection,
        "running",
        &[&running.target()],
        Options::from([("hosts", Value::from(vec!["running.example.com"]))]),
    )
    .await
    .expect("deploy running");

    waiting.set_healthy(false);
    let blocked = {
        let connection = connection.clone();
        let target = waiting.target();
        tokio::spawn(async move {
            let options = Options::from([
                ("hosts", Value::from(vec!["waiting.example.com"])),
                ("health_check_interval_usec", Value::U64(100_000)),
                ("deploy_timeout_usec", Value::U64(20_000_000)),
            ]);
            call_deploy(&connection, "waiting", &[&target], options).await
        })
    };
    poll_until(
        Duration::from_secs(5),
        "the blocked deploy to start checking",
        || async { waiting.count("/up") > 0 },
    )
    .await;

    let started = Instant::now();
    let output = tokio::task::block_in_place(|| busctl(&bus, &["call", NAME, PATH, NAME, "List"]));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "List waited {:?} behind a deploy",
        started.elapsed()
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!(
            "a(sasasassb) 1 \"running\" 1 \"running.example.com\" 1 \"/\" 1 \"{}\" \"running\" false\n",
            running.target()
        )
    );
    let started = Instant::now();
    assert_eq!(call_list(&connection).await.len(), 1);
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(
        get(proxy.port(), "running.example.com", "/")
            .await
            .backend(),
        "running"
    );
    assert!(
        !blocked.is_finished(),
        "the deploy is still waiting for health"
    );

    waiting.set_healthy(true);
    blocked
        .await
        .expect("join")
        .expect("the blocked deploy succeeds once healthy");
    assert_eq!(call_list(&connection).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_calls_check_their_options_and_name_their_errors() {
    let bus = TestBus::start();
    let proxy = Proxy::start_on_bus(&bus.address);
    let app = Backend::start("app").await;
    let next = Backend::start("next").await;
    let connection = bus.connect().await;
    proxy.deploy("web", &app.target(), &[]).await;
    let rollout_set = |options: Options<'static>| {
        let connection = connection.clone();
        async move {
            connection
                .call_method(
                    Some(NAME),
                    PATH,
                    Some(NAME),
                    "RolloutSet",
                    &("web", options),
                )
                .await
                .map(|_| ())
        }
    };

    assert_dbus_error(
        rollout_set(Options::from([("percent", Value::U32(5))])).await,
        "org.kamal.Proxy1.Error.InvalidArgs",
        "option \"percent\" must have D-Bus type 'i', not 'u'",
    );
    assert_dbus_error(
        rollout_set(Options::from([("allowlist", Value::from("42"))])).await,
        "org.kamal.Proxy1.Error.InvalidArgs",
        "option \"allowlist\" must have D-Bus type 'as', not 's'",
    );
    assert_dbus_error(
        rollout_set(Options::from([("percent", Value::I32(5))])).await,
        "org.kamal.Proxy1.Error.RolloutNotSet",
        "rollout target not set",
    );

    // busctl, as an operator would type it.
    let deployed = tokio::task::block_in_place(|| {
        busctl(
            &bus,
            &[
                "call",
                "--timeout=30",
                NAME,
                PATH,
                NAME,
                "RolloutDeploy",
                "sasa{sv}",
                "web",
                "1",
                &next.target(),
                "1",
                "deploy_timeout_usec",
                "t",
                "10000000",
            ],
        )
    });
    assert_success_silent(&deployed, &["busctl RolloutDeploy"]);
    let set = tokio::task::block_in_place(|| {
        busctl(
            &bus,
            &[
                "call",
                NAME,
                PATH,
                NAME,
                "RolloutSet",
                "sa{sv}",
                "web",
                "1",
                "allowlist",
                "as",
                "1",
                "7",
            ],
        )
    });
    assert_success_silent(&set, &["busctl RolloutSet"]);
    let cookie = [("cookie", "kamal-rollout=7")];
    let routed = support::send(proxy.port(), http::Method::GET, "a", "/", &cookie).await;
    assert_eq!(routed.backend(), "next");

    assert_dbus_error(
        rollout_set(Options::from([("percent", Value::I32(-1))])).await,
        "org.kamal.Proxy1.Error.InvalidOptions",
        "percent must be between 0 and 100, not -1",
    );
    let stop = tokio::task::block_in_place(|| {
        busctl(&bus, &["call", NAME, PATH, NAME, "RolloutStop", "s", "web"])
    });
    assert_success_silent(&stop, &["busctl RolloutStop"]);
    let routed = support::send(proxy.port(), http::Method::GET, "a", "/", &cookie).await;
    assert_eq!(routed.backend(), "app");
}
