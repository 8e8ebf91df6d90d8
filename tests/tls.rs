//! HTTPS with certificates the operator provides (`--tls-certificate-path` and
//! `--tls-private-key-path`), made in the test with rcgen.
//!
//! SNI picks the service's certificate (ECDSA, RSA, a chain through an intermediate); a
//! client without SNI gets the default TLS host's, with a warning; an unknown name fails
//! the handshake. HTTP/2 is negotiated by ALPN and logged as such, the target sees
//! `X-Forwarded-Proto: https`, and plain HTTP is redirected keeping the non-443 HTTPS port.
//! Path services inherit TLS from their host's root service; HTTPS to a service without TLS
//! gets 503. Bad files refuse the deploy; the daemon's copy of a certificate gone at restart
//! turns off TLS for that service only.

mod support;

use http::Method;
use serde_json::json;
use support::tls::{roots, Issued, TestCa, TlsClient};
use support::{get, send, Backend, Proxy};

const HOST: &str = "a.example.com";

/// Deploys `service` with TLS from `issued`'s files on `host`.
async fn deploy_with(proxy: &Proxy, service: &str, app: &Backend, host: &str, issued: &Issued) {
    let flags = issued.deploy_flags(&proxy.state_dir(), service, host);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    proxy.deploy(service, &app.target(), &flags).await;
}

