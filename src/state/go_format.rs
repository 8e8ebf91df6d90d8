//! The Go proxy's state-file shape, field for field, and the conversions to and from our
//! resolved types.
//!
//! The structs here mirror Go's `marshalledService` so the file stays interchangeable: a host
//! can move from the Go proxy to this one (and back) without redeploying. Reading is as
//! lenient as Go's decoder (missing keys are zero values, unknown keys are ignored, legacy
//! keys are honoured); the strictness lives in the `TryFrom`, which checks every string with
//! the same newtype parsers a deploy uses, so a bad entry is named instead of half-loaded.
//! Nothing here touches the file system.

use std::time::Duration;

use http::HeaderName;
use serde::{Deserialize, Serialize};

use super::{SavedPause, SavedRollout, SavedService};
use crate::control::{Host, OnDemandUrl, PathPrefix, ServiceName, TargetAddress};
use crate::logging::LoggedHeader;
use crate::service::options::{
    AcmeSettings, ExternalAccountBinding, HealthCheckConfig, ServiceOptions, TargetOptions,
    TlsMode, LETS_ENCRYPT_PRODUCTION,
};
use crate::service::pause_state::PauseState;

/// One element of the state array. Field order is Go's, so our output matches its encoder.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub(super) struct GoService {
    name: String,
    options: GoServiceOptions,
    target_options: GoTargetOptions,
    active_targets: Vec<String>,
    active_readers: Vec<String>,
    rollout_targets: Vec<String>,
    rollout_readers: Vec<String>,
    pause_controller: GoPauseController,
    rollout_controller: Option<GoRolloutController>,
    // Legacy keys from older Go releases: read, never written (Go marks them omitempty).
    #[serde(skip_serializing)]
    active_target: String,
    #[serde(skip_serializing)]
    rollout_target: String,
    #[serde(skip_serializing)]
    hosts: Vec<String>,
    #[serde(skip_serializing)]
    path_prefixes: Vec<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct GoServiceOptions {
    hosts: Vec<String>,
    path_prefixes: Vec<String>,
    tls_enabled: bool,
    tls_certificate_path: String,
    tls_private_key_path: String,
    tls_on_demand_url: String,
    tls_redirect: bool,
    canonical_host: String,
    acme_directory: String,
    acme_cache_path: String,
    /// Ours, not Go's (Go ignores unknown keys): `--tls-acme-eab-*` and `--tls-acme-contact`.
    #[serde(skip_serializing_if = "String::is_empty")]
    acme_eab_kid: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    acme_eab_hmac_key: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    acme_contact: String,
    error_page_path: String,
    strip_prefix: bool,
    writer_affinity_timeout: i64,
    read_targets_accept_websockets: bool,
    exclude_metrics_paths: Vec<String>,
    client_ip_header: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct GoTargetOptions {
    health_check_config: GoHealthCheckConfig,
    response_timeout: i64,
    buffer_requests: bool,
    buffer_responses: bool,
    max_memory_buffer_size: i64,
    max_request_body_size: i64,
    max_response_body_size: i64,
    log_request_headers: Vec<String>,
    log_response_headers: Vec<String>,
    forward_headers: bool,
    scope_cookie_paths: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct GoHealthCheckConfig {
    path: String,
    port: i64,
    interval: i64,
    timeout: i64,
    host: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct GoPauseController {
    state: i64,
    stop_message: String,
    fail_after: i64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct GoRolloutController {
    percentage: i64,
    percentage_split_point: f64,
    allowlist: Vec<String>,
    /// Newer Go releases keep a stopped rollout's controller and set this; for us a stopped
    /// rollout is no controller, so it is read and never written.
    #[serde(skip_serializing)]
    disabled: bool,
}

impl From<&SavedService> for GoService {
    fn from(service: &SavedService) -> Self {
        GoService {
            name: service.name.as_str().to_string(),
            options: GoServiceOptions::from(&service.service_options),
            target_options: GoTargetOptions::from(&service.target_options),
            active_targets: strings(&service.active_targets),
            active_readers: strings(&service.active_readers),
            rollout_targets: strings(&service.rollout_targets),
            rollout_readers: strings(&service.rollout_readers),
            pause_controller: GoPauseController {
                state: match service.pause.state {
                    PauseState::Running => 0,
                    PauseState::Paused => 1,
                    PauseState::Stopped => 2,
                },
                stop_message: service.pause.stop_message.clone(),
                fail_after: nanos(service.pause.fail_after),
            },
            rollout_controller: service.rollout.as_ref().map(|rollout| GoRolloutController {
                percentage: rollout.percentage,
                percentage_split_point: rollout.split_point,
                allowlist: rollout.allowlist.clone(),
                disabled: false,
            }),
            ..GoService::default()
        }
    }
}

impl From<&ServiceOptions> for GoServiceOptions {
    fn from(options: &ServiceOptions) -> Self {
        let mut go = GoServiceOptions {
            hosts: strings(&options.hosts),
            path_prefixes: strings(&options.path_prefixes),
            tls_enabled: options.tls.is_enabled(),
            tls_redirect: options.tls_redirect,
            canonical_host: optional(options.canonical_host.as_ref().map(Host::as_str)),
            error_page_path: optional(options.error_page_path.as_deref()),
            strip_prefix: options.strip_prefix,
            writer_affinity_timeout: nanos(options.writer_affinity_timeout),
            read_targets_accept_websockets: options.read_targets_accept_websockets,
            exclude_metrics_paths: options.exclude_metrics_paths.clone(),
            client_ip_header: optional(options.client_ip_header.as_ref().map(HeaderName::as_str)),
            ..GoServiceOptions::default()
        };
        match &options.tls {
            TlsMode::Off => {}
            TlsMode::Acme(acme) => {
                go.acme_directory = acme.directory.clone();
                go.acme_cache_path = optional(acme.cache_path.as_deref());
                go.tls_on_demand_url =
                    optional(acme.on_demand_url.as_ref().map(OnDemandUrl::as_str));
                if let Some(eab) = &acme.external_account_binding {
                    go.acme_eab_kid = eab.key_id.clone();
                    go.acme_eab_hmac_key = eab.hmac_key.clone();
                }
                go.acme_contact = optional(acme.contact.as_deref());
            }
            TlsMode::Certificate {
                certificate_path,
                private_key_path,
            } => {
                go.tls_certificate_path = certificate_path.clone();
                go.tls_private_key_path = private_key_path.clone();
            }
        }
        go
    }
}

impl From<&TargetOptions> for GoTargetOptions {
    fn from(options: &TargetOptions) -> Self {
        let check = &options.health_check;
        GoTargetOptions {
            health_check_config: GoHealthCheckConfig {
                path: check.path.clone(),
                port: check.port.map_or(0, i64::from),
                interval: nanos(check.interval),
                timeout: nanos(check.timeout),
                host: optional(check.host.as_deref()),
            },
            response_timeout: nanos(options.response_timeout),
            buffer_requests: options.buffer_requests,
            buffer_responses: options.buffer_responses,
            max_memory_buffer_size: size(options.max_memory_buffer_size),
            max_request_body_size: size(options.max_request_body_size),
            max_response_body_size: size(options.max_response_body_size),
            log_request_headers: strings(&options.log_request_headers),
            log_response_headers: strings(&options.log_response_headers),
            forward_headers: options.forward_headers,
            scope_cookie_paths: options.scope_cookie_paths,
        }
    }
}

/// The error is the reason the service is skipped, naming the offending value.
impl TryFrom<GoService> for SavedService {
    type Error = String;

    fn try_from(go: GoService) -> Result<Self, String> {
        let mut options = go.options;
        // Go's rule for legacy files: the top-level lists count only if the new ones are empty.
        if options.hosts.is_empty() {
            options.hosts = go.hosts;
        }
        if options.path_prefixes.is_empty() {
            options.path_prefixes = go.path_prefixes;
        }
        let active_targets = parse_all(
            &with_legacy(go.active_targets, go.active_target),
            TargetAddress::parse,
        )?;
        if active_targets.is_empty() {
            return Err("it has no active targets".to_string());
        }
        Ok(SavedService {
            name: ServiceName::parse(&go.name)?,
            service_options: options.try_into()?,
            target_options: go.target_options.try_into()?,
            active_targets,
            active_readers: parse_all(&go.active_readers, TargetAddress::parse)?,
            rollout_targets: parse_all(
                &with_legacy(go.rollout_targets, go.rollout_target),
                TargetAddress::parse,
            )?,
            rollout_readers: parse_all(&go.rollout_readers, TargetAddress::parse)?,
            pause: go.pause_controller.try_into()?,
            rollout: go
                .rollout_controller
                .filter(|rollout| !rollout.disabled)
                .map(|rollout| SavedRollout {
                    percentage: rollout.percentage,
                    split_point: rollout.percentage_split_point,
                    allowlist: rollout.allowlist,
                }),
        })
    }
}

impl TryFrom<GoServiceOptions> for ServiceOptions {
    type Error = String;

    fn try_from(go: GoServiceOptions) -> Result<Self, String> {
        let tls = tls_mode(&go)?;
        // Sorted and deduplicated, the invariant `options::resolve` gives a fresh deploy.
        let mut hosts = parse_all(&go.hosts, Host::parse)?;
        hosts.sort();
        hosts.dedup();
        let mut path_prefixes = parse_all(&go.path_prefixes, PathPrefix::parse)?;
        if path_prefixes.is_empty() {
            path_prefixes.push(PathPrefix::root());
        }
        path_prefixes.sort();
        path_prefixes.dedup();
        Ok(ServiceOptions {
            hosts,
            path_prefixes,
            tls,
            tls_redirect: go.tls_redirect,
            canonical_host: non_empty(go.canonical_host)
                .map(|host| Host::parse(&host))
                .transpose()?,
            error_page_path: non_empty(go.error_page_path),
            strip_prefix: go.strip_prefix,
            writer_affinity_timeout: duration(
                go.writer_affinity_timeout,
                "writer_affinity_timeout",
            )?,
            read_targets_accept_websockets: go.read_targets_accept_websockets,
            exclude_metrics_paths: go.exclude_metrics_paths,
            client_ip_header: non_empty(go.client_ip_header)
                .map(|name| header_name(&name))
                .transpose()?,
        })
    }
}

impl TryFrom<GoTargetOptions> for TargetOptions {
    type Error = String;

    fn try_from(go: GoTargetOptions) -> Result<Self, String> {
        let check = go.health_check_config;
        let interval = duration(check.interval, "health check interval")?;
        let timeout = duration(check.timeout, "health check timeout")?;
        // Go restores these unchecked and its ticker panics on zero; refuse the one service.
        if interval.is_zero() || timeout.is_zero() {
            return Err("the health check interval and timeout must be greater than zero".into());
        }
        Ok(TargetOptions {
            health_check: HealthCheckConfig {
                path: check.path,
                port: match check.port {
                    0 => None,
                    port => {
                        Some(u16::try_from(port).map_err(|_| {
                            format!("health check port {port} is not from 1 to 65535")
                        })?)
                    }
                },
                interval,
                timeout,
                host: non_empty(check.host),
            },
            response_timeout: duration(go.response_timeout, "response_timeout")?,
            buffer_requests: go.buffer_requests,
            buffer_responses: go.buffer_responses,
            max_memory_buffer_size: byte_count(
                go.max_memory_buffer_size,
                "max_memory_buffer_size",
            )?,
            max_request_body_size: byte_count(go.max_request_body_size, "max_request_body_size")?,
            max_response_body_size: byte_count(
                go.max_response_body_size,
                "max_response_body_size",
            )?,
            log_request_headers: parse_all(&go.log_request_headers, |text| {
                header_name(text).map(LoggedHeader::request)
            })?,
            log_response_headers: parse_all(&go.log_response_headers, |text| {
                header_name(text).map(LoggedHeader::response)
            })?,
            forward_headers: go.forward_headers,
            scope_cookie_paths: go.scope_cookie_paths,
        })
    }
}

impl TryFrom<GoPauseController> for SavedPause {
    type Error = String;

    fn try_from(go: GoPauseController) -> Result<Self, String> {
        Ok(SavedPause {
            state: match go.state {
                0 => PauseState::Running,
                1 => PauseState::Paused,
                2 => PauseState::Stopped,
                other => return Err(format!("unknown pause state {other}")),
            },
            stop_message: go.stop_message,
            fail_after: duration(go.fail_after, "pause fail_after")?,
        })
    }
}

/// Go's TLS fields as one mode, decided as Go's `createCertManager` does: nothing unless
/// `tls_enabled`, then a certificate pair if both paths are set, else ACME.
fn tls_mode(go: &GoServiceOptions) -> Result<TlsMode, String> {
    if !go.tls_enabled {
        return Ok(TlsMode::Off);
    }
    if !go.tls_certificate_path.is_empty() && !go.tls_private_key_path.is_empty() {
        return Ok(TlsMode::Certificate {
            certificate_path: go.tls_certificate_path.clone(),
            private_key_path: go.tls_private_key_path.clone(),
        });
    }
    Ok(TlsMode::Acme(AcmeSettings {
        // An empty directory makes Go's ACME client use Let's Encrypt production.
        directory: non_empty(go.acme_directory.clone())
            .unwrap_or_else(|| LETS_ENCRYPT_PRODUCTION.to_string()),
        cache_path: non_empty(go.acme_cache_path.clone()),
        on_demand_url: non_empty(go.tls_on_demand_url.clone())
            .map(|url| OnDemandUrl::parse(&url))
            .transpose()?,
        external_account_binding: match (
            non_empty(go.acme_eab_kid.clone()),
            non_empty(go.acme_eab_hmac_key.clone()),
        ) {
            (Some(key_id), Some(hmac_key)) => Some(ExternalAccountBinding { key_id, hmac_key }),
            _ => None,
        },
        contact: non_empty(go.acme_contact.clone()),
    }))
}

/// The legacy single-target key counts only when the list is empty, as in Go.
fn with_legacy(list: Vec<String>, single: String) -> Vec<String> {
    if list.is_empty() && !single.is_empty() {
        vec![single]
    } else {
        list
    }
}

fn parse_all<T>(
    texts: &[String],
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    texts.iter().map(|text| parse(text)).collect()
}

fn header_name(text: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(text.as_bytes()).map_err(|_| format!("invalid header name \"{text}\""))
}

/// Go stores durations as signed nanoseconds; a negative one means nothing we can wait for.
fn duration(nanos: i64, field: &str) -> Result<Duration, String> {
    u64::try_from(nanos)
        .map(Duration::from_nanos)
        .map_err(|_| format!("{field} is negative ({nanos}ns)"))
}

fn byte_count(bytes: i64, field: &str) -> Result<u64, String> {
    u64::try_from(bytes).map_err(|_| format!("{field} is negative ({bytes})"))
}

/// Saturates instead of wrapping: Go's `time.Duration` is an `int64` of nanoseconds.
fn nanos(duration: Duration) -> i64 {
    i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX)
}

fn size(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

fn strings<T: ToString>(items: &[T]) -> Vec<String> {
    items.iter().map(T::to_string).collect()
}

/// Go spells "unset" as the empty string.
fn optional(text: Option<&str>) -> String {
    text.unwrap_or_default().to_string()
}

fn non_empty(text: String) -> Option<String> {
    Some(text).filter(|text| !text.is_empty())
}
