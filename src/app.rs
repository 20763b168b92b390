//! Boot and ordered shutdown of the daemon: load the configuration, open the store, start the
//! actor tree, bind, serve; on SIGTERM or SIGINT stop accepting, finish what is in flight, drain
//! the channels, flush the store, exit 0.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use ractor::Actor;
use tokio::sync::mpsc;

use crate::actor::channel::{ChannelArgs, SendSettings, TokenSource};
use crate::actor::conversation::ConversationArgs;
use crate::actor::supervisor::{Supervisor, SupervisorArgs};
use crate::actor::{SUPERVISOR_ACTOR, SupervisorMsg};
use crate::config::{self, Config};
use crate::http::{self, HttpState};
use crate::model::Platform;
use crate::store::Store;

/// Exit code for a bad configuration or bad input.
pub const EXIT_BAD_CONFIG: u8 = 1;
/// Exit code for a runtime failure (store cannot be opened, port in use, restart budget spent).
pub const EXIT_RUNTIME: u8 = 2;

/// `parley serve`: runs until a signal (exit 0) or a fatal failure (exit 2).
pub fn serve(config_path: &Path) -> ExitCode {
    let loaded = match config::load(config_path) {
        Ok(loaded) => loaded,
        Err(e) => {
            for problem in &e.problems {
                eprintln!("parley: configuration error: {problem}");
            }
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    crate::telemetry::init(&loaded.config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("parley").build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("parley: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let code = runtime.block_on(run(Arc::new(loaded.config)));
    // Do not wait for stray tasks (a flush racing the exit is covered by the final flush above).
    runtime.shutdown_timeout(Duration::from_secs(1));
    ExitCode::from(code)
}

async fn run(config: Arc<Config>) -> u8 {
    warn_about_development_secrets(&config);
    crate::fdlimit::raise_and_report(config.server.max_connections);
    let store = match Store::open(&config.storage.path, config.storage.cache_bytes) {
        Ok(store) => store,
        Err(e) => {
            tracing::error!(message = "Cannot open the store.", error = %e);
            eprintln!("parley: storage.path: {e}");
            return EXIT_RUNTIME;
        }
    };
    let (fatal_tx, mut fatal_rx) = mpsc::unbounded_channel();
    let channels = config.enabled_platforms().into_iter().map(|platform| channel_args(&config, platform)).collect();
    let args = SupervisorArgs {
        conversation: ConversationArgs { store: store.clone() },
        channels,
        limits: config.supervisor.clone(),
        fatal: fatal_tx,
    };
    let (supervisor, supervisor_done) = match Actor::spawn(Some(SUPERVISOR_ACTOR.to_owned()), Supervisor, args).await {
        Ok(pair) => pair,
        Err(e) => {
            tracing::error!(message = "Cannot start the actors.", error = %e);
            return EXIT_RUNTIME;
        }
    };
    let listener = match http::bind(config.server.listen) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(message = "Cannot listen.", addr = %config.server.listen, error = %e);
            eprintln!("parley: server.listen: cannot listen on {}: {e}", config.server.listen);
            stop_actors(&supervisor, supervisor_done, &store).await;
            return EXIT_RUNTIME;
        }
    };
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let platforms: Vec<String> = config.enabled_platforms().iter().map(ToString::to_string).collect();
    tracing::info!(message = "Listening.", addr = %addr, platforms = %platforms.join(","), version = env!("CARGO_PKG_VERSION"));

    let state = Arc::new(HttpState::new(config.clone()));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(http::serve(listener, state, async {
        let _ = stop_rx.await;
    }));
    let code = tokio::select! {
        signal = shutdown_signal() => {
            tracing::info!(message = "Shutting down.", signal);
            0
        }
        reason = fatal_rx.recv() => {
            tracing::error!(message = "Shutting down after a fatal failure.", reason = reason.as_deref().unwrap_or("supervisor ended"));
            EXIT_RUNTIME
        }
    };
    let _ = stop_tx.send(());
    let _ = server.await;
    stop_actors(&supervisor, supervisor_done, &store).await;
    tracing::info!(message = "Stopped.", exit_code = code);
    code
}

/// Everything a platform's channel actor needs from the configuration.
pub fn channel_args(config: &Config, platform: Platform) -> ChannelArgs {
    let (api_base, token, rate, period, per_recipient, token_source) = match platform {
        Platform::Facebook => {
            let fb = &config.facebook;
            (
                fb.api_base.clone(),
                fb.page_access_token.clone(),
                fb.rate_per_second,
                Duration::from_secs(1),
                None,
                TokenSource::Meta {
                    app_id: fb.app_id.clone(),
                    app_secret: fb.app_secret.clone(),
                    user_access_token: fb.user_access_token.clone(),
                    page_id: Some(fb.page_id.clone()),
                },
            )
        }
        Platform::Whatsapp => {
            let wa = &config.whatsapp;
            (
                wa.api_base.clone(),
                wa.access_token.clone(),
                wa.rate_per_second,
                Duration::from_secs(1),
                Some((Duration::from_secs(wa.per_recipient_interval_secs), wa.per_recipient_burst)),
                TokenSource::Meta {
                    app_id: config.facebook.app_id.clone(),
                    app_secret: wa.app_secret.clone(),
                    user_access_token: crate::secret::Secret::default(),
                    page_id: None,
                },
            )
        }
        Platform::Viber => {
            let vb = &config.viber;
            (
                vb.api_base.clone(),
                vb.bot_token.clone(),
                vb.rate_per_minute,
                Duration::from_secs(60),
                None,
                TokenSource::Viber,
            )
        }
        Platform::Linkedin => {
            let li = &config.linkedin;
            (
                li.api_base.clone(),
                li.access_token.clone(),
                li.rate_per_minute,
                Duration::from_secs(60),
                None,
                TokenSource::Linkedin {
                    oauth_base: li.oauth_base.clone(),
                    client_id: li.client_id.clone(),
                    client_secret: li.client_secret.clone(),
                    refresh_token: li.refresh_token.clone(),
                },
            )
        }
    };
    ChannelArgs {
        platform,
        account_id: config.account_id(platform),
        send: SendSettings {
            api_base,
            token,
            sender_name: config.viber.bot_name.clone(),
            api_version: config.linkedin.api_version.clone(),
            rate,
            period,
            per_recipient,
            outbound: config.outbound.clone(),
            token_source,
        },
    }
}

/// Channels drain into the store, the store flushes, then the supervisor stops.
async fn stop_actors(supervisor: &ractor::ActorRef<SupervisorMsg>, done: tokio::task::JoinHandle<()>, store: &Store) {
    let _ = ractor::call_t!(supervisor, |reply| SupervisorMsg::ShutDown { reply }, 30_000);
    supervisor.stop(None);
    let _ = tokio::time::timeout(Duration::from_secs(5), done).await;
    if let Err(e) = store.flush().await {
        tracing::error!(message = "Final flush failed.", error = %e);
    }
}

/// Resolves on SIGTERM or SIGINT, with the signal's name.
pub async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return "SIGINT";
            }
        };
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = tokio::signal::ctrl_c() => "SIGINT",
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}

