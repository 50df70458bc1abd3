//! The `switchboard` binary: `serve` runs the engine; more subcommands arrive with their issues.

mod admin;

use clap::{Parser, Subcommand};

use std::path::PathBuf;
use std::process::ExitCode;
use switchboard_engine::config::Config;

/// Switchboard: telephony, media and contact-centre engine.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the engine (SIP, HTTP) until SIGINT/SIGTERM.
    Serve {
        /// TOML configuration file; embedded defaults when absent.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Database URL (`sqlite://…` or `postgres://…`); overrides `database.url`.
        #[arg(long)]
        database_url: Option<String>,
    },
    /// Validates a configuration file and exits.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
    /// Manages SIP users (digest credentials) in the database.
    User(admin::UserArgs),
    /// Shows call detail records from the database.
    Cdr(admin::CdrArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match Cli::parse().command {
        Command::Serve {
            config,
            database_url,
        } => serve(config, database_url),
        Command::User(args) => admin::user(args),
        Command::Cdr(args) => admin::cdr(args),
        Command::CheckConfig { file } => match Config::load(Some(&file)) {
            Ok(_) => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("config error: {e}");
                ExitCode::from(2)
            }
        },
    }
}

fn serve(config_path: Option<PathBuf>, database_url: Option<String>) -> ExitCode {
    let mut config = match Config::load(config_path.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("config error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(url) = database_url {
        config.database.url = Some(url);
        if let Err(e) = config.validate("--database-url") {
            eprintln!("config error: {e}");
            return ExitCode::from(2);
        }
    }
    if let Err(e) = std::fs::create_dir_all(&config.data.dir) {
        eprintln!(
            "cannot create data directory {}: {e}",
            config.data.dir.display()
        );
        return ExitCode::from(1);
    }
    switchboard_actors::serve::run(config)
}
