//! The control contract shared by the CLI and the daemon.
//!
//! Everything that crosses the D-Bus boundary is defined here once: the typed option sets and
//! their `a{sv}` encoding, the newtypes that user strings become at the edge, the error enum
//! with its D-Bus names, the daemon-side interface and the client-side proxy, and the rule
//! that picks a transport. Domain code (`router`, `service/`, `proxy/`) never imports zbus.

mod attachment;
mod caller;
mod client;
mod error;
mod file_contents;
mod host;
mod interface;
mod on_demand_url;
mod options;
mod path_prefix;
mod resolver;
mod server;
mod service_name;
mod service_summary;
mod target_address;
mod transport;
mod wire_value;

pub use attachment::Attachments;
pub use client::{connect, Client, ControlProxy};
pub use error::ControlError;
pub use file_contents::{
    is_error_page_name, ErrorPageFiles, FileContents, MAX_ERROR_PAGES_BYTES, MAX_FILE_BYTES,
};
pub use host::Host;
pub use interface::ControlApi;
pub use on_demand_url::OnDemandUrl;
pub use options::{
    AttachOptions, DeployOptions, OptionDict, PauseOptions, RolloutDeployOptions,
    RolloutSetOptions, StopOptions,
};
pub use path_prefix::PathPrefix;
pub use resolver::{ResolverProxy, RESOLVER_PATH};
pub use server::ControlServer;
pub use service_name::ServiceName;
pub use service_summary::ServiceSummary;
pub use target_address::TargetAddress;
pub use transport::{client_socket_path, socket_path, BusChoice, SOCKET_FILE_NAME};

/// The well-known bus name, object path and interface name (fixed contract).
pub const BUS_NAME: &str = "org.kamal.Proxy1";
pub const OBJECT_PATH: &str = "/org/kamal/Proxy1";
pub const INTERFACE: &str = "org.kamal.Proxy1";
