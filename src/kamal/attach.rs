//! Attach mode: `kamal-proxy run` in the Kamal image. It serves no traffic and binds no
//! port; it attaches to the host daemon over the mounted control socket and stays in the
//! foreground, so that Docker (and so Kamal) sees a running proxy container:
//! - the daemon's log arrives through a pipe passed with `Attach` and is copied to stdout,
//!   which is what `kamal proxy logs` (`docker logs kamal-proxy`) reads;
//! - the connection serves `org.kamal.Proxy1.Resolver` (`docker_dns`), through which the
//!   daemon resolves the container ids Kamal deploys as targets.
//!
//! An unreachable daemon, or another container attached already, is said once (not at each
//! retry) and retried until it changes; a daemon that restarts is reattached to. SIGTERM
//! (`docker stop`) or SIGINT ends it with exit status 0.

use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe;
use tokio::signal::unix::{signal, SignalKind};
use zbus::zvariant;

use super::docker_dns::DockerDns;
use crate::control::{client_socket_path, AttachOptions, ControlProxy, RESOLVER_PATH};

/// How long to wait before trying the daemon again.
const RETRY: Duration = Duration::from_secs(1);
/// How soon to try again after the daemon let go: a restarting daemon is back within
/// moments, and until we are back it cannot resolve the app containers.
const REATTACH: Duration = Duration::from_millis(100);
/// Room in the log pipe, so that a burst of request lines waits there, not in the daemon.
const PIPE_SIZE: libc::c_int = 1 << 20;

/// What `run` was given that only the host daemon can act on: said once at start.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AttachConfig {
    pub debug: bool,
    /// Flags for the daemon (`--metrics-port`, `--http-port`, ...) that attach mode ignores.
    pub ignored_flags: Vec<String>,
}

/// Why a session with the daemon ended.
#[derive(Debug, PartialEq, Eq)]
enum SessionEnd {
    /// The socket did not answer.
    Unreachable(String),
    /// The daemon refused the attachment (another container is attached).
    Refused(String),
    /// We were attached and the daemon let go (it stopped or restarted).
    Detached,
}

pub async fn run(config: AttachConfig) -> Result<(), String> {
    crate::logging::init(config.debug, crate::logging::LogFormat::Json);
    let socket = client_socket_path();
    if !config.ignored_flags.is_empty() {
        tracing::warn!(ignored = %config.ignored_flags.join(", "), "These flags are the host daemon's; set them on the host (kamal-proxy run, or the kamal-proxy.service unit)");
    }
    let mut terminate =
        signal(SignalKind::terminate()).map_err(|e| format!("cannot watch SIGTERM: {e}"))?;
    let mut interrupt =
        signal(SignalKind::interrupt()).map_err(|e| format!("cannot watch SIGINT: {e}"))?;
    tracing::info!(socket = %socket.display(), "Attaching to the kamal-proxy daemon on the host");
    let mut last_end: Option<SessionEnd> = None;
    loop {
        let end = tokio::select! {
            end = session(&socket) => end,
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        };
        match &end {
            SessionEnd::Detached => {
                tracing::warn!(
                    "Detached from the kamal-proxy daemon (it stopped or restarted); reattaching"
                )
            }
            // Said when it starts being so, not at every retry.
            _ if last_end.as_ref() == Some(&end) => {}
            SessionEnd::Unreachable(error) => {
                tracing::error!(socket = %socket.display(), error = %error, hint = %unreachable_hint(&socket), "Cannot reach the kamal-proxy daemon; retrying every second")
            }
            SessionEnd::Refused(error) => {
                tracing::warn!(error = %error, "The kamal-proxy daemon refused to attach this container; retrying every second")
            }
        }
        let pause = match end {
            SessionEnd::Detached => REATTACH,
            _ => RETRY,
        };
        last_end = Some(end);
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    tracing::info!("Stopping; the kamal-proxy daemon on the host goes on serving");
    Ok(())
}

fn unreachable_hint(socket: &Path) -> String {
    let directory = socket
        .parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
    format!(
        "is kamal-proxy running on the host (systemctl status kamal-proxy), and is its \
         socket directory mounted here (deploy.yml proxy.run.options: volume: \"{0}:{0}\")?",
        directory.display()
    )
}

/// One attachment: connect, attach, copy the log until the daemon lets go.
async fn session(socket: &Path) -> SessionEnd {
    let stream = match tokio::net::UnixStream::connect(socket).await {
        Ok(stream) => stream,
        Err(error) => return SessionEnd::Unreachable(error.to_string()),
    };
    let connection = zbus::connection::Builder::unix_stream(stream)
        .p2p()
        .serve_at(RESOLVER_PATH, DockerDns::default())
        .map(|builder| builder.build());
    let connection = match connection {
        Ok(building) => building.await,
        Err(error) => Err(error),
    };
    let connection = match connection {
        Ok(connection) => connection,
        Err(error) => return SessionEnd::Unreachable(error.to_string()),
    };
    let (reader, writer) = match log_pipe() {
        Ok(ends) => ends,
        Err(error) => return SessionEnd::Unreachable(format!("cannot make a pipe: {error}")),
    };
    let proxy = match ControlProxy::new(&connection).await {
        Ok(proxy) => proxy,
        Err(error) => return SessionEnd::Unreachable(error.to_string()),
    };
    let options = AttachOptions {
        container: container_name(),
    };
    if let Err(error) = proxy
        .attach(zvariant::Fd::from(&writer), &options.to_dict())
        .await
    {
        return match error {
            zbus::Error::MethodError(_, Some(text), _) => SessionEnd::Refused(text),
            other => SessionEnd::Unreachable(other.to_string()),
        };
    }
    // The daemon holds its own copy now; ours would keep the pipe open after it lets go.
    drop(writer);
    tracing::info!("Attached to the kamal-proxy daemon; its log follows");
    copy_to_stdout(reader).await;
    SessionEnd::Detached
}

/// This container's host name: Docker makes it the short container id.
fn container_name() -> Option<String> {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
}

/// A pipe for the daemon's log: the read end for us (non-blocking, for tokio), the write
/// end to pass. Both close on exec.
fn log_pipe() -> std::io::Result<(pipe::Receiver, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills both descriptors on success, which we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // Best effort: the default 64 KiB still works, it only drops lines sooner.
    // SAFETY: fcntl on a descriptor we own.
    unsafe { libc::fcntl(fds[0], libc::F_SETPIPE_SZ, PIPE_SIZE) };
    Ok((pipe::Receiver::from_owned_fd(read)?, write))
}

/// Copies the daemon's lines to stdout until the daemon closes its end.
async fn copy_to_stdout(mut reader: pipe::Receiver) {
    let mut stdout = tokio::io::stdout();
    // A stdout that fails (Docker's log pipe gone) leaves nothing to copy to: end it.
    let _ = tokio::io::copy(&mut reader, &mut stdout).await;
    let _ = stdout.flush().await;
}
