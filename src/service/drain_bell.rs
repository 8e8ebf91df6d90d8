//! How a drain deadline reaches the requests still running to its target, without each
//! request registering with the target.
//!
//! A proxied request spends nearly all its life waiting for its target, and must stop
//! waiting when the target's drain deadline passes. Registering that wait with the target
//! (a `CancellationToken` or a `Notify` of the target's) took the target's lock twice per
//! request, a lock every worker writes, so its cache line crossed between cores on every
//! request. Here each thread has a bell of its own instead: a request waits on its
//! thread's bell and, whenever it rings, checks whether its target's requests were cut; a
//! drain that cuts its requests sets their flag, then rings every thread's bell. Cuts are
//! rare (a drain that reached its deadline), so a bell rung for another target costs a
//! spurious wake-up then and nothing on the request path, and the locks a request takes
//! are its own thread's.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::Notify;

/// Every thread's bell that has been waited on; a thread's goes when the thread ends.
static BELLS: Mutex<Vec<Weak<Notify>>> = Mutex::new(Vec::new());

thread_local! {
    static BELL: Arc<Notify> = register();
}

fn register() -> Arc<Notify> {
    let bell = Arc::new(Notify::new());
    let mut bells = BELLS.lock().unwrap_or_else(|e| e.into_inner());
    bells.retain(|bell| bell.strong_count() > 0);
    bells.push(Arc::downgrade(&bell));
    bell
}

/// Sets `cut`, then wakes every request waiting for a cut, so those whose flag it is stop.
pub fn cut(flag: &AtomicBool) {
    // SeqCst here and in `until_cut`: a waiter that does not yet see the flag has taken
    // its place in line before the bells ring.
    flag.store(true, Ordering::SeqCst);
    let bells: Vec<_> = BELLS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter_map(Weak::upgrade)
        .collect();
    for bell in bells {
        bell.notify_waiters();
    }
}

/// Whether `cut` has set `flag`.
pub fn is_cut(flag: &AtomicBool) -> bool {
    flag.load(Ordering::SeqCst)
}

/// Completes once `cut` has set `flag`.
pub async fn until_cut(flag: &AtomicBool) {
    let bell = BELL.with(Arc::clone);
    loop {
        // A `Notified` hears every `notify_waiters` from the moment it is made.
        let rung = bell.notified();
        if is_cut(flag) {
            return;
        }
        rung.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_waiter_stops_when_its_flag_is_cut_from_another_thread() {
        let flag = Arc::new(AtomicBool::new(false));
        let waiter = tokio::spawn({
            let flag = Arc::clone(&flag);
            async move { until_cut(&flag).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        let cutter = Arc::clone(&flag);
        std::thread::spawn(move || cut(&cutter)).join().unwrap();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiter heard the bell")
            .unwrap();
    }

    #[tokio::test]
    async fn a_cut_of_another_flag_leaves_a_waiter_waiting() {
        let (mine, other) = (AtomicBool::new(false), AtomicBool::new(false));
        let mut waiting = std::pin::pin!(until_cut(&mine));
        assert!(poll_once(waiting.as_mut()).await.is_pending());
        cut(&other);
        assert!(poll_once(waiting.as_mut()).await.is_pending());
        cut(&mine);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the waiter heard its own cut");
    }

    #[tokio::test]
    async fn a_flag_cut_before_the_wait_ends_it_at_once() {
        let flag = AtomicBool::new(false);
        cut(&flag);
        tokio::time::timeout(Duration::from_secs(5), until_cut(&flag))
            .await
            .expect("already cut");
    }

    async fn poll_once<F: std::future::Future + Unpin>(f: F) -> std::task::Poll<F::Output> {
        let mut f = f;
        std::future::poll_fn(|cx| std::task::Poll::Ready(std::pin::Pin::new(&mut f).poll(cx))).await
    }
}
