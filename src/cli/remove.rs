//! `kamal-proxy remove <service>` (alias `rm`): unroute a service at once, without draining.

use clap::Args;

use super::args;
use crate::control::{self, BusChoice};

#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The service to remove
    #[arg(value_name = "SERVICE")]
    service: Vec<String>,
}

impl RemoveArgs {
    pub async fn execute(self, bus: &BusChoice) -> Result<(), String> {
        let service = args::one_service(self.service)?;
        control::connect(bus).await?.remove(&service).await
    }
}

#[cfg(test)]
mod tests {
    use crate::cli::{Cli, ClientCommand, Command};
    use clap::Parser;

    #[test]
    fn takes_exactly_one_service_name() {
        let argv = ["kamal-proxy", "remove", "app-web"];
        let Command::Client(ClientCommand::Remove(args)) =
            Cli::try_parse_from(argv).unwrap().command
        else {
            panic!("not remove");
        };
        assert_eq!(args.service, ["app-web"]);
        let argv = ["kamal-proxy", "rm", "app-web"];
        let command = Cli::try_parse_from(argv).unwrap().command;
        assert!(matches!(command, Command::Client(ClientCommand::Remove(_))));
        assert!(Cli::try_parse_from(["kamal-proxy", "remove", "app", "--target=web:80"]).is_err());
    }
}
