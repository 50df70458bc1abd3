//! The registrar's flow and NAT handling against the real binary, with raw SIP over loopback
//! sockets: a binding made over a TCP connection disappears when the connection closes (calls
//! then go to the user's other bindings, or fail); a phone whose Contact names a private
//! address it does not receive on is reached at the address its REGISTER came from, gets
//! OPTIONS keep-alives there, and is dropped when it stops answering them.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};
use switchboard_tests::digest_answer;
use switchboard_tests::phone::{Phone, PhoneCodec};
use switchboard_tests::Engine;

const TRUSTED: &str = "[calls]\ntrusted_sources = [\"127.0.0.1\"]\n";

/// Both ends of a raw SIP flow.
trait Flow {
    fn send(&mut self, msg: &str);
    /// The next message within `wait`.
    fn recv(&mut self, wait: Duration) -> Option<String>;
    fn local(&self) -> SocketAddr;
    fn via_transport(&self) -> &'static str;
}

struct Udp {
    sock: UdpSocket,
    engine: SocketAddr,
}

impl Flow for Udp {
    fn send(&mut self, msg: &str) {
        self.sock
            .send_to(msg.as_bytes(), self.engine)
            .expect("send");
    }
    fn recv(&mut self, wait: Duration) -> Option<String> {
        self.sock.set_read_timeout(Some(wait)).expect("timeout");
        let mut buf = [0u8; 65536];
        let (n, _) = self.sock.recv_from(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }
    fn local(&self) -> SocketAddr {
        self.sock.local_addr().expect("addr")
    }
    fn via_transport(&self) -> &'static str {
        "UDP"
    }
}

struct Tcp {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Flow for Tcp {
    fn send(&mut self, msg: &str) {
        self.stream.write_all(msg.as_bytes()).expect("write");
    }
    fn recv(&mut self, wait: Duration) -> Option<String> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                let len: usize = header(&head, "Content-Length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if self.buf.len() >= end + 4 + len {
                    let msg: Vec<u8> = self.buf.drain(..end + 4 + len).collect();
                    return Some(String::from_utf8_lossy(&msg).into_owned());
                }
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .ok()?;
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => return None,
            }
        }
    }
    fn local(&self) -> SocketAddr {
        self.stream.local_addr().expect("addr")
    }
    fn via_transport(&self) -> &'static str {
        "TCP"
    }
}

