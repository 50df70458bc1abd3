//! The `switchboard` binary: `serve` runs the engine; more subcommands arrive with their issues.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use switchboard_engine::config::Config;
use switchboard_engine::metrics::Metrics;

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
    },
    /// Validates a configuration file and exits.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match Cli::parse().command {
        Command::Serve { config } => serve(config),
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

fn serve(config_path: Option<PathBuf>) -> ExitCode {
    let config = match Config::load(config_path.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("config error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = std::fs::create_dir_all(&config.data.dir) {
        eprintln!(
            "cannot create data directory {}: {e}",
            config.data.dir.display()
        );
        return ExitCode::from(1);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.shard_count())
        .thread_name("sip")
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        let metrics = Metrics::new();
        let http_listen = config.http.listen;
        let server = match switchboard_engine::server::start(config, metrics.clone()).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(1);
            }
        };
        match switchboard_actors::http::spawn(http_listen, metrics) {
            Ok(addr) => tracing::info!(%addr, "HTTP listening"),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(1);
            }
        }
        tracing::info!(udp = ?server.udp_addrs, tcp = ?server.tcp_addrs, "switchboard serving");
        wait_for_shutdown().await;
        tracing::info!("shutting down");
        ExitCode::SUCCESS
    })
}

async fn wait_for_shutdown() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
