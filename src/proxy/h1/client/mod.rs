//! The client role of the HTTP/1.1 codec: a request head written for a target
//! (`request_head`), its response head read (`response_head`, `target_fields`) and its body
//! (`upstream_body`), over a pooled keep-alive connection (`upstream_connection`,
//! `upstream_pool`).

pub(in crate::proxy) mod request_head;
pub(in crate::proxy) mod response_head;
pub(in crate::proxy) mod target_fields;
pub(in crate::proxy) mod upstream_body;
pub(in crate::proxy) mod upstream_connection;
pub(in crate::proxy) mod upstream_pool;
