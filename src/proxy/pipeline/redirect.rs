//! The 301 a request gets when it arrived at the wrong place: a host other than
//! `--canonical-host`, or (with TLS and `--tls-redirect`) plain HTTP.
//!
//! Both are decided together, before pause handling, so http→https and www→apex are one
//! hop, as in Go. `target_url` knows nothing about listeners or certificates: the caller says
//! whether the scheme must become https, which keeps this one function for both redirects.
//! The response is Go's `http.Redirect` to the byte, because clients and monitors have seen
//! that body for years.

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_TYPE, LOCATION};
use http::{HeaderValue, Method, Response, StatusCode, Uri};

use crate::proxy::body::proxy_body::ProxyBody;
use crate::proxy::request_log::RequestLog;
use crate::service::Service;

/// What about a request's URL the service insists on.
#[derive(Debug, Clone, Copy)]
pub struct RedirectRule<'a> {
    /// Plain HTTP must become HTTPS.
    pub to_https: bool,
    /// Every other host is sent here.
    pub canonical_host: Option<&'a str>,
    /// The port HTTPS is served on; kept in https URLs unless it is 443.
    pub https_port: u16,
}

impl<'a> RedirectRule<'a> {
    pub fn for_service(service: &'a Service, https_port: u16) -> Self {
        RedirectRule {
            https_port,
            to_https: service.tls.redirects_to_https(),
            canonical_host: service
                .options
                .canonical_host
                .as_ref()
                .map(|host| host.as_str()),
        }
    }
}

/// The URL to send the client to, or `None` when nothing about the request must change.
/// `host` is the request's host without its port. An http URL names no port, as in Go; an
/// https URL names the HTTPS port when it is not 443 (Go drops it, sending clients of a
/// proxy on another port to a port nothing listens on).
pub fn target_url(rule: RedirectRule<'_>, scheme: &str, host: &str, uri: &Uri) -> Option<String> {
    let to_https = rule.to_https && scheme != "https";
    let new_host = rule.canonical_host.filter(|canonical| *canonical != host);
    if !to_https && new_host.is_none() {
        return None;
    }
    let scheme = if to_https { "https" } else { scheme };
    let request_uri = uri.path_and_query().map_or("/", |p| p.as_str());
    let port = match rule.https_port {
        443 => String::new(),
        port if scheme == "https" => format!(":{port}"),
        _ => String::new(),
    };
    Some(format!(
        "{scheme}://{}{port}{request_uri}",
        new_host.unwrap_or(host)
    ))
}

/// Go's `htmlEscape`.
fn html_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&#34;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// The 301 to `location`, closing the connection: a GET gets Go's short HTML body (written
/// with `Fprintln`, hence the blank line), a HEAD only its content type, others nothing.
pub fn response(location: &str, method: &Method, mut log: RequestLog) -> Response<ProxyBody> {
    let status = StatusCode::MOVED_PERMANENTLY;
    let mut headers = http::HeaderMap::new();
    // Infallible in practice: the URL is built from a valid URI and a normalised host.
    if let Ok(value) = HeaderValue::from_str(location) {
        headers.insert(LOCATION, value);
    }
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    if matches!(*method, Method::GET | Method::HEAD) {
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
    }
    let body = if *method == Method::GET {
        Bytes::from(format!(
            "<a href=\"{}\">Moved Permanently</a>.\n\n",
            html_escape(location)
        ))
    } else {
        Bytes::new()
    };
    log.record_response(status, &headers, &[]);
    let mut response = Response::new(ProxyBody::full(body, log));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(rule: RedirectRule<'_>, scheme: &str, host: &str, uri: &str) -> Option<String> {
        target_url(rule, scheme, host, &uri.parse().unwrap())
    }

    const CANONICAL: RedirectRule<'static> = RedirectRule {
        to_https: false,
        canonical_host: Some("example.com"),
        https_port: 443,
    };

    #[test]
    fn sends_other_hosts_to_the_canonical_host_keeping_the_request_uri() {
        assert_eq!(
            url(CANONICAL, "http", "www.example.com", "/a/b?x=1&y").as_deref(),
            Some("http://example.com/a/b?x=1&y")
        );
        assert_eq!(url(CANONICAL, "http", "example.com", "/a"), None);
    }

    #[test]
    fn changes_nothing_without_a_rule() {
        let none = RedirectRule {
            to_https: false,
            canonical_host: None,
            https_port: 443,
        };
        assert_eq!(url(none, "http", "example.com", "/"), None);
    }

    #[test]
    fn combines_https_and_canonical_host_into_one_hop() {
        let both = RedirectRule {
            to_https: true,
            ..CANONICAL
        };
        assert_eq!(
            url(both, "http", "www.example.com", "/p").as_deref(),
            Some("https://example.com/p")
        );
        assert_eq!(
            url(both, "http", "example.com", "/p").as_deref(),
            Some("https://example.com/p")
        );
        assert_eq!(
            url(both, "https", "www.example.com", "/p").as_deref(),
            Some("https://example.com/p")
        );
        assert_eq!(url(both, "https", "example.com", "/p"), None);
    }

    #[test]
    fn keeps_a_non_default_https_port_in_https_urls_only() {
        let rule = RedirectRule {
            to_https: true,
            canonical_host: None,
            https_port: 8443,
        };
        assert_eq!(
            url(rule, "http", "example.com", "/p").as_deref(),
            Some("https://example.com:8443/p")
        );
        let canonical = RedirectRule {
            https_port: 8443,
            ..CANONICAL
        };
        assert_eq!(
            url(canonical, "http", "www.example.com", "/p").as_deref(),
            Some("http://example.com/p")
        );
    }

    #[test]
    fn escapes_the_url_in_the_body_as_go_does() {
        assert_eq!(
            html_escape("/a?b=1&c='\"<>"),
            "/a?b=1&amp;c=&#39;&#34;&lt;&gt;"
        );
    }
}
