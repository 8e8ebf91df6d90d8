//! `ServiceName`: the name a service is deployed, listed and removed under.
//!
//! Go accepts any string; we refuse only what would corrupt logs or tables (empty, white
//! space, control characters), so every name Kamal generates (`app-web-staging`) passes.

use std::fmt;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
/// Shared, not boxed: every request's log line names its service (`shared`).
pub struct ServiceName(Arc<str>);

impl ServiceName {
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("service name must not be empty".to_string());
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "invalid service name {text:?}: white space and control characters are not allowed"
            ));
        }
        Ok(ServiceName(text.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name without copying it, for something that outlives the borrow (a log line).
    pub fn shared(&self) -> Arc<str> {
        Arc::clone(&self.0)
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_kamal_names_and_rejects_blank_ones() {
        assert!(ServiceName::parse("app_with_destinations-web-staging").is_ok());
        assert!(ServiceName::parse("").is_err());
        assert!(ServiceName::parse("a b").is_err());
        assert!(ServiceName::parse("a\nb").is_err());
    }
}
