//! The deploy lock: `kamal-proxy lock acquire|release|status` and `AcquireLock`,
//! `ReleaseLock`, `LockStatus` on the bus.
//!
//! The holder is the calling user as the transport reports it; these tests run as root, so
//! it is `root` over the socket and over the bus alike. A held lock refuses a second acquire
//! at once with `org.kamal.Proxy1.Error.Locked`, and survives a daemon restart.

mod support;

use support::{assert_error, assert_error_naming, busctl, Proxy, TestBus};

const NAME: &str = "org.kamal.Proxy1";
const PATH: &str = "/org/kamal/Proxy1";

async fn status(proxy: &Proxy, args: &[&str]) -> String {
    let mut argv = vec!["lock", "status"];
    argv.extend_from_slice(args);
    let output = proxy.cli(&argv).await;
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 status")
}

/// Asserts `Locked by: root at <ISO 8601 UTC>\nMessage: <message>\n`.
fn assert_held_by_root(text: &str, message: &str) {
    let (first, second) = text.split_once('\n').expect("two lines");
    let time = first
        .strip_prefix("Locked by: root at ")
        .unwrap_or_else(|| panic!("{text:?}"));
    assert!(
        time.len() == 20 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
        "{time:?}"
    );
    assert_eq!(second, format!("Message: {message}\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquires_reports_refuses_and_releases_the_host_lock() {
    let proxy = Proxy::start();
    assert_eq!(status(&proxy, &[]).await, "There is no deploy lock\n");

    proxy
        .cli_ok(&["lock", "acquire", "-m", "db migration"])
        .await;
    assert_held_by_root(&status(&proxy, &[]).await, "db migration");

    let args = ["lock", "acquire", "--message", "deploy"];
    let output = proxy.cli(&args).await;
    assert_error_naming(&output, &args, &["held by root since ", "db migration"]);

    proxy.cli_ok(&["lock", "release"]).await;
    assert_eq!(status(&proxy, &[]).await, "There is no deploy lock\n");
    // Unconditional, as in Kamal: releasing a free lock is fine.
    proxy.cli_ok(&["lock", "release"]).await;
    proxy.cli_ok(&["lock", "acquire", "-m", "again"]).await;
    let acquired = proxy
        .wait_for_log("Deploy lock acquired", |entry| {
            entry["msg"] == "Deploy lock acquired" && entry["reason"] == "again"
        })
        .await;
    assert_eq!(acquired["holder"], "root");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_service_locks_apart_and_lists_them() {
    let proxy = Proxy::start();
    let app = support::Backend::start("app").await;
    proxy.deploy("web", &app.target(), &[]).await;

    proxy
        .cli_ok(&["lock", "acquire", "-m", "web only", "--service", "web"])
        .await;
    assert_eq!(status(&proxy, &[]).await, "There is no deploy lock\n");
    assert_held_by_root(&status(&proxy, &["--service=web"]).await, "web only");
    proxy.cli_ok(&["lock", "acquire", "-m", "host"]).await;

    let output = proxy.cli(&["list"]).await;
    let text = String::from_utf8_lossy(&output.stdout);
    let after_table: Vec<&str> = text.lines().skip(2).collect();
    assert_eq!(after_table.len(), 2, "{text}");
    assert!(
        after_table[0].starts_with("Deploy lock: Locked by: root at ")
            && after_table[0].ends_with(", Message: host"),
        "{text}"
    );
    assert!(
        after_table[1].starts_with("Deploy lock on web: Locked by: root at ")
            && after_table[1].ends_with(", Message: web only"),
        "{text}"
    );
    // JSON output is unchanged by locks.
    assert_eq!(proxy.list_json().await.as_array().unwrap().len(), 1);

    proxy.cli_ok(&["lock", "release", "--service=web"]).await;
    assert_eq!(
        status(&proxy, &["--service", "web"]).await,
        "There is no deploy lock\n"
    );
    assert_held_by_root(&status(&proxy, &[]).await, "host");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_a_restart() {
    let mut proxy = Proxy::start();
    proxy.cli_ok(&["lock", "acquire", "-m", "crash test"]).await;
    let before = status(&proxy, &[]).await;
    proxy.restart();
    assert_eq!(status(&proxy, &[]).await, before);
    assert!(proxy.state_dir().join("kamal-proxy.locks").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_bad_lock_arguments() {
    let proxy = Proxy::start();
    let output = proxy.cli(&["lock", "acquire"]).await;
    assert_error_naming(&output, &["lock", "acquire"], &["--message"]);
    let args = ["lock", "acquire", "-m", " "];
    assert_error(&proxy.cli(&args).await, &args, "a lock message is required");
    let args = ["lock", "status", "--service="];
    assert_error_naming(&proxy.cli(&args).await, &args, &["must not be empty"]);
    let args = ["lock", "status", "--service=a b"];
    assert_error_naming(&proxy.cli(&args).await, &args, &["invalid service name"]);
    let args = ["lock", "steal"];
    assert_error_naming(&proxy.cli(&args).await, &args, &["steal"]);
    let args = ["lock", "release", "web"];
    assert_error_naming(&proxy.cli(&args).await, &args, &["web"]);
}

fn dbus_error(result: zbus::Result<zbus::Message>) -> (String, String) {
    match result {
        Err(zbus::Error::MethodError(name, text, _)) => {
            (name.to_string(), text.unwrap_or_default())
        }
        other => panic!("expected a D-Bus error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_over_the_bus_with_busctl_and_names_its_errors() {
    let bus = TestBus::start();
    let proxy = Proxy::start_on_bus(&bus.address);

    let call = |args: &[&str]| {
        let mut argv = vec!["call", NAME, PATH, NAME];
        argv.extend_from_slice(args);
        tokio::task::block_in_place(|| busctl(&bus, &argv))
    };
    let output = call(&["AcquireLock", "ss", "", "from busctl"]);
    assert!(output.status.success(), "{output:?}");
    let output = call(&["LockStatus", "s", ""]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.starts_with("bsst true \"root\" \"from busctl\" "),
        "{text}"
    );
    let since: u64 = text.trim().rsplit(' ').next().unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    assert!(since <= now && now - since < 60_000_000, "{since} vs {now}");

    let connection = bus.connect().await;
    let (name, text) = dbus_error(
        connection
            .call_method(Some(NAME), PATH, Some(NAME), "AcquireLock", &("", "second"))
            .await,
    );
    assert_eq!(name, "org.kamal.Proxy1.Error.Locked");
    assert!(
        text.starts_with("the deploy lock is held by root since ")
            && text.ends_with(": from busctl"),
        "{text}"
    );

    let (name, text) = dbus_error(
        connection
            .call_method(Some(NAME), PATH, Some(NAME), "AcquireLock", &("a b", "x"))
            .await,
    );
    assert_eq!(name, "org.kamal.Proxy1.Error.InvalidOptions");
    assert!(text.contains("invalid service name"), "{text}");
    let (name, _) = dbus_error(
        connection
            .call_method(Some(NAME), PATH, Some(NAME), "AcquireLock", &("web", ""))
            .await,
    );
    assert_eq!(name, "org.kamal.Proxy1.Error.InvalidOptions");
    // A wrong signature is refused by zbus before the interface sees it.
    let (_, text) = dbus_error(
        connection
            .call_method(Some(NAME), PATH, Some(NAME), "LockStatus", &(42u32,))
            .await,
    );
    assert!(text.contains("Signature mismatch"), "{text}");
    let (name, _) = dbus_error(
        connection
            .call_method(Some(NAME), PATH, Some(NAME), "ReleaseLock", &("\n",))
            .await,
    );
    assert_eq!(name, "org.kamal.Proxy1.Error.InvalidOptions");

    let output = call(&["ReleaseLock", "s", ""]);
    assert!(output.status.success(), "{output:?}");
    let output = call(&["LockStatus", "s", ""]);
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "bsst false \"\" \"\" 0\n"
    );
    let released = proxy
        .wait_for_log("Deploy lock released", |entry| {
            entry["msg"] == "Deploy lock released"
        })
        .await;
    assert_eq!(
        (&released["released_by"], &released["holder"]),
        (&"root".into(), &"root".into())
    );
}
