//! `OnDemandUrl`: where an on-demand TLS service asks whether a host may get a certificate
//! (`--tls-on-demand-url`), checked once at the edge.
//!
//! Two forms, as in Go: an absolute `http(s)://` URL is asked directly; a `/path` is asked of
//! the service itself, through its own pipeline. Deciding the form here, with Go's messages,
//! means a bad value fails the deploy instead of every handshake later.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OnDemandUrl {
    /// An endpoint elsewhere (`http://auth.internal/allow`).
    External(Box<str>),
    /// A path and query answered by the service's own targets (`/allow?token=x`).
    ServicePath(Box<str>),
}

impl OnDemandUrl {
    pub fn parse(text: &str) -> Result<Self, String> {
        let unparsable =
            |why: &dyn fmt::Display| format!("unable to parse tls-on-demand-url: {why}");
        // `//host/path` is a URL without a scheme, not a path; Go refuses it by name.
        if text.starts_with("//") {
            return Err("tls-on-demand-url must be a path or an absolute http(s) URL".into());
        }
        if text.starts_with('/') {
            http::uri::PathAndQuery::try_from(text).map_err(|e| unparsable(&e))?;
            return Ok(OnDemandUrl::ServicePath(text.into()));
        }
        let uri: http::Uri = text.parse().map_err(|e| unparsable(&e))?;
        let Some(scheme) = uri.scheme_str().filter(|s| !s.is_empty()) else {
            return Err(unparsable(&"it is neither a path nor an absolute URL"));
        };
        if scheme != "http" && scheme != "https" {
            return Err(format!(
                "unsupported scheme \"{scheme}\" in tls-on-demand-url"
            ));
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err("missing host in tls-on-demand-url".into());
        }
        Ok(OnDemandUrl::External(text.into()))
    }

    /// The text as given, for the state file.
    pub fn as_str(&self) -> &str {
        match self {
            OnDemandUrl::External(url) | OnDemandUrl::ServicePath(url) => url,
        }
    }
}

impl fmt::Display for OnDemandUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_a_service_path_from_an_external_url() {
        assert_eq!(
            OnDemandUrl::parse("/allow?token=abc").unwrap(),
            OnDemandUrl::ServicePath("/allow?token=abc".into())
        );
        assert_eq!(
            OnDemandUrl::parse("https://auth.example.com/check").unwrap(),
            OnDemandUrl::External("https://auth.example.com/check".into())
        );
        assert_eq!(
            OnDemandUrl::parse("http://127.0.0.1:8080/up?x=1")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:8080/up?x=1"
        );
    }

    #[test]
    fn refuses_what_go_refuses_with_its_messages() {
        let error = |text| OnDemandUrl::parse(text).unwrap_err();
        assert_eq!(
            error("//auth.example.com/check"),
            "tls-on-demand-url must be a path or an absolute http(s) URL"
        );
        for unparsable in ["://invalid-url", "example.com/check", "http://"] {
            assert!(
                error(unparsable).starts_with("unable to parse tls-on-demand-url: "),
                "{unparsable}: {}",
                error(unparsable)
            );
        }
        assert_eq!(
            error("ftp://example.com/check"),
            "unsupported scheme \"ftp\" in tls-on-demand-url"
        );
        assert_eq!(
            error("http://:8080/check"),
            "missing host in tls-on-demand-url"
        );
        assert!(error("/with space").starts_with("unable to parse tls-on-demand-url"));
    }
}
