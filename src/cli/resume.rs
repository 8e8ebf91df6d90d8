//! `kamal-proxy resume <service>`: undo `pause` or `stop` (Kamal's `app live`).

use clap::Args;

use super::args;
use crate::control::{self, BusChoice};

#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The service to resume
    #[arg(value_name = "SERVICE")]
    service: Vec<String>,
}

impl ResumeArgs {
    pub async fn execute(self, bus: &BusChoice) -> Result<(), String> {
        let service = args::one_service(self.service)?;
        control::connect(bus).await?.resume(&service).await
    }
}

#[cfg(test)]
mod tests {
    use crate::cli::{Cli, ClientCommand, Command};
    use clap::Parser;

    #[test]
    fn takes_exactly_one_service_name() {
        let argv = ["kamal-proxy", "resume", "app-web"];
        let Command::Client(ClientCommand::Resume(args)) =
            Cli::try_parse_from(argv).unwrap().command
        else {
            panic!("not resume");
        };
        assert_eq!(args.service, ["app-web"]);
        assert!(Cli::try_parse_from(["kamal-proxy", "resume", "app", "--target=web:80"]).is_err());
    }
}
