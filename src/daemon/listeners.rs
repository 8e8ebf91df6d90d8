//! The proxy's listening sockets: the ones systemd passed (socket activation, by
//! `FileDescriptorName=`), else its own, bound here.
//!
//! Taking systemd's sockets is what makes `systemctl restart` lossless: the socket stays open
//! in systemd while the old process drains and the new one starts, and new connections wait
//! in its backlog. Only when nothing was passed do we bind, so a socket unit and a bound port
//! never compete.
//!
//! With no `--bind`, one dual-stack `[::]` socket takes IPv4 and IPv6 alike, falling back to
//! `0.0.0.0` on hosts without IPv6. An explicit IPv6 address is bound v6-only, so
//! `--bind 0.0.0.0 --bind ::` works as written.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};

use super::socket_activation::{self, UNNAMED};

const BACKLOG: i32 = 1024;

/// Where the listeners came from, for the start-up log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerSource {
    Systemd,
    Bound,
}

/// Every listening socket, by protocol. The HTTPS ones are held for the TLS listener.
pub struct Listeners {
    pub http: Vec<std::net::TcpListener>,
    pub https: Vec<std::net::TcpListener>,
    pub source: ListenerSource,
}

impl Listeners {
    /// systemd's sockets when any were passed, else HTTP and HTTPS bound on `addresses`.
    pub fn take_or_bind(
        addresses: &[IpAddr],
        http_port: u16,
        https_port: u16,
    ) -> Result<Self, String> {
        let passed = socket_activation::take()?;
        if passed.is_empty() {
            return Ok(Listeners {
                http: bind(addresses, http_port)?,
                https: bind(addresses, https_port)?,
                source: ListenerSource::Bound,
            });
        }
        let mut listeners = Listeners {
            http: Vec::new(),
            https: Vec::new(),
            source: ListenerSource::Systemd,
        };
        for (fd, name) in passed {
            let listener = passed_listener(fd, &name)?;
            match name.as_str() {
                // `systemd-socket-activate` without `--fdname` names nothing: plain HTTP.
                "http" | UNNAMED => listeners.http.push(listener),
                "https" => listeners.https.push(listener),
                other => {
                    tracing::warn!(name = other, "Ignoring a socket passed by systemd with an unknown FileDescriptorName (expected http or https)");
                }
            }
        }
        if listeners.http.is_empty() {
            return Err(
                "systemd passed sockets but none named http (FileDescriptorName=http)".to_string(),
            );
        }
        Ok(listeners)
    }
}

/// A passed descriptor as a non-blocking TCP listener, or why it cannot be one.
fn passed_listener(fd: std::os::fd::OwnedFd, name: &str) -> Result<std::net::TcpListener, String> {
    let socket = Socket::from(fd);
    let unusable = |why: String| format!("socket {name} passed by systemd is unusable: {why}");
    let is_tcp_listener = socket.r#type().map_err(|e| unusable(e.to_string()))? == Type::STREAM
        && socket.is_listener().map_err(|e| unusable(e.to_string()))?
        && socket
            .local_addr()
            .map_err(|e| unusable(e.to_string()))?
            .as_socket()
            .is_some();
    if !is_tcp_listener {
        return Err(unusable(
            "not a listening TCP socket (use ListenStream= with an IP port)".to_string(),
        ));
    }
    socket
        .set_nonblocking(true)
        .map_err(|e| unusable(e.to_string()))?;
    Ok(socket.into())
}

fn bind_one(address: SocketAddr, dual_stack: bool) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    if address.is_ipv6() {
        socket.set_only_v6(!dual_stack)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Binds `port` on every address (or on all interfaces); the error names the address.
pub fn bind(addresses: &[IpAddr], port: u16) -> Result<Vec<std::net::TcpListener>, String> {
    let describe =
        |address: SocketAddr, error: std::io::Error| format!("cannot listen on {address}: {error}");
    if addresses.is_empty() {
        let any_v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port);
        return match bind_one(any_v6, true) {
            Ok(listener) => Ok(vec![listener]),
            Err(_) => {
                let any_v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
                bind_one(any_v4, false)
                    .map(|l| vec![l])
                    .map_err(|e| describe(any_v4, e))
            }
        };
    }
    addresses
        .iter()
        .map(|ip| {
            let address = SocketAddr::new(*ip, port);
            bind_one(address, false).map_err(|e| describe(address, e))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_an_explicit_loopback_address_on_a_free_port() {
        let listeners = bind(&["127.0.0.1".parse().unwrap()], 0).unwrap();
        assert_eq!(listeners.len(), 1);
        assert!(listeners[0].local_addr().unwrap().ip().is_loopback());
    }

    #[test]
    fn names_the_address_it_could_not_bind() {
        let taken = bind(&["127.0.0.1".parse().unwrap()], 0).unwrap();
        let port = taken[0].local_addr().unwrap().port();
        let error = bind(&["127.0.0.1".parse().unwrap()], port).unwrap_err();
        assert!(
            error.starts_with(&format!("cannot listen on 127.0.0.1:{port}")),
            "{error}"
        );
    }
}
