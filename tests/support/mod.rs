//! Shared fixtures for the integration tests: the real `kamal-proxy` binary and real peers.
//!
//! - [`Proxy`]: a daemon in its own temporary directory (control socket, state directory,
//!   HOME), listening on an ephemeral port on 127.0.0.1. Its JSON log lines are collected
//!   in the background so tests can assert on them; [`Proxy::cli`] runs the same binary as a
//!   client against it; [`Proxy::restart`] keeps the state directory. Killed on drop.
//! - [`Backend`]: an upstream application on 127.0.0.1:0 serving on the test's tokio
//!   runtime. Every path answers 200 with a JSON echo of the request (`name`, `method`,
//!   `path`, `query`, `headers`, `body_length`, and for `/upload` `body_hash`); `/up`
//!   answers a switchable status; `/allow?host=H` (an on-demand TLS check) answers 200 for
//!   the hosts [`Backend::allow_hosts`] names and 403 `host not allowed` for any other;
//!   `/slow?ms=N` sleeps first; `/ws` is a WebSocket echo behind a real RFC 6455 handshake
//!   (400 without a key, 426 unless version 13, the first offered subprotocol chosen);
//!   `/large?bytes=N` streams N bytes (chunked); `/sse?events=N&ms=M` sends N server-sent
//!   events M ms apart. A request header `X-Reply-Header: Name: value` (repeatable) makes the
//!   echo carry that response header, for testing what the proxy does with upstream headers.
//!   Every request is recorded. Stopped on drop.
//! - HTTP helpers: [`HttpClient`] (pooled keep-alive), [`get`] / [`send`] (a fresh
//!   connection each), [`raw_request`] (bytes over TCP, for malformed requests).
//! - [`h2_websocket`]: WebSockets over HTTP/2 (RFC 8441), as browsers open them.
//! - [`raw_target`]: a target scripted byte for byte, and a client reading raw responses,
//!   for tests of HTTP/1.1 framing and connection reuse.
//! - [`poll_until`]: wait for a condition with a deadline instead of sleeping.
//! - [`TestBus`]: a private `dbus-daemon` (and [`busctl`] against it); [`free_port`].
//!
//! Tests use `#[tokio::test(flavor = "multi_thread", worker_threads = 2)]` so that a
//! blocking CLI call and the backends can make progress at the same time. Every test gets
//! its own daemon, backends and ports, so tests run in parallel.

#![allow(dead_code)]

pub mod h2_websocket;
pub mod pebble;
pub mod raw_target;
pub mod tls;

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body::Frame;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::{self, protocol::Role};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_kamal-proxy");

/// How long the daemon may take to print `Server started`.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// The longest any single HTTP exchange in a test may take before the test fails.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------
// Polling
// ---------------------------------------------------------------------------------------

/// Polls `condition` every 20 ms until it holds; panics with `what` after `timeout`.
pub async fn poll_until<F, Fut>(timeout: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await {
            return;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------
// The daemon
// ---------------------------------------------------------------------------------------

/// A running `kamal-proxy run`, with its own directory, socket and state.
pub struct Proxy {
    dir: tempfile::TempDir,
    child: Option<Child>,
    port: u16,
    /// The HTTPS port reported in `Server started`.
    https_port: u16,
    /// Every stdout line of every incarnation of the daemon, in order.
    logs: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    /// `--bus` given to the daemon (`none` unless started on a test bus).
    bus: String,
    extra_env: Vec<(String, String)>,
    /// More `run` flags (`--metrics-port ...`).
    run_args: Vec<String>,
    /// The metrics port the daemon reported in `Server started`, if it serves metrics.
    metrics_port: Option<u16>,
    /// Whether the daemon runs with a DNS of its own (`start_without_dns`).
    private_dns: bool,
}

/// How a test daemon is started: everything but the temp directory.
#[derive(Default)]
struct Launch<'a> {
    bus: Option<&'a str>,
    env: &'a [(&'a str, &'a str)],
    run_args: &'a [&'a str],
    private_dns: bool,
}

impl Proxy {
    /// A daemon serving only its peer-to-peer socket.
    pub fn start() -> Proxy {
        Self::start_with(|_| {})
    }

    /// A daemon whose state directory is prepared by `prepare` before it starts (to plant a
    /// state file written by the Go proxy, for example).
    pub fn start_with(prepare: impl FnOnce(&PathBuf)) -> Proxy {
        Self::launch(Launch::default(), prepare)
    }

