//! `SIGHUP` (`systemctl reload parley`): re-read the configuration file, with the same layering
//! as at start (defaults, the file, the environment the process started with), and apply what can
//! change while running. The decision is [`config::plan_reload`]; this is the shell that applies
//! it: the HTTP front end's config is swapped (new secrets count from the next request), the log
//! filter is swapped, and the supervisor hands each channel its new send settings. A new file that
//! does not validate changes nothing: the daemon keeps running on the old configuration and logs
//! each problem. Only key names are logged, never values.

use std::path::PathBuf;
use std::sync::Arc;

use ractor::ActorRef;

use crate::actor::SupervisorMsg;
use crate::config::{self, LoadedConfig, ReloadPlan};
use crate::http::HttpState;
use crate::systemd::Notifier;
use crate::telemetry::LogControl;

/// Keys whose change does not concern the channel actors.
const NOT_FOR_CHANNELS: &[&str] = &["api.token", "log.level"];

/// Everything a reload touches.
pub struct Reloader {
    config_path: PathBuf,
    running: LoadedConfig,
    http: Arc<HttpState>,
    log: LogControl,
    notifier: Notifier,
    supervisor: ActorRef<SupervisorMsg>,
}

/// How a reload ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The new file was taken: these keys changed now, those wait for a restart.
    Applied { applied: Vec<String>, needs_restart: Vec<String> },
    /// The new file was not taken; one line per problem.
    Refused(Vec<String>),
}

impl Reloader {
    /// A reloader for a daemon started from `running`, read from `config_path`.
    pub fn new(
        config_path: PathBuf,
        running: LoadedConfig,
        http: Arc<HttpState>,
        log: LogControl,
        notifier: Notifier,
        supervisor: ActorRef<SupervisorMsg>,
    ) -> Self {
        Reloader { config_path, running, http, log, notifier, supervisor }
    }

    /// Re-reads the file and applies it, telling systemd `RELOADING=1` before and `READY=1` after.
    pub async fn reload(&mut self) -> ReloadOutcome {
        self.notifier.reloading("reloading the configuration");
        tracing::info!(message = "Reloading the configuration.");
        let planned = config::load(&self.config_path).and_then(|new| config::plan_reload(&self.running, new));
        let outcome = match planned {
            Ok(plan) => self.apply(plan),
            Err(e) => {
                tracing::error!(
                    message = "Configuration reload refused; still running on the previous configuration.",
                    problems = e.problems.len()
                );
                for problem in &e.problems {
                    tracing::error!(message = "Configuration problem.", problem = %problem);
                }
                ReloadOutcome::Refused(e.problems)
            }
        };
        self.notifier.ready(&status_line(&outcome));
        outcome
    }

    fn apply(&mut self, plan: ReloadPlan) -> ReloadOutcome {
        let ReloadPlan { config, applied, needs_restart, running } = plan;
        if applied.iter().any(|k| k == "log.level")
            && let Err(e) = self.log.set_level(&config.log.level)
        {
            tracing::warn!(message = "The new log.level is not in effect.", reason = %e);
        }
        let config = Arc::new(config);
        self.http.replace_config(config.clone());
        if applied.iter().any(|k| !NOT_FOR_CHANNELS.contains(&k.as_str())) {
            let channels = config
                .enabled_platforms()
                .into_iter()
                .map(|p| crate::actor::channel::ChannelArgs::from_config(&config, p))
                .collect();
            if let Err(e) = self.supervisor.cast(SupervisorMsg::Reconfigure { channels }) {
                tracing::error!(message = "The channels could not be given their new settings.", error = %e);
            }
        }
        self.running = running;
        if applied.is_empty() && needs_restart.is_empty() {
            tracing::info!(message = "Configuration reloaded; nothing changed.");
        } else if !applied.is_empty() {
            tracing::info!(message = "Configuration reloaded.", applied = %applied.join(","));
        }
        if !needs_restart.is_empty() {
            tracing::warn!(
                message = "Changed settings take effect only after a restart; running on their old values.",
                keys = %needs_restart.join(",")
            );
        }
        ReloadOutcome::Applied { applied, needs_restart }
    }
}

/// The `STATUS=` line after a reload, for `systemctl status`.
fn status_line(outcome: &ReloadOutcome) -> String {
    match outcome {
        ReloadOutcome::Applied { applied, needs_restart } if needs_restart.is_empty() => {
            format!("running; configuration reloaded ({} changed settings applied)", applied.len())
        }
        ReloadOutcome::Applied { applied, needs_restart } => format!(
            "running; configuration reloaded ({} changed settings applied; restart to apply {})",
            applied.len(),
            needs_restart.join(", ")
        ),
        ReloadOutcome::Refused(problems) => format!(
            "running on the previous configuration: the reload was refused ({} problems; see the log)",
            problems.len()
        ),
    }
}
