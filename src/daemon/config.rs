//! `RunConfig`: everything `kamal-proxy run` was told, already checked.
//!
//! The CLI builds it from flags and environment; tests build it directly.

use std::net::IpAddr;

use crate::control::BusChoice;
use crate::logging::LogFormat;

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
    /// `auto`: the journal when stderr is journald's stream, else JSON on stdout.
    pub log_format: LogFormat,
}
