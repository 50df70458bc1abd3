//! Session timers (RFC 4028, option tag `timer`): the sans-IO negotiation of an INVITE the
//! engine answers ([`negotiate_uas`]) and the timer of the resulting dialog ([`SessionTimer`]).
//! No sockets, no clock: the caller passes `now`.
//!
//! Order of calls on [`SessionTimer`]: [`SessionTimer::refreshed`] after every 2xx to a
//! re-INVITE or UPDATE of the dialog (either direction), [`SessionTimer::handle_timeout`]
//! whenever [`SessionTimer::poll_timeout`] is due. When the engine is the refresher,
//! `handle_timeout` asks for a refresh at half the interval; whoever refreshes, no refresh by
//! the interval minus min(32 s, interval/3) means the session expired (§10).

use crate::prack::{lists_tag, support_of, PeerSupport};
use crate::sip::{HeaderName, Request};
use std::time::{Duration, Instant};

/// The option tag of RFC 4028.
pub const OPTION_TAG: &str = "timer";

/// Who sends the refreshes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refresher {
    /// The caller (the UAC of the INVITE).
    Uac,
    /// The answerer (here: the engine).
    Uas,
}

impl Refresher {
    /// `uac` / `uas`.
    pub fn as_str(self) -> &'static str {
        match self {
            Refresher::Uac => "uac",
            Refresher::Uas => "uas",
        }
    }
}

/// A parsed `Session-Expires` value (`1800;refresher=uac`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionExpires {
    /// The interval in seconds.
    pub delta: u32,
    /// The `refresher` parameter, when present.
    pub refresher: Option<Refresher>,
}

/// Parses a `Session-Expires` value; `None` when it is malformed.
pub fn parse_session_expires(value: &str) -> Option<SessionExpires> {
    let mut parts = value.split(';');
    let delta = parts.next()?.trim().parse().ok()?;
    let mut refresher = None;
    for p in parts {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        if k.trim().eq_ignore_ascii_case("refresher") {
            refresher = match v.trim().to_ascii_lowercase().as_str() {
                "uac" => Some(Refresher::Uac),
                "uas" => Some(Refresher::Uas),
                _ => return None,
            };
        }
    }
    Some(SessionExpires { delta, refresher })
}

/// Parses a `Min-SE` value (a delta, parameters ignored).
pub fn parse_min_se(value: &str) -> Option<u32> {
    value.split(';').next()?.trim().parse().ok()
}

/// What the engine does with the session timer of an INVITE it answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UasDecision {
    /// No session timer on this dialog.
    Off,
    /// Use one: the 2xx carries `Session-Expires: interval;refresher=…`, plus `Require: timer`
    /// when `require` (the caller supports the extension).
    On {
        /// The interval in seconds.
        interval: u32,
        /// Who refreshes.
        refresher: Refresher,
        /// Whether the 2xx says `Require: timer`.
        require: bool,
    },
    /// The requested interval is below our minimum: 422 with `Min-SE: min_se` (§9).
    TooSmall {
        /// Our minimum, for the Min-SE header of the 422.
        min_se: u32,
    },
    /// `Session-Expires` or `Min-SE` does not parse: 400.
    Malformed,
}

/// RFC 4028 §9, as the answerer of `invite` whose own preference is `session_expires`
/// seconds (0: use a timer only when the caller asks) and whose minimum is `min_se`.
/// A caller that supports `timer` refreshes when it did not choose; one that does not gets
/// the engine as refresher.
pub fn negotiate_uas(invite: &Request, session_expires: u32, min_se: u32) -> UasDecision {
    let uac_supports = support_of(&invite.headers, OPTION_TAG) != PeerSupport::None;
    let asked = match invite.headers.get(&HeaderName::SessionExpires) {
        Some(v) => match parse_session_expires(v) {
            Some(se) => Some(se),
            None => return UasDecision::Malformed,
        },
        None => None,
    };
    let their_min = match invite.headers.get(&HeaderName::MinSe) {
        Some(v) => match parse_min_se(v) {
            Some(m) => m,
            None => return UasDecision::Malformed,
        },
        None => 0,
    };
    let floor = min_se.max(their_min);
    let (interval, chosen) = match asked {
        Some(se) if se.delta < min_se => return UasDecision::TooSmall { min_se },
        Some(se) => {
            let ours = if session_expires > 0 {
                se.delta.min(session_expires)
            } else {
                se.delta
            };
            (ours.max(floor), se.refresher)
        }
        None if session_expires == 0 => return UasDecision::Off,
        None => (session_expires.max(floor), None),
    };
    let refresher = match chosen {
        Some(r) if uac_supports || r == Refresher::Uas => r,
        _ if uac_supports => Refresher::Uac,
        _ => Refresher::Uas,
    };
    UasDecision::On {
        interval,
        refresher,
        require: uac_supports,
    }
}

/// True when `headers` list `timer` in Supported or Require.
pub fn supports(headers: &crate::sip::Headers) -> bool {
    lists_tag(headers, &HeaderName::Supported, OPTION_TAG)
        || lists_tag(headers, &HeaderName::Require, OPTION_TAG)
}

/// What [`SessionTimer::handle_timeout`] asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerAction {
    /// Send a refresh (UPDATE or re-INVITE) now.
    Refresh,
    /// No refresh in time: end the session (BYE).
    Expired,
}

/// The session timer of one dialog (see the module doc).
#[derive(Clone, Debug)]
pub struct SessionTimer {
    interval: Duration,
    we_refresh: bool,
    last: Instant,
    refresh_pending: bool,
}

