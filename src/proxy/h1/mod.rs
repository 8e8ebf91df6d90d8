//! The HTTP/1.1 codec: message framing (`message_body`, `chunked`), header blocks
//! (`header_block`, `header_maps`, `header_lines`), hop-by-hop fields (`headers`), and the
//! two roles:
//! `server` (our side of a client's connection) and `client` (our side of a target's).
//! It is ours, not hyper's, for speed (BENCHMARKS.md), and strict (RFC 9112), as it sits on
//! the security boundary.

pub(in crate::proxy) mod chunked;
pub(in crate::proxy) mod client;
pub(in crate::proxy) mod header_block;
pub(in crate::proxy) mod header_lines;
pub(in crate::proxy) mod header_maps;
pub(in crate::proxy) mod headers;
pub(in crate::proxy) mod message_body;
pub(in crate::proxy) mod server;
