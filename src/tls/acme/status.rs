//! `CertificateState`: where each automatically managed host's certificate stands, as `list`
//! and the `CertificateStatus` D-Bus method report it.

use std::time::{Duration, SystemTime};

use crate::go_duration;

#[derive(Debug, Clone, PartialEq)]
pub enum CertificateState {
    /// No certificate yet; an order is due or running.
    Pending,
    Valid {
        not_after: SystemTime,
    },
    /// The last order failed; a valid older certificate, if any, is still served.
    Failed {
        reason: String,
        retry_at: SystemTime,
    },
}

impl CertificateState {
    /// The wire form at `now`: state name and a human detail. A failure says how long
    /// until the next attempt, which may be the CA's `Retry-After` rather than our backoff.
    pub fn describe(&self, now: SystemTime) -> (String, String) {
        let when = |t: &SystemTime| httpdate::fmt_http_date(*t);
        match self {
            CertificateState::Pending => ("pending".into(), String::new()),
            CertificateState::Valid { not_after } => {
                ("valid".into(), format!("expires {}", when(not_after)))
            }
            CertificateState::Failed { reason, retry_at } => {
                let wait = retry_at.duration_since(now).unwrap_or_default();
                let whole_seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                let wait = go_duration::format(Duration::from_secs(whole_seconds));
                (
                    "failed".into(),
                    format!("{reason} (next attempt in {wait}, at {})", when(retry_at)),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_how_long_until_a_failed_order_is_retried() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        let failed = CertificateState::Failed {
            reason: "too many certificates".into(),
            retry_at: now + Duration::from_millis(2 * 60 * 60 * 1000 + 1),
        };
        assert_eq!(
            failed.describe(now),
            (
                "failed".into(),
                "too many certificates (next attempt in 2h0m1s, at Sun, 06 Nov 1994 10:49:37 GMT)"
                    .into()
            )
        );
        let (_, overdue) = failed.describe(now + Duration::from_secs(3 * 60 * 60));
        assert!(overdue.contains("next attempt in 0s"), "{overdue}");
    }
}
