//! The daemon: startup and shutdown order, listeners, logging.

mod config;

pub use config::RunConfig;

/// Placeholder until the daemon lands from the lead's branch (dropped at merge).
pub async fn run(_config: RunConfig) -> Result<(), String> {
    Err("daemon not built in this branch".into())
}
