//! Binding the proxy's own listening sockets (when systemd did not pass any).
//!
//! With no `--bind`, one dual-stack `[::]` socket takes IPv4 and IPv6 alike, falling back to
//! `0.0.0.0` on hosts without IPv6. An explicit IPv6 address is bound v6-only, so
//! `--bind 0.0.0.0 --bind ::` works as written.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};

const BACKLOG: i32 = 1024;

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
