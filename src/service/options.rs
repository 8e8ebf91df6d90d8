//! A service's resolved configuration: every default filled in, every rule checked.
//!
//! `DeployOptions` says what the caller set; this says what the service does. Defaults live
//! here, in the daemon, so a `busctl` caller and the CLI get the same service. The field
//! names follow the Go proxy's `ServiceOptions` / `TargetOptions`, which is also the shape
//! of the state file.

use std::time::Duration;

use http::HeaderName;

use crate::control::{ControlError, DeployOptions, Host, OnDemandUrl, PathPrefix};
use crate::logging::LoggedHeader;

pub const DEFAULT_DEPLOY_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_HEALTH_CHECK_PATH: &str = "/up";
pub const DEFAULT_HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(1);
pub const DEFAULT_HEALTH_CHECK_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_TARGET_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_WRITER_AFFINITY_TIMEOUT: Duration = Duration::from_secs(1);
pub const DEFAULT_BUFFER_MEMORY: u64 = 1 << 20;
pub const LETS_ENCRYPT_PRODUCTION: &str = "https://acme-v02.api.letsencrypt.org/directory";
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// Where a service's certificate comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum TlsMode {
    Off,
    /// Automatic certificates from an ACME directory.
    Acme(AcmeSettings),
    /// A certificate and key the operator provides.
    Certificate {
        certificate_path: String,
        private_key_path: String,
    },
}

/// How automatic certificates are obtained for a service.
#[derive(Debug, Clone, PartialEq)]
pub struct AcmeSettings {
    pub directory: String,
    /// `None`: the daemon's `<state dir>/certs`.
    pub cache_path: Option<String>,
    pub on_demand_url: Option<OnDemandUrl>,
    pub external_account_binding: Option<ExternalAccountBinding>,
    /// An e-mail address the CA may write to about the certificates.
    pub contact: Option<String>,
}

/// An ACME external account binding (RFC 8555 §7.3.4), as CAs such as ZeroSSL require.
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalAccountBinding {
    pub key_id: String,
    /// Base64url, as CAs hand it out.
    pub hmac_key: String,
}

impl TlsMode {
    pub fn is_enabled(&self) -> bool {
        !matches!(self, TlsMode::Off)
    }
}

/// How the service is reached and what it does at the HTTP level.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceOptions {
    /// Empty means the catch-all service.
    pub hosts: Vec<Host>,
    /// Never empty: `/` when none were given.
    pub path_prefixes: Vec<PathPrefix>,
    pub tls: TlsMode,
    pub tls_redirect: bool,
    pub canonical_host: Option<Host>,
    pub error_page_path: Option<String>,
    pub strip_prefix: bool,
    pub writer_affinity_timeout: Duration,
    pub read_targets_accept_websockets: bool,
    pub exclude_metrics_paths: Vec<String>,
    pub client_ip_header: Option<HeaderName>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheckConfig {
    pub path: String,
    /// `None`: the target's own port.
    pub port: Option<u16>,
    pub interval: Duration,
    pub timeout: Duration,
    /// Host header for checks; `None`: the target address.
    pub host: Option<String>,
}

/// How each target of the service is talked to.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetOptions {
    pub health_check: HealthCheckConfig,
    /// Longest wait for upstream response headers.
    pub response_timeout: Duration,
    pub buffer_requests: bool,
    pub buffer_responses: bool,
    pub max_memory_buffer_size: u64,
    /// 0: unlimited.
    pub max_request_body_size: u64,
    /// 0: unlimited.
    pub max_response_body_size: u64,
    pub log_request_headers: Vec<LoggedHeader>,
    pub log_response_headers: Vec<LoggedHeader>,
    pub forward_headers: bool,
    pub scope_cookie_paths: bool,
}

/// How a deploy waits and drains; not persisted, as in Go.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeployTimings {
    pub deploy_timeout: Duration,
    pub drain_timeout: Duration,
    /// Skip waiting for health.
    pub force: bool,
}

