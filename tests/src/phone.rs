//! A minimal SIP phone for end-to-end tests that must hear and speak real audio: one call over
//! UDP (INVITE, ACK, BYE both ways, 200 to in-dialog requests), RTP in PCMU or G.722 encoded and
//! decoded with the media crate, RFC 4733 digits sent and received. SIPp cannot check what it
//! hears; this can. A phone either calls the engine ([`Phone::call`], [`Phone::call_with`]) or
//! waits to be called by it ([`Phone::callee`]), with or without `telephone-event` in its SDP.
//! With SDES-SRTP ([`Phone::call_srtp`], [`Phone::callee_srtp`]) it offers or answers
//! `RTP/SAVP` with its own random key, encrypts what it sends and decrypts what it hears with
//! the key the engine put in its SDP (packets that fail are counted, [`Phone::srtp_failures`]).

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use switchboard_engine::sdp::{Crypto, Sdp};
use switchboard_engine::sip::{parse_datagram, HeaderName, Message, SipHeaders};
use switchboard_media::codec::CodecKind;
use switchboard_media::dtmf::generator::EventGenerator;
use switchboard_media::dtmf::receiver::EventReceiver;
use switchboard_media::dtmf::Digit;
use switchboard_media::srtp::{SrtpContext, SrtpKey, SrtpSuite};

/// The codec a [`Phone`] offers (and then uses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PhoneCodec {
    /// G.711 µ-law, 8 kHz.
    Pcmu,
    /// G.722, 16 kHz audio.
    G722,
}

impl PhoneCodec {
    fn kind(self) -> CodecKind {
        match self {
            PhoneCodec::Pcmu => CodecKind::from_static_payload_type(0).expect("PCMU is static 0"),
            PhoneCodec::G722 => CodecKind::from_static_payload_type(9).expect("G.722 is static 9"),
        }
    }

    fn pt(self) -> u8 {
        match self {
            PhoneCodec::Pcmu => 0,
            PhoneCodec::G722 => 9,
        }
    }

    /// Audio sample rate.
    pub fn rate(self) -> u32 {
        self.kind().sample_rate()
    }
}

#[derive(Default)]
struct Shared {
    status: Option<u16>,
    /// The reason phrase of the final response.
    reason: Option<String>,
    to_tag: Option<String>,
    answer: Option<String>,
    bye: bool,
    infos: Vec<String>,
    /// Callee mode: an INVITE was answered.
    answered: bool,
    /// RFC 4733 digits received (in [`Phone::listen`]), in order.
    digits: Vec<char>,
    /// Methods of the requests received, with their Refer-To when present.
    requests: Vec<(String, Option<String>)>,
    /// The last initial INVITE received (callee mode): what a BYE from this side needs.
    incoming: Option<Incoming>,
    /// Bodies of the NOTIFYs received (`message/sipfrag` of a REFER).
    notifies: Vec<String>,
    /// Final responses to requests other than INVITE: (CSeq method, status).
    responses: Vec<(String, u16)>,
    /// Re-INVITEs with an offer answered (the engine moved our media).
    reinvites: u32,
}

/// The dialog of a call the engine placed to the phone.
#[derive(Clone)]
struct Incoming {
    call_id: String,
    /// Its From (the engine's side), sent back as our To.
    from: String,
    /// Its To with our tag, sent back as our From.
    to: String,
    /// Where the INVITE came from.
    source: SocketAddr,
    /// Its headers (name as sent, value).
    headers: Vec<(String, String)>,
}

/// One call from the test to the engine.
pub struct Phone {
    sip: Arc<UdpSocket>,
    rtp: UdpSocket,
    engine: SocketAddr,
    user: String,
    /// The user part of our From URI (`phone` unless [`Phone::call_from`] sets it).
    from_user: String,
    call_id: String,
    from_tag: String,
    codec: PhoneCodec,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
    seq: u16,
    ts: u32,
    cseq: u32,
    /// Offer (or answer with) `telephone-event/8000` on payload type 101.
    telephone_event: bool,
    /// RFC 4733 receiver for the events heard in [`Phone::listen`].
    events: Mutex<EventReceiver>,
    /// SDES-SRTP: our key (offered or answered), and the contexts once the far key is known.
    srtp: Option<PhoneSrtp>,
    /// Extra header lines (`Name: value\r\n`) of our INVITE.
    extra_headers: String,
}

/// SDES-SRTP state of a [`Phone`].
struct PhoneSrtp {
    key: SrtpKey,
    tx: Option<SrtpContext>,
    rx: Mutex<Option<SrtpContext>>,
    failures: std::sync::atomic::AtomicU64,
}

