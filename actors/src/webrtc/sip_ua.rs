//! The SIP side of a browser leg: a minimal UAC that places the browser's call into the engine
//! over loopback UDP, exactly as a SIP phone would (INVITE with the leg's plain RTP address
//! and the browser's Opus and `telephone-event` payload types, ACK, BYE both ways, CANCEL).
//!
//! Going through the engine's own SIP listener is deliberate: the call then runs the dialplan,
//! gets a `CallActor`, a CDR, transcoding and DTMF from the media plane, and every feature of a
//! SIP caller, with no second call path to keep in step. The leg's socket is registered as a
//! trusted source for the lifetime of the task ([`super::GatewayGuard`]), so the engine does not
//! challenge it.
//!
//! The task ends (BYE, or CANCEL while ringing) when its [`UaHandle`] is dropped, which is what
//! makes the browser leg's actor safe to lose: whatever kills the actor hangs up the SIP side.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use switchboard_engine::sip::build::response;
use switchboard_engine::sip::{parse_datagram, HeaderName, Message, Method, Request, SipHeaders};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

/// What the SIP side reports to the browser leg.
#[derive(Debug)]
pub enum UaEvent {
    /// 180/183 from the engine.
    Ringing,
    /// 2xx: the engine's SDP.
    Answered {
        /// The answer body.
        sdp: String,
    },
    /// A final failure before answer.
    Failed {
        /// The status (408 when nothing answered).
        status: u16,
        /// Its reason phrase.
        reason: String,
    },
    /// The engine hung up (BYE).
    Bye,
}

/// Who receives [`UaEvent`]s (called from the media runtime).
pub type UaEvents = Arc<dyn Fn(UaEvent) + Send + Sync>;

/// What the call needs.
pub struct UaCall {
    /// The engine's SIP UDP address.
    pub engine: SocketAddr,
    /// The leg id, used as Call-ID and as the caller's user part.
    pub leg_id: String,
    /// The number or user dialled (the Request-URI's user part).
    pub to: String,
    /// The plain RTP address of the leg.
    pub rtp: SocketAddr,
    /// The browser's Opus payload type.
    pub opus_pt: u8,
    /// The browser's `telephone-event/48000` payload type, if any.
    pub event_pt: Option<u8>,
}

/// Hangs up when dropped.
pub struct UaHandle {
    hangup: mpsc::UnboundedSender<()>,
}

impl UaHandle {
    /// Hangs up (BYE when answered, CANCEL while ringing).
    pub fn hang_up(&self) {
        let _ = self.hangup.send(());
    }
}

/// Starts the call on the current tokio runtime.
pub async fn start(
    call: UaCall,
    events: UaEvents,
    guard: super::GatewayGuard,
    socket: UdpSocket,
) -> UaHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let _guard = guard;
        let mut ua = Ua::new(call, socket);
        ua.run(events, rx).await;
    });
    UaHandle { hangup: tx }
}

/// Builds the SDP offer for the engine.
fn offer_sdp(call: &UaCall, sess: u64) -> String {
    let ip = call.rtp.ip();
    let mut fmts = call.opus_pt.to_string();
    let mut maps = format!(
        "a=rtpmap:{} opus/48000/2\r\na=fmtp:{} minptime=10;useinbandfec=1\r\n",
        call.opus_pt, call.opus_pt
    );
    if let Some(ev) = call.event_pt {
        fmts.push_str(&format!(" {ev}"));
        maps.push_str(&format!(
            "a=rtpmap:{ev} telephone-event/48000\r\na=fmtp:{ev} 0-15\r\n"
        ));
    }
    format!(
        "v=0\r\no=switchboard-webrtc {sess} {sess} IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {} RTP/AVP {fmts}\r\n{maps}a=ptime:20\r\na=sendrecv\r\n",
        call.rtp.port()
    )
}

struct Ua {
    call: UaCall,
    socket: UdpSocket,
    local: SocketAddr,
    from_tag: String,
    branch: String,
    sdp: String,
    /// The engine's To tag and Contact, once answered.
    dialog: Option<(String, String)>,
    cseq: u32,
}

fn token() -> String {
    format!("{:016x}", rand::random::<u64>())
}

impl Ua {
    fn new(call: UaCall, socket: UdpSocket) -> Ua {
        let local = socket
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        let sdp = offer_sdp(&call, rand::random::<u32>() as u64);
        Ua {
            call,
            socket,
            local,
            from_tag: token(),
            branch: format!("z9hG4bK{}", token()),
            sdp,
            dialog: None,
            cseq: 1,
        }
    }

