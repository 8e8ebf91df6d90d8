//! `kamal-proxy rollout deploy|set|stop <service>`: a second group of targets that takes a
//! chosen share of a service's traffic, flag for flag the Go proxy's.
//!
//! The three commands share one file because they only make sense together: `deploy` brings
//! up the rollout group (it takes no traffic yet), `set` chooses the requests it gets by
//! their `kamal-rollout` cookie, `stop` hands all traffic back to the active group. Only
//! flags the user gave are sent; defaults are the daemon's.

use std::time::Duration;

use clap::{Args, Subcommand};

use super::args::{self, CsvList};
use crate::control::{
    self, BusChoice, RolloutDeployOptions, RolloutSetOptions, ServiceName, TargetAddress,
};

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Deploy rollout targets for a service, waiting until they are healthy
    Deploy(RolloutDeployArgs),
    /// Choose which requests go to the rollout targets
    Set(RolloutSetArgs),
    /// Send every request to the active targets again
    Stop(RolloutStopArgs),
}

#[derive(Debug, Args)]
pub struct RolloutDeployArgs {
    /// The service to deploy rollout targets for
    #[arg(value_name = "SERVICE")]
    service: Vec<String>,
    /// Writer target(s), host[:port] (required)
    #[arg(long, value_name = "HOST:PORT", value_parser = args::list(TargetAddress::parse))]
    target: Vec<CsvList<TargetAddress>>,
    /// Read-only target(s), host[:port]
    #[arg(long, value_name = "HOST:PORT", value_parser = args::list(TargetAddress::parse))]
    read_target: Vec<CsvList<TargetAddress>>,
    /// How long the targets may take to become healthy [default: 30s]
    #[arg(long, value_name = "DURATION", value_parser = args::duration)]
    deploy_timeout: Option<Duration>,
    /// How long replaced rollout targets may take to finish requests [default: 30s]
    #[arg(long, value_name = "DURATION", value_parser = args::duration)]
    drain_timeout: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct RolloutSetArgs {
    /// The service whose split to set
    #[arg(value_name = "SERVICE")]
    service: Vec<String>,
    /// Share of kamal-rollout cookie values sent to the rollout targets, 0 to 100
    #[arg(long, value_name = "PERCENT", value_parser = args::int, allow_negative_numbers = true)]
    percent: Option<i32>,
    /// kamal-rollout cookie values always sent to the rollout targets
    #[arg(long, value_name = "VALUE", value_parser = args::list(args::text))]
    list: Vec<CsvList<String>>,
}

#[derive(Debug, Args)]
pub struct RolloutStopArgs {
    /// The service whose rollout to stop
    #[arg(value_name = "SERVICE")]
    service: Vec<String>,
}

/// A checked `rollout deploy`, ready to send.
#[derive(Debug)]
struct RolloutDeploy {
    service: ServiceName,
    targets: Vec<TargetAddress>,
    options: RolloutDeployOptions,
}

impl RolloutCommand {
    pub async fn execute(self, bus: &BusChoice) -> Result<(), String> {
        match self {
            RolloutCommand::Deploy(args) => {
                let deploy = args.into_deploy()?;
                control::connect(bus)
                    .await?
                    .rollout_deploy(&deploy.service, &deploy.targets, &deploy.options)
                    .await
            }
            RolloutCommand::Set(args) => {
                let (service, options) = args.into_request()?;
                control::connect(bus)
                    .await?
                    .rollout_set(&service, &options)
                    .await
            }
            RolloutCommand::Stop(args) => {
                let service = args::one_service(args.service)?;
                control::connect(bus).await?.rollout_stop(&service).await
            }
        }
    }
}

impl RolloutDeployArgs {
    fn into_deploy(self) -> Result<RolloutDeploy, String> {
        let service = args::one_service(self.service)?;
        let targets = args::joined(self.target)
            .filter(|targets| !targets.is_empty())
            .ok_or_else(|| "required flag(s) \"target\" not set".to_string())?;
        let options = RolloutDeployOptions {
            read_targets: args::joined(self.read_target),
            deploy_timeout: self.deploy_timeout,
            drain_timeout: self.drain_timeout,
        };
        Ok(RolloutDeploy {
            service,
            targets,
            options,
        })
    }
}

impl RolloutSetArgs {
    fn into_request(self) -> Result<(ServiceName, RolloutSetOptions), String> {
        let service = args::one_service(self.service)?;
        let options = RolloutSetOptions {
            percent: self.percent,
            allowlist: args::joined(self.list),
        };
        if options == RolloutSetOptions::default() {
            // cobra's MarkFlagsOneRequired message.
            return Err(
                "at least one of the flags in the group [percent list] is required".to_string(),
            );
        }
        Ok((service, options))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, ClientCommand, Command};
    use clap::Parser;

