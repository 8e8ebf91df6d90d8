//! `CertificateState`: where each automatically managed host's certificate stands, as `list`
//! and the `CertificateStatus` D-Bus method report it.

use std::time::SystemTime;

#[derive(Debug, Clone, PartialEq)]
pub enum CertificateState {
    /// No certificate yet; an order is due or running.
    Pending,
    Valid {
        not_after: SystemTime,
    },
    /// The last order failed; a valid older certificate, if any, is still served.
    Failed {
        reason: String,
        retry_at: SystemTime,
    },
}

impl CertificateState {
    /// The wire form: state name and a human detail.
    pub fn describe(&self) -> (String, String) {
        let when = |t: &SystemTime| httpdate::fmt_http_date(*t);
        match self {
            CertificateState::Pending => ("pending".into(), String::new()),
            CertificateState::Valid { not_after } => {
                ("valid".into(), format!("expires {}", when(not_after)))
            }
            CertificateState::Failed { reason, retry_at } => (
                "failed".into(),
                format!("{reason} (next attempt {})", when(retry_at)),
            ),
        }
    }
}
