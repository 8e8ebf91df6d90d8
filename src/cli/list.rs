//! `kamal-proxy list` (alias `ls`): the services as the Go proxy's table, or `--json`.
//!
//! The table is byte-for-byte Go's (`internal/cmd/formatting.go`): ANSI styles always, even
//! when stdout is not a terminal, because scripts written against it may expect them. `--json`
//! is ours, for scripts that would rather not parse the table. Held deploy locks (host-wide
//! or of a listed service) are noted in a line each after the table, after a line per
//! automatic certificate whose last order failed; `--json` stays as is.

use std::io::Write;

use clap::Args;

use super::args;
use super::lock::describe;
use crate::control::{self, BusChoice, Client, ServiceName, ServiceSummary};

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print a JSON array instead of the table
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = args::go_bool)]
    json: Option<bool>,
}

impl ListArgs {
    pub async fn execute(self, bus: &BusChoice) -> Result<(), String> {
        let client = control::connect(bus).await?;
        let mut services = client.list().await?;
        services.sort_by(|a, b| a.name.cmp(&b.name));
        let output = if self.json == Some(true) {
            // Serialising plain strings, lists and bools cannot fail.
            serde_json::to_string(&services).expect("a ServiceSummary is always valid JSON") + "\n"
        } else {
            table(&services)
                + &certificate_lines(&client, &services).await?
                + &lock_lines(&client, &services).await?
        };
        std::io::stdout()
            .lock()
            .write_all(output.as_bytes())
            .map_err(|error| format!("cannot write the list: {error}"))
    }
}

/// One line per automatic certificate whose last order failed.
async fn certificate_lines(client: &Client, services: &[ServiceSummary]) -> Result<String, String> {
    let mut lines = String::new();
    for service in services.iter().filter(|s| s.tls) {
        let Ok(name) = ServiceName::parse(&service.name) else {
            continue;
        };
        for (host, state, detail) in client.certificate_status(&name).await? {
            if state == "failed" {
                lines.push_str(&format!(
                    "TLS {name}: certificate for {host} failed: {detail}\n"
                ));
            }
        }
    }
    Ok(lines)
}

/// One line per held lock: the host's, then each listed service's.
async fn lock_lines(client: &Client, services: &[ServiceSummary]) -> Result<String, String> {
    let mut lines = String::new();
    if let Some(lock) = client.lock_status(None).await? {
        lines.push_str(&format!(
            "Deploy lock: {}\n",
            describe(&lock).replace('\n', ", ")
        ));
    }
    for service in services {
        // Names come from the daemon, which only accepts valid ones.
        let Ok(name) = ServiceName::parse(&service.name) else {
            continue;
        };
        if let Some(lock) = client.lock_status(Some(&name)).await? {
            lines.push_str(&format!(
                "Deploy lock on {name}: {}\n",
                describe(&lock).replace('\n', ", ")
            ));
        }
    }
    Ok(lines)
}

const HEADER: [&str; 6] = ["Service", "Host", "Path", "Target", "State", "TLS"];

/// How a cell is styled: Go's `plain` (an empty SGR), `bold` and `italic`.
const PLAIN: &str = "";
const NAME: &str = "1;34";
const HEADING: &str = "3;94";

/// The rows under the header, each padded to its column's widest cell plus two spaces.
fn table(services: &[ServiceSummary]) -> String {
    let rows: Vec<[String; 6]> = std::iter::once(HEADER.map(String::from))
        .chain(services.iter().map(row))
        .collect();
    let mut widths = [0; 6];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut output = String::new();
    for (number, row) in rows.iter().enumerate() {
        for (column, (cell, width)) in row.iter().zip(widths).enumerate() {
            let style = match (number, column) {
                (0, _) => HEADING,
                (_, 0) => NAME,
                _ => PLAIN,
            };
            let pad = width - cell.chars().count();
            output.push_str(&format!("\x1b[{style}m{cell}\x1b[0m{:pad$}  ", ""));
        }
        output.push('\n');
    }
    output
}

fn row(service: &ServiceSummary) -> [String; 6] {
    let host = if service.hosts.is_empty() {
        "*".to_string()
    } else {
        service.hosts.join(",")
    };
    [
        service.name.clone(),
        host,
        service.path_prefixes.join(","),
        service.targets.join(","),
        service.state.clone(),
        if service.tls { "yes" } else { "no" }.to_string(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(name: &str, hosts: &[&str], targets: &[&str], tls: bool) -> ServiceSummary {
        ServiceSummary {
            name: name.into(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            path_prefixes: vec!["/".into()],
            targets: targets.iter().map(|t| t.to_string()).collect(),
            state: "running".into(),
            tls,
        }
    }

    #[test]
    fn renders_go_table_with_styles_and_padding_when_listing() {
        let services = [
            summary(
                "app-web",
                &["a.example.com", "b.example.com"],
                &["web-1:3000", "web-2:3000"],
                true,
            ),
            summary("db", &[], &["db:5432"], false),
        ];
        let expected = concat!(
            "\x1b[3;94mService\x1b[0m  \x1b[3;94mHost\x1b[0m                         ",
            "\x1b[3;94mPath\x1b[0m  \x1b[3;94mTarget\x1b[0m                 ",
            "\x1b[3;94mState\x1b[0m    \x1b[3;94mTLS\x1b[0m  \n",
            "\x1b[1;34mapp-web\x1b[0m  \x1b[ma.example.com,b.example.com\x1b[0m  ",
            "\x1b[m/\x1b[0m     \x1b[mweb-1:3000,web-2:3000\x1b[0m  ",
            "\x1b[mrunning\x1b[0m  \x1b[myes\x1b[0m  \n",
            "\x1b[1;34mdb\x1b[0m       \x1b[m*\x1b[0m                            ",
            "\x1b[m/\x1b[0m     \x1b[mdb:5432\x1b[0m                ",
            "\x1b[mrunning\x1b[0m  \x1b[mno\x1b[0m   \n",
        );
        assert_eq!(table(&services), expected);
    }

    #[test]
    fn prints_only_the_header_when_no_service_is_deployed() {
        assert_eq!(
            table(&[]),
            "\x1b[3;94mService\x1b[0m  \x1b[3;94mHost\x1b[0m  \x1b[3;94mPath\x1b[0m  \x1b[3;94mTarget\x1b[0m  \x1b[3;94mState\x1b[0m  \x1b[3;94mTLS\x1b[0m  \n"
        );
    }

    #[test]
    fn serialises_summaries_as_a_json_array() {
        let json = serde_json::to_string(&[summary("db", &[], &["db:5432"], false)]).unwrap();
        assert_eq!(
            json,
            r#"[{"name":"db","hosts":[],"path_prefixes":["/"],"targets":["db:5432"],"state":"running","tls":false}]"#
        );
    }
}
