//! Files a deploy names travel as contents, and the daemon keeps its own copies.
//!
//! Kamal's `--tls-certificate-path`, `--tls-private-key-path` and `--error-pages` name files
//! inside its container, which are gone (or were never visible) by the time the host daemon
//! restarts. So the CLI sends the bytes; the daemon writes copies under its state directory
//! (the key 0600), names them in the state file and serves them after a restart with the
//! originals deleted. A file the CLI cannot read is refused before any call, and contents
//! the daemon refuses leave the service and its copies as they were. Redeploys and removals
//! clean up copies no longer named. The path keys still work for a raw D-Bus caller, and a
//! file sent both ways is `InvalidArgs` naming both keys.

mod support;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::Value;
use support::tls::{roots, Issued, TestCa, TlsClient};
use support::{assert_error_naming, get, Backend, Proxy};
use zbus::zvariant::Value as DBusValue;

const HOST: &str = "a.example.com";

fn client<'a>(proxy: &Proxy, ca: &TestCa) -> TlsClient<'a> {
    TlsClient {
        port: proxy.https_port(),
        sni: Some(HOST),
        verify_as: HOST,
        roots: roots(&ca.pem),
        alpn: &[b"http/1.1"],
    }
}

/// The saved `options` of `service`, as the state file holds them.
fn saved_options(proxy: &Proxy, service: &str) -> Value {
    let state: Value = serde_json::from_slice(&std::fs::read(proxy.state_file()).unwrap())
        .expect("the state file is JSON");
    state
        .as_array()
        .expect("the state file holds an array")
        .iter()
        .find(|saved| saved["name"] == service)
        .unwrap_or_else(|| panic!("no {service} in {state}"))["options"]
        .clone()
}

fn saved_path(proxy: &Proxy, service: &str, key: &str) -> PathBuf {
    PathBuf::from(saved_options(proxy, service)[key].as_str().expect("a path"))
}

