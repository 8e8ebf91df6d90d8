//! `JsonLine`: builds one JSON log line without intermediate maps, then writes it whole.

use std::fmt::Write as _;
use std::io::Write as _;
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

    /// Writes the line to stdout in one call, so concurrent lines never interleave.
    pub fn write_to_stdout(self) {
        let line = self.finish();
        // A closed stdout must not take the proxy down; the line is lost either way.
        let _ = std::io::stdout().lock().write_all(line.as_bytes());
    }
}

fn escape_into(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
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
}
