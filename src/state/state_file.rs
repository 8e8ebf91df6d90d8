//! `StateFile`: where the state lives and how it is written and read, safely.
//!
//! The Go proxy truncates and rewrites the file in place and drops the error, so a crash or a
//! full disk mid-save loses every app. Here a save writes a temp file beside the real one,
//! fsyncs it, renames it over the old file and fsyncs the directory, so the file on disk is
//! always either the old table or the new one; every failure is returned with the path. A file
//! we cannot read is renamed aside rather than left for the next save to overwrite.
//! What the bytes mean is `super`'s business, not this file's; `write_atomically` is shared
//! with the other files kept beside the state (the deploy locks, the file copies).

use std::ffi::{OsStr, OsString};
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{decode, encode, LoadOutcome, SavedService};

const FILE_NAME: &str = "kamal-proxy.state";

/// A failed save, naming the file or directory it failed on.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {}: {source}", path.display())]
pub struct StateError {
    action: &'static str,
    path: PathBuf,
    source: io::Error,
}

impl StateError {
    /// The `map_err` adapter for one step of a save.
    pub(super) fn on<'a>(
        action: &'static str,
        path: &'a Path,
    ) -> impl FnOnce(io::Error) -> StateError + 'a {
        move |source| StateError {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    /// Serialises saves: they share one temp file name, and two interleaved writers could
    /// rename a mix of both tables into place. Held only for the synchronous write.
    save_lock: Mutex<()>,
}

impl StateFile {
    /// `$STATE_DIRECTORY/kamal-proxy.state` under systemd, else
    /// `$HOME/.config/kamal-proxy/kamal-proxy.state` (the Go proxy's place), else
    /// `<temp dir>/kamal-proxy/kamal-proxy.state`.
    pub fn locate() -> StateFile {
        Self::locate_with(|name| std::env::var_os(name))
    }

    /// `locate` with the environment passed in, so tests need not mutate the process's.
    pub fn locate_with(env: impl Fn(&str) -> Option<OsString>) -> StateFile {
        let set = |name: &str| env(name).filter(|value| !value.is_empty());
        // systemd joins several `StateDirectory=` entries with ':'; the first is ours.
        if let Some(dirs) = set("STATE_DIRECTORY") {
            let first = dirs.to_string_lossy().split(':').next().map(PathBuf::from);
            if let Some(dir) = first.filter(|dir| !dir.as_os_str().is_empty()) {
                return StateFile::at(dir.join(FILE_NAME));
            }
        }
        let data_dir = match set("HOME") {
            Some(home) => PathBuf::from(home).join(".config"),
            // What `std::env::temp_dir` does on Unix, read through `env`.
            None => set("TMPDIR").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from),
        };
        StateFile::at(data_dir.join("kamal-proxy").join(FILE_NAME))
    }

    pub fn at(path: PathBuf) -> StateFile {
        StateFile {
            path,
            save_lock: Mutex::new(()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the file with `services`, atomically. Blocking: call it off the async
    /// runtime's worker threads if a slow disk matters.
    pub fn save(&self, services: &[SavedService]) -> Result<(), StateError> {
        let bytes = encode(services);
        // A poisoned lock guards no data; the next save rewrites everything anyway.
        let _guard = self.save_lock.lock().unwrap_or_else(|p| p.into_inner());
        write_atomically(&self.path, &bytes)
    }

    /// The directory the state file lives in; other persisted files (the deploy locks) go
    /// beside it.
    pub fn directory(&self) -> &Path {
        directory_of(&self.path)
    }

    /// Reads the table; never fails outright, because start-up must go on without it.
    pub fn load(&self) -> LoadOutcome {
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return LoadOutcome::Missing,
            Err(error) => return self.set_aside(format!("cannot read the state file: {error}")),
        };
        match decode(&bytes) {
            Ok((services, skipped)) => LoadOutcome::Loaded { services, skipped },
            Err(error) => self.set_aside(error),
        }
    }

    /// Moves an unusable file to `<path>.broken-<unix seconds>`, out of the next save's way.
    fn set_aside(&self, error: String) -> LoadOutcome {
        let seconds = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let broken = self.sibling(&format!(".broken-{seconds}"));
        match fs::rename(&self.path, &broken) {
            Ok(()) => LoadOutcome::Unreadable {
                error,
                moved_to: Some(broken),
            },
            Err(rename) => LoadOutcome::Unreadable {
                error: format!(
                    "{error}; moving it to {} also failed: {rename}",
                    broken.display()
                ),
                moved_to: None,
            },
        }
    }

    /// The state path with `suffix` appended to its file name.
    fn sibling(&self, suffix: &str) -> PathBuf {
        sibling(&self.path, suffix)
    }
}

fn directory_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// `path` with `suffix` appended to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(OsStr::new(suffix));
    PathBuf::from(name)
}

