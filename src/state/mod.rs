//! The persisted routing table: what every service looked like after the last change, so a
//! restart (or a move from the Go proxy) brings every app back without redeploying.
//!
//! This module owns the file's format and its life on disk, not the services themselves: the
//! router hands over `SavedService` snapshots to `StateFile::save` and rebuilds services from
//! `StateFile::load`. Two things are the point of doing it here rather than as Go does:
//! - writes are atomic (temp file, fsync, rename, fsync the directory) and their errors are
//!   returned, so a crash or a full disk never leaves a truncated table behind;
//! - restore is per service: one entry that no longer parses is skipped with a reason and
//!   every other service still loads (the Go proxy drops them all, its issue #233), and a
//!   file that is not a table at all is moved aside instead of being overwritten.
//!
//! The format is exactly the Go proxy's (`go_format`), so the file works in both directions.

mod file_copies;
mod go_format;
mod resolved_names;
mod state_file;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::control::{ServiceName, TargetAddress};
use crate::service::options::{ServiceOptions, TargetOptions, TlsMode};
use crate::service::pause_state::PauseState;
pub use file_copies::{CopyPlan, FileCopies, StagedCopies};
use go_format::GoService;
pub use resolved_names::ResolvedNames;
pub use state_file::{write_atomically, StateError, StateFile};

/// One service as persisted: its resolved options, its targets and its traffic controls.
/// Deploy timings (deploy/drain timeout, force) are not saved, as in Go.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedService {
    pub name: ServiceName,
    pub service_options: ServiceOptions,
    pub target_options: TargetOptions,
    pub active_targets: Vec<TargetAddress>,
    pub active_readers: Vec<TargetAddress>,
    /// Kept after `rollout stop`, as in Go: the rollout group stays deployed.
    pub rollout_targets: Vec<TargetAddress>,
    pub rollout_readers: Vec<TargetAddress>,
    pub pause: SavedPause,
    /// `None`: no split is set, so every request goes to the active targets.
    pub rollout: Option<SavedRollout>,
}

