//! What the UAC and UAS state machines share: the sans-IO interface the worker shell drives,
//! the engine's transaction layer underneath, and the SDP they offer or answer.

use crate::stats::Counters;
use bytes::Bytes;
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;
use switchboard_engine::sip::{parse_datagram, Message};
use switchboard_engine::transaction::{
    LayerConfig, Peer, TimerConfig, TransactionLayer, Transmit, TransportKind,
};

/// A media stream to start or stop, for the RTP pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MediaEvent {
    /// Start streaming to `remote` for call `call` (answer/ACK done).
    Start {
        /// The call's number in this worker.
        call: u64,
        /// Where the far side wants RTP.
        remote: SocketAddr,
        /// The payload type to send.
        payload_type: u8,
    },
    /// Send these digits as RFC 4733 events (100 ms each, 60 ms apart) in the call's stream.
    Dtmf {
        /// The call's number in this worker.
        call: u64,
        /// The digits (0-9, *, #, A-D; others are skipped).
        digits: String,
    },
    /// The call ended: stop its stream and report its quality.
    Stop {
        /// The call's number in this worker.
        call: u64,
    },
}

/// The sans-IO interface of a load agent (UAC or UAS), driven by a worker thread. Call order
/// per loop: `handle_datagram` for each message received, `handle_timeout` when
/// `poll_timeout` has passed (or when new calls may be due), then drain `poll_transmit` and
/// `poll_media`.
pub trait Agent: Send {
    /// A datagram arrived from `from`.
    fn handle_datagram(&mut self, now: Instant, data: &[u8], from: SocketAddr);
    /// Time passed: fire timers, start due calls.
    fn handle_timeout(&mut self, now: Instant);
    /// The next datagram to send.
    fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)>;
    /// The next datagram to send, written into `buf` (whatever it held is replaced): its
    /// destination. Agents that can encode in place override it so the shell reuses one
    /// buffer instead of allocating one per datagram.
    fn poll_transmit_into(&mut self, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        let (dest, bytes) = self.poll_transmit()?;
        *buf = bytes;
        Some(dest)
    }
    /// The next media change.
    fn poll_media(&mut self) -> Option<MediaEvent>;
    /// When `handle_timeout` must run next.
    fn poll_timeout(&self) -> Option<Instant>;
    /// Stop starting calls; end the live ones as the scenario allows.
    fn drain(&mut self, now: Instant);
    /// True when nothing is left to do (bound reached and no live call).
    fn finished(&self) -> bool;
    /// Counts every live call as unfinished (the run's hard deadline passed).
    fn abandon(&mut self);
}

/// The transaction layer with the shell-facing plumbing both agents need.
#[derive(Debug)]
pub struct Sip {
    /// The engine's sans-IO transaction layer.
    pub layer: TransactionLayer,
    /// Our SIP address (Via, Contact).
    pub local: SocketAddr,
    /// Shared counters.
    pub counters: Arc<Counters>,
    /// Media changes waiting for the shell.
    pub media: VecDeque<MediaEvent>,
    /// Requests handed to the layer by the TU (the rest of what it transmits, apart from ACKs
    /// and responses, are retransmissions).
    requests_sent: u64,
    /// Non-ACK requests the layer transmitted.
    requests_transmitted: u64,
}

impl Sip {
    /// A layer with the given T1 (ms), at `local`.
    pub fn new(local: SocketAddr, t1_ms: u64, counters: Arc<Counters>) -> Sip {
        let timers = TimerConfig {
            t1: std::time::Duration::from_millis(t1_ms.max(1)),
            ..TimerConfig::default()
        };
        let cfg = LayerConfig {
            timers,
            // A load generator answers at once; no delayed 100 needed.
            trying_delay: std::time::Duration::from_secs(3600),
            ..LayerConfig::default()
        };
        Sip {
            layer: TransactionLayer::with_config(cfg),
            local,
            counters,
            media: VecDeque::new(),
            requests_sent: 0,
            requests_transmitted: 0,
        }
    }

    /// Parses a datagram; counts and drops what does not parse.
    pub fn parse(&self, data: &[u8]) -> Option<Message> {
        match parse_datagram(data) {
            Ok(m) => Some(m),
            Err(_) => {
                self.counters
                    .bad_messages
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                None
            }
        }
    }

    /// Parses a datagram from `from` and hands it to the transaction layer. Requests the layer
    /// refuses (overloaded, malformed) are dropped: the peer retransmits or gives up.
    pub fn receive(&mut self, now: Instant, data: &[u8], from: SocketAddr) {
        let Some(msg) = self.parse(data) else {
            return;
        };
        let peer = Peer::new(TransportKind::Udp, from);
        match msg {
            Message::Request(r) => {
                let _ = self.layer.handle_request(now, r, peer);
            }
            Message::Response(r) => self.layer.handle_response(now, r, peer),
        }
    }

    /// Notes that the TU handed a new request to the layer.
    pub fn count_request(&mut self) {
        self.requests_sent += 1;
    }

