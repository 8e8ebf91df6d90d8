//! Log output: one JSON object per line on stdout, in the Go proxy's shape (`time`, `level`,
//! `msg`, then fields), because Kamal's tooling and operators' log pipelines read that.
//!
//! Lifecycle messages are `tracing` events formatted by `JsonLayer`; per-request lines are
//! written directly through `JsonLine`, since their field set (`req_<header>`) is only
//! known at deploy time.

mod json_layer;
mod json_line;

pub use json_layer::JsonLayer;
pub use json_line::JsonLine;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;

/// Installs the JSON layer for this process; `debug` lowers the level to DEBUG.
pub fn init(debug: bool) {
    let level = if debug {
        LevelFilter::DEBUG
    } else {
        LevelFilter::INFO
    };
    let subscriber = tracing_subscriber::registry().with(JsonLayer::new(level));
    // A second init (tests that start the daemon in-process twice) keeps the first subscriber.
    let _ = tracing::subscriber::set_global_default(subscriber);
}
