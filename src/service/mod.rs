//! A service: its targets, how they are health-checked and load-balanced, and how traffic is
//! paused, stopped and drained.

pub mod health_check;
pub mod load_balancer;
pub mod options;
pub mod pause_controller;
pub mod pause_state;
mod service;
pub mod target;
pub mod target_state;

pub use service::Service;
