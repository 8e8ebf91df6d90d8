//! `DockerDns`: the `org.kamal.Proxy1.Resolver` object the attached container serves, which
//! answers the daemon's lookups with the container's own resolver: on Docker's networks
//! that is Docker's embedded DNS, which knows every container by name and short id.
//!
//! A name that does not exist is an empty answer; a lookup that failed is an error with the
//! resolver's own words (glibc's codes are read, not its text). Docker's DNS answers for
//! running containers at once and passes other names to the host's servers, so a stopped
//! container's id may take the resolver's whole timeout: each lookup is cut off at
//! `LOOKUP_TIMEOUT`, and only `CONCURRENT_LOOKUPS` run at once, so a stopped app under load
//! cannot pile up blocked threads.

use std::ffi::{CStr, CString};
use std::net::IpAddr;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::control::ControlError;

/// Less than the daemon waits (2 s), so that it hears "failed", not silence.
const LOOKUP_TIMEOUT: Duration = Duration::from_millis(1500);
const CONCURRENT_LOOKUPS: usize = 8;

pub struct DockerDns {
    lookups: Semaphore,
}

impl Default for DockerDns {
    fn default() -> Self {
        DockerDns {
            lookups: Semaphore::new(CONCURRENT_LOOKUPS),
        }
    }
}

#[zbus::interface(name = "org.kamal.Proxy1.Resolver")]
impl DockerDns {
    /// The addresses of `name` here, IPv4 first; empty when it does not exist.
    async fn resolve(&self, name: String) -> Result<Vec<String>, ControlError> {
        let lookup = async {
            // Never closed: the semaphore lives as long as the object.
            let _turn = self.lookups.acquire().await.map_err(|e| e.to_string())?;
            tokio::task::spawn_blocking(move || lookup(&name))
                .await
                .map_err(|e| e.to_string())?
        };
        let addresses = tokio::time::timeout(LOOKUP_TIMEOUT, lookup)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "no answer from the container's DNS within {}",
                    crate::go_duration::format(LOOKUP_TIMEOUT)
                ))
            })
            .map_err(ControlError::Failed)?;
        Ok(addresses.iter().map(IpAddr::to_string).collect())
    }
}

/// `getaddrinfo(name)`: the distinct addresses, IPv4 first; empty for a name that does not
/// exist; the resolver's own message for a lookup that failed.
fn lookup(name: &str) -> Result<Vec<IpAddr>, String> {
    let c_name = CString::new(name).map_err(|_| format!("\"{name}\" is not a host name"))?;
    // SAFETY: zeroed addrinfo is a valid hints value (all unset) once the fields we use
    // are filled in.
    let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_socktype = libc::SOCK_STREAM;
    let mut found: *mut libc::addrinfo = std::ptr::null_mut();
    // SAFETY: valid C string, hints and out-pointer; the list is freed below.
    let status =
        unsafe { libc::getaddrinfo(c_name.as_ptr(), std::ptr::null(), &hints, &mut found) };
    match status {
        0 => {}
        libc::EAI_NONAME | libc::EAI_NODATA => return Ok(Vec::new()),
        // SAFETY: gai_strerror returns a static string for any code.
        code => {
            return Err(unsafe { CStr::from_ptr(libc::gai_strerror(code)) }
                .to_string_lossy()
                .into_owned())
        }
    }
    let mut addresses = Vec::new();
    let mut entry = found;
    while !entry.is_null() {
        // SAFETY: `entry` is a node of the list getaddrinfo returned, not yet freed; its
        // address is a sockaddr_in or sockaddr_in6 as its family says.
        let info = unsafe { &*entry };
        let address = match info.ai_family {
            libc::AF_INET => {
                let v4 = unsafe { &*(info.ai_addr as *const libc::sockaddr_in) };
                Some(IpAddr::from(u32::from_be(v4.sin_addr.s_addr).to_be_bytes()))
            }
            libc::AF_INET6 => {
                let v6 = unsafe { &*(info.ai_addr as *const libc::sockaddr_in6) };
                Some(IpAddr::from(v6.sin6_addr.s6_addr))
            }
            _ => None,
        };
        if let Some(address) = address.filter(|a| !addresses.contains(a)) {
            addresses.push(address);
        }
        entry = info.ai_next;
    }
    // SAFETY: the list getaddrinfo returned, freed once.
    unsafe { libc::freeaddrinfo(found) };
    addresses.sort_by_key(IpAddr::is_ipv6);
    Ok(addresses)
}

#[cfg(test)]
mod tests {
    use super::*;

    // A name that does not exist would be asked of this machine's DNS servers, which tests
    // must not reach; the Kamal test (packaging/kamal-test) covers it against Docker's DNS.
    #[test]
    fn answers_with_every_address_ipv4_first() {
        let localhost = lookup("localhost").unwrap();
        assert!(!localhost.is_empty() && localhost.iter().all(IpAddr::is_loopback));
        assert!(localhost[0].is_ipv4(), "IPv4 first: {localhost:?}");
        assert_eq!(lookup("127.0.0.1").unwrap(), [IpAddr::from([127, 0, 0, 1])]);
    }
}
