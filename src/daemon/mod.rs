//! The daemon: startup and shutdown order, listeners, logging.

mod config;

pub use config::RunConfig;
