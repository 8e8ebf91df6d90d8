//! `JsonLine`: builds one JSON log line without intermediate maps, then writes it whole.

use std::fmt::Write as _;
use std::time::SystemTime;

pub struct JsonLine {
    buffer: String,
}

impl JsonLine {
    /// Starts a line with Go slog's leading fields.
    pub fn new(level: &str, message: &str) -> Self {
        let mut line = JsonLine {
            buffer: String::with_capacity(512),
        };
        line.buffer.push('{');
        line.str(
            "time",
            &humantime::format_rfc3339_micros(SystemTime::now()).to_string(),
        );
        line.str("level", level);
        line.str("msg", message);
        line
    }

    fn key(&mut self, key: &str) {
        if !self.buffer.ends_with('{') {
            self.buffer.push(',');
        }
        escape_into(&mut self.buffer, key);
        self.buffer.push(':');
    }

    pub fn str(&mut self, key: &str, value: &str) -> &mut Self {
        self.key(key);
        escape_into(&mut self.buffer, value);
        self
    }

    pub fn u64(&mut self, key: &str, value: u64) -> &mut Self {
        self.key(key);
        // Writing to a String cannot fail.
        let _ = write!(self.buffer, "{value}");
        self
    }

    pub fn i64(&mut self, key: &str, value: i64) -> &mut Self {
        self.key(key);
        let _ = write!(self.buffer, "{value}");
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

/// Appends `value` as a JSON string. Runs of bytes that need no escaping (nearly all of a
/// log line) are copied whole; this is on every request's path.
fn escape_into(out: &mut String, value: &str) {
    out.push('"');
    let bytes = value.as_bytes();
    let mut start = 0;
    for (index, &byte) in bytes.iter().enumerate() {
        let escaped = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        // Every byte matched above is ASCII, so `start..index` ends on a char boundary.
        out.push_str(&value[start..index]);
        if escaped.is_empty() {
            let _ = write!(out, "\\u{byte:04x}");
        } else {
            out.push_str(escaped);
        }
        start = index + 1;
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
}