impl DeployTimings {
    pub fn resolve(options: &DeployOptions) -> Self {
        DeployTimings {
            deploy_timeout: options.deploy_timeout.unwrap_or(DEFAULT_DEPLOY_TIMEOUT),
            drain_timeout: options.drain_timeout.unwrap_or(DEFAULT_DRAIN_TIMEOUT),
            force: options.force.unwrap_or(false),
        }
    }
}

fn header_names(names: &[String], flag: &str) -> Result<Vec<HeaderName>, ControlError> {
    names
        .iter()
        .map(|name| {
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                ControlError::InvalidOptions(format!("invalid header name \"{name}\" in {flag}"))
            })
        })
        .collect()
}

fn acme_directory(options: &DeployOptions) -> Result<String, ControlError> {
    let given = options.tls_acme_directory.clone().filter(|d| !d.is_empty());
    match (given, options.tls_staging.unwrap_or(false)) {
        (Some(_), true) => Err(ControlError::InvalidOptions(
            "--tls-staging and --tls-acme-directory cannot be used together".into(),
        )),
        (Some(directory), false) if directory.starts_with("https://") => Ok(directory),
        (Some(directory), false) => Err(ControlError::InvalidOptions(format!(
            "ACME directory \"{directory}\" must be an https:// URL"
        ))),
        (None, true) => Ok(LETS_ENCRYPT_STAGING.to_string()),
        (None, false) => Ok(LETS_ENCRYPT_PRODUCTION.to_string()),
    }
}

fn external_account_binding(
    options: &DeployOptions,
) -> Result<Option<ExternalAccountBinding>, ControlError> {
    let key_id = options.tls_acme_eab_kid.clone().filter(|k| !k.is_empty());
    let hmac_key = options
        .tls_acme_eab_hmac_key
        .clone()
        .filter(|k| !k.is_empty());
    match (key_id, hmac_key) {
        (None, None) => Ok(None),
        (Some(key_id), Some(hmac_key)) => Ok(Some(ExternalAccountBinding { key_id, hmac_key })),
        _ => Err(ControlError::InvalidOptions(
            "if any flags in the group [tls-acme-eab-kid tls-acme-eab-hmac-key] are set they must all be set".into(),
        )),
    }
}

fn tls_mode(options: &DeployOptions) -> Result<TlsMode, ControlError> {
    let certificate = options
        .tls_certificate_path
        .clone()
        .filter(|p| !p.is_empty());
    let key = options
        .tls_private_key_path
        .clone()
        .filter(|p| !p.is_empty());
    if certificate.is_some() != key.is_some() {
        return Err(ControlError::InvalidOptions(
            "if any flags in the group [tls-certificate-path tls-private-key-path] are set they must all be set".into(),
        ));
    }
    let on_demand_url = options
        .tls_on_demand_url
        .as_deref()
        .filter(|u| !u.is_empty());
    if !options.tls.unwrap_or(false) {
        if on_demand_url.is_some() {
            return Err(ControlError::invalid_service_options(
                "TLS must be enabled to use a TLS on-demand URL",
            ));
        }
        return Ok(TlsMode::Off);
    }
    Ok(match (certificate, key) {
        (Some(certificate_path), Some(private_key_path)) => {
            if on_demand_url.is_some() {
                return Err(ControlError::invalid_service_options(
                    "cannot use a custom TLS certificate with a TLS on-demand URL",
                ));
            }
            TlsMode::Certificate {
                certificate_path,
                private_key_path,
            }
        }
        _ => TlsMode::Acme(AcmeSettings {
            directory: acme_directory(options)?,
            cache_path: options
                .tls_acme_cache_path
                .clone()
                .filter(|p| !p.is_empty()),
            on_demand_url: on_demand_url
                .map(OnDemandUrl::parse)
                .transpose()
                .map_err(ControlError::invalid_service_options)?,
            external_account_binding: external_account_binding(options)?,
            contact: options.tls_acme_contact.clone().filter(|c| !c.is_empty()),
        }),
    })
}

