//! `JsonLayer`: a `tracing` layer that writes events as Go-style JSON lines.
//!
//! Field values keep their JSON type where tracing gives one (numbers, booleans); anything
//! formatted with `%` or `?` becomes a string. Lines go to stdout (`--log-format=json`) and to
//! the attached Kamal container's pipe (`LogMirror`), or only there, whatever the daemon's
//! own output is. Which events are written is the filter's business (`logging::init`).

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

use super::{JsonLine, Key, LogMirror};

pub struct JsonLayer {
    /// Whether stdout gets the lines too, or only the mirror.
    to_stdout: bool,
    mirror: &'static LogMirror,
}

impl JsonLayer {
    pub fn new(to_stdout: bool, mirror: &'static LogMirror) -> Self {
        JsonLayer { to_stdout, mirror }
    }
}

/// Go slog's level names.
fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARN",
        Level::INFO => "INFO",
        _ => "DEBUG",
    }
}

struct Fields<'a, 'b> {
    line: &'a mut JsonLine<'b>,
}

/// A tracing field's name spelled as a JSON key. Lifecycle events are rare, so the spelling
/// is made per field rather than kept.
fn json_key(field: &Field) -> String {
    format!(",\"{}\":\"", field.name())
}

impl Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.line.str(Key::from_json(&json_key(field)), value);
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.line.u64(Key::from_json(&json_key(field)), value);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.line.i64(Key::from_json(&json_key(field)), value);
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.line.bool(Key::from_json(&json_key(field)), value);
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let value = format!("{value:?}");
        self.line.str(Key::from_json(&json_key(field)), &value);
    }
}

/// The event's constant message, which `tracing` passes as the `message` field.
struct Message(String);

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0 = value.to_string();
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

struct WithoutMessage<'a, V>(&'a mut V);

impl<V: Visit> Visit for WithoutMessage<'_, V> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() != "message" {
            self.0.record_str(field, value);
        }
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.record_u64(field, value);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.record_i64(field, value);
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.record_bool(field, value);
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() != "message" {
            self.0.record_debug(field, value);
        }
    }
}

impl<S: Subscriber> Layer<S> for JsonLayer {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mirrored = self.mirror.wants_lines();
        if !(self.to_stdout || mirrored) {
            return;
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        let mut line = Vec::new();
        let level = level_name(event.metadata().level());
        JsonLine::write_into(&mut line, level, &message.0, |line| {
            event.record(&mut WithoutMessage(&mut Fields { line }));
        });
        if self.to_stdout {
            super::batch::write_now(&line);
        }
        if mirrored {
            self.mirror.write(&line);
        }
    }
}
