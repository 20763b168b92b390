//! Boot and ordered shutdown of the daemon: load the configuration, open the store, start the
//! actor tree, bind, serve, tell systemd `READY=1` (and feed its watchdog while the daemon
//! answers); on SIGHUP reload the configuration; on SIGTERM or SIGINT tell systemd `STOPPING=1`,
//! stop accepting, finish what is in flight, drain the channels, flush the store, exit 0.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use ractor::Actor;
use tokio::sync::mpsc;

use crate::actor::channel::ChannelArgs;
use crate::actor::conversation::{ConversationArgs, FEED_HUB_EVENTS, StoreLocation};
use crate::actor::receiver::ReceiverArgs;
use crate::actor::supervisor::{Supervisor, SupervisorArgs};
use crate::actor::{SUPERVISOR_ACTOR, SupervisorMsg};
use crate::config::{self, Config, LoadedConfig};
use crate::feed::FeedHub;
use crate::http::{self, HttpState};
use crate::model::Platform;
use crate::reload::Reloader;
use crate::store::Store;
use crate::systemd::{Heartbeat, HeartbeatTiming, Notifier, watchdog};
use crate::telemetry::LogControl;

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
    let log = crate::telemetry::init(&loaded.config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("parley").build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("parley: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let code = runtime.block_on(run(config_path, loaded, log));
    // Do not wait for stray tasks (a flush racing the exit is covered by the conversation actor's
    // final flush).
    runtime.shutdown_timeout(Duration::from_secs(1));
    ExitCode::from(code)
}

async fn run(config_path: &Path, loaded: LoadedConfig, log: LogControl) -> u8 {
    let notifier = Notifier::from_env();
    // Registered first: a signal that arrives before its handler ends the process, and once
    // READY=1 is out systemd may send one at any moment.
    let mut hangups = Hangups::register();
    let mut terminations = Terminations::register();
    let config = Arc::new(loaded.config.clone());
    warn_about_development_secrets(&config);
    crate::fdlimit::raise_and_report(config.server.max_connections);
    // Off the async workers: opening reads sled's log, and a migration reads the whole store once.
    let location = StoreLocation { path: config.storage.path.clone(), cache_bytes: config.storage.cache_bytes };
    let opening = location.clone();
    let opened = tokio::task::spawn_blocking(move || Store::open(&opening.path, opening.cache_bytes)).await;
    let store = match opened.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())) {
        Ok(store) => store,
        Err(e) => {
            notifier.status(&format!("cannot open the store: {e}"));
            startup_failure("storage.path", &e);
            return EXIT_RUNTIME;
        }
    };
    let (fatal_tx, mut fatal_rx) = mpsc::unbounded_channel();
    let channels =
        config.enabled_platforms().into_iter().map(|platform| ChannelArgs::from_config(&config, platform)).collect();
    let feed = FeedHub::new(FEED_HUB_EVENTS);
    let mut conversation = ConversationArgs::new(store, location);
    conversation.feed = feed.clone();
    conversation.retention = Duration::from_secs(u64::from(config.events.retention_days) * 86_400);
    let receivers = receiver_args(&config, &feed);
    let args = SupervisorArgs {
        // The conversation actor owns the store from here on; nothing else keeps a handle.
        conversation,
        channels,
        receivers,
        limits: config.supervisor.clone(),
        fatal: fatal_tx,
    };
    let (supervisor, supervisor_done) = match Actor::spawn(Some(SUPERVISOR_ACTOR.to_owned()), Supervisor, args).await {
        Ok(pair) => pair,
        Err(e) => {
            startup_failure("supervisor", &format!("cannot start the actors: {e}"));
            return EXIT_RUNTIME;
        }
    };
    let listener = match http::bind(config.server.listen) {
        Ok(listener) => listener,
        Err(e) => {
            notifier.status(&format!("cannot listen on {}: {e}", config.server.listen));
            startup_failure("server.listen", &format!("cannot listen on {}: {e}", config.server.listen));
            stop_actors(&supervisor, supervisor_done).await;
            return EXIT_RUNTIME;
        }
    };
    let bound = listener.local_addr().unwrap_or(config.server.listen);
    let platforms: Vec<String> = config.enabled_platforms().iter().map(ToString::to_string).collect();
    tracing::info!(message = "Listening.", addr = %bound, platforms = %platforms.join(","), version = env!("CARGO_PKG_VERSION"));

    let state = Arc::new(HttpState::new(config.clone(), feed));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(http::serve(listener, state.clone(), async {
        let _ = stop_rx.await;
    }));
    // The store is open, the actors answer and the listener is bound (connections queue in its
    // backlog until the accept loop takes them): ready.
    if let Err(why) = actors_answer(&config.enabled_platforms(), ACTOR_START_DEADLINE).await {
        tracing::warn!(message = "An actor did not answer at start; the watchdog will tell if it stays so.", reason = %why);
    }
    notifier.ready(&ready_status(bound, &platforms));
    let heartbeat = start_heartbeat(bound, &notifier);
    let mut reloader = Reloader::new(config_path.to_owned(), loaded, state, log, notifier.clone(), supervisor.clone());
    let code = loop {
        tokio::select! {
            signal = terminations.next() => {
                tracing::info!(message = "Shutting down.", signal);
                notifier.stopping("shutting down");
                break 0;
            }
            reason = fatal_rx.recv() => {
                let reason = reason.unwrap_or_else(|| "supervisor ended".to_owned());
                tracing::error!(message = "Shutting down after a fatal failure.", reason = %reason);
                notifier.stopping(&format!("shutting down after a fatal failure: {reason}"));
                break EXIT_RUNTIME;
            }
            () = hangups.next() => {
                reloader.reload().await;
            }
        }
    };
    if let Some(heartbeat) = heartbeat {
        heartbeat.abort();
    }
    let _ = stop_tx.send(());
    let _ = server.await;
    stop_actors(&supervisor, supervisor_done).await;
    tracing::info!(message = "Stopped.", exit_code = code);
    code
}