    /// A daemon started with extra environment variables.
    pub fn start_with_env(env: &[(&str, &str)]) -> Proxy {
        Self::launch(
            Launch {
                env,
                ..Launch::default()
            },
            |_| {},
        )
    }

    /// A daemon that also owns `org.kamal.Proxy1` on the bus at `address`.
    pub fn start_on_bus(address: &str) -> Proxy {
        Self::launch(
            Launch {
                bus: Some(address),
                ..Launch::default()
            },
            |_| {},
        )
    }

    /// A daemon whose host resolver asks no DNS server beyond loopback (see
    /// [`with_own_files`]), for tests of names the host cannot resolve; `None` where this
    /// machine cannot give a process files of its own.
    pub fn start_without_dns() -> Option<Proxy> {
        can_give_own_files().then(|| {
            Self::launch(
                Launch {
                    private_dns: true,
                    ..Launch::default()
                },
                |_| {},
            )
        })
    }

    /// A daemon serving only its socket, run with `run_args` added to the usual flags.
    pub fn start_with_run_args(run_args: &[&str]) -> Proxy {
        Self::launch(
            Launch {
                run_args,
                ..Launch::default()
            },
            |_| {},
        )
    }

    fn launch(launch: Launch<'_>, prepare: impl FnOnce(&PathBuf)) -> Proxy {
        let dir = tempfile::tempdir().expect("create temp dir");
        let state_dir = dir.path().join("state");
        std::fs::create_dir_all(&state_dir).expect("create state dir");
        prepare(&state_dir);
        let mut proxy = Proxy {
            dir,
            child: None,
            port: 0,
            https_port: 0,
            logs: Arc::default(),
            stderr: Arc::default(),
            bus: launch.bus.unwrap_or("none").to_string(),
            extra_env: launch
                .env
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            run_args: launch.run_args.iter().map(|arg| arg.to_string()).collect(),
            metrics_port: None,
            private_dns: launch.private_dns,
        };
        proxy.spawn();
        proxy
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon is running").id()
    }

    /// The metrics port reported in `Server started`; panics if metrics are off.
    pub fn metrics_port(&self) -> u16 {
        self.metrics_port.expect("the daemon serves metrics")
    }

