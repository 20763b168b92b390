//! Log output: plain text (no colour unless stderr is a terminal, no timestamps under systemd,
//! whose journal stamps lines itself) or JSON lines.

use std::io::IsTerminal;

use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, fmt};

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber. `RUST_LOG` overrides `log.level`.
pub fn init(log: &LogConfig) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.level));
    let under_systemd = std::env::var_os("JOURNAL_STREAM").is_some();
    let layer = match log.format {
        LogFormat::Json => fmt::layer().json().flatten_event(true).with_writer(std::io::stderr).boxed(),
        LogFormat::Text if under_systemd => {
            fmt::layer().with_ansi(false).without_time().with_writer(std::io::stderr).boxed()
        }
        LogFormat::Text => fmt::layer().with_ansi(std::io::stderr().is_terminal()).with_writer(std::io::stderr).boxed(),
    };
    // A second init (tests that start twice) keeps the first subscriber.
    let _ = tracing_subscriber::registry().with(filter).with(layer).try_init();
}
