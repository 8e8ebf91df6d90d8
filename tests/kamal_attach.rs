//! Attach mode, as the Kamal image runs it (`KAMAL_PROXY_ATTACH=1 kamal-proxy run`), against
//! a real daemon: the daemon's log arrives on the attached process's stdout (what `kamal
//! proxy logs` shows), it says so when the daemon cannot be reached and reattaches when it
//! restarts, a second attachment is refused, SIGTERM ends it with 0; and target names only
//! the attached process can resolve are resolved through it, following a "container" that
//! moves to a new address while another takes its old one, and served from its last answer
//! while it is away, across a daemon restart too.
//!
//! Docker's DNS is stood in for by a private `/etc/hosts`: the attached process runs in a
//! mount namespace of its own (`unshare --mount`, root only) in which a hosts file of the
//! test's is mounted over `/etc/hosts`, so it knows names the daemon's host does not. Both
//! processes get a `resolv.conf` naming only loopback, so no lookup leaves the machine.

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use support::{get, poll_until, Backend, Proxy};

/// `kamal-proxy run` in attach mode, its stdout collected.
struct Attached {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Attached {
    /// Attach mode as in the image, started through `command` (the proxy's environment).
    fn start(mut command: Command) -> Attached {
        let mut child = command
            .env("KAMAL_PROXY_ATTACH", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start kamal-proxy run in attach mode");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("piped stdout");
        let collected = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                collected.lock().unwrap().push(line);
            }
        });
        Attached { child, lines }
    }

    /// Attach mode with the proxy's environment.
    fn to(proxy: &Proxy) -> Attached {
        let mut command = proxy.command();
        command.arg("run");
        Attached::start(command)
    }

    fn logs(&self) -> Vec<Value> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|e| {
                    panic!("attach mode printed a line that is not JSON ({e}): {line}")
                })
            })
            .collect()
    }

    fn count(&self, message: &str) -> usize {
        self.logs().iter().filter(|l| l["msg"] == message).count()
    }

    async fn wait_for(&self, what: &str, matches: impl Fn(&Value) -> bool) {
        poll_until(Duration::from_secs(10), what, || {
            std::future::ready(self.logs().iter().any(&matches))
        })
        .await;
    }

    async fn wait_for_count(&self, message: &str, count: usize) {
        poll_until(
            Duration::from_secs(10),
            &format!("{count} lines \"{message}\" from attach mode"),
            || std::future::ready(self.count(message) >= count),
        )
        .await;
    }

    /// SIGTERM, as `docker stop` sends; returns the exit code.
    fn terminate(mut self) -> Option<i32> {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let status = self.child.wait().expect("wait for attach mode");
        status.code()
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prints_the_daemons_log_from_its_start_and_exits_0_on_sigterm() {
    let proxy = Proxy::start();
    let app = Backend::start("app").await;
    let attached = Attached::to(&proxy);
    attached
        .wait_for("the restore line replayed", |l| {
            l["msg"] == "No previous state to restore"
        })
        .await;
    attached
        .wait_for("Container attached", |l| l["msg"] == "Container attached")
        .await;
    proxy
        .deploy("web", &app.target(), &["--host=web.test"])
        .await;
    assert_eq!(get(proxy.port(), "web.test", "/hello").await.status, 200);
    attached
        .wait_for("the request line", |l| {
            l["msg"] == "Request" && l["path"] == "/hello" && l["service"] == "web"
        })
        .await;
    attached
        .wait_for("the deploy lines", |l| l["msg"] == "Deployed")
        .await;
    assert_eq!(attached.terminate(), Some(0));
    proxy
        .wait_for_log("the daemon saw the container go", |l| {
            l["msg"] == "Container detached"
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn says_once_that_the_daemon_is_unreachable_and_reattaches_when_it_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(support::BIN);
    command
        .env(
            "KAMAL_PROXY_SOCKET",
            dir.path().join("missing/kamal-proxy.sock"),
        )
        .arg("run");
    let lonely = Attached::start(command);
    lonely
        .wait_for("the unreachable daemon reported", |l| {
            l["msg"] == "Cannot reach the kamal-proxy daemon; retrying every second"
                && l["hint"].as_str().is_some_and(|h| h.contains("volume"))
        })
        .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        lonely.count("Cannot reach the kamal-proxy daemon; retrying every second"),
        1,
        "said once, not at every retry"
    );
    drop(lonely);

    let mut proxy = Proxy::start();
    let attached = Attached::to(&proxy);
    attached.wait_for_count("Container attached", 1).await;
    proxy.restart();
    attached
        .wait_for("the detach noticed", |l| {
            l["msg"]
                == "Detached from the kamal-proxy daemon (it stopped or restarted); reattaching"
        })
        .await;
    // The restarted daemon's start-up lines, then the new attachment.
    attached.wait_for_count("Server started", 2).await;
    attached.wait_for_count("Container attached", 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_a_second_container_while_one_is_attached() {
    let proxy = Proxy::start();
    let first = Attached::to(&proxy);
    first.wait_for_count("Container attached", 1).await;
    let second = Attached::to(&proxy);
    second
        .wait_for("the refusal", |l| {
            l["msg"]
                == "The kamal-proxy daemon refused to attach this container; retrying every second"
                && l["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("another kamal-proxy container"))
        })
        .await;
    // Once the first goes, the second takes over.
    assert_eq!(first.terminate(), Some(0));
    second
        .wait_for_count("Attached to the kamal-proxy daemon; its log follows", 1)
        .await;
}

/// Attach mode in a mount namespace whose `/etc/hosts` is `hosts`, asking no DNS server.
fn attach_with_hosts(proxy: &Proxy, hosts: &Path) -> Attached {
    let resolv_conf = proxy.loopback_resolv_conf();
    let mut command = support::with_own_files(
        &proxy.command(),
        &[(hosts, "/etc/hosts"), (&resolv_conf, "/etc/resolv.conf")],
    );
    command.arg("run");
    Attached::start(command)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolves_container_names_through_the_attached_process_and_follows_a_move() {
    let Some(proxy) = Proxy::start_without_dns() else {
        eprintln!("SKIPPED: needs root and unshare --mount to give the processes their own /etc/hosts and DNS");
        return;
    };
    let deploy_unknown_container = || async {
        let args = [
            "deploy",
            "web",
            "--target=a1b2c3d4e5f6:80",
            "--deploy-timeout=30s",
        ];
        let output = proxy.cli(&args).await;
        assert_eq!(output.status.code(), Some(1), "{output:?}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let stderr = deploy_unknown_container().await;
    assert!(
        stderr.contains("cannot resolve target \"a1b2c3d4e5f6:80\"")
            && stderr.contains("no kamal-proxy container is attached"),
        "{stderr}"
    );

    let port = support::free_port();
    let at = |ip: &str| -> SocketAddr { format!("{ip}:{port}").parse().unwrap() };
    let hosts = tempfile::NamedTempFile::new().unwrap();
    let point = |ip: &str| std::fs::write(hosts.path(), format!("{ip} app-container\n")).unwrap();
    point("127.0.0.2");
    let attached = attach_with_hosts(&proxy, hosts.path());
    attached.wait_for_count("Container attached", 1).await;

    let stderr = deploy_unknown_container().await;
    assert!(
        stderr.contains(
            "nor the attached kamal-proxy container (Temporary failure in name resolution) knows \"a1b2c3d4e5f6\""
        ),
        "an unknown container fails at once, naming it: {stderr}"
    );

    let first = Backend::start_on("app", at("127.0.0.2")).await;
    let target = format!("app-container:{port}");
    proxy.deploy("web", &target, &["--host=web.test"]).await;
    let listed = proxy.list_json().await;
    assert_eq!(
        listed[0]["targets"][0],
        target.as_str(),
        "the name is kept: {listed}"
    );
    let reply = get(proxy.port(), "web.test", "/").await;
    assert_eq!(reply.status, 200);
    assert!(reply.body.contains("\"name\":\"app\""), "{}", reply.body);

    // The container restarts elsewhere; another takes its old address.
    drop(first);
    poll_until(Duration::from_secs(5), "the old address to be free", || {
        std::future::ready(std::net::TcpListener::bind(at("127.0.0.2")).is_ok())
    })
    .await;
    let decoy = Backend::start_on("decoy", at("127.0.0.2")).await;
    let moved = Backend::start_on("app", at("127.0.0.3")).await;
    point("127.0.0.3");
    for _ in 0..20 {
        let reply = get(proxy.port(), "web.test", "/").await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert!(reply.body.contains("\"name\":\"app\""), "{}", reply.body);
    }
    assert!(
        decoy.requests().is_empty(),
        "the container that took the old address got the app's traffic"
    );
    assert_eq!(
        moved.requests_to("/").len(),
        20,
        "traffic followed the container"
    );

    // While no container is attached (it is being rebooted), the last answer serves.
    assert_eq!(attached.terminate(), Some(0));
    proxy
        .wait_for_log("the detach", |l| l["msg"] == "Container detached")
        .await;
    let reply = get(proxy.port(), "web.test", "/").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.body.contains("\"name\":\"app\""), "{}", reply.body);

    // So does a daemon restarted meanwhile (an upgrade), from the answers it saved.
    let mut proxy = proxy;
    proxy.restart();
    proxy
        .wait_for_log("the saved answers restored", |l| {
            l["msg"] == "Restored the addresses of container targets" && l["names"] == 1
        })
        .await;
    let reply = get(proxy.port(), "web.test", "/").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.body.contains("\"name\":\"app\""), "{}", reply.body);
    assert!(decoy.requests().is_empty());
}