fn client<'a>(proxy: &Proxy, ca: &TestCa, sni: Option<&'a str>) -> TlsClient<'a> {
    TlsClient {
        port: proxy.https_port(),
        sni,
        verify_as: HOST,
        roots: roots(&ca.pem),
        alpn: &[b"h2", b"http/1.1"],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_the_certificate_for_the_sni_over_http2_and_redirects_keeping_the_port() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    let ca = TestCa::new();
    deploy_with(&proxy, "web", &app, HOST, &ca.issue(&[HOST])).await;

    let exchange = client(&proxy, &ca, Some(HOST))
        .get(HOST, "/hello?x=1")
        .await
        .unwrap();
    assert_eq!(exchange.alpn.as_deref(), Some(&b"h2"[..]));
    let echo = exchange.response.json();
    assert_eq!(echo["name"], "app");
    assert_eq!(echo["headers"]["x-forwarded-proto"], "https");
    assert_eq!(echo["headers"]["host"], HOST);
    let log = proxy
        .wait_for_log("HTTPS request log", |e| {
            e["msg"] == "Request" && e["path"] == "/hello"
        })
        .await;
    assert_eq!(log["scheme"], "https");
    assert_eq!(log["proto"], "HTTP/2.0");
    assert_eq!(log["host"], HOST);

    let redirect = send(proxy.port(), Method::GET, HOST, "/a?b=1", &[]).await;
    assert_eq!(redirect.status(), 301);
    assert_eq!(
        redirect.header("location"),
        Some(format!("https://{HOST}:{}/a?b=1", proxy.https_port()).as_str())
    );

    let unknown = client(&proxy, &ca, Some("other.example.com"))
        .get("other.example.com", "/")
        .await;
    assert!(unknown.unwrap_err().starts_with("handshake"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_sni_gets_the_default_host_certificate() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    let ca = TestCa::new();
    deploy_with(&proxy, "web", &app, HOST, &ca.issue(&[HOST])).await;
    let exchange = client(&proxy, &ca, None).get(HOST, "/").await.unwrap();
    assert_eq!(exchange.response.backend(), "app");
    proxy
        .wait_for_log("no-SNI warning", |e| {
            e["msg"] == "No server name; using default TLS hostname" && e["level"] == "WARN"
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_rsa_keys_and_chains_through_an_intermediate_over_http1() {
    let proxy = Proxy::start();
    let (rsa_app, chain_app) = (Backend::start("rsa").await, Backend::start("chain").await);
    let ca = TestCa::new();
    deploy_with(&proxy, "rsa", &rsa_app, HOST, &ca.issue_rsa(&[HOST])).await;
    let chained = "b.example.com";
    let issued = ca.issue_through_intermediate(&[chained]);
    deploy_with(&proxy, "chain", &chain_app, chained, &issued).await;

    let mut http1 = client(&proxy, &ca, Some(HOST));
    http1.alpn = &[b"http/1.1"];
    let exchange = http1.get(HOST, "/").await.unwrap();
    assert_eq!(exchange.alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(exchange.response.backend(), "rsa");
    let mut chain_client = client(&proxy, &ca, Some(chained));
    chain_client.verify_as = chained;
    let exchange = chain_client.get(chained, "/").await.unwrap();
    assert_eq!(exchange.response.backend(), "chain");
    assert_eq!(
        exchange.peer_chain.len(),
        2,
        "leaf and intermediate are sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_certificate_files_that_cannot_be_used() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    let ca = TestCa::new();
    let (cert, _) = ca.issue(&[HOST]).write(&proxy.state_dir(), "one");
    let (_, other_key) = ca.issue(&[HOST]).write(&proxy.state_dir(), "two");
    let target = format!("--target={}", app.target());
    let cert_flag = format!("--tls-certificate-path={}", cert.display());
    let key_flag = format!("--tls-private-key-path={}", other_key.display());
    let host = format!("--host={HOST}");
    proxy
        .cli_err(
            &[
                "deploy", "web", &target, "--tls", &host, &cert_flag, &key_flag,
            ],
            "unable to load certificate: the private key does not match the certificate",
        )
        .await;
    let missing = "--tls-private-key-path=/nonexistent/key.pem";
    let output = proxy
        .cli(&[
            "deploy", "web", &target, "--tls", &host, &cert_flag, missing,
        ])
        .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("Error: unable to load certificate: cannot read /nonexistent/key.pem"),
        "{stderr}"
    );
    assert_eq!(proxy.list_json().await, json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_services_inherit_tls_and_https_to_a_plain_service_gets_503() {
    let proxy = Proxy::start();
    let (web, api, plain) = (
        Backend::start("web").await,
        Backend::start("api").await,
        Backend::start("plain").await,
    );
    let ca = TestCa::new();
    deploy_with(&proxy, "web", &web, HOST, &ca.issue(&[HOST])).await;
    proxy
        .deploy(
            "api",
            &api.target(),
            &[&format!("--host={HOST}"), "--path-prefix=/api"],
        )
        .await;
    proxy
        .deploy("plain", &plain.target(), &["--host=plain.example.com"])
        .await;

    let redirect = get(proxy.port(), HOST, "/api/x").await;
    assert_eq!(
        redirect.status(),
        301,
        "the path service inherits the redirect"
    );
    let tls = client(&proxy, &ca, Some(HOST));
    assert_eq!(
        tls.get(HOST, "/api/x").await.unwrap().response.backend(),
        "api"
    );

    assert_eq!(
        get(proxy.port(), "plain.example.com", "/").await.backend(),
        "plain"
    );
    let refused = tls.get("plain.example.com", "/").await.unwrap();
    refused
        .response
        .assert_error_page(503, "503 — Service Temporarily Unavailable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_gone_at_restart_turns_off_tls_for_that_service_only() {
    let mut proxy = Proxy::start();
    let (web, other) = (Backend::start("web").await, Backend::start("other").await);
    let ca = TestCa::new();
    let issued = ca.issue(&[HOST]);
    deploy_with(&proxy, "web", &web, HOST, &issued).await;
    deploy_with(
        &proxy,
        "other",
        &other,
        "b.example.com",
        &ca.issue(&["b.example.com"]),
    )
    .await;
    // The daemon serves its own copy, named in the state file, not the file the CLI read.
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(proxy.state_file()).unwrap()).unwrap();
    let web = state
        .as_array()
        .unwrap()
        .iter()
        .find(|service| service["name"] == "web")
        .unwrap();
    let copy = web["options"]["tls_certificate_path"].as_str().unwrap();
    std::fs::remove_file(copy).unwrap();

    proxy.restart();
    let error = proxy
        .wait_for_log("restore error", |e| {
            e["msg"] == "Failed to restore TLS certificate; serving without TLS"
        })
        .await;
    assert_eq!(error["service"], "web");
    assert_eq!(get(proxy.port(), HOST, "/").await.backend(), "web");
    let mut other_client = client(&proxy, &ca, Some("b.example.com"));
    other_client.verify_as = "b.example.com";
    let exchange = other_client.get("b.example.com", "/").await.unwrap();
    assert_eq!(exchange.response.backend(), "other");
    assert!(client(&proxy, &ca, Some(HOST))
        .get(HOST, "/")
        .await
        .is_err());
}