fn warn_about_development_secrets(config: &Config) {
    let platforms = config.platforms_on_development_secrets();
    if platforms.is_empty() {
        return;
    }
    let names: Vec<String> = platforms.iter().map(ToString::to_string).collect();
    let banner = format!(
        "DEVELOPMENT SECRETS IN USE for {}: anyone who reads the shipped config.toml can sign webhooks for these platforms. \
         Set real secrets (see README, Production) before exposing this server.",
        names.join(", ")
    );
    eprintln!("\n!!! parley: {banner}\n");
    tracing::warn!(message = "Development secrets in use.", platforms = %names.join(","));
}

/// `parley check-config`: prints the effective settings and exits 0, or the problems and exits 1.
pub fn check_config(config_path: &Path) -> ExitCode {
    match config::load(config_path) {
        Ok(loaded) => {
            // Written with `writeln!` so that a closed pipe (`| head`) ends quietly, not in a panic.
            let mut out = std::io::stdout().lock();
            let width = loaded.settings.iter().map(|s| s.key.len()).max().unwrap_or(0);
            for setting in &loaded.settings {
                let _ = writeln!(out, "{:width$} = {:40} # {}", setting.key, setting.value, setting.source);
            }
            let on_dev = loaded.config.platforms_on_development_secrets();
            if !on_dev.is_empty() {
                let names: Vec<String> = on_dev.iter().map(ToString::to_string).collect();
                let _ = writeln!(out, "\nwarning: development secrets in use for {}", names.join(", "));
            }
            let _ = writeln!(out, "\nconfiguration OK: {} would start", config_path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            for problem in &e.problems {
                eprintln!("parley: configuration error: {problem}");
            }
            ExitCode::from(EXIT_BAD_CONFIG)
        }
    }
}