fn header(msg: &str, name: &str) -> Option<String> {
    msg.split("\r\n").find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// REGISTERs `user` with `contact` over `flow`, answering the digest challenge; the status.
fn register(flow: &mut dyn Flow, engine: SocketAddr, user: &str, pass: &str, contact: &str) -> u16 {
    let local = flow.local();
    let t = flow.via_transport();
    let mut auth = String::new();
    for cseq in 1..=3 {
        flow.send(&format!(
            "REGISTER sip:{engine} SIP/2.0\r\nVia: SIP/2.0/{t} {local};branch=z9hG4bK-r{cseq}-{}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{user}@{engine}>;tag=nat1\r\nTo: <sip:{user}@{engine}>\r\n\
             Call-ID: reg-{user}-{}\r\nCSeq: {cseq} REGISTER\r\nContact: <{contact}>\r\nExpires: 600\r\n\
             {auth}Content-Length: 0\r\n\r\n",
            local.port(),
            local.port()
        ));
        let resp = loop {
            let m = flow
                .recv(Duration::from_secs(5))
                .expect("REGISTER answered");
            if m.starts_with("SIP/2.0 ") && !m.starts_with("SIP/2.0 1") {
                break m;
            }
        };
        let status: u16 = resp[8..11].parse().unwrap_or(0);
        if status != 401 {
            return status;
        }
        auth = format!(
            "Authorization: {}\r\n",
            digest_answer(
                &resp,
                "WWW-Authenticate",
                user,
                pass,
                "REGISTER",
                &format!("sip:{engine}")
            )
        );
    }
    0
}

/// A response to request `req` (all its Vias, a To tag).
fn answer(req: &str, status: &str) -> String {
    let mut out = format!("SIP/2.0 {status}\r\n");
    for l in req.split("\r\n").skip(1) {
        let Some((n, _)) = l.split_once(':') else {
            continue;
        };
        match n.trim().to_ascii_lowercase().as_str() {
            "via" | "v" | "from" | "f" | "call-id" | "i" | "cseq" => {
                out.push_str(l);
                out.push_str("\r\n")
            }
            "to" | "t" => {
                out.push_str(l);
                if !l.contains("tag=") {
                    out.push_str(";tag=natt");
                }
                out.push_str("\r\n")
            }
            _ => {}
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

/// Calls `user` from a phone on another thread; the phone's final status.
fn call(engine: SocketAddr, user: &str) -> std::thread::JoinHandle<Option<u16>> {
    let user = user.to_string();
    std::thread::spawn(move || Phone::call(engine, &user, PhoneCodec::Pcmu).status())
}

/// Reads `flow` for up to `wait`: answers OPTIONS with 200 (when `answer_options`), answers
/// an INVITE with 486 and returns it.
fn serve(flow: &mut dyn Flow, wait: Duration, answer_options: bool) -> (Option<String>, usize) {
    let deadline = Instant::now() + wait;
    let mut options = 0;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Some(m) = flow.recv(left) else { continue };
        if m.starts_with("OPTIONS ") {
            options += 1;
            if answer_options {
                flow.send(&answer(&m, "200 OK"));
            }
        } else if m.starts_with("INVITE ") {
            flow.send(&answer(&m, "486 Busy Here"));
            return (Some(m), options);
        }
    }
    (None, options)
}

/// dave registers over TCP and over UDP. While the TCP connection is open a call reaches it on
/// that connection; once it closes the binding goes and the next call reaches only the UDP
/// contact. erin, registered over TCP alone, is unreachable once her connection closes.
#[test]
fn bindings_over_a_connection_end_with_it() {
    let engine = Engine::start(TRUSTED);
    engine.add_user("dave", "dave-pw");
    engine.add_user("erin", "erin-pw");
    let sip = engine.sip_addr();
    let mut tcp = Tcp {
        stream: TcpStream::connect(sip).expect("connect"),
        buf: Vec::new(),
    };
    let tl = tcp.local();
    let status = register(
        &mut tcp,
        sip,
        "dave",
        "dave-pw",
        &format!("sip:dave@{tl};transport=tcp"),
    );
    assert_eq!(status, 200, "{}", engine.log());
    let mut udp = Udp {
        sock: UdpSocket::bind("127.0.0.1:0").expect("bind"),
        engine: sip,
    };
    let ul = udp.local();
    assert_eq!(
        register(&mut udp, sip, "dave", "dave-pw", &format!("sip:dave@{ul}")),
        200
    );

    // Both bindings ring: the TCP one on its own connection.
    let c = call(sip, "dave");
    let (invite, _) = serve(&mut tcp, Duration::from_secs(10), true);
    assert!(
        invite.is_some(),
        "no INVITE on the TCP flow: {}",
        engine.log()
    );
    let (invite, _) = serve(&mut udp, Duration::from_secs(10), true);
    assert!(invite.is_some(), "no INVITE on UDP");
    assert_eq!(c.join().expect("caller"), Some(486));

    // The connection closes: the next call rings only the UDP binding.
    drop(tcp);
    std::thread::sleep(Duration::from_millis(1500));
    let c = call(sip, "dave");
    let (invite, _) = serve(&mut udp, Duration::from_secs(10), true);
    assert!(
        invite.is_some(),
        "no INVITE on UDP after the TCP flow closed"
    );
    assert_eq!(c.join().expect("caller"), Some(486), "{}", engine.log());
    assert!(
        engine
            .log()
            .contains("binding removed: its connection closed"),
        "{}",
        engine.log()
    );

    // erin has only a TCP binding: gone with the connection, the call fails.
    let mut tcp = Tcp {
        stream: TcpStream::connect(sip).expect("connect"),
        buf: Vec::new(),
    };
    let tl = tcp.local();
    let status = register(
        &mut tcp,
        sip,
        "erin",
        "erin-pw",
        &format!("sip:erin@{tl};transport=tcp"),
    );
    assert_eq!(status, 200);
    drop(tcp);
    std::thread::sleep(Duration::from_millis(300));
    let status = call(sip, "erin").join().expect("caller");
    assert!(
        matches!(status, Some(404 | 480)),
        "a call to a user whose only flow closed: {status:?}"
    );
}

/// carol's Contact names 192.168.77.10 (her private address; nothing there answers): calls
/// and keep-alives go to the address her REGISTER came from. When she stops answering the
/// OPTIONS keep-alives her binding is dropped and calls no longer reach her.
#[test]
fn phone_behind_nat_is_reached_kept_alive_and_dropped() {
    let engine = Engine::start(&format!(
        "{TRUSTED}[registrar]\nnat_keepalive = \"options\"\nnat_keepalive_secs = 1\n\
         nat_keepalive_failures = 2\n"
    ));
    engine.add_user("carol", "carol-pw");
    let sip = engine.sip_addr();
    let mut udp = Udp {
        sock: UdpSocket::bind("127.0.0.1:0").expect("bind"),
        engine: sip,
    };
    assert_eq!(
        register(
            &mut udp,
            sip,
            "carol",
            "carol-pw",
            "sip:carol@192.168.77.10:5060"
        ),
        200
    );
    // Keep-alives reach her real address.
    let (_, options) = serve(&mut udp, Duration::from_secs(4), true);
    assert!(options >= 1, "no OPTIONS keep-alive: {}", engine.log());
    // So does a call.
    let c = call(sip, "carol");
    let (invite, _) = serve(&mut udp, Duration::from_secs(10), true);
    let invite = invite.unwrap_or_else(|| panic!("no INVITE at the NAT address: {}", engine.log()));
    assert!(
        invite.starts_with("INVITE sip:carol@192.168.77.10:5060"),
        "{invite}"
    );
    assert_eq!(c.join().expect("caller"), Some(486));

    // She goes silent: two unanswered keep-alives drop the binding.
    let dropped = Instant::now() + Duration::from_secs(20);
    while !engine
        .log()
        .contains("binding dropped: keep-alives unanswered")
    {
        assert!(
            Instant::now() < dropped,
            "binding never dropped: {}",
            engine.log()
        );
        let _ = serve(&mut udp, Duration::from_millis(500), false);
    }
    let c = call(sip, "carol");
    let (invite, _) = serve(&mut udp, Duration::from_secs(3), false);
    assert!(invite.is_none(), "a dropped binding was still called");
    let status = c.join().expect("caller");
    assert!(matches!(status, Some(404 | 480)), "{status:?}");
}

fn sine(freq: f64, secs: f64) -> Vec<i16> {
    (0..(secs * 8000.0) as usize)
        .map(|i| ((i as f64 * freq * 2.0 * std::f64::consts::PI / 8000.0).sin() * 8000.0) as i16)
        .collect()
}

/// A caller whose SDP names a private address nothing listens on (192.168.77.10) but that
/// sends its RTP from its real socket: the engine latches onto where the packets come from
/// (symmetric RTP), so audio flows both ways.
#[test]
fn rtp_latches_onto_the_source_when_the_sdp_names_a_private_address() {
    use switchboard_tests::phone::level_dbfs;
    let mut callee = Phone::callee(PhoneCodec::Pcmu, false);
    let dir = tempfile::tempdir().expect("temp dir").keep();
    let plan = dir.join("plan.yaml");
    std::fs::write(
        &plan,
        format!(
            "contexts:\n  default:\n    rules:\n      - name: out\n        called: \"770\"\n        \
             actions:\n          - dial: sip:callee@{}\n",
            callee.sip_addr()
        ),
    )
    .expect("plan");
    let engine = Engine::start(&format!(
        "{TRUSTED}[dialplan]\nfile = \"{}\"\nwatch_secs = 0\n",
        plan.display()
    ));
    let callee_side = std::thread::spawn(move || {
        let answered = callee.wait_answered(Duration::from_secs(20));
        let heard = if answered {
            callee.talk_and_listen(&sine(1400.0, 1.0), Duration::from_secs(4))
        } else {
            Vec::new()
        };
        (answered, heard)
    });
    let sdp = "v=0\r\no=- 1 1 IN IP4 192.168.77.10\r\ns=-\r\nc=IN IP4 192.168.77.10\r\nt=0 0\r\n\
               m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    let mut caller = Phone::call_with_sdp(engine.sip_addr(), "770", sdp);
    assert_eq!(caller.status(), Some(200), "{}", engine.log());
    let heard_by_caller = caller.talk_and_listen(&sine(500.0, 1.0), Duration::from_secs(4));
    let (answered, heard_by_callee) = callee_side.join().expect("callee");
    caller.hang_up();
    assert!(answered, "{}", engine.log());
    let (to_caller, to_callee) = (level_dbfs(&heard_by_caller), level_dbfs(&heard_by_callee));
    println!("caller heard {to_caller:.1} dBFS, callee heard {to_callee:.1} dBFS");
    assert!(
        to_callee > -35.0,
        "the callee heard nothing ({to_callee:.1} dBFS)"
    );
    assert!(
        to_caller > -35.0,
        "nothing reached the caller's real address ({to_caller:.1} dBFS): no latching?"
    );
}

/// `[sip] advertised_addresses` maps the engine's UDP listener to a public address: the Via and
/// Contact of the INVITE the engine sends to a callee name it (with the listener's port).
#[test]
fn advertised_address_per_listener_is_in_via_and_contact() {
    let callee = Phone::callee(PhoneCodec::Pcmu, false);
    let dir = tempfile::tempdir().expect("temp dir").keep();
    let plan = dir.join("plan.yaml");
    std::fs::write(
        &plan,
        format!(
            "contexts:\n  default:\n    rules:\n      - name: out\n        called: \"771\"\n        \
             actions:\n          - dial: sip:callee@{}\n",
            callee.sip_addr()
        ),
    )
    .expect("plan");
    let mut engine = Engine::start(&format!(
        "{TRUSTED}[dialplan]\nfile = \"{}\"\nwatch_secs = 0\n",
        plan.display()
    ));
    let sip = engine.sip_addr();
    let config = std::fs::read_to_string(engine.config_path()).expect("config");
    let config = config.replacen(
        "[sip]\n",
        &format!("[sip]\nadvertised_addresses = {{ \"{sip}\" = \"192.0.2.77\" }}\n"),
        1,
    );
    std::fs::write(engine.config_path(), config).expect("config");
    engine.restart();
    let callee_side = std::thread::spawn(move || {
        let answered = callee.wait_answered(Duration::from_secs(20));
        (answered, callee)
    });
    let mut caller = Phone::call(sip, "771", PhoneCodec::Pcmu);
    assert_eq!(caller.status(), Some(200), "{}", engine.log());
    let (answered, callee) = callee_side.join().expect("callee");
    assert!(answered);
    let public = format!("192.0.2.77:{}", sip.port());
    let via = callee.incoming_header("Via").join(",");
    let contact = callee.incoming_header("Contact").join(",");
    assert!(via.contains(&public), "Via: {via}");
    assert!(contact.contains(&public), "Contact: {contact}");
    caller.hang_up();
}
