//! The Kamal bridge, container side: what `kamal-proxy run` does inside the image Kamal
//! boots as its `kamal-proxy` container.
//!
//! Kamal only ever talks to the proxy through `docker exec kamal-proxy kamal-proxy ...`, in a
//! container it runs itself. Our image runs there with the host's control socket mounted
//! (`KAMAL_PROXY_SOCKET`) and `KAMAL_PROXY_ATTACH=1`: every subcommand is then a client of
//! the host daemon, and `run` attaches to it (`attach`) instead of serving, giving the
//! daemon the two things only the container has: a stdout that `docker logs` reads, and
//! Docker's DNS, which knows the app containers by id (`docker_dns`).

pub mod attach;
mod docker_dns;

/// Set in the image: `run` attaches to the host daemon instead of serving.
pub const ATTACH_VARIABLE: &str = "KAMAL_PROXY_ATTACH";
