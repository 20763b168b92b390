//! Living under systemd: the notify protocol (`Type=notify`: ready, reloading, stopping, status)
//! and the watchdog heartbeat. Both are no-ops when systemd did not ask for them.

pub mod notify;
pub mod watchdog;

pub use notify::Notifier;
pub use watchdog::{Heartbeat, HeartbeatTiming};
