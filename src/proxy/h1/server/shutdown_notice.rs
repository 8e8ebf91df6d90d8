//! `ShutdownNotice`: how a worker's plain-HTTP connections learn that shutdown has begun,
//! for a registration per connection rather than locks per request.
//!
//! An idle keep-alive connection must close as soon as shutdown begins, so every wait for a
//! request head used to race a `CancellationToken`'s `cancelled()`. Registering that waiter,
//! dropping it and asking `is_cancelled` each take the token's locks: some seventeen atomic
//! read-modify-writes per request, at about twenty cycles each, more than any other part
//! of a request. Here a connection registers its task once, for its whole life (`Watch`),
//! and between wake-ups reads a flag that is set before the registered tasks are woken.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Context;

use pin_project_lite::pin_project;
use tokio::sync::futures::Notified;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
pub struct ShutdownNotice {
    begun: AtomicBool,
    notify: Notify,
}

impl ShutdownNotice {
    /// A notice that shutdown begins when `token` is cancelled.
    pub fn of(token: &CancellationToken) -> Arc<Self> {
        let notice = Arc::new(ShutdownNotice::default());
        let (token, begin) = (token.clone(), Arc::clone(&notice));
        tokio::spawn(async move {
            token.cancelled().await;
            begin.begin();
        });
        notice
    }

    fn begin(&self) {
        // Set first: a task woken below must find it set.
        self.begun.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// Whether shutdown has begun, without registering anything.
    pub fn has_begun(&self) -> bool {
        self.begun.load(Ordering::SeqCst)
    }

    /// A connection's registration, to be pinned where the connection lives.
    pub fn watch(&self) -> Watch<'_> {
        Watch {
            notice: self,
            waiter: self.notify.notified(),
            registered: false,
        }
    }
}

pin_project! {
    /// Wakes the task that first checked it when shutdown begins.
    pub struct Watch<'a> {
        notice: &'a ShutdownNotice,
        #[pin]
        waiter: Notified<'a>,
        registered: bool,
    }
}

impl Watch<'_> {
    /// Whether shutdown has begun. The first call registers the task of `cx` to be woken
    /// when it does; a task's waker stays good for the task's life, so later calls only
    /// read the flag.
    pub fn check(self: Pin<&mut Self>, cx: &mut Context<'_>) -> bool {
        let this = self.project();
        if !*this.registered {
            *this.registered = true;
            if this.waiter.poll(cx).is_ready() {
                return true;
            }
        }
        this.notice.has_begun()
    }
}
