//! The option sets of the control calls, and their `a{sv}` encoding.
//!
//! Every field is optional: the CLI sends only what the user set, and the daemon fills in
//! defaults (the Go CLI's client-side defaults are a known bug: a raw client got different
//! behaviour). Each struct is declared once and the macro derives both directions, so the
//! CLI and the daemon cannot disagree about a key or a type. Unknown keys and wrong types
//! are refused with a message naming the key.

use std::collections::HashMap;
use std::time::Duration;

use zbus::zvariant::{OwnedValue, Value};

use super::wire_value::{DecodeError, WireValue};
use super::{ControlError, ErrorPageFiles, FileContents, Host, PathPrefix, TargetAddress};

/// The `a{sv}` dictionary as it arrives from D-Bus.
pub type OptionDict = HashMap<String, OwnedValue>;

fn key_of<T: WireValue>(name: &str) -> String {
    format!("{name}{}", T::KEY_SUFFIX)
}

fn take<T: WireValue>(dict: &mut OptionDict, name: &str) -> Result<Option<T>, ControlError> {
    let key = key_of::<T>(name);
    let Some(value) = dict.remove(&key) else {
        return Ok(None);
    };
    match T::decode(&value) {
        Ok(decoded) => Ok(Some(decoded)),
        Err(DecodeError::WrongType) => Err(ControlError::InvalidArgs(format!(
            "option \"{key}\" must have D-Bus type '{}', not '{}'",
            T::SIGNATURE,
            value.value_signature()
        ))),
        Err(DecodeError::Invalid(why)) => Err(ControlError::InvalidOptions(why)),
    }
}

fn reject_unknown(dict: OptionDict) -> Result<(), ControlError> {
    let mut unknown: Vec<String> = dict.into_keys().collect();
    if unknown.is_empty() {
        return Ok(());
    }
    unknown.sort();
    Err(ControlError::InvalidArgs(format!(
        "unknown option \"{}\"",
        unknown.join("\", \"")
    )))
}

