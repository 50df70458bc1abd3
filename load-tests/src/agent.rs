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
        Some((dest.addr, message.to_bytes()))
    }
}

/// The earliest of some optional instants (the next timer of several sources).
pub fn earliest(times: impl IntoIterator<Item = Option<Instant>>) -> Option<Instant> {
    times.into_iter().flatten().min()
}

/// The SDP body offered (UAC) or answered (UAS): one PCMU/PCMA audio stream at `media`.
pub fn sdp_body(session: u64, media: SocketAddr, payload_type: u8) -> Bytes {
    let ip = media.ip();
    let v = if ip.is_ipv4() { "IP4" } else { "IP6" };
    let name = if payload_type == 8 { "PCMA" } else { "PCMU" };
    Bytes::from(format!(
        "v=0\r\no=switchboard-load {session} 1 IN {v} {ip}\r\ns=-\r\nc=IN {v} {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP {payload_type} 101\r\na=rtpmap:{payload_type} {name}/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n",
        port = media.port()
    ))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offered_sdp_reads_back() {
        let addr: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
        let body = sdp_body(7, addr, 8);
        assert_eq!(remote_audio(&body), Some((addr, 8)));
        assert_eq!(remote_audio(b"garbage"), None);
    }
}
