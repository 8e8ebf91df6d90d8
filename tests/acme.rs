//! Automatic certificates against a real ACME CA (Debian's `pebble`).
//!
//! Each test runs its own proxy and a pebble validating on that proxy's ports. A deploy returns at once and the certificate follows in the background, through
//! HTTP-01 or TLS-ALPN-01; it is then served for its SNI with pebble's chain. A restart serves
//! the cached certificate without the CA; a short-lived certificate is renewed; external
//! account binding works; a failed order is shown by `list` with the CA's reason while the
//! last certificate issued stays in service; on-demand names are issued once approved, by
//! an external endpoint or by the service's own application (`--tls-on-demand-url=/path`).

mod support;

use std::time::Duration;

use support::pebble::{Pebble, PebbleOptions, EAB_HMAC_KEY, EAB_KID};
use support::tls::{roots, TlsClient};
use support::{Backend, Proxy};

const HOST: &str = "a.example.com";

/// A proxy, and pebble validating on its ports.
fn start(challenges: &str, options: PebbleOptions) -> (Pebble, Proxy) {
    let mut pebble = Pebble::new(options);
    let proxy = Proxy::start_with_run_args(&[
        &format!("--acme-ca-cert={}", pebble.ca_cert_path().display()),
        &format!("--acme-challenges={challenges}"),
    ]);
    pebble.start(proxy.port(), proxy.https_port());
    (pebble, proxy)
}

async fn deploy(proxy: &Proxy, pebble: &Pebble, app: &Backend, extra: &[&str]) {
    let directory = format!("--tls-acme-directory={}", pebble.directory_url());
    let host = format!("--host={HOST}");
    let mut args = vec!["--tls", host.as_str(), directory.as_str()];
    args.extend_from_slice(extra);
    proxy.deploy("web", &app.target(), &args).await;
}

fn obtained(proxy: &Proxy) -> usize {
    proxy
        .logs()
        .iter()
        .filter(|e| e["msg"] == "Obtained TLS certificate" && e["host"] == HOST)
        .count()
}

