//! The client side of `org.kamal.Proxy1`: find the daemon, make one call, report its answer.
//!
//! The CLI is a short-lived process making exactly one call, so this owns the whole client
//! story: which transport to use (the `--bus` rule in DESIGN.md), how long to wait (a deploy
//! legitimately blocks for its deploy timeout plus its drain timeout), and how failures read
//! (`cannot reach kamal-proxy: ...`, or the daemon's own Go-compatible text). It only speaks
//! the contract; what the options mean is the daemon's business.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::path::Path;
use std::time::Duration;

use zbus::names::BusName;
use zbus::zvariant::Value;
use zbus::{connection, fdo::DBusProxy, Connection};

use super::{
    client_socket_path, BusChoice, DeployOptions, PauseOptions, RolloutDeployOptions,
    RolloutSetOptions, ServiceName, ServiceSummary, StopOptions, TargetAddress, BUS_NAME,
};
use crate::lock::Lock;
use crate::service::options::{DEFAULT_DEPLOY_TIMEOUT, DEFAULT_DRAIN_TIMEOUT};

/// A lock's scope on the wire: the service's name, or "" for the whole host.
fn scope(service: Option<&ServiceName>) -> &str {
    service.map_or("", ServiceName::as_str)
}

/// The interface as the daemon serves it (fixed contract in DESIGN.md).
#[zbus::proxy(
    interface = "org.kamal.Proxy1",
    default_service = "org.kamal.Proxy1",
    default_path = "/org/kamal/Proxy1",
    gen_blocking = false
)]
pub trait Control {
    fn deploy(
        &self,
        service: &str,
        targets: &[&str],
        options: &HashMap<String, Value<'_>>,
    ) -> zbus::Result<()>;

    fn remove(&self, service: &str) -> zbus::Result<()>;

    fn list(&self) -> zbus::Result<Vec<ServiceSummary>>;

    fn certificate_status(&self, service: &str) -> zbus::Result<Vec<(String, String, String)>>;

