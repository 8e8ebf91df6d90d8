//! `JsonLine`: builds one JSON log line without intermediate maps, then writes it whole.

use std::fmt::Write as _;
use std::time::SystemTime;

pub struct JsonLine {
    buffer: String,
}

impl JsonLine {
    /// Starts a line with Go slog's leading fields.
    pub fn new(level: &str, message: &str) -> Self {
        let mut buffer = String::with_capacity(512);
        buffer.push_str("{\"time\":\"");
        super::timestamp::push_rfc3339_micros(&mut buffer, SystemTime::now());
        buffer.push('"');
        let mut line = JsonLine { buffer };
        line.str("level", level);
        line.str("msg", message);
        line
    }

    /// Keys are field names and lower-case header names (`req_x_request_id`): tokens that
    /// never need escaping.
    fn key(&mut self, key: &str) {
        debug_assert!(!key.bytes().any(needs_escape), "unescaped key {key:?}");
        self.buffer.push_str(",\"");
        self.buffer.push_str(key);
        self.buffer.push_str("\":");
    }

    pub fn str(&mut self, key: &str, value: &str) -> &mut Self {
        self.key(key);
        escape_into(&mut self.buffer, value);
        self
    }

    pub fn u64(&mut self, key: &str, value: u64) -> &mut Self {
        self.key(key);
        self.buffer.push_str(itoa::Buffer::new().format(value));
        self
    }

    pub fn i64(&mut self, key: &str, value: i64) -> &mut Self {
        self.key(key);
        self.buffer.push_str(itoa::Buffer::new().format(value));
        self
    }

    pub fn bool(&mut self, key: &str, value: bool) -> &mut Self {
        self.key(key);
        self.buffer.push_str(if value { "true" } else { "false" });
        self
    }

    pub fn finish(mut self) -> String {
        self.buffer.push_str("}\n");
        self.buffer
    }

    /// Writes the line now, in one call, so concurrent lines never interleave.
    pub fn write_to_stdout(self) {
        super::batch::write_now(self.finish().as_bytes());
    }

    /// Queues the line with this thread's others (request lines; see `batch`).
    pub fn write_batched(self) {
        super::batch::write_batched(&self.finish());
    }
}

fn needs_escape(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

/// Whether any of the eight bytes in `word` needs escaping, tested all at once (the
/// classic "has zero byte" / "has byte less than" bit tricks).
fn word_needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    let quote = has_zero(word ^ (ONES * u64::from(b'"')));
    let backslash = has_zero(word ^ (ONES * u64::from(b'\\')));
    control | quote | backslash != 0
}

/// Appends `value` as a JSON string. This is on every request's path: runs of bytes that
/// need no escaping (nearly all of a log line) are found eight bytes at a time and copied
/// whole.
fn escape_into(out: &mut String, value: &str) {
    out.push('"');
    let bytes = value.as_bytes();
    let mut start = 0;
    let mut index = 0;
    while index < bytes.len() {
        if let Some(chunk) = bytes.get(index..index + 8) {
            let word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
            if !word_needs_escape(word) {
                index += 8;
                continue;
            }
        }
        let byte = bytes[index];
        let escaped = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => {
                index += 1;
                continue;
            }
        };
        // Every byte matched above is ASCII, so `start..index` ends on a char boundary.
        out.push_str(&value[start..index]);
        if escaped.is_empty() {
            let _ = write!(out, "\\u{byte:04x}");
        } else {
            out.push_str(escaped);
        }
        index += 1;
        start = index;
    }
    out.push_str(&value[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_go_slog_shape_with_escaping() {
        let mut line = JsonLine::new("INFO", "Request");
        line.str("path", "/a\"b\n")
            .u64("status", 200)
            .bool("tls", false);
        let text = line.finish();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["msg"], "Request");
        assert_eq!(value["level"], "INFO");
        assert_eq!(value["path"], "/a\"b\n");
        assert_eq!(value["status"], 200);
        assert!(text.starts_with("{\"time\":"));
        assert!(text.ends_with("}\n"));
    }

    #[test]
    fn escapes_control_characters_between_unicode_runs() {
        let mut out = String::new();
        escape_into(&mut out, "bücher\u{1}ß\\");
        assert_eq!(out, "\"bücher\\u0001ß\\\\\"");
    }

    #[test]
    fn escapes_every_byte_position_of_long_values_as_serde_does() {
        let base = "abcdefghijklmnopqrstuvwxyz0123456789";
        for special in ["\"", "\\", "\n", "\u{1f}", "\u{0}", "é", "\u{7f}"] {
            for at in 0..base.len() {
                let value = format!("{}{special}{}", &base[..at], &base[at..]);
                let mut out = String::new();
                escape_into(&mut out, &value);
                let parsed: String = serde_json::from_str(&out).unwrap();
                assert_eq!(parsed, value, "{out}");
            }
        }
    }
}
