//! `LoggedHeader`: a header whose value each request line shows (`--log-request-header`,
//! `--log-response-header`), with the key of its field spelled once, at deploy.
//!
//! Kamal deploys every service with three logged request headers, so this is on the path
//! of nearly every request; spelling `,"req_cache_control":"` anew for each one (a format
//! and a replace, two allocations) cost more than reading the header.

use std::fmt;
use std::sync::Arc;

use http::HeaderName;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedHeader {
    pub name: HeaderName,
    /// The field's key as `Key` spells it: `,"req_x_request_id":"`.
    key: Arc<str>,
}

impl LoggedHeader {
    /// A request header, logged as `req_<name>` with dashes as underscores (Go's names).
    pub fn request(name: HeaderName) -> Self {
        LoggedHeader::new("req_", name)
    }

    /// A response header, logged as `resp_<name>`.
    pub fn response(name: HeaderName) -> Self {
        LoggedHeader::new("resp_", name)
    }

    fn new(prefix: &str, name: HeaderName) -> Self {
        let key = format!(",\"{prefix}{}\":\"", name.as_str().replace('-', "_"));
        LoggedHeader {
            name,
            key: key.into(),
        }
    }

    /// The key, shared: a request line holds it until it is written. As `Key` reads it
    /// (`Key::from_json`): a header name is a token, with nothing to escape.
    pub fn key(&self) -> &Arc<str> {
        &self.key
    }
}

/// The header's name, as options are shown and saved.
impl fmt::Display for LoggedHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.name.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::Key;

    #[test]
    fn spells_go_field_names_once() {
        let header = LoggedHeader::request(HeaderName::from_static("cache-control"));
        assert_eq!(&**header.key(), ",\"req_cache_control\":\"");
        assert_eq!(Key::from_json(header.key()).name(), "req_cache_control");
        let header = LoggedHeader::response(HeaderName::from_static("x-runtime"));
        assert_eq!(Key::from_json(header.key()).name(), "resp_x_runtime");
        assert_eq!(header.to_string(), "x-runtime");
    }
}
