//! Reading the files `deploy` names (`--tls-certificate-path`, `--tls-private-key-path`,
//! `--error-pages`) so that their bytes, not their paths, go over the bus.
//!
//! Kamal runs the CLI inside its container, where those paths exist; the daemon on the
//! host cannot see them. So the CLI reads them here, before any call is made: a file that
//! cannot be read or is too large is an error naming the flag and the path, and the daemon
//! is never asked. Whether the bytes are a valid certificate or template is still the
//! daemon's check, so every caller gets the same one.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::control::{
    is_error_page_name, ErrorPageFiles, FileContents, MAX_ERROR_PAGES_BYTES, MAX_FILE_BYTES,
};

/// A flag that names a file to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFlag {
    TlsCertificatePath,
    TlsPrivateKeyPath,
    ErrorPages,
}

impl FileFlag {
    /// The Go proxy's prefix for this kind of file, which the daemon's errors carry too.
    fn what_failed(self) -> &'static str {
        match self {
            FileFlag::TlsCertificatePath | FileFlag::TlsPrivateKeyPath => {
                "unable to load certificate"
            }
            FileFlag::ErrorPages => "unable to load error pages",
        }
    }
}

impl fmt::Display for FileFlag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileFlag::TlsCertificatePath => "--tls-certificate-path",
            FileFlag::TlsPrivateKeyPath => "--tls-private-key-path",
            FileFlag::ErrorPages => "--error-pages",
        })
    }
}

/// Why a file could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum Unsendable {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("not a regular file")]
    NotAFile,
    #[error("larger than {MAX_FILE_BYTES} bytes")]
    TooLarge,
    #[error("it contains no *.html pages")]
    NoPages,
    #[error("its *.html pages are larger than {MAX_ERROR_PAGES_BYTES} bytes together")]
    PagesTooLarge,
}

/// A file a flag named that cannot be sent, e.g. `unable to load certificate: cannot read
/// /x/key.pem given to --tls-private-key-path: No such file or directory (os error 2)`.
#[derive(Debug, thiserror::Error)]
#[error("{}: cannot read {} given to {flag}: {reason}", flag.what_failed(), path.display())]
pub struct FileError {
    flag: FileFlag,
    path: PathBuf,
    reason: Unsendable,
}

impl FileError {
    fn on(flag: FileFlag, path: &Path) -> impl Fn(Unsendable) -> FileError + '_ {
        move |reason| FileError {
            flag,
            path: path.to_path_buf(),
            reason,
        }
    }
}

/// The bytes of the regular file at `path`, at most `MAX_FILE_BYTES` of them.
pub fn read_file(flag: FileFlag, path: &Path) -> Result<FileContents, FileError> {
    read_limited(path).map_err(FileError::on(flag, path))
}

fn read_limited(path: &Path) -> Result<FileContents, Unsendable> {
    let file = File::open(path)?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(Unsendable::NotAFile);
    }
    let mut bytes = Vec::new();
    // One byte past the limit tells a file that grew after `metadata` from one that fits.
    let limit = u64::try_from(MAX_FILE_BYTES).unwrap_or(u64::MAX) + 1;
    file.take(limit).read_to_end(&mut bytes)?;
    FileContents::new(bytes).map_err(|_| Unsendable::TooLarge)
}

