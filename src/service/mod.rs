//! A service: its targets, how they are health-checked and load-balanced, how traffic is
//! paused, stopped and drained, and how a rollout group takes a share of it.
//!
//! `Service` itself is immutable: a deploy builds a new one with the new options and load
//! balancer, sharing the pause controller and keeping the rollout group, and the router swaps
//! it in; a rollout deploy or split change swaps in a copy with the new rollout parts.
//! Requests that already hold the old one finish on it undisturbed.

mod cookies;
pub mod drain_bell;
pub mod error_pages;
pub mod health_check;
pub mod load_balancer;
pub mod options;
pub mod page_template;
pub mod pause_controller;
pub mod pause_state;
pub mod rollout_controller;
pub mod sent_files;
pub mod target;
pub mod target_resolver;
pub mod target_state;
pub mod tls_policy;
pub mod writer_affinity;

use std::sync::Arc;

use http::HeaderMap;

use crate::control::ServiceName;
use error_pages::ErrorPages;
use load_balancer::LoadBalancer;
use options::{ServiceOptions, TargetOptions};
use pause_controller::PauseController;
use rollout_controller::{RolloutController, TargetGroup};
use rustls::sign::CertifiedKey;
use tls_policy::TlsPolicy;

/// One deployed application as the data plane sees it.
#[derive(Clone)]
pub struct Service {
    pub name: ServiceName,
    pub options: ServiceOptions,
    pub target_options: TargetOptions,
    pub active: Arc<LoadBalancer>,
    pub pause: Arc<PauseController>,
    /// `--error-pages`, loaded at deploy time.
    pub error_pages: Option<Arc<ErrorPages>>,
    /// Targets deployed with `rollout deploy`; they stay deployed (and checked) after
    /// `rollout stop`, as in Go.
    pub rollout: Option<Arc<LoadBalancer>>,
    /// The split set with `rollout set`; `None` sends everything to `active`.
    pub rollout_controller: Option<RolloutController>,
    /// Whether HTTPS is on, own or inherited from the host's root service (the router keeps
    /// it current as services come and go).
    pub tls: TlsPolicy,
    /// `--tls-certificate-path` / `--tls-private-key-path`, loaded at deploy or restore.
    pub certificate: Option<Arc<CertifiedKey>>,
}

impl Service {
    /// The balancer a request with these headers goes to.
    pub fn load_balancer_for(&self, headers: &HeaderMap) -> &Arc<LoadBalancer> {
        match (&self.rollout, &self.rollout_controller) {
            (Some(rollout), Some(controller))
                if controller.group_for(headers) == TargetGroup::Rollout =>
            {
                rollout
            }
            _ => &self.active,
        }
    }

    /// Every balancer that serves traffic or may: active, then rollout.
    pub fn load_balancers(&self) -> impl Iterator<Item = &Arc<LoadBalancer>> {
        std::iter::once(&self.active).chain(&self.rollout)
    }
}
