//! `LogMirror`: the daemon's log, as the Go proxy's JSON lines, written into the pipe of the
//! kamal-proxy container attached to it, so that `kamal proxy logs` (`docker logs
//! kamal-proxy`) shows what a Go proxy container would print.
//!
//! The mirror is in addition to the daemon's own output (the journal under systemd), which
//! keeps every line: the pipe is written without blocking, and lines the container does not
//! take in time are dropped (whole, and counted in a line of their own once it catches up),
//! because a slow `docker logs` must never slow the proxy. Request lines are batched per
//! thread as the main output's are (`batch`), so an attached container costs a write per
//! batch, not per request; with nothing attached the cost is one relaxed load per request.
//!
//! The lines logged while the daemon starts (up to `Server started`: the restore lines, or
//! `No previous state to restore`) are kept and written first to each container that
//! attaches, as a Go proxy container prints them when it starts.

use std::cell::RefCell;
use std::io::{self, Write as _};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Bytes kept for a container that is behind; past this, new lines are dropped.
const BACKLOG_LIMIT: usize = 1 << 20;
/// Start-up lines kept for containers that attach later.
const BOOT_LIMIT: usize = 256 * 1024;
/// A thread's pending mirrored request lines are written once they reach this size.
const BATCH_BYTES: usize = 32 * 1024;

#[derive(Default)]
pub struct LogMirror {
    /// Whether a pipe is attached: read per request line without the lock.
    attached: AtomicBool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The start-up lines, replayed to each attaching container.
    boot: Vec<u8>,
    /// Until `started`, lifecycle lines are added to `boot`.
    starting: bool,
    sink: Option<Sink>,
    next_id: u64,
}

struct Sink {
    id: MirrorId,
    pipe: std::fs::File,
    /// Whole lines not yet taken by the pipe, the first of them possibly in part.
    backlog: Vec<u8>,
    dropped_lines: usize,
}

impl std::fmt::Debug for LogMirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogMirror")
            .field("attached", &self.is_attached())
            .finish_non_exhaustive()
    }
}

/// Which attachment a pipe belongs to, so that only that one is detached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MirrorId(u64);

/// What became of a write into the pipe.
#[derive(Debug, PartialEq, Eq)]
enum Delivery {
    /// Written, or queued in the backlog.
    Taken,
    /// The container closed its end: it is gone.
    Closed,
}

impl Sink {
    /// Queues `lines` (whole lines) behind the backlog and writes what the pipe takes. Once
    /// lines had to be dropped, nothing more is queued until the notice of them fits.
    fn deliver(&mut self, lines: &[u8]) -> Delivery {
        if self.write_backlog() == Delivery::Closed {
            return Delivery::Closed;
        }
        let room = |backlog: &Vec<u8>, more: usize| backlog.len() + more <= BACKLOG_LIMIT;
        if self.dropped_lines > 0 {
            let notice = dropped_notice(self.dropped_lines);
            if room(&self.backlog, notice.len() + lines.len()) {
                self.backlog.extend_from_slice(&notice);
                self.dropped_lines = 0;
            }
        }
        if self.dropped_lines == 0 && room(&self.backlog, lines.len()) {
            self.backlog.extend_from_slice(lines);
        } else {
            self.dropped_lines += line_count(lines);
        }
        self.write_backlog()
    }