impl SessionTimer {
    /// A timer of `interval_secs` starting at `now` (the 2xx of the INVITE); `we_refresh` when
    /// the engine is the refresher.
    pub fn new(now: Instant, interval_secs: u32, we_refresh: bool) -> SessionTimer {
        SessionTimer {
            interval: Duration::from_secs(u64::from(interval_secs.max(1))),
            we_refresh,
            last: now,
            refresh_pending: false,
        }
    }

    /// The interval in seconds.
    pub fn interval_secs(&self) -> u64 {
        self.interval.as_secs()
    }

    /// True when the engine refreshes.
    pub fn we_refresh(&self) -> bool {
        self.we_refresh
    }

    /// A refresh succeeded (2xx to a re-INVITE or UPDATE): the interval starts again.
    pub fn refreshed(&mut self, now: Instant) {
        self.last = now;
        self.refresh_pending = false;
    }

    fn expiry(&self) -> Instant {
        let margin = (self.interval / 3).min(Duration::from_secs(32));
        self.last + (self.interval - margin)
    }

    /// When [`SessionTimer::handle_timeout`] next has something to do.
    pub fn poll_timeout(&self) -> Instant {
        if self.we_refresh && !self.refresh_pending {
            self.last + self.interval / 2
        } else {
            self.expiry()
        }
    }

    /// Runs the timer at `now`.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<TimerAction> {
        if now >= self.expiry() {
            return Some(TimerAction::Expired);
        }
        if self.we_refresh && !self.refresh_pending && now >= self.last + self.interval / 2 {
            self.refresh_pending = true;
            return Some(TimerAction::Refresh);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

    #[test]
    fn parses_values() {
        assert_eq!(
            parse_session_expires("1800;refresher=UAC"),
            Some(SessionExpires {
                delta: 1800,
                refresher: Some(Refresher::Uac)
            })
        );
        assert_eq!(
            parse_session_expires(" 90 ").map(|s| (s.delta, s.refresher)),
            Some((90, None))
        );
        assert_eq!(parse_session_expires("x"), None);
        assert_eq!(parse_session_expires("90;refresher=me"), None);
        assert_eq!(parse_min_se("120;x=1"), Some(120));
    }

    #[test]
    fn negotiation_follows_rfc4028_section_9() {
        let n = |h: &str| negotiate_uas(&invite(h), 1800, 90);
        // Too small: 422 with our Min-SE.
        assert_eq!(
            n("Session-Expires: 60\r\n"),
            UasDecision::TooSmall { min_se: 90 }
        );
        // The caller's choice is kept; the interval is capped at ours.
        assert_eq!(
            n("Supported: timer\r\nSession-Expires: 3600;refresher=uas\r\n"),
            UasDecision::On {
                interval: 1800,
                refresher: Refresher::Uas,
                require: true
            }
        );
        // A caller supporting timer without a choice refreshes itself.
        assert_eq!(
            n("Supported: timer\r\nSession-Expires: 600\r\nMin-SE: 300\r\n"),
            UasDecision::On {
                interval: 600,
                refresher: Refresher::Uac,
                require: true
            }
        );
        // Without support (a proxy added Session-Expires) the engine refreshes, no Require.
        assert_eq!(
            n("Session-Expires: 600;refresher=uac\r\n"),
            UasDecision::On {
                interval: 600,
                refresher: Refresher::Uas,
                require: false
            }
        );
        // Nothing asked: our interval, with us as refresher.
        assert_eq!(
            n(""),
            UasDecision::On {
                interval: 1800,
                refresher: Refresher::Uas,
                require: false
            }
        );
        assert_eq!(negotiate_uas(&invite(""), 0, 90), UasDecision::Off);
        // The caller's Min-SE is a floor for a shorter interval of ours.
        assert_eq!(
            negotiate_uas(
                &invite("Session-Expires: 900\r\nMin-SE: 600\r\nk: timer\r\n"),
                300,
                90
            ),
            UasDecision::On {
                interval: 600,
                refresher: Refresher::Uac,
                require: true
            }
        );
        assert_eq!(n("Session-Expires: soon\r\n"), UasDecision::Malformed);
    }

    #[test]
    fn refresher_refreshes_at_half_and_expires_without_answer() {
        let t0 = Instant::now();
        let mut t = SessionTimer::new(t0, 90, true);
        assert_eq!(t.poll_timeout(), t0 + Duration::from_secs(45));
        assert_eq!(t.handle_timeout(t0 + Duration::from_secs(44)), None);
        assert_eq!(
            t.handle_timeout(t0 + Duration::from_secs(45)),
            Some(TimerAction::Refresh)
        );
        // The refresh is outstanding: next is the expiry (90 − 30 s).
        assert_eq!(t.poll_timeout(), t0 + Duration::from_secs(60));
        t.refreshed(t0 + Duration::from_secs(46));
        assert_eq!(t.poll_timeout(), t0 + Duration::from_secs(91));
        assert_eq!(
            t.handle_timeout(t0 + Duration::from_secs(91)),
            Some(TimerAction::Refresh)
        );
        assert_eq!(
            t.handle_timeout(t0 + Duration::from_secs(106)),
            Some(TimerAction::Expired)
        );
    }

    #[test]
    fn other_side_refreshes_or_the_session_expires() {
        let t0 = Instant::now();
        let mut t = SessionTimer::new(t0, 1800, false);
        // 1800 − 32 s.
        assert_eq!(t.poll_timeout(), t0 + Duration::from_secs(1768));
        t.refreshed(t0 + Duration::from_secs(900));
        assert_eq!(t.handle_timeout(t0 + Duration::from_secs(1768)), None);
        assert_eq!(
            t.handle_timeout(t0 + Duration::from_secs(2668)),
            Some(TimerAction::Expired)
        );
        // Short test intervals: 3 s expires at 2 s.
        let t = SessionTimer::new(t0, 3, false);
        assert_eq!(t.poll_timeout(), t0 + Duration::from_secs(2));
    }
}
