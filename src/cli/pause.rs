//! `kamal-proxy pause <service>`: hold new requests until `resume`; returns once in-flight
//! requests have drained.

use std::time::Duration;

use clap::Args;

use super::args;
use crate::control::{self, BusChoice, PauseOptions, ServiceName};

#[derive(Debug, Args)]
pub struct PauseArgs {
    /// The service to pause
    #[arg(value_name = "SERVICE")]
    service: Vec<String>,
    /// How long in-flight requests may take to finish [default: 30s]
    #[arg(long, value_name = "DURATION", value_parser = args::duration)]
    drain_timeout: Option<Duration>,
    /// How long a request is held before it fails [default: 30s]
    #[arg(long, value_name = "DURATION", value_parser = args::duration)]
    max_pause: Option<Duration>,
}

impl PauseArgs {
    pub async fn execute(self, bus: &BusChoice) -> Result<(), String> {
        let (service, options) = self.into_request()?;
        control::connect(bus).await?.pause(&service, &options).await
    }

    fn into_request(self) -> Result<(ServiceName, PauseOptions), String> {
        let service = args::one_service(self.service)?;
        let options = PauseOptions {
            drain_timeout: self.drain_timeout,
            max_pause: self.max_pause,
        };
        Ok((service, options))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, ClientCommand, Command};
    use clap::Parser;

    fn pause(argv: &[&str]) -> Result<(ServiceName, PauseOptions), String> {
        let argv = ["kamal-proxy", "pause"].iter().chain(argv);
        match Cli::try_parse_from(argv)
            .map_err(|e| e.to_string())?
            .command
        {
            Command::Client(ClientCommand::Pause(args)) => args.into_request(),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn sends_only_the_timeouts_given() {
        let (service, options) =
            pause(&["app-web", "--drain-timeout=5s", "--max-pause", "1m"]).unwrap();
        assert_eq!(service.as_str(), "app-web");
        assert_eq!(options.drain_timeout, Some(Duration::from_secs(5)));
        assert_eq!(options.max_pause, Some(Duration::from_secs(60)));
        assert_eq!(pause(&["app-web"]).unwrap().1, PauseOptions::default());
        assert!(pause(&["app-web", "--max-pause=30"])
            .unwrap_err()
            .contains("missing unit"));
        assert_eq!(pause(&[]).unwrap_err(), "accepts 1 arg(s), received 0");
    }
}
