//! Which transport carries control calls: a message bus, or the peer-to-peer unix socket.
//!
//! The daemon always serves the socket and, when it can, also owns `org.kamal.Proxy1` on a
//! bus; the CLI picks the first that answers. The socket path rule extends the Go proxy's
//! (`$KAMAL_PROXY_SOCKET`, `$XDG_RUNTIME_DIR`, `$TMPDIR`) with systemd's `$RUNTIME_DIRECTORY`.

use std::path::PathBuf;

pub const SOCKET_FILE_NAME: &str = "kamal-proxy.sock";

/// `--bus`: where to find (daemon: offer) the interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusChoice {
    /// Daemon: the system bus if reachable, else socket only. CLI: `$KAMAL_PROXY_SOCKET`,
    /// else the system bus if the name is owned or activatable there, else the socket.
    Auto,
    System,
    Session,
    /// Socket only.
    None,
    /// A D-Bus address such as `unix:path=/run/test-bus`.
    Address(String),
}

impl BusChoice {
    pub fn parse(text: &str) -> Result<Self, String> {
        Ok(match text {
            "auto" => BusChoice::Auto,
            "system" => BusChoice::System,
            "session" => BusChoice::Session,
            "none" => BusChoice::None,
            address if address.contains(':') => BusChoice::Address(address.to_string()),
            other => {
                return Err(format!(
                    "invalid bus \"{other}\": expected auto, system, session, none or a D-Bus address (unix:path=...)"
                ))
            }
        })
    }
}

/// The control socket's path, first match wins.
pub fn socket_path() -> PathBuf {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(path) = var("KAMAL_PROXY_SOCKET") {
        return PathBuf::from(path);
    }
    let dir = var("RUNTIME_DIRECTORY")
        .or_else(|| var("XDG_RUNTIME_DIR"))
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    dir.join(SOCKET_FILE_NAME)
}

/// Where the packaged service's socket is (`RuntimeDirectory=kamal-proxy`).
const SERVICE_SOCKET: &str = "/run/kamal-proxy/kamal-proxy.sock";

/// The socket a client connects to: `socket_path()`, unless nothing listens there and the
/// packaged service's socket exists. A CLI run over SSH has no `RUNTIME_DIRECTORY`, so
/// without this the fallback would miss the daemon systemd runs.
pub fn client_socket_path() -> PathBuf {
    let own = socket_path();
    if own.exists() || std::env::var_os("KAMAL_PROXY_SOCKET").is_some_and(|v| !v.is_empty()) {
        return own;
    }
    let service = PathBuf::from(SERVICE_SOCKET);
    if service.exists() {
        service
    } else {
        own
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bus_choices() {
        assert_eq!(BusChoice::parse("auto"), Ok(BusChoice::Auto));
        assert_eq!(
            BusChoice::parse("unix:path=/tmp/bus"),
            Ok(BusChoice::Address("unix:path=/tmp/bus".into()))
        );
        assert!(BusChoice::parse("sytem").unwrap_err().contains("\"sytem\""));
    }
}
