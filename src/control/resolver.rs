//! `org.kamal.Proxy1.Resolver`: the object an attached kamal-proxy container serves on its
//! control connection, so that the daemon can resolve names only Docker's DNS knows.
//!
//! `Resolve(s name) -> as addresses`: the addresses `name` has inside the container's
//! network, IPv4 first; an empty list when the name does not exist there; an error when the
//! lookup itself failed (the daemon then keeps its last answer). The daemon calls it; the
//! container (`kamal::attach`) serves it.

/// Where the attached container serves the resolver.
pub const RESOLVER_PATH: &str = "/org/kamal/Proxy1/Resolver";

/// The resolver as the daemon calls it, over the attached container's connection.
#[zbus::proxy(
    interface = "org.kamal.Proxy1.Resolver",
    // Peer-to-peer: no bus routes by it, but zbus wants a destination.
    default_service = "org.kamal.Proxy1",
    default_path = "/org/kamal/Proxy1/Resolver",
    gen_blocking = false
)]
pub trait Resolver {
    fn resolve(&self, name: &str) -> zbus::Result<Vec<String>>;
}
