//! `Service`: one deployed application as the data plane sees it, immutable.
//!
//! A deploy does not mutate a service; it builds a new `Service` with the new options and
//! load balancer, sharing the pause controller, and the router swaps it in. Requests that
//! already hold the old one finish on it undisturbed.

use std::sync::Arc;

use super::load_balancer::LoadBalancer;
use super::options::{ServiceOptions, TargetOptions};
use super::pause_controller::PauseController;
use crate::control::ServiceName;

pub struct Service {
    pub name: ServiceName,
    pub options: ServiceOptions,
    pub target_options: TargetOptions,
    pub active: Arc<LoadBalancer>,
    pub pause: Arc<PauseController>,
}
