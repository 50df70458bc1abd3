//! Reliable provisional responses (RFC 3262, option tag `100rel`): the sans-IO state of both
//! roles a B2BUA plays. No sockets, no clock: the caller passes `now` and transmits what comes
//! back.
//!
//! * [`ReliableUas`]: the side that answers an INVITE. It decides whether a provisional goes
//!   reliably (the caller's `Require` / `Supported`), stamps `Require: 100rel` and `RSeq`, keeps
//!   one reliable provisional outstanding at a time (§3), retransmits it with T1 back-off
//!   (`poll_timeout` / `handle_timeout`) until the matching PRACK arrives (`on_prack`), and gives
//!   up after 64·T1 (the INVITE then gets a 5xx).
//! * [`ReliableUac`]: the side that sent an INVITE. It tells a new reliable provisional (to be
//!   PRACKed, with the `RAck` value to send) from a retransmission or an out-of-order one (§4).
//!
//! Order of calls on [`ReliableUas`]: [`ReliableUas::provisional`] for each 1xx to send,
//! [`ReliableUas::on_prack`] for each PRACK, [`ReliableUas::handle_timeout`] whenever
//! [`ReliableUas::poll_timeout`] is due, [`ReliableUas::final_sent`] once the INVITE got its
//! final answer.

use crate::sip::grammar::split_list;
use crate::sip::{HeaderName, Headers, Method, Request, Response, SipHeaders};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The option tag of RFC 3262.
pub const OPTION_TAG: &str = "100rel";

/// Reliable provisionals waiting behind the outstanding one; more are dropped (a peer that
/// never PRACKs must not grow memory).
const MAX_QUEUED: usize = 8;

/// How far the sender of an INVITE takes an option tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerSupport {
    /// Neither in Supported nor in Require.
    None,
    /// In Supported: we may use it.
    Supported,
    /// In Require: we must use it.
    Required,
}

/// True when the comma-separated header `name` of `headers` lists `tag` (case-insensitive).
pub fn lists_tag(headers: &Headers, name: &HeaderName, tag: &str) -> bool {
    headers
        .get_all(name)
        .flat_map(|v| split_list(v).unwrap_or_default())
        .any(|t| t.trim().eq_ignore_ascii_case(tag))
}

/// How the sender of `headers` takes `tag`: Require wins over Supported.
pub fn support_of(headers: &Headers, tag: &str) -> PeerSupport {
    if lists_tag(headers, &HeaderName::Require, tag) {
        PeerSupport::Required
    } else if lists_tag(headers, &HeaderName::Supported, tag) {
        PeerSupport::Supported
    } else {
        PeerSupport::None
    }
}

/// The RSeq of a reliable provisional: a 101–199 with `Require: 100rel` and a valid `RSeq`
/// (1 to 2³¹−1). `None` for any other response.
pub fn rseq_of(resp: &Response) -> Option<u32> {
    if !(101..200).contains(&resp.status)
        || !lists_tag(&resp.headers, &HeaderName::Require, OPTION_TAG)
    {
        return None;
    }
    let n: u32 = resp.headers.get(&HeaderName::RSeq)?.trim().parse().ok()?;
    (1..=0x7fff_ffff).contains(&n).then_some(n)
}

/// The `RAck` of a PRACK: `(rseq, cseq number, method)`.
pub fn parse_rack(value: &str) -> Option<(u32, u32, Method)> {
    let mut it = value.split_ascii_whitespace();
    let rseq = it.next()?.parse().ok()?;
    let cseq = it.next()?.parse().ok()?;
    let method = Method::from_token(it.next()?);
    it.next().is_none().then_some((rseq, cseq, method))
}

/// The reliable provisional waiting for its PRACK.
#[derive(Debug)]
struct Unacked {
    resp: Response,
    rseq: u32,
    interval: Duration,
    next: Instant,
    give_up: Instant,
}

/// What [`ReliableUas::handle_timeout`] asks for.
#[derive(Debug, PartialEq)]
pub enum UasAction {
    /// Transmit this response again.
    Retransmit(Response),
    /// No PRACK within 64·T1: reject the INVITE with a 5xx (RFC 3262 §3).
    GiveUp,
}

/// Why a PRACK was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum PrackError {
    /// No RAck, or one that does not parse: 400.
    BadRack,
    /// It acknowledges no outstanding reliable provisional: 481 (§3).
    NoMatch,
}

