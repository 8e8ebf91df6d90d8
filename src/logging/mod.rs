//! Log output. By default one JSON object per line on stdout, in the Go proxy's shape
//! (`time`, `level`, `msg`, then fields), because Kamal's tooling and operators' log
//! pipelines read that. Under systemd (`JOURNAL_STREAM` names our stderr, or
//! `--log-format=journal`) entries go to journald with structured fields instead;
//! `--log-format=text` is for a person at a terminal.
//!
//! Lifecycle messages are `tracing` events (formatted by `JsonLayer`, `tracing-journald` or
//! tracing's own text formatter); per-request lines are written directly by the request log
//! through `RequestOutput`, since their field set (`req_<header>`) is only known at deploy
//! time. The JSON path is the hot default: a line is built in place in its thread's batch
//! and leaves in that batch's single write.

mod batch;
mod fields;
mod format;
mod journal;
mod json_layer;
mod json_line;
mod logged_header;
mod mirror;
mod text_line;
mod timestamp;

pub use batch::{flush, flush_periodically};
pub(crate) use fields::key;
pub use fields::{Key, LogFields};
pub use format::{choose, stderr_id, LogFormat, LogTarget};
pub use journal::{journal_field_name, JournalRecord, JournalSocket, PRIORITY_INFO};
pub use json_layer::JsonLayer;
pub use json_line::JsonLine;
pub use logged_header::LoggedHeader;
pub use mirror::{LogMirror, MirrorId};
pub use text_line::TextLine;

use tracing::level_filters::LevelFilter;
use tracing::Level;
use tracing_subscriber::filter::{filter_fn, FilterFn};
use tracing_subscriber::layer::{Layer, SubscriberExt};

/// Where request lines are written; chosen once at start-up and handed to each listener.
#[derive(Debug, Clone, Copy)]
pub enum RequestOutput {
    Json,
    Text,
    /// The socket lives as long as the process, like stdout does.
    Journal(&'static JournalSocket),
    /// `run --log-requests=false`.
    Off,
}

/// Our own events at `level`; dependencies (zbus, hyper) only when they warn.
fn ours_or_warnings(level: LevelFilter) -> FilterFn<impl Fn(&tracing::Metadata<'_>) -> bool> {
    filter_fn(move |metadata| {
        let ours = metadata.target().starts_with("kamal_proxy");
        level >= *metadata.level() && (ours || *metadata.level() <= Level::WARN)
    })
}

/// Where this process's log goes, as `init` set it up.
#[derive(Debug, Clone, Copy)]
pub struct LogOutputs {
    /// Where request lines are written.
    pub requests: RequestOutput,
    /// The copy for an attached Kamal container; lifecycle lines reach it by themselves.
    pub mirror: &'static LogMirror,
}

/// Installs logging for this process and says where request lines go. `debug` lowers the
/// level to DEBUG. A journal that cannot be reached falls back to JSON, with a warning.
/// Whatever the output, lifecycle lines are also mirrored as JSON (see `LogMirror`).
pub fn init(debug: bool, format: LogFormat) -> LogOutputs {
    let level = if debug {
        LevelFilter::DEBUG
    } else {
        LevelFilter::INFO
    };
    // Lives as long as the process, as the log does; made once, at start-up.
    let mirror: &'static LogMirror = Box::leak(Box::new(LogMirror::starting()));
    let journal_stream = std::env::var("JOURNAL_STREAM").ok();
    let target = choose(format, journal_stream.as_deref(), stderr_id());
    let (output, fallback_reason) = match target {
        LogTarget::Json => (RequestOutput::Json, None),
        LogTarget::Text => (RequestOutput::Text, None),
        LogTarget::Journal => match (JournalSocket::connect(), tracing_journald::layer()) {
            (Ok(socket), Ok(layer)) => {
                let layer = layer
                    .with_field_prefix(None)
                    .with_filter(ours_or_warnings(level));
                let mirrored = JsonLayer::new(false, mirror).with_filter(ours_or_warnings(level));
                let subscriber = tracing_subscriber::registry().with(layer).with(mirrored);
                // A second init (tests that start the daemon in-process twice) keeps the first.
                let _ = tracing::subscriber::set_global_default(subscriber);
                // Lives as long as the process; leaked once, at start-up.
                let socket = Box::leak(Box::new(socket));
                return LogOutputs {
                    requests: RequestOutput::Journal(socket),
                    mirror,
                };
            }
            (Err(error), _) | (_, Err(error)) => (RequestOutput::Json, Some(error)),
        },
    };
    let json = JsonLayer::new(matches!(output, RequestOutput::Json), mirror)
        .with_filter(ours_or_warnings(level));
    let text = matches!(output, RequestOutput::Text).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stdout)
            .with_filter(ours_or_warnings(level))
    });
    let subscriber = tracing_subscriber::registry().with(json).with(text);
    let _ = tracing::subscriber::set_global_default(subscriber);
    if let Some(error) = fallback_reason {
        tracing::warn!(error = %error, "Cannot write to the journal; logging JSON to stdout");
    }
    LogOutputs {
        requests: output,
        mirror,
    }
}
