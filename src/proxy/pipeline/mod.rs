//! Kamal's rules for a request, in the order the `handler` applies them: redirects
//! (`redirect`), the client's address (`client_ip`), the forwarded headers
//! (`forwarded_headers`), the request id and start (`request_stamp`), both added to the
//! request by the codec (`added_headers`), cookie paths
//! (`cookie_scope`), the exchange with the target (`forward`, with its `deadline_timers`),
//! upgraded connections (`client_upgrade`, `extended_connect`), and the proxy's own error
//! pages (`error_page`). `internal_request` sends the proxy's own requests through it.

pub(in crate::proxy) mod added_headers;
pub(in crate::proxy) mod client_ip;
pub(in crate::proxy) mod client_upgrade;
pub(in crate::proxy) mod cookie_scope;
pub(in crate::proxy) mod deadline_timers;
pub(in crate::proxy) mod error_page;
pub(in crate::proxy) mod extended_connect;
pub(in crate::proxy) mod forward;
pub(in crate::proxy) mod forwarded_headers;
pub(in crate::proxy) mod handler;
pub mod internal_request;
pub(in crate::proxy) mod redirect;
pub(in crate::proxy) mod request_stamp;