    pub fn socket_path(&self) -> PathBuf {
        self.dir.path().join("kamal-proxy.sock")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn state_file(&self) -> PathBuf {
        self.state_dir().join("kamal-proxy.state")
    }

    /// The HTTP port the daemon reported in `Server started`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The HTTPS port the daemon reported in `Server started`.
    pub fn https_port(&self) -> u16 {
        self.https_port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// A `Command` for the binary with this proxy's environment (socket, state, HOME).
    pub fn command(&self) -> Command {
        let mut command = Command::new(BIN);
        command
            .env("KAMAL_PROXY_SOCKET", self.socket_path())
            .env("STATE_DIRECTORY", self.state_dir())
            .env("HOME", self.dir.path())
            .env_remove("RUNTIME_DIRECTORY")
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("JOURNAL_STREAM")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .env_remove("HTTP_PORT")
            .env_remove("KAMAL_PROXY_HTTP_PORT");
        for (name, value) in &self.extra_env {
            command.env(name, value);
        }
        command
    }

    /// An `/etc/resolv.conf` naming only a server on loopback, where none listens: every
    /// DNS lookup fails at once, and none leaves the machine.
    pub fn loopback_resolv_conf(&self) -> PathBuf {
        let path = self.dir.path().join("resolv.conf");
        std::fs::write(&path, "nameserver 127.0.0.1\n").expect("write resolv.conf");
        path
    }

    fn spawn(&mut self) {
        let mut command = self.command();
        if self.private_dns {
            command = with_own_files(
                &command,
                &[(&self.loopback_resolv_conf(), "/etc/resolv.conf")],
            );
        }
        let mut child = command
            .args([
                "--bus",
                &self.bus,
                "run",
                "--http-port",
                "0",
                "--https-port",
                "0",
            ])
            .args(["--bind", "127.0.0.1"])
            .args(&self.run_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kamal-proxy run");
        let first_new_line = self.logs.lock().unwrap().len();
        let stdout = child.stdout.take().expect("piped stdout");
        let logs = Arc::clone(&self.logs);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                logs.lock().unwrap().push(line);
            }
        });
        let stderr = child.stderr.take().expect("piped stderr");
        let errors = Arc::clone(&self.stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                errors.lock().unwrap().push(line);
            }
        });
        self.child = Some(child);

        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let started = self.logs.lock().unwrap()[first_new_line..]
                .iter()
                .filter_map(|line| serde_json::from_str::<Value>(line).ok())
                .find(|entry| entry["msg"] == "Server started");
            if let Some(entry) = started {
                self.port = entry["http"]
                    .as_u64()
                    .and_then(|p| u16::try_from(p).ok())
                    .unwrap_or_else(|| panic!("`Server started` without an http port: {entry}"));
                assert_ne!(self.port, 0, "`Server started` reported port 0: {entry}");
                self.https_port = entry["https"]
                    .as_u64()
                    .and_then(|p| u16::try_from(p).ok())
                    .unwrap_or_else(|| panic!("`Server started` without an https port: {entry}"));
                self.metrics_port = entry["metrics"]
                    .as_u64()
                    .and_then(|p| u16::try_from(p).ok());
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(100)); // let the readers drain the pipes
                panic!(
                    "kamal-proxy run exited with {status} before `Server started`\nstdout:\n{}\nstderr:\n{}",
                    self.logs.lock().unwrap().join("\n"),
                    self.stderr.lock().unwrap().join("\n")
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "kamal-proxy run printed no `Server started` within {START_TIMEOUT:?}\nstdout:\n{}\nstderr:\n{}",
                    self.logs.lock().unwrap().join("\n"),
                    self.stderr.lock().unwrap().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends SIGTERM and waits for the daemon to exit; returns its exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("daemon is running");
        let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
        // SAFETY: plain kill(2) on the pid of a child we spawned and have not reaped.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait().expect("wait for daemon") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("kamal-proxy did not exit within 15s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the daemon gracefully and starts a new one on the same state directory.
    pub fn restart(&mut self) {
        let status = self.terminate();
        assert!(status.success(), "daemon exited with {status} on SIGTERM");
        self.spawn();
    }

    /// Runs the CLI against this daemon and returns its output.
    pub async fn cli(&self, args: &[&str]) -> Output {
        let mut command = tokio::process::Command::from(self.command());
        command.args(args).stdin(Stdio::null()).kill_on_drop(true);
        tokio::time::timeout(Duration::from_secs(60), command.output())
            .await
            .unwrap_or_else(|_| panic!("`kamal-proxy {}` took over 60s", args.join(" ")))
            .expect("run the kamal-proxy CLI")
    }

    /// Runs the CLI and asserts it succeeded silently (exit 0, nothing printed).
    pub async fn cli_ok(&self, args: &[&str]) {
        let output = self.cli(args).await;
        assert_success_silent(&output, args);
    }

    /// Runs the CLI and asserts it failed with exit 1 and exactly `Error: <message>`.
    pub async fn cli_err(&self, args: &[&str], message: &str) {
        let output = self.cli(args).await;
        assert_error(&output, args, message);
    }

    /// `deploy <service> --target=<target>` with a fast health-check interval, plus `extra`.
    pub async fn deploy(&self, service: &str, target: &str, extra: &[&str]) {
        let target = format!("--target={target}");
        let mut args = vec![
            "deploy",
            service,
            &target,
            "--health-check-interval=100ms",
            "--deploy-timeout=10s",
            "--drain-timeout=5s",
        ];
        args.extend_from_slice(extra);
        self.cli_ok(&args).await;
    }

    /// `list --json`, parsed.
    pub async fn list_json(&self) -> Value {
        let output = self.cli(&["list", "--json"]).await;
        assert_eq!(
            output.status.code(),
            Some(0),
            "list --json failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "list --json printed invalid JSON ({e}): {}",
                String::from_utf8_lossy(&output.stdout)
            )
        })
    }

    /// Every JSON log line printed so far (lines that are not JSON are skipped).
    pub fn logs(&self) -> Vec<Value> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// The raw stdout lines printed so far.
    pub fn raw_logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// Waits for a log line that satisfies `matches`, and returns it.
    pub async fn wait_for_log(&self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let mut found = None;
        poll_until(Duration::from_secs(10), what, || {
            found = self.logs().into_iter().find(|entry| matches(entry));
            std::future::ready(found.is_some())
        })
        .await;
        found.expect("poll_until returned, so a line matched")
    }

    /// Waits for the `Request` log line of the request with `X-Request-ID: request_id`.
    pub async fn request_log(&self, request_id: &str) -> Value {
        self.wait_for_log(&format!("Request log line for {request_id}"), |entry| {
            entry["msg"] == "Request" && entry["request_id"] == request_id
        })
        .await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether this machine lets a test give a process files of its own (root, and
/// `unshare --mount`).
pub fn can_give_own_files() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    root && Command::new("unshare")
        .args(["--mount", "true"])
        .status()
        .is_ok_and(|status| status.success())
}

/// `command` (its program, arguments and environment) run in a mount namespace of its own in
/// which each `(file, over)` is bind-mounted over the path `over`: a private `/etc/hosts` or
/// `/etc/resolv.conf`, say. More arguments may be added to the result. Needs
/// [`can_give_own_files`].
pub fn with_own_files(command: &Command, files: &[(&std::path::Path, &str)]) -> Command {
    let mounts: String = (0..files.len())
        .map(|i| format!("mount --bind \"${}\" \"${}\" && ", 2 * i + 1, 2 * i + 2))
        .collect();
    let shift = 2 * files.len();
    let mut wrapped = Command::new("unshare");
    wrapped.args(["--mount", "sh", "-c"]);
    wrapped.arg(format!("{mounts}shift {shift} && exec \"$@\""));
    wrapped.arg("sh");
    for (file, over) in files {
        wrapped.arg(file).arg(over);
    }
    wrapped.arg(command.get_program()).args(command.get_args());
    for (name, value) in command.get_envs() {
        match value {
            Some(value) => wrapped.env(name, value),
            None => wrapped.env_remove(name),
        };
    }
    wrapped
}

/// Asserts a CLI call exited 0 and printed nothing.
pub fn assert_success_silent(output: &Output, args: &[&str]) {
    assert_eq!(
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).as_ref(),
            String::from_utf8_lossy(&output.stderr).as_ref()
        ),
        (Some(0), "", ""),
        "`kamal-proxy {}` should succeed silently",
        args.join(" ")
    );
}

