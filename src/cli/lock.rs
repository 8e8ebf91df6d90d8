//! `kamal-proxy lock acquire|release|status [--service NAME]`: Kamal's deploy lock, kept by
//! the proxy so every deployer on the host sees the same one.
//!
//! Without `--service` the lock is host-wide. The holder is whoever the daemon sees calling
//! (the bus or socket credentials), so there is no flag to name one. `status` prints Kamal's
//! wording; `acquire` and `release` are silent on success, like every other subcommand.

use clap::{Args, Subcommand};

use super::args;
use crate::control::{self, BusChoice, ServiceName};
use crate::lock::Lock;

#[derive(Debug, Args)]
pub struct LockArgs {
    #[command(subcommand)]
    action: LockAction,
}

/// The scope flag every action shares.
#[derive(Debug, Args)]
struct Scope {
    /// Lock only this service instead of the whole host
    #[arg(long, value_name = "NAME", value_parser = ServiceName::parse)]
    service: Option<ServiceName>,
}

#[derive(Debug, Subcommand)]
enum LockAction {
    /// Take the deploy lock; fails if someone holds it
    Acquire {
        /// Why the lock is taken (shown to whoever finds it held)
        #[arg(short, long, value_name = "MESSAGE", value_parser = args::text)]
        message: String,
        #[command(flatten)]
        scope: Scope,
    },
    /// Release the deploy lock, whoever holds it
    Release {
        #[command(flatten)]
        scope: Scope,
    },
    /// Show who holds the deploy lock
    Status {
        #[command(flatten)]
        scope: Scope,
    },
}

/// Kamal's `lock status` text for a held lock.
pub fn describe(lock: &Lock) -> String {
    format!(
        "Locked by: {} at {}\nMessage: {}",
        lock.holder,
        lock.since_text(),
        lock.message
    )
}

impl LockArgs {
    pub async fn execute(self, bus: &BusChoice) -> Result<(), String> {
        let client = control::connect(bus).await?;
        match self.action {
            LockAction::Acquire { message, scope } => {
                client.acquire_lock(scope.service.as_ref(), &message).await
            }
            LockAction::Release { scope } => client.release_lock(scope.service.as_ref()).await,
            LockAction::Status { scope } => {
                match client.lock_status(scope.service.as_ref()).await? {
                    Some(lock) => println!("{}", describe(&lock)),
                    None => println!("There is no deploy lock"),
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, ClientCommand, Command};
    use clap::Parser;

    fn action(argv: &[&str]) -> Result<LockAction, String> {
        let argv = ["kamal-proxy", "lock"].iter().chain(argv);
        match Cli::try_parse_from(argv)
            .map_err(|e| e.to_string())?
            .command
        {
            Command::Client(ClientCommand::Lock(args)) => Ok(args.action),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn reads_acquire_with_a_message_and_an_optional_service() {
        let LockAction::Acquire { message, scope } =
            action(&["acquire", "-m", "db migration", "--service=web"]).unwrap()
        else {
            panic!("not acquire");
        };
        assert_eq!(message, "db migration");
        assert_eq!(scope.service.unwrap().as_str(), "web");
        let LockAction::Acquire { scope, .. } = action(&["acquire", "--message=x"]).unwrap() else {
            panic!("not acquire");
        };
        assert!(scope.service.is_none());
    }

    #[test]
    fn refuses_acquire_without_a_message_and_bad_service_names() {
        assert!(action(&["acquire"]).unwrap_err().contains("--message"));
        assert!(action(&["status", "--service="])
            .unwrap_err()
            .contains("must not be empty"));
        assert!(action(&["release", "extra"]).is_err());
        assert!(action(&["frobnicate"]).is_err());
    }

    #[test]
    fn describes_a_held_lock_in_kamals_words() {
        let lock = Lock {
            holder: "root".into(),
            message: "db migration".into(),
            since_usec: 1_700_000_000_000_000,
        };
        assert_eq!(
            describe(&lock),
            "Locked by: root at 2023-11-14T22:13:20Z\nMessage: db migration"
        );
    }
}
