//! Which log output to use: `run --log-format=auto|journal|json|text`.
//!
//! `auto` follows systemd's rule (`sd_journal_stream_fd(3)`): write to the journal only when
//! `JOURNAL_STREAM` names the device and inode of our own stderr, so a daemon started from a
//! shell inside a systemd session (which inherits the variable) still logs JSON to stdout.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Auto,
    Journal,
    Json,
    Text,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "auto" => Ok(LogFormat::Auto),
            "journal" => Ok(LogFormat::Journal),
            "json" => Ok(LogFormat::Json),
            "text" => Ok(LogFormat::Text),
            _ => Err(format!(
                "invalid log format \"{text}\" (expected auto, journal, json or text)"
            )),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Auto => "auto",
            LogFormat::Journal => "journal",
            LogFormat::Json => "json",
            LogFormat::Text => "text",
        })
    }
}

/// Where log lines actually go once `auto` is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTarget {
    Journal,
    Json,
    Text,
}

/// A file's identity as `JOURNAL_STREAM` spells it: device and inode.
pub type FileId = (u64, u64);

/// Decides the output from the format asked for, `$JOURNAL_STREAM` and stderr's identity.
pub fn choose(
    format: LogFormat,
    journal_stream: Option<&str>,
    stderr: Option<FileId>,
) -> LogTarget {
    match format {
        LogFormat::Journal => LogTarget::Journal,
        LogFormat::Json => LogTarget::Json,
        LogFormat::Text => LogTarget::Text,
        LogFormat::Auto => {
            let named = journal_stream.and_then(parse_journal_stream);
            if named.is_some() && named == stderr {
                LogTarget::Journal
            } else {
                LogTarget::Json
            }
        }
    }
}

/// `"<dev>:<ino>"`, both decimal.
fn parse_journal_stream(text: &str) -> Option<FileId> {
    let (device, inode) = text.split_once(':')?;
    Some((device.parse().ok()?, inode.parse().ok()?))
}

/// Device and inode of file descriptor 2, if it is open.
pub fn stderr_id() -> Option<FileId> {
    // SAFETY: fstat only writes into the zeroed struct we own; fd 2 may be closed, which
    // fstat reports as an error.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(2, &mut stat) } != 0 {
        return None;
    }
    #[allow(clippy::unnecessary_cast)] // dev_t/ino_t widths differ between targets
    Some((stat.st_dev as u64, stat.st_ino as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_journal_only_when_journal_stream_names_stderr() {
        let stderr = Some((64769, 1234));
        assert_eq!(
            choose(LogFormat::Auto, Some("64769:1234"), stderr),
            LogTarget::Journal
        );
        assert_eq!(
            choose(LogFormat::Auto, Some("64769:9999"), stderr),
            LogTarget::Json
        );
        assert_eq!(choose(LogFormat::Auto, None, stderr), LogTarget::Json);
        assert_eq!(
            choose(LogFormat::Auto, Some("garbage"), stderr),
            LogTarget::Json
        );
        assert_eq!(choose(LogFormat::Auto, Some("1:2"), None), LogTarget::Json);
    }

    #[test]
    fn follows_an_explicit_format_whatever_the_environment() {
        let stderr = Some((1, 2));
        assert_eq!(
            choose(LogFormat::Json, Some("1:2"), stderr),
            LogTarget::Json
        );
        assert_eq!(choose(LogFormat::Journal, None, None), LogTarget::Journal);
        assert_eq!(choose(LogFormat::Text, None, None), LogTarget::Text);
    }

    #[test]
    fn parses_and_names_every_format() {
        for format in [
            LogFormat::Auto,
            LogFormat::Journal,
            LogFormat::Json,
            LogFormat::Text,
        ] {
            assert_eq!(format.to_string().parse::<LogFormat>(), Ok(format));
        }
        assert!("syslog"
            .parse::<LogFormat>()
            .unwrap_err()
            .contains("\"syslog\""));
    }

    #[test]
    fn reads_a_device_and_inode_for_stderr_when_it_is_open() {
        // The test harness always has some fd 2.
        assert!(stderr_id().is_some());
    }
}
