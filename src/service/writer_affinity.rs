//! Writer affinity: after a write, the same client's reads go to a writer for a while.
//!
//! With read replicas behind `--read-target`, a read right after a write could hit a reader
//! that has not caught up yet and show stale data. So when a service has readers and a
//! non-zero `--writer-affinity-timeout`, the response to a write carries a `kamal-writer`
//! cookie holding its expiry (unix milliseconds), and a read presenting an unexpired one is
//! treated as a write. The application can decline per response with
//! `X-Writer-Affinity: false` (say, for a write that touched nothing replicated); the proxy
//! consumes that header. The expiry travels in the value, not only in `Expires`, because
//! clocks of browsers cannot be trusted to drop the cookie on time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::SET_COOKIE;
use http::{HeaderMap, HeaderName, HeaderValue};

use super::cookies;
use super::load_balancer::RequestKind;

/// The cookie that pins reads to writers (Go's `LoadBalancerWriteCookieName`).
pub const WRITER_COOKIE: &str = "kamal-writer";
/// The response header an application sets to `false` to skip the cookie.
pub static OPT_OUT_HEADER: HeaderName = HeaderName::from_static("x-writer-affinity");

/// What writer affinity does to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriterAffinity {
    /// No readers, a zero timeout, or a read with no recent write: nothing to do.
    None,
    /// A read that follows a recent write: route it to a writer.
    FollowsWrite,
    /// A write: its response grants the cookie for `timeout`.
    GrantOnResponse { timeout: Duration },
}

fn unix_ms(time: SystemTime) -> u128 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis())
}

/// Whether the request carries a `kamal-writer` cookie that has not expired at `now`.
fn has_unexpired_cookie(headers: &HeaderMap, now: SystemTime) -> bool {
    cookies::value(headers, WRITER_COOKIE)
        .and_then(|value| value.parse::<i64>().ok())
        .is_some_and(|expires| i128::from(expires) > unix_ms(now) as i128)
}

impl WriterAffinity {
    /// Decides for a request of `kind` to a balancer that `has_readers`.
    pub fn decide(
        kind: RequestKind,
        has_readers: bool,
        timeout: Duration,
        headers: &HeaderMap,
        now: SystemTime,
    ) -> Self {
        if !has_readers || timeout.is_zero() {
            return WriterAffinity::None;
        }
        match kind {
            RequestKind::Write => WriterAffinity::GrantOnResponse { timeout },
            RequestKind::Read if has_unexpired_cookie(headers, now) => WriterAffinity::FollowsWrite,
            RequestKind::Read => WriterAffinity::None,
        }
    }

    /// The kind the load balancer should pick for.
    pub fn routed_kind(self, kind: RequestKind) -> RequestKind {
        match self {
            WriterAffinity::FollowsWrite => RequestKind::Write,
            _ => kind,
        }
    }

    /// Whether `apply_to_response` has anything to do.
    pub fn changes_response(&self) -> bool {
        matches!(self, WriterAffinity::GrantOnResponse { .. })
    }

    /// Sets the cookie on a write's response unless the application opted out, and removes
    /// the opt-out header either way.
    pub fn apply_to_response(self, headers: &mut HeaderMap, now: SystemTime) {
        let WriterAffinity::GrantOnResponse { timeout } = self else {
            return;
        };
        let opted_out = headers
            .get(&OPT_OUT_HEADER)
            .is_some_and(|value| value.as_bytes() == b"false");
        headers.remove(&OPT_OUT_HEADER);
        if !opted_out {
            headers.append(SET_COOKIE, cookie(now + timeout));
        }
    }
}

/// `kamal-writer=<ms>; Path=/; Expires=<expiry + 1s>; HttpOnly`, Go's `http.Cookie` text.
fn cookie(expires: SystemTime) -> HeaderValue {
    let text = format!(
        "{WRITER_COOKIE}={}; Path=/; Expires={}; HttpOnly",
        unix_ms(expires),
        httpdate::fmt_http_date(expires + Duration::from_secs(1))
    );
    // Infallible: digits, an HTTP date and fixed ASCII.
    HeaderValue::from_str(&text).expect("ASCII cookie")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::COOKIE;

    const SECOND: Duration = Duration::from_secs(1);

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    fn cookie_header(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn applies_only_with_readers_and_a_timeout() {
        let none = HeaderMap::new();
        let decide =
            |kind, readers, timeout| WriterAffinity::decide(kind, readers, timeout, &none, at(0));
        assert_eq!(
            decide(RequestKind::Write, false, SECOND),
            WriterAffinity::None
        );
        assert_eq!(
            decide(RequestKind::Write, true, Duration::ZERO),
            WriterAffinity::None
        );
        assert_eq!(
            decide(RequestKind::Write, true, SECOND),
            WriterAffinity::GrantOnResponse { timeout: SECOND }
        );
        assert_eq!(
            decide(RequestKind::Read, true, SECOND),
            WriterAffinity::None
        );
    }

    #[test]
    fn sends_reads_to_writers_until_the_cookie_expires() {
        let headers = cookie_header("kamal-writer=5000");
        let decide = |now| WriterAffinity::decide(RequestKind::Read, true, SECOND, &headers, now);
        assert_eq!(decide(at(4999)), WriterAffinity::FollowsWrite);
        assert_eq!(decide(at(5000)), WriterAffinity::None);
        assert_eq!(
            WriterAffinity::FollowsWrite.routed_kind(RequestKind::Read),
            RequestKind::Write
        );
        let garbage = cookie_header("kamal-writer=soon");
        assert_eq!(
            WriterAffinity::decide(RequestKind::Read, true, SECOND, &garbage, at(0)),
            WriterAffinity::None
        );
    }

    #[test]
    fn grants_the_cookie_with_expiry_in_value_and_a_second_later_in_expires() {
        let mut headers = HeaderMap::new();
        WriterAffinity::GrantOnResponse { timeout: SECOND }
            .apply_to_response(&mut headers, at(1_700_000_000_000));
        assert_eq!(
            headers.get(SET_COOKIE).unwrap(),
            "kamal-writer=1700000001000; Path=/; Expires=Tue, 14 Nov 2023 22:13:22 GMT; HttpOnly"
        );
    }

    #[test]
    fn skips_the_cookie_when_the_app_opts_out_and_strips_the_header_either_way() {
        let mut opted_out = HeaderMap::new();
        opted_out.insert(&OPT_OUT_HEADER, HeaderValue::from_static("false"));
        WriterAffinity::GrantOnResponse { timeout: SECOND }
            .apply_to_response(&mut opted_out, at(0));
        assert!(opted_out.is_empty());

        let mut kept = HeaderMap::new();
        kept.insert(&OPT_OUT_HEADER, HeaderValue::from_static("true"));
        WriterAffinity::GrantOnResponse { timeout: SECOND }.apply_to_response(&mut kept, at(0));
        assert!(!kept.contains_key(&OPT_OUT_HEADER));
        assert!(kept.contains_key(SET_COOKIE));
    }
}