/// The answering side of an INVITE: reliable provisionals it sends (see the module doc).
#[derive(Debug)]
pub struct ReliableUas {
    support: PeerSupport,
    invite_cseq: u32,
    t1: Duration,
    next_rseq: u32,
    unacked: Option<Unacked>,
    queue: VecDeque<Response>,
    done: bool,
}

impl ReliableUas {
    /// The state for answering `invite`, with the SIP timer T1.
    pub fn new(invite: &Request, t1: Duration) -> ReliableUas {
        ReliableUas::with_first_rseq(invite, t1, rand::random::<u32>() % 0x1000_0000 + 1)
    }

    /// [`ReliableUas::new`] with a chosen first RSeq (tests).
    pub fn with_first_rseq(invite: &Request, t1: Duration, first: u32) -> ReliableUas {
        ReliableUas {
            support: support_of(&invite.headers, OPTION_TAG),
            invite_cseq: invite.cseq().map_or(1, |c| c.0),
            t1,
            next_rseq: first.clamp(1, 0x7fff_ffff),
            unacked: None,
            queue: VecDeque::new(),
            done: false,
        }
    }

    /// How the caller takes 100rel.
    pub fn support(&self) -> PeerSupport {
        self.support
    }

    /// Whether a provisional goes reliably: always when the caller requires 100rel; when it
    /// only supports it, when the provisional we relay was itself reliable (`upstream`).
    pub fn wants_reliable(&self, upstream: bool) -> bool {
        match self.support {
            PeerSupport::Required => true,
            PeerSupport::Supported => upstream,
            PeerSupport::None => false,
        }
    }

    /// A 1xx (not 100) to send. Unreliable ones go at once; a reliable one gets `Require:
    /// 100rel` and the next `RSeq`, and goes at once unless another is still unacknowledged,
    /// then it waits its turn (sent from [`ReliableUas::on_prack`]). Returns what to transmit.
    pub fn provisional(
        &mut self,
        now: Instant,
        resp: Response,
        reliable: bool,
    ) -> Option<Response> {
        if self.done || !(101..200).contains(&resp.status) {
            return None;
        }
        if !reliable {
            return Some(resp);
        }
        if self.unacked.is_some() {
            if self.queue.len() < MAX_QUEUED {
                self.queue.push_back(resp);
            }
            return None;
        }
        Some(self.send_reliable(now, resp))
    }

    fn send_reliable(&mut self, now: Instant, mut resp: Response) -> Response {
        let rseq = self.next_rseq;
        self.next_rseq = self.next_rseq.wrapping_add(1).clamp(1, 0x7fff_ffff);
        if !lists_tag(&resp.headers, &HeaderName::Require, OPTION_TAG) {
            resp.headers.push(HeaderName::Require, OPTION_TAG);
        }
        resp.headers.set(HeaderName::RSeq, rseq.to_string());
        self.unacked = Some(Unacked {
            resp: resp.clone(),
            rseq,
            interval: self.t1,
            next: now + self.t1,
            give_up: now + self.t1 * 64,
        });
        resp
    }

    /// A PRACK for this INVITE. `Ok` means answer it 200, and transmit the next queued
    /// reliable provisional if there is one.
    pub fn on_prack(
        &mut self,
        now: Instant,
        prack: &Request,
    ) -> Result<Option<Response>, PrackError> {
        let (rseq, cseq, method) = prack
            .headers
            .get(&HeaderName::RAck)
            .and_then(parse_rack)
            .ok_or(PrackError::BadRack)?;
        let matches = self.unacked.as_ref().is_some_and(|u| u.rseq == rseq)
            && cseq == self.invite_cseq
            && method == Method::Invite;
        if !matches {
            return Err(PrackError::NoMatch);
        }
        self.unacked = None;
        Ok(match self.queue.pop_front() {
            Some(next) if !self.done => Some(self.send_reliable(now, next)),
            _ => None,
        })
    }

