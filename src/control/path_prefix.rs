//! `PathPrefix`: where a service is mounted, normalised as Go does (`api/` -> `/api`).
//!
//! Matching happens on segment boundaries in `routing/`; this type only guarantees the form:
//! a leading slash, no trailing slash (except the root), nothing that cannot appear in a path.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PathPrefix(Box<str>);

impl PathPrefix {
    pub fn root() -> Self {
        PathPrefix("/".into())
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(bad) = text
            .chars()
            .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '?' | '#'))
        {
            return Err(format!(
                "invalid path prefix \"{text}\": {bad:?} is not allowed in a path prefix"
            ));
        }
        Ok(PathPrefix(format!("/{}", text.trim_matches('/')).into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        &*self.0 == "/"
    }
}

impl fmt::Display for PathPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_slashes_like_go() {
        assert_eq!(PathPrefix::parse("api/").unwrap().as_str(), "/api");
        assert_eq!(PathPrefix::parse("/").unwrap().as_str(), "/");
        assert_eq!(PathPrefix::parse("").unwrap().as_str(), "/");
        assert_eq!(PathPrefix::parse("/a/b/").unwrap().as_str(), "/a/b");
    }

    #[test]
    fn rejects_spaces_and_query_characters() {
        assert!(PathPrefix::parse("/a b").is_err());
        assert!(PathPrefix::parse("/a?x").is_err());
    }
}
