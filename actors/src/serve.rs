//! `switchboard serve`: wires the SIP core, the shards' transaction user (registrar and calls)
//! and the HTTP server together, on an actix system.

use crate::registrar::Registrar;
use crate::router::{Media, Services};
use actix::Actor;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use switchboard_engine::auth::Authenticator;
use switchboard_engine::config::parse_cidr;
use switchboard_engine::config::Config;
use switchboard_engine::metrics::Metrics;

/// Runs the engine until SIGINT/SIGTERM. The config has already been validated.
pub fn run(config: Config) -> ExitCode {
    raise_fd_limit();
    let system = actix_rt::System::new();
    system.block_on(async move {
        let metrics = Metrics::new();
        let http_listen = config.http.listen;
        let storage = match switchboard_storage::Storage::connect(&config.database_url()).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("database: {e}");
                return ExitCode::from(1);
            }
        };
        let events = match crate::events::Events::start(
            storage.clone(),
            crate::events::Settings {
                retention: Duration::from_secs(config.events.retention_hours.saturating_mul(3600)),
                prune_interval: Duration::from_secs(config.events.prune_interval_secs),
                consumer_buffer: config.events.consumer_buffer,
            },
            &metrics.registry,
        )
        .await
        {
            Ok(e) => e,
            Err(e) => {
                eprintln!("event bus: {e}");
                return ExitCode::from(1);
            }
        };
        if let Err(e) = crate::events::webhooks::start(&events, &config.events.webhooks) {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
        if config.calls.dtls == switchboard_engine::config::DtlsMode::Terminate {
            // The DTLS-SRTP certificate is made (or read) now, so a bad file shows at start.
            if let Err(e) = crate::call::init_dtls(&config.calls) {
                eprintln!("DTLS certificate: {e}");
                return ExitCode::from(2);
            }
        }
        if config.registrar.seed_demo_users {
            seed_demo_users(&storage, &config.registrar.realm).await;
        }
        let registrar = match crate::registrar::Registrar::load(
            config.registrar.clone(),
            storage.clone(),
        )
        .await
        {
            Ok(r) => r,
            Err(e) => {
                eprintln!("loading registrations: {e}");
                return ExitCode::from(1);
            }
        };
        tracing::info!(aors = registrar.aor_count(), "registrations restored");
        let registrar = registrar.with_events(events.clone());
        let registrar =
            Registrar::start_in_arbiter(&actix_rt::Arbiter::new().handle(), move |_| registrar);
        let ports = match switchboard_media::PortAllocator::new(
            config.media.rtp_ip,
            config.media.rtp_port_min,
            config.media.rtp_port_max,
        ) {
            Ok(p) => Arc::new(p),
            Err(e) => {
                eprintln!("media ports: {e}");
                return ExitCode::from(1);
            }
        };
        {
            // Once a second: the RTP port gauge. Every 10 s: hand freed heap back to the kernel
            // (glibc keeps it in per-thread arenas otherwise, so RSS never returns to its
            // baseline after a burst of calls).
            let ports = ports.clone();
            let gauge = metrics.rtp_port_pairs_in_use.clone();
            let (calls, cps) = (
                metrics.calls_total.clone(),
                metrics.calls_per_second.clone(),
            );
            actix_rt::spawn(async move {
                let mut last_calls = calls.get();
                for tick in 0u64.. {
                    gauge.set((ports.capacity() - ports.available()) as i64);
                    let now_calls = calls.get();
                    cps.set(now_calls.saturating_sub(last_calls) as i64);
                    last_calls = now_calls;
                    if tick % 10 == 9 {
                        // SAFETY: malloc_trim only walks the allocator's own free lists; it has no
                        // preconditions and is thread-safe.
                        unsafe {
                            libc::malloc_trim(0);
                        }
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            });
        }
        let media_rt = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.shard_count().clamp(1, 4))
            .thread_name("media")
            .enable_all()
            .build()
        {
            Ok(rt) => MediaRuntime(Some(rt)),
            Err(e) => {
                eprintln!("media runtime: {e}");
                return ExitCode::from(1);
            }
        };
        let ivr = match ivr_tools(&config) {
            Ok(t) => Arc::new(t),
            Err(errors) => {
                for e in errors {
                    eprintln!("{e}");
                }
                return ExitCode::from(2);
            }
        };
        ivr.dialplans
            .watch(Duration::from_secs(config.dialplan.watch_secs));
        let report_schedules = match report_schedules(&config) {
            Ok(s) => s,
            Err(errors) => {
                for e in errors {
                    eprintln!("{e}");
                }
                return ExitCode::from(2);
            }
        };
        let reports_dir = if config.reports.dir.as_os_str().is_empty() {
            config.data.dir.join("reports")
        } else {
            config.reports.dir.clone()
        };
        let contact = if config.contact_centre.enabled {
            let settings = crate::contact::Settings {
                service_level_secs: config.contact_centre.service_level_secs,
                position_update_ms: config
                    .contact_centre
                    .position_update_secs
                    .saturating_mul(1000),
                config_file: config.contact_centre.config_file.clone(),
                screen_pop: (config.contact_centre.screen_pop_timeout_ms > 0).then(|| {
                    crate::contact::ScreenPopSettings {
                        crm: crate::crm::Crm::new(storage.clone()),
                        timeout: Duration::from_millis(config.contact_centre.screen_pop_timeout_ms),
                        entries: config.contact_centre.screen_pop_entries.clamp(1, 100),
                        debug_delay: Duration::from_millis(
                            config.contact_centre.debug_screen_pop_delay_ms,
                        ),
                    }
                }),
                events: Some(events.clone()),
                metrics: Some(crate::contact::ContactMetrics::register(
                    &metrics.registry,
                    config.contact_centre.service_level_secs,
                )),
                ..crate::contact::Settings::default()
            };
            match crate::contact::ContactCentre::start(
                storage.clone(),
                settings,
                crate::contact::Clock::System,
            )
            .await
            {
                Ok(c) => Some(c),
                Err(e) => {
                    eprintln!("contact centre: {e}");
                    return ExitCode::from(1);
                }
            }
        } else {
            None
        };
        let api = match crate::api::auth_from_config(&config.api) {
            Ok(auth) => crate::api::Api {
                records: crate::api::ApiContext {
                    storage: storage.clone(),
                    recordings_dir: config.data.dir.join("recordings"),
                    realm: config.registrar.realm.clone(),
                },
                auth: actix_web::web::Data::new(auth),
            },
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(1);
            }
        };
        if let (Some(cc), true) = (&contact, config.chat.enabled) {
            crate::chat::install(crate::chat::ChatService::start(
                storage.clone(),
                cc.clone(),
                crate::crm::Crm::new(storage.clone()).with_events(events.clone()),
                config.chat.clone(),
                config.channels.clone(),
                config.data.dir.clone(),
                config.calls.debug_panic_injection,
            ));
        }
        let trunks = crate::trunk::Trunks::new(&config);
        let calls = crate::calls_api::CallDirectory::default();
        let (registrar_addr, registrar_config) = (registrar.clone(), config.registrar.clone());
        trunks.set_events(events.clone());
        let services = Services {
            calls: calls.clone(),
            trunks: trunks.clone(),
            ivr: ivr.clone(),
            contact: contact.clone(),
            registrar,
            trusted: Arc::new(
                config
                    .calls
                    .trusted_sources
                    .iter()
                    .filter_map(|s| parse_cidr(s))
                    .collect(),
            ),
            cdrs: crate::cdr::CdrSink::start(storage.clone(), config.contact_centre.enabled),
            events: events.clone(),
            storage,
            auth: Arc::new(Authenticator::with_algorithms(
                &config.registrar.realm,
                Duration::from_secs(u64::from(config.registrar.nonce_ttl_secs)),
                &config.registrar.digest_algorithms,
            )),
            media: Media {
                handle: media_rt.handle(),
                ports,
                sdp_ip: config.sip.advertised_address.unwrap_or(config.media.rtp_ip),
            },
        };
        let crm = crate::crm::Crm::new(services.storage.clone())
            .with_events(events.clone())
            .with_files(config.data.dir.clone(), &config.tickets);
        if let Err(e) =
            crate::crm::notify::start(crm.clone(), &events, &config.tickets, &metrics.registry)
        {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
        let factory = crate::router::factory(services);
        let (webrtc_config, rtp_ip) = (config.webrtc.clone(), config.media.rtp_ip);
        let server = match switchboard_engine::server::start(config, metrics.clone(), factory).await
        {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(1);
            }
        };
        if webrtc_config.enabled {
            if let Some(sip) = server.udp_addrs.first() {
                crate::webrtc::install(crate::webrtc::WebRtcService::new(
                    webrtc_config,
                    *sip,
                    rtp_ip,
                    media_rt.handle(),
                ));
            }
        }
        trunks.start();
        if let Some(cc) = &contact {
            crate::reports::schedule::start(cc.clone(), reports_dir.clone(), report_schedules);
        }
        registrar_addr.do_send(crate::registrar::AttachTransport(server.shared.clone()));
        crate::nat::start(&registrar_config, registrar_addr, trunks.clone());
        let http_services = crate::http::HttpServices {
            contact,
            dialplans: ivr.dialplans.clone(),
            trunks,
            api,
            calls,
            reports: crate::reports::api::ReportsDir(reports_dir),
            crm,
            events: events.clone(),
        };
        match crate::http::spawn(http_listen, metrics, http_services) {
            Ok(addr) => tracing::info!(%addr, "HTTP listening"),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(1);
            }
        }
        tracing::info!(udp = ?server.udp_addrs, tcp = ?server.tcp_addrs, "switchboard serving");
        wait_for_shutdown().await;
        tracing::info!("shutting down");
        // Events published so far reach storage, so a restart continues after them.
        let _ = tokio::time::timeout(Duration::from_secs(5), events.flush()).await;
        drop(media_rt);
        ExitCode::SUCCESS
    })
}

