//! Prometheus metrics: the Go proxy's series, recorded on the request path and served as
//! text on `--metrics-port`.
//!
//! - `registry`: `Metrics`, the daemon-owned store (passed as an `Arc`, never global) of
//!   one `WorkerMetrics` per data-plane worker, and `RequestMetrics`, one request's share.
//! - `series_hasher`: the cheap hash of a series key, looked up per request.
//! - `exposition`: the Prometheus text format (0.0.4) of a `Metrics`.
//! - `server`: the `/metrics` listener.
//!
//! Hand-rolled rather than `prometheus-client`: three fixed series are little code, the
//! text is exactly the classic format Go's client serves, and the request path stays at a
//! couple of atomic adds under read locks, with no label strings built per request (a
//! `Family` lookup would need an owned label set each time).

mod exposition;
mod registry;
mod series_hasher;
mod server;

pub use registry::{Metrics, RequestMetrics, WorkerMetrics};
pub use server::serve;
