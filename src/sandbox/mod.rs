//! `parley sandbox`: stand-ins for the four platforms' send APIs on loopback, answering like the
//! real ones (PLATFORMS.md x.6–x.8) and posting signed delivery and read receipts back to the
//! daemon, so the whole two-way loop runs on one machine. A control API under `/_sandbox/` injects
//! faults and shows every request received.
//!
//! Layout: [`core`] decides (routing, tokens, validation, limits, faults) without I/O; [`graph`],
//! [`viber`] and [`linkedin`] hold each platform's rules; [`server`] is the HTTP shell;
//! [`receipts`] posts the webhooks that [`webhooks`] writes (shared with `parley simulate`).

pub mod core;
pub mod faults;
pub mod graph;
pub mod ids;
pub mod journal;
pub mod limiter;
pub mod linkedin;
pub mod profile;
pub mod receipts;
pub mod receiver;
pub mod reply;
pub mod server;
pub mod tokens;
pub mod viber;
pub mod webhooks;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;

use self::core::{Behaviour, Now, Sandbox};
use self::receipts::{Delays, ReceiptSender, ReceiptStats};
use crate::app::{EXIT_BAD_CONFIG, EXIT_RUNTIME};
use crate::config::{self, Config};
use crate::model::Timestamp;

/// The sandbox's default address (the daemon's default is 127.0.0.1:8000).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8900";

/// The command line of `parley sandbox`.
#[derive(Clone, Debug)]
pub struct SandboxArgs {
    pub listen: SocketAddr,
    pub config: PathBuf,
    /// The daemon's base URL; default `http://{server.listen}`.
    pub parley_url: Option<String>,
    pub rate_limits: bool,
    pub receipts: bool,
    pub delivery_delay_ms: u64,
    pub read_delay_ms: u64,
}

/// Runs the sandbox until SIGINT or SIGTERM (exit 0); 1 for a bad address or config, 2 when the
/// address cannot be bound.
pub fn run(args: SandboxArgs) -> ExitCode {
    if !args.listen.ip().is_loopback() {
        eprintln!(
            "parley sandbox: --listen: {} is not a loopback address; the sandbox accepts the configured tokens and must stay on this machine (use 127.0.0.1)",
            args.listen
        );
        return ExitCode::from(EXIT_BAD_CONFIG);
    }
    let loaded = match config::load(&args.config) {
        Ok(loaded) => loaded,
        Err(e) => {
            for problem in &e.problems {
                eprintln!("parley sandbox: configuration error: {problem}");
            }
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let config = Arc::new(loaded.config);
    let parley_url = match daemon_url(&config, args.parley_url.as_deref()) {
        Ok(url) => url,
        Err(problem) => {
            eprintln!("parley sandbox: --parley-url: {problem}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    crate::telemetry::init(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("parley-sandbox").build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("parley sandbox: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let code = runtime.block_on(serve(args, config, parley_url));
    runtime.shutdown_timeout(Duration::from_secs(1));
    ExitCode::from(code)
}

async fn serve(args: SandboxArgs, config: Arc<Config>, parley_url: String) -> u8 {
    let listener = match TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(message = "Cannot listen.", addr = %args.listen, error = %e);
            eprintln!("parley sandbox: --listen: cannot listen on {}: {e}", args.listen);
            return EXIT_RUNTIME;
        }
    };
    let addr = listener.local_addr().unwrap_or(args.listen);
    let stats = Arc::new(ReceiptStats::default());
    let started = Instant::now();
    let now = Now { epoch_ms: Timestamp::now().as_millis(), mono_ms: 0 };
    let behaviour = Behaviour { rate_limits: args.rate_limits };
    let sandbox = Sandbox::new(config.clone(), format!("http://{addr}"), behaviour, stats.clone(), now);
    let delays = Delays {
        delivery: Duration::from_millis(args.delivery_delay_ms),
        read: Duration::from_millis(args.read_delay_ms.max(args.delivery_delay_ms)),
    };
    let receipts =
        args.receipts.then(|| Arc::new(ReceiptSender::new(config.clone(), parley_url.clone(), delays, stats)));
    tracing::info!(
        message = "Sandbox listening.",
        addr = %addr,
        parley_url = %parley_url,
        rate_limits = args.rate_limits,
        receipts = args.receipts,
        version = env!("CARGO_PKG_VERSION"),
    );
    let receivers = Mutex::new(receiver::Receivers::new(&config));
    let shared = Arc::new(server::Shared { sandbox: Mutex::new(sandbox), receivers, receipts, started });
    server::serve(listener, shared, async {
        let signal = crate::app::shutdown_signal().await;
        tracing::info!(message = "Sandbox shutting down.", signal);
    })
    .await;
    0
}

/// The daemon's base URL: `--parley-url`, else `http://{server.listen}` (an unspecified address
/// such as 0.0.0.0 becomes 127.0.0.1, which reaches it).
pub fn daemon_url(config: &Config, given: Option<&str>) -> Result<String, String> {
    match given {
        Some(url) => {
            let parsed = reqwest::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
            if !matches!(parsed.scheme(), "http" | "https") || !parsed.has_host() {
                return Err(format!("`{url}` is not an http(s) URL"));
            }
            Ok(url.trim_end_matches('/').to_owned())
        }
        None => {
            let mut addr = config.server.listen;
            if addr.ip().is_unspecified() {
                addr.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
            }
            Ok(format!("http://{addr}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use figment::Figment;
    use figment::providers::{Format, Toml};

    use super::*;

    #[test]
    fn the_daemon_url_follows_server_listen_unless_given() {
        let mut config: Config = Figment::from(Toml::string(config::DEFAULTS)).extract().unwrap();
        assert_eq!(daemon_url(&config, None).unwrap(), "http://127.0.0.1:8000");
        config.server.listen = "0.0.0.0:9000".parse().unwrap();
        assert_eq!(daemon_url(&config, None).unwrap(), "http://127.0.0.1:9000");
        assert_eq!(daemon_url(&config, Some("http://127.0.0.1:7000/")).unwrap(), "http://127.0.0.1:7000");
        assert!(daemon_url(&config, Some("ftp://x")).is_err());
        assert!(daemon_url(&config, Some("not a url")).is_err());
    }
}
