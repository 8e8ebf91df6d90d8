//! `kamal-proxy version`: this binary's version, the same line as `--version`. It asks no
//! daemon, so it works on a host where the proxy is not running.

use clap::Args;

#[derive(Debug, Args)]
pub struct VersionArgs {}

impl VersionArgs {
    pub fn execute(self) -> Result<(), String> {
        println!("{}", line());
        Ok(())
    }
}

/// `kamal-proxy <version>`, as clap prints it for `--version`.
fn line() -> String {
    format!("kamal-proxy {}", env!("CARGO_PKG_VERSION"))
}
