//! When to renew a certificate and when to retry a failed order.
//!
//! Renewal follows Go's autocert: 30 days before expiry, or a third of the lifetime before
//! it for short-lived certificates. Failed orders back off exponentially from one minute to
//! one hour, so a misconfigured host does not run into the CA's rate limits, and never
//! sooner than the CA's `Retry-After`, since retrying into a rate limit only extends it. A
//! `Retry-After` beyond a day is taken as a day: a CA's mistake (or a clock far off) must
//! not park a host for weeks.

use std::time::{Duration, SystemTime};

use crate::tls::certificate::Validity;

const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 60 * 60);
const FIRST_RETRY: Duration = Duration::from_secs(60);
const LONGEST_RETRY: Duration = Duration::from_secs(60 * 60);
const LONGEST_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// When a certificate with this validity should be replaced.
pub fn renewal_time(validity: Validity) -> SystemTime {
    let lifetime = validity
        .not_after
        .duration_since(validity.not_before)
        .unwrap_or_default();
    validity.not_after - RENEW_BEFORE.min(lifetime / 3)
}

/// How long to wait after the `failures`-th failure in a row (1 is the first), when the CA
/// asked for `retry_after`.
pub fn retry_delay(failures: u32, retry_after: Option<Duration>) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    let backoff = FIRST_RETRY.saturating_mul(1 << exponent).min(LONGEST_RETRY);
    backoff.max(retry_after.unwrap_or_default().min(LONGEST_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 60 * 60);

    fn validity(lifetime: Duration) -> Validity {
        let not_before = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        Validity {
            not_before,
            not_after: not_before + lifetime,
        }
    }

    #[test]
    fn renews_thirty_days_early_when_the_certificate_is_long_lived() {
        let v = validity(90 * DAY);
        assert_eq!(renewal_time(v), v.not_after - 30 * DAY);
    }

    #[test]
    fn renews_a_third_of_the_lifetime_early_when_it_is_short() {
        let v = validity(Duration::from_secs(30));
        assert_eq!(renewal_time(v), v.not_after - Duration::from_secs(10));
        let week = validity(6 * DAY);
        assert_eq!(renewal_time(week), week.not_after - 2 * DAY);
    }

    #[test]
    fn backs_off_from_a_minute_to_an_hour() {
        assert_eq!(retry_delay(1, None), Duration::from_secs(60));
        assert_eq!(retry_delay(2, None), Duration::from_secs(120));
        assert_eq!(retry_delay(7, None), Duration::from_secs(3600));
        assert_eq!(retry_delay(40, None), Duration::from_secs(3600));
    }

    #[test]
    fn waits_for_the_later_of_backoff_and_retry_after_when_the_ca_asks() {
        let minutes = |m: u64| Duration::from_secs(60 * m);
        assert_eq!(retry_delay(1, Some(minutes(10))), minutes(10));
        assert_eq!(
            retry_delay(3, Some(minutes(2))),
            minutes(4),
            "backoff is longer"
        );
        assert_eq!(
            retry_delay(40, Some(minutes(120))),
            minutes(120),
            "beyond the hour cap"
        );
        assert_eq!(retry_delay(1, Some(Duration::ZERO)), minutes(1));
    }

    #[test]
    fn honours_retry_after_for_a_day_at_most() {
        assert_eq!(retry_delay(1, Some(30 * DAY)), DAY);
        assert_eq!(retry_delay(1, Some(Duration::MAX)), DAY);
    }
}
