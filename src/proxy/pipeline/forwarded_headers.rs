//! `ForwardedHeaders`: the `X-Forwarded-For`/`-Proto`/`-Host` and `X-Kamal-Target` headers
//! that tell the target who asked and which target it is, and the rules for them.
//!
//! `--forward-headers` decides whether the client's `X-Forwarded-*` values are trusted
//! (kept, and appended to) or replaced by what this proxy saw; `X-Kamal-Target` is chained
//! the same way. `Forwarded` is always dropped, as Go's reverse proxy does.
//!
//! The rules are decided here once and written to either of two places: straight into the
//! head encoded for the target (`request_head`, the data plane: no `HeaderValue` is built
//! and the request's `HeaderMap` is not touched), or into a `HeaderMap` (`apply_to`, for
//! requests the proxy sends with hyper's client).

use std::iter;

use http::header::{HeaderName, HeaderValue, HOST};
use http::HeaderMap;

use crate::proxy::h1::header_lines::{push_list, HeaderLines};
use crate::proxy::listen::ip_text::IpText;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_KAMAL_TARGET: HeaderName = HeaderName::from_static("x-kamal-target");
static FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// What the proxy saw of the client connection, and the target it picked.
pub struct ForwardedHeaders<'a> {
    /// The client's address, spelled once for its connection.
    pub peer: &'a IpText,
    pub scheme: &'a str,
    pub target: &'a str,
    /// Trust and extend the client's values (`--forward-headers`).
    pub trust_client: bool,
}

impl ForwardedHeaders<'_> {
    /// Whether the client's `name` lines are left out, as `write` writes that header itself
    /// (or, for `Forwarded` and an untrusted `X-Forwarded-Host` without `Host`, drops it).
    /// A trusted `X-Forwarded-Proto`/`-Host` goes through, and `write` adds none; the
    /// chained headers are always rewritten as one line.
    pub fn replaces(&self, name: &HeaderName) -> bool {
        if name == FORWARDED || name == X_FORWARDED_FOR || name == X_KAMAL_TARGET {
            true
        } else if name == X_FORWARDED_PROTO || name == X_FORWARDED_HOST {
            !self.trust_client
        } else {
            false
        }
    }

    /// Writes the headers this proxy sets, given the client's `headers`.
    pub fn write(&self, headers: &HeaderMap, lines: &mut impl HeaderLines) {
        let sent = Sent::of(headers, self.trust_client);
        self.write_chain(
            headers,
            sent.forwarded_for,
            &X_FORWARDED_FOR,
            self.peer.as_bytes(),
            lines,
        );
        if !sent.forwarded_proto {
            lines.line(&X_FORWARDED_PROTO, [self.scheme.as_bytes()]);
        }
        if !sent.forwarded_host {
            if let Some(host) = sent.host {
                lines.line(&X_FORWARDED_HOST, [host.as_bytes()]);
            }
        }
        self.write_chain(
            headers,
            sent.kamal_target,
            &X_KAMAL_TARGET,
            self.target.as_bytes(),
            lines,
        );
    }

    /// Sets the headers in `headers` itself, for a request that is not encoded here.
    pub fn apply_to(&self, headers: &mut HeaderMap) {
        let mut set = Vec::new();
        self.write(headers, &mut set);
        for name in [
            &FORWARDED,
            &X_FORWARDED_FOR,
            &X_FORWARDED_PROTO,
            &X_FORWARDED_HOST,
            &X_KAMAL_TARGET,
        ] {
            if self.replaces(name) {
                headers.remove(name);
            }
        }
        for (name, value) in set {
            headers.insert(name, value);
        }
    }

    /// Writes `name` as `own`, after the client's values when they `extend` (trusted ones
    /// were sent): each of its lines is an element of the list, as Go joins repeated
    /// `X-Forwarded-For`, and values that are not visible ASCII are left out. Otherwise, the
    /// common case, the line is `own` alone, written without the chain's iterators.
    fn write_chain(
        &self,
        headers: &HeaderMap,
        extend: bool,
        name: &HeaderName,
        own: &[u8],
        lines: &mut impl HeaderLines,
    ) {
        if !extend {
            return lines.line(name, [own]);
        }
        let client = headers
            .get_all(name)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .map(str::as_bytes);
        lines.line(name, client.chain(iter::once(own)));
    }
}

