//! Log lines written to stdout in batches: one `write` per 32 KiB, or per `FLUSH_INTERVAL`,
//! instead of one per request.
//!
//! A syscall per request line cost the data plane more than building the line (as nginx's
//! `access_log ... buffer=` shows, batching is the usual answer). Each worker thread keeps its
//! own pending lines, so no lock is taken and a thread's lines stay in order; every worker
//! flushes on a timer and when it stops, so a line waits at most `FLUSH_INTERVAL`, and only
//! a crash can lose that much. Lifecycle messages are not batched: they are rare and an
//! operator (or a test) waits for them.
//!
//! A request line is built in place, at the end of the pending lines (`append`), rather than
//! in a buffer of its own that is then copied; a batch is only written between lines, so a
//! line is never split across two writes.

use std::cell::RefCell;
use std::io::Write as _;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

const BATCH_BYTES: usize = 32 * 1024;
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

thread_local! {
    static PENDING: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(BATCH_BYTES + 1024));
}

/// Writes `bytes` now, in one call, so lines of different threads never interleave.
pub fn write_now(bytes: &[u8]) {
    // A closed stdout must not take the proxy down; the lines are lost either way.
    let _ = std::io::stdout().lock().write_all(bytes);
}

/// Appends one whole line, written by `write_line` straight into this thread's pending
/// lines (no buffer of its own, no copy); writes the batch once it is full, so a line is
/// never split across two writes. A line written while the thread is being torn down (a
/// request abandoned as its runtime drops) goes out at once.
pub fn append(write_line: impl FnOnce(&mut Vec<u8>)) {
    let mut write_line = Some(write_line);
    let _ = PENDING.try_with(|pending| {
        let mut pending = pending.borrow_mut();
        if let Some(write_line) = write_line.take() {
            let line = LineInProgress::start(&mut pending);
            write_line(line.pending);
            line.finish();
        }
        if pending.len() >= BATCH_BYTES {
            write_now(&pending);
            pending.clear();
        }
    });
    if let Some(write_line) = write_line {
        let mut line = Vec::new();
        write_line(&mut line);
        write_now(&line);
    }
}

/// Queues one whole line that is already built (see `append`).
pub fn write_batched(line: &[u8]) {
    append(|pending| pending.extend_from_slice(line));
}

/// A line being written at the end of the pending ones. Should writing it panic, the part
/// written is taken back, so the batch only ever holds whole lines.
struct LineInProgress<'a> {
    pending: &'a mut Vec<u8>,
    start: usize,
}

impl<'a> LineInProgress<'a> {
    fn start(pending: &'a mut Vec<u8>) -> Self {
        let start = pending.len();
        LineInProgress { pending, start }
    }

    fn finish(self) {
        std::mem::forget(self);
    }
}

impl Drop for LineInProgress<'_> {
    fn drop(&mut self) {
        self.pending.truncate(self.start);
    }
}

/// Writes this thread's queued lines, and those it mirrors to an attached container.
pub fn flush() {
    super::mirror::flush_thread();
    PENDING.with(|pending| {
        let mut pending = pending.borrow_mut();
        if !pending.is_empty() {
            write_now(&pending);
            pending.clear();
        }
    });
}

/// Flushes this thread's lines every `FLUSH_INTERVAL` until `shutdown`, then once more.
/// Run it on each thread that writes batched lines (a single-threaded runtime's task stays
/// on its thread).
pub async fn flush_periodically(shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(FLUSH_INTERVAL);
    loop {
        tokio::select! {
            _ = ticks.tick() => flush(),
            () = shutdown.cancelled() => break,
        }
    }
    flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_lines_until_flushed_or_full() {
        write_batched(b"{\"a\":1}\n");
        PENDING.with(|p| assert_eq!(p.borrow().as_slice(), b"{\"a\":1}\n"));
        flush();
        PENDING.with(|p| assert!(p.borrow().is_empty()));
        let big = "x".repeat(BATCH_BYTES);
        write_batched(big.as_bytes());
        PENDING.with(|p| assert!(p.borrow().is_empty(), "a full batch is written at once"));
    }

    #[test]
    fn keeps_a_line_whole_when_it_fills_the_batch_midway() {
        write_batched(&vec![b'a'; BATCH_BYTES - 10]);
        append(|pending| {
            pending.extend_from_slice(&[b'b'; 20]);
            PENDING.with(|p| assert!(p.try_borrow().is_err(), "built in the batch itself"));
            pending.extend_from_slice(b"\n");
        });
        PENDING.with(|p| assert!(p.borrow().is_empty(), "written with the line's end"));
    }

    #[test]
    fn takes_back_a_line_when_writing_it_panics() {
        write_batched(b"whole\n");
        let result = std::panic::catch_unwind(|| {
            append(|pending| {
                pending.extend_from_slice(b"half");
                panic!("while writing a line");
            })
        });
        assert!(result.is_err());
        PENDING.with(|p| assert_eq!(p.borrow().as_slice(), b"whole\n"));
        flush();
    }
}
