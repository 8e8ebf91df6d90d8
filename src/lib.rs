//! kamal-proxy: a zero-downtime deploy proxy for Kamal, as a systemd-native host service.
//!
//! The map, from the edge inwards:
//! - `cli`: the Kamal-compatible command line; every subcommand but `run` is one control call.
//! - `control`: the contract CLI and daemon share (options, errors, D-Bus interface, transport).
//! - `daemon`: startup and shutdown order, listeners, logging.
//! - `router`: the typed control API (`Router::deploy`, ...) that owns every service.
//! - `routing`: the immutable host/path table the data plane reads without locks.
//! - `service`: a service's targets, health checks, load balancing, pause/stop and draining.
//! - `proxy`: the data plane: accept, route, forward, error pages, request log.
//! - `state`: the persisted routing table.
//! - `tls`: the HTTPS listener's certificates: files, ACME (HTTP-01, TLS-ALPN-01), SNI choice.
//! - `kamal`: the container side of the Kamal bridge: `run` in the image attaches to the daemon.
//! - `lock`: the host's deploy locks (advisory, persisted beside the state).
//! - `event`: what changed (deploys, health flips), announced to the D-Bus signals.
//! - `metrics`: the Prometheus series the data plane records and `--metrics-port` serves.

pub mod cli;
pub mod control;
pub mod daemon;
pub mod error_chain;
pub mod event;
pub mod go_duration;
pub mod kamal;
pub mod lock;
pub mod logging;
pub mod metrics;
pub mod proxy;
pub mod router;
pub mod routing;
pub mod service;
pub mod state;
pub mod tls;