/// Replaces `path` with `bytes` so that the file on disk is always the old content or the
/// new (temp file, fsync, rename, fsync the directory), creating a private directory if
/// needed. Blocking. Callers writing the same path from several threads serialise first:
/// they would share the temp file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let directory = directory_of(path);
    create_private_dir(directory)
        .map_err(StateError::on("create the state directory", directory))?;
    let temp = sibling(path, &format!(".tmp-{}", std::process::id()));
    let result = write_synced(&temp, bytes)
        .map_err(StateError::on("write the state file", &temp))
        .and_then(|()| {
            fs::rename(&temp, path).map_err(StateError::on("replace the state file", path))
        });
    if result.is_err() {
        // Best effort: the write or rename error above is the one worth reporting.
        let _ = fs::remove_file(&temp);
    }
    result?;
    // Makes the rename itself durable, not just the file's contents.
    sync_directory(directory).map_err(StateError::on("sync the state directory", directory))
}

/// Makes the directory's entries (a rename, a new file or subdirectory) durable.
pub(super) fn sync_directory(directory: &Path) -> io::Result<()> {
    File::open(directory).and_then(|dir| dir.sync_all())
}

/// Creates the directory (and missing parents) readable by our user only, as Go does.
pub(super) fn create_private_dir(directory: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(directory)
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::full_service;
    use std::os::unix::fs::PermissionsExt;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| OsString::from(value))
        }
    }

    fn entries(directory: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(directory)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn locates_the_systemd_state_directory_then_home_then_temp() {
        let systemd = [
            ("STATE_DIRECTORY", "/var/lib/kamal-proxy:/var/lib/other"),
            ("HOME", "/root"),
        ];
        assert_eq!(
            StateFile::locate_with(env(&systemd)).path(),
            Path::new("/var/lib/kamal-proxy/kamal-proxy.state")
        );
        let home = [("STATE_DIRECTORY", ""), ("HOME", "/home/deploy")];
        assert_eq!(
            StateFile::locate_with(env(&home)).path(),
            Path::new("/home/deploy/.config/kamal-proxy/kamal-proxy.state")
        );
        assert_eq!(
            StateFile::locate_with(env(&[("TMPDIR", "/run/tmp")])).path(),
            Path::new("/run/tmp/kamal-proxy/kamal-proxy.state")
        );
        assert_eq!(
            StateFile::locate_with(env(&[])).path(),
            Path::new("/tmp/kamal-proxy/kamal-proxy.state")
        );
    }

    #[test]
    fn saves_atomically_into_a_new_private_directory_and_loads_it_back() {
        let root = tempfile::tempdir().unwrap();
        let directory = root.path().join("missing/kamal-proxy");
        let state = StateFile::at(directory.join(FILE_NAME));
        let services = vec![full_service("app-web"), full_service("app-api")];

        state.save(&services).unwrap();
        state.save(&services[..1]).unwrap();

        let mode = fs::metadata(&directory).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert_eq!(entries(&directory), [FILE_NAME]);
        assert_eq!(
            state.load(),
            LoadOutcome::Loaded {
                services: services[..1].to_vec(),
                skipped: vec![],
            }
        );
    }

    #[test]
    fn reports_missing_when_there_is_no_file() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(
            StateFile::at(root.path().join(FILE_NAME)).load(),
            LoadOutcome::Missing
        );
    }

    #[test]
    fn moves_a_file_that_is_not_json_aside() {
        let root = tempfile::tempdir().unwrap();
        let state = StateFile::at(root.path().join(FILE_NAME));
        fs::write(state.path(), "{ truncated").unwrap();

        let LoadOutcome::Unreadable { error, moved_to } = state.load() else {
            panic!("expected Unreadable");
        };

        assert!(error.contains("not valid JSON"), "{error}");
        let moved_to = moved_to.unwrap();
        let moved_name = moved_to.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            moved_name.starts_with("kamal-proxy.state.broken-"),
            "{moved_name}"
        );
        assert_eq!(fs::read_to_string(&moved_to).unwrap(), "{ truncated");
        assert!(!state.path().exists());
    }

    #[test]
    fn reports_a_failed_save_with_the_path() {
        let root = tempfile::tempdir().unwrap();
        let not_a_directory = root.path().join("file");
        fs::write(&not_a_directory, "").unwrap();
        let state = StateFile::at(not_a_directory.join(FILE_NAME));

        let error = state.save(&[full_service("app")]).unwrap_err().to_string();

        assert!(
            error.starts_with("cannot create the state directory"),
            "{error}"
        );
        assert!(
            error.contains(&not_a_directory.display().to_string()),
            "{error}"
        );
    }

    #[test]
    fn leaves_no_temp_file_when_the_rename_fails() {
        let root = tempfile::tempdir().unwrap();
        let state = StateFile::at(root.path().join(FILE_NAME));
        // A non-empty directory where the file should be makes the rename fail.
        fs::create_dir_all(state.path().join("occupied")).unwrap();

        let error = state.save(&[full_service("app")]).unwrap_err().to_string();

        assert!(
            error.starts_with("cannot replace the state file"),
            "{error}"
        );
        assert_eq!(entries(root.path()), [FILE_NAME]);
    }
}
