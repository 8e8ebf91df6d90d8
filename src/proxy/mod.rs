//! The data plane: accept connections, route each request, forward it, and answer for the
//! proxy's own errors.
//!
//! It reads configuration only through the router's routing table snapshot and never
//! parses options; everything it needs was checked when the service was deployed.

mod body;
mod chunked;
mod client;
mod client_ip;
mod client_upgrade;
mod cookie_scope;
mod deadline_timers;
mod error_page;
mod extended_connect;
mod forward;
mod forwarded_headers;
mod handler;
mod handoff;
mod header_block;
mod header_maps;
mod headers;
pub mod internal_request;
mod ip_text;
mod message_body;
mod proxy_response;
mod redirect;
mod relay_body;
mod request_body;
mod request_buffer;
mod request_head;
mod request_log;
mod request_stamp;
mod response_buffer;
mod response_head;
mod server;
mod spill_buffer;
mod target_fields;
mod upstream_body;
mod upstream_connection;
mod upstream_pool;

pub use handler::Handler;
pub use handoff::{Handoff, WorkerLoads};
pub use request_log::ListenerInfo;
pub use server::{serve, serve_tls};