/// Reports why the daemon cannot start: once, as one log line (stderr, or the journal) that
/// names the key at fault in plain words.
fn startup_failure(key: &str, reason: &dyn std::fmt::Display) {
    tracing::error!("Cannot start: {key}: {reason}");
}

/// How long start-up waits for every actor to answer before it says ready anyway.
const ACTOR_START_DEADLINE: Duration = Duration::from_secs(30);

/// Waits until the conversation actor and each channel actor answer a call, that is, have
/// finished starting (a channel loads its outbox and token after it is spawned).
async fn actors_answer(platforms: &[Platform], within: Duration) -> Result<(), String> {
    use crate::actor::{ChannelMsg, ConversationMsg, channel_actor, conversation_actor};
    use ractor::rpc::CallResult;
    let end = tokio::time::Instant::now() + within;
    let left = || end.saturating_duration_since(tokio::time::Instant::now());
    let conversation = conversation_actor().ok_or("the conversation actor is not running")?;
    match conversation.call(ConversationMsg::Ping, Some(left())).await {
        Ok(CallResult::Success(())) => {}
        _ => return Err("the conversation actor did not answer".into()),
    }
    for platform in platforms {
        let channel = channel_actor(*platform).ok_or_else(|| format!("channel.{platform} is not running"))?;
        match channel.call(ChannelMsg::GetStatus, Some(left())).await {
            Ok(CallResult::Success(_)) => {}
            _ => return Err(format!("channel.{platform} did not answer")),
        }
    }
    Ok(())
}

/// The `STATUS=` line once ready.
fn ready_status(bound: SocketAddr, platforms: &[String]) -> String {
    match platforms.len() {
        0 => format!("listening on {bound}, no channels enabled"),
        1 => format!("listening on {bound}, 1 channel ({})", platforms[0]),
        n => format!("listening on {bound}, {n} channels ({})", platforms.join(", ")),
    }
}

/// Starts the watchdog heartbeat when systemd asked for one (`WatchdogSec=` sets `WATCHDOG_USEC`).
fn start_heartbeat(bound: SocketAddr, notifier: &Notifier) -> Option<tokio::task::JoinHandle<()>> {
    let timing = HeartbeatTiming::from_env()?;
    let front_end = watchdog::probe_address(bound);
    tracing::info!(
        message = "Watchdog on: heartbeat to the HTTP front end and the conversation actor.",
        every_ms = timing.interval.as_millis() as u64,
        deadline_ms = timing.deadline.as_millis() as u64,
        probe = %front_end
    );
    let heartbeat = Heartbeat { front_end, timing, notifier: notifier.clone() };
    Some(tokio::spawn(heartbeat.run()))
}

/// SIGTERM and SIGINT, registered at once (unlike [`shutdown_signal`], which registers when
/// first polled).
struct Terminations {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
}

impl Terminations {
    fn register() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        let register = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(signal) => Some(signal),
            Err(e) => {
                tracing::warn!(message = "Cannot receive a shutdown signal.", signal = name, error = %e);
                None
            }
        };
        Terminations {
            term: register(SignalKind::terminate(), "SIGTERM"),
            int: register(SignalKind::interrupt(), "SIGINT"),
        }
    }

    /// Resolves with the name of the next shutdown signal.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            () = next_delivery(&mut self.term) => "SIGTERM",
            () = next_delivery(&mut self.int) => "SIGINT",
        }
    }
}

/// SIGHUP deliveries, or nothing where they cannot be received.
struct Hangups(Option<tokio::signal::unix::Signal>);

impl Hangups {
    fn register() -> Self {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(signal) => Hangups(Some(signal)),
            Err(e) => {
                tracing::warn!(message = "Cannot receive SIGHUP; configuration reload is off.", error = %e);
                Hangups(None)
            }
        }
    }

    /// Resolves at the next SIGHUP (never, when they cannot be received).
    async fn next(&mut self) {
        next_delivery(&mut self.0).await;
    }
}

/// Resolves at the signal's next delivery; never, for a signal that cannot be received.
async fn next_delivery(signal: &mut Option<tokio::signal::unix::Signal>) {
    if let Some(signal) = signal
        && signal.recv().await.is_some()
    {
        return;
    }
    std::future::pending::<()>().await
}

/// One delivery worker's arguments per `[[webhooks]]` receiver (validated by `config::load`).
pub fn receiver_args(config: &Config, feed: &Arc<FeedHub>) -> Vec<ReceiverArgs> {
    config
        .webhooks
        .iter()
        .filter_map(crate::webhooks::receiver::Receiver::from_config)
        .map(|receiver| ReceiverArgs { receiver, feed: feed.clone(), stats: Arc::default() })
        .collect()
}

/// Channels drain into the store, the store flushes (the conversation actor's `post_stop`; sled
/// flushes once more when its last handle is dropped), then the supervisor stops.
async fn stop_actors(supervisor: &ractor::ActorRef<SupervisorMsg>, done: tokio::task::JoinHandle<()>) {
    let _ = ractor::call_t!(supervisor, |reply| SupervisorMsg::ShutDown { reply }, 30_000);
    supervisor.stop(None);
    let _ = tokio::time::timeout(Duration::from_secs(5), done).await;
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
