//! `DeployLocks`: Kamal's deploy lock (`kamal lock acquire/release/status`), kept by the
//! proxy so it is host-wide, survives crashes and is visible to everyone on the host.
//!
//! A lock has a scope: a service name, or `""` for the whole host. It is advisory: deploys
//! are not refused, tools consult it. Acquiring a held lock fails at once, naming who holds
//! it, since when and why; releasing is unconditional, as in Kamal. Who the holder is comes
//! from the transport (the caller cannot claim a name), which is `control/`'s business.
//!
//! The table is persisted beside the state file (`kamal-proxy.locks`, JSON) with the state's
//! atomic write, before a change is reported, so a crash never loses a granted lock. A
//! change that cannot be saved is undone and reported instead. Calls block on the disk;
//! the async wrappers run them off the runtime's workers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::state::{self, StateError};

pub const FILE_NAME: &str = "kamal-proxy.locks";

/// Who holds a lock, since when and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    pub holder: String,
    pub message: String,
    /// Microseconds since the Unix epoch, as `LockStatus` sends it.
    pub since_usec: u64,
}

impl Lock {
    /// `since` as Kamal prints it: ISO 8601 UTC to the second.
    pub fn since_text(&self) -> String {
        format_time(self.since_usec)
    }
}

/// ISO 8601 UTC to the second (`2025-01-02T03:04:05Z`), Kamal's lock time format.
pub fn format_time(usec: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_micros(usec)).to_string()
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{}", held_message(.scope, .lock))]
    Held { scope: String, lock: Lock },
    #[error("cannot save the deploy lock: {0}")]
    Save(#[from] StateError),
    #[error("{0}")]
    InvalidMessage(&'static str),
}

fn held_message(scope: &str, lock: &Lock) -> String {
    let what = if scope.is_empty() {
        "the deploy lock".to_string()
    } else {
        format!("the deploy lock of service {scope}")
    };
    format!(
        "{what} is held by {} since {}: {}",
        lock.holder,
        lock.since_text(),
        lock.message
    )
}

/// What a start-up load found; the caller logs it.
#[derive(Debug, PartialEq)]
pub enum LoadOutcome {
    Missing,
    Loaded(usize),
    /// Not our JSON: start with no locks, and the next save replaces the file.
    Unreadable(String),
}

#[derive(Debug)]
pub struct DeployLocks {
    path: PathBuf,
    /// Held for a check-and-set plus its save (blocking, never across `.await`), so the
    /// file always matches what callers were told.
    locks: Mutex<BTreeMap<String, Lock>>,
}

impl DeployLocks {
    /// The locks kept in `directory` (the state directory), loaded now.
    pub fn load(directory: &Path) -> (Self, LoadOutcome) {
        let path = directory.join(FILE_NAME);
        let (locks, outcome) = match std::fs::read(&path) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                (BTreeMap::new(), LoadOutcome::Missing)
            }
            Err(error) => (BTreeMap::new(), LoadOutcome::Unreadable(error.to_string())),
            Ok(bytes) => match serde_json::from_slice::<BTreeMap<String, Lock>>(&bytes) {
                Ok(locks) => {
                    let count = locks.len();
                    (locks, LoadOutcome::Loaded(count))
                }
                Err(error) => (BTreeMap::new(), LoadOutcome::Unreadable(error.to_string())),
            },
        };
        let locks = DeployLocks {
            path,
            locks: Mutex::new(locks),
        };
        (locks, outcome)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Poisoning means a panic between a map change and its save; the map is still whole.
    fn table(&self) -> MutexGuard<'_, BTreeMap<String, Lock>> {
        self.locks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn save(&self, locks: &BTreeMap<String, Lock>) -> Result<(), StateError> {
        // Cannot fail: string keys, strings and integers.
        let mut bytes = serde_json::to_vec(locks).expect("locks serialise");
        bytes.push(b'\n');
        state::write_atomically(&self.path, &bytes)
    }

    /// Takes the lock of `scope` for `holder`, or says who has it.
    pub fn acquire_blocking(
        &self,
        scope: &str,
        holder: &str,
        message: &str,
    ) -> Result<Lock, LockError> {
        if message.trim().is_empty() {
            return Err(LockError::InvalidMessage("a lock message is required"));
        }
        let mut locks = self.table();
        if let Some(lock) = locks.get(scope) {
            return Err(LockError::Held {
                scope: scope.to_string(),
                lock: lock.clone(),
            });
        }
        let since_usec = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        let lock = Lock {
            holder: holder.to_string(),
            message: message.to_string(),
            since_usec,
        };
        locks.insert(scope.to_string(), lock.clone());
        if let Err(error) = self.save(&locks) {
            locks.remove(scope);
            return Err(error.into());
        }
        Ok(lock)
    }

    /// Frees the lock of `scope` whoever holds it; returns what was released, if anything.
    pub fn release_blocking(&self, scope: &str) -> Result<Option<Lock>, LockError> {
        let mut locks = self.table();
        let Some(released) = locks.remove(scope) else {
            return Ok(None);
        };
        if let Err(error) = self.save(&locks) {
            locks.insert(scope.to_string(), released);
            return Err(error.into());
        }
        Ok(Some(released))
    }

    pub fn status(&self, scope: &str) -> Option<Lock> {
        self.table().get(scope).cloned()
    }

    /// `acquire_blocking` off the async runtime's workers.
    pub async fn acquire(
        self: &Arc<Self>,
        scope: String,
        holder: String,
        message: String,
    ) -> Result<Lock, LockError> {
        let locks = Arc::clone(self);
        blocking(move || locks.acquire_blocking(&scope, &holder, &message)).await
    }

    /// `release_blocking` off the async runtime's workers.
    pub async fn release(self: &Arc<Self>, scope: String) -> Result<Option<Lock>, LockError> {
        let locks = Arc::clone(self);
        blocking(move || locks.release_blocking(&scope)).await
    }
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        // The closure only panics on a bug; surface it rather than invent an answer.
        Err(error) => std::panic::resume_unwind(error.into_panic()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locks_in(dir: &Path) -> DeployLocks {
        DeployLocks::load(dir).0
    }

    #[test]
    fn refuses_a_held_lock_naming_holder_time_and_message() {
        let dir = tempfile::tempdir().unwrap();
        let locks = locks_in(dir.path());
        locks.acquire_blocking("", "alice", "migrating db").unwrap();
        let error = locks.acquire_blocking("", "bob", "deploy").unwrap_err();
        let text = error.to_string();
        assert!(
            text.starts_with("the deploy lock is held by alice since ")
                && text.ends_with("Z: migrating db"),
            "{text}"
        );
        // Scopes are independent.
        locks.acquire_blocking("web", "bob", "deploy").unwrap();
        let text = locks
            .acquire_blocking("web", "carol", "x")
            .unwrap_err()
            .to_string();
        assert!(
            text.starts_with("the deploy lock of service web is held by bob"),
            "{text}"
        );
    }

    #[test]
    fn releases_unconditionally_and_reports_what_was_released() {
        let dir = tempfile::tempdir().unwrap();
        let locks = locks_in(dir.path());
        assert_eq!(locks.release_blocking("").unwrap(), None);
        locks.acquire_blocking("", "alice", "why").unwrap();
        let released = locks.release_blocking("").unwrap().unwrap();
        assert_eq!(released.holder, "alice");
        assert_eq!(locks.status(""), None);
        locks.acquire_blocking("", "bob", "again").unwrap();
    }

    #[test]
    fn keeps_locks_across_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let acquired = locks_in(dir.path())
            .acquire_blocking("web", "alice", "why")
            .unwrap();
        let (reloaded, outcome) = DeployLocks::load(dir.path());
        assert_eq!(outcome, LoadOutcome::Loaded(1));
        assert_eq!(reloaded.status("web"), Some(acquired));
        assert_eq!(reloaded.status(""), None);
    }

    #[test]
    fn starts_empty_when_the_file_is_missing_or_unreadable() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(DeployLocks::load(dir.path()).1, LoadOutcome::Missing);
        std::fs::write(dir.path().join(FILE_NAME), "{ nope").unwrap();
        let (locks, outcome) = DeployLocks::load(dir.path());
        assert!(matches!(outcome, LoadOutcome::Unreadable(_)));
        locks.acquire_blocking("", "alice", "why").unwrap();
    }

    #[test]
    fn undoes_an_acquire_that_cannot_be_saved() {
        let dir = tempfile::tempdir().unwrap();
        let not_a_directory = dir.path().join("file");
        std::fs::write(&not_a_directory, "").unwrap();
        let locks = locks_in(&not_a_directory);
        let error = locks.acquire_blocking("", "alice", "why").unwrap_err();
        assert!(
            error.to_string().starts_with("cannot save the deploy lock"),
            "{error}"
        );
        assert_eq!(locks.status(""), None);
    }

    #[test]
    fn requires_a_message() {
        let dir = tempfile::tempdir().unwrap();
        let error = locks_in(dir.path())
            .acquire_blocking("", "alice", " ")
            .unwrap_err();
        assert_eq!(error.to_string(), "a lock message is required");
    }

    #[test]
    fn formats_times_as_iso8601_utc() {
        assert_eq!(format_time(1_700_000_000_123_456), "2023-11-14T22:13:20Z");
    }
}
