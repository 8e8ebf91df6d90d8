//! A service: its targets, how they are health-checked and load-balanced, and how traffic is
//! paused, stopped and drained.
//!
//! `Service` itself is immutable: a deploy builds a new one with the new options and load
//! balancer, sharing the pause controller, and the router swaps it in. Requests that already
//! hold the old one finish on it undisturbed.

pub mod error_pages;
pub mod health_check;
pub mod load_balancer;
pub mod options;
mod page_template;
pub mod pause_controller;
pub mod pause_state;
pub mod target;
pub mod target_state;

use std::sync::Arc;

use crate::control::ServiceName;
use error_pages::ErrorPages;
use load_balancer::LoadBalancer;
use options::{ServiceOptions, TargetOptions};
use pause_controller::PauseController;

/// One deployed application as the data plane sees it.
pub struct Service {
    pub name: ServiceName,
    pub options: ServiceOptions,
    pub target_options: TargetOptions,
    pub active: Arc<LoadBalancer>,
    pub pause: Arc<PauseController>,
    /// `--error-pages`, loaded at deploy time.
    pub error_pages: Option<Arc<ErrorPages>>,
}
