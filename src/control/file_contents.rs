//! The files a deploy sends as bytes: a certificate, a key, a directory of error pages.
//!
//! Kamal names these files by paths that exist only inside its `kamal-proxy` container, and
//! the hardened daemon cannot read users' homes either, so the CLI reads them and sends their
//! contents (`tls_certificate_pem`, `tls_private_key_pem`, `error_pages_files`). The limits
//! and the rule for which file names are pages live here, in the contract, so the CLI and
//! the daemon apply the same ones. Only size and names are checked here; whether the bytes
//! are a usable certificate or template is the daemon's business.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Component, Path};

/// The largest single file a deploy may send. Certificates, keys and error pages are a few
/// kilobytes; a megabyte means a wrong path, and every byte travels as a D-Bus value.
pub const MAX_FILE_BYTES: usize = 1 << 20;

/// The largest set of error pages a deploy may send, all files together.
pub const MAX_ERROR_PAGES_BYTES: usize = 8 << 20;

/// Whether `name` is a page `--error-pages` takes: a plain file name ending in `.html`
/// (the Go proxy reads `<dir>/*.html`). Also what keeps a sent name from escaping the
/// directory the daemon copies pages into.
pub fn is_error_page_name(name: &str) -> bool {
    let path = Path::new(name);
    let mut components = path.components();
    matches!(
        (components.next(), components.next()),
        (Some(Component::Normal(_)), None)
    ) && path
        .extension()
        .is_some_and(|extension| extension == "html")
}

/// The bytes of one file, at most `MAX_FILE_BYTES`.
#[derive(Clone, Default, PartialEq)]
pub struct FileContents(Vec<u8>);

impl FileContents {
    pub fn new(bytes: Vec<u8>) -> Result<Self, String> {
        if bytes.len() > MAX_FILE_BYTES {
            return Err(format!(
                "a file of {} bytes is larger than the limit of {MAX_FILE_BYTES}",
                bytes.len()
            ));
        }
        Ok(FileContents(bytes))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Only the length: the bytes may be a private key, and options are logged with `{:?}`.
impl fmt::Debug for FileContents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FileContents({} bytes)", self.0.len())
    }
}

/// Error pages by file name (`503.html`): at least one, every name a page name, at most
/// `MAX_ERROR_PAGES_BYTES` together.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ErrorPageFiles(BTreeMap<String, FileContents>);

impl ErrorPageFiles {
    pub fn new(files: BTreeMap<String, FileContents>) -> Result<Self, String> {
        if files.is_empty() {
            return Err("no *.html pages were sent".to_string());
        }
        if let Some(name) = files.keys().find(|name| !is_error_page_name(name)) {
            return Err(format!(
                "error page name \"{name}\" is not a file name ending in .html"
            ));
        }
        let total: usize = files.values().map(|file| file.as_bytes().len()).sum();
        if total > MAX_ERROR_PAGES_BYTES {
            return Err(format!(
                "error pages of {total} bytes together are larger than the limit of {MAX_ERROR_PAGES_BYTES}"
            ));
        }
        Ok(ErrorPageFiles(files))
    }

    /// Every page, by name, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &FileContents)> {
        self.0.iter().map(|(name, file)| (name.as_str(), file))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pages(files: &[(&str, &str)]) -> Result<ErrorPageFiles, String> {
        ErrorPageFiles::new(
            files
                .iter()
                .map(|(name, text)| {
                    let file = FileContents::new(text.as_bytes().to_vec()).unwrap();
                    (name.to_string(), file)
                })
                .collect(),
        )
    }

    #[test]
    fn takes_only_plain_html_file_names_when_naming_pages() {
        for name in ["503.html", "maintenance.html", ".hidden.html"] {
            assert!(is_error_page_name(name), "{name}");
        }
        for name in [
            "503.htm",
            "../503.html",
            "a/503.html",
            "/503.html",
            ".html",
            "",
        ] {
            assert!(!is_error_page_name(name), "{name}");
        }
    }

    #[test]
    fn refuses_empty_misnamed_or_oversized_page_sets() {
        assert!(pages(&[("503.html", "down")]).is_ok());
        assert_eq!(pages(&[]).unwrap_err(), "no *.html pages were sent");
        assert!(pages(&[("../../key.pem.html", "x"), ("503.html", "y")])
            .unwrap_err()
            .contains("\"../../key.pem.html\""));
        let big = "x".repeat(MAX_FILE_BYTES);
        let names: Vec<String> = (0..9).map(|i| format!("{i}.html")).collect();
        let nine: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), big.as_str())).collect();
        assert!(pages(&nine).unwrap_err().contains("larger than the limit"));
    }

    #[test]
    fn refuses_a_file_over_the_limit_and_hides_bytes_when_debug_printed() {
        assert!(FileContents::new(vec![0; MAX_FILE_BYTES + 1]).is_err());
        let key = FileContents::new(b"-----BEGIN PRIVATE KEY-----".to_vec()).unwrap();
        assert_eq!(format!("{key:?}"), "FileContents(27 bytes)");
    }
}
