//! A service: its targets, how they are health-checked and load-balanced, and how traffic is
//! paused, stopped and drained.

pub mod options;
pub mod pause_state;
