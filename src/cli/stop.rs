//! `kamal-proxy stop <service>`: maintenance mode (Kamal's `app maintenance`); requests get
//! 503 with the message until `resume`. Returns once in-flight requests have drained.

use std::time::Duration;

use clap::Args;

use super::args;
use crate::control::{self, BusChoice, ServiceName, StopOptions};

#[derive(Debug, Args)]
pub struct StopArgs {
    /// The service to stop
    #[arg(value_name = "SERVICE")]
    service: Vec<String>,
    /// How long in-flight requests may take to finish [default: 30s]
    #[arg(long, value_name = "DURATION", value_parser = args::duration)]
    drain_timeout: Option<Duration>,
    /// Message shown on the maintenance page
    #[arg(long, value_name = "TEXT", value_parser = args::text)]
    message: Option<String>,
}

impl StopArgs {
    pub async fn execute(self, bus: &BusChoice) -> Result<(), String> {
        let (service, options) = self.into_request()?;
        control::connect(bus).await?.stop(&service, &options).await
    }

    fn into_request(self) -> Result<(ServiceName, StopOptions), String> {
        let service = args::one_service(self.service)?;
        let options = StopOptions {
            drain_timeout: self.drain_timeout,
            message: self.message,
        };
        Ok((service, options))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, ClientCommand, Command};
    use clap::Parser;

    fn stop(argv: &[&str]) -> Result<(ServiceName, StopOptions), String> {
        let argv = ["kamal-proxy", "stop"].iter().chain(argv);
        match Cli::try_parse_from(argv)
            .map_err(|e| e.to_string())?
            .command
        {
            Command::Client(ClientCommand::Stop(args)) => args.into_request(),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn keeps_the_message_verbatim_when_kamal_sends_maintenance() {
        // stop app-web --drain-timeout="30s" --message="Back at 5pm \"sharp\" $HOME", after
        // the shell: quotes unescaped, `$HOME` kept literally (Kamal escapes the `$`).
        let (service, options) = stop(&[
            "app-web",
            "--drain-timeout=30s",
            "--message=Back at 5pm \"sharp\" $HOME",
        ])
        .unwrap();
        assert_eq!(service.as_str(), "app-web");
        assert_eq!(options.drain_timeout, Some(Duration::from_secs(30)));
        assert_eq!(
            options.message.as_deref(),
            Some("Back at 5pm \"sharp\" $HOME")
        );
    }

    #[test]
    fn accepts_fractional_drains_and_literal_escapes() {
        let (_, options) =
            stop(&["app-web", "--drain-timeout=2.5s", "--message=a\\nb, c"]).unwrap();
        assert_eq!(options.drain_timeout, Some(Duration::from_millis(2500)));
        assert_eq!(options.message.as_deref(), Some("a\\nb, c"));
        assert_eq!(stop(&["app-web"]).unwrap().1, StopOptions::default());
    }
}