/// Checks the combinations the Go proxy checks, with its messages.
fn validate(
    service: &ServiceOptions,
    target: &TargetOptions,
    options: &DeployOptions,
) -> Result<(), ControlError> {
    if options.max_request_body.is_some() && options.buffer_requests.is_none() {
        return Err(ControlError::InvalidOptions(
            "max-request-body can only be set when request buffering is enabled".into(),
        ));
    }
    if options.max_response_body.is_some() && options.buffer_responses.is_none() {
        return Err(ControlError::InvalidOptions(
            "max-response-body can only be set when response buffering is enabled".into(),
        ));
    }
    if let TlsMode::Acme(AcmeSettings {
        on_demand_url: Some(_),
        ..
    }) = &service.tls
    {
        if !service.hosts.is_empty() {
            return Err(ControlError::invalid_service_options(
                "cannot set hosts when using a TLS on-demand URL",
            ));
        }
        if service.canonical_host.is_some() {
            return Err(ControlError::invalid_service_options(
                "cannot set a canonical host when using a TLS on-demand URL",
            ));
        }
    } else if service.tls.is_enabled() && service.hosts.is_empty() {
        return Err(ControlError::invalid_service_options(
            "host must be set when using TLS",
        ));
    }
    if service.tls.is_enabled() && !service.path_prefixes.iter().any(PathPrefix::is_root) {
        return Err(ControlError::invalid_service_options(
            "TLS settings must be specified on the root path service",
        ));
    }
    if matches!(service.tls, TlsMode::Acme(_)) && service.hosts.iter().any(Host::is_wildcard) {
        return Err(ControlError::InvalidOptions(
            "automatic TLS does not support wildcards".into(),
        ));
    }
    if let Some(canonical) = &service.canonical_host {
        if !service.hosts.is_empty() && !service.hosts.contains(canonical) {
            let hosts: Vec<&str> = service.hosts.iter().map(Host::as_str).collect();
            return Err(ControlError::invalid_service_options(format!(
                "canonical-host '{canonical}' must be present in the hosts list: [{}]",
                hosts.join(" ")
            )));
        }
    }
    let check = &target.health_check;
    if check.interval.is_zero() || check.timeout.is_zero() {
        return Err(ControlError::InvalidOptions(
            "health-check-interval and health-check-timeout must be greater than zero".into(),
        ));
    }
    if target.max_memory_buffer_size == 0 {
        return Err(ControlError::InvalidOptions(
            "buffer-memory must be greater than zero".into(),
        ));
    }
    Ok(())
}