macro_rules! options {
    ($(#[$meta:meta])* pub struct $name:ident { $( $(#[$field_meta:meta])* $field:ident : $ty:ty ),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq)]
        pub struct $name {
            $( $(#[$field_meta])* pub $field: Option<$ty>, )*
        }

        impl $name {
            pub fn from_dict(mut dict: OptionDict) -> Result<Self, ControlError> {
                let options = Self { $( $field: take::<$ty>(&mut dict, stringify!($field))?, )* };
                reject_unknown(dict)?;
                Ok(options)
            }

            /// Only the fields that are set, ready to send.
            pub fn to_dict(&self) -> HashMap<String, Value<'static>> {
                let mut dict = HashMap::new();
                $( if let Some(value) = &self.$field {
                    dict.insert(key_of::<$ty>(stringify!($field)), value.encode());
                } )*
                dict
            }
        }
    };
}

options! {
    /// Options of `Deploy`, named after the CLI flags.
    pub struct DeployOptions {
        read_targets: Vec<TargetAddress>,
        hosts: Vec<Host>,
        path_prefixes: Vec<PathPrefix>,
        strip_path_prefix: bool,
        tls: bool,
        tls_on_demand_url: String,
        tls_staging: bool,
        /// A path the daemon itself reads; the CLI sends `tls_certificate_pem` instead.
        tls_certificate_path: String,
        tls_private_key_path: String,
        /// The certificate chain's bytes, read by the caller (`--tls-certificate-path`).
        tls_certificate_pem: FileContents,
        tls_private_key_pem: FileContents,
        tls_acme_cache_path: String,
        tls_acme_directory: String,
        tls_acme_eab_kid: String,
        tls_acme_eab_hmac_key: String,
        tls_acme_contact: String,
        tls_redirect: bool,
        canonical_host: Host,
        deploy_timeout: Duration,
        drain_timeout: Duration,
        force: bool,
        health_check_interval: Duration,
        health_check_timeout: Duration,
        health_check_path: String,
        health_check_port: u16,
        health_check_host: String,
        writer_affinity_timeout: Duration,
        read_target_websockets: bool,
        target_timeout: Duration,
        buffer_requests: bool,
        buffer_responses: bool,
        buffer_memory: u64,
        max_request_body: u64,
        max_response_body: u64,
        /// A directory the daemon itself reads; the CLI sends `error_pages_files` instead.
        error_pages: String,
        /// The `*.html` pages of `--error-pages`, by file name, read by the caller.
        error_pages_files: ErrorPageFiles,
        log_request_headers: Vec<String>,
        log_response_headers: Vec<String>,
        exclude_metrics_paths: Vec<String>,
        forward_headers: bool,
        client_ip_header: String,
        scope_cookie_paths: bool,
    }
}

options! {
    /// Options of `Attach`.
    pub struct AttachOptions {
        /// The attaching container's host name (Docker: its short id), for the log.
        container: String,
    }
}

options! {
    /// Options of `Pause`.
    pub struct PauseOptions {
        drain_timeout: Duration,
        max_pause: Duration,
    }
}

options! {
    /// Options of `Stop` (maintenance mode).
    pub struct StopOptions {
        drain_timeout: Duration,
        message: String,
    }
}

options! {
    /// Options of `RolloutDeploy`; the rollout group takes the service's other options.
    pub struct RolloutDeployOptions {
        read_targets: Vec<TargetAddress>,
        deploy_timeout: Duration,
        drain_timeout: Duration,
    }
}

options! {
    /// Options of `RolloutSet`: which share of cookie values, and which values always, take
    /// the rollout group.
    pub struct RolloutSetOptions {
        percent: i32,
        allowlist: Vec<String>,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(dict: HashMap<String, Value<'static>>) -> OptionDict {
        dict.into_iter()
            .map(|(k, v)| (k, OwnedValue::try_from(v).unwrap()))
            .collect()
    }

    #[test]
    fn round_trips_every_kind_of_value() {
        let options = DeployOptions {
            hosts: Some(vec![Host::parse("a.example.com").unwrap()]),
            deploy_timeout: Some(Duration::from_millis(2500)),
            buffer_requests: Some(false),
            buffer_memory: Some(2_000_000),
            health_check_port: Some(8080),
            log_request_headers: Some(vec!["User-Agent".into()]),
            ..Default::default()
        };
        let dict = options.to_dict();
        assert!(dict.contains_key("deploy_timeout_usec"));
        assert_eq!(DeployOptions::from_dict(owned(dict)).unwrap(), options);
    }

    #[test]
    fn names_unknown_keys_and_wrong_types() {
        let unknown = owned([("colour".to_string(), Value::from("blue"))].into());
        assert_eq!(
            DeployOptions::from_dict(unknown).unwrap_err(),
            ControlError::InvalidArgs("unknown option \"colour\"".into())
        );
        let wrong = owned([("tls".to_string(), Value::from("yes"))].into());
        assert_eq!(
            DeployOptions::from_dict(wrong).unwrap_err(),
            ControlError::InvalidArgs("option \"tls\" must have D-Bus type 'b', not 's'".into())
        );
    }

    #[test]
    fn round_trips_rollout_options_with_their_wire_types() {
        let set = RolloutSetOptions {
            percent: Some(25),
            allowlist: Some(vec!["42".into()]),
        };
        let dict = set.to_dict();
        assert_eq!(dict["percent"], Value::I32(25));
        assert_eq!(RolloutSetOptions::from_dict(owned(dict)).unwrap(), set);
        let wrong = owned([("percent".to_string(), Value::from("25"))].into());
        assert_eq!(
            RolloutSetOptions::from_dict(wrong).unwrap_err(),
            ControlError::InvalidArgs(
                "option \"percent\" must have D-Bus type 'i', not 's'".into()
            )
        );
        let deploy = RolloutDeployOptions {
            read_targets: Some(vec![TargetAddress::parse("rd:80").unwrap()]),
            drain_timeout: Some(Duration::from_secs(5)),
            ..Default::default()
        };
        assert!(deploy.to_dict().contains_key("drain_timeout_usec"));
        assert_eq!(
            RolloutDeployOptions::from_dict(owned(deploy.to_dict())).unwrap(),
            deploy
        );
    }

    #[test]
    fn refuses_invalid_values_with_the_reason() {
        let bad = owned([("hosts".to_string(), Value::from(vec!["a b".to_string()]))].into());
        let error = DeployOptions::from_dict(bad).unwrap_err();
        assert!(
            matches!(&error, ControlError::InvalidOptions(text) if text.contains("\"a b\"")),
            "{error:?}"
        );
    }
}
