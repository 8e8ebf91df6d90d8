//! The host a request is for, in the form the table stores: lower case, no port, no
//! trailing dot.
//!
//! Go compares the raw header case-sensitively; browsers and curl differ in case often
//! enough that we normalise. Allocation happens only when the header is not already in the
//! canonical form, which is the common case.

use std::borrow::Cow;

use http::header::HOST;
use http::uri::Authority;
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
    let authority: Authority = raw.parse().map_err(|_| RequestHostError::Malformed)?;
    if raw.contains('@') {
        return Err(RequestHostError::Malformed);
    }
    // `authority.host()` borrows the parsed copy; find the same slice in `raw` to keep borrowing
    // the request.
    let host_len = authority.host().len();
    let (host, port) = raw.split_at(host_len);
    if !port.is_empty() && port[1..].parse::<u16>().is_err() {
        return Err(RequestHostError::Malformed);
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Ok(Cow::Owned(host.to_ascii_lowercase()))
    } else {
        Ok(Cow::Borrowed(host))
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
        let missing = Request::builder().uri("/").body(()).unwrap();
        assert_eq!(request_host(&missing), Err(RequestHostError::Missing));
    }
}
