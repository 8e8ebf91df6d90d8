//! Reading one cookie from a request's `Cookie` headers, as Go's `Request.Cookie` does.
//!
//! Writer affinity and rollouts both route on a cookie the browser sends back; they share
//! this so both read `Cookie` the same way: every `Cookie` header, pairs split on `;`,
//! the first pair with the name wins, and a value in double quotes loses its quotes.

use http::header::COOKIE;
use http::HeaderMap;

/// The value of cookie `name`, if the request carries it.
pub fn value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|header| header.to_str().ok())
        .flat_map(|header| header.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| {
            value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn finds_the_first_pair_with_the_name_across_headers() {
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, HeaderValue::from_static("a=1; b=2"));
        headers.append(COOKIE, HeaderValue::from_static("c=\"3\";b=4"));
        assert_eq!(value(&headers, "b"), Some("2"));
        assert_eq!(value(&headers, "c"), Some("3"));
        assert_eq!(value(&headers, "d"), None);
        assert_eq!(value(&HeaderMap::new(), "a"), None);
    }

    #[test]
    fn matches_names_exactly() {
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::from_static("xkamal-rollout=1; Kamal-Rollout=2"),
        );
        assert_eq!(value(&headers, "kamal-rollout"), None);
    }
}