impl SavedService {
    /// The files and directories the service reads at restore (certificate, key, error
    /// pages): what a sweep of the `FileCopies` must keep.
    pub fn referenced_files(&self) -> impl Iterator<Item = &Path> {
        let options = &self.service_options;
        let tls = match &options.tls {
            TlsMode::Certificate {
                certificate_path,
                private_key_path,
            } => vec![certificate_path, private_key_path],
            TlsMode::Off | TlsMode::Acme(_) => vec![],
        };
        tls.into_iter()
            .chain(&options.error_page_path)
            .map(Path::new)
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct SavedPause {
    pub state: PauseState,
    pub stop_message: String,
    /// How long a paused request waits before failing.
    pub fail_after: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SavedRollout {
    /// Not range-checked, as in Go.
    pub percentage: i64,
    /// `u32::MAX as f64 * percentage / 100`: cookie hashes at or below it take the rollout.
    pub split_point: f64,
    pub allowlist: Vec<String>,
}

/// A saved service that could not be restored; the rest of the table still loads.
#[derive(Debug, Clone, PartialEq)]
pub struct SkippedService {
    /// The saved name, or `#<index>` when the entry has no usable name.
    pub name: String,
    pub reason: String,
}

/// What a start-up restore found.
#[derive(Debug, Clone, PartialEq)]
pub enum LoadOutcome {
    /// No file yet: the caller logs "No previous state to restore".
    Missing,
    Loaded {
        services: Vec<SavedService>,
        skipped: Vec<SkippedService>,
    },
    /// Not a readable JSON array. The file was moved to `moved_to` (if that worked) so the
    /// next save cannot destroy it; the caller starts with an empty table.
    Unreadable {
        error: String,
        moved_to: Option<PathBuf>,
    },
}

/// Go's encoding: one JSON line and a newline.
fn encode(services: &[SavedService]) -> Vec<u8> {
    let go: Vec<GoService> = services.iter().map(GoService::from).collect();
    // Cannot fail: plain structs with string keys, and serde_json writes NaN as null.
    let mut bytes = serde_json::to_vec(&go).expect("state serialises");
    bytes.push(b'\n');
    bytes
}

/// Decodes the whole file; only a file that is not a JSON array is an error. Each element is
/// decoded on its own so one bad service costs only itself.
fn decode(bytes: &[u8]) -> Result<(Vec<SavedService>, Vec<SkippedService>), String> {
    let entries = match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Array(entries)) => entries,
        Ok(_) => return Err("the state file does not hold a JSON array".to_string()),
        Err(error) => return Err(format!("the state file is not valid JSON: {error}")),
    };
    let mut services: Vec<SavedService> = Vec::new();
    let mut skipped = Vec::new();
    for (index, entry) in entries.into_iter().enumerate() {
        let name = entry_name(&entry, index);
        match decode_service(entry) {
            Ok(service) if services.iter().any(|s| s.name == service.name) => {
                skipped.push(SkippedService {
                    name,
                    reason: "a service with this name was already restored".to_string(),
                });
            }
            Ok(service) => services.push(service),
            Err(reason) => skipped.push(SkippedService { name, reason }),
        }
    }
    Ok((services, skipped))
}

fn decode_service(mut entry: Value) -> Result<SavedService, String> {
    drop_nulls(&mut entry);
    let go: GoService = serde_json::from_value(entry).map_err(|error| error.to_string())?;
    SavedService::try_from(go)
}

fn entry_name(entry: &Value, index: usize) -> String {
    match entry.get("name").and_then(Value::as_str) {
        Some(name) if !name.is_empty() => name.to_string(),
        _ => format!("#{index}"),
    }
}

/// Go decodes `null` into a field as "leave the zero value"; removing null members lets
/// `#[serde(default)]` do the same for every field at once.
fn drop_nulls(value: &mut Value) {
    if let Value::Object(members) = value {
        members.retain(|_, member| !member.is_null());
        members.values_mut().for_each(drop_nulls);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{Host, OnDemandUrl, PathPrefix};
    use crate::logging::LoggedHeader;
    use crate::service::options::{
        AcmeSettings, ExternalAccountBinding, HealthCheckConfig, TlsMode, LETS_ENCRYPT_PRODUCTION,
    };
    use http::HeaderName;

    fn targets(addresses: &[&str]) -> Vec<TargetAddress> {
        addresses
            .iter()
            .map(|address| TargetAddress::parse(address).unwrap())
            .collect()
    }

    /// A service with every field set away from its zero value.
    pub(super) fn full_service(name: &str) -> SavedService {
        SavedService {
            name: ServiceName::parse(name).unwrap(),
            service_options: ServiceOptions {
                hosts: vec![
                    Host::parse("a.example.com").unwrap(),
                    Host::parse("b.example.com").unwrap(),
                ],
                path_prefixes: vec![PathPrefix::parse("/api").unwrap()],
                tls: TlsMode::Acme(AcmeSettings {
                    directory: "https://acme.test/directory".into(),
                    cache_path: Some("/var/lib/kamal-proxy/certs".into()),
                    on_demand_url: Some(OnDemandUrl::parse("http://checker:8080/allow").unwrap()),
                    external_account_binding: Some(ExternalAccountBinding {
                        key_id: "kid-1".into(),
                        hmac_key: "c2VjcmV0".into(),
                    }),
                    contact: Some("ops@example.com".into()),
                }),
                tls_redirect: true,
                canonical_host: Some(Host::parse("a.example.com").unwrap()),
                error_page_path: Some("/srv/pages".into()),
                strip_prefix: true,
                writer_affinity_timeout: Duration::from_millis(1500),
                read_targets_accept_websockets: true,
                exclude_metrics_paths: vec!["/up".into()],
                client_ip_header: Some(HeaderName::from_static("cf-connecting-ip")),
            },
            target_options: TargetOptions {
                health_check: HealthCheckConfig {
                    path: "/healthz".into(),
                    port: Some(3001),
                    interval: Duration::from_secs(2),
                    timeout: Duration::from_millis(2500),
                    host: Some("internal.example".into()),
                },
                response_timeout: Duration::from_secs(45),
                buffer_requests: true,
                buffer_responses: true,
                max_memory_buffer_size: 2 << 20,
                max_request_body_size: 10 << 20,
                max_response_body_size: 20 << 20,
                log_request_headers: vec![LoggedHeader::request(HeaderName::from_static(
                    "x-account",
                ))],
                log_response_headers: vec![LoggedHeader::response(HeaderName::from_static(
                    "x-runtime",
                ))],
                forward_headers: true,
                scope_cookie_paths: true,
            },
            active_targets: targets(&["web-1:3000", "[::1]:3000"]),
            active_readers: targets(&["reader-1:3000"]),
            rollout_targets: targets(&["web-2:3000"]),
            rollout_readers: targets(&["reader-2:3000"]),
            pause: SavedPause {
                state: PauseState::Paused,
                stop_message: String::new(),
                fail_after: Duration::from_secs(90),
            },
            rollout: Some(SavedRollout {
                percentage: 25,
                split_point: 1073741823.75,
                allowlist: vec!["42".into(), "7".into()],
            }),
        }
    }

    fn skipped_names(skipped: &[SkippedService]) -> Vec<&str> {
        skipped.iter().map(|s| s.name.as_str()).collect()
    }

    #[test]
    fn round_trips_every_field_as_one_go_json_line() {
        let mut certificate = full_service("certificate");
        certificate.service_options.tls = TlsMode::Certificate {
            certificate_path: "/etc/ssl/app.pem".into(),
            private_key_path: "/etc/ssl/app.key".into(),
        };
        certificate.rollout = None;
        let mut plain = full_service("plain");
        plain.service_options.tls = TlsMode::Off;
        let services = vec![full_service("app-web"), certificate, plain];

        let bytes = encode(&services);
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.ends_with("}]\n") && text.matches('\n').count() == 1);
        assert!(text.starts_with(r#"[{"name":"app-web","options":{"hosts":["a.example.com","b.example.com"],"path_prefixes":["/api"],"tls_enabled":true,"#));
        assert!(text.contains(r#""writer_affinity_timeout":1500000000,"#));
        assert!(text.contains(
            r#""pause_controller":{"state":1,"stop_message":"","fail_after":90000000000}"#
        ));
        assert!(text.contains(r#""rollout_controller":null"#));
        assert!(!text.contains("active_target\"") && !text.contains("disabled"));

        assert_eq!(decode(&bytes).unwrap(), (services, vec![]));
    }

    #[test]
    fn reads_a_state_line_written_by_the_go_proxy() {
        let go_line = concat!(
            r#"[{"name":"app-web","options":{"hosts":["App.Example.com"],"path_prefixes":null,"tls_enabled":true,"#,
            r#""tls_certificate_path":"","tls_private_key_path":"","tls_on_demand_url":"","tls_redirect":true,"#,
            r#""canonical_host":"","acme_directory":"","acme_cache_path":"/home/kamal-proxy/.config/kamal-proxy/certs","#,
            r#""error_page_path":"","strip_prefix":true,"writer_affinity_timeout":1000000000,"#,
            r#""read_targets_accept_websockets":false,"exclude_metrics_paths":null,"client_ip_header":""},"#,
            r#""target_options":{"health_check_config":{"path":"/up","port":0,"interval":1000000000,"timeout":5000000000,"host":""},"#,
            r#""response_timeout":30000000000,"buffer_requests":false,"buffer_responses":true,"max_memory_buffer_size":1048576,"#,
            r#""max_request_body_size":0,"max_response_body_size":0,"log_request_headers":null,"log_response_headers":["X-Runtime"],"#,
            r#""forward_headers":false,"scope_cookie_paths":false},"active_targets":["app-web-abc123:3000"],"active_readers":null,"#,
            r#""rollout_targets":["app-web-def456:3000"],"rollout_readers":null,"#,
            r#""pause_controller":{"state":2,"stop_message":"Back at 10:00","fail_after":30000000000},"#,
            r#""rollout_controller":{"percentage":25,"percentage_split_point":1073741823.75,"allowlist":["42"]}},"#,
            // An older release's entry: single target, top-level hosts and prefixes, few keys.
            r#"{"name":"legacy","active_target":"legacy-web:80","hosts":["old.example.com"],"path_prefixes":["api/"],"#,
            r#""options":{"tls_enabled":false},"target_options":{"health_check_config":{"path":"/up","interval":1000000000,"timeout":5000000000}},"#,
            r#""pause_controller":null,"rollout_controller":null,"some_future_key":{"x":1}}]"#,
            "\n"
        );
        let (services, skipped) = decode(go_line.as_bytes()).unwrap();
        assert_eq!(skipped, vec![]);

        let app = &services[0];
        assert_eq!(app.service_options.hosts[0].as_str(), "app.example.com");
        assert_eq!(app.service_options.path_prefixes, vec![PathPrefix::root()]);
        assert_eq!(
            app.service_options.tls,
            TlsMode::Acme(AcmeSettings {
                directory: LETS_ENCRYPT_PRODUCTION.into(),
                cache_path: Some("/home/kamal-proxy/.config/kamal-proxy/certs".into()),
                on_demand_url: None,
                external_account_binding: None,
                contact: None,
            })
        );
        assert_eq!(app.target_options.health_check.port, None);
        assert_eq!(app.target_options.response_timeout, Duration::from_secs(30));
        assert_eq!(app.target_options.log_response_headers[0].name, "x-runtime");
        assert_eq!(app.rollout_targets, targets(&["app-web-def456:3000"]));
        assert_eq!(
            app.pause,
            SavedPause {
                state: PauseState::Stopped,
                stop_message: "Back at 10:00".into(),
                fail_after: Duration::from_secs(30),
            }
        );
        assert_eq!(
            app.rollout,
            Some(SavedRollout {
                percentage: 25,
                split_point: 1073741823.75,
                allowlist: vec!["42".into()],
            })
        );

        let legacy = &services[1];
        assert_eq!(legacy.active_targets, targets(&["legacy-web:80"]));
        assert_eq!(legacy.service_options.hosts[0].as_str(), "old.example.com");
        assert_eq!(legacy.service_options.path_prefixes[0].as_str(), "/api");
        assert_eq!(legacy.service_options.tls, TlsMode::Off);
        assert_eq!(legacy.pause, SavedPause::default());
        assert_eq!(legacy.rollout, None);
    }

    #[test]
    fn skips_only_the_broken_services_naming_why() {
        let good = |name: &str| {
            let mut service = serde_json::to_value(GoService::from(&full_service(name))).unwrap();
            service["rollout_controller"] = Value::Null;
            service
        };
        let mut bad_target = good("bad-target");
        bad_target["active_targets"] = serde_json::json!(["web-1:3000", "http://web-2:3000"]);
        let mut no_targets = good("no-targets");
        no_targets["active_targets"] = Value::Null;
        let mut bad_port = good("bad-port");
        bad_port["target_options"]["health_check_config"]["port"] = 70000.into();
        let file = Value::Array(vec![
            good("first"),
            bad_target,
            serde_json::json!(42),
            no_targets,
            bad_port,
            good("first"),
            good("last"),
        ]);

        let (services, skipped) = decode(file.to_string().as_bytes()).unwrap();

        let names: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["first", "last"]);
        assert_eq!(
            skipped_names(&skipped),
            ["bad-target", "#2", "no-targets", "bad-port", "first"]
        );
        assert!(
            skipped[0].reason.contains("\"http://web-2:3000\""),
            "{}",
            skipped[0].reason
        );
        assert!(skipped[2].reason.contains("no active targets"));
        assert!(skipped[3].reason.contains("70000"));
    }

    #[test]
    fn reads_a_stopped_rollout_of_newer_go_releases_as_none() {
        let mut service = serde_json::to_value(GoService::from(&full_service("app"))).unwrap();
        service["rollout_controller"]["disabled"] = true.into();
        let (services, _) = decode(Value::Array(vec![service]).to_string().as_bytes()).unwrap();
        assert_eq!(services[0].rollout, None);
    }

    #[test]
    fn refuses_files_that_are_not_a_json_array() {
        assert!(decode(b"not json").unwrap_err().contains("not valid JSON"));
        assert!(decode(b"{\"name\":\"app\"}")
            .unwrap_err()
            .contains("JSON array"));
        assert!(decode(b"").is_err());
    }
}
