//! The daemon under a service manager, without one: sockets passed the way systemd passes
//! them (`LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`, descriptors from 3) and `sd_notify`
//! messages received on a datagram socket bound by the test.

mod support;

use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Backend, BIN};

/// A daemon and its JSON log lines, as they arrive.
struct Daemon {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<Value>,
    _dir: tempfile::TempDir,
    socket: std::path::PathBuf,
}

impl Daemon {
    /// `command` runs the daemon; its environment is confined to a fresh temp directory.
    fn spawn(mut command: Command) -> Daemon {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("kamal-proxy.sock");
        std::fs::create_dir_all(dir.path().join("state")).unwrap();
        command
            .env("KAMAL_PROXY_SOCKET", &socket)
            .env("STATE_DIRECTORY", dir.path().join("state"))
            .env("HOME", dir.path())
            .env_remove("JOURNAL_STREAM")
            .env_remove("RUNTIME_DIRECTORY")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command.spawn().expect("spawn kamal-proxy");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Daemon {
            child,
            lines,
            seen: Vec::new(),
            _dir: dir,
            socket,
        }
    }

    /// The first log entry with message `msg`, waiting up to 15 s for it.
    fn wait_for(&mut self, msg: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(entry) = self.seen.iter().find(|e| e["msg"] == msg) {
                return entry.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self
                    .seen
                    .push(serde_json::from_str(&line).unwrap_or(Value::String(line))),
                Err(_) => panic!("no `{msg}` log line; saw {:#?}", self.seen),
            }
        }
    }

    fn cli(&self, args: &[&str]) {
        let output = Command::new(BIN)
            .env("KAMAL_PROXY_SOCKET", &self.socket)
            .args(["--bus", "none"])
            .args(args)
            .output()
            .expect("run the CLI");
        assert!(output.status.success(), "{args:?}: {output:?}");
    }

    fn terminate(mut self) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on our own unreaped child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let status = self.child.wait().expect("wait for the daemon");
        assert!(status.success(), "daemon exited with {status}");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `kamal-proxy run` binding its own free ports on 127.0.0.1, with no bus.
fn bound_daemon() -> Command {
    let mut command = Command::new(BIN);
    command.args([
        "--bus",
        "none",
        "run",
        "--http-port",
        "0",
        "--https-port",
        "0",
        "--bind",
        "127.0.0.1",
    ]);
    command
}

/// `kamal-proxy run ...` started as systemd starts a socket-activated service: `http` and
/// `https` as descriptors 3 and 4, `LISTEN_PID` set to the daemon's own pid (the shell
/// `exec`s, so `$$` is it).
fn socket_activated(
    http: &std::net::TcpListener,
    https: &std::net::TcpListener,
    args: &[&str],
) -> Command {
    let mut command = Command::new("sh");
    command
        .args(["-c", "LISTEN_PID=$$ exec \"$0\" \"$@\"", BIN])
        .args(args)
        .env("LISTEN_FDS", "2")
        .env("LISTEN_FDNAMES", "http:https")
        .env_remove("NOTIFY_SOCKET");
    let (http, https) = (http.as_raw_fd(), https.as_raw_fd());
    // SAFETY: only async-signal-safe calls (fcntl, dup2, close) between fork and exec. The
    // detour above 100 keeps one dup2 from overwriting the other's source.
    unsafe {
        command.pre_exec(move || {
            let high_http = libc::fcntl(http, libc::F_DUPFD, 100);
            let high_https = libc::fcntl(https, libc::F_DUPFD, 100);
            if high_http < 0
                || high_https < 0
                || libc::dup2(high_http, 3) < 0
                || libc::dup2(high_https, 4) < 0
            {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(high_http);
            libc::close(high_https);
            Ok(())
        });
    }
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_on_sockets_passed_by_systemd_without_binding_its_own() {
    let http = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let https = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let http_port = http.local_addr().unwrap().port();
    let https_port = https.local_addr().unwrap().port();
    // Told to bind the very port it was passed: binding it again would fail with
    // EADDRINUSE, so starting at all shows the daemon did not bind its own.
    let port = http_port.to_string();
    let mut daemon = Daemon::spawn(socket_activated(
        &http,
        &https,
        &[
            "--bus",
            "none",
            "run",
            "--http-port",
            &port,
            "--bind",
            "127.0.0.1",
        ],
    ));
    drop((http, https));

    let started = daemon.wait_for("Server started");
    assert_eq!(started["http"], http_port, "{started}");
    assert_eq!(started["systemd_sockets"], true, "{started}");
    assert_eq!(
        started["https"], https_port,
        "the https socket passed is served: {started}"
    );
    // Flags that disagree with systemd's sockets are named, not silently dropped.
    let warning = daemon.wait_for(
        "Listening on the sockets systemd passed; change ListenStream= in the socket units to move them",
    );
    assert_eq!(warning["level"], "WARN", "{warning}");
    assert_eq!(warning["ignored"], "--https-port 443, --bind", "{warning}");

    let backend = Backend::start("app").await;
    let target = format!("--target={}", backend.target());
    daemon.cli(&["deploy", "web", &target, "--health-check-interval=100ms"]);
    let response = support::get(http_port, "example.com", "/hello").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.backend(), "app");

    // Served by the daemon (our copy is gone): the kernel completes the handshake.
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", https_port)).is_ok(),
        "the https socket was closed instead of served"
    );
    daemon.terminate();
}

