//! `ErrorPages`: a service's custom `<status>.html` pages (`--error-pages DIR`).
//!
//! Loaded and parsed when the service is deployed, as in Go: a missing directory, one with
//! no `*.html`, or a page that does not parse fails the deploy with
//! `unable to load error pages`, and later changes to the files need a redeploy. Pages are
//! only for errors the proxy raises inside the service; the application's own error
//! responses pass through untouched.

use std::collections::HashMap;
use std::path::Path;

use http::StatusCode;

use super::page_template::PageTemplate;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ErrorPages {
    pages: HashMap<u16, PageTemplate>,
}

impl ErrorPages {
    pub fn load(directory: &Path) -> Result<Self, String> {
        let fail = |why: String| format!("unable to load error pages: {why}");
        let entries = std::fs::read_dir(directory)
            .map_err(|e| fail(format!("{}: {e}", directory.display())))?;
        let mut pages = HashMap::new();
        let mut found_any = false;
        for entry in entries {
            let path = entry
                .map_err(|e| fail(format!("{}: {e}", directory.display())))?
                .path();
            if path.extension().and_then(|e| e.to_str()) != Some("html") {
                continue;
            }
            found_any = true;
            let source = std::fs::read_to_string(&path)
                .map_err(|e| fail(format!("{}: {e}", path.display())))?;
            let template = PageTemplate::parse(&source)
                .map_err(|e| fail(format!("{}: {e}", path.display())))?;
            let status = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse::<u16>().ok());
            if let Some(status) = status {
                pages.insert(status, template);
            }
        }
        if !found_any {
            return Err(fail(format!(
                "{} contains no *.html pages",
                directory.display()
            )));
        }
        Ok(ErrorPages { pages })
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
}
