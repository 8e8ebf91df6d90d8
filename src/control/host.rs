//! `Host`: a host name a service answers for, checked and normalised once at the edge.
//!
//! Routing compares hosts as plain strings on every request, so the stored form must already
//! be canonical: lower case ASCII (IDNA to punycode, so `bücher.example` matches what browsers
//! send), no port, no trailing dot. A leading `*.` makes a one-label wildcard, as in Go.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Host(Box<str>);

impl Host {
    pub fn parse(text: &str) -> Result<Self, String> {
        let invalid = |why: &str| format!("invalid host \"{text}\": {why}");
        let trimmed = text.trim_end_matches('.');
        if trimmed.is_empty() {
            return Err(invalid("it is empty"));
        }
        let (wildcard, name) = match trimmed.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, trimmed),
        };
        if name.contains('*') {
            return Err(invalid(
                "a wildcard is only allowed as the whole first label (*.example.com)",
            ));
        }
        let ascii = if name.is_ascii() {
            name.to_ascii_lowercase()
        } else {
            idna::domain_to_ascii(name)
                .map_err(|_| invalid("it is not a valid international domain name"))?
        };
        if ascii.len() > 253 {
            return Err(invalid("it is longer than 253 characters"));
        }
        for label in ascii.split('.') {
            if label.is_empty() {
                return Err(invalid("it has an empty label"));
            }
            if label.len() > 63 {
                return Err(invalid("a label is longer than 63 characters"));
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(invalid(
                    "only letters, digits, '-', '_' and '.' are allowed",
                ));
            }
        }
        Ok(Host(
            if wildcard {
                format!("*.{ascii}")
            } else {
                ascii
            }
            .into(),
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_wildcard(&self) -> bool {
        self.0.starts_with("*.")
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_case_trailing_dot_and_idna() {
        assert_eq!(
            Host::parse("App.Example.COM.").unwrap().as_str(),
            "app.example.com"
        );
        assert_eq!(
            Host::parse("bücher.example").unwrap().as_str(),
            "xn--bcher-kva.example"
        );
        assert_eq!(
            Host::parse("*.Example.com").unwrap().as_str(),
            "*.example.com"
        );
        assert_eq!(Host::parse("127.0.0.1").unwrap().as_str(), "127.0.0.1");
    }

    #[test]
    fn rejects_malformed_hosts_naming_them() {
        for bad in ["", "a b", "a..b", "x.*.com", "http://x", "a:80", "*"] {
            let error = Host::parse(bad).unwrap_err();
            assert!(error.contains(&format!("\"{bad}\"")), "{error}");
        }
    }
}
