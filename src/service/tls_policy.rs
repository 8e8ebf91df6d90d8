//! `TlsPolicy`: whether HTTPS is on for a service's traffic and plain HTTP is redirected.
//!
//! A root-path service decides for itself (off when its certificate could not be loaded at
//! restore). A path-prefix service inherits from the service that handles its first host's
//! root path, and gets TLS off with redirect on when there is none (Go's rule, §2.7), so a
//! `/api` service on an HTTPS host is served and redirected like the host's app.

use super::options::ServiceOptions;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsPolicy {
    pub enabled: bool,
    pub redirect: bool,
}

impl TlsPolicy {
    /// The policy the service's own options ask for.
    pub fn own(options: &ServiceOptions) -> Self {
        TlsPolicy {
            enabled: options.tls.is_enabled(),
            redirect: options.tls_redirect,
        }
    }

    /// TLS off: a certificate that could not be loaded.
    pub fn disabled(options: &ServiceOptions) -> Self {
        TlsPolicy {
            enabled: false,
            redirect: options.tls_redirect,
        }
    }

    /// What a path-prefix service gets from its host's root service, if any.
    pub fn inherited(root: Option<TlsPolicy>) -> Self {
        root.unwrap_or(TlsPolicy {
            enabled: false,
            redirect: true,
        })
    }

    /// Plain HTTP must become HTTPS.
    pub fn redirects_to_https(self) -> bool {
        self.enabled && self.redirect
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_service_without_a_root_service_gets_tls_off_and_redirect_on() {
        let inherited = TlsPolicy::inherited(None);
        assert!(!inherited.enabled && inherited.redirect);
        assert!(!inherited.redirects_to_https());
        let root = TlsPolicy {
            enabled: true,
            redirect: false,
        };
        assert_eq!(TlsPolicy::inherited(Some(root)), root);
    }
}
