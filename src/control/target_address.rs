//! `TargetAddress`: an upstream `host[:port]`, checked once so the data plane can build
//! upstream URIs without parsing.
//!
//! Go accepts `^(\w[-_.\w+]+)(:\d+)?$`; we accept the same names plus bracketed IPv6
//! literals (`[::1]:3000`), and explain what is wrong instead of "invalid host pattern".

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetAddress {
    /// As the user wrote it: what `list`, the state file and every request's log line show
    /// (shared, so a log line takes it without a copy).
    text: Arc<str>,
    /// `host:port` with the port made explicit: the upstream URI authority.
    authority: Box<str>,
    host: Box<str>,
    port: u16,
    /// The host when it is an IP literal: connecting needs no lookup.
    ip: Option<IpAddr>,
}

impl TargetAddress {
    pub fn parse(text: &str) -> Result<Self, String> {
        let invalid = |why: &str| format!("invalid target \"{text}\": {why}");
        if text.is_empty() {
            return Err(invalid("it is empty; expected host[:port]"));
        }
        if text.contains("://") {
            return Err(invalid("give host[:port] without a scheme"));
        }
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (literal, after) = rest
                .split_once(']')
                .ok_or_else(|| invalid("unclosed '['"))?;
            literal
                .parse::<std::net::Ipv6Addr>()
                .map_err(|_| invalid("the part in brackets is not an IPv6 address"))?;
            let port = match after {
                "" => None,
                _ => Some(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| invalid("expected ':' and a port after ']'"))?,
                ),
            };
            (&text[..literal.len() + 2], port)
        } else {
            match text.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (text, None),
            }
        };
        if !host.starts_with('[') {
            let valid_char = |c: char| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '+');
            if host.chars().count() < 2
                || !host.chars().all(valid_char)
                || !host.starts_with(|c: char| c.is_alphanumeric() || c == '_')
            {
                return Err(invalid("expected host[:port], where host is a name or address of at least two characters"));
            }
        }
        let port = match port {
            None => 80,
            Some(port) => match port.parse::<u16>() {
                Ok(port) if port > 0 => port,
                _ => return Err(invalid("the port must be a number from 1 to 65535")),
            },
        };
        let ip = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .ok();
        Ok(TargetAddress {
            text: text.into(),
            authority: format!("{host}:{port}").into(),
            host: host.into(),
            port,
            ip,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The text without copying it, for something that outlives the borrow (a log line).
    pub fn shared(&self) -> Arc<str> {
        Arc::clone(&self.text)
    }

    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The host part, IPv6 literals keeping their brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The host as an address, when it is one.
    pub fn ip(&self) -> Option<IpAddr> {
        self.ip
    }
}

impl fmt::Display for TargetAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_names_addresses_and_default_port() {
        let target = TargetAddress::parse("web-1:3000").unwrap();
        assert_eq!(
            (target.host(), target.port(), target.authority()),
            ("web-1", 3000, "web-1:3000")
        );
        assert_eq!(
            TargetAddress::parse("a1b2c3d4e5f6").unwrap().authority(),
            "a1b2c3d4e5f6:80"
        );
        assert_eq!(
            TargetAddress::parse("[::1]:8080").unwrap().authority(),
            "[::1]:8080"
        );
        assert_eq!(
            TargetAddress::parse("127.0.0.1:80").unwrap().as_str(),
            "127.0.0.1:80"
        );
    }

    #[test]
    fn knows_an_ip_literal_from_a_name() {
        let ip = |text: &str| TargetAddress::parse(text).unwrap().ip();
        assert_eq!(ip("127.0.0.1:80"), Some([127, 0, 0, 1].into()));
        assert_eq!(ip("[::1]:80"), Some(std::net::Ipv6Addr::LOCALHOST.into()));
        assert_eq!(ip("a1b2c3d4e5f6:80"), None);
        assert_eq!(ip("localhost"), None);
    }

    #[test]
    fn rejects_schemes_spaces_and_bad_ports() {
        for bad in [
            "",
            "http://x",
            "a b",
            "_",
            "/",
            "x",
            "web:0",
            "web:99999",
            "web:abc",
            "[::1",
            "[nope]:80",
            "[::1]x",
        ] {
            let error = TargetAddress::parse(bad).unwrap_err();
            assert!(
                error.starts_with(&format!("invalid target \"{bad}\"")),
                "{error}"
            );
        }
    }
}
