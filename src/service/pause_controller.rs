//! `PauseController`: holds, refuses or passes a service's requests.
//!
//! Paused: each new request waits on its own timer of `--max-pause` (a later pause does not
//! change the timer of a request already waiting, as in Go); resume lets it through, stop
//! turns it into a 503, expiry into a 504. Stopped: 503 with the stop message. The running
//! case costs the request path one atomic load.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use super::pause_state::PauseState;

pub const DEFAULT_MAX_PAUSE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq)]
pub struct PauseStatus {
    pub state: PauseState,
    pub stop_message: String,
    /// How long a request waits while paused.
    pub fail_after: Duration,
}

impl Default for PauseStatus {
    fn default() -> Self {
        PauseStatus {
            state: PauseState::Running,
            stop_message: String::new(),
            fail_after: DEFAULT_MAX_PAUSE,
        }
    }
}

/// What a request does after asking the controller.
#[derive(Debug, Clone, PartialEq)]
pub enum PauseWaitAction {
    Proceed,
    /// Refuse with 503; the message goes into the page.
    Stopped(String),
    /// The pause outlasted `--max-pause`: refuse with 504.
    TimedOut,
}

pub struct PauseController {
    status: watch::Sender<PauseStatus>,
    /// Mirror of `status.state` for the lock-free fast path.
    state: AtomicU8,
}

fn encode(state: PauseState) -> u8 {
    match state {
        PauseState::Running => 0,
        PauseState::Paused => 1,
        PauseState::Stopped => 2,
    }
}

impl PauseController {
    pub fn new(status: PauseStatus) -> Self {
        let state = AtomicU8::new(encode(status.state));
        PauseController {
            status: watch::Sender::new(status),
            state,
        }
    }

    pub fn status(&self) -> PauseStatus {
        self.status.borrow().clone()
    }

    fn set(&self, status: PauseStatus) {
        self.state.store(encode(status.state), Ordering::Release);
        self.status.send_replace(status);
    }

    pub fn pause(&self, fail_after: Duration) {
        let stop_message = self.status.borrow().stop_message.clone();
        self.set(PauseStatus {
            state: PauseState::Paused,
            stop_message,
            fail_after,
        });
    }

    pub fn stop(&self, message: String) {
        let fail_after = self.status.borrow().fail_after;
        self.set(PauseStatus {
            state: PauseState::Stopped,
            stop_message: message,
            fail_after,
        });
    }

    pub fn resume(&self) {
        let fail_after = self.status.borrow().fail_after;
        self.set(PauseStatus {
            state: PauseState::Running,
            stop_message: String::new(),
            fail_after,
        });
    }

    pub async fn wait(&self) -> PauseWaitAction {
        if self.state.load(Ordering::Acquire) == encode(PauseState::Running) {
            return PauseWaitAction::Proceed;
        }
        let mut updates = self.status.subscribe();
        let deadline = tokio::time::Instant::now() + updates.borrow().fail_after;
        loop {
            let action = {
                let status = updates.borrow_and_update();
                match status.state {
                    PauseState::Running => Some(PauseWaitAction::Proceed),
                    PauseState::Stopped => {
                        Some(PauseWaitAction::Stopped(status.stop_message.clone()))
                    }
                    PauseState::Paused => None,
                }
            };
            if let Some(action) = action {
                return action;
            }
            match tokio::time::timeout_at(deadline, updates.changed()).await {
                Ok(Ok(())) => continue,
                // The controller is gone with its service: nothing will ever resume this request.
                Ok(Err(_)) | Err(_) => return PauseWaitAction::TimedOut,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn passes_requests_while_running() {
        let controller = PauseController::new(PauseStatus::default());
        assert_eq!(controller.wait().await, PauseWaitAction::Proceed);
    }

    #[tokio::test]
    async fn holds_requests_until_resumed() {
        let controller = Arc::new(PauseController::new(PauseStatus::default()));
        controller.pause(Duration::from_secs(10));
        let waiter = tokio::spawn({
            let controller = Arc::clone(&controller);
            async move { controller.wait().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        controller.resume();
        assert_eq!(waiter.await.unwrap(), PauseWaitAction::Proceed);
    }

    #[tokio::test]
    async fn releases_waiters_with_the_stop_message_on_stop() {
        let controller = Arc::new(PauseController::new(PauseStatus::default()));
        controller.pause(Duration::from_secs(10));
        let waiter = tokio::spawn({
            let controller = Arc::clone(&controller);
            async move { controller.wait().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        controller.stop("back soon".into());
        assert_eq!(
            waiter.await.unwrap(),
            PauseWaitAction::Stopped("back soon".into())
        );
    }

    #[tokio::test]
    async fn times_out_after_max_pause() {
        let controller = PauseController::new(PauseStatus::default());
        controller.pause(Duration::from_millis(20));
        assert_eq!(controller.wait().await, PauseWaitAction::TimedOut);
    }
}
