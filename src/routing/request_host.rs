//! The host a request is for, in the form the table stores: lower case, no port, no
//! trailing dot.
//!
//! Go compares the raw header case-sensitively; browsers and curl differ in case often
//! enough that we normalise. Allocation happens only when the header is not already in the
//! canonical form, which is the common case.

use std::borrow::Cow;

use http::header::HOST;
use http::Request;

#[derive(Debug, PartialEq, Eq)]
pub enum RequestHostError {
    Missing,
    Malformed,
}

pub fn request_host<B>(request: &Request<B>) -> Result<Cow<'_, str>, RequestHostError> {
    let raw = match request.uri().authority() {
        Some(authority) => authority.as_str(),
        None => request
            .headers()
            .get(HOST)
            .ok_or(RequestHostError::Missing)?
            .to_str()
            .map_err(|_| RequestHostError::Malformed)?,
    };
    let (host, port) = split_port(raw).ok_or(RequestHostError::Malformed)?;
    if port.is_some_and(|port| port.parse::<u16>().is_err()) {
        return Err(RequestHostError::Malformed);
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Ok(Cow::Owned(host.to_ascii_lowercase()))
    } else {
        Ok(Cow::Borrowed(host))
    }
}

/// Splits `host[:port]`, where host is a name, an IPv4 address or a bracketed IPv6 one, as
/// RFC 3986 §3.2.2 spells them. Checked byte by byte, without the copy that parsing it as an
/// `http::uri::Authority` would make on every request.
fn split_port(raw: &str) -> Option<(&str, Option<&str>)> {
    let (host, rest) = if raw.starts_with('[') {
        let end = raw.find(']')? + 1;
        let literal = &raw[1..end - 1];
        let ip_literal = |b: u8| b.is_ascii_hexdigit() || matches!(b, b':' | b'.' | b'%');
        if literal.is_empty() || !literal.bytes().all(ip_literal) {
            return None;
        }
        raw.split_at(end)
    } else {
        let end = raw.find(':').unwrap_or(raw.len());
        let (host, rest) = raw.split_at(end);
        // Unreserved and sub-delims (RFC 3986 §2.2, §2.3), and `%` of an escape: `$..=.` is
        // `$%&'()*+,-.`.
        let reg_name = |b: u8| {
            b.is_ascii_alphanumeric() || matches!(b, b'!' | b'$'..=b'.' | b';' | b'=' | b'_' | b'~')
        };
        if host.is_empty() || !host.bytes().all(reg_name) {
            return None;
        }
        (host, rest)
    };
    match rest.strip_prefix(':') {
        None if rest.is_empty() => Some((host, None)),
        None => None,
        Some(port) => Some((host, Some(port))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_of(value: &str) -> Result<Cow<'static, str>, RequestHostError> {
        let request = Request::builder()
            .uri("/")
            .header(HOST, value)
            .body(())
            .unwrap();
        request_host(&request).map(|h| Cow::Owned(h.into_owned()))
    }

    #[test]
    fn strips_port_case_and_trailing_dot() {
        assert_eq!(host_of("App.Example.com:8080").unwrap(), "app.example.com");
        assert_eq!(host_of("example.com.").unwrap(), "example.com");
        assert_eq!(host_of("[::1]:80").unwrap(), "[::1]");
    }

    #[test]
    fn refuses_malformed_hosts() {
        assert_eq!(host_of("a b"), Err(RequestHostError::Malformed));
        assert_eq!(host_of("user@host"), Err(RequestHostError::Malformed));
        assert_eq!(host_of("host:port"), Err(RequestHostError::Malformed));
        for malformed in [
            "", ":80", "a.test:", "a:1:2", "[::1", "[]", "[::1]x", "a\"b", "a/b", "a:99999", "a#b",
            "a[b", "a^b",
        ] {
            assert_eq!(
                host_of(malformed),
                Err(RequestHostError::Malformed),
                "{malformed}"
            );
        }
        assert_eq!(host_of("[::1]").unwrap(), "[::1]");
        let every_allowed = "a-b.c_d~e!f$g&h'i(j)k*l+m,n;o=p%41";
        assert_eq!(host_of(every_allowed).unwrap(), every_allowed);
        assert_eq!(host_of("127.0.0.1:80").unwrap(), "127.0.0.1");
        let missing = Request::builder().uri("/").body(()).unwrap();
        assert_eq!(request_host(&missing), Err(RequestHostError::Missing));
    }
}
