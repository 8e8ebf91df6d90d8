//! `kamal-proxy generate-docs DIR` (hidden): writes the man page `kamal-proxy(8)` and the
//! bash, zsh and fish completions from the clap definitions, so they can never disagree
//! with the flags. The Debian package build runs it (`debian/rules`); users never need to.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::Cli;

#[derive(Debug, Args)]
pub struct GenerateDocsArgs {
    /// Directory to write `man/kamal-proxy.8` and `completions/` into
    dir: PathBuf,
}

fn create(path: &Path) -> Result<File, String> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))
}

/// `kamal-proxy.8`, and `kamal-proxy-<subcommand>.8` for each visible subcommand (which
/// the main page's SUBCOMMANDS section refers to). Section 8: it is a system daemon.
fn write_man_pages(command: &clap::Command, dir: &Path) -> Result<(), String> {
    for subcommand in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_man_pages(subcommand, dir)?;
    }
    let man = clap_mangen::Man::new(command.clone())
        .section("8")
        .manual("System Administration");
    let path = dir.join(man.get_filename());
    let mut file = create(&path)?;
    man.render(&mut file)
        .and_then(|()| file.flush())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

impl GenerateDocsArgs {
    pub fn execute(self) -> Result<(), String> {
        let mut command = Cli::command().disable_help_subcommand(true);
        command.build();
        write_man_pages(&command, &self.dir.join("man"))?;

        // The file names each shell's completion directory expects.
        for (shell, name) in [
            (Shell::Bash, "kamal-proxy"),
            (Shell::Zsh, "_kamal-proxy"),
            (Shell::Fish, "kamal-proxy.fish"),
        ] {
            let path = self.dir.join("completions").join(name);
            let mut file = create(&path)?;
            clap_complete::generate(shell, &mut command.clone(), "kamal-proxy", &mut file);
            file.flush()
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_man_page_and_completions_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        GenerateDocsArgs {
            dir: dir.path().to_path_buf(),
        }
        .execute()
        .unwrap();
        let man = std::fs::read_to_string(dir.path().join("man/kamal-proxy.8")).unwrap();
        assert!(man.contains(".TH kamal-proxy 8"), "{man}");
        assert!(man.contains("deploy"), "{man}");
        assert!(
            !man.contains("generate-docs"),
            "the hidden command leaked: {man}"
        );
        for name in ["kamal-proxy", "_kamal-proxy", "kamal-proxy.fish"] {
            let text = std::fs::read_to_string(dir.path().join("completions").join(name)).unwrap();
            assert!(text.contains("health-check-path"), "{name}");
        }
    }
}