    fn caller_header(&self) -> String {
        format!(
            "<sip:{}@{}>;tag={}",
            self.call.leg_id,
            self.local.ip(),
            self.from_tag
        )
    }

    fn callee_header(&self) -> String {
        let base = format!("<sip:{}@{}>", self.call.to, self.call.engine);
        match &self.dialog {
            Some((tag, _)) => format!("{base};tag={tag}"),
            None => base,
        }
    }

    fn request(&self, method: &str, uri: &str, branch: &str, cseq: u32, body: &str) -> Vec<u8> {
        let ctype = if body.is_empty() {
            String::new()
        } else {
            "Content-Type: application/sdp\r\n".into()
        };
        format!(
            "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch={branch};rport\r\n\
             Max-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\n\
             Contact: <sip:{}@{}>\r\nUser-Agent: switchboard-webrtc\r\n{ctype}\
             Content-Length: {}\r\n\r\n{body}",
            self.local,
            self.caller_header(),
            self.callee_header(),
            self.call.leg_id,
            self.call.leg_id,
            self.local,
            body.len()
        )
        .into_bytes()
    }

    fn invite(&self) -> Vec<u8> {
        let uri = format!("sip:{}@{}", self.call.to, self.call.engine);
        self.request("INVITE", &uri, &self.branch, 1, &self.sdp)
    }

    async fn send(&self, bytes: &[u8]) {
        if let Err(e) = self.socket.send_to(bytes, self.call.engine).await {
            tracing::debug!(error = %e, "webrtc leg: SIP send failed");
        }
    }

    /// The next SIP message (bad datagrams are skipped), or `None` at `until`.
    async fn recv(&self, until: Instant) -> Option<Message> {
        let mut buf = vec![0u8; 65536];
        loop {
            let r = tokio::select! {
                r = self.socket.recv_from(&mut buf) => r,
                _ = sleep_until(until) => return None,
            };
            let Ok((n, _)) = r else { return None };
            if let Ok(m) = parse_datagram(&buf[..n]) {
                return Some(m);
            }
        }
    }

    async fn answer_request(&self, req: &Request) {
        let mut r = response(req, 200);
        if matches!(req.method, Method::Invite | Method::Update) {
            r.headers.push(HeaderName::ContentType, "application/sdp");
            r.headers.push(
                HeaderName::Contact,
                format!("<sip:{}@{}>", self.call.leg_id, self.local),
            );
            r.body = bytes::Bytes::from(self.sdp.clone());
        }
        self.send(&r.to_bytes()).await;
    }

    fn ack(&mut self) -> Vec<u8> {
        let target = self
            .dialog
            .as_ref()
            .map(|d| d.1.clone())
            .unwrap_or_default();
        self.request("ACK", &target, &format!("z9hG4bK{}", token()), 1, "")
    }

