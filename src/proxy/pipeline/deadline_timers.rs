//! `DeadlineTimers`: the timers of the target timeout (`--target-timeout`), kept by each
//! worker and used again, request after request.
//!
//! Every proxied request waits for its response head under a deadline. A timer made for
//! each request is put into tokio's timer wheel when first polled and taken out again when
//! dropped, both under the time driver's lock: about 0.9k instructions a request, as much
//! as all of routing. A timer that is still in the wheel and is moved to a later deadline is
//! only re-dated (one compare-and-swap; the wheel finds the new date when the old one
//! comes). So timers are given back to the worker's stock after use, still in the wheel,
//! and the next request moves one forward. One that fired while it waited in the stock, or
//! is moved earlier (a service with a shorter timeout), is registered again as a new one
//! would be. A timer that fires in the stock wakes the task that used it last, once, which
//! a task takes as any spurious wake-up.
//!
//! The stock belongs to the worker's `Handler`, so every timer in it belongs to the
//! worker's runtime.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// Timers kept for reuse; one per request a worker has in flight at once is enough.
const SPARES: usize = 256;

#[derive(Default)]
pub struct DeadlineTimers {
    spare: Mutex<Vec<Pin<Box<Sleep>>>>,
}

impl DeadlineTimers {
    fn spare(&self) -> std::sync::MutexGuard<'_, Vec<Pin<Box<Sleep>>>> {
        // A panic while holding the lock cannot leave the list inconsistent.
        self.spare.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A deadline `after` from now.
    pub fn after(&self, after: Duration) -> Deadline<'_> {
        let at = Instant::now() + after;
        let reused = self.spare().pop();
        let timer = match reused {
            Some(mut timer) => {
                timer.as_mut().reset(at);
                timer
            }
            None => Box::pin(tokio::time::sleep_until(at)),
        };
        Deadline {
            timer: Some(timer),
            timers: self,
        }
    }
}

/// Completes at its deadline; its timer goes back to the stock when it is dropped.
pub struct Deadline<'a> {
    /// Always `Some` until dropped.
    timer: Option<Pin<Box<Sleep>>>,
    timers: &'a DeadlineTimers,
}

impl Future for Deadline<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.timer.as_mut() {
            Some(timer) => timer.as_mut().poll(cx),
            None => Poll::Ready(()),
        }
    }
}

impl Drop for Deadline<'_> {
    fn drop(&mut self) {
        if let Some(timer) = self.timer.take() {
            let mut spare = self.timers.spare();
            if spare.len() < SPARES {
                spare.push(timer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn fires_at_each_deadline_with_timers_used_again() {
        let timers = DeadlineTimers::default();
        let start = Instant::now();
        timers.after(Duration::from_secs(5)).await;
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        assert_eq!(timers.spare().len(), 1, "the timer went back to the stock");

        // The fired timer is moved forward and fires again, at its new deadline.
        let start = Instant::now();
        timers.after(Duration::from_secs(3)).await;
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        assert_eq!(timers.spare().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_timer_used_again_keeps_its_new_deadline_earlier_or_later() {
        let timers = DeadlineTimers::default();
        // Given back unfired, still in the wheel for 10 s from now.
        drop(timers.after(Duration::from_secs(10)));
        let start = Instant::now();
        // Moved earlier: registered again.
        timers.after(Duration::from_secs(2)).await;
        assert_eq!(start.elapsed(), Duration::from_secs(2));

        drop(timers.after(Duration::from_secs(1)));
        let start = Instant::now();
        // Moved later: re-dated only, and not fired at the old date.
        timers.after(Duration::from_secs(4)).await;
        assert_eq!(start.elapsed(), Duration::from_secs(4));
    }

    #[tokio::test(start_paused = true)]
    async fn two_deadlines_at_once_use_two_timers() {
        let timers = DeadlineTimers::default();
        let first = timers.after(Duration::from_secs(1));
        let second = timers.after(Duration::from_secs(2));
        let start = Instant::now();
        first.await;
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        second.await;
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        assert_eq!(timers.spare().len(), 2);
    }
}
