//! The data plane, in the order a request flows through it:
//!
//! 1. `listen`: accept loops for the HTTP and HTTPS listeners, and the handoff that spreads
//!    connections over the worker threads;
//! 2. `h1`: the HTTP/1.1 codec, by role: `server` reads clients' requests and writes their
//!    responses, `client` writes requests to targets and reads their responses (HTTP/2 and
//!    HTTPS clients are served by hyper, in `listen::accept`);
//! 3. `pipeline`: Kamal's rules in handler order: route, redirects, client IP, forwarded
//!    headers, request stamp, cookie scope, forward (over `h1::client`), tunnels, error pages;
//! 4. `body`: the bodies between client and target: relayed, spilled to disk, buffered;
//! 5. `request_log`: one line per request, and its metrics.
//!
//! It reads configuration only through the router's routing table snapshot and never
//! parses options; everything it needs was checked when the service was deployed.

mod body;
mod h1;
mod listen;
mod pipeline;
mod request_log;

pub use listen::accept::{serve, serve_tls};
pub use listen::handoff::{Handoff, WorkerLoads};
pub use pipeline::handler::Handler;
pub use pipeline::internal_request;
pub use request_log::ListenerInfo;