/// What `write` reads of the client's headers, found in one pass over them: cheaper than a
/// hash lookup for each, and most requests carry none but `Host`.
#[derive(Default)]
struct Sent<'h> {
    /// The first `Host`, as `HeaderMap::get` would give it.
    host: Option<&'h HeaderValue>,
    /// Whether the client sent each header and it is trusted, to be kept or extended.
    forwarded_for: bool,
    forwarded_proto: bool,
    forwarded_host: bool,
    kamal_target: bool,
}

impl<'h> Sent<'h> {
    fn of(headers: &'h HeaderMap, trusted: bool) -> Self {
        let mut sent = Sent::default();
        for (name, value) in headers {
            if name == HOST {
                sent.host.get_or_insert(value);
            } else if name == X_FORWARDED_FOR {
                sent.forwarded_for = trusted;
            } else if name == X_FORWARDED_PROTO {
                sent.forwarded_proto = trusted;
            } else if name == X_FORWARDED_HOST {
                sent.forwarded_host = trusted;
            } else if name == X_KAMAL_TARGET {
                sent.kamal_target = trusted;
            }
        }
        sent
    }
}

/// Lines collected for a `HeaderMap`; a value that is not a valid header value is left
/// out (none is: every piece is visible ASCII or the client's own `Host`).
impl HeaderLines for Vec<(HeaderName, HeaderValue)> {
    fn line<'v>(&mut self, name: &HeaderName, value: impl IntoIterator<Item = &'v [u8]>) {
        let mut joined = Vec::new();
        push_list(&mut joined, value);
        if let Ok(value) = HeaderValue::from_bytes(&joined) {
            self.push((name.clone(), value));
        }
    }
}

#[cfg(test)]
impl ForwardedHeaders<'static> {
    /// A client at 192.0.2.1 over HTTPS, forwarded to 10.0.0.5:3000.
    pub fn sample(trust_client: bool) -> Self {
        static PEER: std::sync::LazyLock<IpText> =
            std::sync::LazyLock::new(|| IpText::new([192, 0, 2, 1].into()));
        ForwardedHeaders {
            peer: &PEER,
            scheme: "https",
            target: "10.0.0.5:3000",
            trust_client,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let header = |&(name, value)| {
            (
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            )
        };
        pairs.iter().map(header).collect()
    }

    #[test]
    fn appends_to_trusted_forwarded_headers() {
        let mut map = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "2.2.2.2, 3.3.3.3"),
            ("x-forwarded-proto", "http"),
            ("host", "a.com"),
            ("forwarded", "for=x"),
            ("x-kamal-target", "edge:80"),
        ]);
        ForwardedHeaders::sample(true).apply_to(&mut map);
        assert_eq!(
            map.get("x-forwarded-for").unwrap(),
            "1.1.1.1, 2.2.2.2, 3.3.3.3, 192.0.2.1"
        );
        assert_eq!(map.get("x-forwarded-proto").unwrap(), "http");
        assert_eq!(map.get("x-forwarded-host").unwrap(), "a.com");
        assert_eq!(map.get("x-kamal-target").unwrap(), "edge:80, 10.0.0.5:3000");
        assert!(!map.contains_key("forwarded"));
    }

    #[test]
    fn replaces_untrusted_forwarded_headers() {
        let mut map = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", "b.com"),
            ("x-kamal-target", "spoof"),
            ("host", "a.com"),
        ]);
        ForwardedHeaders::sample(false).apply_to(&mut map);
        assert_eq!(map.get("x-forwarded-for").unwrap(), "192.0.2.1");
        assert_eq!(map.get("x-forwarded-proto").unwrap(), "https");
        assert_eq!(map.get("x-forwarded-host").unwrap(), "a.com");
        assert_eq!(map.get("x-kamal-target").unwrap(), "10.0.0.5:3000");
    }

    #[test]
    fn drops_an_untrusted_forwarded_host_when_there_is_no_host() {
        let mut map = headers(&[("x-forwarded-host", "b.com")]);
        ForwardedHeaders::sample(false).apply_to(&mut map);
        assert!(!map.contains_key("x-forwarded-host"));
    }

    #[test]
    fn leaves_out_client_values_that_are_not_visible_ascii() {
        let mut map = HeaderMap::new();
        map.append(
            &X_FORWARDED_FOR,
            HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
        );
        map.append(&X_FORWARDED_FOR, HeaderValue::from_static("1.1.1.1"));
        let mut out = Vec::new();
        ForwardedHeaders::sample(true).write(&map, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "x-forwarded-for: 1.1.1.1, 192.0.2.1\r\n\
             x-forwarded-proto: https\r\n\
             x-kamal-target: 10.0.0.5:3000\r\n"
        );
    }
}
