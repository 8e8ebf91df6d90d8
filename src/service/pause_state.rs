//! `PauseState`: whether a service's traffic flows, waits, or is refused.

use std::fmt;

/// Displayed as upstream displays it (`list`'s State column); the state file stores the
/// Go numbers (0, 1, 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PauseState {
    #[default]
    Running,
    /// Requests wait (up to `--max-pause`) until resumed.
    Paused,
    /// Maintenance: requests get 503 with the stop message.
    Stopped,
}

impl fmt::Display for PauseState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PauseState::Running => "running",
            PauseState::Paused => "paused",
            PauseState::Stopped => "stopped",
        })
    }
}