/// Asserts a CLI call exited 1 with exactly `Error: <message>\n` on stderr and no stdout.
pub fn assert_error(output: &Output, args: &[&str], message: &str) {
    assert_eq!(
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).as_ref(),
            String::from_utf8_lossy(&output.stderr).as_ref()
        ),
        (Some(1), "", format!("Error: {message}\n").as_str()),
        "`kamal-proxy {}` should fail with this message",
        args.join(" ")
    );
}

/// Asserts a CLI call exited 1 with `Error: ...` on stderr that mentions every `needle`.
pub fn assert_error_naming(output: &Output, args: &[&str], needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "`kamal-proxy {}` should exit 1; stderr: {stderr}",
        args.join(" ")
    );
    assert!(
        stderr.starts_with("Error: ") && stderr.ends_with('\n') && stderr.lines().count() == 1,
        "`kamal-proxy {}` should print one `Error: ` line, printed: {stderr:?}",
        args.join(" ")
    );
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "`kamal-proxy {}`: error {stderr:?} should name {needle:?}",
            args.join(" ")
        );
    }
    assert!(
        output.stdout.is_empty(),
        "nothing on stdout: {:?}",
        String::from_utf8_lossy(&output.stdout)
    );
}

/// A port that was free a moment ago (bound on 127.0.0.1 and released), for flags that
/// take no 0.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

// ---------------------------------------------------------------------------------------
// A private message bus
// ---------------------------------------------------------------------------------------

/// A private `dbus-daemon` listening in a temporary directory; killed on drop.
pub struct TestBus {
    _dir: tempfile::TempDir,
    child: Child,
    pub address: String,
}

impl TestBus {
    pub fn start() -> TestBus {
        let dir = tempfile::tempdir().expect("temp dir");
        let listen = format!("unix:path={}", dir.path().join("bus").display());
        let mut child = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address"])
            .arg(format!("--address={listen}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon is installed");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut address = String::new();
        BufReader::new(stdout)
            .read_line(&mut address)
            .expect("dbus-daemon prints its address");
        let address = address.trim().to_string();
        assert!(address.starts_with("unix:"), "bus address: {address:?}");
        TestBus {
            _dir: dir,
            child,
            address,
        }
    }

    pub async fn connect(&self) -> zbus::Connection {
        zbus::connection::Builder::address(self.address.as_str())
            .expect("valid address")
            .build()
            .await
            .expect("connect to the test bus")
    }
}

impl Drop for TestBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `busctl --address=<the test bus> <args>`.
pub fn busctl(bus: &TestBus, args: &[&str]) -> std::process::Output {
    Command::new("busctl")
        .arg(format!("--address={}", bus.address))
        .args(args)
        .output()
        .expect("busctl is installed")
}

// ---------------------------------------------------------------------------------------
// The upstream application
// ---------------------------------------------------------------------------------------

/// One request a [`Backend`] received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Lower-case names, in arrival order, repeated names kept.
    pub headers: Vec<(String, String)>,
}