    fn write_backlog(&mut self) -> Delivery {
        while !self.backlog.is_empty() {
            match self.pipe.write(&self.backlog) {
                Ok(written) => {
                    self.backlog.drain(..written);
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => return Delivery::Closed,
            }
        }
        Delivery::Taken
    }
}

fn line_count(lines: &[u8]) -> usize {
    lines.iter().filter(|&&byte| byte == b'\n').count()
}

/// The line that says how many went missing, in the shape of the others.
fn dropped_notice(count: usize) -> Vec<u8> {
    let mut line = Vec::new();
    super::JsonLine::write_into(&mut line, "WARN", "Log lines dropped", |line| {
        line.u64(super::key!("lines"), count as u64);
        line.str(
            super::key!("reason"),
            "the attached container did not read them in time; the daemon's own log has them",
        );
    });
    line
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own, with flags read from it just before.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if flags < 0
        || unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl LogMirror {
    /// A mirror that keeps the lifecycle lines until `started`.
    pub fn starting() -> Self {
        LogMirror {
            attached: AtomicBool::new(false),
            state: Mutex::new(State {
                starting: true,
                ..State::default()
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves at worst part of a line in a backlog.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_attached(&self) -> bool {
        self.attached.load(Ordering::Relaxed)
    }

    /// Whether lifecycle lines are wanted now: while starting, or while attached.
    pub fn wants_lines(&self) -> bool {
        self.is_attached() || self.lock().starting
    }

    /// The daemon has started: the lines kept so far are what each container gets first.
    pub fn started(&self) {
        self.lock().starting = false;
    }

    /// Mirrors into `pipe` (the write end of the container's pipe) from now on, after the
    /// start-up lines; a previous pipe is let go.
    pub fn attach(&self, pipe: OwnedFd) -> io::Result<MirrorId> {
        set_nonblocking(&pipe)?;
        let mut state = self.lock();
        state.next_id += 1;
        let mut sink = Sink {
            id: MirrorId(state.next_id),
            pipe: std::fs::File::from(pipe),
            backlog: Vec::new(),
            dropped_lines: 0,
        };
        let id = sink.id;
        if sink.deliver(&state.boot) == Delivery::Taken {
            state.sink = Some(sink);
            self.attached.store(true, Ordering::Relaxed);
        }
        Ok(id)
    }

    /// Stops mirroring into the pipe of attachment `id`, if it is still the current one.
    pub fn detach(&self, id: MirrorId) {
        let mut state = self.lock();
        if state.sink.as_ref().is_some_and(|sink| sink.id == id) {
            state.sink = None;
            self.attached.store(false, Ordering::Relaxed);
        }
    }

    /// Writes whole `lines` now (lifecycle lines, or a thread's batch of request lines).
    pub fn write(&self, lines: &[u8]) {
        let mut state = self.lock();
        if state.starting && state.boot.len() + lines.len() <= BOOT_LIMIT {
            state.boot.extend_from_slice(lines);
        }
        if let Some(sink) = &mut state.sink {
            if sink.deliver(lines) == Delivery::Closed {
                state.sink = None;
                self.attached.store(false, Ordering::Relaxed);
            }
        }
    }

    /// Queues one request line, built by `write_line`, with this thread's others; they go
    /// out when the batch is full or at the next `flush_thread`.
    pub fn append(&'static self, write_line: impl FnOnce(&mut Vec<u8>)) {
        let full = PENDING.try_with(|pending| {
            let mut pending = pending.borrow_mut();
            pending.mirror = Some(self);
            write_line(&mut pending.lines);
            pending.lines.len() >= BATCH_BYTES
        });
        if full == Ok(true) {
            flush_thread();
        }
    }
}

/// This thread's mirrored request lines not yet written, and where they go.
#[derive(Default)]
struct Pending {
    lines: Vec<u8>,
    mirror: Option<&'static LogMirror>,
}

thread_local! {
    static PENDING: RefCell<Pending> = RefCell::default();
}

/// Writes this thread's pending mirrored lines (with its main batch, see `batch::flush`).
pub fn flush_thread() {
    let _ = PENDING.try_with(|pending| {
        let mut pending = pending.borrow_mut();
        if let (Some(mirror), false) = (pending.mirror, pending.lines.is_empty()) {
            mirror.write(&pending.lines);
            pending.lines.clear();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn pipe() -> (std::fs::File, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills both descriptors, which we then own.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        use std::os::fd::FromRawFd;
        unsafe {
            (
                std::fs::File::from_raw_fd(fds[0]),
                OwnedFd::from_raw_fd(fds[1]),
            )
        }
    }

    fn read_available(reader: &mut std::fs::File) -> String {
        set_nonblocking(&OwnedFd::from(reader.try_clone().unwrap())).unwrap();
        let mut text = Vec::new();
        let mut buffer = [0u8; 65536];
        while let Ok(n) = reader.read(&mut buffer) {
            if n == 0 {
                break;
            }
            text.extend_from_slice(&buffer[..n]);
        }
        String::from_utf8(text).unwrap()
    }

    #[test]
    fn replays_the_start_up_lines_to_each_container_that_attaches() {
        let mirror = LogMirror::starting();
        mirror.write(b"{\"msg\":\"No previous state to restore\"}\n");
        mirror.started();
        mirror.write(b"{\"msg\":\"later, unseen\"}\n");
        let (mut reader, writer) = pipe();
        let id = mirror.attach(writer).unwrap();
        mirror.write(b"{\"msg\":\"Request\"}\n");
        assert_eq!(
            read_available(&mut reader),
            "{\"msg\":\"No previous state to restore\"}\n{\"msg\":\"Request\"}\n"
        );
        mirror.detach(id);
        assert!(!mirror.is_attached());
        let (mut again, writer) = pipe();
        mirror.attach(writer).unwrap();
        assert_eq!(
            read_available(&mut again),
            "{\"msg\":\"No previous state to restore\"}\n"
        );
    }

    #[test]
    fn drops_whole_lines_for_a_container_that_falls_behind_and_says_how_many() {
        let mirror = LogMirror::starting();
        mirror.started();
        let (mut reader, writer) = pipe();
        mirror.attach(writer).unwrap();
        let line = format!("{}\n", "x".repeat(1023));
        let lines = (BACKLOG_LIMIT + 2 * 65536) / line.len() + 10;
        for _ in 0..lines {
            mirror.write(line.as_bytes());
        }
        let mut received = String::new();
        for _ in 0..64 {
            received.push_str(&read_available(&mut reader));
            mirror.write(b"{\"msg\":\"tick\"}\n");
        }
        let whole = received.lines().filter(|l| *l == line.trim_end()).count();
        assert!(whole < lines, "some lines were dropped");
        assert!(received
            .lines()
            .all(|l| l == line.trim_end() || l.starts_with('{')));
        let notice = received
            .lines()
            .find(|l| l.contains("Log lines dropped"))
            .expect("a notice of the dropped lines");
        assert!(
            notice.contains(&format!("\"lines\":{}", lines - whole)),
            "{notice}"
        );
    }

    #[test]
    fn lets_go_of_a_container_that_closed_its_end() {
        let mirror = LogMirror::starting();
        mirror.started();
        let (reader, writer) = pipe();
        mirror.attach(writer).unwrap();
        drop(reader);
        mirror.write(b"{\"msg\":\"Request\"}\n");
        assert!(!mirror.is_attached());
    }
}
