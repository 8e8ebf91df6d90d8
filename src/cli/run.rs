//! `kamal-proxy run`: the daemon's command line, flags and environment, as a `RunConfig`.
//!
//! Each of `--http-port`, `--https-port`, `--metrics-port`, `--debug` and `--bind` may also
//! come from `KAMAL_PROXY_<NAME>`, else `<NAME>`, as in Go; an explicit flag wins. Unlike Go,
//! an unparsable variable is an error naming it: silently binding port 80 instead of the
//! port someone asked for is worse than refusing to start. An empty variable counts as unset.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::Args;

use super::args::{self, CsvList};
use crate::control::BusChoice;
use crate::daemon::RunConfig;
use crate::kamal::attach::AttachConfig;
use crate::kamal::ATTACH_VARIABLE;
use crate::logging::LogFormat;
use crate::tls::acme::challenge_kind::{ChallengeKind, DEFAULT_PREFERENCE};

const DEFAULT_HTTP_PORT: u16 = 80;
const DEFAULT_HTTPS_PORT: u16 = 443;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Port of the HTTP listener [env: HTTP_PORT] [default: 80]
    #[arg(long, value_name = "PORT", value_parser = args::port)]
    http_port: Option<u16>,
    /// Port of the HTTPS listener [env: HTTPS_PORT] [default: 443]
    #[arg(long, value_name = "PORT", value_parser = args::port)]
    https_port: Option<u16>,
    /// Port of the Prometheus endpoint; 0 turns it off [env: METRICS_PORT] [default: 0]
    #[arg(long, value_name = "PORT", value_parser = args::port)]
    metrics_port: Option<u16>,
    /// Log at debug level [env: DEBUG]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = args::go_bool)]
    debug: Option<bool>,
    /// Also serve HTTP/3 (not supported yet)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = args::go_bool)]
    http3: Option<bool>,
    /// IP address(es) to listen on; none means every interface [env: BIND]
    #[arg(long, value_name = "ADDR", value_parser = args::list(ip_address))]
    bind: Vec<CsvList<IpAddr>>,
    /// PEM root certificate to trust, besides the system's, when talking to ACME CAs
    #[arg(long, value_name = "PATH")]
    acme_ca_cert: Option<PathBuf>,
    /// ACME challenges to answer, preferred first [default: tls-alpn-01,http-01]
    #[arg(long, value_name = "LIST", value_parser = args::list(|text: &str| text.parse::<ChallengeKind>()))]
    acme_challenges: Vec<CsvList<ChallengeKind>>,
    /// Log output: auto (the journal under systemd, else JSON), journal, json or text
    #[arg(long, value_name = "FORMAT", default_value = "auto", value_parser = str::parse::<LogFormat>)]
    log_format: LogFormat,
    /// Write a log line per request (metrics are kept either way)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = args::go_bool)]
    log_requests: Option<bool>,
}

/// What `run` is to do.
#[derive(Debug)]
pub enum RunMode {
    /// Be the daemon.
    Serve(RunConfig),
    /// In the Kamal image (`KAMAL_PROXY_ATTACH=1`): attach to the host's daemon.
    Attach(AttachConfig),
}

