//! `FileCopies`: the daemon's own copies of the files deploys sent as contents (certificate,
//! key, error pages), kept under `<state dir>/files` so a restart finds them after the
//! caller's originals are gone (Kamal deletes old `error_pages/<version>` directories, and
//! the container's paths never existed on the host).
//!
//! Layout: `files/<service>/<generation>/{cert.pem,key.pem,error_pages/<name>.html}`, every
//! file 0600 in 0700 directories. Each deploy that sends files writes a new generation and
//! never touches an existing one, so a deploy that fails leaves the copies the saved state
//! refers to intact. The state file records the copies' paths; after each successful save
//! `sweep` removes every generation that state no longer refers to (a replaced deploy, a
//! removed service, a crash between writing and saving), except those written for a deploy
//! whose state is not saved yet. This file knows paths and bytes, not what they mean.

use std::collections::HashSet;
use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use super::state_file::{create_private_dir, sync_directory};
use super::{write_atomically, StateError};
use crate::control::{FileContents, ServiceName};

pub struct FileCopies {
    root: PathBuf,
    /// The last generation handed out: microseconds since the epoch, bumped so that two
    /// deploys in the same microsecond (or after the clock stepped back) differ.
    last_generation: AtomicU64,
    /// Generation directories written for a deploy whose state is not saved yet; a sweep
    /// keeps them. A std mutex: held only to insert, remove or copy a few paths.
    pending: Mutex<HashSet<PathBuf>>,
}

/// Where one deploy's copies go, decided before anything is written so the service's
/// options (and so the state file) can name them.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyPlan {
    directory: PathBuf,
}

impl CopyPlan {
    pub fn certificate(&self) -> PathBuf {
        self.directory.join("cert.pem")
    }

    pub fn private_key(&self) -> PathBuf {
        self.directory.join("key.pem")
    }

    pub fn error_pages(&self) -> PathBuf {
        self.directory.join("error_pages")
    }
}

/// Copies written and not yet part of a saved state. Dropping it (once the state naming
/// them is saved, or if the deploy is abandoned) lets later sweeps judge them by the state.
pub struct StagedCopies {
    copies: Arc<FileCopies>,
    directory: PathBuf,
}

impl StagedCopies {
    /// Removes the copies of a deploy that did not go through; blocking.
    pub fn discard(self) -> Result<(), StateError> {
        fs::remove_dir_all(&self.directory)
            .map_err(StateError::on("remove the file copies", &self.directory))
    }
}

impl Drop for StagedCopies {
    fn drop(&mut self) {
        self.copies.pending().remove(&self.directory);
    }
}

/// The service's directory name: bytes outside `[A-Za-z0-9_.-]`, and a leading `.`, are
/// `%XX`, so any service name (Go allows `/` and `..`) stays one entry inside `files/`.
fn directory_name(service: &ServiceName) -> String {
    let mut name = String::new();
    for (index, byte) in service.as_str().bytes().enumerate() {
        let plain = byte.is_ascii_alphanumeric()
            || byte == b'_'
            || byte == b'-'
            || (byte == b'.' && index > 0);
        if plain {
            name.push(char::from(byte));
        } else {
            name.push_str(&format!("%{byte:02X}"));
        }
    }
    name
}

impl FileCopies {
    /// Copies under `root` (`<state dir>/files`); nothing is created until a write.
    pub fn new(root: PathBuf) -> FileCopies {
        FileCopies {
            root,
            last_generation: AtomicU64::new(0),
            pending: Mutex::new(HashSet::new()),
        }
    }