    async fn run(&mut self, events: UaEvents, mut hangup: mpsc::UnboundedReceiver<()>) {
        let invite = self.invite();
        self.send(&invite).await;
        let started = Instant::now();
        let mut rto = Duration::from_millis(500);
        let mut next_retx = Some(started + rto);
        let give_up = started + Duration::from_secs(180);
        let mut ringing = false;
        let mut cancelled = false;
        // Calling.
        loop {
            let wake = next_retx.unwrap_or(give_up).min(give_up);
            let msg = tokio::select! {
                m = self.recv(wake) => m,
                h = hangup.recv(), if !cancelled => {
                    let _ = h;
                    cancelled = true;
                    let uri = format!("sip:{}@{}", self.call.to, self.call.engine);
                    let cancel = self.request("CANCEL", &uri, &self.branch.clone(), 1, "");
                    self.send(&cancel).await;
                    continue;
                }
            };
            let Some(msg) = msg else {
                if Instant::now() >= give_up {
                    events(UaEvent::Failed {
                        status: 408,
                        reason: "Request Timeout".into(),
                    });
                    return;
                }
                if !ringing {
                    self.send(&invite).await;
                    rto = (rto * 2).min(Duration::from_secs(4));
                    next_retx = Some(Instant::now() + rto);
                } else {
                    next_retx = None;
                }
                continue;
            };
            let Message::Response(resp) = msg else {
                if let Message::Request(req) = msg {
                    if req.method != Method::Ack {
                        self.send(&response(&req, 481).to_bytes()).await;
                    }
                }
                continue;
            };
            if !matches!(resp.cseq(), Some((1, Method::Invite))) {
                continue;
            }
            match resp.status {
                100..=199 => {
                    ringing = true;
                    if resp.status != 100 {
                        events(UaEvent::Ringing);
                    }
                }
                200..=299 => {
                    let tag = resp.to_tag().unwrap_or_default();
                    let contact = resp
                        .headers
                        .get(&HeaderName::Contact)
                        .and_then(|c| switchboard_engine::sip::grammar::parse_name_addr(c).ok())
                        .map(|n| n.uri)
                        .unwrap_or_else(|| format!("sip:{}@{}", self.call.to, self.call.engine));
                    self.dialog = Some((tag, contact));
                    let ack = self.ack();
                    self.send(&ack).await;
                    if cancelled {
                        self.bye().await;
                        return;
                    }
                    events(UaEvent::Answered {
                        sdp: String::from_utf8_lossy(&resp.body).into_owned(),
                    });
                    break;
                }
                _ => {
                    // ACK for a failure: same branch, the response's To.
                    let uri = format!("sip:{}@{}", self.call.to, self.call.engine);
                    let to = resp.headers.get(&HeaderName::To).unwrap_or("").to_string();
                    let ack = format!(
                        "ACK {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch={};rport\r\n\
                         Max-Forwards: 70\r\nFrom: {}\r\nTo: {to}\r\nCall-ID: {}\r\n\
                         CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
                        self.local,
                        self.branch,
                        self.caller_header(),
                        self.call.leg_id
                    );
                    self.send(ack.as_bytes()).await;
                    events(UaEvent::Failed {
                        status: resp.status,
                        reason: resp.reason.clone(),
                    });
                    return;
                }
            }
        }
        // Confirmed.
        let forever = || Instant::now() + Duration::from_secs(3600);
        loop {
            let msg = tokio::select! {
                m = self.recv(forever()) => m,
                _ = hangup.recv() => {
                    // Dropped handle or hang-up: BYE.
                    self.bye().await;
                    return;
                }
            };
            match msg {
                Some(Message::Request(req)) => {
                    if req.method == Method::Ack {
                        continue;
                    }
                    self.answer_request(&req).await;
                    if req.method == Method::Bye {
                        events(UaEvent::Bye);
                        return;
                    }
                }
                // A retransmitted 2xx: ACK again.
                Some(Message::Response(resp))
                    if (200..300).contains(&resp.status)
                        && matches!(resp.cseq(), Some((1, Method::Invite))) =>
                {
                    let ack = self.ack();
                    self.send(&ack).await;
                }
                Some(Message::Response(_)) | None => {}
            }
        }
    }

    /// Sends BYE and waits (at most 4 s, retransmitting) for its answer.
    async fn bye(&mut self) {
        self.cseq += 1;
        let target = self
            .dialog
            .as_ref()
            .map(|d| d.1.clone())
            .unwrap_or_default();
        let cseq = self.cseq;
        let bye = self.request("BYE", &target, &format!("z9hG4bK{}", token()), cseq, "");
        let end = Instant::now() + Duration::from_secs(4);
        let mut rto = Duration::from_millis(500);
        self.send(&bye).await;
        loop {
            let wake = (Instant::now() + rto).min(end);
            match self.recv(wake).await {
                Some(Message::Response(r))
                    if r.status >= 200 && r.cseq() == Some((cseq, Method::Bye)) =>
                {
                    return
                }
                Some(Message::Request(req)) if req.method != Method::Ack => {
                    self.answer_request(&req).await;
                }
                Some(_) => {}
                None => {
                    if Instant::now() >= end {
                        return;
                    }
                    self.send(&bye).await;
                    rto = (rto * 2).min(Duration::from_secs(4));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offer_names_the_leg_address_and_the_browser_payload_types() {
        let call = UaCall {
            engine: "127.0.0.1:5060".parse().expect("addr"),
            leg_id: "wrtc-1".into(),
            to: "740".into(),
            rtp: "127.0.0.1:40000".parse().expect("addr"),
            opus_pt: 111,
            event_pt: Some(110),
        };
        let sdp = offer_sdp(&call, 7);
        assert!(sdp.contains("m=audio 40000 RTP/AVP 111 110\r\n"), "{sdp}");
        assert!(sdp.contains("a=rtpmap:111 opus/48000/2\r\n"));
        assert!(sdp.contains("a=rtpmap:110 telephone-event/48000\r\n"));
        let parsed = switchboard_engine::sdp::Sdp::parse(&sdp).expect("valid SDP");
        let audio = parsed.audio_stream().expect("audio");
        assert_eq!(audio.rtp, Some(call.rtp));
    }
}
