//! The service manager's notify socket: `READY=1`, `RELOADING=1`, `STOPPING=1`, `STATUS=…`,
//! `WATCHDOG=1` (sd_notify(3)). The vocabulary is `sd-notify`'s [`NotifyState`].
//!
//! The socket is read from `NOTIFY_SOCKET` once, at start, and every message goes to that address.
//! (`sd_notify::notify` reads the variable at every call; holding the address instead lets a test
//! point a notifier at its own socket without touching the process environment, and lets us
//! reach the abstract-namespace addresses, `@…`, that systemd may hand out.) Without
//! `NOTIFY_SOCKET` every call is a no-op: nothing is sent and nothing fails.

use std::ffi::OsString;
use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub use sd_notify::NotifyState;

/// Where notifications go.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// A socket file (systemd's default: `/run/systemd/notify`).
    Path(PathBuf),
    /// A name in Linux's abstract socket namespace (`NOTIFY_SOCKET=@name`).
    Abstract(Vec<u8>),
}

/// Sends state changes to the service manager, or nothing when there is none.
#[derive(Debug, Clone)]
pub struct Notifier {
    target: Option<Target>,
    /// Set while sending fails, so that a broken socket is logged once, not on every heartbeat.
    failing: Arc<AtomicBool>,
}

impl Notifier {
    /// The socket named by `NOTIFY_SOCKET`, if it is set (systemd sets it for `Type=notify`).
    pub fn from_env() -> Self {
        Notifier::from_variable(std::env::var_os("NOTIFY_SOCKET"))
    }

    /// A notifier for the value of `NOTIFY_SOCKET` (`None` or empty: no service manager).
    pub fn from_variable(value: Option<OsString>) -> Self {
        use std::os::unix::ffi::OsStrExt;
        let target = value.filter(|v| !v.is_empty()).map(|v| match v.as_bytes() {
            [b'@', name @ ..] => Target::Abstract(name.to_vec()),
            _ => Target::Path(PathBuf::from(v)),
        });
        Notifier { target, failing: Arc::new(AtomicBool::new(false)) }
    }

    /// A notifier that sends to the datagram socket at `path` (tests stand in for systemd so).
    pub fn to_socket(path: impl Into<PathBuf>) -> Self {
        Notifier { target: Some(Target::Path(path.into())), failing: Arc::new(AtomicBool::new(false)) }
    }

    /// A notifier that sends nothing.
    pub fn disabled() -> Self {
        Notifier { target: None, failing: Arc::new(AtomicBool::new(false)) }
    }

    /// True when there is a service manager to tell.
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends `states` as one datagram. A failure is logged (once until sending works again) and
    /// otherwise ignored: the daemon's work never depends on the service manager listening.
    pub fn notify(&self, states: &[NotifyState<'_>]) {
        let Some(target) = &self.target else { return };
        match send(target, &message(states)) {
            Ok(()) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(message = "Notifying the service manager works again.");
                }
            }
            Err(e) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(message = "Cannot notify the service manager.", error = %e);
                }
            }
        }
    }

    /// `READY=1` with a status line for `systemctl status`.
    pub fn ready(&self, status: &str) {
        self.notify(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// `RELOADING=1` with `MONOTONIC_USEC` (which systemd ≥ 253 wants with it), then a status line.
    pub fn reloading(&self, status: &str) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.notify(&[NotifyState::Reloading, now, NotifyState::Status(status)]),
            Err(_) => self.notify(&[NotifyState::Reloading, NotifyState::Status(status)]),
        }
    }

    /// `STOPPING=1` with a status line.
    pub fn stopping(&self, status: &str) {
        self.notify(&[NotifyState::Stopping, NotifyState::Status(status)]);
    }

    /// Only a status line.
    pub fn status(&self, status: &str) {
        self.notify(&[NotifyState::Status(status)]);
    }

    /// `WATCHDOG=1`: the daemon is alive.
    pub fn watchdog(&self) {
        self.notify(&[NotifyState::Watchdog]);
    }
}

/// The datagram: one `KEY=VALUE` per line (sd_notify(3)). A status line cannot hold a newline, so
/// any in it becomes a space.
fn message(states: &[NotifyState<'_>]) -> String {
    let mut out = String::new();
    for state in states {
        let line = state.to_string().replace('\n', " ");
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn send(target: &Target, message: &str) -> io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    // Never block the runtime on a service manager that does not read.
    socket.set_nonblocking(true)?;
    let sent = match target {
        Target::Path(path) => socket.send_to(message.as_bytes(), path)?,
        Target::Abstract(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(message.as_bytes(), &addr)?
        }
    };
    if sent == message.len() { Ok(()) } else { Err(io::Error::new(io::ErrorKind::WriteZero, "incomplete datagram")) }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn receive(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 4096];
        let n = socket.recv(&mut buf).expect("a datagram");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn without_notify_socket_nothing_is_sent_and_nothing_fails() {
        let notifier = Notifier::from_variable(None);
        assert!(!notifier.is_enabled());
        notifier.ready("listening");
        notifier.watchdog();
        assert!(!Notifier::from_variable(Some(OsString::new())).is_enabled());
    }

    #[test]
    fn ready_and_status_go_in_one_datagram_one_line_each() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let notifier = Notifier::from_variable(Some(path.clone().into_os_string()));
        notifier.ready("listening on 127.0.0.1:8000,\n4 channels");
        assert_eq!(receive(&socket), "READY=1\nSTATUS=listening on 127.0.0.1:8000, 4 channels\n");
        notifier.reloading("reloading");
        let reloading = receive(&socket);
        let lines: Vec<&str> = reloading.lines().collect();
        assert_eq!(lines[0], "RELOADING=1");
        assert!(lines[1].strip_prefix("MONOTONIC_USEC=").is_some_and(|n| n.parse::<u64>().is_ok()), "{reloading}");
        assert_eq!(lines[2], "STATUS=reloading");
        notifier.watchdog();
        assert_eq!(receive(&socket), "WATCHDOG=1\n");
    }

    #[test]
    fn an_abstract_socket_address_is_reached() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("parley-test-{}-{}", std::process::id(), rand::random::<u64>());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&addr).unwrap();
        socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Notifier::from_variable(Some(format!("@{name}").into())).stopping("shutting down");
        assert_eq!(receive(&socket), "STOPPING=1\nSTATUS=shutting down\n");
    }

    #[test]
    fn a_socket_that_is_gone_is_not_an_error_for_the_caller() {
        let dir = tempfile::tempdir().unwrap();
        let notifier = Notifier::to_socket(dir.path().join("absent.sock"));
        notifier.watchdog();
        notifier.watchdog();
        assert!(notifier.failing.load(Ordering::Relaxed));
    }
}
