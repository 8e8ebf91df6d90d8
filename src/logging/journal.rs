//! Request lines for journald: one native-protocol datagram per request, with structured
//! fields (`SERVICE=`, `TARGET=`, `STATUS=`, `DURATION_USEC=`, ...), so that
//! `journalctl -u kamal-proxy SERVICE=web` shows one app's requests.
//!
//! Lifecycle events go through `tracing-journald`; request lines cannot, because their field
//! set (`REQ_<header>`) is only known at deploy time and `tracing` fields are static. The
//! protocol is small (see systemd's `JOURNAL_NATIVE_PROTOCOL`): `KEY=value\n`, or for values
//! holding a newline `KEY\n`, a little-endian u64 length, the bytes, `\n`.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::Duration;

use super::{Key, LogFields};

/// journald's native protocol socket.
pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// A datagram socket to journald, shared by every request (sends need no lock).
#[derive(Debug)]
pub struct JournalSocket {
    socket: UnixDatagram,
    path: &'static Path,
}

impl JournalSocket {
    /// Opens a socket and checks that journald is there to receive on it.
    pub fn connect() -> io::Result<Self> {
        let path = Path::new(JOURNAL_SOCKET);
        let socket = UnixDatagram::unbound()?;
        // An empty datagram is ignored by journald but fails at once if nobody listens.
        socket.send_to(&[], path)?;
        Ok(JournalSocket { socket, path })
    }

    /// Sends one record; a full or absent journal loses the line, as a closed stdout would.
    pub fn send(&self, record: JournalRecord) {
        let _ = self.socket.send_to(&record.buffer, self.path);
    }
}

/// One journal entry under construction.
pub struct JournalRecord {
    buffer: Vec<u8>,
}

/// syslog priorities, as journald reads `PRIORITY=`.
pub const PRIORITY_INFO: u8 = 6;

impl JournalRecord {
    pub fn new(priority: u8, message: &str) -> Self {
        let mut record = JournalRecord {
            buffer: Vec::with_capacity(512),
        };
        record.field("MESSAGE", message.as_bytes());
        record.field("PRIORITY", &[b'0' + priority.min(7)]);
        record.field("SYSLOG_IDENTIFIER", b"kamal-proxy");
        record
    }

    /// `key` is already a journal field name (upper case, `[A-Z0-9_]`).
    fn field(&mut self, key: &str, value: &[u8]) {
        self.buffer.extend_from_slice(key.as_bytes());
        if value.contains(&b'\n') {
            self.buffer.push(b'\n');
            self.buffer
                .extend_from_slice(&(value.len() as u64).to_le_bytes());
        } else {
            self.buffer.push(b'=');
        }
        self.buffer.extend_from_slice(value);
        self.buffer.push(b'\n');
    }

    fn named_field(&mut self, key: &str, value: &[u8]) {
        self.field(&journal_field_name(key), value);
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buffer
    }
}

/// A Go log field name as a journal field name: upper case, anything outside `[A-Z0-9_]`
/// becomes `_`, no leading `_` (reserved for trusted fields), at most 64 bytes.
pub fn journal_field_name(key: &str) -> String {
    let mut name: String = key
        .chars()
        .map(|c| match c {
            'a'..='z' => c.to_ascii_uppercase(),
            'A'..='Z' | '0'..='9' => c,
            _ => '_',
        })
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_uppercase()) {
        name.insert(0, 'F');
    }
    name.truncate(64);
    name
}

impl LogFields for JournalRecord {
    /// Empty values say nothing a missing field does not, so they are left out.
    fn str(&mut self, key: Key<'_>, value: &str) {
        if !value.is_empty() {
            self.named_field(key.name(), value.as_bytes());
        }
    }
    fn u64(&mut self, key: Key<'_>, value: u64) {
        self.named_field(key.name(), value.to_string().as_bytes());
    }
    fn i64(&mut self, key: Key<'_>, value: i64) {
        self.named_field(key.name(), value.to_string().as_bytes());
    }
    fn duration(&mut self, key: Key<'_>, value: Duration) {
        let micros = u64::try_from(value.as_micros()).unwrap_or(u64::MAX);
        let name = format!("{}_usec", key.name());
        self.named_field(&name, micros.to_string().as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::key;

    #[test]
    fn upper_cases_field_names_when_writing_to_the_journal() {
        assert_eq!(journal_field_name("request_id"), "REQUEST_ID");
        assert_eq!(journal_field_name("req_x.trace-id"), "REQ_X_TRACE_ID");
        assert_eq!(journal_field_name("_private"), "F_PRIVATE");
        assert_eq!(journal_field_name(&"a".repeat(80)).len(), 64);
    }

    #[test]
    fn encodes_values_with_newlines_by_length() {
        let mut record = JournalRecord::new(PRIORITY_INFO, "GET /");
        record.str(key!("service"), "web");
        record.str(key!("target"), "");
        record.str(key!("path"), "/a\nb");
        record.duration(key!("duration"), Duration::from_millis(2));
        let mut expected =
            b"MESSAGE=GET /\nPRIORITY=6\nSYSLOG_IDENTIFIER=kamal-proxy\nSERVICE=web\nPATH\n"
                .to_vec();
        expected.extend_from_slice(&4u64.to_le_bytes());
        expected.extend_from_slice(b"/a\nb\nDURATION_USEC=2000\n");
        assert_eq!(record.as_bytes(), &expected[..]);
    }
}
