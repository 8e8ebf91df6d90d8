//! `TextLine`: one human-readable `key=value` line on stdout (`run --log-format=text`), for
//! someone watching a terminal rather than a log pipeline.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use super::{Key, LogFields};

pub struct TextLine {
    buffer: String,
}

impl TextLine {
    pub fn new(level: &str, message: &str) -> Self {
        let mut buffer = String::with_capacity(256);
        // Writing to a String cannot fail.
        let _ = write!(
            buffer,
            "{} {level:>5} {message}",
            humantime::format_rfc3339_millis(SystemTime::now())
        );
        TextLine { buffer }
    }

    pub fn finish(mut self) -> String {
        self.buffer.push('\n');
        self.buffer
    }

    /// Queues the line with this thread's others (request lines; see `batch`).
    pub fn write_batched(self) {
        super::batch::write_batched(self.finish().as_bytes());
    }
}

impl LogFields for TextLine {
    fn str(&mut self, key: Key<'_>, value: &str) {
        let key = key.name();
        if value.is_empty() {
            return;
        }
        if value.contains(|c: char| c.is_whitespace() || c == '"' || c.is_control()) {
            let _ = write!(self.buffer, " {key}={value:?}");
        } else {
            let _ = write!(self.buffer, " {key}={value}");
        }
    }
    fn u64(&mut self, key: Key<'_>, value: u64) {
        let key = key.name();
        let _ = write!(self.buffer, " {key}={value}");
    }
    fn i64(&mut self, key: Key<'_>, value: i64) {
        let key = key.name();
        let _ = write!(self.buffer, " {key}={value}");
    }
    fn duration(&mut self, key: Key<'_>, value: Duration) {
        let key = key.name();
        let _ = write!(self.buffer, " {key}={value:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::key;

    #[test]
    fn quotes_values_with_spaces_and_skips_empty_ones() {
        let mut line = TextLine::new("INFO", "Request");
        line.str(key!("path"), "/a b");
        line.str(key!("query"), "");
        line.u64(key!("status"), 200);
        line.duration(key!("duration"), Duration::from_micros(1500));
        let text = line.finish();
        assert!(
            text.ends_with(" INFO Request path=\"/a b\" status=200 duration=1.5ms\n"),
            "{text}"
        );
    }
}