async fn wait_for_certificates(proxy: &Proxy, count: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    while obtained(proxy) < count {
        if std::time::Instant::now() > deadline {
            let failures: Vec<_> = proxy
                .logs()
                .into_iter()
                .filter(|e| e["level"] == "ERROR")
                .collect();
            panic!("no certificate #{count} within 40s; errors: {failures:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The leaf of the one certificate in the proxy's ACME cache (`certs/<directory hash>/<host>`).
fn cached_certificate(proxy: &Proxy) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    let certs = proxy.state_dir().join("certs");
    let directory = std::fs::read_dir(&certs).unwrap().next().unwrap().unwrap();
    let pem = std::fs::read(directory.path().join(HOST)).unwrap();
    let leaf = rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
        .next()
        .unwrap()
        .unwrap();
    leaf.as_ref().to_vec()
}

/// A client for [`HOST`] trusting only pebble's issuing root.
async fn client<'a>(proxy: &Proxy, pebble: &Pebble) -> TlsClient<'a> {
    client_for(proxy, pebble, HOST).await
}

/// A service on `app` with a certificate pebble issued over HTTP-01, valid for
/// `validity_seconds`, and a client that trusts pebble.
async fn issued_for(validity_seconds: u64) -> (Pebble, Proxy, Backend, TlsClient<'static>) {
    let options = PebbleOptions {
        validity_seconds: Some(validity_seconds),
        ..PebbleOptions::default()
    };
    let (pebble, proxy) = start("http-01", options);
    let app = Backend::start("app").await;
    deploy(&proxy, &pebble, &app, &[]).await;
    wait_for_certificates(&proxy, 1).await;
    let client = client(&proxy, &pebble).await;
    (pebble, proxy, app, client)
}

/// A client for `host` trusting only pebble's issuing root.
async fn client_for<'a>(proxy: &Proxy, pebble: &Pebble, host: &'a str) -> TlsClient<'a> {
    TlsClient {
        port: proxy.https_port(),
        sni: Some(host),
        verify_as: host,
        roots: roots(&pebble.issuing_root().await),
        alpn: &[b"h2", b"http/1.1"],
    }
}

/// The log line of the on-demand check that denied `host`.
async fn denial(proxy: &Proxy, host: &str) -> serde_json::Value {
    proxy
        .wait_for_log(&format!("the denial of {host}"), |e| {
            e["msg"] == "TLS on-demand check denied host" && e["host"] == host
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issues_through_http01_and_serves_the_cached_certificate_after_a_restart() {
    let (mut pebble, mut proxy) = start("http-01", PebbleOptions::default());
    let app = Backend::start("app").await;
    deploy(&proxy, &pebble, &app, &[]).await;
    wait_for_certificates(&proxy, 1).await;
    let mut client = client(&proxy, &pebble).await;
    let exchange = client.get(HOST, "/").await.unwrap();
    assert_eq!(exchange.response.backend(), "app");
    assert_eq!(exchange.alpn.as_deref(), Some(&b"h2"[..]));
    let served = exchange.peer_chain[0].clone();

    pebble.stop();
    proxy.restart();
    client.port = proxy.https_port();
    let after = client.get(HOST, "/").await.unwrap();
    assert_eq!(after.response.backend(), "app");
    assert_eq!(
        after.peer_chain[0], served,
        "the cached certificate is served"
    );
    assert_eq!(obtained(&proxy), 1, "no new order was placed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issues_through_tls_alpn01() {
    let (pebble, proxy) = start("tls-alpn-01", PebbleOptions::default());
    let app = Backend::start("app").await;
    deploy(&proxy, &pebble, &app, &[]).await;
    wait_for_certificates(&proxy, 1).await;
    let exchange = client(&proxy, &pebble).await.get(HOST, "/").await.unwrap();
    assert_eq!(exchange.response.backend(), "app");
    let status = proxy.cli(&["list"]).await;
    assert!(!String::from_utf8_lossy(&status.stdout).contains("failed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renews_a_short_lived_certificate_before_it_expires() {
    let (_pebble, proxy, _app, client) = issued_for(9).await;
    let first = client.get(HOST, "/").await.unwrap().peer_chain[0].clone();
    wait_for_certificates(&proxy, 2).await;
    let second = client.get(HOST, "/").await.unwrap().peer_chain[0].clone();
    assert_ne!(first, second, "a renewed certificate is served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_renewal_is_listed_with_the_reason_and_keeps_the_old_certificate() {
    let (pebble, proxy, _app, client) = issued_for(30).await;

    // Validation now goes where nothing listens; a renewal (from 20 s) fails. The margin
    // covers a loaded CI machine running every test file at once.
    pebble.resolve(HOST, "127.0.0.2").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let listing = loop {
        let listing = String::from_utf8_lossy(&proxy.cli(&["list"]).await.stdout).into_owned();
        if listing.contains("failed") {
            break listing;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no failure listed: {listing}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        listing.contains(&format!("TLS web: certificate for {HOST} failed: ")),
        "{listing}"
    );
    assert!(listing.contains("127.0.0.2"), "the CA's reason: {listing}");
    let still = client.get(HOST, "/").await.unwrap();
    assert_eq!(
        still.peer_chain[0],
        cached_certificate(&proxy),
        "the last certificate issued stays in service"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_with_external_account_binding() {
    let options = PebbleOptions {
        eab: true,
        ..PebbleOptions::default()
    };
    let (pebble, proxy) = start("http-01", options);
    let app = Backend::start("app").await;
    let kid = format!("--tls-acme-eab-kid={EAB_KID}");
    let hmac = format!("--tls-acme-eab-hmac-key={EAB_HMAC_KEY}");
    deploy(
        &proxy,
        &pebble,
        &app,
        &[&kid, &hmac, "--tls-acme-contact=ops@example.com"],
    )
    .await;
    wait_for_certificates(&proxy, 1).await;
    let exchange = client(&proxy, &pebble).await.get(HOST, "/").await.unwrap();
    assert_eq!(exchange.response.backend(), "app");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_demand_issues_for_names_the_endpoint_approves() {
    let (pebble, proxy) = start("tls-alpn-01", PebbleOptions::default());
    let (app, approver) = (
        Backend::start("app").await,
        Backend::start("approver").await,
    );
    let directory = format!("--tls-acme-directory={}", pebble.directory_url());
    let url = format!(
        "--tls-on-demand-url=http://127.0.0.1:{}/up?x=1",
        approver.port()
    );
    proxy
        .deploy("web", &app.target(), &["--tls", &directory, &url])
        .await;
    let approved = client(&proxy, &pebble).await;
    let exchange = approved.get(HOST, "/").await.unwrap();
    assert_eq!(exchange.response.backend(), "app");
    let checks = approver.requests_to("/up");
    assert_eq!(checks.len(), 1);
    assert_eq!(checks[0].query.as_deref(), Some("x=1&host=a.example.com"));

    approver.set_up_status(403);
    let denied = client_for(&proxy, &pebble, "b.example.com").await;
    assert!(denied.get("b.example.com", "/").await.is_err());
    let refusal = denial(&proxy, "b.example.com").await;
    assert_eq!(refusal["status"], 403);
    assert!(
        refusal["reason"]
            .as_str()
            .unwrap()
            .starts_with("b.example.com is not allowed to get a certificate (status: 403"),
        "{refusal}"
    );
    // A name that has its certificate is not checked again.
    assert_eq!(
        approved.get(HOST, "/").await.unwrap().response.backend(),
        "app"
    );
    assert_eq!(approver.requests_to("/up").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_demand_asks_the_service_itself_when_given_a_path() {
    let (pebble, proxy) = start("tls-alpn-01", PebbleOptions::default());
    let app = Backend::start("app").await;
    app.allow_hosts(&[HOST]);
    let directory = format!("--tls-acme-directory={}", pebble.directory_url());
    proxy
        .deploy(
            "web",
            &app.target(),
            &["--tls", &directory, "--tls-on-demand-url=/allow?token=abc"],
        )
        .await;

    let approved = client(&proxy, &pebble).await;
    let exchange = approved.get(HOST, "/").await.unwrap();
    assert_eq!(
        exchange.response.backend(),
        "app",
        "served under pebble's certificate"
    );
    let checks = app.requests_to("/allow");
    assert_eq!(checks.len(), 1);
    let check = &checks[0];
    assert_eq!(check.query.as_deref(), Some("token=abc&host=a.example.com"));
    assert_eq!(
        check.header("host"),
        Some(HOST),
        "the candidate is the Host"
    );
    assert_eq!(
        check.header("x-forwarded-proto"),
        Some("http"),
        "no TLS redirect"
    );
    assert_eq!(check.header("x-forwarded-host"), Some(HOST));
    assert_eq!(check.header("x-forwarded-for"), Some("127.0.0.1"));

    let denied = client_for(&proxy, &pebble, "b.example.com").await;
    assert!(denied.get("b.example.com", "/").await.is_err());
    let refusal = denial(&proxy, "b.example.com").await;
    assert_eq!(refusal["status"], 403);
    assert_eq!(refusal["body"], "host not allowed");
    assert_eq!(
        refusal["reason"],
        "b.example.com is not allowed to get a certificate (status: 403, body: \"host not allowed\")"
    );

    // Paused, the check waits like any request, and is answered once resumed.
    app.allow_hosts(&[HOST, "c.example.com", "d.example.com"]);
    proxy.cli_ok(&["pause", "web"]).await;
    let held = client_for(&proxy, &pebble, "c.example.com").await;
    let handshake = tokio::spawn(async move { held.get("c.example.com", "/").await.is_ok() });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!handshake.is_finished(), "held while paused");
    assert_eq!(app.count("/allow"), 2);
    proxy.cli_ok(&["resume", "web"]).await;
    assert!(handshake.await.unwrap(), "approved once resumed");

    // Stopped, the service answers 503 itself: the name is denied without asking the app.
    proxy.cli_ok(&["stop", "web"]).await;
    let stopped = client_for(&proxy, &pebble, "d.example.com").await;
    assert!(stopped.get("d.example.com", "/").await.is_err());
    assert_eq!(denial(&proxy, "d.example.com").await["status"], 503);
    assert_eq!(app.count("/allow"), 3);
}
