//! `ChallengeKind`: the ACME challenges the proxy can answer, in `run --acme-challenges`
//! order of preference.
//!
//! TLS-ALPN-01 comes first by default, as in Go's autocert: it needs only the HTTPS port.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeKind {
    /// A token served on the HTTP port under `/.well-known/acme-challenge/`.
    Http01,
    /// A special certificate served for ALPN `acme-tls/1` on the HTTPS port.
    TlsAlpn01,
}

pub const DEFAULT_PREFERENCE: [ChallengeKind; 2] =
    [ChallengeKind::TlsAlpn01, ChallengeKind::Http01];

impl fmt::Display for ChallengeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChallengeKind::Http01 => "http-01",
            ChallengeKind::TlsAlpn01 => "tls-alpn-01",
        })
    }
}

impl FromStr for ChallengeKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "http-01" => Ok(ChallengeKind::Http01),
            "tls-alpn-01" => Ok(ChallengeKind::TlsAlpn01),
            other => Err(format!(
                "unknown ACME challenge \"{other}\" (use http-01 or tls-alpn-01)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_the_acme_names() {
        for kind in DEFAULT_PREFERENCE {
            assert_eq!(kind.to_string().parse::<ChallengeKind>(), Ok(kind));
        }
        assert!("dns-01".parse::<ChallengeKind>().is_err());
    }
}
