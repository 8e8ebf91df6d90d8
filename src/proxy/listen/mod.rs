//! Where connections come in: the accept loops of the listeners (`accept`), the handoff
//! that moves a connection to the least loaded worker (`handoff`), and the client's address
//! spelled once per connection (`ip_text`).

pub(in crate::proxy) mod accept;
pub(in crate::proxy) mod handoff;
pub(in crate::proxy) mod ip_text;
