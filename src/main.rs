//! The `kamal-proxy` binary: parse the command line, then run the daemon (or, in the Kamal
//! image, attach to it) or make one call.

use std::process::ExitCode;

use clap::Parser;
use kamal_proxy::cli::{self, Cli, Command, RunMode};
use kamal_proxy::{daemon, kamal};

/// mimalloc rather than glibc's malloc: every proxied request allocates and frees a few
/// small blocks on its worker thread, which mimalloc's thread-local free lists serve in
/// a fraction of the instructions.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    match Cli::try_parse() {
        Ok(Cli { bus, command }) => cli::report(match command {
            Command::Run(args) => match args.mode(bus, |name| std::env::var(name).ok()) {
                Ok(RunMode::Serve(config)) => daemon::run(config).await,
                Ok(RunMode::Attach(config)) => kamal::attach::run(config).await,
                Err(message) => Err(message),
            },
            Command::GenerateDocs(args) => args.execute(),
            Command::Client(command) => command.execute(&bus).await,
        }),
        Err(error) => cli::report_parse_error(error),
    }
}