    /// When [`ReliableUas::handle_timeout`] next has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.unacked.as_ref().map(|u| u.next.min(u.give_up))
    }

    /// Runs the retransmission timer at `now`.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<UasAction> {
        let u = self.unacked.as_mut()?;
        if now >= u.give_up {
            self.unacked = None;
            self.queue.clear();
            self.done = true;
            return Some(UasAction::GiveUp);
        }
        if now < u.next {
            return None;
        }
        u.interval *= 2;
        u.next = now + u.interval;
        Some(UasAction::Retransmit(u.resp.clone()))
    }

    /// The INVITE got its final response: retransmissions stop, queued provisionals are dropped.
    pub fn final_sent(&mut self) {
        self.done = true;
        self.unacked = None;
        self.queue.clear();
    }

    /// True while a reliable provisional waits for its PRACK.
    pub fn awaiting_prack(&self) -> bool {
        self.unacked.is_some()
    }
}

/// What a provisional response means to the side that sent the INVITE.
#[derive(Debug, PartialEq, Eq)]
pub enum UacVerdict {
    /// An ordinary provisional: use it.
    Unreliable,
    /// A new reliable provisional: use it and PRACK it with this `RAck` value.
    Prack {
        /// The `RAck` header value.
        rack: String,
    },
    /// A retransmission of one already acknowledged, or one out of order: drop it.
    Ignore,
}

/// The calling side of an INVITE: the reliable provisionals it has acknowledged, per early
/// dialog (To tag).
#[derive(Debug, Default)]
pub struct ReliableUac {
    last: Vec<(String, u32)>,
}

