//! Hop-by-hop headers: those that describe one connection, not the message, and so are
//! removed on the way to the target (and from its response), except the handshake of an
//! upgrade. And the other fields a response head is read for (`KnownField`): its framing,
//! its date and its content type.
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

/// Whether the request asks to switch protocols (WebSocket and friends). Asked of every
/// request, nearly always of a few fields and none of them `Upgrade`: comparing the names
/// (an enum compare for standard ones) is cheaper than hashing `upgrade` for a lookup.
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.keys().any(|name| name == UPGRADE)
        && headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
            })
}

/// The fields the proxy treats specially, as a response head is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KnownField {
    Connection,
    Upgrade,
    TransferEncoding,
    /// The other fixed hop-by-hop headers.
    OtherHopByHop,
    ContentLength,
    ContentType,
    Date,
    Other,
}

impl KnownField {
    /// Recognises `name`, in any case. Asked of every field of every response, so it
    /// switches on the length and the first letter, then makes one comparison, rather than
    /// comparing with each candidate in turn.
    pub fn of(name: &[u8]) -> Self {
        let first = name.first().map(u8::to_ascii_lowercase);
        let (text, field): (&[u8], KnownField) = match (name.len(), first) {
            (2, _) => (b"te", KnownField::OtherHopByHop),
            (4, _) => (b"date", KnownField::Date),
            (7, Some(b't')) => (b"trailer", KnownField::OtherHopByHop),
            (7, _) => (b"upgrade", KnownField::Upgrade),
            (10, Some(b'c')) => (b"connection", KnownField::Connection),
            (10, _) => (b"keep-alive", KnownField::OtherHopByHop),
            (12, _) => (b"content-type", KnownField::ContentType),
            (14, _) => (b"content-length", KnownField::ContentLength),
            (16, _) => (b"proxy-connection", KnownField::OtherHopByHop),
            (17, _) => (b"transfer-encoding", KnownField::TransferEncoding),
            (18, _) => (b"proxy-authenticate", KnownField::OtherHopByHop),
            (19, _) => (b"proxy-authorization", KnownField::OtherHopByHop),
            _ => return KnownField::Other,
        };
        if is_spelling_of(name, text) {
            field
        } else {
            KnownField::Other
        }
    }

    pub fn is_hop_by_hop(self) -> bool {
        matches!(
            self,
            KnownField::Connection
                | KnownField::Upgrade
                | KnownField::TransferEncoding
                | KnownField::OtherHopByHop
        )
    }
}

/// Whether the token `name` is `lower` (lower case letters and `-`, the same length) in any
/// case, compared eight bytes at a time. Setting bit 5 lower-cases a letter and leaves `-`
/// alone; of the bytes a token may hold, only upper-case letters become a lower-case letter
/// that way, so the comparison is exact for tokens. (A non-token, say a `Connection` value
/// element, can only be mistaken for a known name, which it cannot be anyway.)
fn is_spelling_of(name: &[u8], lower: &[u8]) -> bool {
    const CASE: u64 = u64::from_ne_bytes([0x20; 8]);
    let word = |bytes: &[u8]| u64::from_ne_bytes(bytes.try_into().unwrap_or_default());
    let (mut names, mut lowers) = (name.chunks_exact(8), lower.chunks_exact(8));
    for (name, lower) in (&mut names).zip(&mut lowers) {
        if word(name) | CASE != word(lower) {
            return false;
        }
    }
    let rest = names.remainder();
    rest.len() == lowers.remainder().len()
        && rest
            .iter()
            .zip(lowers.remainder())
            .all(|(&byte, &lower)| byte | 0x20 == lower)
}

/// Whether `name`, in any case, is one of the fixed hop-by-hop headers.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    KnownField::of(name).is_hop_by_hop()
}

/// The elements of a comma-separated header value such as `Connection`, trimmed, empty
/// ones skipped.
pub fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|token| !token.is_empty())
}

/// The header a `Connection` token names, unless it is not a header name or is one of the
/// fixed hop-by-hop headers (removed anyway).
pub fn named_by_connection(token: &[u8]) -> Option<HeaderName> {
    if is_hop_by_hop(token) {
        return None;
    }
    HeaderName::from_bytes(token).ok()
}

/// Removes hop-by-hop headers, including those the `Connection` header names. For an
/// upgrade, `Connection: upgrade` and `Upgrade` are kept: they are the request.
pub fn remove_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // One pass over the names finds which are there: most messages carry none of them, or
    // only `Connection`, so only those are removed. `KnownField::of` turns nearly every
    // name away on its length alone, before any comparison with the list.
    let mut present = [false; HOP_BY_HOP.len()];
    for name in headers.keys() {
        if !is_hop_by_hop(name.as_str().as_bytes()) {
            continue;
        }
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
        .flat_map(|value| tokens(value.as_bytes()))
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
    fn recognises_the_fields_it_knows_in_any_case_and_no_other() {
        for (name, field) in [
            ("Content-Length", KnownField::ContentLength),
            ("content-TYPE", KnownField::ContentType),
            ("DATE", KnownField::Date),
            ("Connection", KnownField::Connection),
            ("keep-alive", KnownField::OtherHopByHop),
            ("Upgrade", KnownField::Upgrade),
            ("Transfer-Encoding", KnownField::TransferEncoding),
            ("Proxy-Authorization", KnownField::OtherHopByHop),
            ("content_length", KnownField::Other),
            ("content-lengthy", KnownField::Other),
            ("content-tipe", KnownField::Other),
            ("data", KnownField::Other),
            ("", KnownField::Other),
        ] {
            assert_eq!(KnownField::of(name.as_bytes()), field, "{name}");
        }
    }

    #[test]
    fn knows_each_hop_by_hop_header_and_no_other() {
        for hop in &HOP_BY_HOP {
            assert!(is_hop_by_hop(hop.as_str().as_bytes()), "{hop}");
            let shouted = hop.as_str().to_ascii_uppercase();
            assert!(is_hop_by_hop(shouted.as_bytes()), "{shouted}");
        }
        for other in [
            "content-length",
            "x-connection",
            "tes",
            "host",
            "trailers",
            "uPgradE1",
        ] {
            assert!(!is_hop_by_hop(other.as_bytes()), "{other}");
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
