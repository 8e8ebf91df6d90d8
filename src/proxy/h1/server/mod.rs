//! Our own HTTP/1.1 server, for plain-HTTP clients.
//!
//! hyper's server put a dispatcher between the socket and the handler that cost about a
//! quarter of all the work per proxied request (measured with callgrind; see
//! BENCHMARKS.md). This one reads a head, calls the handler and writes the response in the
//! connection's own task, with the request body read straight off the connection's
//! buffer. It is held to the same contract as hyper's by `tests/client_framing.rs`. HTTPS
//! (HTTP/2 and HTTP/1.1 by ALPN) is still served by hyper.

mod body;
mod connection;
mod date;
mod head;
mod io;
mod response;
mod shutdown_notice;

pub use body::{ClientBody, ClientBodyError};
pub use connection::serve;
pub use shutdown_notice::ShutdownNotice;
