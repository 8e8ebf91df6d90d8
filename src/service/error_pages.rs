//! `ErrorPages`: a service's custom `<status>.html` pages (`--error-pages DIR`).
//!
//! Loaded and parsed when the service is deployed, as in Go: a missing directory, one with
//! no `*.html`, or a page that does not parse fails the deploy with
//! `unable to load error pages`, and later changes to the files need a redeploy. The pages
//! come from a directory the daemon reads (`load`: a path sent by hand, or the daemon's own
//! copy at restore) or as contents the CLI read (`from_files`); both parse alike. Pages are
//! only for errors the proxy raises inside the service; the application's own error
//! responses pass through untouched.

use std::collections::HashMap;
use std::path::Path;

use http::StatusCode;

use super::page_template::PageTemplate;
use crate::control::{is_error_page_name, ErrorPageFiles};

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ErrorPages {
    pages: HashMap<u16, PageTemplate>,
}

fn fail(why: String) -> String {
    format!("unable to load error pages: {why}")
}

impl ErrorPages {
    /// Reads `<directory>/*.html` (a path the daemon itself can read).
    pub fn load(directory: &Path) -> Result<Self, String> {
        let entries = std::fs::read_dir(directory)
            .map_err(|e| fail(format!("{}: {e}", directory.display())))?;
        let mut pages = ErrorPages::default();
        let mut found_any = false;
        for entry in entries {
            let path = entry
                .map_err(|e| fail(format!("{}: {e}", directory.display())))?
                .path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if !is_error_page_name(name) {
                continue;
            }
            found_any = true;
            let source =
                std::fs::read(&path).map_err(|e| fail(format!("{}: {e}", path.display())))?;
            pages.add(name, &path.display().to_string(), &source)?;
        }
        if !found_any {
            return Err(fail(format!(
                "{} contains no *.html pages",
                directory.display()
            )));
        }
        Ok(pages)
    }

    /// Parses pages a caller sent as contents (`error_pages_files`); errors name the file.
    pub fn from_files(files: &ErrorPageFiles) -> Result<Self, String> {
        let mut pages = ErrorPages::default();
        for (name, file) in files.iter() {
            pages.add(name, name, file.as_bytes())?;
        }
        Ok(pages)
    }

    /// Parses the page `name` (`<status>.html`; another name is checked but never served),
    /// naming it `origin` in errors.
    fn add(&mut self, name: &str, origin: &str, source: &[u8]) -> Result<(), String> {
        let source = std::str::from_utf8(source)
            .map_err(|_| fail(format!("{origin}: stream did not contain valid UTF-8")))?;
        let template = PageTemplate::parse(source).map_err(|e| fail(format!("{origin}: {e}")))?;
        let status = name
            .strip_suffix(".html")
            .and_then(|stem| stem.parse::<u16>().ok());
        if let Some(status) = status {
            self.pages.insert(status, template);
        }
        Ok(())
    }

    /// The custom page for `status`, rendered with `message`, if there is one.
    pub fn render(&self, status: StatusCode, message: &str) -> Option<String> {
        self.pages
            .get(&status.as_u16())
            .map(|page| page.render(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_pages_by_status_and_renders_them() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("503.html"),
            "Custom Maintenance Page: {{ .Message }}",
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let pages = ErrorPages::load(dir.path()).unwrap();
        assert_eq!(
            pages
                .render(StatusCode::SERVICE_UNAVAILABLE, "Testing")
                .as_deref(),
            Some("Custom Maintenance Page: Testing")
        );
        assert_eq!(pages.render(StatusCode::BAD_GATEWAY, ""), None);
    }

    #[test]
    fn fails_for_a_missing_empty_or_broken_directory() {
        let missing = ErrorPages::load(Path::new("/nonexistent/pages")).unwrap_err();
        assert!(
            missing.starts_with("unable to load error pages: /nonexistent/pages"),
            "{missing}"
        );
        let empty = tempfile::tempdir().unwrap();
        assert!(ErrorPages::load(empty.path())
            .unwrap_err()
            .contains("no *.html"));
        let broken = tempfile::tempdir().unwrap();
        std::fs::write(broken.path().join("502.html"), "{{ if .Message }}").unwrap();
        assert!(ErrorPages::load(broken.path())
            .unwrap_err()
            .contains("502.html"));
    }

    #[test]
    fn parses_sent_pages_like_a_directory_and_names_the_broken_one() {
        let file = |text: &str| crate::control::FileContents::new(text.into()).unwrap();
        let sent = |name: &str, text: &str| {
            ErrorPageFiles::new([(name.to_string(), file(text))].into()).unwrap()
        };
        let pages = ErrorPages::from_files(&sent("503.html", "Down: {{ .Message }}")).unwrap();
        assert_eq!(
            pages
                .render(StatusCode::SERVICE_UNAVAILABLE, "soon")
                .as_deref(),
            Some("Down: soon")
        );
        let broken = ErrorPages::from_files(&sent("502.html", "{{ if .Message }}")).unwrap_err();
        assert!(
            broken.starts_with("unable to load error pages: 502.html: "),
            "{broken}"
        );
    }
}
