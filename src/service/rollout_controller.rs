//! `RolloutController`: which requests a service's rollout group serves.
//!
//! The application, not the proxy, labels each request with the `kamal-rollout` cookie (an
//! account id, say), so one user keeps seeing one version. A value on the allowlist always
//! takes the rollout; any other value does when its FNV-1a-32 hash is at or below the split
//! point, a fixed fraction of the hash space, so the assignment is deterministic per value
//! and the same across restarts and proxies. Requests without the cookie stay on the active
//! group. The controller only decides; the router owns the rollout load balancer.

use http::HeaderMap;

use super::cookies;
use crate::control::{ControlError, RolloutSetOptions};

/// The cookie whose value places a request in a group (Go's `RolloutCookieName`).
pub const ROLLOUT_COOKIE: &str = "kamal-rollout";

/// Which of a service's load balancers a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetGroup {
    Active,
    Rollout,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RolloutController {
    /// 0..=100 when set over the control interface; a restored Go state file may hold any
    /// value, which then acts as Go would (below 0: allowlist only, above 100: everyone).
    percentage: i64,
    /// `u32::MAX as f64 * percentage / 100`, stored as Go stores it.
    split_point: f64,
    allowlist: Vec<String>,
}

/// FNV-1a, 32-bit (Go's `hash/fnv.New32a`).
pub fn fnv1a_32(bytes: &[u8]) -> u32 {
    const OFFSET_BASIS: u32 = 0x811c_9dc5;
    const PRIME: u32 = 0x0100_0193;
    bytes.iter().fold(OFFSET_BASIS, |hash, byte| {
        (hash ^ u32::from(*byte)).wrapping_mul(PRIME)
    })
}

/// The highest hash that still takes the rollout at `percentage`.
pub fn split_point(percentage: i64) -> f64 {
    f64::from(u32::MAX) * (percentage as f64 / 100.0)
}

impl RolloutController {
    pub fn new(percentage: i64, allowlist: Vec<String>) -> Self {
        RolloutController {
            percentage,
            split_point: split_point(percentage),
            allowlist,
        }
    }

    /// The split a `RolloutSet` call asks for. Absent fields mean 0% and no allowlist, as
    /// in Go; asking for neither is refused like the CLI refuses it, and a percentage outside
    /// 0..=100 is refused rather than silently meaning "none" or "all" (Go takes any int).
    pub fn from_options(options: RolloutSetOptions) -> Result<Self, ControlError> {
        if options.percent.is_none() && options.allowlist.is_none() {
            return Err(ControlError::InvalidOptions(
                "at least one of the flags in the group [percent list] is required".into(),
            ));
        }
        let percentage = options.percent.unwrap_or(0);
        if !(0..=100).contains(&percentage) {
            return Err(ControlError::InvalidOptions(format!(
                "percent must be between 0 and 100, not {percentage}"
            )));
        }
        Ok(Self::new(
            i64::from(percentage),
            options.allowlist.unwrap_or_default(),
        ))
    }

    pub fn percentage(&self) -> i64 {
        self.percentage
    }

    pub fn split_point(&self) -> f64 {
        self.split_point
    }

    pub fn allowlist(&self) -> &[String] {
        &self.allowlist
    }

    /// The group for a request with these headers.
    pub fn group_for(&self, headers: &HeaderMap) -> TargetGroup {
        match cookies::value(headers, ROLLOUT_COOKIE) {
            Some(value) if self.takes_rollout(value) => TargetGroup::Rollout,
            _ => TargetGroup::Active,
        }
    }

    fn takes_rollout(&self, value: &str) -> bool {
        if value.is_empty() {
            return false;
        }
        if self.allowlist.iter().any(|allowed| allowed == value) {
            return true;
        }
        // Zero means zero (as in Go today): a value hashing to 0 must not slip through a
        // split that was closed by setting 0.
        self.percentage > 0 && f64::from(fnv1a_32(value.as_bytes())) <= self.split_point
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with_cookie(cookie: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::COOKIE, HeaderValue::from_str(cookie).unwrap());
        headers
    }

    #[test]
    fn hashes_like_go_fnv1a_32() {
        assert_eq!(fnv1a_32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a_32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a_32(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn computes_the_split_point_as_a_fraction_of_the_hash_space() {
        assert_eq!(split_point(0), 0.0);
        assert_eq!(split_point(100), 4_294_967_295.0);
        assert_eq!(split_point(25), 1_073_741_823.75);
    }

    #[test]
    fn sends_requests_without_the_cookie_or_with_an_empty_one_to_active() {
        let controller = RolloutController::new(100, vec![]);
        assert_eq!(controller.group_for(&HeaderMap::new()), TargetGroup::Active);
        assert_eq!(
            controller.group_for(&with_cookie("kamal-rollout=")),
            TargetGroup::Active
        );
        assert_eq!(
            controller.group_for(&with_cookie("other=1; kamal-rollout=42")),
            TargetGroup::Rollout
        );
    }

    #[test]
    fn takes_allowlisted_values_even_at_zero_percent() {
        let controller = RolloutController::new(0, vec!["42".into()]);
        assert_eq!(
            controller.group_for(&with_cookie("kamal-rollout=42")),
            TargetGroup::Rollout
        );
        assert_eq!(
            controller.group_for(&with_cookie("kamal-rollout=43")),
            TargetGroup::Active
        );
    }

    #[test]
    fn refuses_an_empty_or_out_of_range_split() {
        let error = RolloutController::from_options(RolloutSetOptions::default()).unwrap_err();
        assert!(
            matches!(error, ControlError::InvalidOptions(_)),
            "{error:?}"
        );
        let too_much = RolloutSetOptions {
            percent: Some(101),
            ..Default::default()
        };
        assert_eq!(
            RolloutController::from_options(too_much)
                .unwrap_err()
                .message(),
            "percent must be between 0 and 100, not 101"
        );
        let list_only = RolloutSetOptions {
            allowlist: Some(vec!["42".into()]),
            ..Default::default()
        };
        let controller = RolloutController::from_options(list_only).unwrap();
        assert_eq!(
            (controller.percentage(), controller.allowlist()),
            (0, &["42".to_string()][..])
        );
    }

    #[test]
    fn splits_by_hash_against_the_split_point() {
        // fnv1a_32("a") = 0xe40c292c is about 89% of the hash space.
        let at_89 = RolloutController::new(89, vec![]);
        let at_90 = RolloutController::new(90, vec![]);
        let cookie = with_cookie("kamal-rollout=a");
        assert_eq!(at_89.group_for(&cookie), TargetGroup::Active);
        assert_eq!(at_90.group_for(&cookie), TargetGroup::Rollout);
    }
}