impl PhoneSrtp {
    fn new(suite: SrtpSuite) -> PhoneSrtp {
        let key = SrtpKey::generate(suite).expect("random SRTP key");
        PhoneSrtp {
            tx: Some(SrtpContext::sender(&key).expect("SRTP sender")),
            key,
            rx: Mutex::new(None),
            failures: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

/// The `a=crypto` line a phone writes for its key.
fn crypto_line(tag: u32, key: &SrtpKey) -> String {
    format!(
        "a=crypto:{}\r\n",
        Crypto::new(tag, key.suite().sdes_name(), key.inline_bytes())
    )
}

/// The telephone-event payload type a [`Phone`] offers and answers with.
const EVENT_PT: u8 = 101;

/// The phone's SDP; with `crypto` (a whole `a=crypto:…\r\n` line) the profile is `RTP/SAVP`.
fn sdp_body_with(
    rtp_port: u16,
    codec: PhoneCodec,
    telephone_event: bool,
    crypto: Option<&str>,
) -> String {
    let (pt, name) = match codec {
        PhoneCodec::Pcmu => (0, "PCMU/8000"),
        PhoneCodec::G722 => (9, "G722/8000"),
    };
    let (fmt, events) = if telephone_event {
        (
            format!(" {EVENT_PT}"),
            format!("a=rtpmap:{EVENT_PT} telephone-event/8000\r\na=fmtp:{EVENT_PT} 0-15\r\n"),
        )
    } else {
        (String::new(), String::new())
    };
    let proto = if crypto.is_some() {
        "RTP/SAVP"
    } else {
        "RTP/AVP"
    };
    let crypto = crypto.unwrap_or("");
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio {rtp_port} {proto} {pt}{fmt}\r\na=rtpmap:{pt} {name}\r\n{events}a=ptime:20\r\n{crypto}"
    )
}

fn header(m: &Message, name: HeaderName) -> Option<&str> {
    match m {
        Message::Request(r) => r.headers.get(&name),
        Message::Response(r) => r.headers.get(&name),
    }
}

fn tag_of(to: &str) -> Option<String> {
    let i = to.find(";tag=")?;
    let rest = &to[i + 5..];
    Some(
        rest.split([';', ' ', '>'])
            .next()
            .unwrap_or(rest)
            .to_string(),
    )
}

impl Phone {
    /// Calls `user` on the engine at `engine` and waits (up to 15 s) for the final answer;
    /// ACKs a 2xx. Check [`Phone::status`].
    pub fn call(engine: SocketAddr, user: &str, codec: PhoneCodec) -> Phone {
        Phone::call_with(engine, user, codec, true)
    }

    /// [`Phone::call`] from `from` (the user part of the From URI, e.g. a phone number).
    pub fn call_from(engine: SocketAddr, from: &str, user: &str, codec: PhoneCodec) -> Phone {
        let mut p = Phone::new(engine, user, codec, true, "127.0.0.1:0");
        p.from_user = from.to_string();
        p.dial(None)
    }

    /// [`Phone::call`], offering `telephone-event` only when `telephone_event` (without it the
    /// engine has to hear digits in-band, and convert them for this leg).
    pub fn call_with(
        engine: SocketAddr,
        user: &str,
        codec: PhoneCodec,
        telephone_event: bool,
    ) -> Phone {
        let p = Phone::new(engine, user, codec, telephone_event, "127.0.0.1:0");
        p.dial(None)
    }

    /// [`Phone::call`] offering SDES-SRTP (`RTP/SAVP`, one `a=crypto` line with a fresh key of
    /// `suite`); once answered, what [`Phone::speak`] and [`Phone::press`] send is SRTP under
    /// that key and [`Phone::listen`] decrypts with the key of the engine's answer.
    pub fn call_srtp(engine: SocketAddr, user: &str, codec: PhoneCodec, suite: SrtpSuite) -> Phone {
        let mut p = Phone::new(engine, user, codec, true, "127.0.0.1:0");
        p.srtp = Some(PhoneSrtp::new(suite));
        p.dial(None)
    }

    /// Calls `user` with an SDP body of the test's own (`{port}` is replaced by the phone's RTP
    /// port): for offers the engine must refuse.
    pub fn call_with_sdp(engine: SocketAddr, user: &str, sdp: &str) -> Phone {
        let p = Phone::new(engine, user, PhoneCodec::Pcmu, true, "127.0.0.1:0");
        let port = p.rtp.local_addr().expect("rtp addr").port();
        let body = sdp.replace("{port}", &port.to_string());
        p.dial(Some(body))
    }

    fn dial(mut self, body: Option<String>) -> Phone {
        let p = &mut self;
        p.start_reader();
        let engine = p.engine;
        let invite = p.invite_with(body);
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut resend = Instant::now();
        let mut interval = Duration::from_millis(500);
        while Instant::now() < deadline {
            if p.status().is_some_and(|s| s >= 200) {
                break;
            }
            if Instant::now() >= resend && p.status().is_none() {
                p.sip
                    .send_to(invite.as_bytes(), engine)
                    .expect("send INVITE");
                resend = Instant::now() + interval;
                interval = (interval * 2).min(Duration::from_secs(4));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self
    }

    /// A phone waiting to be called on a free loopback port ([`Phone::sip_addr`]): it answers
    /// the first INVITE at once with 200 and its SDP (`codec`, plus `telephone-event` when
    /// asked), and 200 to every later request. [`Phone::wait_answered`] tells when a call came;
    /// then [`Phone::speak`], [`Phone::listen`] and [`Phone::press`] work as for a caller.
    /// The engine hangs it up ([`Phone::hang_up`] is for callers only).
    pub fn callee(codec: PhoneCodec, telephone_event: bool) -> Phone {
        let mut p = Phone::new(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            "callee",
            codec,
            telephone_event,
            "127.0.0.1:0",
        );
        p.start_reader();
        p
    }

    /// [`Phone::callee`] answering SDES-SRTP: it accepts the first offered `a=crypto` line of
    /// `suite` with a fresh key of its own (and answers 488 when there is none).
    pub fn callee_srtp(codec: PhoneCodec, suite: SrtpSuite) -> Phone {
        let mut p = Phone::new(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            "callee",
            codec,
            true,
            "127.0.0.1:0",
        );
        p.srtp = Some(PhoneSrtp::new(suite));
        p.start_reader();
        p
    }

    /// Where this phone receives SIP.
    pub fn sip_addr(&self) -> SocketAddr {
        self.local_sip()
    }

    /// Callee mode: waits up to `timeout` for a call to be answered.
    pub fn wait_answered(&self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if self.shared.lock().expect("lock").answered {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn new(
        engine: SocketAddr,
        user: &str,
        codec: PhoneCodec,
        telephone_event: bool,
        bind: &str,
    ) -> Phone {
        let sip = Arc::new(UdpSocket::bind(bind).expect("bind SIP"));
        sip.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let rtp = UdpSocket::bind("127.0.0.1:0").expect("bind RTP");
        rtp.set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let n: u64 = (u64::from(std::process::id()) << 32)
            ^ nanos
            ^ u64::from(rtp.local_addr().expect("addr").port());
        Phone {
            call_id: format!("phone-{n:x}@127.0.0.1"),
            from_tag: format!("pt{n:x}"),
            sip,
            rtp,
            engine,
            user: user.to_string(),
            from_user: "phone".into(),
            codec,
            shared: Arc::default(),
            stop: Arc::new(AtomicBool::new(false)),
            reader: None,
            seq: 1,
            ts: 0,
            cseq: 1,
            telephone_event,
            events: Mutex::new(EventReceiver::default()),
            srtp: None,
            extra_headers: String::new(),
        }
    }

    fn local_sip(&self) -> SocketAddr {
        self.sip.local_addr().expect("local address")
    }

    fn invite_with(&self, body: Option<String>) -> String {
        let rtp_port = self.rtp.local_addr().expect("rtp addr").port();
        let crypto = self.srtp.as_ref().map(|s| crypto_line(1, &s.key));
        let sdp = body.unwrap_or_else(|| {
            sdp_body_with(
                rtp_port,
                self.codec,
                self.telephone_event,
                crypto.as_deref(),
            )
        });
        let local = self.local_sip();
        format!(
            "INVITE sip:{user}@{engine} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{ft}i\r\n\
From: <sip:{from}@{local}>;tag={ft}\r\nTo: <sip:{user}@{engine}>\r\nCall-ID: {cid}\r\n\
CSeq: 1 INVITE\r\nContact: <sip:phone@{local}>\r\nMax-Forwards: 70\r\n{extra}\
Content-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{sdp}",
            extra = self.extra_headers,
            user = self.user,
            from = self.from_user,
            engine = self.engine,
            ft = self.from_tag,
            cid = self.call_id,
            len = sdp.len(),
        )
    }

    fn in_dialog(&self, method: &str, cseq: u32, branch: &str) -> String {
        let local = self.local_sip();
        let to_tag = self
            .shared
            .lock()
            .expect("lock")
            .to_tag
            .clone()
            .unwrap_or_default();
        format!(
            "{method} sip:{user}@{engine} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{branch}\r\n\
From: <sip:phone@{local}>;tag={ft}\r\nTo: <sip:{user}@{engine}>;tag={to_tag}\r\nCall-ID: {cid}\r\n\
CSeq: {cseq} {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            user = self.user,
            engine = self.engine,
            ft = self.from_tag,
            cid = self.call_id,
        )
    }

    fn start_reader(&mut self) {
        let rtp_port = self.rtp.local_addr().expect("rtp addr").port();
        let (codec, telephone_event) = (self.codec, self.telephone_event);
        let answer_key = self.srtp.as_ref().map(|s| s.key.clone());
        let sip = self.sip.clone();
        let shared = self.shared.clone();
        let stop = self.stop.clone();
        let ack_template = (
            self.user.clone(),
            self.engine,
            self.from_tag.clone(),
            self.call_id.clone(),
        );
        self.reader = Some(std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !stop.load(Ordering::Relaxed) {
                let Ok((n, from)) = sip.recv_from(&mut buf) else {
                    continue;
                };
                let Ok(msg) = parse_datagram(&buf[..n]) else {
                    continue;
                };
                match &msg {
                    Message::Response(r) => {
                        let is_invite =
                            header(&msg, HeaderName::CSeq).is_some_and(|c| c.ends_with("INVITE"));
                        if !is_invite {
                            if r.status >= 200 {
                                let method = header(&msg, HeaderName::CSeq)
                                    .and_then(|c| c.split_whitespace().nth(1))
                                    .unwrap_or_default()
                                    .to_string();
                                shared
                                    .lock()
                                    .expect("lock")
                                    .responses
                                    .push((method, r.status));
                            }
                            continue;
                        }
                        let mut s = shared.lock().expect("lock");
                        if s.status.is_none_or(|st| st < 200) {
                            s.status = Some(r.status);
                            s.reason = Some(r.reason.to_string());
                        }
                        if r.status >= 200 {
                            let tag = header(&msg, HeaderName::To).and_then(tag_of);
                            if s.to_tag.is_none() {
                                s.to_tag = tag.clone();
                            }
                            if !r.body.is_empty() {
                                s.answer = Some(String::from_utf8_lossy(&r.body).into_owned());
                            }
                            drop(s);
                            let (user, engine, ft, cid) = &ack_template;
                            let local = sip.local_addr().expect("local");
                            // ACK (2xx: new transaction; others: same branch as the INVITE).
                            let branch = if r.status < 300 {
                                format!("{ft}a")
                            } else {
                                format!("{ft}i")
                            };
                            let ack = format!(
                                "ACK sip:{user}@{engine} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{branch}\r\n\
From: <sip:phone@{local}>;tag={ft}\r\nTo: <sip:{user}@{engine}>;tag={tag}\r\nCall-ID: {cid}\r\n\
CSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
                                tag = tag.unwrap_or_default()
                            );
                            let _ = sip.send_to(ack.as_bytes(), from);
                        }
                    }
                    Message::Request(req) => {
                        let method = req.method.as_str().to_string();
                        if method == "ACK" {
                            continue;
                        }
                        // 200 to everything in the dialog (BYE, INFO, re-INVITE without SDP);
                        // an initial INVITE (callee mode) gets a To tag and our SDP.
                        let initial = method == "INVITE"
                            && req
                                .headers
                                .get(&HeaderName::To)
                                .is_some_and(|t| tag_of(t).is_none());
                        // SRTP callee: accept the first offered line of our suite.
                        let crypto = answer_key.as_ref().filter(|_| initial).map(|k| {
                            Sdp::parse_bytes(&req.body).ok().and_then(|o| {
                                let i = o.audio_index()?;
                                let tag = o.media[i]
                                    .crypto()
                                    .iter()
                                    .find(|c| c.suite == k.suite().sdes_name())?
                                    .tag;
                                Some(crypto_line(tag, k))
                            })
                        });
                        let status = if matches!(crypto, Some(None)) {
                            "488 Not Acceptable Here"
                        } else {
                            "200 OK"
                        };
                        let mut ok = format!("SIP/2.0 {status}\r\n");
                        for name in [
                            HeaderName::Via,
                            HeaderName::From,
                            HeaderName::To,
                            HeaderName::CallId,
                            HeaderName::CSeq,
                        ] {
                            for v in req.headers.get_all(&name) {
                                let tag = if initial && name == HeaderName::To {
                                    ";tag=callee"
                                } else {
                                    ""
                                };
                                ok.push_str(&format!("{}: {v}{tag}\r\n", name.as_str()));
                            }
                        }
                        let reinvite = method == "INVITE" && !initial && !req.body.is_empty();
                        if reinvite {
                            let local = sip.local_addr().expect("local");
                            let body = sdp_body_with(rtp_port, codec, telephone_event, None);
                            ok.push_str(&format!(
                                "Contact: <sip:phone@{local}>\r\nContent-Type: application/sdp\r\n\
Content-Length: {}\r\n\r\n{body}",
                                body.len()
                            ));
                        } else if initial && !matches!(crypto, Some(None)) {
                            let local = sip.local_addr().expect("local");
                            let body = sdp_body_with(
                                rtp_port,
                                codec,
                                telephone_event,
                                crypto.flatten().as_deref(),
                            );
                            ok.push_str(&format!(
                                "Contact: <sip:callee@{local}>\r\nContent-Type: application/sdp\r\n\
Content-Length: {}\r\n\r\n{body}",
                                body.len()
                            ));
                        } else {
                            ok.push_str("Content-Length: 0\r\n\r\n");
                        }
                        let _ = sip.send_to(ok.as_bytes(), from);
                        let mut s = shared.lock().expect("lock");
                        if initial && status.starts_with("200") {
                            s.answer = Some(String::from_utf8_lossy(&req.body).into_owned());
                            s.answered = true;
                            // A new call (a callback to a caller that was hung up on).
                            s.bye = false;
                            s.incoming = Some(Incoming {
                                call_id: req.call_id().unwrap_or_default().to_string(),
                                from: req
                                    .headers
                                    .get(&HeaderName::From)
                                    .unwrap_or_default()
                                    .to_string(),
                                to: format!(
                                    "{};tag=callee",
                                    req.headers.get(&HeaderName::To).unwrap_or_default()
                                ),
                                source: from,
                                headers: req
                                    .headers
                                    .iter()
                                    .map(|h| (h.name.as_str().to_string(), h.value.to_string()))
                                    .collect(),
                            });
                        }
                        if reinvite {
                            // The far end moved: its offer says where our RTP goes now.
                            s.answer = Some(String::from_utf8_lossy(&req.body).into_owned());
                            s.reinvites += 1;
                        }
                        if method == "NOTIFY" {
                            s.notifies
                                .push(String::from_utf8_lossy(&req.body).into_owned());
                        }
                        let refer_to = req.headers.get(&HeaderName::ReferTo).map(str::to_string);
                        s.requests.push((method.clone(), refer_to));
                        match method.as_str() {
                            "BYE" => s.bye = true,
                            "INFO" => s
                                .infos
                                .push(String::from_utf8_lossy(&req.body).into_owned()),
                            _ => {}
                        }
                    }
                }
            }
        }));
    }

    /// The final status of the INVITE, once known.
    pub fn status(&self) -> Option<u16> {
        self.shared.lock().expect("lock").status
    }

    /// The reason phrase of the INVITE's final response, once known.
    pub fn reason(&self) -> Option<String> {
        self.shared.lock().expect("lock").reason.clone()
    }

    /// Bodies of the INFO requests received.
    pub fn infos(&self) -> Vec<String> {
        self.shared.lock().expect("lock").infos.clone()
    }

    /// The requests the engine sent in the dialog: method and Refer-To (for REFER).
    pub fn requests(&self) -> Vec<(String, Option<String>)> {
        self.shared.lock().expect("lock").requests.clone()
    }

    /// The far end's SDP: the engine's answer (caller), or its offer (callee).
    pub fn remote_sdp(&self) -> Option<String> {
        self.shared.lock().expect("lock").answer.clone()
    }

    /// Where the engine wants our RTP (from its answer).
    pub fn remote_rtp(&self) -> Option<SocketAddr> {
        let answer = self.shared.lock().expect("lock").answer.clone()?;
        Sdp::parse(&answer).ok()?.audio_stream()?.rtp
    }

    /// The phone's RTP socket (for tests that speak another protocol on it, e.g. DTLS).
    pub fn rtp_socket(&self) -> &UdpSocket {
        &self.rtp
    }

    /// Whether the engine hung up (sent BYE).
    pub fn got_bye(&self) -> bool {
        self.shared.lock().expect("lock").bye
    }

    /// Receives RTP for `dur` (or until the engine hangs up) and returns the decoded audio;
    /// RFC 4733 events (payload type 101) heard meanwhile are kept for [`Phone::digits`].
    pub fn listen(&self, dur: Duration) -> Vec<i16> {
        let mut dec = self.codec.kind().codec();
        let mut out = Vec::new();
        let mut buf = [0u8; 2048];
        let t0 = Instant::now();
        let end = t0 + dur;
        let mut events = self.events.lock().expect("lock");
        while Instant::now() < end && !self.got_bye() {
            let now_ms = t0.elapsed().as_millis() as u64;
            events.handle_timeout(now_ms);
            if let Ok((n, _)) = self.rtp.recv_from(&mut buf) {
                let Some(buf) = self.unprotect(&buf[..n]) else {
                    continue;
                };
                let n = buf.len();
                let pt = buf.get(1).map_or(0, |b| b & 0x7f);
                if n >= 12 && pt == self.codec.pt() {
                    let _ = dec.decode(&buf[12..n], &mut out);
                } else if n >= 16 && pt == EVENT_PT {
                    let ts = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
                    let _ = events.push(ts, buf[1] & 0x80 != 0, &buf[12..16], now_ms);
                }
            }
            while let Some(ev) = events.poll_event() {
                self.shared
                    .lock()
                    .expect("lock")
                    .digits
                    .push(ev.digit.as_char());
            }
        }
        out
    }

    /// The RFC 4733 digits heard so far (by [`Phone::listen`]), in order.
    pub fn digits(&self) -> Vec<char> {
        self.shared.lock().expect("lock").digits.clone()
    }

    /// The far end's SDES key, from the remote SDP: the line of our suite.
    fn remote_key(&self) -> Option<SrtpKey> {
        let suite = self.srtp.as_ref()?.key.suite();
        let sdp = Sdp::parse(&self.remote_sdp()?).ok()?;
        let m = sdp.media.get(sdp.audio_index()?)?;
        let line = m
            .crypto()
            .into_iter()
            .find(|c| c.suite == suite.sdes_name())?;
        SrtpKey::from_inline(suite, &line.keys.first()?.key_salt).ok()
    }

    /// Decrypts a received packet on an SRTP phone (`None`: refused, counted); as is otherwise.
    fn unprotect(&self, packet: &[u8]) -> Option<Vec<u8>> {
        let Some(s) = &self.srtp else {
            return Some(packet.to_vec());
        };
        let mut rx = s.rx.lock().expect("lock");
        if rx.is_none() {
            *rx = self
                .remote_key()
                .and_then(|k| SrtpContext::receiver(&k).ok());
        }
        let plain = rx.as_mut().and_then(|c| c.unprotect_rtp(packet).ok());
        if plain.is_none() {
            s.failures.fetch_add(1, Ordering::Relaxed);
        }
        plain
    }

    /// Received packets that failed SRTP authentication (or came before the far key was known).
    pub fn srtp_failures(&self) -> u64 {
        self.srtp
            .as_ref()
            .map_or(0, |s| s.failures.load(Ordering::Relaxed))
    }

    /// The far end's `a=crypto` key as the phone will use it (SRTP phones; for checks that the
    /// engine used its own key).
    pub fn remote_srtp_key(&self) -> Option<Vec<u8>> {
        self.remote_key().map(|k| k.inline_bytes().to_vec())
    }

    /// This phone's own SDES key and salt (SRTP phones).
    pub fn srtp_key(&self) -> Option<Vec<u8>> {
        self.srtp.as_ref().map(|s| s.key.inline_bytes().to_vec())
    }

    /// The next RTP packet of the phone's stream (payload type of its codec), SRTP-protected on
    /// an SRTP phone; not sent (see [`Phone::send_raw`]).
    pub fn next_packet(&mut self, payload: &[u8]) -> Vec<u8> {
        let ts = self.ts;
        self.ts = self
            .ts
            .wrapping_add(self.codec.kind().timestamp_per_frame());
        self.build_rtp(self.codec.pt(), false, ts, payload)
    }

    /// Sends bytes as they are to the engine's RTP address for this call.
    pub fn send_raw(&self, packet: &[u8]) {
        if let Some(to) = self.remote_rtp() {
            let _ = self.rtp.send_to(packet, to);
        }
    }

    /// Receives for `dur` and returns the RTP packets heard (decrypted on an SRTP phone).
    pub fn listen_packets(&self, dur: Duration) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = [0u8; 2048];
        let end = Instant::now() + dur;
        while Instant::now() < end {
            if let Ok((n, _)) = self.rtp.recv_from(&mut buf) {
                if let Some(p) = self.unprotect(&buf[..n]) {
                    out.push(p);
                }
            }
        }
        out
    }

    fn build_rtp(&mut self, pt: u8, marker: bool, ts: u32, payload: &[u8]) -> Vec<u8> {
        let mut p = Vec::with_capacity(12 + payload.len());
        p.push(0x80);
        p.push(if marker { 0x80 | pt } else { pt });
        p.extend_from_slice(&self.seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&0x5eed_1234u32.to_be_bytes());
        p.extend_from_slice(payload);
        self.seq = self.seq.wrapping_add(1);
        match self.srtp.as_mut().and_then(|s| s.tx.as_mut()) {
            Some(tx) => tx.protect_rtp(&p).expect("SRTP protect"),
            None => p,
        }
    }

    fn send_rtp(&mut self, pt: u8, marker: bool, ts: u32, payload: &[u8]) {
        let Some(to) = self.remote_rtp() else { return };
        let p = self.build_rtp(pt, marker, ts, payload);
        let _ = self.rtp.send_to(&p, to);
    }

    /// Sends audio (at the codec's rate) as 20 ms packets in real time; drains what arrives
    /// meanwhile.
    pub fn speak(&mut self, pcm: &[i16]) {
        let mut enc = self.codec.kind().codec();
        let frame = self.codec.rate() as usize / 50;
        let ts_step = self.codec.kind().timestamp_per_frame();
        let start = Instant::now();
        let mut buf = [0u8; 2048];
        for (i, chunk) in pcm.chunks(frame).enumerate() {
            let mut f = chunk.to_vec();
            f.resize(frame, 0);
            let mut payload = Vec::new();
            enc.encode(&f, &mut payload);
            let ts = self.ts;
            self.send_rtp(self.codec.pt(), i == 0, ts, &payload);
            self.ts = self.ts.wrapping_add(ts_step);
            let due = start + Duration::from_millis(20 * (i as u64 + 1));
            while Instant::now() < due {
                let _ = self.rtp.recv_from(&mut buf);
            }
        }
    }

    /// Sends `d` as RFC 4733 events (payload type 101), 160 ms long.
    pub fn press(&mut self, d: char) {
        let digit = Digit::from_char(d).expect("a DTMF digit");
        let gen = EventGenerator::default();
        let start = self.ts;
        let t0 = Instant::now();
        for pk in gen.press(digit, start, 160) {
            let due = t0 + Duration::from_micros(u64::from(pk.send_offset) * 1_000_000 / 8000);
            while Instant::now() < due {
                std::thread::sleep(Duration::from_millis(1));
            }
            self.send_rtp(101, pk.marker, pk.timestamp, &pk.payload_bytes());
        }
        self.ts = self.ts.wrapping_add(8000 * 200 / 1000);
    }

    /// Hangs up (BYE) and waits briefly for the answer.
    pub fn hang_up(&mut self) {
        self.cseq += 1;
        let bye = self.in_dialog(
            "BYE",
            self.cseq,
            &format!("{}b{}", self.from_tag, self.cseq),
        );
        let _ = self.sip.send_to(bye.as_bytes(), self.engine);
        std::thread::sleep(Duration::from_millis(200));
    }

    /// Sends audio like [`Phone::speak`] while decoding what arrives, for `dur` (the audio
    /// loops): both directions at once, as a person on the phone. Returns what was heard.
    pub fn talk_and_listen(&mut self, pcm: &[i16], dur: Duration) -> Vec<i16> {
        let mut enc = self.codec.kind().codec();
        let mut dec = self.codec.kind().codec();
        let frame = self.codec.rate() as usize / 50;
        let ts_step = self.codec.kind().timestamp_per_frame();
        let frames = (dur.as_millis() / 20) as usize;
        let start = Instant::now();
        let mut heard = Vec::new();
        let mut buf = [0u8; 2048];
        for i in 0..frames {
            let at = (i * frame) % pcm.len().max(1);
            let mut f: Vec<i16> = pcm.iter().cycle().skip(at).take(frame).copied().collect();
            f.resize(frame, 0);
            let mut payload = Vec::new();
            enc.encode(&f, &mut payload);
            let ts = self.ts;
            self.send_rtp(self.codec.pt(), i == 0, ts, &payload);
            self.ts = self.ts.wrapping_add(ts_step);
            let due = start + Duration::from_millis(20 * (i as u64 + 1));
            while Instant::now() < due {
                if let Ok((n, _)) = self.rtp.recv_from(&mut buf) {
                    if n >= 12 && buf[1] & 0x7f == self.codec.pt() {
                        let _ = dec.decode(&buf[12..n], &mut heard);
                    }
                }
            }
        }
        heard
    }

    /// Callee mode: the values of header `name` (any case) in the last INVITE received.
    pub fn incoming_header(&self, name: &str) -> Vec<String> {
        self.shared
            .lock()
            .expect("lock")
            .incoming
            .as_ref()
            .map(|i| {
                i.headers
                    .iter()
                    .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Callee mode: hangs up the call the engine placed (BYE in its dialog).
    pub fn hang_up_incoming(&mut self) {
        let Some(inc) = self.shared.lock().expect("lock").incoming.clone() else {
            return;
        };
        let local = self.local_sip();
        self.cseq += 1;
        let bye = format!(
            "BYE sip:switchboard@{engine} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{ft}hb{c}\r\n\
From: {to}\r\nTo: {from}\r\nCall-ID: {cid}\r\nCSeq: {c} BYE\r\nMax-Forwards: 70\r\n\
Content-Length: 0\r\n\r\n",
            engine = inc.source,
            ft = self.from_tag,
            c = self.cseq + 100,
            to = inc.to,
            from = inc.from,
            cid = inc.call_id,
        );
        let _ = self.sip.send_to(bye.as_bytes(), inc.source);
        std::thread::sleep(Duration::from_millis(200));
    }

    /// [`Phone::call`] with extra header lines in the INVITE (each `Name: value\r\n`), e.g. a
    /// `Replaces`.
    pub fn call_with_headers(
        engine: SocketAddr,
        user: &str,
        codec: PhoneCodec,
        headers: &str,
    ) -> Phone {
        let mut p = Phone::new(engine, user, codec, true, "127.0.0.1:0");
        p.extra_headers = headers.to_string();
        p.dial(None)
    }

    /// Caller mode: our dialog as (Call-ID, our tag, the engine's tag).
    pub fn dialog_ids(&self) -> (String, String, String) {
        let to_tag = self.shared.lock().expect("lock").to_tag.clone();
        (
            self.call_id.clone(),
            self.from_tag.clone(),
            to_tag.unwrap_or_default(),
        )
    }

    /// Callee mode: the dialog of the call the engine placed, as (Call-ID, our tag, the
    /// engine's tag).
    pub fn incoming_dialog_ids(&self) -> Option<(String, String, String)> {
        let inc = self.shared.lock().expect("lock").incoming.clone()?;
        Some((inc.call_id, "callee".into(), tag_of(&inc.from)?))
    }

    /// Sends `raw` (a whole request) to the engine and waits up to 5 s for the final answer
    /// to `method`.
    fn request_and_wait(&self, raw: &str, to: SocketAddr, method: &str) -> Option<u16> {
        let before = self.responses_to(method).len();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut resend = Instant::now();
        while Instant::now() < deadline {
            if let Some(s) = self.responses_to(method).get(before) {
                return Some(*s);
            }
            if Instant::now() >= resend {
                let _ = self.sip.send_to(raw.as_bytes(), to);
                resend = Instant::now() + Duration::from_millis(500);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// The final statuses received for requests with `method`, in order.
    pub fn responses_to(&self, method: &str) -> Vec<u16> {
        self.shared
            .lock()
            .expect("lock")
            .responses
            .iter()
            .filter(|(m, _)| m == method)
            .map(|(_, s)| *s)
            .collect()
    }

    /// Caller mode: sends a REFER in our call with `refer_to` (the whole header value) and
    /// `extra` header lines; returns the final status.
    pub fn refer(&mut self, refer_to: &str, extra: &str) -> Option<u16> {
        self.cseq += 1;
        let base = self.in_dialog(
            "REFER",
            self.cseq,
            &format!("{}r{}", self.from_tag, self.cseq),
        );
        let local = self.local_sip();
        let raw = base.replacen(
            "Content-Length: 0\r\n",
            &format!("Refer-To: {refer_to}\r\nContact: <sip:phone@{local}>\r\n{extra}Content-Length: 0\r\n"),
            1,
        );
        self.request_and_wait(&raw, self.engine, "REFER")
    }

    /// Callee mode: sends a REFER in the call the engine placed; returns the final status.
    pub fn refer_incoming(&mut self, refer_to: &str, extra: &str) -> Option<u16> {
        let inc = self.shared.lock().expect("lock").incoming.clone()?;
        let local = self.local_sip();
        self.cseq += 1;
        let raw = format!(
            "REFER sip:switchboard@{engine} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{ft}hr{c}\r\n\
From: {to}\r\nTo: {from}\r\nCall-ID: {cid}\r\nCSeq: {c} REFER\r\nMax-Forwards: 70\r\n\
Contact: <sip:callee@{local}>\r\nRefer-To: {refer_to}\r\n{extra}Content-Length: 0\r\n\r\n",
            engine = inc.source,
            ft = self.from_tag,
            c = self.cseq + 100,
            to = inc.to,
            from = inc.from,
            cid = inc.call_id,
        );
        self.request_and_wait(&raw, inc.source, "REFER")
    }

    /// Bodies of the NOTIFYs received (the sipfrag of each).
    pub fn notifies(&self) -> Vec<String> {
        self.shared.lock().expect("lock").notifies.clone()
    }

    /// Waits up to `timeout` for a NOTIFY whose body contains `text`.
    pub fn wait_notify(&self, text: &str, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if self.notifies().iter().any(|n| n.contains(text)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// How many re-INVITEs with SDP the phone answered (the engine moving its media).
    pub fn reinvites(&self) -> u32 {
        self.shared.lock().expect("lock").reinvites
    }

    /// Waits up to `timeout` for the engine's BYE.
    pub fn wait_bye(&self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if self.got_bye() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Phone {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// RMS level of a signal in dBFS (−inf for silence).
pub fn level_dbfs(pcm: &[i16]) -> f64 {
    if pcm.is_empty() {
        return f64::NEG_INFINITY;
    }
    let sum: f64 = pcm.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    let rms = (sum / pcm.len() as f64).sqrt();
    20.0 * (rms / 32768.0).log10()
}