impl ReliableUac {
    /// A provisional response to the INVITE with CSeq number `invite_cseq`.
    pub fn on_provisional(&mut self, resp: &Response, invite_cseq: u32) -> UacVerdict {
        let Some(rseq) = rseq_of(resp) else {
            return UacVerdict::Unreliable;
        };
        let tag = resp.to_tag().unwrap_or_default();
        match self.last.iter_mut().find(|(t, _)| *t == tag) {
            Some((_, last)) if rseq == last.wrapping_add(1) => *last = rseq,
            Some(_) => return UacVerdict::Ignore,
            None => {
                if self.last.len() >= MAX_QUEUED {
                    return UacVerdict::Ignore;
                }
                self.last.push((tag, rseq));
            }
        }
        UacVerdict::Prack {
            rack: format!("{rseq} {invite_cseq} INVITE"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::build::response;
    use crate::sip::{parse_datagram, Message};

    fn invite(extra: &str) -> Request {
        let raw = format!(
            "INVITE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKa\r\n\
From: <sip:a@x>;tag=1\r\nTo: <sip:bob@x>\r\nCall-ID: c1\r\nCSeq: 7 INVITE\r\n{extra}\
Content-Length: 0\r\n\r\n"
        );
        match parse_datagram(raw.as_bytes()) {
            Ok(Message::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    fn prack(rack: &str) -> Request {
        let raw = format!(
            "PRACK sip:sb@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKp\r\n\
From: <sip:a@x>;tag=1\r\nTo: <sip:bob@x>;tag=2\r\nCall-ID: c1\r\nCSeq: 8 PRACK\r\n\
RAck: {rack}\r\nContent-Length: 0\r\n\r\n"
        );
        match parse_datagram(raw.as_bytes()) {
            Ok(Message::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    const T1: Duration = Duration::from_millis(500);

    #[test]
    fn support_from_require_and_supported() {
        let s = |h| ReliableUas::new(&invite(h), T1).support();
        assert_eq!(s(""), PeerSupport::None);
        assert_eq!(s("Supported: timer, 100REL\r\n"), PeerSupport::Supported);
        assert_eq!(s("k: 100rel\r\nRequire: 100rel\r\n"), PeerSupport::Required);
        let u = ReliableUas::new(&invite("Supported: 100rel\r\n"), T1);
        assert!(u.wants_reliable(true) && !u.wants_reliable(false));
        let u = ReliableUas::new(&invite("Require: 100rel\r\n"), T1);
        assert!(u.wants_reliable(false));
    }

    #[test]
    fn reliable_provisional_is_retransmitted_until_pracked() {
        let inv = invite("Require: 100rel\r\n");
        let mut u = ReliableUas::with_first_rseq(&inv, T1, 41);
        let t0 = Instant::now();
        let sent = u.provisional(t0, response(&inv, 183), true).expect("sent");
        assert_eq!(rseq_of(&sent), Some(41));
        // A second one waits for the first PRACK.
        assert_eq!(u.provisional(t0, response(&inv, 180), true), None);
        // T1, 2·T1, 4·T1 … back-off.
        assert_eq!(u.poll_timeout(), Some(t0 + T1));
        assert_eq!(u.handle_timeout(t0 + T1 / 2), None);
        assert!(
            matches!(u.handle_timeout(t0 + T1), Some(UasAction::Retransmit(r)) if r.status == 183)
        );
        assert_eq!(u.poll_timeout(), Some(t0 + T1 * 3));
        // A PRACK for another RSeq or CSeq is 481.
        assert_eq!(
            u.on_prack(t0, &prack("40 7 INVITE")),
            Err(PrackError::NoMatch)
        );
        assert_eq!(
            u.on_prack(t0, &prack("41 6 INVITE")),
            Err(PrackError::NoMatch)
        );
        assert_eq!(u.on_prack(t0, &prack("41 x")), Err(PrackError::BadRack));
        // The right one releases the queued 180 with the next RSeq.
        let next = u
            .on_prack(t0, &prack("41 7 INVITE"))
            .expect("ok")
            .expect("queued");
        assert_eq!((next.status, rseq_of(&next)), (180, Some(42)));
        // A repeated PRACK matches nothing now.
        assert_eq!(
            u.on_prack(t0, &prack("41 7 INVITE")),
            Err(PrackError::NoMatch)
        );
        u.final_sent();
        assert_eq!(u.poll_timeout(), None);
        assert_eq!(u.provisional(t0, response(&inv, 180), false), None);
    }

    #[test]
    fn gives_up_after_64_t1() {
        let inv = invite("Supported: 100rel\r\n");
        let mut u = ReliableUas::new(&inv, T1);
        let t0 = Instant::now();
        assert!(u.provisional(t0, response(&inv, 183), true).is_some());
        let mut retransmits = 0;
        let now = loop {
            let now = u.poll_timeout().expect("armed");
            match u.handle_timeout(now) {
                Some(UasAction::Retransmit(_)) => retransmits += 1,
                Some(UasAction::GiveUp) => break now,
                None => {}
            }
        };
        assert_eq!(now, t0 + T1 * 64);
        assert_eq!(retransmits, 6); // at 1, 3, 7, 15, 31, 63 T1
        assert!(!u.awaiting_prack());
    }

    #[test]
    fn unreliable_when_not_asked() {
        let inv = invite("");
        let mut u = ReliableUas::new(&inv, T1);
        let r = u
            .provisional(Instant::now(), response(&inv, 180), false)
            .expect("sent");
        assert!(r.headers.get(&HeaderName::RSeq).is_none());
        assert_eq!(u.poll_timeout(), None);
    }

    #[test]
    fn uac_pracks_each_new_rseq_once() {
        let inv = invite("");
        let mut r = response(&inv, 183);
        r.headers.set(HeaderName::To, "<sip:bob@x>;tag=b1");
        r.headers.push(HeaderName::Require, "100rel");
        r.headers.push(HeaderName::RSeq, "5");
        let mut c = ReliableUac::default();
        assert_eq!(
            c.on_provisional(&r, 7),
            UacVerdict::Prack {
                rack: "5 7 INVITE".into()
            }
        );
        assert_eq!(c.on_provisional(&r, 7), UacVerdict::Ignore);
        r.headers.set(HeaderName::RSeq, "7");
        assert_eq!(c.on_provisional(&r, 7), UacVerdict::Ignore);
        r.headers.set(HeaderName::RSeq, "6");
        assert!(matches!(c.on_provisional(&r, 7), UacVerdict::Prack { .. }));
        r.headers.set(HeaderName::RSeq, "0");
        assert_eq!(c.on_provisional(&r, 7), UacVerdict::Unreliable);
        let plain = response(&inv, 180);
        assert_eq!(c.on_provisional(&plain, 7), UacVerdict::Unreliable);
    }

    #[test]
    fn rack_parses_strictly() {
        assert_eq!(parse_rack("1 2 INVITE"), Some((1, 2, Method::Invite)));
        assert_eq!(parse_rack(" 1  2 INVITE "), Some((1, 2, Method::Invite)));
        assert_eq!(parse_rack("1 2"), None);
        assert_eq!(parse_rack("1 2 INVITE x"), None);
        assert_eq!(parse_rack("-1 2 INVITE"), None);
    }
}
