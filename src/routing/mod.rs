//! The host + path-prefix table the data plane reads on every request.
//!
//! It is immutable: a change builds a new table and the router swaps it in atomically
//! (`ArcSwap`), so requests never take a lock a deploy holds. Lookup follows the Go proxy
//! (`service_map.go`): exact host, then the one-label wildcard `*.parent`, then the catch-all;
//! the first host entry found decides, and only its prefixes are tried, longest first.

mod request_host;
mod table;

pub use request_host::{request_host, RequestHostError};
pub use table::{RouteMatch, RoutingTable};