    /// Poisoning means a panic while inserting or removing a path; the set is intact.
    fn pending(&self) -> MutexGuard<'_, HashSet<PathBuf>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn next_generation(&self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
            });
        let bump = |last: u64| Some(now.max(last.saturating_add(1)));
        let previous = self
            .last_generation
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, bump)
            .expect("the update always returns Some");
        now.max(previous.saturating_add(1))
    }

    /// A fresh generation directory for `service`, not yet created (nor existing).
    pub fn plan(&self, service: &ServiceName) -> CopyPlan {
        let service_dir = self.root.join(directory_name(service));
        loop {
            let directory = service_dir.join(self.next_generation().to_string());
            // A left-over directory of an earlier run whose clock was ahead is skipped.
            if !directory.exists() {
                return CopyPlan { directory };
            }
        }
    }

    /// Writes `files` (paths inside the plan's directory) atomically and durably; blocking.
    /// On failure whatever was written is removed and nothing else was touched.
    pub fn write(
        self: &Arc<Self>,
        plan: &CopyPlan,
        files: &[(PathBuf, FileContents)],
    ) -> Result<StagedCopies, StateError> {
        let directory = &plan.directory;
        let service_dir = directory.parent().unwrap_or(&self.root);
        create_private_dir(service_dir).map_err(StateError::on(
            "create the file copies directory",
            service_dir,
        ))?;
        // Not recursive: an existing generation is never written into.
        DirBuilder::new()
            .mode(0o700)
            .create(directory)
            .map_err(StateError::on(
                "create the file copies directory",
                directory,
            ))?;
        self.pending().insert(directory.clone());
        let staged = StagedCopies {
            copies: Arc::clone(self),
            directory: directory.clone(),
        };
        let written = files
            .iter()
            .try_for_each(|(path, contents)| write_atomically(path, contents.as_bytes()))
            .and_then(|()| self.sync_parents(directory));
        match written {
            Ok(()) => Ok(staged),
            Err(error) => {
                // Best effort: the write error is the one worth reporting.
                let _ = staged.discard();
                Err(error)
            }
        }
    }

    /// Makes the new generation's directory entries durable up to the state directory
    /// (`write_atomically` syncs only each file's own directory).
    fn sync_parents(&self, generation: &Path) -> Result<(), StateError> {
        let mut directory = Some(generation);
        let top = self.root.parent();
        while let Some(current) = directory {
            sync_directory(current).map_err(StateError::on("sync the directory", current))?;
            if Some(current) == top {
                return Ok(());
            }
            directory = current.parent();
        }
        Ok(())
    }

    /// Removes every generation that no path in `referenced` lies in and no deploy is still
    /// writing, and service directories left empty; blocking. Returns what could not be
    /// removed; the next sweep tries again.
    pub fn sweep<'a>(&self, referenced: impl IntoIterator<Item = &'a Path>) -> Vec<StateError> {
        let referenced: Vec<&Path> = referenced.into_iter().collect();
        let pending = self.pending().clone();
        let mut failures = Vec::new();
        let services = match fs::read_dir(&self.root) {
            Ok(services) => services,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return failures,
            Err(error) => {
                failures.push(StateError::on("read the file copies directory", &self.root)(error));
                return failures;
            }
        };
        for service_dir in services.filter_map(Result::ok).map(|entry| entry.path()) {
            let Ok(generations) = fs::read_dir(&service_dir) else {
                continue;
            };
            for generation in generations.filter_map(Result::ok).map(|entry| entry.path()) {
                let kept = pending.contains(&generation)
                    || referenced.iter().any(|path| path.starts_with(&generation));
                if !kept {
                    if let Err(error) = fs::remove_dir_all(&generation) {
                        failures.push(StateError::on("remove the file copies", &generation)(error));
                    }
                }
            }
            // Fails, as intended, while the service still has a generation.
            let _ = fs::remove_dir(&service_dir);
        }
        failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn service(name: &str) -> ServiceName {
        ServiceName::parse(name).unwrap()
    }

    fn contents(text: &str) -> FileContents {
        FileContents::new(text.as_bytes().to_vec()).unwrap()
    }

    fn store() -> (tempfile::TempDir, Arc<FileCopies>) {
        let state_dir = tempfile::tempdir().unwrap();
        let copies = Arc::new(FileCopies::new(state_dir.path().join("files")));
        (state_dir, copies)
    }

    fn write_pair(copies: &Arc<FileCopies>, plan: &CopyPlan) -> StagedCopies {
        let files = [
            (plan.certificate(), contents("CERT")),
            (plan.private_key(), contents("KEY")),
            (plan.error_pages().join("503.html"), contents("down")),
        ];
        copies.write(plan, &files).unwrap()
    }

    #[test]
    fn writes_private_copies_in_a_new_generation_when_a_deploy_sends_files() {
        let (state_dir, copies) = store();
        let plan = copies.plan(&service("app-web"));
        assert!(plan
            .certificate()
            .starts_with(state_dir.path().join("files/app-web")));
        drop(write_pair(&copies, &plan));

        assert_eq!(fs::read(plan.certificate()).unwrap(), b"CERT");
        assert_eq!(
            fs::read(plan.error_pages().join("503.html")).unwrap(),
            b"down"
        );
        let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&plan.private_key()), 0o600);
        assert_eq!(mode(plan.certificate().parent().unwrap()), 0o700);
        assert_ne!(copies.plan(&service("app-web")), plan);
    }

    #[test]
    fn keeps_referenced_and_pending_generations_when_sweeping() {
        let (_state_dir, copies) = store();
        let (old, current, in_flight) = (
            copies.plan(&service("web")),
            copies.plan(&service("web")),
            copies.plan(&service("web")),
        );
        drop(write_pair(&copies, &old));
        drop(write_pair(&copies, &current));
        let staged = write_pair(&copies, &in_flight);
        let removed = copies.plan(&service("gone"));
        drop(write_pair(&copies, &removed));

        let key = current.private_key();
        assert!(copies.sweep([key.as_path()]).is_empty());

        assert!(!old.certificate().exists());
        assert!(current.certificate().exists() && in_flight.certificate().exists());
        assert!(!removed
            .certificate()
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .exists());
        drop(staged);
        assert!(copies.sweep([key.as_path()]).is_empty());
        assert!(!in_flight.certificate().exists() && current.certificate().exists());
    }

    #[test]
    fn removes_the_copies_of_a_deploy_that_did_not_go_through() {
        let (_state_dir, copies) = store();
        let kept = copies.plan(&service("web"));
        drop(write_pair(&copies, &kept));
        let failed = copies.plan(&service("web"));
        write_pair(&copies, &failed).discard().unwrap();
        assert!(!failed.certificate().parent().unwrap().exists());
        assert!(kept.certificate().exists());
    }

    #[test]
    fn keeps_each_service_in_one_directory_whatever_its_name() {
        assert_eq!(directory_name(&service("app-web_2.x")), "app-web_2.x");
        assert_eq!(directory_name(&service("../etc")), "%2E.%2Fetc");
        assert_eq!(directory_name(&service("a/b%")), "a%2Fb%25");
        assert_eq!(directory_name(&service("..")), "%2E.");
    }
}
