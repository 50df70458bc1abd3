//! Trunks over TCP and TLS against real SIPp peers on loopback: the engine opens (and reuses)
//! the connections itself for outbound registration with digest auth, OPTIONS probes and calls.
//! Debian's SIPp is built without TLS (`-t l1` refuses to start), so the TLS carrier is SIPp
//! over TCP behind a TLS front written here with rustls, which also demands a client
//! certificate (mutual TLS) and records what the engine presented.

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_tests::{free_port, http_get, sipp, sipp_scenario, sipp_uac, stop_wrapped, Engine};

const PLAN: &str = r#"contexts:
  default:
    rules:
      - name: out
        called: "_0."
        actions:
          - dial: { trunk: carrier, number: "${called}" }
"#;

/// A SIPp server over TCP (`-t t1`) running `scenario`, its `log` actions in `log`.
struct SippTcp {
    child: Child,
    log: PathBuf,
}

impl SippTcp {
    fn start(scenario: &Path, port: u16, log: PathBuf) -> SippTcp {
        let _ = std::fs::remove_file(&log);
        let child = sipp(
            &[
                "-sf",
                &scenario.display().to_string(),
                "-t",
                "t1",
                "-i",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-trace_logs",
                "-log_file",
                &log.display().to_string(),
            ],
            120,
        );
        std::thread::sleep(Duration::from_millis(300));
        SippTcp { child, log }
    }

    /// How many logged lines start with `word`.
    fn count(&self, word: &str) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with(word))
            .count()
    }
}

impl Drop for SippTcp {
    fn drop(&mut self) {
        stop_wrapped(&mut self.child);
    }
}

/// A scenario of this crate copied into `dir` with placeholders replaced.
fn scenario(dir: &Path, name: &str, replace: &[(&str, &str)]) -> PathBuf {
    let mut text = std::fs::read_to_string(sipp_scenario(name)).expect("scenario");
    for (k, v) in replace {
        text = text.replace(k, v);
    }
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write scenario");
    path
}

fn trunk(engine: &Engine) -> serde_json::Value {
    let (status, body) =
        http_get(engine.http_addr(), "/api/v1/trunks/carrier").expect("API answers");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("JSON")
}

fn wait_for(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    cond()
}

fn engine_with(extra: &str) -> Engine {
    let dir = tempfile::tempdir().expect("temp dir").keep();
    let file = dir.join("plan.yaml");
    std::fs::write(&file, PLAN).expect("write plan");
    Engine::start(&format!(
        "[dialplan]\nfile = \"{}\"\nwatch_secs = 0\n\
         [calls]\ntrusted_sources = [\"127.0.0.1\"]\n{extra}",
        file.display()
    ))
}

/// A TLS server in front of a TCP backend: each accepted connection is handshaken (requiring
/// a client certificate signed by `client_ca`) and its bytes pumped to a new TCP connection
/// to the backend and back.
struct TlsFront {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    /// Handshakes completed with a client certificate.
    with_client_cert: Arc<AtomicUsize>,
    /// Handshakes that failed.
    refused: Arc<AtomicUsize>,
}

