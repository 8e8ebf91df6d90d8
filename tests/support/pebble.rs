//! A real ACME CA for the tests: Debian's `pebble`, with `pebble-challtestsrv` as its DNS
//! server so that every test host name resolves to 127.0.0.1.
//!
//! Each [`Pebble`] runs in its own temporary directory on free ports, with its HTTPS served
//! under a certificate from a fresh [`TestCa`] (pass [`Pebble::ca_cert_path`] to
//! `run --acme-ca-cert`). It is made first and started once the proxy has reported its
//! ports ([`Pebble::start`]), because pebble validates HTTP-01 and TLS-ALPN-01 on them.
//! Validation is immediate (`PEBBLE_VA_NOSLEEP`), every nonce is accepted
//! (`PEBBLE_WFE_NONCEREJECT=0`), and valid authorizations are never reused
//! (`PEBBLE_AUTHZREUSE=0`: pebble's default reuses half of them, so a renewal would skip
//! validation at random and tests of failed validations would wait a lifetime more). Killed
//! on drop.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use super::free_port;
use super::tls::{roots, TestCa, TlsClient};

/// Pebble's example EAB key (`/usr/share/doc/pebble/examples/`).
pub const EAB_KID: &str = "kid-1";
pub const EAB_HMAC_KEY: &str = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";

/// How the CA behaves.
#[derive(Default)]
pub struct PebbleOptions {
    /// Require external account binding with [`EAB_KID`].
    pub eab: bool,
    /// Certificate lifetime in seconds (pebble's default is five years).
    pub validity_seconds: Option<u64>,
}

pub struct Pebble {
    dir: tempfile::TempDir,
    options: PebbleOptions,
    pebble: Option<Child>,
    challtestsrv: Option<Child>,
    ca: TestCa,
    port: u16,
    management_port: u16,
    dns_management_port: u16,
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Pebble {
    /// A CA not started yet, with its own HTTPS certificate authority.
    pub fn new(options: PebbleOptions) -> Pebble {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new();
        std::fs::write(dir.path().join("test-ca.pem"), &ca.pem).unwrap();
        Pebble {
            dir,
            options,
            pebble: None,
            challtestsrv: None,
            ca,
            port: free_port(),
            management_port: free_port(),
            dns_management_port: free_port(),
        }
    }

    /// Starts the CA, validating challenges on the proxy's `http_port` and `https_port`.
    pub fn start(&mut self, http_port: u16, https_port: u16) {
        let (cert, key) = self
            .ca
            .issue(&["127.0.0.1", "localhost"])
            .write(self.dir.path(), "pebble");
        let dns_port = free_port();
        let mut config = json!({
            "listenAddress": format!("127.0.0.1:{}", self.port),
            "managementListenAddress": format!("127.0.0.1:{}", self.management_port),
            "certificate": cert,
            "privateKey": key,
            "httpPort": http_port,
            "tlsPort": https_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": self.options.eab,
        });
        if self.options.eab {
            config["externalAccountMACKeys"] = json!({ EAB_KID: EAB_HMAC_KEY });
        }
        if let Some(seconds) = self.options.validity_seconds {
            config["certificateValidityPeriod"] = json!(seconds);
        }
        let config_path = self.dir.path().join("pebble.json");
        std::fs::write(&config_path, json!({ "pebble": config }).to_string()).unwrap();

        self.challtestsrv = Some(
            Command::new("pebble-challtestsrv")
                .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
                .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
                .args([
                    "-management",
                    &format!("127.0.0.1:{}", self.dns_management_port),
                ])
                .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn pebble-challtestsrv (apt install pebble)"),
        );
        wait_for_port(self.dns_management_port, "pebble-challtestsrv");
        self.pebble = Some(
            Command::new("pebble")
                .args(["-config", config_path.to_str().unwrap()])
                .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_WFE_NONCEREJECT", "0")
                .env("PEBBLE_AUTHZREUSE", "0")
                .current_dir(self.dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn pebble (apt install pebble)"),
        );
        wait_for_port(self.port, "pebble");
        wait_for_port(self.management_port, "pebble management");
    }

    pub fn directory_url(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.port)
    }

    /// The root of pebble's own HTTPS, for `run --acme-ca-cert`.
    pub fn ca_cert_path(&self) -> PathBuf {
        self.dir.path().join("test-ca.pem")
    }

    /// The root pebble issues certificates under (management API `/roots/0`).
    pub async fn issuing_root(&self) -> String {
        let client = TlsClient {
            port: self.management_port,
            sni: None,
            verify_as: "127.0.0.1",
            roots: roots(&self.ca.pem),
            alpn: &[b"http/1.1"],
        };
        let exchange = client.get("127.0.0.1", "/roots/0").await.unwrap();
        assert_eq!(exchange.response.status(), 200);
        exchange.response.body
    }

    /// Makes `host` resolve to `address` for the CA's validation.
    pub async fn resolve(&self, host: &str, address: &str) {
        let body = json!({ "host": host, "addresses": [address] }).to_string();
        let request = format!(
            "POST /add-a HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let response = super::raw_request(self.dns_management_port, request.as_bytes()).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    }

    /// Stops the CA (the DNS server keeps running).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.pebble.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop();
        if let Some(mut child) = self.challtestsrv.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
