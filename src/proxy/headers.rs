//! Hop-by-hop headers: those that describe one connection, not the message, and so are
//! removed on the way to the target (and from its response), except the handshake of an
//! upgrade.
//!
//! The headers the proxy adds are elsewhere: `request_stamp` (request id and start) and
//! `forwarded_headers`, written as the head is encoded (`request_head`).

use http::header::{HeaderName, HeaderValue, CONNECTION, UPGRADE};
use http::HeaderMap;

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
}
