//! `ServiceSummary`: one row of `List`, as it travels (`(sasasassb)`) and as `list --json`
//! prints it.

use serde::{Deserialize, Serialize};
use zbus::zvariant::Type;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct ServiceSummary {
    pub name: String,
    pub hosts: Vec<String>,
    pub path_prefixes: Vec<String>,
    /// Active writers then readers; rollout targets are not shown, as in Go.
    pub targets: Vec<String>,
    /// `running`, `paused` or `stopped`.
    pub state: String,
    pub tls: bool,
}
