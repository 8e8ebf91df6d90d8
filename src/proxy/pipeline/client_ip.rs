//! `--client-ip-header`: the header a trusted edge (a CDN, a load balancer) puts the real
//! client address in.
//!
//! Its value replaces the request's `X-Forwarded-For` before the forwarded-headers rules run,
//! as Go's ClientIP middleware does: with `--forward-headers` the app then sees
//! `<client>, <edge>`, and either way the request log's `remote_addr` is the client. The
//! header itself is forwarded unchanged.

use http::{HeaderMap, HeaderName, HeaderValue};

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Replaces `X-Forwarded-For` with the first value of `header` when that is present and
/// non-empty; returns the value taken.
pub fn apply_client_ip_header(headers: &mut HeaderMap, header: &HeaderName) -> Option<HeaderValue> {
    let value = headers.get(header).filter(|v| !v.is_empty())?.clone();
    headers.insert(X_FORWARDED_FOR.clone(), value.clone());
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_forwarded_for_only_when_the_header_has_a_value() {
        let name = HeaderName::from_static("cf-connecting-ip");
        let mut headers = HeaderMap::new();
        headers.append("x-forwarded-for", HeaderValue::from_static("1.1.1.1"));
        headers.append("x-forwarded-for", HeaderValue::from_static("2.2.2.2"));
        assert_eq!(apply_client_ip_header(&mut headers, &name), None);
        headers.insert(&name, HeaderValue::from_static(""));
        assert_eq!(apply_client_ip_header(&mut headers, &name), None);
        assert_eq!(headers.get_all("x-forwarded-for").iter().count(), 2);

        headers.insert(&name, HeaderValue::from_static("9.9.9.9"));
        assert_eq!(
            apply_client_ip_header(&mut headers, &name).unwrap(),
            "9.9.9.9"
        );
        let values: Vec<_> = headers.get_all("x-forwarded-for").iter().collect();
        assert_eq!(values, ["9.9.9.9"]);
        assert_eq!(headers.get(&name).unwrap(), "9.9.9.9");
    }
}
