//! `kamal-proxy deploy <service>`: flag for flag the Go proxy's, sent as one `Deploy` call.
//!
//! Only flags the user gave are sent; every default (and Go's client-side `forward-headers`
//! rule) is the daemon's, so `busctl` callers and the CLI get the same service. The files
//! the flags name (certificate, key, error pages) are read here and sent as contents
//! (`deploy_files`), since the daemon cannot see the paths. The call blocks until the new
//! targets are healthy and the old ones drained, because Kamal stops the old container as
//! soon as this exits 0.

use std::path::Path;
use std::time::Duration;

use clap::Args;

use super::args::{self, CsvList};
use super::deploy_files::{self, FileFlag};
use crate::control::{
    self, BusChoice, DeployOptions, Host, PathPrefix, ServiceName, TargetAddress,
};

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The service to deploy
    #[arg(value_name = "SERVICE")]
    service: Vec<String>,

    /// Writer target(s), host[:port] (required)
    #[arg(long, value_name = "HOST:PORT", value_parser = args::list(TargetAddress::parse))]
    target: Vec<CsvList<TargetAddress>>,
    /// Read-only target(s), host[:port]
    #[arg(long, value_name = "HOST:PORT", value_parser = args::list(TargetAddress::parse))]
    read_target: Vec<CsvList<TargetAddress>>,
    /// Host name(s) to serve; none means every host
    #[arg(long, value_parser = args::list(Host::parse))]
    host: Vec<CsvList<Host>>,
    /// Path prefix(es) to serve the service under
    #[arg(long, value_name = "PATH", value_parser = args::list(PathPrefix::parse))]
    path_prefix: Vec<CsvList<PathPrefix>>,
    /// Remove the matched path prefix before forwarding [default: true]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = args::go_bool)]
    strip_path_prefix: Option<bool>,

    /// Serve over HTTPS (ACME unless a certificate is given)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = args::go_bool)]
    tls: Option<bool>,
    /// URL or path that approves hosts for on-demand certificates
    #[arg(long, value_name = "URL", value_parser = args::text)]
    tls_on_demand_url: Option<String>,
    /// Use the Let's Encrypt staging directory
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = args::go_bool)]
    tls_staging: Option<bool>,
    /// PEM certificate file (with --tls-private-key-path)
    #[arg(long, value_name = "PATH", value_parser = args::text)]
    tls_certificate_path: Option<String>,
    /// PEM private key file (with --tls-certificate-path)
    #[arg(long, value_name = "PATH", value_parser = args::text)]
    tls_private_key_path: Option<String>,
    /// Where ACME certificates are cached
    #[arg(long, value_name = "PATH", value_parser = args::text)]
    tls_acme_cache_path: Option<String>,
    /// ACME directory URL of any CA [default: Let's Encrypt]
    #[arg(long, value_name = "URL", value_parser = args::text)]
    tls_acme_directory: Option<String>,
    /// External account binding key id (with --tls-acme-eab-hmac-key)
    #[arg(long, value_name = "KID", value_parser = args::text)]
    tls_acme_eab_kid: Option<String>,
    /// External account binding HMAC key, base64url (with --tls-acme-eab-kid)
    #[arg(long, value_name = "KEY", value_parser = args::text)]
    tls_acme_eab_hmac_key: Option<String>,
    /// E-mail address the ACME CA may contact about certificates
    #[arg(long, value_name = "EMAIL", value_parser = args::text)]
    tls_acme_contact: Option<String>,
    /// Redirect HTTP to HTTPS when TLS is on [default: true]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = args::go_bool)]
    tls_redirect: Option<bool>,
    /// Redirect every other host to this one
    #[arg(long, value_name = "HOST", value_parser = Host::parse)]
    canonical_host: Option<Host>,

    /// How long new targets may take to become healthy [default: 30s]
    #[arg(long, value_name = "DURATION", value_parser = args::duration)]
    deploy_timeout: Option<Duration>,
    /// How long old targets may take to finish requests [default: 30s]
    #[arg(long, value_name = "DURATION", value_parser = args::duration)]
    drain_timeout: Option<Duration>,
    /// Switch traffic without waiting for health checks
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = args::go_bool)]
    force: Option<bool>,

    /// Time between health checks [default: 1s]
    #[arg(long, value_name = "DURATION", value_parser = args::duration)]
    health_check_interval: Option<Duration>,
    /// Time limit of one health check [default: 5s]
    #[arg(long, value_name = "DURATION", value_parser = args::duration)]
    health_check_timeout: Option<Duration>,
    /// Path the health check requests [default: /up]
    #[arg(long, value_name = "PATH", value_parser = args::text)]
    health_check_path: Option<String>,
    /// Port the health check uses; 0 means the target's own
    #[arg(long, value_name = "PORT", value_parser = args::port)]
    health_check_port: Option<u16>,
    /// Host header sent with health checks
    #[arg(long, value_name = "HOST", value_parser = args::text)]
    health_check_host: Option<String>,

    /// After a write, send reads to writers for this long [default: 1s]
    #[arg(long, value_name = "DURATION", value_parser = args::duration)]
    writer_affinity_timeout: Option<Duration>,
    /// Let WebSocket upgrades go to read targets
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = args::go_bool)]
    read_target_websockets: Option<bool>,
    /// How long to wait for a target's response headers [default: 30s]
    #[arg(long, value_name = "DURATION", value_parser = args::duration)]
    target_timeout: Option<Duration>,

    /// Buffer whole request bodies before forwarding
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = args::go_bool)]
    buffer_requests: Option<bool>,
    /// Buffer whole responses before sending them
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = args::go_bool)]
    buffer_responses: Option<bool>,
    /// Bytes of each buffer kept in memory [default: 1048576]
    #[arg(long, value_name = "BYTES", value_parser = args::size)]
    buffer_memory: Option<u64>,
    /// Largest buffered request body in bytes; 0 means no limit
    #[arg(long, value_name = "BYTES", value_parser = args::size)]
    max_request_body: Option<u64>,
    /// Largest buffered response body in bytes; 0 means no limit
    #[arg(long, value_name = "BYTES", value_parser = args::size)]
    max_response_body: Option<u64>,

    /// Directory of custom <status>.html error pages
    #[arg(long, value_name = "PATH", value_parser = args::text)]
    error_pages: Option<String>,
    /// Request header(s) to include in the request log
    #[arg(long, value_name = "HEADER", value_parser = args::list(args::text))]
    log_request_header: Vec<CsvList<String>>,
    /// Response header(s) to include in the request log
    #[arg(long, value_name = "HEADER", value_parser = args::list(args::text))]
    log_response_header: Vec<CsvList<String>>,
    /// Target path(s) to leave out of metrics
    #[arg(long, value_name = "PATH", value_parser = args::list(args::text))]
    exclude_metrics_path: Vec<CsvList<String>>,
    /// Trust and forward the client's X-Forwarded-* headers [default: true without --tls]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = args::go_bool)]
    forward_headers: Option<bool>,
    /// Header that carries the real client IP
    #[arg(long, value_name = "HEADER", value_parser = args::text)]
    client_ip_header: Option<String>,
    /// Prefix Set-Cookie paths with the matched path prefix
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = args::go_bool)]
    scope_cookie_paths: Option<bool>,
}

