//! Log lines written to stdout in batches: one `write` per 32 KiB, or per `FLUSH_INTERVAL`,
//! instead of one per request.
//!
//! A syscall per request line cost the data plane more than building the line (as nginx's
//! `access_log ... buffer=` shows, batching is the usual answer). Each worker thread keeps its
//! own pending lines, so no lock is taken and a thread's lines stay in order; every worker
//! flushes on a timer and when it stops, so a line waits at most `FLUSH_INTERVAL`, and only
//! a crash can lose that much. Lifecycle messages are not batched: they are rare and an
//! operator (or a test) waits for them.

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

/// Queues one whole line; writes the batch once it is full. A line written while the
/// thread is being torn down (a request abandoned as its runtime drops) goes out at once.
pub fn write_batched(line: &str) {
    let queued = PENDING.try_with(|pending| {
        let mut pending = pending.borrow_mut();
        pending.extend_from_slice(line.as_bytes());
        if pending.len() >= BATCH_BYTES {
            write_now(&pending);
            pending.clear();
        }
    });
    if queued.is_err() {
        write_now(line.as_bytes());
    }
}

/// Writes this thread's queued lines.
pub fn flush() {
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
        write_batched("{\"a\":1}\n");
        PENDING.with(|p| assert_eq!(p.borrow().as_slice(), b"{\"a\":1}\n"));
        flush();
        PENDING.with(|p| assert!(p.borrow().is_empty()));
        let big = "x".repeat(BATCH_BYTES);
        write_batched(&big);
        PENDING.with(|p| assert!(p.borrow().is_empty(), "a full batch is written at once"));
    }
}
