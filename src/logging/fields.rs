//! `LogFields`: the one way a request line is filled in, whatever it is written to.
//!
//! `RequestLog` fills any `LogFields` with the Go proxy's field names (`service`, `status`,
//! `duration`, ...); each output spells them its own way (JSON keys as given, journal fields
//! upper-cased, text as `key=value`), so the three outputs cannot drift apart.

use std::time::Duration;

pub trait LogFields {
    fn str(&mut self, key: &str, value: &str);
    fn u64(&mut self, key: &str, value: u64);
    fn i64(&mut self, key: &str, value: i64);
    /// Go logs durations as integer nanoseconds; the journal as `<KEY>_USEC`, as systemd does.
    fn duration(&mut self, key: &str, value: Duration);
}

impl LogFields for super::JsonLine {
    fn str(&mut self, key: &str, value: &str) {
        super::JsonLine::str(self, key, value);
    }
    fn u64(&mut self, key: &str, value: u64) {
        super::JsonLine::u64(self, key, value);
    }
    fn i64(&mut self, key: &str, value: i64) {
        super::JsonLine::i64(self, key, value);
    }
    fn duration(&mut self, key: &str, value: Duration) {
        super::JsonLine::u64(
            self,
            key,
            u64::try_from(value.as_nanos()).unwrap_or(u64::MAX),
        );
    }
}
