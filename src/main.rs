//! The `parley` command: parse arguments, run a subcommand, turn its result into an exit code.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc instead of the system allocator: sled copies and frees many small buffers per write,
/// and glibc's malloc was a quarter of the daemon's CPU time under webhook load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One inbox for Messenger, WhatsApp, Viber and LinkedIn.
#[derive(Parser)]
#[command(name = "parley", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon in the foreground (systemd runs exactly this).
    Serve {
        /// The configuration file.
        #[arg(long, default_value = "config.toml")]
        config: PathBuf,
    },
    /// Load and validate the configuration, print the effective settings (secrets redacted) and
    /// where each came from; exit 0 if the daemon would start, 1 otherwise.
    CheckConfig {
        /// The configuration file.
        #[arg(long, default_value = "config.toml")]
        config: PathBuf,
    },
    /// Send one correctly signed, realistic webhook of PLATFORM to a running daemon, using the
    /// configured secrets; print the daemon's status and body. Exit 0 on 2xx, 1 for bad input or
    /// configuration, 2 when the daemon is unreachable or refuses it.
    Simulate {
        /// facebook, whatsapp, viber or linkedin.
        platform: parley::model::Platform,
        /// The message text (also the postback title, or an image caption).
        #[arg(long)]
        text: Option<String>,
        /// The sender: a PSID, wa_id, Viber user id or LinkedIn person URN (a realistic default per platform).
        #[arg(long)]
        from: Option<String>,
        /// Where to POST; default http://{server.listen}/webhooks/{PLATFORM}.
        #[arg(long)]
        url: Option<String>,
        /// Which event to send; default a text message (a comment on LinkedIn).
        #[arg(long, value_enum)]
        event: Option<parley::simulate::Event>,
        /// The platform id of our message a receipt refers to (required for whatsapp and viber
        /// delivery/read/status; used in Messenger's delivery `mids` when given).
        #[arg(long)]
        message_id: Option<String>,
        /// The configuration file (its secrets sign the webhook).
        #[arg(long, default_value = "config.toml")]
        config: PathBuf,
    },
    /// Run stand-ins for the four platforms' send APIs on loopback (Graph for Messenger and
    /// WhatsApp, Viber, LinkedIn), answering like the real ones and posting signed delivery and
    /// read receipts back to the daemon. Control API under /_sandbox/ (faults, requests, reset).
    Sandbox {
        /// Loopback address to listen on (port 0 picks a free one).
        #[arg(long, default_value = parley::sandbox::DEFAULT_LISTEN)]
        listen: SocketAddr,
        /// The daemon's configuration file: tokens to accept, ids, signing secrets, rate limits.
        #[arg(long, default_value = "config.toml")]
        config: PathBuf,
        /// The daemon's base URL for receipts; default http://{server.listen}.
        #[arg(long)]
        parley_url: Option<String>,
        /// Do not enforce the configured rate limits (for throughput benchmarks).
        #[arg(long)]
        no_rate_limits: bool,
        /// Do not post delivery and read receipts.
        #[arg(long)]
        no_receipts: bool,
        /// Milliseconds after a send until its delivery receipt.
        #[arg(long, default_value_t = 200)]
        delivery_delay_ms: u64,
        /// Milliseconds after a send until its read receipt.
        #[arg(long, default_value_t = 600)]
        read_delay_ms: u64,
    },
}

fn main() -> ExitCode {
    parley::memory::disable_transparent_huge_pages();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { parley::app::EXIT_BAD_CONFIG } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli.command {
        Command::Serve { config } => parley::app::serve(&config),
        Command::CheckConfig { config } => parley::app::check_config(&config),
        Command::Simulate { platform, text, from, url, event, message_id, config } => {
            parley::simulate::run(parley::simulate::SimulateArgs {
                platform,
                text,
                from,
                url,
                event,
                message_id,
                config,
            })
        }
        Command::Sandbox {
            listen,
            config,
            parley_url,
            no_rate_limits,
            no_receipts,
            delivery_delay_ms,
            read_delay_ms,
        } => parley::sandbox::run(parley::sandbox::SandboxArgs {
            listen,
            config,
            parley_url,
            rate_limits: !no_rate_limits,
            receipts: !no_receipts,
            delivery_delay_ms,
            read_delay_ms,
        }),
    }
}
