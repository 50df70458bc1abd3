//! `switchboard serve`: wires the SIP core, the shards' transaction user (registrar and calls)
//! and the HTTP server together, on an actix system.

use std::process::ExitCode;
use switchboard_engine::config::Config;
use switchboard_engine::metrics::Metrics;

/// Runs the engine until SIGINT/SIGTERM. The config has already been validated.
pub fn run(config: Config) -> ExitCode {
    let system = actix_rt::System::new();
    system.block_on(async move {
        let metrics = Metrics::new();
        let http_listen = config.http.listen;
        let factory = crate::router::factory(&config);
        let server = match switchboard_engine::server::start(config, metrics.clone(), factory).await
        {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(1);
            }
        };
        match crate::http::spawn(http_listen, metrics) {
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