impl TlsFront {
    fn start(
        cert: CertificateDer<'static>,
        key: PrivateKeyDer<'static>,
        client_ca: CertificateDer<'static>,
        backend: SocketAddr,
    ) -> TlsFront {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(client_ca).expect("client CA");
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .expect("client verifier");
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_client_cert_verifier(verifier)
                .with_single_cert(vec![cert], key)
                .expect("server cert"),
        );
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let with_client_cert = Arc::new(AtomicUsize::new(0));
        let refused = Arc::new(AtomicUsize::new(0));
        let (s, w, r) = (stop.clone(), with_client_cert.clone(), refused.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((sock, _)) => {
                        let (config, s, w, r) = (config.clone(), s.clone(), w.clone(), r.clone());
                        std::thread::spawn(move || pump(sock, config, backend, s, w, r));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        TlsFront {
            addr,
            stop,
            with_client_cert,
            refused,
        }
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn would_block(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

fn pump(
    sock: TcpStream,
    config: Arc<rustls::ServerConfig>,
    backend: SocketAddr,
    stop: Arc<AtomicBool>,
    with_client_cert: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
) {
    let tick = Some(Duration::from_millis(10));
    let _ = sock.set_read_timeout(tick);
    let Ok(conn) = rustls::ServerConnection::new(config) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let deadline = Instant::now() + Duration::from_secs(10);
    while tls.conn.is_handshaking() {
        match tls.conn.complete_io(&mut tls.sock) {
            Ok(_) => {}
            Err(e) if would_block(&e) && Instant::now() < deadline => {}
            Err(_) => {
                refused.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    }
    if tls.conn.peer_certificates().is_some_and(|c| !c.is_empty()) {
        with_client_cert.fetch_add(1, Ordering::Relaxed);
    }
    let Ok(mut back) = TcpStream::connect(backend) else {
        return;
    };
    let _ = back.set_read_timeout(tick);
    let mut buf = [0u8; 8192];
    while !stop.load(Ordering::Relaxed) {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if back.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if would_block(&e) => {}
            Err(_) => break,
        }
        match back.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if tls.write_all(&buf[..n]).and_then(|_| tls.flush()).is_err() {
                    break;
                }
            }
            Err(e) if would_block(&e) => {}
            Err(_) => break,
        }
    }
}

/// Registration (challenged with digest), OPTIONS probes and a call through a trunk, checked
/// at the carrier (SIPp logs) and in the API.
fn register_probe_and_call(engine: &Engine, registrar: &SippTcp, gateway: &SippTcp) {
    let state = |e: &Engine| trunk(e)["registration"]["state"].clone();
    assert!(
        wait_for(20, || state(engine) == "registered"),
        "not registered: {}\nengine log:\n{}",
        trunk(engine),
        engine.log()
    );
    assert!(
        registrar.count("challenged") >= 1,
        "the registrar challenged"
    );
    assert!(registrar.count("registered") >= 1);
    assert!(
        wait_for(10, || gateway.count("probe") >= 1),
        "no OPTIONS probe reached the gateway: {}",
        engine.log()
    );
    let mut call = sipp_uac(engine, "0612345678", 1, 1, 1, 300);
    assert!(
        call.wait().expect("sipp").success(),
        "the call through the trunk failed: {}",
        engine.log()
    );
    assert!(
        wait_for(10, || gateway.count("answered") == 1),
        "the gateway did not get the call and its BYE: {}",
        engine.log()
    );
    assert_eq!(trunk(engine)["outbound_calls"], 1, "{}", trunk(engine));
}

fn trunk_config(transport: &str, gw: SocketAddr, reg: SocketAddr, tls: &str) -> String {
    format!(
        "[trunks.carrier]\naddress = \"{gw}\"\ntransport = \"{transport}\"\n{tls}\
         [trunks.carrier.probe]\ninterval_secs = 1\n\
         [trunks.carrier.register]\nregistrar = \"{reg}\"\nusername = \"acct42\"\n\
         password = \"s3cret\"\nexpires_secs = 30\ntimeout_ms = 3000\nretry_min_secs = 1\n\
         retry_max_secs = 2\n"
    )
}

/// A trunk with `transport = "tcp"`: registration, probes and a call reach SIPp over TCP.
#[test]
fn trunk_over_tcp_registers_probes_and_calls() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (reg_port, gw_port) = (free_port(), free_port());
    let reg_sf = scenario(
        dir.path(),
        "uas_trunk_registrar.xml",
        &[("TRUNK_USER", "acct42"), ("EXPIRES", "30")],
    );
    let gw_sf = scenario(dir.path(), "uas_trunk_gateway.xml", &[]);
    let registrar = SippTcp::start(&reg_sf, reg_port, dir.path().join("reg.log"));
    let gateway = SippTcp::start(&gw_sf, gw_port, dir.path().join("gw.log"));
    let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    let engine = engine_with(&trunk_config("tcp", addr(gw_port), addr(reg_port), ""));
    register_probe_and_call(&engine, &registrar, &gateway);
}

/// A trunk with `transport = "tls"` and a client certificate: the carrier (TLS front + SIPp)
/// only takes connections that present it; registration, probes and a `sips:` call go through.
/// The same trunk without the client certificate cannot register.
#[test]
fn trunk_over_mutual_tls_registers_probes_and_calls() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).expect("server cert");
    let client = rcgen::generate_simple_self_signed(vec!["switchboard.test".to_string()])
        .expect("client cert");
    let write = |name: &str, text: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write pem");
        p
    };
    let ca = write("carrier.pem", server.cert.pem());
    let cert = write("client.pem", client.cert.pem());
    let key = write("client.key", client.signing_key.serialize_pem());
    let server_key =
        || PrivateKeyDer::try_from(server.signing_key.serialize_der()).expect("server key");

    let (reg_port, gw_port) = (free_port(), free_port());
    let reg_sf = scenario(
        dir.path(),
        "uas_trunk_registrar.xml",
        &[("TRUNK_USER", "acct42"), ("EXPIRES", "30")],
    );
    let gw_sf = scenario(dir.path(), "uas_trunk_gateway.xml", &[]);
    let registrar = SippTcp::start(&reg_sf, reg_port, dir.path().join("reg.log"));
    let gateway = SippTcp::start(&gw_sf, gw_port, dir.path().join("gw.log"));
    let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    let front = |backend| {
        TlsFront::start(
            server.cert.der().clone(),
            server_key(),
            client.cert.der().clone(),
            backend,
        )
    };
    let reg_front = front(addr(reg_port));
    let gw_front = front(addr(gw_port));
    let tls = format!(
        "tls_ca = \"{}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        ca.display(),
        cert.display(),
        key.display()
    );
    let engine = engine_with(&trunk_config("tls", gw_front.addr, reg_front.addr, &tls));
    register_probe_and_call(&engine, &registrar, &gateway);
    assert!(reg_front.with_client_cert.load(Ordering::Relaxed) >= 1);
    assert!(gw_front.with_client_cert.load(Ordering::Relaxed) >= 1);
    drop(engine);

    // Without a client certificate the carrier refuses the handshake: never registered.
    let tls = format!("tls_ca = \"{}\"\n", ca.display());
    let engine = engine_with(&trunk_config("tls", gw_front.addr, reg_front.addr, &tls));
    let refused_before = reg_front.refused.load(Ordering::Relaxed);
    assert!(
        wait_for(15, || reg_front.refused.load(Ordering::Relaxed)
            > refused_before),
        "the handshake without a client certificate was not refused"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_ne!(
        trunk(&engine)["registration"]["state"],
        "registered",
        "{}",
        trunk(&engine)
    );
}
