//! The Kamal-compatible command line: clap definitions, one file per subcommand.
//!
//! Kamal drives the proxy over SSH with the Go proxy's flags and only looks at the exit
//! status, so the surface is the Go one (cobra/pflag syntax, `Error: <message>` on stderr,
//! exit 1) plus `--bus`, `list --json` and `version`. `run` becomes a `RunConfig` for the
//! daemon; every other subcommand checks its arguments, then makes one control call.

mod args;
mod deploy;
mod deploy_files;
mod generate_docs;
mod list;
mod lock;
mod pause;
mod remove;
mod resume;
mod rollout;
mod run;
mod stop;
mod version;

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{Parser, Subcommand};

use crate::control::BusChoice;
pub use deploy::DeployArgs;
pub use generate_docs::GenerateDocsArgs;
pub use list::ListArgs;
pub use lock::LockArgs;
pub use pause::PauseArgs;
pub use remove::RemoveArgs;
pub use resume::ResumeArgs;
pub use rollout::RolloutCommand;
pub use run::{RunArgs, RunMode};
pub use stop::StopArgs;
pub use version::VersionArgs;

#[derive(Debug, Parser)]
#[command(
    name = "kamal-proxy",
    version,
    about = "Zero-downtime deploy proxy for Kamal",
    // pflag lets a flag repeat, the last one winning; clap would refuse.
    args_override_self = true,
    arg_required_else_help = true
)]
pub struct Cli {
    /// Where the daemon's control interface is: auto, system, session, none (the unix
    /// socket) or a D-Bus address
    #[arg(long, global = true, default_value = "auto", value_name = "BUS", value_parser = BusChoice::parse)]
    pub bus: BusChoice,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy
    Run(RunArgs),
    /// Write the man page and shell completions into a directory (package builds)
    #[command(hide = true)]
    GenerateDocs(GenerateDocsArgs),
    #[command(flatten)]
    Client(ClientCommand),
}

/// The subcommands that talk to a running daemon (or, for `version`, to nobody).
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Deploy a service, waiting until its new targets are healthy and the old ones drained
    // Boxed: its forty flags would otherwise make every command as large as a deploy.
    Deploy(Box<DeployArgs>),
    /// Remove a service
    #[command(visible_alias = "rm")]
    Remove(RemoveArgs),
    /// List the services currently deployed
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// Pause a service: hold its requests until it is resumed
    Pause(PauseArgs),
    /// Stop a service: answer 503 (maintenance) until it is resumed
    Stop(StopArgs),
    /// Resume a paused or stopped service
    Resume(ResumeArgs),
    /// Manage the deploy lock (host-wide, or per service with --service)
    Lock(LockArgs),
    /// Deploy a second group of targets and send a share of requests to it
    #[command(subcommand)]
    Rollout(RolloutCommand),
    /// Show the version
    Version(VersionArgs),
}

impl ClientCommand {
    pub async fn execute(self, bus: &BusChoice) -> Result<(), String> {
        match self {
            ClientCommand::Deploy(args) => (*args).execute(bus).await,
            ClientCommand::Remove(args) => args.execute(bus).await,
            ClientCommand::List(args) => args.execute(bus).await,
            ClientCommand::Pause(args) => args.execute(bus).await,
            ClientCommand::Stop(args) => args.execute(bus).await,
            ClientCommand::Resume(args) => args.execute(bus).await,
            ClientCommand::Lock(args) => args.execute(bus).await,
            ClientCommand::Rollout(command) => command.execute(bus).await,
            ClientCommand::Version(args) => args.execute(),
        }
    }
}

/// Prints the outcome the way cobra does and gives the exit status Kamal checks.
pub fn report(outcome: Result<(), String>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("Error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// A command line clap did not run: help and version are printed (exit 0), anything else is
/// reported as one `Error:` line without clap's usage text.
pub fn report_parse_error(error: clap::Error) -> ExitCode {
    match error.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            // Nothing sensible is left to do if even the help cannot be written.
            let _ = error.print();
            ExitCode::SUCCESS
        }
        _ => report(Err(parse_error_message(&error))),
    }
}

/// clap's message as one line: its first paragraph, without the `error: ` prefix, the usage
/// and the tips.
fn parse_error_message(error: &clap::Error) -> String {
    let text = error.to_string();
    let first_paragraph = text.split("\n\n").next().unwrap_or_default();
    let message = first_paragraph
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    message
        .strip_prefix("error: ")
        .unwrap_or(&message)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_error(argv: &[&str]) -> String {
        parse_error_message(&Cli::try_parse_from(argv).unwrap_err())
    }

    #[test]
    fn checks_the_clap_definitions_when_built() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn reports_clap_errors_as_one_line_without_usage() {
        assert_eq!(
            parse_error(&["kamal-proxy", "deploy", "a", "--colour=blue"]),
            "unexpected argument '--colour' found"
        );
        assert_eq!(
            parse_error(&["kamal-proxy", "frobnicate"]),
            "unrecognized subcommand 'frobnicate'"
        );
        let error = parse_error(&["kamal-proxy", "deploy", "a", "--deploy-timeout=30"]);
        assert!(
            !error.contains('\n') && !error.starts_with("error"),
            "{error}"
        );
        assert!(
            error.contains("time: missing unit in duration \"30\""),
            "{error}"
        );
    }

    #[test]
    fn reads_the_global_bus_flag_anywhere_when_parsing() {
        let cli = Cli::try_parse_from(["kamal-proxy", "list", "--bus", "session"]).unwrap();
        assert_eq!(cli.bus, BusChoice::Session);
        let cli = Cli::try_parse_from(["kamal-proxy", "--bus=unix:path=/tmp/b", "ls"]).unwrap();
        assert_eq!(cli.bus, BusChoice::Address("unix:path=/tmp/b".into()));
        let cli = Cli::try_parse_from(["kamal-proxy", "rm", "app"]).unwrap();
        assert_eq!(cli.bus, BusChoice::Auto);
        assert!(parse_error(&["kamal-proxy", "--bus=sytem", "ls"]).contains("\"sytem\""));
    }

    #[test]
    fn answers_help_and_version_without_an_error() {
        for argv in [
            &["kamal-proxy", "--help"][..],
            &["kamal-proxy", "-h"],
            &["kamal-proxy", "help"],
            &["kamal-proxy", "help", "deploy"],
            &["kamal-proxy", "deploy", "--help"],
        ] {
            let kind = Cli::try_parse_from(argv).unwrap_err().kind();
            assert_eq!(kind, ErrorKind::DisplayHelp, "{argv:?}");
        }
        let version = Cli::try_parse_from(["kamal-proxy", "--version"]).unwrap_err();
        assert_eq!(version.kind(), ErrorKind::DisplayVersion);
        assert_eq!(
            version.to_string(),
            format!("kamal-proxy {}\n", env!("CARGO_PKG_VERSION"))
        );
    }
}
