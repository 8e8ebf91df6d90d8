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
    let split = split_port(raw).ok_or(RequestHostError::Malformed)?;
    if split.port.is_some_and(|port| port.parse::<u16>().is_err()) {
        return Err(RequestHostError::Malformed);
    }
    let host = split.host.strip_suffix('.').unwrap_or(split.host);
    if split.upper_case {
        Ok(Cow::Owned(host.to_ascii_lowercase()))
    } else {
        Ok(Cow::Borrowed(host))
    }
}

/// `host[:port]` taken apart.
struct Split<'a> {
    host: &'a str,
    port: Option<&'a str>,
    /// Whether the host has an upper-case letter, to be lowered.
    upper_case: bool,
}

/// Splits `host[:port]`, where host is a name, an IPv4 address or a bracketed IPv6 one, as
/// RFC 3986 §3.2.2 spells them. Checked byte by byte, without the copy that parsing it as an
/// `http::uri::Authority` would make on every request; a name (nearly every host) in one
/// pass that finds its end, checks its bytes and notes upper case at once.
fn split_port(raw: &str) -> Option<Split<'_>> {
    let bytes = raw.as_bytes();
    let (end, upper_case) = if bytes.first() == Some(&b'[') {
        let end = bytes.iter().position(|&b| b == b']')? + 1;
        let literal = &bytes[1..end - 1];
        let ip_literal = |&b: &u8| b.is_ascii_hexdigit() || matches!(b, b':' | b'.' | b'%');
        if literal.is_empty() || !literal.iter().all(ip_literal) {
            return None;
        }
        (end, literal.iter().any(u8::is_ascii_uppercase))
    } else {
        let mut upper_case = false;
        let mut end = bytes.len();
        for (index, &byte) in bytes.iter().enumerate() {
            match byte {
                b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' => {}
                b'A'..=b'Z' => upper_case = true,
                b':' => {
                    end = index;
                    break;
                }
                // The rest of unreserved and sub-delims (RFC 3986 §2.2, §2.3), and `%` of an
                // escape: `$..=.` is `$%&'()*+,-.`.
                b'!' | b'$'..=b'.' | b';' | b'=' | b'_' | b'~' => {}
                _ => return None,
            }
        }
        if end == 0 {
            return None;
        }
        (end, upper_case)
    };
    let (host, rest) = raw.split_at(end);
    let port = match rest.strip_prefix(':') {
        None if rest.is_empty() => None,
        None => return None,
        Some(port) => Some(port),
    };
    Some(Split {
        host,
        port,
        upper_case,
    })
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
        assert_eq!(host_of("[FE80::A]").unwrap(), "[fe80::a]");
        assert_eq!(host_of("a.test").unwrap(), "a.test");
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