/// A checked deploy, ready to send.
#[derive(Debug)]
struct Deploy {
    service: ServiceName,
    targets: Vec<TargetAddress>,
    options: DeployOptions,
}

impl DeployArgs {
    pub async fn execute(self, bus: &BusChoice) -> Result<(), String> {
        let deploy = self.into_deploy()?;
        control::connect(bus)
            .await?
            .deploy(&deploy.service, &deploy.targets, &deploy.options)
            .await
    }

    /// Checks the flags and reads the files they name; any failure means no call is made.
    fn into_deploy(self) -> Result<Deploy, String> {
        let service = args::one_service(self.service)?;
        let targets = args::joined(self.target)
            .filter(|targets| !targets.is_empty())
            .ok_or_else(|| "required flag(s) \"target\" not set".to_string())?;
        // An empty path means the flag is unset, as in Go.
        let given = |path: Option<String>| path.filter(|path| !path.is_empty());
        let read = |flag, path: Option<String>| {
            given(path)
                .map(|path| deploy_files::read_file(flag, Path::new(&path)))
                .transpose()
                .map_err(|error| error.to_string())
        };
        let tls_certificate_pem = read(FileFlag::TlsCertificatePath, self.tls_certificate_path)?;
        let tls_private_key_pem = read(FileFlag::TlsPrivateKeyPath, self.tls_private_key_path)?;
        let error_pages_files = given(self.error_pages)
            .map(|path| deploy_files::read_error_pages(Path::new(&path)))
            .transpose()
            .map_err(|error| error.to_string())?;
        let options = DeployOptions {
            read_targets: args::joined(self.read_target),
            hosts: args::joined(self.host),
            path_prefixes: args::joined(self.path_prefix),
            strip_path_prefix: self.strip_path_prefix,
            tls: self.tls,
            tls_on_demand_url: self.tls_on_demand_url,
            tls_staging: self.tls_staging,
            // Paths never go over the bus, only the contents read above: the daemon cannot
            // see the caller's files.
            tls_certificate_path: None,
            tls_private_key_path: None,
            tls_certificate_pem,
            tls_private_key_pem,
            tls_acme_cache_path: self.tls_acme_cache_path,
            tls_acme_directory: self.tls_acme_directory,
            tls_acme_eab_kid: self.tls_acme_eab_kid,
            tls_acme_eab_hmac_key: self.tls_acme_eab_hmac_key,
            tls_acme_contact: self.tls_acme_contact,
            tls_redirect: self.tls_redirect,
            canonical_host: self.canonical_host,
            deploy_timeout: self.deploy_timeout,
            drain_timeout: self.drain_timeout,
            force: self.force,
            health_check_interval: self.health_check_interval,
            health_check_timeout: self.health_check_timeout,
            health_check_path: self.health_check_path,
            health_check_port: self.health_check_port,
            health_check_host: self.health_check_host,
            writer_affinity_timeout: self.writer_affinity_timeout,
            read_target_websockets: self.read_target_websockets,
            target_timeout: self.target_timeout,
            buffer_requests: self.buffer_requests,
            buffer_responses: self.buffer_responses,
            buffer_memory: self.buffer_memory,
            max_request_body: self.max_request_body,
            max_response_body: self.max_response_body,
            error_pages: None,
            error_pages_files,
            log_request_headers: args::joined(self.log_request_header),
            log_response_headers: args::joined(self.log_response_header),
            exclude_metrics_paths: args::joined(self.exclude_metrics_path),
            forward_headers: self.forward_headers,
            client_ip_header: self.client_ip_header,
            scope_cookie_paths: self.scope_cookie_paths,
        };
        Ok(Deploy {
            service,
            targets,
            options,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{ClientCommand, Command};
    use clap::Parser;

    /// `kamal-proxy deploy <argv...>` as the binary would receive it after shell parsing.
    fn deploy(argv: &[&str]) -> Result<Deploy, String> {
        let argv = ["kamal-proxy", "deploy"].iter().chain(argv);
        match crate::cli::Cli::try_parse_from(argv).map_err(|e| e.to_string())? {
            crate::cli::Cli {
                command: Command::Client(ClientCommand::Deploy(args)),
                ..
            } => (*args).into_deploy(),
            other => panic!("parsed as {other:?}"),
        }
    }

    fn texts<T: ToString>(values: &[T]) -> Vec<String> {
        values.iter().map(T::to_string).collect()
    }

    /// The files Kamal places for a service (`.apps-config/<svc>/tls/<role>/*.pem`,
    /// `error_pages/<version>/*.html`), under a temporary directory.
    struct AppsConfig {
        dir: tempfile::TempDir,
    }

    impl AppsConfig {
        fn new() -> AppsConfig {
            let dir = tempfile::tempdir().unwrap();
            let app = dir.path().join("app");
            std::fs::create_dir_all(app.join("tls/web")).unwrap();
            std::fs::create_dir_all(app.join("error_pages/abc123")).unwrap();
            std::fs::write(app.join("tls/web/cert.pem"), "CERT").unwrap();
            std::fs::write(app.join("tls/web/key.pem"), "KEY").unwrap();
            std::fs::write(app.join("error_pages/abc123/503.html"), "down").unwrap();
            AppsConfig { dir }
        }

        /// `--<flag>=<path>` for a path under `app/`.
        fn flag(&self, flag: &str, path: &str) -> String {
            format!(
                "--{flag}={}",
                self.dir.path().join("app").join(path).display()
            )
        }
    }

    fn contents(text: &str) -> crate::control::FileContents {
        crate::control::FileContents::new(text.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn reads_the_full_kamal_deploy_line_when_every_flag_is_sent() {
        // deploy app-web --target="172.1.0.2:80" --host="app.example.com" --host="b"ü"cher.example"
        //   --tls --tls-certificate-path="…" ... as the remote shell hands it over.
        let files = AppsConfig::new();
        let cert = files.flag("tls-certificate-path", "tls/web/cert.pem");
        let key = files.flag("tls-private-key-path", "tls/web/key.pem");
        let pages = files.flag("error-pages", "error_pages/abc123");
        let sent = deploy(&[
            "app-web",
            "--target=172.1.0.2:80",
            "--host=app.example.com",
            "--host=bücher.example",
            "--tls",
            &cert,
            &key,
            "--deploy-timeout=30s",
            "--drain-timeout=2.5s",
            "--health-check-interval=1s",
            "--health-check-timeout=5s",
            "--health-check-path=/up",
            "--target-timeout=1m30s",
            "--buffer-requests",
            "--buffer-responses=false",
            "--buffer-memory=2000000",
            "--max-request-body=40000000",
            "--max-response-body=0",
            "--path-prefix=/api",
            "--path-prefix=/x",
            "--strip-path-prefix=false",
            "--forward-headers=false",
            "--tls-redirect=false",
            "--log-request-header=Cache-Control",
            "--log-request-header=Last-Modified",
            "--log-request-header=User-Agent",
            "--log-response-header=X-Request-Id",
            &pages,
        ])
        .unwrap();
        assert_eq!(sent.service.as_str(), "app-web");
        assert_eq!(texts(&sent.targets), ["172.1.0.2:80"]);
        let expected = DeployOptions {
            hosts: Some(vec![
                Host::parse("app.example.com").unwrap(),
                Host::parse("xn--bcher-kva.example").unwrap(),
            ]),
            tls: Some(true),
            tls_certificate_pem: Some(contents("CERT")),
            tls_private_key_pem: Some(contents("KEY")),
            deploy_timeout: Some(Duration::from_secs(30)),
            drain_timeout: Some(Duration::from_millis(2500)),
            health_check_interval: Some(Duration::from_secs(1)),
            health_check_timeout: Some(Duration::from_secs(5)),
            health_check_path: Some("/up".into()),
            target_timeout: Some(Duration::from_secs(90)),
            buffer_requests: Some(true),
            buffer_responses: Some(false),
            buffer_memory: Some(2_000_000),
            max_request_body: Some(40_000_000),
            max_response_body: Some(0),
            path_prefixes: Some(vec![
                PathPrefix::parse("/api").unwrap(),
                PathPrefix::parse("/x").unwrap(),
            ]),
            strip_path_prefix: Some(false),
            forward_headers: Some(false),
            tls_redirect: Some(false),
            log_request_headers: Some(vec![
                "Cache-Control".into(),
                "Last-Modified".into(),
                "User-Agent".into(),
            ]),
            log_response_headers: Some(vec!["X-Request-Id".into()]),
            error_pages_files: Some(
                crate::control::ErrorPageFiles::new(
                    [("503.html".to_string(), contents("down"))].into(),
                )
                .unwrap(),
            ),
            ..Default::default()
        };
        assert_eq!(sent.options, expected);
    }

    #[test]
    fn sends_file_contents_and_never_paths_when_files_are_named() {
        let files = AppsConfig::new();
        let sent = deploy(&[
            "app",
            "--target=web:1",
            &files.flag("tls-certificate-path", "tls/web/cert.pem"),
            &files.flag("tls-private-key-path", "tls/web/key.pem"),
            &files.flag("error-pages", "error_pages/abc123"),
        ])
        .unwrap();
        let mut keys: Vec<String> = sent.options.to_dict().into_keys().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "error_pages_files",
                "tls_certificate_pem",
                "tls_private_key_pem"
            ]
        );
    }

    #[test]
    fn sends_no_file_when_a_file_flag_is_empty() {
        let sent = deploy(&[
            "app",
            "--target=web:1",
            "--tls-certificate-path=",
            "--tls-private-key-path=",
            "--error-pages=",
        ]);
        assert_eq!(sent.unwrap().options, DeployOptions::default());
    }

    #[test]
    fn refuses_before_any_call_when_a_named_file_cannot_be_read() {
        let files = AppsConfig::new();
        let missing_key = files.flag("tls-private-key-path", "tls/web/gone.pem");
        let error = deploy(&[
            "app",
            "--target=web:1",
            &files.flag("tls-certificate-path", "tls/web/cert.pem"),
            &missing_key,
        ])
        .unwrap_err();
        assert!(
            error.starts_with("unable to load certificate: cannot read /")
                && error.contains("gone.pem given to --tls-private-key-path: No such file"),
            "{error}"
        );
        let error = deploy(&[
            "app",
            "--target=web:1",
            &files.flag("error-pages", "tls/web"),
        ])
        .unwrap_err();
        assert!(
            error.ends_with("given to --error-pages: it contains no *.html pages"),
            "{error}"
        );
    }

    #[test]
    fn sends_only_what_was_given_when_kamal_sends_its_smallest_deploy() {
        let sent = deploy(&[
            "app-web",
            "--target=172.1.0.2:80",
            "--deploy-timeout=30s",
            "--drain-timeout=30s",
            "--buffer-requests",
            "--buffer-responses",
            "--log-request-header=Cache-Control",
            "--log-request-header=Last-Modified",
            "--log-request-header=User-Agent",
        ])
        .unwrap();
        let mut sent_keys: Vec<String> = sent.options.to_dict().into_keys().collect();
        sent_keys.sort();
        assert_eq!(
            sent_keys,
            [
                "buffer_requests",
                "buffer_responses",
                "deploy_timeout_usec",
                "drain_timeout_usec",
                "log_request_headers"
            ]
        );
        let bare = deploy(&["app", "--target=web:3000"]).unwrap();
        assert_eq!(bare.options, DeployOptions::default());
    }

    #[test]
    fn accepts_space_separated_values_and_flags_before_the_service() {
        // Kamal 2.0.x: --target "999:80" --deploy-timeout "30s"
        let sent = deploy(&[
            "--target",
            "999:80",
            "app-web",
            "--deploy-timeout",
            "30s",
            "--host",
            "a.example.com",
        ])
        .unwrap();
        assert_eq!(sent.service.as_str(), "app-web");
        assert_eq!(texts(&sent.targets), ["999:80"]);
        assert_eq!(sent.options.deploy_timeout, Some(Duration::from_secs(30)));
        assert_eq!(
            texts(sent.options.hosts.as_deref().unwrap()),
            ["a.example.com"]
        );
    }

    #[test]
    fn splits_list_values_on_commas_and_joins_repeats() {
        let sent = deploy(&[
            "app",
            "--target=1.1.1.1:80,1.1.1.2:80",
            "--target",
            "web-3",
            "--read-target=r1:80",
            "--host=a.example.com,b.example.com",
            "--log-request-header=\"X-A\",X-B",
            "--exclude-metrics-path=/up",
        ])
        .unwrap();
        assert_eq!(texts(&sent.targets), ["1.1.1.1:80", "1.1.1.2:80", "web-3"]);
        assert_eq!(
            texts(sent.options.read_targets.as_deref().unwrap()),
            ["r1:80"]
        );
        assert_eq!(
            texts(sent.options.hosts.as_deref().unwrap()),
            ["a.example.com", "b.example.com"]
        );
        assert_eq!(
            sent.options.log_request_headers.unwrap(),
            ["X-A".to_string(), "X-B".to_string()]
        );
        assert_eq!(sent.options.exclude_metrics_paths.unwrap(), ["/up"]);
    }

    #[test]
    fn reads_booleans_only_bare_or_after_an_equals_sign() {
        let sent = deploy(&[
            "app",
            "--target=web:1",
            "--tls=T",
            "--force=0",
            "--scope-cookie-paths",
        ]);
        let options = sent.unwrap().options;
        assert_eq!(options.tls, Some(true));
        assert_eq!(options.force, Some(false));
        assert_eq!(options.scope_cookie_paths, Some(true));
        // pflag does not take `false` as the value of a bool: it is a second positional.
        let error = deploy(&["app", "--tls", "false", "--target=web:1"]).unwrap_err();
        assert_eq!(error, "accepts 1 arg(s), received 2");
        let error = deploy(&["app", "--target=web:1", "--tls=yes"]).unwrap_err();
        assert!(error.contains("expected true or false"), "{error}");
    }

    #[test]
    fn refuses_bad_values_naming_them() {
        for (flag, bad) in [
            ("--target", "http://web:80"),
            ("--target", "web:99999"),
            ("--host", "a b"),
            ("--deploy-timeout", "30"),
            ("--buffer-memory", "1MB"),
            ("--health-check-port", "-1"),
            ("--canonical-host", "x.*.com"),
        ] {
            let error = deploy(&["app", "--target=web:1", &format!("{flag}={bad}")]).unwrap_err();
            assert!(error.contains(flag) && error.contains(bad), "{error}");
        }
    }

    #[test]
    fn requires_a_target_and_one_service_name() {
        assert_eq!(
            deploy(&["app"]).unwrap_err(),
            "required flag(s) \"target\" not set"
        );
        assert_eq!(
            deploy(&["app", "--target="]).unwrap_err(),
            "required flag(s) \"target\" not set"
        );
        assert_eq!(
            deploy(&["--target=web:1"]).unwrap_err(),
            "accepts 1 arg(s), received 0"
        );
    }

    #[test]
    fn lets_the_last_of_a_repeated_single_value_flag_win() {
        let sent = deploy(&[
            "app",
            "--target=web:1",
            "--drain-timeout=1s",
            "--drain-timeout=2s",
        ]);
        assert_eq!(
            sent.unwrap().options.drain_timeout,
            Some(Duration::from_secs(2))
        );
    }
}