/// Fills in defaults and checks the result; the error names what is wrong.
pub fn resolve(options: &DeployOptions) -> Result<(ServiceOptions, TargetOptions), ControlError> {
    let tls = tls_mode(options)?;
    let mut path_prefixes = options.path_prefixes.clone().unwrap_or_default();
    if path_prefixes.is_empty() {
        path_prefixes.push(PathPrefix::root());
    }
    path_prefixes.sort();
    path_prefixes.dedup();
    let mut hosts = options.hosts.clone().unwrap_or_default();
    hosts.sort();
    hosts.dedup();
    let health_path = options
        .health_check_path
        .clone()
        .unwrap_or_else(|| DEFAULT_HEALTH_CHECK_PATH.into());
    let service = ServiceOptions {
        hosts,
        path_prefixes,
        tls_redirect: options.tls_redirect.unwrap_or(true),
        canonical_host: options.canonical_host.clone(),
        error_page_path: options.error_pages.clone().filter(|p| !p.is_empty()),
        strip_prefix: options.strip_path_prefix.unwrap_or(true),
        writer_affinity_timeout: options
            .writer_affinity_timeout
            .unwrap_or(DEFAULT_WRITER_AFFINITY_TIMEOUT),
        read_targets_accept_websockets: options.read_target_websockets.unwrap_or(false),
        exclude_metrics_paths: options.exclude_metrics_paths.clone().unwrap_or_default(),
        client_ip_header: match options.client_ip_header.as_deref() {
            None | Some("") => None,
            Some(name) => Some(header_names(&[name.to_string()], "client-ip-header")?.remove(0)),
        },
        tls,
    };
    let target = TargetOptions {
        health_check: HealthCheckConfig {
            path: if health_path.starts_with('/') {
                health_path
            } else {
                format!("/{health_path}")
            },
            port: options.health_check_port.filter(|p| *p != 0),
            interval: options
                .health_check_interval
                .unwrap_or(DEFAULT_HEALTH_CHECK_INTERVAL),
            timeout: options
                .health_check_timeout
                .unwrap_or(DEFAULT_HEALTH_CHECK_TIMEOUT),
            host: options.health_check_host.clone().filter(|h| !h.is_empty()),
        },
        response_timeout: options.target_timeout.unwrap_or(DEFAULT_TARGET_TIMEOUT),
        buffer_requests: options.buffer_requests.unwrap_or(false),
        buffer_responses: options.buffer_responses.unwrap_or(false),
        max_memory_buffer_size: options.buffer_memory.unwrap_or(DEFAULT_BUFFER_MEMORY),
        max_request_body_size: options.max_request_body.unwrap_or(0),
        max_response_body_size: options.max_response_body.unwrap_or(0),
        log_request_headers: header_names(
            options.log_request_headers.as_deref().unwrap_or_default(),
            "log-request-header",
        )?
        .into_iter()
        .map(LoggedHeader::request)
        .collect(),
        log_response_headers: header_names(
            options.log_response_headers.as_deref().unwrap_or_default(),
            "log-response-header",
        )?
        .into_iter()
        .map(LoggedHeader::response)
        .collect(),
        // Trust the client's X-Forwarded-* only when no TLS terminates here (Go's CLI rule,
        // decided in the daemon so every caller gets it).
        forward_headers: options
            .forward_headers
            .unwrap_or(!options.tls.unwrap_or(false)),
        scope_cookie_paths: options.scope_cookie_paths.unwrap_or(false),
    };
    validate(&service, &target, options)?;
    Ok((service, target))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(names: &[&str]) -> Option<Vec<Host>> {
        Some(names.iter().map(|n| Host::parse(n).unwrap()).collect())
    }

    #[test]
    fn fills_go_defaults_when_nothing_is_set() {
        let (service, target) = resolve(&DeployOptions::default()).unwrap();
        assert_eq!(service.path_prefixes, vec![PathPrefix::root()]);
        assert!(service.strip_prefix && service.tls_redirect && target.forward_headers);
        assert_eq!(target.health_check.path, "/up");
        assert_eq!(target.response_timeout, Duration::from_secs(30));
        assert_eq!(target.max_memory_buffer_size, 1 << 20);
    }

    #[test]
    fn forward_headers_default_is_off_with_tls() {
        let options = DeployOptions {
            tls: Some(true),
            hosts: hosts(&["a.example.com"]),
            ..Default::default()
        };
        let (service, target) = resolve(&options).unwrap();
        assert!(matches!(service.tls, TlsMode::Acme(_)));
        assert!(!target.forward_headers);
    }

    #[test]
    fn refuses_tls_without_host_and_off_root() {
        let no_host = DeployOptions {
            tls: Some(true),
            ..Default::default()
        };
        assert_eq!(
            resolve(&no_host).unwrap_err().message(),
            "service options invalid: host must be set when using TLS"
        );
        let off_root = DeployOptions {
            tls: Some(true),
            hosts: hosts(&["a.example.com"]),
            path_prefixes: Some(vec![PathPrefix::parse("/api").unwrap()]),
            ..Default::default()
        };
        assert_eq!(
            resolve(&off_root).unwrap_err().message(),
            "service options invalid: TLS settings must be specified on the root path service"
        );
    }

    #[test]
    fn takes_any_https_acme_directory_and_complete_eab_pairs_only() {
        let base = DeployOptions {
            tls: Some(true),
            hosts: hosts(&["a.example.com"]),
            tls_acme_directory: Some("https://ca.test/dir".into()),
            tls_acme_eab_kid: Some("kid-1".into()),
            tls_acme_eab_hmac_key: Some("c2VjcmV0".into()),
            tls_acme_contact: Some("ops@example.com".into()),
            ..Default::default()
        };
        let (service, _) = resolve(&base).unwrap();
        let TlsMode::Acme(acme) = service.tls else {
            panic!("ACME expected")
        };
        assert_eq!(acme.directory, "https://ca.test/dir");
        assert_eq!(acme.external_account_binding.unwrap().key_id, "kid-1");
        assert_eq!(acme.contact.as_deref(), Some("ops@example.com"));
        let half = DeployOptions {
            tls_acme_eab_hmac_key: None,
            ..base.clone()
        };
        assert!(resolve(&half)
            .unwrap_err()
            .message()
            .contains("tls-acme-eab-kid"));
        let plain = DeployOptions {
            tls_acme_directory: Some("http://ca.test/dir".into()),
            ..base.clone()
        };
        assert!(resolve(&plain).unwrap_err().message().contains("https://"));
        let both = DeployOptions {
            tls_staging: Some(true),
            ..base
        };
        assert!(resolve(&both).is_err());
    }

    #[test]
    fn takes_an_on_demand_path_or_url_and_refuses_others_with_the_go_prefix() {
        let on_demand = |url: &str| DeployOptions {
            tls: Some(true),
            tls_on_demand_url: Some(url.into()),
            ..Default::default()
        };
        let (service, _) = resolve(&on_demand("/allow?token=abc")).unwrap();
        let TlsMode::Acme(acme) = service.tls else {
            panic!("ACME expected")
        };
        assert_eq!(
            acme.on_demand_url,
            Some(OnDemandUrl::ServicePath("/allow?token=abc".into()))
        );
        assert!(resolve(&on_demand("https://auth.example.com/check")).is_ok());
        assert_eq!(
            resolve(&on_demand("ftp://auth.example.com/check"))
                .unwrap_err()
                .message(),
            "service options invalid: unsupported scheme \"ftp\" in tls-on-demand-url"
        );
        let without_tls = DeployOptions {
            tls: None,
            ..on_demand("ftp://auth.example.com/check")
        };
        assert_eq!(
            resolve(&without_tls).unwrap_err().message(),
            "service options invalid: TLS must be enabled to use a TLS on-demand URL"
        );
    }

    #[test]
    fn refuses_max_body_without_its_buffering_flag() {
        let options = DeployOptions {
            max_request_body: Some(10),
            ..Default::default()
        };
        assert_eq!(
            resolve(&options).unwrap_err().message(),
            "max-request-body can only be set when request buffering is enabled"
        );
        let quirk = DeployOptions {
            max_request_body: Some(10),
            buffer_requests: Some(false),
            ..Default::default()
        };
        assert!(resolve(&quirk).is_ok());
    }

    #[test]
    fn refuses_canonical_host_outside_hosts() {
        let options = DeployOptions {
            hosts: hosts(&["a.example.com", "b.example.com"]),
            canonical_host: Some(Host::parse("c.example.com").unwrap()),
            ..Default::default()
        };
        assert_eq!(
            resolve(&options).unwrap_err().message(),
            "service options invalid: canonical-host 'c.example.com' must be present in the hosts list: [a.example.com b.example.com]"
        );
    }

    #[test]
    fn refuses_wildcards_with_automatic_tls_and_bad_header_names() {
        let options = DeployOptions {
            tls: Some(true),
            hosts: hosts(&["*.example.com"]),
            ..Default::default()
        };
        assert_eq!(
            resolve(&options).unwrap_err().message(),
            "automatic TLS does not support wildcards"
        );
        let headers = DeployOptions {
            log_request_headers: Some(vec!["Bad Header".into()]),
            ..Default::default()
        };
        assert!(resolve(&headers)
            .unwrap_err()
            .message()
            .contains("\"Bad Header\""));
    }
}
