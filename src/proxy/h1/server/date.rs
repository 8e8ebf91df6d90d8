//! The `Date` of responses (RFC 9110 §6.6.1), formatted once a second per thread rather
//! than once per response.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

/// An IMF-fixdate is always this long: `Sun, 06 Nov 1994 08:49:37 GMT`.
const LEN: usize = 29;

struct Cached {
    second: u64,
    text: [u8; LEN],
}

thread_local! {
    static CACHED: RefCell<Cached> = const { RefCell::new(Cached { second: u64::MAX, text: [0; LEN] }) };
}

/// Appends the current date to `out`.
pub fn append_now(out: &mut Vec<u8>) {
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHED.with_borrow_mut(|cached| {
        if cached.second != second {
            let text = httpdate::fmt_http_date(now);
            if text.len() != LEN {
                // Past the year 9999: correct, if not fast.
                return out.extend_from_slice(text.as_bytes());
            }
            cached.text.copy_from_slice(text.as_bytes());
            cached.second = second;
        }
        out.extend_from_slice(&cached.text);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_an_imf_fixdate() {
        let mut out = Vec::new();
        append_now(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.len(), LEN);
        assert!(text.ends_with(" GMT"), "{text}");
        assert!(httpdate::parse_http_date(&text).is_ok(), "{text}");
    }
}