    fn rollout(argv: &[&str]) -> Result<RolloutCommand, String> {
        let argv = ["kamal-proxy", "rollout"].iter().chain(argv);
        match Cli::try_parse_from(argv)
            .map_err(|e| e.to_string())?
            .command
        {
            Command::Client(ClientCommand::Rollout(command)) => Ok(command),
            other => panic!("parsed as {other:?}"),
        }
    }

    fn deploy(argv: &[&str]) -> Result<RolloutDeploy, String> {
        match rollout(&[&["deploy"], argv].concat())? {
            RolloutCommand::Deploy(args) => args.into_deploy(),
            other => panic!("parsed as {other:?}"),
        }
    }

    fn set(argv: &[&str]) -> Result<(ServiceName, RolloutSetOptions), String> {
        match rollout(&[&["set"], argv].concat())? {
            RolloutCommand::Set(args) => args.into_request(),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn sends_only_the_deploy_flags_given() {
        let sent = deploy(&[
            "web",
            "--target=web-a:80,web-b:80",
            "--read-target",
            "rd:80",
            "--drain-timeout=2s",
        ])
        .unwrap();
        assert_eq!(sent.service.as_str(), "web");
        assert_eq!(sent.targets.len(), 2);
        assert_eq!(sent.options.read_targets.unwrap()[0].as_str(), "rd:80");
        assert_eq!(sent.options.drain_timeout, Some(Duration::from_secs(2)));
        assert_eq!(sent.options.deploy_timeout, None);
    }

    #[test]
    fn refuses_a_deploy_without_targets_or_with_bad_values() {
        assert_eq!(
            deploy(&["web"]).unwrap_err(),
            "required flag(s) \"target\" not set"
        );
        assert!(deploy(&["web", "--target=web-a:80", "--deploy-timeout=5"])
            .unwrap_err()
            .contains("missing unit"));
        assert!(deploy(&["web", "--target=web-a:99999"])
            .unwrap_err()
            .contains("web-a:99999"));
        assert_eq!(
            deploy(&["--target=web-a:80"]).unwrap_err(),
            "accepts 1 arg(s), received 0"
        );
    }

    #[test]
    fn needs_percent_or_list_when_setting_a_split() {
        let (_, options) = set(&["web", "--percent=25", "--list=a,b", "--list", "c"]).unwrap();
        assert_eq!(options.percent, Some(25));
        assert_eq!(options.allowlist.unwrap(), ["a", "b", "c"]);
        assert_eq!(set(&["web", "--list=a"]).unwrap().1.percent, None);
        assert_eq!(
            set(&["web"]).unwrap_err(),
            "at least one of the flags in the group [percent list] is required"
        );
        assert!(set(&["web", "--percent=ten"]).unwrap_err().contains("ten"));
        assert_eq!(set(&["web", "--percent=-5"]).unwrap().1.percent, Some(-5));
    }

    #[test]
    fn parses_stop_with_exactly_one_service() {
        assert!(matches!(
            rollout(&["stop", "web"]).unwrap(),
            RolloutCommand::Stop(_)
        ));
        assert!(rollout(&["stop", "web", "--percent=1"]).is_err());
    }
}