impl RunArgs {
    /// Serve, or in the Kamal image attach; both read the environment through `env`.
    pub fn mode(
        self,
        bus: BusChoice,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<RunMode, String> {
        let attach = env(ATTACH_VARIABLE)
            .filter(|value| !value.is_empty())
            .map(|value| {
                args::go_bool(&value).map_err(|why| {
                    format!("invalid value \"{value}\" in environment variable {ATTACH_VARIABLE}: {why}")
                })
            })
            .transpose()?;
        if attach != Some(true) {
            return self.config(bus, env).map(RunMode::Serve);
        }
        let debug = or_env(self.debug, || {
            Environment(&env).read("DEBUG", args::go_bool)
        })?;
        Ok(RunMode::Attach(AttachConfig {
            debug: debug.unwrap_or(false),
            ignored_flags: self.daemon_flags_given(),
        }))
    }

    /// The flags given that configure the daemon, which an attached container cannot honour.
    fn daemon_flags_given(&self) -> Vec<String> {
        let mut given = Vec::new();
        let mut note = |set: bool, flag: String| {
            if set {
                given.push(flag)
            }
        };
        note(
            self.http_port.is_some(),
            format!("--http-port {}", self.http_port.unwrap_or_default()),
        );
        note(
            self.https_port.is_some(),
            format!("--https-port {}", self.https_port.unwrap_or_default()),
        );
        note(
            self.metrics_port.is_some(),
            format!("--metrics-port {}", self.metrics_port.unwrap_or_default()),
        );
        note(self.http3.is_some(), "--http3".into());
        note(!self.bind.is_empty(), "--bind".into());
        note(self.acme_ca_cert.is_some(), "--acme-ca-cert".into());
        note(!self.acme_challenges.is_empty(), "--acme-challenges".into());
        note(self.log_requests.is_some(), "--log-requests".into());
        given
    }

    /// The daemon's configuration from these flags, then the environment seen through
    /// `env`, then the defaults.
    pub fn config(
        self,
        bus: BusChoice,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<RunConfig, String> {
        if self.http3 == Some(true) {
            return Err("--http3 is not supported yet".to_string());
        }
        let env = Environment(&env);
        let http_port = or_env(self.http_port, || env.read("HTTP_PORT", args::port))?;
        let https_port = or_env(self.https_port, || env.read("HTTPS_PORT", args::port))?;
        let metrics_port = or_env(self.metrics_port, || env.read("METRICS_PORT", args::port))?;
        let debug = or_env(self.debug, || env.read("DEBUG", args::go_bool))?;
        let bind = match args::joined(self.bind) {
            Some(addresses) => addresses,
            None => env
                .read("BIND", args::list(ip_address))?
                .map(|list| list.0)
                .unwrap_or_default(),
        };
        Ok(RunConfig {
            http_port: http_port.unwrap_or(DEFAULT_HTTP_PORT),
            https_port: https_port.unwrap_or(DEFAULT_HTTPS_PORT),
            metrics_port: metrics_port.filter(|port| *port != 0),
            debug: debug.unwrap_or(false),
            bind,
            bus,
            acme_ca_cert: self.acme_ca_cert,
            acme_challenges: args::joined(self.acme_challenges)
                .unwrap_or_else(|| DEFAULT_PREFERENCE.to_vec()),
            log_format: self.log_format,
            log_requests: self.log_requests.unwrap_or(true),
        })
    }
}

/// The flag's value if given, else the environment's.
fn or_env<T>(
    flag: Option<T>,
    from_env: impl FnOnce() -> Result<Option<T>, String>,
) -> Result<Option<T>, String> {
    match flag {
        Some(value) => Ok(Some(value)),
        None => from_env(),
    }
}

/// The process environment (or a test's), read by Go's `KAMAL_PROXY_<NAME>`-then-`<NAME>` rule.
struct Environment<'a, F: Fn(&str) -> Option<String>>(&'a F);

impl<F: Fn(&str) -> Option<String>> Environment<'_, F> {
    fn read<T>(
        &self,
        name: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, String> {
        for variable in [format!("KAMAL_PROXY_{name}"), name.to_string()] {
            if let Some(value) = (self.0)(&variable).filter(|value| !value.is_empty()) {
                return parse(&value).map(Some).map_err(|why| {
                    format!("invalid value \"{value}\" in environment variable {variable}: {why}")
                });
            }
        }
        Ok(None)
    }
}

fn ip_address(text: &str) -> Result<IpAddr, String> {
    text.parse()
        .map_err(|_| format!("invalid IP address \"{text}\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;
    use std::collections::HashMap;

    /// `kamal-proxy run <argv>` parsed, with `env` as the environment, handed to `decide`.
    fn parsed<T>(
        argv: &[&str],
        env: &[(&str, &str)],
        decide: impl FnOnce(RunArgs, BusChoice, &dyn Fn(&str) -> Option<String>) -> Result<T, String>,
    ) -> Result<T, String> {
        let argv = ["kamal-proxy", "run"].iter().chain(argv);
        let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        match cli.command {
            Command::Run(args) => decide(args, cli.bus, &|name| env.get(name).cloned()),
            other => panic!("parsed as {other:?}"),
        }
    }

    fn run(argv: &[&str], env: &[(&str, &str)]) -> Result<RunConfig, String> {
        parsed(argv, env, |args, bus, env| args.config(bus, env))
    }

    fn mode(argv: &[&str], env: &[(&str, &str)]) -> Result<RunMode, String> {
        parsed(argv, env, |args, bus, env| args.mode(bus, env))
    }

    #[test]
    fn attaches_in_the_kamal_image_and_names_the_daemon_flags_it_ignores() {
        let attach = [("KAMAL_PROXY_ATTACH", "1")];
        match mode(&["--debug", "--metrics-port", "9090"], &attach).unwrap() {
            RunMode::Attach(config) => assert_eq!(
                config,
                AttachConfig {
                    debug: true,
                    ignored_flags: vec!["--metrics-port 9090".into()],
                }
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(mode(&[], &[]).unwrap(), RunMode::Serve(_)));
        assert!(matches!(
            mode(&[], &[("KAMAL_PROXY_ATTACH", "false")]).unwrap(),
            RunMode::Serve(_)
        ));
        assert!(mode(&[], &[("KAMAL_PROXY_ATTACH", "yes")])
            .unwrap_err()
            .contains("KAMAL_PROXY_ATTACH"));
    }

    #[test]
    fn uses_go_defaults_when_nothing_is_set() {
        let config = run(&[], &[]).unwrap();
        assert_eq!(
            config,
            RunConfig {
                http_port: 80,
                https_port: 443,
                metrics_port: None,
                debug: false,
                bind: vec![],
                bus: BusChoice::Auto,
                acme_ca_cert: None,
                acme_challenges: DEFAULT_PREFERENCE.to_vec(),
                log_format: LogFormat::Auto,
                log_requests: true,
            }
        );
    }

    #[test]
    fn reads_kamal_run_flags_with_space_separated_values() {
        let config = run(&["--debug", "--metrics-port", "9090", "--bus=none"], &[]).unwrap();
        assert!(config.debug);
        assert_eq!(config.metrics_port, Some(9090));
        assert_eq!(config.bus, BusChoice::None);
        let config = run(
            &[
                "--http-port=8080",
                "--https-port",
                "8443",
                "--bind=127.0.0.1,::1",
            ],
            &[],
        )
        .unwrap();
        assert_eq!((config.http_port, config.https_port), (8080, 8443));
        assert_eq!(
            config.bind,
            [
                "127.0.0.1".parse::<IpAddr>().unwrap(),
                "::1".parse().unwrap()
            ]
        );
    }

    #[test]
    fn prefers_flag_then_prefixed_then_plain_variable() {
        let env = [
            ("KAMAL_PROXY_HTTP_PORT", "8001"),
            ("HTTP_PORT", "8002"),
            ("HTTPS_PORT", "8443"),
            ("METRICS_PORT", "9000"),
            ("DEBUG", "1"),
            ("BIND", "10.0.0.1"),
        ];
        let config = run(&[], &env).unwrap();
        assert_eq!(config.http_port, 8001);
        assert_eq!(config.https_port, 8443);
        assert_eq!(config.metrics_port, Some(9000));
        assert!(config.debug);
        assert_eq!(config.bind, ["10.0.0.1".parse::<IpAddr>().unwrap()]);
        let config = run(&["--http-port=81", "--debug=false", "--bind=::"], &env).unwrap();
        assert_eq!(config.http_port, 81);
        assert!(!config.debug);
        assert_eq!(config.bind, ["::".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn names_the_variable_when_its_value_is_bad() {
        assert_eq!(
            run(&[], &[("HTTP_PORT", "abc")]).unwrap_err(),
            "invalid value \"abc\" in environment variable HTTP_PORT: expected a port number"
        );
        let error = run(&[], &[("KAMAL_PROXY_DEBUG", "yes"), ("DEBUG", "1")]).unwrap_err();
        assert!(error.contains("KAMAL_PROXY_DEBUG"), "{error}");
        let error = run(&[], &[("BIND", "10.0.0.1,nope")]).unwrap_err();
        assert!(
            error.contains("BIND") && error.contains("\"nope\""),
            "{error}"
        );
        assert_eq!(run(&[], &[("HTTP_PORT", "")]).unwrap().http_port, 80);
        // A bad variable does not matter when the flag overrides it.
        assert_eq!(
            run(&["--http-port=81"], &[("HTTP_PORT", "abc")])
                .unwrap()
                .http_port,
            81
        );
    }

    #[test]
    fn turns_request_lines_off_only_when_asked() {
        assert!(run(&[], &[]).unwrap().log_requests);
        assert!(!run(&["--log-requests=false"], &[]).unwrap().log_requests);
        assert!(run(&["--log-requests"], &[]).unwrap().log_requests);
    }

    #[test]
    fn reads_the_log_format_when_given() {
        assert_eq!(
            run(&["--log-format=journal"], &[]).unwrap().log_format,
            LogFormat::Journal
        );
        assert_eq!(
            run(&["--log-format", "text"], &[]).unwrap().log_format,
            LogFormat::Text
        );
        assert!(run(&["--log-format=xml"], &[])
            .unwrap_err()
            .contains("invalid log format \"xml\""));
    }

    #[test]
    fn refuses_http3_until_it_is_supported() {
        assert_eq!(
            run(&["--http3"], &[]).unwrap_err(),
            "--http3 is not supported yet"
        );
        assert!(run(&["--http3=false"], &[]).is_ok());
        assert!(run(&["--metrics-port=x"], &[])
            .unwrap_err()
            .contains("expected a port number"));
    }
}