    /// The next datagram, counting request retransmissions.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        let mut buf = Vec::new();
        let dest = self.poll_transmit_into(&mut buf)?;
        Some((dest, buf))
    }

    /// The next datagram encoded into `buf` (cleared first), counting request
    /// retransmissions; its destination.
    pub fn poll_transmit_into(&mut self, buf: &mut Vec<u8>) -> Option<SocketAddr> {
        let Transmit { dest, message } = self.layer.poll_transmit()?;
        if let Message::Request(r) = &message {
            if r.method != switchboard_engine::sip::Method::Ack {
                self.requests_transmitted += 1;
                if self.requests_transmitted > self.requests_sent {
                    self.requests_sent += 1;
                    self.counters
                        .retransmissions
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
        buf.clear();
        message.encode(buf);
        Some(dest.addr)
    }
}

/// A map keyed by numbers this process hands out itself (call numbers, transaction ids):
/// never network input, so a one-multiply hash is safe, and much cheaper than SipHash.
pub type IdMap<V> = std::collections::HashMap<u64, V, std::hash::BuildHasherDefault<IdHasher>>;

/// A map keyed by Call-ID (text from the network): foldhash, seeded per process, far cheaper
/// than the standard SipHash.
pub type CallIdMap<V> = std::collections::HashMap<String, V, foldhash::fast::RandomState>;

/// The hasher of [`IdMap`]: a Fibonacci multiply (the map takes its bucket from the low bits
/// and its control byte from the high ones; both are well spread for consecutive ids).
#[derive(Clone, Copy, Debug, Default)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29)
    }
}

/// The earliest of some optional instants (the next timer of several sources).
pub fn earliest(times: impl IntoIterator<Item = Option<Instant>>) -> Option<Instant> {
    times.into_iter().flatten().min()
}

/// The SDP body offered (UAC) or answered (UAS): one PCMU/PCMA audio stream at `media`.
pub fn sdp_body(session: u64, media: SocketAddr, payload_type: u8) -> Bytes {
    SdpTemplate::new(media, payload_type).body(session)
}

/// The start of every [`sdp_body`], up to the session id.
const SDP_HEAD: &str = "v=0\r\no=switchboard-load ";

/// [`sdp_body`] for one media address and payload type, with everything after the session id
/// written once: a body is then one allocation and two copies.
#[derive(Clone, Debug)]
pub struct SdpTemplate {
    media: SocketAddr,
    payload_type: u8,
    tail: String,
}

impl SdpTemplate {
    /// The template of `sdp_body(_, media, payload_type)`.
    pub fn new(media: SocketAddr, payload_type: u8) -> SdpTemplate {
        let ip = media.ip();
        let v = if ip.is_ipv4() { "IP4" } else { "IP6" };
        let name = if payload_type == 8 { "PCMA" } else { "PCMU" };
        let tail = format!(
            " 1 IN {v} {ip}\r\ns=-\r\nc=IN {v} {ip}\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP {payload_type} 101\r\na=rtpmap:{payload_type} {name}/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n",
            port = media.port()
        );
        SdpTemplate {
            media,
            payload_type,
            tail,
        }
    }

    /// True when this is the template of `(media, payload_type)`.
    pub fn is_for(&self, media: SocketAddr, payload_type: u8) -> bool {
        self.media == media && self.payload_type == payload_type
    }

    /// The body with this session id.
    pub fn body(&self, session: u64) -> Bytes {
        let mut b = Vec::with_capacity(SDP_HEAD.len() + 20 + self.tail.len());
        b.extend_from_slice(SDP_HEAD.as_bytes());
        push_decimal(&mut b, session);
        b.extend_from_slice(self.tail.as_bytes());
        Bytes::from(b)
    }
}

/// Appends `n` in decimal, as `format!("{n}")` writes it.
pub fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Where the far side wants audio (the first audio m-line with a port) and the payload type
/// to send (PCMU or PCMA, as listed first), from an SDP body.
pub fn remote_audio(body: &[u8]) -> Option<(SocketAddr, u8)> {
    let text = std::str::from_utf8(body).ok()?;
    let sdp = switchboard_engine::sdp::Sdp::parse(text).ok()?;
    let m = sdp
        .media
        .iter()
        .find(|m| m.media == "audio" && m.port != 0)?;
    let ip: IpAddr = m
        .connection
        .as_ref()
        .or(sdp.connection.as_ref())
        .and_then(|c| c.ip())?;
    let pt = m
        .formats
        .iter()
        .filter_map(|f| f.parse::<u8>().ok())
        .find(|pt| *pt == 0 || *pt == 8)?;
    Some((SocketAddr::new(ip, m.port), pt))
}

/// [`remote_audio`] remembered for the last offer: the offers of one UAC differ only in the
/// session id of their `o=` line, which `remote_audio`'s answer does not depend on (the SDP
/// parser keeps it as an opaque token), so the next offer that matches the last one byte for
/// byte outside that token (a run of digits) gets the same answer without being parsed.
#[derive(Debug, Default)]
pub struct RemoteAudioMemo {
    last: Option<Remembered>,
}