/// The generation directories the daemon keeps for `service`.
fn generations(proxy: &Proxy, service: &str) -> Vec<PathBuf> {
    let directory = proxy.state_dir().join("files").join(service);
    match std::fs::read_dir(directory) {
        Ok(entries) => entries.map(|entry| entry.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// A directory of error pages, as Kamal places `error_pages/<version>`.
fn pages_dir(page_503: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("503.html"), page_503).unwrap();
    dir
}

fn flag(name: &str, path: &Path) -> String {
    format!("--{name}={}", path.display())
}

async fn deploy_tls(proxy: &Proxy, app: &Backend, files: &Path, issued: &Issued) {
    let (cert, key) = issued.write(files, "web");
    let (cert, key) = (
        flag("tls-certificate-path", &cert),
        flag("tls-private-key-path", &key),
    );
    let host = format!("--host={HOST}");
    proxy
        .deploy("web", &app.target(), &["--tls", &host, &cert, &key])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_the_certificate_after_its_files_are_deleted_and_the_daemon_restarted() {
    let mut proxy = Proxy::start();
    let app = Backend::start("app").await;
    let ca = TestCa::new();
    let container = tempfile::tempdir().unwrap();
    deploy_tls(&proxy, &app, container.path(), &ca.issue(&[HOST])).await;

    let key_copy = saved_path(&proxy, "web", "tls_private_key_path");
    assert!(
        key_copy.starts_with(proxy.state_dir().join("files/web")),
        "{key_copy:?}"
    );
    let mode = std::fs::metadata(&key_copy).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the key copy is private");
    drop(container);

    proxy.restart();
    let exchange = client(&proxy, &ca).get(HOST, "/").await.unwrap();
    assert_eq!(exchange.response.backend(), "app");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_the_custom_page_after_the_error_pages_directory_is_deleted_and_the_daemon_restarted(
) {
    let mut proxy = Proxy::start();
    let app = Backend::start("app").await;
    let pages = pages_dir("<p>Custom: {{ .Message }}</p>");
    let error_pages = flag("error-pages", pages.path());
    proxy
        .deploy("app-web", &app.target(), &[&error_pages])
        .await;
    drop(pages);

    proxy.restart();
    proxy
        .cli_ok(&[
            "stop",
            "app-web",
            "--drain-timeout=1s",
            "--message=Back soon",
        ])
        .await;
    let page = get(proxy.port(), "example.com", "/").await;
    assert_eq!(page.status(), 503);
    assert_eq!(page.body, "<p>Custom: Back soon</p>");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_or_refused_file_leaves_the_service_and_its_copies_as_they_were() {
    let proxy = Proxy::start();
    let (app, next) = (Backend::start("app").await, Backend::start("next").await);
    let ca = TestCa::new();
    let container = tempfile::tempdir().unwrap();
    deploy_tls(&proxy, &app, container.path(), &ca.issue(&[HOST])).await;
    let state_before = std::fs::read(proxy.state_file()).unwrap();
    let copies_before = generations(&proxy, "web");

    let target = format!("--target={}", next.target());
    let host = format!("--host={HOST}");
    let cert = flag(
        "tls-certificate-path",
        &container.path().join("web-cert.pem"),
    );
    let missing = container.path().join("gone.pem");
    let missing_key = flag("tls-private-key-path", &missing);
    let args = [
        "deploy",
        "web",
        &target,
        "--tls",
        &host,
        &cert,
        &missing_key,
    ];
    let output = proxy.cli(&args).await;
    assert_error_naming(
        &output,
        &args,
        &[
            "unable to load certificate",
            "--tls-private-key-path",
            &missing.display().to_string(),
        ],
    );
    let empty_pages = tempfile::tempdir().unwrap();
    let no_pages = flag("error-pages", empty_pages.path());
    let args = ["deploy", "web", &target, &no_pages];
    assert_error_naming(
        &proxy.cli(&args).await,
        &args,
        &["--error-pages", "no *.html pages"],
    );
    let (_, other_key) = ca.issue(&[HOST]).write(container.path(), "other");
    let other_key = flag("tls-private-key-path", &other_key);
    proxy
        .cli_err(
            &["deploy", "web", &target, "--tls", &host, &cert, &other_key],
            "unable to load certificate: the private key does not match the certificate",
        )
        .await;

    let deploys = proxy
        .logs()
        .into_iter()
        .filter(|entry| entry["msg"] == "Deploying")
        .count();
    assert_eq!(deploys, 1, "no refused deploy got as far as deploying");
    assert_eq!(std::fs::read(proxy.state_file()).unwrap(), state_before);
    assert_eq!(generations(&proxy, "web"), copies_before);
    let exchange = client(&proxy, &ca).get(HOST, "/").await.unwrap();
    assert_eq!(exchange.response.backend(), "app");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_only_the_copies_the_state_names_across_redeploys_and_removal() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    let (first, second) = (pages_dir("first"), pages_dir("second"));
    proxy
        .deploy("web", &app.target(), &[&flag("error-pages", first.path())])
        .await;
    proxy
        .deploy("web", &app.target(), &[&flag("error-pages", second.path())])
        .await;

    let pages = saved_path(&proxy, "web", "error_page_path");
    assert_eq!(generations(&proxy, "web"), [pages.parent().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(pages.join("503.html")).unwrap(),
        "second"
    );
    proxy.deploy("web", &app.target(), &[]).await;
    assert_eq!(generations(&proxy, "web"), Vec::<PathBuf>::new());
    proxy
        .deploy("web", &app.target(), &[&flag("error-pages", first.path())])
        .await;
    proxy.cli_ok(&["remove", "web"]).await;
    assert!(!proxy.state_dir().join("files/web").exists());
}

/// A raw `Deploy` over the control socket, as `busctl` would make it.
async fn call_deploy(
    proxy: &Proxy,
    target: &str,
    options: HashMap<&str, DBusValue<'_>>,
) -> Result<(), zbus::Error> {
    let stream = tokio::net::UnixStream::connect(proxy.socket_path())
        .await
        .expect("connect to the control socket");
    let connection = zbus::connection::Builder::unix_stream(stream)
        .p2p()
        .build()
        .await
        .expect("p2p connection");
    connection
        .call_method(
            Some("org.kamal.Proxy1"),
            "/org/kamal/Proxy1",
            Some("org.kamal.Proxy1"),
            "Deploy",
            &("web", vec![target], options),
        )
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn still_reads_paths_sent_by_hand_and_refuses_a_file_sent_both_ways() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    let ca = TestCa::new();
    let readable = tempfile::tempdir().unwrap();
    let (cert, key) = ca.issue(&[HOST]).write(readable.path(), "web");
    let path = |path: &Path| DBusValue::from(path.display().to_string());
    let by_path = HashMap::from([
        ("tls", DBusValue::from(true)),
        ("hosts", DBusValue::from(vec![HOST.to_string()])),
        ("tls_certificate_path", path(&cert)),
        ("tls_private_key_path", path(&key)),
    ]);
    call_deploy(&proxy, &app.target(), by_path).await.unwrap();
    assert_eq!(
        saved_path(&proxy, "web", "tls_certificate_path"),
        cert,
        "a path the daemon reads is kept as given, as in Go"
    );
    let exchange = client(&proxy, &ca).get(HOST, "/").await.unwrap();
    assert_eq!(exchange.response.backend(), "app");

    let both = HashMap::from([
        ("tls", DBusValue::from(true)),
        ("hosts", DBusValue::from(vec![HOST.to_string()])),
        ("tls_certificate_path", path(&cert)),
        ("tls_private_key_path", path(&key)),
        (
            "tls_certificate_pem",
            DBusValue::from(std::fs::read(&cert).unwrap()),
        ),
    ]);
    match call_deploy(&proxy, &app.target(), both).await {
        Err(zbus::Error::MethodError(name, Some(text), _)) => {
            assert_eq!(name.as_str(), "org.kamal.Proxy1.Error.InvalidArgs");
            assert!(
                text.contains("\"tls_certificate_path\" and \"tls_certificate_pem\""),
                "{text}"
            );
        }
        other => panic!("expected InvalidArgs, got {other:?}"),
    }
}