impl Recorded {
    /// Every value of header `name`, in order.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_values(name).first().copied()
    }
}

struct BackendState {
    name: String,
    /// Status `/up` answers with.
    up_status: AtomicU16,
    /// Hosts `/allow` approves.
    allowed_hosts: Mutex<Vec<String>>,
    requests: Mutex<Vec<Recorded>>,
    /// Requests being handled right now.
    in_flight: AtomicUsize,
    /// WebSocket sessions that ended (the peer closed or the connection broke).
    websockets_closed: AtomicUsize,
    stopped: AtomicBool,
}

/// An upstream application; see the module docs for what it answers.
pub struct Backend {
    addr: SocketAddr,
    state: Arc<BackendState>,
    cancel: CancellationToken,
}

impl Backend {
    /// Starts serving on 127.0.0.1 on an ephemeral port; healthy (`/up` -> 200).
    pub async fn start(name: &str) -> Backend {
        Self::start_on(name, "127.0.0.1:0".parse().unwrap()).await
    }

    /// Starts serving on `address` (another loopback address, a port of the test's choice).
    pub async fn start_on(name: &str, address: SocketAddr) -> Backend {
        let listener = TcpListener::bind(address).await.expect("bind backend");
        let addr = listener.local_addr().expect("backend address");
        let state = Arc::new(BackendState {
            name: name.to_string(),
            up_status: AtomicU16::new(200),
            allowed_hosts: Mutex::default(),
            requests: Mutex::default(),
            in_flight: AtomicUsize::new(0),
            websockets_closed: AtomicUsize::new(0),
            stopped: AtomicBool::new(false),
        });
        let cancel = CancellationToken::new();
        tokio::spawn(accept_loop(listener, Arc::clone(&state), cancel.clone()));
        Backend {
            addr,
            state,
            cancel,
        }
    }

    pub fn name(&self) -> &str {
        &self.state.name
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `127.0.0.1:<port>`, as given to `--target`.
    pub fn target(&self) -> String {
        format!("127.0.0.1:{}", self.addr.port())
    }

    /// `/up` answers 200 when healthy, 503 otherwise.
    pub fn set_healthy(&self, healthy: bool) {
        self.set_up_status(if healthy { 200 } else { 503 });
    }

    pub fn set_up_status(&self, status: u16) {
        self.state.up_status.store(status, Ordering::SeqCst);
    }

    /// The hosts `/allow?host=` approves from now on.
    pub fn allow_hosts(&self, hosts: &[&str]) {
        *self.state.allowed_hosts.lock().unwrap() = hosts.iter().map(|h| h.to_string()).collect();
    }

    /// Everything received so far, health checks included.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    /// The requests received for `path`.
    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// How many requests for `path` arrived.
    pub fn count(&self, path: &str) -> usize {
        self.requests_to(path).len()
    }

    /// Requests that are not health checks (`User-Agent: kamal-proxy`).
    pub fn app_requests(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.header("user-agent") != Some("kamal-proxy"))
            .collect()
    }

    pub fn in_flight(&self) -> usize {
        self.state.in_flight.load(Ordering::SeqCst)
    }

    pub fn websockets_closed(&self) -> usize {
        self.state.websockets_closed.load(Ordering::SeqCst)
    }

    /// Closes the listener and every open connection.
    pub fn stop(&self) {
        self.state.stopped.store(true, Ordering::SeqCst);
        self.cancel.cancel();
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<BackendState>, cancel: CancellationToken) {
    loop {
        let stream = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        let state = Arc::clone(&state);
        let cancel = cancel.clone();
        let stopped = cancel.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let state = Arc::clone(&state);
                let cancel = cancel.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(request, state, cancel).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            // Dropping the connection future closes the socket (a stopped backend).
            tokio::select! {
                _ = stopped.cancelled() => {}
                _ = connection => {}
            }
        });
    }
}

