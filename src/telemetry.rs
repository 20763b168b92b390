//! Log output: plain text (no colour unless stderr is a terminal, no timestamps under systemd,
//! whose journal stamps lines itself) or JSON lines. The level filter can be swapped while the
//! daemon runs (a reload with a new `log.level`).

use std::io::IsTerminal;

use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, Registry, fmt, reload};

use crate::config::{LogConfig, LogFormat};

/// Changes the log filter of the running process.
pub struct LogControl {
    filter: reload::Handle<EnvFilter, Registry>,
    /// `RUST_LOG` was set at start: it wins over `log.level`, now and after a reload.
    set_by_rust_log: bool,
}

/// Why a new `log.level` did not take effect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LevelNotApplied {
    #[error("RUST_LOG is set and overrides log.level")]
    OverriddenByRustLog,
    #[error("`{0}` is not a valid filter")]
    Invalid(String),
    #[error("the log filter could not be swapped: {0}")]
    Reload(String),
}

impl LogControl {
    /// Filters from now on with `level` (a `log.level` value), unless `RUST_LOG` rules.
    pub fn set_level(&self, level: &str) -> Result<(), LevelNotApplied> {
        if self.set_by_rust_log {
            return Err(LevelNotApplied::OverriddenByRustLog);
        }
        let filter = EnvFilter::try_new(level).map_err(|_| LevelNotApplied::Invalid(level.to_owned()))?;
        self.filter.reload(filter).map_err(|e| LevelNotApplied::Reload(e.to_string()))
    }
}

/// Installs the global subscriber. `RUST_LOG` overrides `log.level`.
pub fn init(log: &LogConfig) -> LogControl {
    let from_rust_log = EnvFilter::try_from_default_env().ok();
    let set_by_rust_log = from_rust_log.is_some();
    let filter = from_rust_log.unwrap_or_else(|| EnvFilter::new(&log.level));
    let (filter, handle) = reload::Layer::new(filter);
    let under_systemd = std::env::var_os("JOURNAL_STREAM").is_some();
    let layer = match log.format {
        LogFormat::Json => fmt::layer().json().flatten_event(true).with_writer(std::io::stderr).boxed(),
        LogFormat::Text if under_systemd => {
            fmt::layer().with_ansi(false).without_time().with_writer(std::io::stderr).boxed()
        }
        LogFormat::Text => fmt::layer().with_ansi(std::io::stderr().is_terminal()).with_writer(std::io::stderr).boxed(),
    };
    // A second init (tests that start twice) keeps the first subscriber; its handle then changes
    // nothing, which is all a test needs.
    let _ = tracing_subscriber::registry().with(filter).with(layer).try_init();
    LogControl { filter: handle, set_by_rust_log }
}
