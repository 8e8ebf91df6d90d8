//! `TargetState`: a target's health as its checks last saw it.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum TargetState {
    /// Not yet passed a check: gets no traffic; failures do not change it.
    Adding = 0,
    Healthy = 1,
    Unhealthy = 2,
}

impl TargetState {
    pub(crate) fn from_u8(value: u8) -> Self {
        match value {
            1 => TargetState::Healthy,
            2 => TargetState::Unhealthy,
            _ => TargetState::Adding,
        }
    }
}

impl fmt::Display for TargetState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TargetState::Adding => "adding",
            TargetState::Healthy => "healthy",
            TargetState::Unhealthy => "unhealthy",
        })
    }
}
