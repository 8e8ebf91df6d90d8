//! `TargetFields`: the header fields of a target's response, kept as the text they are sent
//! to the client as.
//!
//! Most responses pass through the proxy untouched, and turning each of their fields into a
//! `HeaderName` and a `HeaderValue` in a `HeaderMap`, only to write them out again, was the
//! largest single cost of a proxied request. So the codec copies the fields it keeps (all but
//! the hop-by-hop ones) into one buffer, each as `name: value\r\n`, and notes what is read
//! of every response: whether a `Date` is among them and the length a `Content-Length`
//! states (for the client's response writer), and where the `Content-Type` is (for the log
//! and response buffering). A map is built only where the fields must be changed or handed on
//! as a whole (`ProxyResponse::headers_mut`); other lookups read the text.
//!
//! httparse checked every field against the grammar the `http` crate holds names and values
//! to (names are tokens; values are visible text, spaces, tabs and obs-text), so every field
//! here becomes a map entry.

use std::ops::Range;

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::proxy::h1::headers::KnownField;

#[derive(Debug, Default)]
pub struct TargetFields {
    /// `name: value\r\n`, field after field.
    text: Vec<u8>,
    count: usize,
    dated: bool,
    length: Option<u64>,
    /// Where the first `Content-Type` value lies in `text`.
    content_type: Option<(usize, usize)>,
}

impl TargetFields {
    /// Adds a field, `known` as what its name is. `name` is a token and `value` holds no line
    /// break (httparse saw to it).
    pub fn push(&mut self, name: &[u8], value: &[u8], known: KnownField) {
        self.text.extend_from_slice(name);
        self.text.extend_from_slice(b": ");
        let start = self.text.len();
        self.text.extend_from_slice(value);
        self.text.extend_from_slice(b"\r\n");
        self.note(known, start, value.len());
    }

    /// Counts a field whose value was copied to `text[start..start + len]`.
    fn note(&mut self, known: KnownField, start: usize, len: usize) {
        self.count += 1;
        match known {
            KnownField::Date => self.dated = true,
            KnownField::ContentType if self.content_type.is_none() => {
                self.content_type = Some((start, start + len));
            }
            _ => {}
        }
    }

    /// Notes the body length the `Content-Length` fields kept here agree on.
    pub fn set_length(&mut self, length: u64) {
        self.length = Some(length);
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The fields, ready to be written into a head.
    pub fn text(&self) -> &[u8] {
        &self.text
    }

    /// Whether a `Date` field is among them.
    pub fn is_dated(&self) -> bool {
        self.dated
    }

    /// The length a `Content-Length` among them states; `None` when there is none.
    pub fn length(&self) -> Option<u64> {
        self.length
    }

    /// The first `Content-Type` value.
    pub fn content_type(&self) -> Option<&[u8]> {
        self.content_type.map(|(start, end)| &self.text[start..end])
    }

    /// Each field's name and value, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.text.split_inclusive(|&b| b == b'\n').map(|line| {
            let line = &line[..line.len() - 2];
            // Every line is `name: value`, and a name holds no colon.
            let colon = line.iter().position(|&b| b == b':').unwrap_or(line.len());
            (&line[..colon], line.get(colon + 2..).unwrap_or_default())
        })
    }

    /// Every value of the field `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a [u8]> + 'a {
        let wanted = name.as_str().as_bytes();
        self.iter()
            .filter(move |(field, _)| field.eq_ignore_ascii_case(wanted))
            .map(|(_, value)| value)
    }

    /// Adds every field to `map`, in order.
    pub fn append_to(&self, map: &mut HeaderMap) {
        map.reserve(self.count);
        for (name, value) in self.iter() {
            match (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
                (Ok(name), Ok(value)) => {
                    map.append(name, value);
                }
                // Not reached: httparse holds fields to the same grammar (see the module docs).
                _ => tracing::debug!(
                    name = %String::from_utf8_lossy(name),
                    "Dropped a response header the http crate refuses"
                ),
            }
        }
    }
}

/// Builds `TargetFields` from the fields of a head read from a target, whose names and
/// values lie in `raw`. Nearly every field is already written there as `name: value\r\n`,
/// and those kept sit next to each other: such a run is copied in one piece, not a name and
/// a value at a time (a response's fields went from ~100 instructions each to a few).
pub struct FieldCopy<'r> {
    raw: &'r [u8],
    /// Lines of `raw` kept and not copied yet.
    run: Range<usize>,
    fields: TargetFields,
}

impl<'r> FieldCopy<'r> {
    /// Room for `count` fields from a head of `raw.len()` bytes: as text here a field is at
    /// most two bytes longer (a space after the colon, a CR before the LF).
    pub fn new(raw: &'r [u8], count: usize) -> Self {
        FieldCopy {
            raw,
            run: 0..0,
            fields: TargetFields {
                text: Vec::with_capacity(raw.len() + 2 * count),
                ..TargetFields::default()
            },
        }
    }