/// One offer remembered by [`RemoteAudioMemo`].
#[derive(Debug)]
struct Remembered {
    /// The offer up to its session id.
    head: Vec<u8>,
    /// The offer after its session id.
    tail: Vec<u8>,
    /// What `remote_audio` said.
    answer: Option<(SocketAddr, u8)>,
}

impl RemoteAudioMemo {
    /// What `remote_audio(body)` returns.
    pub fn remote_audio(&mut self, body: &[u8]) -> Option<(SocketAddr, u8)> {
        let Some((start, end)) = session_id_span(body) else {
            return remote_audio(body);
        };
        let (head, tail) = (&body[..start], &body[end..]);
        if let Some(r) = &self.last {
            if r.head == head && r.tail == tail {
                return r.answer;
            }
        }
        let answer = remote_audio(body);
        self.last = Some(Remembered {
            head: head.to_vec(),
            tail: tail.to_vec(),
            answer,
        });
        answer
    }
}

/// Where the session id of an SDP body is: the second field of the first line that starts
/// with `o=` (lines split at LF, as the SDP parser splits them), when that field is a run of
/// ASCII digits (so that any other run of digits in its place leaves every other field and
/// line as it was).
fn session_id_span(body: &[u8]) -> Option<(usize, usize)> {
    let mut line_start = 0;
    while line_start < body.len() {
        let line_end = memchr_lf(&body[line_start..]).map_or(body.len(), |i| line_start + i);
        let line = &body[line_start..line_end];
        if line.starts_with(b"o=") {
            let mut i = line_start + 2;
            // The first field (user name), then the second (session id).
            let mut field = 0;
            loop {
                while i < line_end && body[i].is_ascii_whitespace() {
                    i += 1;
                }
                let start = i;
                while i < line_end && !body[i].is_ascii_whitespace() {
                    i += 1;
                }
                if start == i {
                    return None;
                }
                if field == 1 {
                    let digits = &body[start..i];
                    return digits.iter().all(u8::is_ascii_digit).then_some((start, i));
                }
                field += 1;
            }
        }
        line_start = line_end + 1;
    }
    None
}

fn memchr_lf(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_writes_what_format_writes() {
        for (addr, pt) in [("127.0.0.1:40000", 0), ("[::1]:6000", 8)] {
            let addr: SocketAddr = addr.parse().expect("addr");
            for session in [0, 7, 1234567890123, u64::MAX] {
                let ip = addr.ip();
                let v = if ip.is_ipv4() { "IP4" } else { "IP6" };
                let name = if pt == 8 { "PCMA" } else { "PCMU" };
                let expected = format!(
                    "v=0\r\no=switchboard-load {session} 1 IN {v} {ip}\r\ns=-\r\nc=IN {v} {ip}\r\nt=0 0\r\n\
                     m=audio {port} RTP/AVP {pt} 101\r\na=rtpmap:{pt} {name}/8000\r\n\
                     a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n",
                    port = addr.port()
                );
                assert_eq!(sdp_body(session, addr, pt), expected.as_bytes());
            }
        }
    }

    #[test]
    fn memo_answers_as_remote_audio() {
        let a: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
        let b: SocketAddr = "127.0.0.2:40002".parse().expect("addr");
        let mut memo = RemoteAudioMemo::default();
        let mut bodies: Vec<Vec<u8>> = Vec::new();
        for (session, addr, pt) in [(1, a, 0), (22, a, 0), (333, a, 8), (4, b, 8), (5, b, 0)] {
            bodies.push(sdp_body(session, addr, pt).to_vec());
        }
        let odd = [
            &b"garbage"[..],
            b"",
            b"v=0\r\no=x 12 1 IN IP4 1.2.3.4\r\ns=-\r\nm=audio 4 RTP/AVP 0\r\n",
            b"v=0\r\no=x 13 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nm=audio 4 RTP/AVP 0\r\n",
            b"v=0\r\no=x 13 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nm=audio 4 RTP/AVP 8\r\n",
            b"v=0\r\no=x 1a 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nm=audio 4 RTP/AVP 8\r\n",
            b"v=0\r\no=x 14\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nm=audio 4 RTP/AVP 8\r\n",
            b"o=x 15 1 IN IP4 1.2.3.4\r\n",
        ];
        bodies.extend(odd.iter().map(|b| b.to_vec()));
        for body in bodies.iter().chain(bodies.iter().rev()) {
            assert_eq!(memo.remote_audio(body), remote_audio(body), "{body:?}");
        }
    }

    #[test]
    fn offered_sdp_reads_back() {
        let addr: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
        let body = sdp_body(7, addr, 8);
        assert_eq!(remote_audio(&body), Some((addr, 8)));
        assert_eq!(remote_audio(b"garbage"), None);
    }
}
