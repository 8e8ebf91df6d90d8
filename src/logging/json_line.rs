//! `JsonLine`: builds one JSON log line, in the Go slog shape, straight into the buffer it
//! is written from: for request lines that is this thread's batch (see `batch`), so a line
//! is neither allocated nor copied on its way out.
//!
//! Request lines are written for every request, so the common case is kept short: keys are
//! copied whole in their pre-spelled JSON form (`Key`); a value that needs no escaping
//! (nearly every value) is checked eight bytes at a time and copied in one piece; values
//! the proxy spells itself (`verbatim`) are not checked at all, and a header's value
//! (`header`) is checked for being loggable in the same pass as for escaping.

use std::time::SystemTime;

use super::Key;

/// Room reserved for a line up front, so that pushing its fields seldom grows the buffer.
const LINE_CAPACITY: usize = 512;

pub struct JsonLine<'a> {
    buffer: &'a mut Vec<u8>,
}

impl JsonLine<'_> {
    /// Builds a line with `fill` and queues it with this thread's other request lines.
    pub fn write_batched(level: &str, message: &str, fill: impl FnOnce(&mut JsonLine<'_>)) {
        super::batch::append(|buffer| JsonLine::write_into(buffer, level, message, fill));
    }

    /// Appends one whole line to `buffer`: Go slog's leading fields, `fill`'s, the end.
    pub fn write_into(
        buffer: &mut Vec<u8>,
        level: &str,
        message: &str,
        fill: impl FnOnce(&mut JsonLine<'_>),
    ) {
        buffer.reserve(LINE_CAPACITY);
        buffer.extend_from_slice(b"{\"time\":\"");
        super::timestamp::push_rfc3339_micros(buffer, SystemTime::now());
        buffer.push(b'"');
        let mut line = JsonLine { buffer };
        line.verbatim(super::key!("level"), level.as_bytes());
        line.str(super::key!("msg"), message);
        fill(&mut line);
        line.buffer.extend_from_slice(b"}\n");
    }

    // The field methods are inlined into each caller, where the key is a constant: its copy
    // is then a few moves rather than a call to `memcpy`.

    #[inline(always)]
    pub fn str(&mut self, key: Key<'_>, value: &str) -> &mut Self {
        self.string(key, value.as_bytes(), push_string_rest)
    }

    /// A value with nothing to escape, copied unchecked: see `LogFields::verbatim`.
    #[inline(always)]
    pub fn verbatim(&mut self, key: Key<'_>, value: &[u8]) -> &mut Self {
        debug_assert!(
            value
                .iter()
                .all(|&byte| byte.is_ascii() && !needs_escape(byte)),
            "a verbatim value needs no escaping"
        );
        self.buffer.extend_from_slice(key.json().as_bytes());
        self.buffer.extend_from_slice(value);
        self.buffer.push(b'"');
        self
    }

    /// A header's value, empty unless visible ASCII: see `LogFields::header`.
    #[inline(always)]
    pub fn header(&mut self, key: Key<'_>, value: &[u8]) -> &mut Self {
        self.string(key, value, push_header_rest)
    }

    /// A string field whose value `push_rest` checks and closes. An empty value (a header
    /// not sent, no query) needs neither, so it skips the call.
    #[inline(always)]
    fn string(
        &mut self,
        key: Key<'_>,
        value: &[u8],
        push_rest: fn(&mut Vec<u8>, &[u8]),
    ) -> &mut Self {
        self.buffer.extend_from_slice(key.json().as_bytes());
        if value.is_empty() {
            self.buffer.push(b'"');
        } else {
            push_rest(self.buffer, value);
        }
        self
    }

    /// The key without the opening quote that `Key` spells for strings.
    #[inline(always)]
    fn number_key(&mut self, key: Key<'_>) {
        let json = key.json().as_bytes();
        self.buffer.extend_from_slice(&json[..json.len() - 1]);
    }

    #[inline(always)]
    pub fn u64(&mut self, key: Key<'_>, value: u64) -> &mut Self {
        self.number_key(key);
        self.buffer
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
        self
    }

    #[inline(always)]
    pub fn i64(&mut self, key: Key<'_>, value: i64) -> &mut Self {
        self.number_key(key);
        self.buffer
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
        self
    }

    pub fn bool(&mut self, key: Key<'_>, value: bool) -> &mut Self {
        self.number_key(key);
        self.buffer
            .extend_from_slice(if value { b"true" } else { b"false" });
        self
    }
}

pub(super) const fn needs_escape(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

/// Whether any of the eight bytes in `word` needs escaping, tested all at once (the
/// classic "has zero byte" / "has byte less than" bit tricks).
fn word_needs_escape(word: u64) -> bool {
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    let quote = has_zero(word ^ (ONES * u64::from(b'"')));
    let backslash = has_zero(word ^ (ONES * u64::from(b'\\')));
    control | quote | backslash != 0
}

/// Whether any of the eight bytes in `word` is not plain: not visible ASCII (DEL or above,
/// or a control) or needs escaping. Adding one sets the high bit of a DEL byte; a carry out
/// of a byte only comes from 0xff, itself caught, so it never makes a false alarm alone.
fn word_not_plain(word: u64) -> bool {
    let del_or_above = (word | word.wrapping_add(ONES)) & HIGHS;
    del_or_above != 0 || word_needs_escape(word)
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Appends a string's value (UTF-8), after the key and opening quote, and its closing
/// quote. Kept out of line: it is the bulk of a field and the same for every one.
#[inline(never)]
fn push_string_rest(out: &mut Vec<u8>, bytes: &[u8]) {
    if any_word(bytes, word_needs_escape) {
        push_escaped(out, bytes);
    } else {
        out.extend_from_slice(bytes);
    }
    out.push(b'"');
}

/// `push_string_rest` for a header's value: logged as it is when every byte is plain (one
/// check, nearly always true), escaped when it is still visible ASCII (a tab, a quote or a
/// backslash), and left empty otherwise, as `HeaderValue::to_str` would refuse it.
#[inline(never)]
fn push_header_rest(out: &mut Vec<u8>, value: &[u8]) {
    if !any_word(value, word_not_plain) {
        out.extend_from_slice(value);
    } else if value.iter().all(|&byte| is_visible(byte)) {
        push_escaped(out, value);
    }
    out.push(b'"');
}

/// Visible ASCII or a tab, the bytes `HeaderValue::to_str` accepts.
pub(super) fn is_visible(byte: u8) -> bool {
    byte == b'\t' || (b' '..=b'~').contains(&byte)
}

/// Whether `test` finds any of `bytes` in the words it is given: eight bytes at a time, the
/// last eight overlapping the ones before when the length is not a multiple of eight. A
/// shorter value is made into one word: two overlapping halves of four, or its first, middle
/// and last bytes (which cover up to three), padded with a letter that fails no test.
fn any_word(bytes: &[u8], test: fn(u64) -> bool) -> bool {
    let len = bytes.len();
    if len < 8 {
        let word = if let (Some(first), Some(last)) = (bytes.first_chunk(), bytes.last_chunk()) {
            u64::from(u32::from_le_bytes(*first)) | u64::from(u32::from_le_bytes(*last)) << 32
        } else if let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) {
            u64::from_le_bytes([first, bytes[len / 2], last, b'a', b'a', b'a', b'a', b'a'])
        } else {
            return false;
        };
        return test(word);
    }
    let word_at = |index: usize| {
        let mut word = [0; 8];
        word.copy_from_slice(&bytes[index..index + 8]);
        test(u64::from_le_bytes(word))
    };
    let last = len - 8;
    let mut index = 0;
    while index < last {
        if word_at(index) {
            return true;
        }
        index += 8;
    }
    word_at(last)
}

/// Appends `bytes` (UTF-8) escaped for the inside of a JSON string, run by run between the
/// bytes that need it. Only ASCII bytes are ever escaped, so UTF-8 sequences pass whole.
fn push_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut start = 0;
    for (index, &byte) in bytes.iter().enumerate() {
        let escaped: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => &[
                b'\\',
                b'u',
                b'0',
                b'0',
                b'0' + (byte >> 4),
                HEX[usize::from(byte & 0xf)],
            ],
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..index]);
        out.extend_from_slice(escaped);
        start = index + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::key;
    use http::HeaderValue;

    fn line(fill: impl FnOnce(&mut JsonLine<'_>)) -> String {
        let mut buffer = Vec::new();
        JsonLine::write_into(&mut buffer, "INFO", "Request", fill);
        String::from_utf8(buffer).unwrap()
    }

    fn quoted(value: &str) -> String {
        let mut out = b"\"".to_vec();
        push_string_rest(&mut out, value.as_bytes());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn writes_go_slog_shape_with_escaping() {
        let text = line(|line| {
            line.str(key!("path"), "/a\"b\n")
                .u64(key!("status"), 200)
                .i64(key!("offset"), -3)
                .bool(key!("tls"), false);
        });
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["msg"], "Request");
        assert_eq!(value["level"], "INFO");
        assert_eq!(value["path"], "/a\"b\n");
        assert_eq!(value["status"], 200);
        assert_eq!(value["offset"], -3);
        assert_eq!(value["tls"], false);
        assert!(text.starts_with("{\"time\":\""));
        assert!(
            text.ends_with(
                ",\"path\":\"/a\\\"b\\n\",\"status\":200,\"offset\":-3,\"tls\":false}\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn escapes_control_characters_between_unicode_runs() {
        assert_eq!(quoted("bücher\u{1}ß\\"), "\"bücher\\u0001ß\\\\\"");
        assert_eq!(quoted("\u{1f}"), "\"\\u001f\"");
    }

    fn header_quoted(value: &[u8]) -> String {
        let mut out = b"\"".to_vec();
        push_header_rest(&mut out, value);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn logs_a_header_value_only_when_visible_ascii_and_escapes_it_as_serde_does() {
        let base = "abcdefghijklmnopqrstuvwxyz0123456789";
        for special in ["\"", "\\", "\t", "\n", "\u{0}", "é", "\u{7f}", "~ "] {
            for length in 0..base.len() {
                for at in 0..=length {
                    let value = format!("{}{special}{}", &base[..at], &base[at..length]);
                    let logged = match HeaderValue::from_str(&value) {
                        Ok(header) => header.to_str().unwrap_or("").to_string(),
                        Err(_) => String::new(),
                    };
                    let expected = serde_json::to_string(&logged).unwrap();
                    assert_eq!(header_quoted(value.as_bytes()), expected, "{value:?}");
                }
            }
        }
        assert_eq!(header_quoted(b"caf\xe9"), "\"\"");
    }

    #[test]
    fn copies_verbatim_values_and_skips_empty_ones_cheaply() {
        let text = line(|line| {
            line.verbatim(key!("method"), b"GET")
                .header(key!("user_agent"), b"")
                .str(key!("query"), "");
        });
        assert!(
            text.ends_with(",\"method\":\"GET\",\"user_agent\":\"\",\"query\":\"\"}\n"),
            "{text}"
        );
    }

    #[test]
    fn escapes_every_byte_position_of_values_as_serde_does() {
        let base = "abcdefghijklmnopqrstuvwxyz0123456789";
        for special in ["\"", "\\", "\n", "\u{1f}", "\u{0}", "é", "\u{7f}"] {
            for length in 0..base.len() {
                for at in 0..=length {
                    let value = format!("{}{special}{}", &base[..at], &base[at..length]);
                    let out = quoted(&value);
                    assert_eq!(out, serde_json::to_string(&value).unwrap());
                }
            }
        }
    }
}
