//! `LogFields`: the one way a request line is filled in, whatever it is written to.
//!
//! `RequestLog` fills any `LogFields` with the Go proxy's field names (`service`, `status`,
//! `duration`, ...); each output spells them its own way (JSON keys as given, journal fields
//! upper-cased, text as `key=value`), so the three outputs cannot drift apart.
//!
//! A name travels as a `Key`, which carries its JSON spelling as well: the JSON line is the
//! default output and is written for every request, so it copies each key in one piece
//! instead of assembling quotes and colon around the name each time.

use std::time::Duration;

/// A field name spelled as it follows a value in a JSON line: `,"host":"`. Names are Go's
/// field names and lower-case header names, tokens that never need escaping. Make constant
/// ones with `key!`.
#[derive(Debug, Clone, Copy)]
pub struct Key<'a> {
    json: &'a str,
}

impl<'a> Key<'a> {
    /// `json` must read `,"<name>":"`.
    pub const fn from_json(json: &'a str) -> Self {
        let bytes = json.as_bytes();
        let end = bytes.len().saturating_sub(3);
        debug_assert!(
            end >= 2
                && bytes[0] == b','
                && bytes[1] == b'"'
                && bytes[end] == b'"'
                && bytes[end + 1] == b':'
                && bytes[end + 2] == b'"',
            "a key's JSON spelling reads ,\"<name>\":\""
        );
        let mut index = 2;
        while index < end {
            debug_assert!(
                !super::json_line::needs_escape(bytes[index]),
                "a key needs no escaping"
            );
            index += 1;
        }
        Key { json }
    }

    /// The JSON spelling of a key followed by a string's opening quote.
    pub fn json(self) -> &'a str {
        self.json
    }

    pub fn name(self) -> &'a str {
        &self.json[2..self.json.len() - 3]
    }
}

/// `key!("host")`: the `Key` named `host`, spelled and checked at compile time.
macro_rules! key {
    ($name:literal) => {{
        const KEY: $crate::logging::Key<'static> =
            $crate::logging::Key::from_json(concat!(",\"", $name, "\":\""));
        KEY
    }};
}
pub(crate) use key;

pub trait LogFields {
    fn str(&mut self, key: Key<'_>, value: &str);
    /// A value the proxy spelled itself from ASCII that JSON never escapes (a method, a
    /// generated UUID, an IP address, digits), so the JSON line copies it unchecked.
    fn verbatim(&mut self, key: Key<'_>, value: &[u8]) {
        // Only ASCII is given, which is UTF-8.
        self.str(key, std::str::from_utf8(value).unwrap_or(""));
    }
    /// A header's value, logged only when it is visible ASCII (as `HeaderValue::to_str` has
    /// it) and empty otherwise. The JSON line checks that in its pass for escaping.
    fn header(&mut self, key: Key<'_>, value: &[u8]) {
        let text = std::str::from_utf8(value)
            .ok()
            .filter(|text| text.bytes().all(super::json_line::is_visible));
        self.str(key, text.unwrap_or(""));
    }
    fn u64(&mut self, key: Key<'_>, value: u64);
    fn i64(&mut self, key: Key<'_>, value: i64);
    /// Go logs durations as integer nanoseconds; the journal as `<KEY>_USEC`, as systemd does.
    fn duration(&mut self, key: Key<'_>, value: Duration);
}

/// Inlined into `RequestLog`'s fill, where each key is a constant (see `JsonLine`).
impl LogFields for super::JsonLine<'_> {
    #[inline(always)]
    fn str(&mut self, key: Key<'_>, value: &str) {
        super::JsonLine::str(self, key, value);
    }
    #[inline(always)]
    fn verbatim(&mut self, key: Key<'_>, value: &[u8]) {
        super::JsonLine::verbatim(self, key, value);
    }
    #[inline(always)]
    fn header(&mut self, key: Key<'_>, value: &[u8]) {
        super::JsonLine::header(self, key, value);
    }
    #[inline(always)]
    fn u64(&mut self, key: Key<'_>, value: u64) {
        super::JsonLine::u64(self, key, value);
    }
    #[inline(always)]
    fn i64(&mut self, key: Key<'_>, value: i64) {
        super::JsonLine::i64(self, key, value);
    }
    #[inline(always)]
    fn duration(&mut self, key: Key<'_>, value: Duration) {
        super::JsonLine::u64(
            self,
            key,
            u64::try_from(value.as_nanos()).unwrap_or(u64::MAX),
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn spells_a_key_for_json_and_names_it_when_made_by_the_macro() {
        let host = key!("req_x_request_id");
        assert_eq!(host.json(), ",\"req_x_request_id\":\"");
        assert_eq!(host.name(), "req_x_request_id");
    }
}