/// Every `sd_notify` datagram received until one contains `wanted`.
fn receive_until(socket: &UnixDatagram, wanted: &str) -> Vec<String> {
    let mut messages = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match socket.recv(&mut buffer) {
            Ok(length) => {
                let message = String::from_utf8_lossy(&buffer[..length]).to_string();
                let done = message.lines().any(|line| line == wanted);
                messages.push(message);
                if done {
                    return messages;
                }
            }
            Err(error) => panic!("no {wanted} ({error}); received {messages:?}"),
        }
    }
}

#[test]
fn notifies_ready_then_watchdog_then_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("notify");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut command = bound_daemon();
    command
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "400000")
        .env_remove("WATCHDOG_PID")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID");
    let mut daemon = Daemon::spawn(command);

    let before_ready = receive_until(&notify, "READY=1");
    assert_eq!(before_ready.len(), 1, "{before_ready:?}");
    assert!(
        before_ready[0].contains("STATUS=0 services, 0 healthy targets"),
        "{before_ready:?}"
    );
    // `Server started` is logged before READY=1, so the listener is serving by now.
    daemon.wait_for("Server started");
    receive_until(&notify, "WATCHDOG=1");

    let pid = libc::pid_t::try_from(daemon.child.id()).unwrap();
    // SAFETY: kill(2) on our own unreaped child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let until_stopping = receive_until(&notify, "STOPPING=1");
    assert!(
        until_stopping.iter().all(|m| !m.contains("READY=1")),
        "{until_stopping:?}"
    );
    let status = daemon.child.wait().unwrap();
    assert!(status.success(), "{status}");
}

/// A client that connected just before SIGTERM (accepted by the old process during a
/// `systemctl restart`) and sends its request just after still gets an answer.
#[test]
fn answers_a_request_sent_just_after_sigterm_on_an_earlier_connection() {
    use std::io::{Read, Write};
    let mut command = bound_daemon();
    command
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID");
    let mut daemon = Daemon::spawn(command);
    let started = daemon.wait_for("Server started");
    let port = u16::try_from(started["http"].as_u64().unwrap()).unwrap();

    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // Let the daemon accept the connection and start serving it before the signal.
    std::thread::sleep(Duration::from_millis(200));
    let pid = libc::pid_t::try_from(daemon.child.id()).unwrap();
    // SAFETY: kill(2) on our own unreaped child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    daemon.wait_for("Server stopping");
    std::thread::sleep(Duration::from_millis(100));
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: nowhere.test\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    assert!(
        response.starts_with("HTTP/1.1 404"),
        "expected the proxy's 404, got {response:?}"
    );
    let status = daemon.child.wait().unwrap();
    assert!(status.success(), "{status}");
}