    /// Keeps a field of `raw`, `known` as what its name is. httparse put the colon right
    /// after the name and, unless it trimmed whitespace, the line's CR LF right after the
    /// value: a value two bytes after its name, behind a space, and followed by a CR, was
    /// sent as `name: value\r\n`.
    pub fn keep(&mut self, name: &[u8], value: &[u8], known: KnownField) {
        let offset =
            |slice: &[u8]| (slice.as_ptr() as usize).wrapping_sub(self.raw.as_ptr() as usize);
        let (name_start, value_start) = (offset(name), offset(value));
        let name_end = name_start.wrapping_add(name.len());
        let line_end = value_start.wrapping_add(value.len()).wrapping_add(2);
        let written_as_sent = value_start == name_end.wrapping_add(2)
            && line_end <= self.raw.len()
            && self.raw[name_end + 1] == b' '
            && self.raw[line_end - 2] == b'\r';
        if !written_as_sent {
            self.flush();
            return self.fields.push(name, value, known);
        }
        if self.run.end != name_start {
            self.flush();
            self.run = name_start..name_start;
        }
        let copied_at = self.fields.text.len() + self.run.len() + (value_start - name_start);
        self.run.end = line_end;
        self.fields.note(known, copied_at, value.len());
    }

    fn flush(&mut self) {
        self.fields
            .text
            .extend_from_slice(&self.raw[self.run.clone()]);
        self.run = 0..0;
    }

    pub fn finish(mut self) -> TargetFields {
        self.flush();
        self.fields
    }
}

/// Fields as the codec would keep them, for tests.
#[cfg(test)]
pub fn fields(pairs: &[(&str, &[u8])]) -> TargetFields {
    let mut fields = TargetFields::default();
    for (name, value) in pairs {
        fields.push(name.as_bytes(), value, KnownField::of(name.as_bytes()));
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{CONTENT_TYPE, SET_COOKIE};

    #[test]
    fn keeps_fields_as_the_text_they_are_sent_as() {
        let fields = fields(&[("Content-Type", b"text/html"), ("X-Empty", b"")]);
        assert_eq!(fields.text(), b"Content-Type: text/html\r\nX-Empty: \r\n");
        let pairs: Vec<_> = fields.iter().collect();
        assert_eq!(
            pairs,
            [(&b"Content-Type"[..], &b"text/html"[..]), (b"X-Empty", b"")]
        );
        assert!(!fields.is_dated());
        assert_eq!(fields.content_type(), Some(&b"text/html"[..]));
    }

    #[test]
    fn copies_fields_from_a_head_as_they_would_be_pushed() {
        let raw: &[u8] = b"HTTP/1.1 200 OK\r\nDate: x\r\nConnection: close\r\nContent-Type:text/a\r\n\
            X-Tab: \tb \r\nX-Empty:\r\nX-Blank: \r\nX-LF: c\nContent-Type: text/b\r\nServer: s\r\n\r\n";
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut parsed = httparse::Response::new(&mut headers);
        assert!(parsed.parse(raw).unwrap().is_complete());
        let kept = || {
            parsed
                .headers
                .iter()
                .filter(|field| field.name != "Connection")
                .map(|field| (field.name.as_bytes(), field.value))
        };
        let mut copy = FieldCopy::new(raw, parsed.headers.len());
        let mut pushed = TargetFields::default();
        for (name, value) in kept() {
            copy.keep(name, value, KnownField::of(name));
            pushed.push(name, value, KnownField::of(name));
        }
        let copied = copy.finish();
        assert_eq!(
            String::from_utf8_lossy(copied.text()),
            String::from_utf8_lossy(pushed.text())
        );
        assert_eq!(copied.content_type(), Some(&b"text/a"[..]));
        assert_eq!(copied.iter().count(), kept().count());
        assert_eq!(copied.count, pushed.count);
        assert!(copied.is_dated());

        let raw = b"Server: s\r\nContent-Type: text/c\r\n";
        let mut copy = FieldCopy::new(raw, 2);
        copy.keep(&raw[..6], &raw[8..9], KnownField::Other);
        copy.keep(&raw[11..23], &raw[25..31], KnownField::ContentType);
        let copied = copy.finish();
        assert_eq!(copied.text(), raw);
        assert_eq!(copied.content_type(), Some(&b"text/c"[..]));
    }

    #[test]
    fn finds_every_value_whatever_the_case_of_the_name() {
        let fields = fields(&[
            ("Set-Cookie", b"a=1"),
            ("Date", b"Sun, 22 Nov 2026 10:00:00 GMT"),
            ("set-cookie", b"b=2: with a colon"),
        ]);
        let cookies: Vec<_> = fields.get_all(&SET_COOKIE).collect();
        assert_eq!(cookies, [&b"a=1"[..], b"b=2: with a colon"]);
        assert_eq!(fields.get_all(&CONTENT_TYPE).count(), 0);
        assert_eq!(fields.content_type(), None);
        assert!(fields.is_dated());
    }

    #[test]
    fn becomes_map_entries_in_order_with_obs_text_intact() {
        let fields = fields(&[("x-a", b"1"), ("X-Name", b"caf\xe9"), ("X-A", b"2")]);
        let mut map = HeaderMap::new();
        fields.append_to(&mut map);
        let values: Vec<_> = map.get_all("x-a").iter().collect();
        assert_eq!(values, ["1", "2"]);
        assert_eq!(map["x-name"].as_bytes(), b"caf\xe9");
        assert_eq!(map.len(), 3);
    }
}