/// The `*.html` files of the directory `--error-pages` names, by file name: the files the
/// daemon's `ErrorPages` would take from the directory itself.
pub fn read_error_pages(directory: &Path) -> Result<ErrorPageFiles, FileError> {
    let flag = FileFlag::ErrorPages;
    let fail = FileError::on(flag, directory);
    let entries = std::fs::read_dir(directory).map_err(|e| fail(e.into()))?;
    let mut files = BTreeMap::new();
    let mut total = 0;
    for entry in entries {
        let entry = entry.map_err(|e| fail(e.into()))?;
        // A name that is not UTF-8 cannot travel as a D-Bus string, nor be `<status>.html`.
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if !is_error_page_name(&name) {
            continue;
        }
        let page = read_file(flag, &entry.path())?;
        total += page.as_bytes().len();
        if total > MAX_ERROR_PAGES_BYTES {
            return Err(fail(Unsendable::PagesTooLarge));
        }
        files.insert(name, page);
    }
    if files.is_empty() {
        return Err(fail(Unsendable::NoPages));
    }
    Ok(ErrorPageFiles::new(files)
        .expect("the names were filtered, each file and the total checked, and one found"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn message(result: Result<impl fmt::Debug, FileError>) -> String {
        result.unwrap_err().to_string()
    }

    #[test]
    fn reads_the_bytes_when_the_file_is_regular() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cert.pem");
        std::fs::write(&path, b"-----BEGIN CERTIFICATE-----\n").unwrap();
        let read = read_file(FileFlag::TlsCertificatePath, &path).unwrap();
        assert_eq!(read.as_bytes(), b"-----BEGIN CERTIFICATE-----\n");
    }

    #[test]
    fn names_the_flag_and_path_when_the_file_is_missing_a_directory_or_too_large() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("key.pem");
        assert_eq!(
            message(read_file(FileFlag::TlsPrivateKeyPath, &missing)),
            format!(
                "unable to load certificate: cannot read {} given to --tls-private-key-path: \
                 No such file or directory (os error 2)",
                missing.display()
            )
        );
        assert_eq!(
            message(read_file(FileFlag::TlsCertificatePath, dir.path())),
            format!(
                "unable to load certificate: cannot read {} given to --tls-certificate-path: \
                 not a regular file",
                dir.path().display()
            )
        );
        let large = dir.path().join("large.pem");
        std::fs::write(&large, vec![b'x'; MAX_FILE_BYTES + 1]).unwrap();
        assert!(
            message(read_file(FileFlag::TlsCertificatePath, &large)).ends_with(&format!(
                "large.pem given to --tls-certificate-path: larger than {MAX_FILE_BYTES} bytes"
            ))
        );
    }

    #[test]
    fn says_permission_denied_when_the_file_is_not_readable() {
        // Root reads any file whatever its mode, so there is nothing to see as root.
        // SAFETY: geteuid(2) has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        std::fs::write(&path, b"secret").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
        assert!(message(read_file(FileFlag::TlsPrivateKeyPath, &path))
            .ends_with("given to --tls-private-key-path: Permission denied (os error 13)"));
    }

    #[test]
    fn takes_only_the_html_pages_when_reading_an_error_pages_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("503.html"), "down: {{ .Message }}").unwrap();
        std::fs::write(dir.path().join("502.html"), "bad gateway").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        std::fs::create_dir(dir.path().join("assets")).unwrap();
        let pages = read_error_pages(dir.path()).unwrap();
        let names: Vec<&str> = pages.iter().map(|(name, _)| name).collect();
        assert_eq!(names, ["502.html", "503.html"]);
        assert_eq!(
            pages.iter().nth(1).unwrap().1.as_bytes(),
            b"down: {{ .Message }}"
        );
    }

    #[test]
    fn refuses_an_error_pages_directory_that_is_missing_empty_or_too_large() {
        let missing = Path::new("/nonexistent/error_pages/abc123");
        assert!(message(read_error_pages(missing)).starts_with(
            "unable to load error pages: cannot read /nonexistent/error_pages/abc123 given to --error-pages: No such file"
        ));
        let empty = tempfile::tempdir().unwrap();
        std::fs::write(empty.path().join("README"), "no pages").unwrap();
        assert!(message(read_error_pages(empty.path()))
            .ends_with("given to --error-pages: it contains no *.html pages"));
        let large = tempfile::tempdir().unwrap();
        for status in 500..509 {
            let page = large.path().join(format!("{status}.html"));
            std::fs::write(page, vec![b'x'; MAX_FILE_BYTES]).unwrap();
        }
        assert!(message(read_error_pages(large.path())).contains("bytes together"));
    }
}
