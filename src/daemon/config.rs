//! `RunConfig`: everything `kamal-proxy run` was told, already checked.
//!
//! The CLI builds it from flags and environment; tests build it directly.

use std::net::IpAddr;
use std::path::PathBuf;

use crate::control::BusChoice;
use crate::logging::LogFormat;
use crate::tls::acme::challenge_kind::ChallengeKind;

#[derive(Debug, Clone, PartialEq)]
pub struct RunConfig {
    /// 0 asks the kernel for a free port (tests); the bound port is logged in `Server started`.
    pub http_port: u16,
    pub https_port: u16,
    /// `None`: no metrics listener.
    pub metrics_port: Option<u16>,
    pub debug: bool,
    /// Addresses to listen on; empty means every interface, IPv4 and IPv6.
    pub bind: Vec<IpAddr>,
    pub bus: BusChoice,
    /// An extra root to trust when talking to ACME CAs (a private or test CA).
    pub acme_ca_cert: Option<PathBuf>,
    /// ACME challenges to answer, preferred first.
    pub acme_challenges: Vec<ChallengeKind>,
    /// `auto`: the journal when stderr is journald's stream, else JSON on stdout.
    pub log_format: LogFormat,
    /// A line per request (`--log-requests=false` keeps only lifecycle messages, as nginx's
    /// `access_log off`).
    pub log_requests: bool,
}
