//! Header rules of the forwarding path: hop-by-hop removal, request id and start time, and
//! the `X-Forwarded-*` / `X-Kamal-Target` headers.
//!
//! `--forward-headers` decides whether the client's `X-Forwarded-*` values are trusted
//! (kept and appended to) or replaced by what this proxy saw. `Forwarded` is always
//! dropped, as Go's reverse proxy does.

use std::net::IpAddr;

use http::header::{HeaderName, HeaderValue, CONNECTION, HOST, UPGRADE};
use http::HeaderMap;

use super::ip_text::IpText;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static X_REQUEST_START: HeaderName = HeaderName::from_static("x-request-start");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_KAMAL_TARGET: HeaderName = HeaderName::from_static("x-kamal-target");
static FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1, Go's list).
static HOP_BY_HOP: [HeaderName; 9] = [
    CONNECTION,
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-authenticate"),
    HeaderName::from_static("proxy-authorization"),
    HeaderName::from_static("te"),
    HeaderName::from_static("trailer"),
    HeaderName::from_static("transfer-encoding"),
    UPGRADE,
];

/// Whether the request asks to switch protocols (WebSocket and friends).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(UPGRADE)
        && headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
            })
}

/// Whether `name` is one of the fixed hop-by-hop headers. Asked of every field of every
/// response, so it matches the text (a switch on length, then one comparison) rather than
/// comparing with each of `HOP_BY_HOP` in turn.
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "proxy-connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// The elements of a comma-separated header value such as `Connection`, trimmed, empty
/// ones skipped.
pub fn tokens(value: &HeaderValue) -> impl Iterator<Item = &[u8]> {
    value
        .as_bytes()
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|token| !token.is_empty())
}

/// The header a `Connection` token names, unless it is not a header name or is one of the
/// fixed hop-by-hop headers (removed anyway).
pub fn named_by_connection(token: &[u8]) -> Option<HeaderName> {
    HeaderName::from_bytes(token)
        .ok()
        .filter(|name| !is_hop_by_hop(name))
}

/// Removes hop-by-hop headers, including those the `Connection` header names. For an
/// upgrade, `Connection: upgrade` and `Upgrade` are kept: they are the request.
pub fn remove_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // One pass over the names (cheap comparisons of standard names) finds which are there:
    // most messages carry none of them, or only `Connection`, so only those are removed.
    let mut present = [false; HOP_BY_HOP.len()];
    for name in headers.keys() {
        if let Some(index) = HOP_BY_HOP.iter().position(|hop| hop == name) {
            present[index] = true;
        }
    }
    if !present.contains(&true) {
        return;
    }
    let upgrade = if keep_upgrade {
        headers.get(UPGRADE).cloned()
    } else {
        None
    };
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(tokens)
        .filter_map(named_by_connection)
        .collect();
    for name in named {
        headers.remove(name);
    }
    for (name, present) in HOP_BY_HOP.iter().zip(present) {
        if present {
            headers.remove(name);
        }
    }
    if let Some(upgrade) = upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, upgrade);
    }
}

/// Adds `X-Request-Start: t=<unix ms>` and `X-Request-ID` when absent; returns the id.
pub fn ensure_request_id_and_start(headers: &mut HeaderMap, now_unix_ms: u128) -> HeaderValue {
    if !headers.contains_key(&X_REQUEST_START) {
        let mut start = [0u8; 2 + 39];
        start[..2].copy_from_slice(b"t=");
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(now_unix_ms).as_bytes();
        start[2..2 + digits.len()].copy_from_slice(digits);
        // Infallible: "t=" and digits are valid header bytes.
        let start = HeaderValue::from_bytes(&start[..2 + digits.len()]).expect("ascii header");
        headers.insert(X_REQUEST_START.clone(), start);
    }
    headers
        .entry(X_REQUEST_ID.clone())
        .or_insert_with(|| {
            let mut text = uuid::Uuid::encode_buffer();
            let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text);
            // Infallible: a hyphenated UUID is ASCII.
            HeaderValue::from_str(id).expect("ascii uuid")
        })
        .clone()
}

/// Joins every value of `name` with ", ", as Go does for repeated `X-Forwarded-For`.
fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

fn set(headers: &mut HeaderMap, name: &HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name.clone(), value);
    }
}

/// What the proxy saw of the client connection.
pub struct ForwardedFor<'a> {
    pub peer: IpAddr,
    pub scheme: &'a str,
    pub target: &'a str,
    /// Trust and extend the client's values (`--forward-headers`).
    pub trust_client: bool,
}

