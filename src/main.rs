//! The `switchboard` binary: `serve` runs the engine; more subcommands arrive with their issues.

/// jemalloc instead of glibc malloc: after a burst of calls glibc keeps the heap fragmented
/// across its per-thread arenas (RSS 12 → 47 → 62 MB over two bursts of 20 000 calls), jemalloc
/// gives the pages back (13 → 22 → 23 MB). Measured in README "Memory after bursts".
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's start-up options: a background thread purges unused pages, dirty and muzzy
/// pages go back to the kernel after 2 s. `_RJEM_MALLOC_CONF` in the environment overrides.
#[export_name = "_rjem_malloc_conf"]
pub static JEMALLOC_CONF: &[u8] =
    b"background_thread:true,dirty_decay_ms:2000,muzzy_decay_ms:2000\0";

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
    /// Floods a SIP target with calls (uac) or answers them (uas): the load generator.
    Load(Box<switchboard_load::cli::LoadArgs>),
    /// Dialplan tools.
    Dialplan {
        #[command(subcommand)]
        command: DialplanCommand,
    },
}

#[derive(Subcommand)]
enum DialplanCommand {
    /// Validates a dialplan file; prints every problem as `file:line:col: message`.
    Check {
        /// The plan to check.
        file: PathBuf,
    },
    /// Asks the running server to reload its dialplan (a bad file is refused, the old plan
    /// stays in force); prints the outcome.
    Reload {
        /// The server's configuration (its `http.listen` is used); embedded defaults when absent.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The server's HTTP address, overriding the configuration's.
        #[arg(long)]
        http: Option<std::net::SocketAddr>,
    },
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
        Command::Load(args) => switchboard_load::cli::run(*args),
        Command::Dialplan {
            command: DialplanCommand::Check { file },
        } => match switchboard_dialplans::check(&file) {
            Ok(_) => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(diagnostics) => {
                for d in &diagnostics {
                    eprintln!("{d}");
                }
                ExitCode::from(2)
            }
        },
        Command::Dialplan {
            command: DialplanCommand::Reload { config, http },
        } => admin::dialplan_reload(config.as_deref(), http),
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