/// Raises the open-files soft limit to the hard limit: every relayed call holds four sockets
/// (RTP and RTCP on each leg), so the usual soft limit would cap the engine at a few thousand
/// concurrent calls.
fn raise_fd_limit() {
    // As root the hard limit may rise to the kernel's per-process maximum; otherwise the soft
    // limit rises to the hard one.
    let nr_open: libc::rlim_t = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return;
        }
        let raised = libc::rlimit {
            rlim_cur: nr_open.max(lim.rlim_max),
            rlim_max: nr_open.max(lim.rlim_max),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
            lim = raised;
        } else if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                tracing::warn!("cannot raise the open-files limit");
            }
        }
    }
    tracing::info!(open_files = lim.rlim_cur, "open-files limit");
}

/// Creates users 1001 and 1002 when the database has no user at all (first start).
async fn seed_demo_users(storage: &switchboard_storage::Storage, realm: &str) {
    match storage.list_users().await {
        Ok(users) if users.is_empty() => {
            for n in ["1001", "1002"] {
                let password = format!("demo{n}");
                if let Err(e) = storage
                    .add_user(n, realm, &password, Some(&format!("Demo {n}")))
                    .await
                {
                    tracing::warn!(error = %e, "cannot create demo user");
                    return;
                }
            }
            tracing::info!(realm, "created demo users 1001/demo1001 and 1002/demo1002: register two softphones and dial 1001 or 1002");
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot list users"),
    }
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

/// The dialplan (refusing to start on a bad plan, like a bad config) and the IVR's media
/// resources: prompt cache, flite TTS with its cache under `<data>/tts`, pocketsphinx when its
/// model is installed, recordings under `<data>/recordings`.
fn ivr_tools(config: &Config) -> Result<crate::call::IvrTools, Vec<String>> {
    use switchboard_media::asr::{AsrEngine, PocketSphinx};
    use switchboard_media::tts::FliteTts;
    let dialplans = crate::dialplan::Dialplans::load(&config.dialplan)?;
    let mut tts = FliteTts::new(config.data.dir.join("tts"));
    if let Some(v) = &config.dialplan.tts_voice {
        tts = tts.with_default_voice(v);
    }
    if !tts.available() {
        tracing::warn!("flite not found: `say` prompts will be skipped");
    }
    let asr: Option<Arc<dyn AsrEngine>> = match PocketSphinx::new() {
        Ok(p) => Some(Arc::new(p)),
        Err(e) => {
            tracing::warn!(error = %e, "speech recognition unavailable");
            None
        }
    };
    Ok(crate::call::IvrTools {
        dialplans: Arc::new(dialplans),
        prompts: Arc::new(switchboard_media::prompt::PromptCache::new(64 << 20)),
        tts: Arc::new(tts),
        tts_voice: config.dialplan.tts_voice.clone(),
        asr,
        recordings_dir: config.data.dir.join("recordings"),
        music_on_hold: config.dialplan.music_on_hold.clone(),
        webhook_timeout: Duration::from_millis(config.dialplan.webhook_timeout_ms.max(100)),
    })
}

/// The media runtime, shut down in the background when dropped: dropping a multi-thread runtime
/// inside the actix system's `block_on` (an early error return) would panic.
struct MediaRuntime(Option<tokio::runtime::Runtime>);

impl MediaRuntime {
    fn handle(&self) -> tokio::runtime::Handle {
        match &self.0 {
            Some(rt) => rt.handle().clone(),
            // Only `drop` takes the runtime out.
            None => unreachable!("the media runtime is present until dropped"),
        }
    }
}

impl Drop for MediaRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// The validated `[[reports.schedules]]`; errors name the key.
fn report_schedules(
    config: &Config,
) -> Result<Vec<crate::reports::schedule::Schedule>, Vec<String>> {
    let mut ok = Vec::new();
    let mut errors = Vec::new();
    for (i, c) in config.reports.schedules.iter().enumerate() {
        match crate::reports::schedule::Schedule::from_config(i, c) {
            Ok(s) => ok.push(s),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(ok)
    } else {
        Err(errors)
    }
}