pub fn set_forwarded_headers(headers: &mut HeaderMap, forwarded: &ForwardedFor<'_>) {
    headers.remove(&FORWARDED);
    let peer = IpText::new(forwarded.peer);
    let trust = forwarded.trust_client;
    let client_for = if trust {
        joined(headers, &X_FORWARDED_FOR)
    } else {
        None
    };
    match client_for {
        Some(chain) => set(
            headers,
            &X_FORWARDED_FOR,
            &format!("{chain}, {}", peer.as_str()),
        ),
        None => set(headers, &X_FORWARDED_FOR, peer.as_str()),
    }
    if !(trust && headers.contains_key(&X_FORWARDED_PROTO)) {
        set(headers, &X_FORWARDED_PROTO, forwarded.scheme);
    }
    if !(trust && headers.contains_key(&X_FORWARDED_HOST)) {
        match headers.get(HOST).cloned() {
            Some(host) => {
                headers.insert(X_FORWARDED_HOST.clone(), host);
            }
            None => {
                headers.remove(&X_FORWARDED_HOST);
            }
        }
    }
    match joined(headers, &X_KAMAL_TARGET).filter(|_| trust) {
        Some(existing) => set(
            headers,
            &X_KAMAL_TARGET,
            &format!("{existing}, {}", forwarded.target),
        ),
        None => set(headers, &X_KAMAL_TARGET, forwarded.target),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn knows_each_hop_by_hop_header_and_no_other() {
        for hop in &HOP_BY_HOP {
            assert!(is_hop_by_hop(hop), "{hop}");
        }
        for other in ["content-length", "x-connection", "tes", "host"] {
            assert!(!is_hop_by_hop(&HeaderName::from_static(other)), "{other}");
        }
    }

    #[test]
    fn removes_hop_by_hop_headers_and_those_connection_names() {
        let mut map = headers(&[
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "5"),
            ("x-app", "1"),
        ]);
        remove_hop_by_hop(&mut map, false);
        assert_eq!(map.len(), 1);
        assert!(map.contains_key("x-app"));
    }

    #[test]
    fn removes_each_hop_by_hop_header_whatever_else_is_there() {
        for hop in &HOP_BY_HOP {
            let mut map = headers(&[("x-app", "1"), (hop.as_str(), "v"), ("x-other", "2")]);
            remove_hop_by_hop(&mut map, false);
            assert_eq!(map.len(), 2, "{hop} kept");
        }
        let mut map = headers(&[("connection", "X-Named, , bad token"), ("x-named", "1")]);
        remove_hop_by_hop(&mut map, false);
        assert!(map.is_empty());
    }

    #[test]
    fn keeps_the_upgrade_handshake_for_upgrades() {
        let mut map = headers(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(is_upgrade(&map));
        remove_hop_by_hop(&mut map, true);
        assert_eq!(map.get(UPGRADE).unwrap(), "websocket");
        assert_eq!(map.get(CONNECTION).unwrap(), "upgrade");
    }

    #[test]
    fn appends_to_trusted_forwarded_headers() {
        let mut map = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-proto", "https"),
            ("host", "a.com"),
            ("forwarded", "for=x"),
        ]);
        let peer = "127.0.0.1".parse().unwrap();
        set_forwarded_headers(
            &mut map,
            &ForwardedFor {
                peer,
                scheme: "http",
                target: "t:80",
                trust_client: true,
            },
        );
        assert_eq!(map.get("x-forwarded-for").unwrap(), "1.1.1.1, 127.0.0.1");
        assert_eq!(map.get("x-forwarded-proto").unwrap(), "https");
        assert_eq!(map.get("x-forwarded-host").unwrap(), "a.com");
        assert_eq!(map.get("x-kamal-target").unwrap(), "t:80");
        assert!(!map.contains_key("forwarded"));
    }

    #[test]
    fn replaces_untrusted_forwarded_headers() {
        let mut map = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-proto", "https"),
            ("host", "a.com"),
        ]);
        let peer = "127.0.0.1".parse().unwrap();
        set_forwarded_headers(
            &mut map,
            &ForwardedFor {
                peer,
                scheme: "http",
                target: "t:80",
                trust_client: false,
            },
        );
        assert_eq!(map.get("x-forwarded-for").unwrap(), "127.0.0.1");
        assert_eq!(map.get("x-forwarded-proto").unwrap(), "http");
    }

    #[test]
    fn keeps_a_request_id_the_client_sent() {
        let mut map = headers(&[("x-request-id", "abc")]);
        assert_eq!(ensure_request_id_and_start(&mut map, 5), "abc");
        assert_eq!(map.get("x-request-start").unwrap(), "t=5");
    }
}
