//! The `parley` command: parse arguments, run a subcommand, turn its result into an exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
}

fn main() -> ExitCode {
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
    }
}