    fn pause(&self, service: &str, options: &HashMap<String, Value<'_>>) -> zbus::Result<()>;

    fn stop(&self, service: &str, options: &HashMap<String, Value<'_>>) -> zbus::Result<()>;

    fn resume(&self, service: &str) -> zbus::Result<()>;

    fn acquire_lock(&self, scope: &str, message: &str) -> zbus::Result<()>;

    fn release_lock(&self, scope: &str) -> zbus::Result<()>;

    fn lock_status(&self, scope: &str) -> zbus::Result<(bool, String, String, u64)>;

    fn rollout_deploy(
        &self,
        service: &str,
        targets: &[&str],
        options: &HashMap<String, Value<'_>>,
    ) -> zbus::Result<()>;

    fn rollout_set(&self, service: &str, options: &HashMap<String, Value<'_>>) -> zbus::Result<()>;

    fn rollout_stop(&self, service: &str) -> zbus::Result<()>;

    fn attach(
        &self,
        log_pipe: zbus::zvariant::Fd<'_>,
        options: &HashMap<String, Value<'_>>,
    ) -> zbus::Result<()>;

    #[zbus(property)]
    fn version(&self) -> zbus::Result<String>;
}

/// Added to every call's own worst case before the client gives up on a daemon that stopped
/// answering; quick calls (`List`, `Remove`, `Resume`) get just this.
const CALL_MARGIN: Duration = Duration::from_secs(30);

/// How long the system bus may take to say whether the daemon is there before `--bus auto`
/// moves on to the socket.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to the daemon, whichever transport carried it.
pub struct Client {
    proxy: ControlProxy<'static>,
}

impl Client {
    /// Blocks until the new targets are healthy, traffic moved and the old targets drained.
    pub async fn deploy(
        &self,
        service: &ServiceName,
        targets: &[TargetAddress],
        options: &DeployOptions,
    ) -> Result<(), String> {
        answer(
            deploy_wait(options.deploy_timeout, options.drain_timeout),
            self.proxy
                .deploy(service.as_str(), &target_texts(targets), &options.to_dict()),
        )
        .await
    }

    pub async fn remove(&self, service: &ServiceName) -> Result<(), String> {
        answer(CALL_MARGIN, self.proxy.remove(service.as_str())).await
    }

    pub async fn list(&self) -> Result<Vec<ServiceSummary>, String> {
        answer(CALL_MARGIN, self.proxy.list()).await
    }

    /// The service's automatic certificates: (host, state, detail).
    pub async fn certificate_status(
        &self,
        service: &ServiceName,
    ) -> Result<Vec<(String, String, String)>, String> {
        answer(CALL_MARGIN, self.proxy.certificate_status(service.as_str())).await
    }

    pub async fn pause(&self, service: &ServiceName, options: &PauseOptions) -> Result<(), String> {
        let worst_case = options.drain_timeout.unwrap_or(DEFAULT_DRAIN_TIMEOUT);
        answer(
            worst_case + CALL_MARGIN,
            self.proxy.pause(service.as_str(), &options.to_dict()),
        )
        .await
    }

    pub async fn stop(&self, service: &ServiceName, options: &StopOptions) -> Result<(), String> {
        let worst_case = options.drain_timeout.unwrap_or(DEFAULT_DRAIN_TIMEOUT);
        answer(
            worst_case + CALL_MARGIN,
            self.proxy.stop(service.as_str(), &options.to_dict()),
        )
        .await
    }

    pub async fn resume(&self, service: &ServiceName) -> Result<(), String> {
        answer(CALL_MARGIN, self.proxy.resume(service.as_str())).await
    }

    /// Takes the deploy lock of `service` (or of the host) for the calling user.
    pub async fn acquire_lock(
        &self,
        service: Option<&ServiceName>,
        message: &str,
    ) -> Result<(), String> {
        answer(
            CALL_MARGIN,
            self.proxy.acquire_lock(scope(service), message),
        )
        .await
    }

    /// Blocks until the rollout targets are healthy and the rollout group they replace drained.
    pub async fn rollout_deploy(
        &self,
        service: &ServiceName,
        targets: &[TargetAddress],
        options: &RolloutDeployOptions,
    ) -> Result<(), String> {
        answer(
            deploy_wait(options.deploy_timeout, options.drain_timeout),
            self.proxy
                .rollout_deploy(service.as_str(), &target_texts(targets), &options.to_dict()),
        )
        .await
    }

    pub async fn release_lock(&self, service: Option<&ServiceName>) -> Result<(), String> {
        answer(CALL_MARGIN, self.proxy.release_lock(scope(service))).await
    }

    /// The lock of `service` (or of the host), if held.
    pub async fn lock_status(&self, service: Option<&ServiceName>) -> Result<Option<Lock>, String> {
        let (held, holder, message, since_usec) =
            answer(CALL_MARGIN, self.proxy.lock_status(scope(service))).await?;
        Ok(held.then_some(Lock {
            holder,
            message,
            since_usec,
        }))
    }

    pub async fn rollout_set(
        &self,
        service: &ServiceName,
        options: &RolloutSetOptions,
    ) -> Result<(), String> {
        answer(
            CALL_MARGIN,
            self.proxy.rollout_set(service.as_str(), &options.to_dict()),
        )
        .await
    }

    pub async fn rollout_stop(&self, service: &ServiceName) -> Result<(), String> {
        answer(CALL_MARGIN, self.proxy.rollout_stop(service.as_str())).await
    }
}

/// How long a deploy may legitimately take: the health wait, then the drain, both with the
/// daemon's defaults when not given, plus the usual margin.
fn deploy_wait(deploy_timeout: Option<Duration>, drain_timeout: Option<Duration>) -> Duration {
    deploy_timeout.unwrap_or(DEFAULT_DEPLOY_TIMEOUT)
        + drain_timeout.unwrap_or(DEFAULT_DRAIN_TIMEOUT)
        + CALL_MARGIN
}

fn target_texts(targets: &[TargetAddress]) -> Vec<&str> {
    targets.iter().map(TargetAddress::as_str).collect()
}

/// Waits up to `limit` for a call's reply, and words its failure.
async fn answer<T>(
    limit: Duration,
    call: impl std::future::Future<Output = zbus::Result<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, call).await {
        Ok(reply) => reply.map_err(call_error),
        Err(_) => Err(format!(
            "kamal-proxy did not answer within {}; the operation may still be running",
            crate::go_duration::format(limit)
        )),
    }
}

/// The daemon's own error text is what the user sees (Go's messages, e.g. `service not
/// found`); a bus that does not know the name means the daemon is not there.
fn call_error(error: zbus::Error) -> String {
    match error {
        zbus::Error::MethodError(name, text, _)
            if name.as_str() == "org.freedesktop.DBus.Error.ServiceUnknown" =>
        {
            format!(
                "cannot reach kamal-proxy: {BUS_NAME} is not on the bus{}",
                text.map(|text| format!(" ({text})")).unwrap_or_default()
            )
        }
        zbus::Error::MethodError(_, Some(text), _) => text,
        zbus::Error::MethodError(name, None, _) => name.to_string(),
        other => other.to_string(),
    }
}

/// Connects by the CLI transport rule for `--bus`.
pub async fn connect(bus: &BusChoice) -> Result<Client, String> {
    let connection = match bus {
        BusChoice::Address(address) => {
            bus_connection(connection::Builder::address(address.as_str()), "the bus").await?
        }
        BusChoice::System => {
            bus_connection(connection::Builder::system(), "the system bus").await?
        }
        BusChoice::Session => {
            bus_connection(connection::Builder::session(), "the session bus").await?
        }
        BusChoice::None => socket_connection(&client_socket_path()).await?,
        BusChoice::Auto => auto_connection().await?,
    };
    let proxy = ControlProxy::new(&connection)
        .await
        .map_err(|error| format!("cannot reach kamal-proxy: {error}"))?;
    Ok(Client { proxy })
}

/// `$KAMAL_PROXY_SOCKET` if set; else the system bus if the daemon is owned or activatable
/// there; else the socket by the path rule.
async fn auto_connection() -> Result<Connection, String> {
    if std::env::var_os("KAMAL_PROXY_SOCKET").is_some_and(|path| !path.is_empty()) {
        return socket_connection(&client_socket_path()).await;
    }
    if let Ok(Some(connection)) =
        tokio::time::timeout(PROBE_TIMEOUT, system_bus_with_daemon()).await
    {
        return Ok(connection);
    }
    socket_connection(&client_socket_path()).await
}

/// The system bus, if it is reachable and `org.kamal.Proxy1` is owned or activatable on it.
/// Any failure along the way means "not there": the socket is tried next.
async fn system_bus_with_daemon() -> Option<Connection> {
    let connection = Connection::system().await.ok()?;
    let dbus = DBusProxy::new(&connection).await.ok()?;
    let name = BusName::try_from(BUS_NAME).ok()?;
    if dbus.name_has_owner(name.clone()).await.ok()? {
        return Some(connection);
    }
    let activatable = dbus.list_activatable_names().await.ok()?;
    activatable
        .iter()
        .any(|candidate| candidate.as_str() == BUS_NAME)
        .then_some(connection)
}

async fn bus_connection(
    builder: zbus::Result<connection::Builder<'_>>,
    which: &str,
) -> Result<Connection, String> {
    let unreachable = |error: zbus::Error| {
        format!("cannot reach kamal-proxy: cannot connect to {which}: {error}")
    };
    builder
        .map_err(unreachable)?
        .build()
        .await
        .map_err(unreachable)
}

/// A peer-to-peer connection over the daemon's control socket.
async fn socket_connection(path: &Path) -> Result<Connection, String> {
    let stream = tokio::net::UnixStream::connect(path)
        .await
        .map_err(|error| socket_error(path, error))?;
    connection::Builder::unix_stream(stream)
        .p2p()
        .build()
        .await
        .map_err(|error| format!("cannot reach kamal-proxy: {}: {error}", path.display()))
}

fn socket_error(path: &Path, error: std::io::Error) -> String {
    let path = path.display();
    match error.kind() {
        ErrorKind::NotFound => format!(
            "cannot reach kamal-proxy: no control socket at {path} (is 'kamal-proxy run' running?)"
        ),
        ErrorKind::ConnectionRefused => format!(
            "cannot reach kamal-proxy: nothing is listening on {path} (is 'kamal-proxy run' running?)"
        ),
        ErrorKind::PermissionDenied => format!(
            "cannot reach kamal-proxy: permission denied on {path} (control needs root or the kamal-proxy group)"
        ),
        _ => format!("cannot reach kamal-proxy: {path}: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{ControlError, OptionDict};

    /// Just enough of the daemon to check what the client sends and how it reads answers.
    struct FakeDaemon;

    #[zbus::interface(name = "org.kamal.Proxy1")]
    impl FakeDaemon {
        async fn deploy(
            &self,
            service: String,
            targets: Vec<String>,
            options: OptionDict,
        ) -> Result<(), ControlError> {
            let options = DeployOptions::from_dict(options)?;
            match (service.as_str(), targets.as_slice()) {
                ("app-web", [target]) if target == "web-1:3000" && options.tls == Some(true) => {
                    Ok(())
                }
                _ => Err(ControlError::Failed(format!(
                    "{service} {targets:?} {options:?}"
                ))),
            }
        }

        async fn remove(&self, _service: String) -> Result<(), ControlError> {
            Err(ControlError::service_not_found())
        }

        async fn list(&self) -> Vec<ServiceSummary> {
            vec![ServiceSummary {
                name: "db".into(),
                hosts: vec![],
                path_prefixes: vec!["/".into()],
                targets: vec!["db:5432".into()],
                state: "paused".into(),
                tls: false,
            }]
        }
    }

    /// A client wired peer-to-peer to `FakeDaemon`, as `kamal-proxy run` serves the socket.
    async fn client_of_fake_daemon() -> (Client, Connection) {
        let (client_end, daemon_end) = tokio::net::UnixStream::pair().unwrap();
        let daemon = connection::Builder::unix_stream(daemon_end)
            .server(zbus::Guid::generate())
            .unwrap()
            .p2p()
            .serve_at(crate::control::OBJECT_PATH, FakeDaemon)
            .unwrap()
            .build();
        let client = connection::Builder::unix_stream(client_end).p2p().build();
        let (daemon, client) = tokio::try_join!(daemon, client).unwrap();
        let proxy = ControlProxy::new(&client).await.unwrap();
        (Client { proxy }, daemon)
    }

    #[tokio::test]
    async fn sends_typed_calls_and_reads_replies_over_the_socket() {
        let (client, _daemon) = client_of_fake_daemon().await;
        let service = ServiceName::parse("app-web").unwrap();
        let targets = [TargetAddress::parse("web-1:3000").unwrap()];
        let options = DeployOptions {
            tls: Some(true),
            ..Default::default()
        };
        client.deploy(&service, &targets, &options).await.unwrap();
        let listed = client.list().await.unwrap();
        assert_eq!(listed[0].name, "db");
        assert_eq!(listed[0].state, "paused");
    }

    #[tokio::test]
    async fn shows_only_the_daemons_text_when_a_call_fails() {
        let (client, _daemon) = client_of_fake_daemon().await;
        let service = ServiceName::parse("nope").unwrap();
        assert_eq!(
            client.remove(&service).await.unwrap_err(),
            "service not found"
        );
    }

    #[tokio::test]
    async fn says_no_socket_when_the_daemon_is_not_running() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kamal-proxy.sock");
        let error = socket_connection(&path).await.unwrap_err();
        assert_eq!(
            error,
            format!(
                "cannot reach kamal-proxy: no control socket at {} (is 'kamal-proxy run' running?)",
                path.display()
            )
        );
    }

    #[tokio::test]
    async fn says_nothing_listens_when_the_socket_file_is_stale() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kamal-proxy.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let error = socket_connection(&path).await.unwrap_err();
        assert!(error.contains("nothing is listening"), "{error}");
    }

    #[tokio::test]
    async fn gives_up_with_a_clear_message_when_no_reply_comes_in_time() {
        let never = std::future::pending::<zbus::Result<()>>();
        let error = answer(Duration::from_millis(10), never).await.unwrap_err();
        assert_eq!(
            error,
            "kamal-proxy did not answer within 10ms; the operation may still be running"
        );
    }
}
