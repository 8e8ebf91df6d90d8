//! Message bodies between client and target: every response body the proxy sends
//! (`proxy_body`, `proxy_response`), a body relayed as it comes (`relay_body`,
//! `request_body`), or held whole in memory and a temp file (`spill_buffer`) when the
//! service buffers requests (`request_buffer`) or responses (`response_buffer`).

pub(in crate::proxy) mod proxy_body;
pub(in crate::proxy) mod proxy_response;
pub(in crate::proxy) mod relay_body;
pub(in crate::proxy) mod request_body;
pub(in crate::proxy) mod request_buffer;
pub(in crate::proxy) mod response_buffer;
pub(in crate::proxy) mod spill_buffer;
