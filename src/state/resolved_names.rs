//! `ResolvedNames`: the attached Kamal container's last answers for target names (container
//! id to address), kept beside the state file.
//!
//! Without them, a daemon restart (an upgrade, `systemctl restart`) would leave every
//! container target unresolvable until the container reattaches, and the requests that came
//! meanwhile would fail; with them, the restarted daemon serves from the last answers at
//! once, as it does while the container is being rebooted, and takes fresh answers as soon
//! as the container is back. The file is a cache: one that cannot be read is logged and
//! replaced by the next save, and costs nothing but that head start.

use std::collections::BTreeMap;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::{write_atomically, StateError, StateFile};

const FILE_NAME: &str = "kamal-proxy.resolved";

pub struct ResolvedNames {
    path: PathBuf,
}

impl ResolvedNames {
    pub fn beside(state_file: &StateFile) -> Self {
        ResolvedNames {
            path: state_file.directory().join(FILE_NAME),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved answers; none when there is no file yet.
    pub fn load(&self) -> Result<BTreeMap<String, IpAddr>, String> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                format!(
                    "{} is not a map of names to addresses: {e}",
                    self.path.display()
                )
            }),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(error) => Err(format!("cannot read {}: {error}", self.path.display())),
        }
    }

    pub fn save(&self, answers: &BTreeMap<String, IpAddr>) -> Result<(), StateError> {
        // Infallible: a map of strings to addresses always serialises.
        let bytes = serde_json::to_vec_pretty(answers).unwrap_or_default();
        write_atomically(&self.path, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_answers_across_a_save_and_a_load() {
        let dir = tempfile::tempdir().unwrap();
        let names = ResolvedNames::beside(&StateFile::at(dir.path().join("kamal-proxy.state")));
        assert_eq!(names.load(), Ok(BTreeMap::new()), "no file yet");
        let answers = BTreeMap::from([("a1b2c3d4e5f6".to_string(), IpAddr::from([172, 18, 0, 5]))]);
        names.save(&answers).unwrap();
        assert_eq!(names.load(), Ok(answers));
        std::fs::write(names.path(), "not json").unwrap();
        assert!(names.load().unwrap_err().contains("kamal-proxy.resolved"));
    }
}