/// Decrements the in-flight count however the handler ends (it may be dropped mid-sleep).
struct InFlight(Arc<BackendState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A backend response body: whole, or streamed over time.
type Reply = UnsyncBoxBody<Bytes, std::convert::Infallible>;

async fn answer(
    request: Request<Incoming>,
    state: Arc<BackendState>,
    cancel: CancellationToken,
) -> http::Response<Reply> {
    state.in_flight.fetch_add(1, Ordering::SeqCst);
    let _in_flight = InFlight(Arc::clone(&state));
    let recorded = Recorded {
        method: request.method().to_string(),
        path: request.uri().path().to_string(),
        query: request.uri().query().map(str::to_string),
        headers: request
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
    };
    state.requests.lock().unwrap().push(recorded.clone());

    if recorded.path == "/up" {
        let status = state.up_status.load(Ordering::SeqCst);
        return http::Response::builder()
            .status(status)
            .body(Full::new(Bytes::from_static(b"")).boxed_unsync())
            .expect("valid response");
    }
    if recorded.path == "/allow" {
        let host = query_value(recorded.query.as_deref(), "host").unwrap_or("");
        let allowed = state
            .allowed_hosts
            .lock()
            .unwrap()
            .iter()
            .any(|h| h == host);
        let (status, body) = if allowed {
            (200, "")
        } else {
            (403, "host not allowed")
        };
        return http::Response::builder()
            .status(status)
            .body(Full::new(Bytes::from_static(body.as_bytes())).boxed_unsync())
            .expect("valid response");
    }
    if recorded.path == "/ws" {
        return websocket(request, state, cancel).map(BodyExt::boxed_unsync);
    }
    let number = |name: &str, default: u64| query_number(recorded.query.as_deref(), name, default);
    if recorded.path == "/large" {
        return large(number("bytes", 1 << 20));
    }
    if recorded.path == "/sse" {
        return sse(
            number("events", 10),
            Duration::from_millis(number("ms", 100)),
        );
    }
    if recorded.path == "/slow" {
        let ms = recorded
            .query
            .as_deref()
            .and_then(|q| q.strip_prefix("ms="))
            .and_then(|n| n.parse().ok())
            .unwrap_or(1000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let mut body = request.into_body();
    let (mut length, mut hash) = (0u64, FNV_OFFSET);
    let hashed = recorded.path == "/upload";
    while let Some(Ok(frame)) = body.frame().await {
        if let Some(data) = frame.data_ref() {
            length += data.len() as u64;
            if hashed {
                hash = fnv1a(hash, data);
            }
        }
    }
    echo(&state.name, &recorded, length, hashed.then_some(hash)).map(BodyExt::boxed_unsync)
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a, continued from `hash`: cheap, and the same however the body was split.
fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The `body_hash` the backend reports for `body` sent to `/upload`.
pub fn body_hash(body: &[u8]) -> u64 {
    fnv1a(FNV_OFFSET, body)
}

fn query_value<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

fn query_number(query: Option<&str>, name: &str, default: u64) -> u64 {
    query_value(query, name)
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// `bytes` bytes of `x`, streamed in 64 KiB chunks without a Content-Length.
fn large(bytes: u64) -> http::Response<Reply> {
    const CHUNK: u64 = 64 * 1024;
    let chunks = futures_util::stream::unfold(bytes, |left| async move {
        (left > 0).then(|| {
            let size = left.min(CHUNK);
            let data = Bytes::from(vec![b'x'; usize::try_from(size).expect("small chunk")]);
            (Ok(Frame::data(data)), left - size)
        })
    });
    http::Response::builder()
        .status(200)
        .header("content-type", "application/octet-stream")
        .body(StreamBody::new(chunks).boxed_unsync())
        .expect("valid response")
}

/// `events` server-sent events (`data: <i>`), `interval` apart, the first at once.
fn sse(events: u64, interval: Duration) -> http::Response<Reply> {
    let stream = futures_util::stream::unfold(0, move |sent| async move {
        if sent == events {
            return None;
        }
        if sent > 0 {
            tokio::time::sleep(interval).await;
        }
        let event = Bytes::from(format!("data: {sent}\n\n"));
        Some((Ok(Frame::data(event)), sent + 1))
    });
    http::Response::builder()
        .status(200)
        .header("content-type", "text/event-stream")
        .body(StreamBody::new(stream).boxed_unsync())
        .expect("valid response")
}

/// The JSON echo every ordinary path answers with.
fn echo(
    name: &str,
    recorded: &Recorded,
    body_length: u64,
    body_hash: Option<u64>,
) -> http::Response<Full<Bytes>> {
    let mut headers: BTreeMap<String, Value> = BTreeMap::new();
    for (n, v) in &recorded.headers {
        match headers.get_mut(n) {
            Some(Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(v);
            }
            _ => {
                headers.insert(n.clone(), Value::String(v.clone()));
            }
        }
    }
    let body = json!({
        "name": name,
        "method": recorded.method,
        "path": recorded.path,
        "query": recorded.query,
        "headers": headers,
        "body_length": body_length,
        "body_hash": body_hash,
    });
    let mut response = http::Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("x-backend", name);
    for reply in recorded.header_values("x-reply-header") {
        let (name, value) = reply.split_once(':').expect("X-Reply-Header: Name: value");
        response = response.header(name.trim(), value.trim());
    }
    response
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("valid response")
}

fn websocket(
    request: Request<Incoming>,
    state: Arc<BackendState>,
    cancel: CancellationToken,
) -> http::Response<Full<Bytes>> {
    let Some(key) = request.headers().get("sec-websocket-key").cloned() else {
        return http::Response::builder()
            .status(400)
            .body(Full::new(Bytes::from_static(b"not a websocket request")))
            .expect("valid response");
    };
    if request.headers().get("sec-websocket-version") != Some(&HeaderValue::from_static("13")) {
        return http::Response::builder()
            .status(426)
            .header("sec-websocket-version", "13")
            .body(Full::new(Bytes::from_static(
                b"unsupported WebSocket version",
            )))
            .expect("valid response");
    }
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let subprotocol = request
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|offered| offered.to_str().ok())
        .and_then(|offered| offered.split(',').next())
        .map(|first| first.trim().to_string());
    tokio::spawn(async move {
        let Ok(upgraded) = hyper::upgrade::on(request).await else {
            state.websockets_closed.fetch_add(1, Ordering::SeqCst);
            return;
        };
        let mut socket =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        loop {
            let message = tokio::select! {
                _ = cancel.cancelled() => break,
                message = socket.next() => message,
            };
            match message {
                Some(Ok(message)) if message.is_text() || message.is_binary() => {
                    if socket.send(message).await.is_err() {
                        break;
                    }
                }
                Some(Ok(tungstenite::Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            }
        }
        state.websockets_closed.fetch_add(1, Ordering::SeqCst);
    });
    let mut response = http::Response::builder()
        .status(101)
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-accept", accept);
    if let Some(subprotocol) = subprotocol {
        response = response.header("sec-websocket-protocol", subprotocol);
    }
    response
        .body(Full::new(Bytes::new()))
        .expect("valid response")
}

// ---------------------------------------------------------------------------------------
// HTTP clients
// ---------------------------------------------------------------------------------------

/// A response, fully read.
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Response {
    pub fn status(&self) -> u16 {
        self.status.as_u16()
    }

    /// The body as JSON (a backend's echo); panics with the body if it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| {
            panic!(
                "expected a JSON echo, got {} ({e}): {}",
                self.status, self.body
            )
        })
    }

    /// The single value of header `name`, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ASCII header"))
    }

    /// Asserts this is the proxy's built-in error page for `status` with `title`.
    pub fn assert_error_page(&self, status: u16, title: &str) {
        assert_eq!(self.status(), status, "body: {}", self.body);
        assert_eq!(
            self.header("content-type"),
            Some("text/html; charset=utf-8"),
            "error pages are HTML"
        );
        assert!(
            self.body.contains(&format!("<title>{title}</title>")),
            "expected the built-in page titled {title:?}, got: {}",
            self.body
        );
    }

    /// The echoing backend's name.
    pub fn backend(&self) -> String {
        assert_eq!(self.status(), 200, "body: {}", self.body);
        self.json()["name"]
            .as_str()
            .expect("echo has a name")
            .to_string()
    }
}

/// A pooled keep-alive HTTP/1.1 client aimed at one proxy port.
#[derive(Clone)]
pub struct HttpClient {
    port: u16,
    inner: hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>,
}

impl HttpClient {
    pub fn new(port: u16) -> HttpClient {
        HttpClient {
            port,
            inner: hyper_util::client::legacy::Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(4)
                .build_http(),
        }
    }

    /// `GET path` with `Host: host`.
    pub async fn get(&self, host: &str, path: &str) -> Response {
        self.send(Method::GET, host, path, &[]).await
    }

    pub async fn send(
        &self,
        method: Method,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Response {
        self.try_send(method, host, path, headers)
            .await
            .unwrap_or_else(|e| panic!("request to {host}{path} failed: {e}"))
    }

    /// Like [`HttpClient::send`] but returns transport errors instead of panicking.
    pub async fn try_send(
        &self,
        method: Method,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Response, String> {
        let uri = format!("http://127.0.0.1:{}{path}", self.port);
        let request = empty_request(method, &uri, host, headers)?;
        let exchange = async {
            let response = self
                .inner
                .request(request)
                .await
                .map_err(|e| format!("{e:?}"))?;
            collect(response).await
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| format!("no response within {REQUEST_TIMEOUT:?}"))?
    }
}

/// A request without a body, with `Host: host` and the extra headers.
fn empty_request(
    method: Method,
    uri: &str,
    host: &str,
    headers: &[(&str, &str)],
) -> Result<Request<Full<Bytes>>, String> {
    let mut builder = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", host);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())
}

/// Reads the whole response.
async fn collect(response: hyper::Response<hyper::body::Incoming>) -> Result<Response, String> {
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(|e| format!("{e:?}"))?;
    Ok(Response {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body.to_bytes()).into_owned(),
    })
}

/// `GET path` with `Host: host` on a fresh connection.
pub async fn get(port: u16, host: &str, path: &str) -> Response {
    send(port, Method::GET, host, path, &[]).await
}

/// One request on a fresh connection (`Connection: close` is not added; the connection is
/// simply dropped afterwards).
pub async fn send(
    port: u16,
    method: Method,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Response {
    try_send(port, method, host, path, headers)
        .await
        .unwrap_or_else(|e| panic!("request to {host}{path} failed: {e}"))
}

/// Like [`send`] but returns transport errors instead of panicking.
pub async fn try_send(
    port: u16,
    method: Method,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Response, String> {
    let exchange = async {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| e.to_string())?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let request = empty_request(method, path, host, headers)?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("{e:?}"))?;
        collect(response).await
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no response within {REQUEST_TIMEOUT:?}"))?
}

/// Writes `request` verbatim to the proxy and reads until the proxy closes the connection
/// (send `Connection: close`). Returns everything read.
pub async fn raw_request(port: u16, request: &[u8]) -> String {
    let exchange = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect to proxy");
        stream.write_all(request).await.expect("write request");
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response).await;
        String::from_utf8_lossy(&response).into_owned()
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .expect("the proxy answered and closed the connection")
}

/// A WebSocket client connection through the proxy.
pub type WebSocket = WebSocketStream<TcpStream>;

/// Opens a WebSocket to `ws://<host><path>` through the proxy on `port`.
pub async fn websocket_connect(port: u16, host: &str, path: &str) -> WebSocket {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to proxy");
    let url = format!("ws://{host}{path}");
    let (socket, response) = tokio::time::timeout(
        REQUEST_TIMEOUT,
        tokio_tungstenite::client_async(url.as_str(), stream),
    )
    .await
    .expect("WebSocket handshake within the timeout")
    .unwrap_or_else(|e| panic!("WebSocket handshake through the proxy failed: {e}"));
    assert_eq!(response.status().as_u16(), 101);
    socket
}

/// Sends `text` and expects it echoed back (over HTTP/1.1 or an HTTP/2 stream).
pub async fn websocket_echo<S>(socket: &mut WebSocketStream<S>, text: &str)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    socket
        .send(tungstenite::Message::text(text))
        .await
        .expect("send WebSocket message");
    let reply = tokio::time::timeout(REQUEST_TIMEOUT, socket.next())
        .await
        .expect("echo within the timeout")
        .expect("connection open")
        .expect("a message");
    assert_eq!(reply.into_text().expect("text reply").as_str(), text);
}

/// Runs `redeploy` and expects it to close `socket` at once rather than wait out its drain
/// timeout, and `old`, the target it was open to, to see the close.
pub async fn assert_redeploy_closes_websocket<S>(
    socket: &mut WebSocketStream<S>,
    old: &Backend,
    redeploy: impl Future<Output = ()>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let started = Instant::now();
    redeploy.await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the deploy did not wait out the drain timeout for a WebSocket: {:?}",
        started.elapsed()
    );
    assert_websocket_closed(socket).await;
    poll_until(
        Duration::from_secs(3),
        "the old target to see the close",
        || async { old.websockets_closed() == 1 },
    )
    .await;
}

/// Expects the WebSocket to end promptly: the stream ends, breaks, or is closed.
pub async fn assert_websocket_closed<S>(socket: &mut WebSocketStream<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let next = tokio::time::timeout(Duration::from_secs(3), socket.next())
        .await
        .expect("the client sees the connection end promptly");
    assert!(
        matches!(
            next,
            None | Some(Err(_)) | Some(Ok(tungstenite::Message::Close(_)))
        ),
        "expected the upgraded connection to be closed, got {next:?}"
    );
}
