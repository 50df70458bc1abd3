//! The call actor's dialplan side: a [`Session`] of the pure evaluator decides, this module
//! carries its commands out with the call's media plane (`RelaySession`: play, DTMF, record,
//! speech fork, echo, bridge) and SIP (answer, dial, hang up, REFER), and feeds the outcome back
//! as the next [`Event`].
//!
//! One command runs at a time ([`Running`]); media events (digits, end of a prompt) and timers
//! are matched against it and ignored when stale (each prompt has its own id).

use super::srtp;
use super::CallActor;
use crate::registrar::{aor_key, Binding, Lookup};
use actix::prelude::*;
use bytes::Bytes;
use std::collections::VecDeque;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use switchboard_dialplans::{
    CallFacts, Command as PlanCommand, Decision, DialTarget, EndReason, Event, Gather, Prompt,
    RecordSessionOp, Session, Source, Strategy,
};
use switchboard_engine::sdp::{answer_offer, endpoint_offer, Codec, Format, Sdp, OFFER_CODECS};
use switchboard_engine::sip::{HeaderName, Method, SipHeaders};
use switchboard_engine::transaction::{Peer, TransportKind};
use switchboard_media::asr::{AsrEngine, AsrEvent, Grammar};
use switchboard_media::codec::CodecKind;
use switchboard_media::dtmf::Digit;
use switchboard_media::prompt::{tone, PromptCache, ToneKind};
use switchboard_media::tts::Tts;
use switchboard_media::{Leg, LegFormat, MediaEvent, Pcm, Route};

/// What the IVR side of every call shares: the plan in force, prompt and TTS caches, the
/// recogniser, where recordings go.
pub struct IvrTools {
    /// The dialplan in force.
    pub dialplans: Arc<crate::dialplan::Dialplans>,
    /// Decoded prompt files.
    pub prompts: Arc<PromptCache>,
    /// Text to speech.
    pub tts: Arc<dyn Tts>,
    /// TTS voice (engine default when `None`).
    pub tts_voice: Option<String>,
    /// Speech recognition, when available.
    pub asr: Option<Arc<dyn AsrEngine>>,
    /// Where `record` writes (`<data>/recordings`).
    pub recordings_dir: PathBuf,
    /// Music on hold for queued callers.
    pub music_on_hold: Option<PathBuf>,
    /// Longest wait for a webhook's answer.
    pub webhook_timeout: Duration,
}

/// The command being carried out.
pub(super) enum Running {
    /// Nothing (between commands).
    Idle,
    /// A prompt (play or say): `ActionCompleted` when it ends.
    Play { id: u64 },
    /// Echo until the caller hangs up.
    Echo,
    /// Collecting digits (and maybe speech).
    Gather(Box<GatherState>),
    /// Recording the caller.
    Record(Box<RecordState>),
    /// Calling targets; `ActionCompleted` after the bridge ends.
    Dial {
        /// Targets not tried yet (sequence strategy).
        rest: VecDeque<DialTarget>,
        /// Ring time per attempt.
        timeout: Duration,
        /// Set once a leg answered.
        bridged: bool,
    },
    /// Waiting for a webhook.
    Webhook,
    /// A blind transfer (REFER) in progress, or a recording being closed.
    Transfer,
    /// Waiting in a contact-centre queue (see `queue.rs`).
    Queue,
    /// Supervising another call (see `supervise.rs`).
    Monitor,
}

pub(super) struct GatherState {
    g: Gather,
    digits: String,
    prompt: Option<u64>,
    timer: Option<SpawnHandle>,
    speech_stop: Option<Arc<AtomicBool>>,
}

pub(super) struct RecordState {
    path: PathBuf,
    relative: String,
    terminator: Option<char>,
    beep: Option<u64>,
    max: Duration,
    started: bool,
    timer: Option<SpawnHandle>,
}

/// The dialplan state of one call.
pub(super) struct Ivr {
    pub(super) session: Session,
    pub(super) running: Running,
    next_id: u64,
    /// A's negotiated format when the engine answered A itself.
    pub(super) a_format: Option<LegFormat>,
    /// The last dial failure, answered to an unanswered caller when the plan ends.
    pub(super) last_failure: Option<(u16, String)>,
    /// The trunk side of the dial in progress (gateways left, the trunk slot held).
    pub(super) trunk: Option<Box<super::trunk_dial::TrunkDial>>,
    /// The caller ID the running dial asked for.
    pub(super) dial_caller_id: Option<String>,
}

/// A digit from the caller (RFC 4733, in-band or SIP INFO).
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct MediaMsg(pub MediaEvent);

/// A recogniser result for the gather running now.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct SpeechMsg(pub AsrEvent);

fn now_local() -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::<chrono::Utc>::from(SystemTime::now()).fixed_offset()
}

fn user_part(uri: &str) -> String {
    let s = uri.trim().trim_start_matches('<');
    let s = s
        .strip_prefix("sips:")
        .or_else(|| s.strip_prefix("sip:"))
        .or_else(|| s.strip_prefix("tel:"))
        .unwrap_or(s);
    let end = s.find(['@', ';', '>', '?']).unwrap_or(s.len());
    // `end` is at an ASCII delimiter (or the end): a char boundary.
    let has_user = s.get(end..end + 1) == Some("@") || uri.contains("tel:");
    if has_user {
        s.get(..end).unwrap_or_default().to_string()
    } else {
        String::new()
    }
}

/// The media crate's codec for an SDP format (rtpmap clock and channels decide Opus/G.722).
pub(super) fn leg_format(codec: &Format, dtmf: Option<u8>) -> Option<LegFormat> {
    let kind = match &codec.rtpmap {
        Some(m) => CodecKind::from_sdp(&m.encoding, m.clock_rate, m.channels.unwrap_or(1) as u8),
        None => CodecKind::from_static_payload_type(codec.payload_type),
    }?;
    Some(LegFormat {
        codec: kind,
        payload_type: codec.payload_type,
        dtmf_payload_type: dtmf,
    })
}

/// A recordings path must stay under the recordings folder: relative, no `..`.
fn safe_relative(p: &str) -> Option<PathBuf> {
    let path = Path::new(p);
    let ok = !p.is_empty()
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    ok.then(|| path.to_path_buf())
}

fn digit_char(d: Digit) -> char {
    d.as_char()
}

impl CallActor {
    /// Starts the dialplan for this call, when one is configured. Returns false without one (the
    /// caller then routes to the registered user as a plain B2BUA).
    pub(super) fn start_dialplan(&mut self, ctx: &mut Context<Self>) -> bool {
        let Some(plan) = self.setup.services.ivr.dialplans.current() else {
            return false;
        };
        let inv = &self.setup.invite;
        let called = user_part(&inv.uri);
        let calling = inv
            .headers
            .get(&HeaderName::From)
            .map(user_part)
            .unwrap_or_default();
        let source = match (&self.setup.trunk, &self.authenticated_user) {
            (Some(t), _) => Source::Trunk(t.trunk().name.clone()),
            (None, Some(u)) => Source::User {
                name: u.clone(),
                groups: Vec::new(),
            },
            (None, None) => Source::Unknown,
        };
        let mut facts = CallFacts::new(called, calling).from_source(source);
        for h in inv.headers.iter() {
            facts = facts.with_header(h.name.as_str(), h.value.as_str());
        }
        let mut session = Session::new(plan, facts);
        session.set_var("call_id", inv.call_id().unwrap_or_default());
        self.ivr = Some(Box::new(Ivr {
            session,
            running: Running::Idle,
            next_id: 0,
            a_format: None,
            last_failure: None,
            trunk: None,
            dial_caller_id: None,
        }));
        if let Some(relay) = &self.relay {
            if let Some(mut rx) = relay.take_events() {
                let addr = ctx.address();
                actix_rt::spawn(async move {
                    while let Some(ev) = rx.recv().await {
                        if addr.try_send(MediaMsg(ev)).is_err() {
                            break;
                        }
                    }
                });
            }
        }
        self.step(ctx, Event::Started);
        true
    }

    /// Feeds an event to the evaluator and carries out what it decides, until a command needs
    /// to wait for something.
    pub(super) fn step(&mut self, ctx: &mut Context<Self>, event: Event) {
        let mut event = Some(event);
        while let Some(ev) = event.take() {
            if self.ended {
                return;
            }
            if matches!(
                self.ivr.as_ref().map(|i| &i.running),
                Some(Running::Monitor)
            ) {
                self.stop_monitoring();
            }
            let Some(ivr) = self.ivr.as_mut() else { return };
            ivr.running = Running::Idle;
            // A running survey (`csat.rs`) takes the outcomes of its own commands.
            let ev = match self.survey_event(ctx, ev) {
                Ok(next) => {
                    event = next;
                    continue;
                }
                Err(ev) => ev,
            };
            let Some(ivr) = self.ivr.as_mut() else { return };
            let decision = ivr.session.handle(&now_local(), ev);
            match decision {
                Decision::Execute(cmd) => event = self.execute(ctx, cmd),
                Decision::Wait => {}
                Decision::End(reason) => self.plan_ended(ctx, reason),
            }
        }
    }

    fn plan_ended(&mut self, ctx: &mut Context<Self>, reason: EndReason) {
        tracing::debug!(?reason, "dialplan ended");
        if self.ended {
            return;
        }
        if !self.a_final {
            let failure = self.ivr.as_ref().and_then(|i| i.last_failure.clone());
            let (code, phrase, cause) = match (&reason, failure) {
                (EndReason::NoRoute, _) => (
                    404,
                    "Not Found (no dialplan route)".to_string(),
                    "not_found",
                ),
                (EndReason::StepLimit | EndReason::Error(_), _) => (
                    500,
                    "Server Internal Error (dialplan)".into(),
                    "internal_error",
                ),
                (_, Some((code, phrase))) => {
                    let cause = match code {
                        486 | 600 => "busy",
                        408 | 480 => "no_answer",
                        404 => "not_found",
                        _ => "rejected",
                    };
                    (code, phrase, cause)
                }
                _ => (480, "Temporarily Unavailable".into(), "no_answer"),
            };
            let r = self.a_response(code, Some(&phrase));
            return self.fail_a(ctx, r, cause);
        }
        let cause = match reason {
            EndReason::CallerHungUp => "normal_clearing",
            EndReason::StepLimit | EndReason::Error(_) => "internal_error",
            _ => "normal_clearing",
        };
        self.hang_up(ctx, cause);
    }

    fn next_id(&mut self) -> u64 {
        match self.ivr.as_mut() {
            Some(i) => {
                i.next_id += 1;
                i.next_id
            }
            None => 0,
        }
    }

    fn set_running(&mut self, r: Running) {
        if let Some(i) = self.ivr.as_mut() {
            i.running = r;
        }
    }

    /// Carries out one command; `Some(event)` when it completed at once.
    pub(super) fn execute(&mut self, ctx: &mut Context<Self>, cmd: PlanCommand) -> Option<Event> {
        tracing::debug!(?cmd, "dialplan command");
        match cmd {
            PlanCommand::Answer => {
                if let Err(e) = self.answer_here(ctx) {
                    return self.media_failure(ctx, &e);
                }
                Some(Event::ActionCompleted)
            }
            PlanCommand::Echo => {
                if let Err(e) = self.answer_here(ctx) {
                    return self.media_failure(ctx, &e);
                }
                if let Some(r) = &self.relay {
                    r.set_route(Leg::A, Route::Echo);
                }
                self.set_running(Running::Echo);
                None
            }
            PlanCommand::Hangup {
                code,
                cause,
                reason,
            } => {
                if !self.a_final {
                    let code = code.filter(|c| (300..700).contains(c)).unwrap_or(480);
                    let r = self.a_response(code, reason.as_deref());
                    let cause = cause.unwrap_or_else(|| "rejected".into());
                    self.fail_a(ctx, r, &cause);
                } else {
                    let cause = cause.unwrap_or_else(|| "normal_clearing".into());
                    self.hang_up(ctx, &cause);
                }
                None
            }
            PlanCommand::Play { media, loops } => {
                self.start_prompt(ctx, Prompt::Play(media), loops);
                None
            }
            PlanCommand::Say { text, voice } => {
                self.start_prompt(ctx, Prompt::Say { text, voice }, 1);
                None
            }
            PlanCommand::Gather(g) => {
                self.start_gather(ctx, g);
                None
            }
            PlanCommand::Record {
                to,
                max_secs,
                beep,
                terminator,
            } => self.start_record(ctx, to, max_secs, beep, terminator),
            PlanCommand::Dial {
                targets,
                strategy,
                timeout_secs,
                caller_id,
            } => {
                if let Some(i) = self.ivr.as_mut() {
                    i.dial_caller_id = caller_id;
                }
                let timeout = Duration::from_secs(u64::from(timeout_secs.clamp(1, 3600)));
                let mut rest: VecDeque<DialTarget> = targets.into();
                let now: Vec<DialTarget> = match strategy {
                    Strategy::Parallel => rest.drain(..).collect(),
                    Strategy::Sequence => rest.pop_front().into_iter().collect(),
                };
                self.set_running(Running::Dial {
                    rest,
                    timeout,
                    bridged: false,
                });
                self.dial(ctx, now, timeout);
                None
            }
            PlanCommand::RecordSession(op) => {
                self.record_session(ctx, op);
                Some(Event::ActionCompleted)
            }
            PlanCommand::Queue {
                name,
                priority,
                attributes,
                callback_digit,
            } => self.start_queue(ctx, name, priority, attributes, callback_digit),
            PlanCommand::Monitor { agent, mode } => self.start_monitor(ctx, agent, mode),
            PlanCommand::Csat(spec) => self.start_survey(ctx, spec),
            PlanCommand::Transfer { to, attended } => self.start_transfer(ctx, to, attended),
            PlanCommand::Webhook { url, method, body } => {
                self.set_running(Running::Webhook);
                let timeout = self.setup.services.ivr.webhook_timeout;
                async move { crate::webhook::call(&url, method, &body, timeout).await }
                    .into_actor(self)
                    .map(|res, act, ctx| {
                        if !matches!(act.ivr.as_ref().map(|i| &i.running), Some(Running::Webhook)) {
                            return;
                        }
                        let ev = match res {
                            Ok(json) => Event::WebhookAnswered { json },
                            Err(e) => {
                                tracing::warn!(error = %e, "webhook failed");
                                if let Some(i) = act.ivr.as_mut() {
                                    i.session.set_var("webhook_error", e);
                                }
                                Event::ActionCompleted
                            }
                        };
                        act.step(ctx, ev);
                    })
                    .spawn(ctx);
                None
            }
        }
    }

    /// A media problem that makes the command impossible: the call cannot go on.
    fn media_failure(&mut self, ctx: &mut Context<Self>, why: &str) -> Option<Event> {
        tracing::warn!(why, "IVR media unavailable");
        if !self.a_final {
            let r = self.a_response(488, Some(&format!("Not Acceptable Here ({why})")));
            self.fail_a(ctx, r, "rejected");
        } else {
            self.hang_up(ctx, "media_error");
        }
        None
    }

    /// Answers the caller with the engine's own SDP (the engine is the media endpoint). No-op
    /// when already answered.
    pub(super) fn answer_here(&mut self, ctx: &mut Context<Self>) -> Result<(), String> {
        if self.a_final {
            return Ok(());
        }
        let relay = self.relay.as_ref().ok_or("the call has no SDP offer")?;
        let offer = Sdp::parse_bytes(&self.setup.invite.body).map_err(|e| e.to_string())?;
        let offer = switchboard_engine::sdp::filter_offer(&offer);
        let (mut answer, n) =
            answer_offer(&offer, relay.local_addr(Leg::A)).map_err(|e| e.to_string())?;
        self.srtp.make_answer(Leg::A, &mut answer, n.index);
        self.origins[Leg::A as usize].stamp(&mut answer);
        let format = leg_format(&n.codec, n.telephone_event).ok_or("unsupported codec")?;
        relay.set_format(Leg::A, Some(format));
        relay.set_route(Leg::A, Route::Local);
        relay.detect_inband(Leg::A, format.dtmf_payload_type.is_none());
        if let Some(i) = self.ivr.as_mut() {
            i.a_format = Some(format);
        }
        self.leg_formats[0] = Some(format);
        self.send_ok_to_a(ctx, Bytes::from(answer.to_string()));
        Ok(())
    }

    /// Sample rate of the caller's codec (8 kHz until the engine answered it).
    pub(super) fn a_rate(&self) -> u32 {
        self.ivr
            .as_ref()
            .and_then(|i| i.a_format)
            .map_or(8000, |f| f.codec.sample_rate())
    }

    /// Plays a file, URL or TTS text into the caller; `ActionCompleted` at its end.
    fn start_prompt(&mut self, ctx: &mut Context<Self>, prompt: Prompt, loops: u32) {
        if let Err(e) = self.answer_here(ctx) {
            self.media_failure(ctx, &e);
            return;
        }
        let id = self.next_id();
        self.set_running(Running::Play { id });
        self.load_and_play(ctx, prompt, loops, id);
    }

    /// Renders a prompt off the actor thread, then plays it with `id`; a prompt that cannot be
    /// rendered counts as played (logged), so the plan goes on.
    fn load_and_play(&mut self, ctx: &mut Context<Self>, prompt: Prompt, loops: u32, id: u64) {
        let render = super::control::render_prompt(&self.setup.services.ivr, prompt, self.a_rate());
        render
            .into_actor(self)
            .map(move |clip: Result<Pcm, String>, act, ctx| match clip {
                Ok(clip) => {
                    if let Some(r) = &act.relay {
                        r.play(Leg::A, clip, loops, id);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "prompt unavailable; skipped");
                    act.on_play_done(ctx, id);
                }
            })
            .spawn(ctx);
    }

    fn on_play_done(&mut self, ctx: &mut Context<Self>, id: u64) {
        let Some(ivr) = self.ivr.as_mut() else { return };
        match &mut ivr.running {
            Running::Play { id: p } if *p == id => self.step(ctx, Event::ActionCompleted),
            Running::Gather(g) if g.prompt == Some(id) => {
                g.prompt = None;
                self.arm_gather_timer(ctx);
            }
            Running::Record(r) if r.beep == Some(id) => {
                r.beep = None;
                self.begin_recording(ctx);
            }
            Running::Queue => self.queue_announcement_done(ctx, id),
            _ => {}
        }
    }

    fn start_gather(&mut self, ctx: &mut Context<Self>, g: Gather) {
        if let Err(e) = self.answer_here(ctx) {
            self.media_failure(ctx, &e);
            return;
        }
        let prompt = g.prompt.clone();
        let speech = g.speech.clone();
        let id = prompt.as_ref().map(|_| self.next_id());
        self.set_running(Running::Gather(Box::new(GatherState {
            g,
            digits: String::new(),
            prompt: id,
            timer: None,
            speech_stop: None,
        })));
        if let Some(relay) = &self.relay {
            let no_events = self
                .ivr
                .as_ref()
                .and_then(|i| i.a_format)
                .is_none_or(|f| f.dtmf_payload_type.is_none());
            relay.detect_inband(Leg::A, no_events);
        }
        if let Some(speech) = speech {
            self.start_speech(ctx, &speech.grammar);
        }
        match (prompt, id) {
            (Some(p), Some(id)) => self.load_and_play(ctx, p, 1, id),
            _ => self.arm_gather_timer(ctx),
        }
    }

    /// Starts a recogniser on the caller's audio for the running gather.
    fn start_speech(&mut self, ctx: &mut Context<Self>, phrases: &[String]) {
        let (Some(asr), Some(relay)) = (self.setup.services.ivr.asr.clone(), self.relay.as_ref())
        else {
            tracing::warn!("speech requested but no recogniser is available");
            return;
        };
        let grammar = (!phrases.is_empty()).then(|| Grammar::phrases(phrases.iter()));
        let mut rx = relay.subscribe(Leg::A, 16000);
        let stop = Arc::new(AtomicBool::new(false));
        if let Some(Running::Gather(g)) = self.ivr.as_mut().map(|i| &mut i.running) {
            g.speech_stop = Some(stop.clone());
        }
        let addr = ctx.address();
        std::thread::Builder::new()
            .name("asr".into())
            .spawn(move || {
                let mut rec = match asr.start(grammar.as_ref(), None) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(error = %e, "recogniser did not start");
                        return;
                    }
                };
                while let Some(frame) = rx.blocking_recv() {
                    if stop.load(Relaxed) {
                        return;
                    }
                    for ev in rec.push(&frame) {
                        let last = !matches!(ev, AsrEvent::Partial { .. });
                        addr.do_send(SpeechMsg(ev));
                        if last {
                            return;
                        }
                    }
                }
                if let Some(ev) = rec.finish() {
                    addr.do_send(SpeechMsg(ev));
                }
            })
            .ok();
    }

    fn arm_gather_timer(&mut self, ctx: &mut Context<Self>) {
        let Some(Running::Gather(g)) = self.ivr.as_mut().map(|i| &mut i.running) else {
            return;
        };
        if let Some(t) = g.timer.take() {
            ctx.cancel_future(t);
        }
        let secs = u64::from(g.g.timeout_secs.clamp(1, 600));
        g.timer = Some(ctx.run_later(Duration::from_secs(secs), |act, ctx| {
            let Some(Running::Gather(g)) = act.ivr.as_mut().map(|i| &mut i.running) else {
                return;
            };
            g.timer = None;
            let enough = !g.digits.is_empty() && g.digits.len() as u32 >= g.g.min_digits;
            let ev = if enough {
                Event::DigitsGathered {
                    digits: g.digits.clone(),
                }
            } else {
                Event::GatherTimeout
            };
            act.finish_gather(ctx, ev);
        }));
    }

    fn finish_gather(&mut self, ctx: &mut Context<Self>, ev: Event) {
        if let Some(Running::Gather(g)) = self.ivr.as_mut().map(|i| &mut i.running) {
            if let Some(t) = g.timer.take() {
                ctx.cancel_future(t);
            }
            if let Some(s) = g.speech_stop.take() {
                s.store(true, Relaxed);
            }
            if g.prompt.is_some() {
                if let Some(r) = &self.relay {
                    r.stop_play(Leg::A);
                }
            }
        }
        if let Some(r) = &self.relay {
            r.detect_inband(Leg::A, false);
        }
        self.step(ctx, ev);
    }

    /// A digit from the caller, however it came (RFC 4733, in-band, SIP INFO).
    pub(super) fn on_caller_digit(&mut self, ctx: &mut Context<Self>, c: char) {
        let Some(ivr) = self.ivr.as_mut() else { return };
        match &mut ivr.running {
            Running::Gather(g) => {
                if g.prompt.take().is_some() {
                    // Barge-in: a digit stops the prompt.
                    if let Some(r) = &self.relay {
                        r.stop_play(Leg::A);
                    }
                }
                if g.g.terminator == Some(c) {
                    let digits = g.digits.clone();
                    return self.finish_gather(ctx, Event::DigitsGathered { digits });
                }
                g.digits.push(c);
                if g.digits.len() as u32 >= g.g.max_digits.max(1) {
                    let digits = g.digits.clone();
                    return self.finish_gather(ctx, Event::DigitsGathered { digits });
                }
                self.arm_gather_timer(ctx);
            }
            Running::Record(r) if r.terminator == Some(c) => self.end_recording(ctx),
            Running::Monitor => self.monitor_digit(c),
            Running::Queue => self.queue_digit(ctx, c),
            _ => {}
        }
    }

    pub(super) fn on_speech(&mut self, ctx: &mut Context<Self>, ev: AsrEvent) {
        let Some(Running::Gather(_)) = self.ivr.as_ref().map(|i| &i.running) else {
            return;
        };
        match ev {
            AsrEvent::Final { text, .. } if !text.trim().is_empty() => {
                tracing::info!(%text, "speech recognised");
                self.finish_gather(ctx, Event::SpeechRecognised { text })
            }
            AsrEvent::Partial { .. } => {}
            _ => {}
        }
    }

    fn start_record(
        &mut self,
        ctx: &mut Context<Self>,
        to: String,
        max_secs: u32,
        beep: bool,
        terminator: Option<char>,
    ) -> Option<Event> {
        if let Err(e) = self.answer_here(ctx) {
            return self.media_failure(ctx, &e);
        }
        let Some(rel) = safe_relative(&to) else {
            tracing::warn!(path = %to, "recording path refused (absolute or with ..)");
            return Some(Event::ActionCompleted);
        };
        let path = self.setup.services.ivr.recordings_dir.join(rel);
        let beep_id = beep.then(|| self.next_id());
        self.set_running(Running::Record(Box::new(RecordState {
            path,
            relative: to,
            terminator,
            beep: beep_id,
            max: Duration::from_secs(u64::from(max_secs.clamp(1, 3600))),
            started: false,
            timer: None,
        })));
        match beep_id {
            Some(id) => {
                let clip = tone(ToneKind::Beep, self.a_rate(), Duration::from_millis(250));
                if let Some(r) = &self.relay {
                    r.play(Leg::A, clip, 1, id);
                }
            }
            None => self.begin_recording(ctx),
        }
        None
    }

    fn begin_recording(&mut self, ctx: &mut Context<Self>) {
        let Some(Running::Record(r)) = self.ivr.as_mut().map(|i| &mut i.running) else {
            return;
        };
        let Some(relay) = self.relay.as_ref() else {
            return;
        };
        if let Err(e) = relay.start_recording(&r.path) {
            tracing::warn!(error = %e, path = %r.path.display(), "recording failed to start");
            return self.step(ctx, Event::ActionCompleted);
        }
        r.started = true;
        r.timer = Some(ctx.run_later(r.max, |act, ctx| act.end_recording(ctx)));
    }

    /// Stops the running recording, indexes it and reports `RecordingDone`.
    fn end_recording(&mut self, ctx: &mut Context<Self>) {
        let Some(Running::Record(r)) = self.ivr.as_mut().map(|i| &mut i.running) else {
            return;
        };
        if let Some(t) = r.timer.take() {
            ctx.cancel_future(t);
        }
        let relative = r.relative.clone();
        let started = r.started;
        // Not Idle yet: a second terminator must not stop twice.
        self.set_running(Running::Transfer);
        let Some(relay) = self.relay.clone().filter(|_| started) else {
            return self.step(ctx, Event::ActionCompleted);
        };
        let storage = self.setup.services.storage.clone();
        let call_id = self.guard.state.record.call_id.clone();
        async move {
            let info = relay.stop_recording().await;
            if let Some(i) = &info {
                super::index_recording(&storage, &call_id, i, "caller").await;
            }
            info
        }
        .into_actor(self)
        .map(move |info, act, ctx| {
            let ev = match info {
                Some(i) => {
                    act.guard.state.record.recording = Some(i.path.display().to_string());
                    Event::RecordingDone {
                        path: relative.clone(),
                    }
                }
                None => Event::ActionCompleted,
            };
            act.step(ctx, ev);
        })
        .wait(ctx);
    }

    /// `record_session`: the whole call in one stereo file (caller left, callee right) that
    /// goes on through later bridges until the call ends or `stop`. Completes at once.
    fn record_session(&mut self, ctx: &mut Context<Self>, op: RecordSessionOp) {
        let Some(relay) = self.relay.clone() else {
            tracing::warn!("record_session on a call without media");
            return;
        };
        match op {
            RecordSessionOp::Start { to } => {
                if self.session_recording.is_some() {
                    return;
                }
                let Some(rel) = safe_relative(&to) else {
                    tracing::warn!(path = %to, "recording path refused (absolute or with ..)");
                    return;
                };
                let path = self.setup.services.ivr.recordings_dir.join(rel);
                match relay.start_recording(&path) {
                    Ok(()) => {
                        self.guard.state.record.recording = Some(path.display().to_string());
                        self.session_recording = Some(path);
                    }
                    Err(e) => tracing::warn!(error = %e, "record_session did not start"),
                }
            }
            RecordSessionOp::Pause => relay.pause_recording(),
            RecordSessionOp::Resume => relay.resume_recording(),
            RecordSessionOp::Stop => {
                if self.session_recording.take().is_none() {
                    return;
                }
                let storage = self.setup.services.storage.clone();
                let call_id = self.guard.state.record.call_id.clone();
                ctx.spawn(
                    async move {
                        if let Some(info) = relay.stop_recording().await {
                            super::index_recording(&storage, &call_id, &info, "caller,callee")
                                .await;
                        }
                    }
                    .into_actor(self),
                );
            }
        }
    }

    /// Calls targets (all in parallel); the outcome comes back through the B-leg code as
    /// [`CallActor::dial_answered`] or [`CallActor::dial_failed`].
    pub(super) fn dial(
        &mut self,
        ctx: &mut Context<Self>,
        targets: Vec<DialTarget>,
        ring: Duration,
    ) {
        if self.a_final {
            // The caller is answered already (IVR before the dial): the callee gets the
            // engine's own offer, preferring the caller's codec.
            if let Some(relay) = &self.relay {
                let mut codecs: Vec<Codec> = Vec::new();
                if let Some(f) = self.ivr.as_ref().and_then(|i| i.a_format) {
                    codecs.extend(engine_codec(f.codec));
                }
                for c in OFFER_CODECS {
                    if !codecs.contains(c) {
                        codecs.push(*c);
                    }
                }
                if self.queued.is_none() {
                    // The caller hears ringback while the target rings.
                    let rate = self.a_rate();
                    relay.play(
                        Leg::A,
                        tone(ToneKind::Ringback, rate, Duration::from_secs(4)),
                        0,
                        0,
                    );
                }
                let mut offer = endpoint_offer(relay.local_addr(Leg::B), &codecs);
                let secure = self.srtp.wants_secure(Leg::B, self.b_srtp_policy());
                if let Err(e) = self
                    .srtp
                    .make_offer(Leg::B, &mut offer, 0, secure, Some(relay))
                {
                    tracing::warn!(error = %e, "SRTP offer to the callee failed: plain RTP");
                    let plain = srtp::OfferKind::Plain;
                    let _ = self
                        .srtp
                        .make_offer(Leg::B, &mut offer, 0, plain, Some(relay));
                }
                self.origins[Leg::B as usize].stamp(&mut offer);
                self.b_body = Bytes::from(offer.to_string());
                self.offer_to_b = Some(offer);
            }
        }
        let mut direct = Vec::new();
        let mut users = Vec::new();
        let mut trunk_sets = Vec::new();
        let trunks = self.setup.services.trunks.clone();
        for t in targets {
            match t {
                DialTarget::User(u) => users.push(u),
                DialTarget::Uri(u) => match direct_binding(&u) {
                    Some(b) => direct.push(b),
                    None => tracing::warn!(uri = %u, "dial: SIP URI without an IP host; skipped"),
                },
                DialTarget::Trunk { trunk, number } => match trunks.get(&trunk) {
                    Some(t) => trunk_sets.push((vec![t.clone()], number)),
                    None => tracing::warn!(%trunk, %number, "dial: no such trunk; skipped"),
                },
                DialTarget::Route { table, number } => match trunks.route(&table, &number) {
                    Some(ts) if !ts.is_empty() => trunk_sets.push((ts, number)),
                    Some(_) => tracing::warn!(%table, %number, "dial: no route for the number"),
                    None => tracing::warn!(%table, "dial: no such route table; skipped"),
                },
            }
        }
        if !trunk_sets.is_empty() {
            let caller_id = self.ivr.as_ref().and_then(|i| i.dial_caller_id.clone());
            direct.extend(self.start_trunk_dial(trunk_sets, caller_id));
        }
        let registrar = self.setup.services.registrar.clone();
        let realm = self.setup.services.auth.realm().to_string();
        async move {
            let mut all = direct;
            for u in users {
                let uri = if u.contains('@') {
                    format!("sip:{u}")
                } else {
                    format!("sip:{u}@{realm}")
                };
                if let Some(key) = aor_key(&uri) {
                    all.extend(registrar.send(Lookup(key)).await.unwrap_or_default());
                }
            }
            all
        }
        .into_actor(self)
        .map(move |bindings, act, ctx| {
            if bindings.is_empty() {
                let (code, reason) = act
                    .trunk_failure()
                    .unwrap_or((404, "Not Found (not registered)".into()));
                if let Some(i) = act.ivr.as_mut() {
                    i.trunk = None;
                }
                return act.dial_failed(ctx, code, &reason);
            }
            act.start_b_legs(ctx, bindings, ring);
            act.arm_trunk_timeout(ctx);
        })
        .wait(ctx);
    }

    /// A dial attempt failed with `code`: next target in sequence, or `DialFailed`.
    pub(super) fn dial_failed(&mut self, ctx: &mut Context<Self>, code: u16, reason: &str) {
        if let Some(b) = self.trunk_failover(code, reason) {
            // The next gateway of the trunk (or of the next trunk of the route).
            let ring = match self.ivr.as_ref().map(|i| &i.running) {
                Some(Running::Dial { timeout, .. }) => *timeout,
                _ => Duration::from_secs(30),
            };
            self.start_b_legs(ctx, vec![b], ring);
            self.arm_trunk_timeout(ctx);
            return;
        }
        let Some(ivr) = self.ivr.as_mut() else { return };
        ivr.last_failure = Some((code, reason.to_string()));
        if let Running::Dial { rest, timeout, .. } = &mut ivr.running {
            if let Some(next) = rest.pop_front() {
                let t = *timeout;
                return self.dial(ctx, vec![next], t);
            }
        }
        if let Some(q) = self.queue_offer_failed(ctx, code) {
            return q;
        }
        if let Some(r) = &self.relay {
            // Ringback or hold music played while the target rang.
            r.stop_play(Leg::A);
        }
        self.step(ctx, Event::DialFailed { code });
    }

    /// A B leg answered. Called after the SIP side is done (ACK sent, A answered or to be
    /// bridged).
    pub(super) fn dial_answered(&mut self, ctx: &mut Context<Self>) {
        if self.queue_offer_answered(ctx) {
            return;
        }
        if let Some(Running::Dial { bridged, .. }) = self.ivr.as_mut().map(|i| &mut i.running) {
            *bridged = true;
            // DialAnswered returns Wait; keep the Dial state to know a bridge is up.
            let ivr = self.ivr.as_mut().expect("checked just above");
            let d = ivr.session.handle(&now_local(), Event::DialAnswered);
            match d {
                Decision::Wait => {}
                Decision::Execute(cmd) => {
                    if let Some(ev) = self.execute(ctx, cmd) {
                        self.step(ctx, ev);
                    }
                }
                Decision::End(r) => self.plan_ended(ctx, r),
            }
        }
    }

    /// The callee of a bridge hung up: the caller goes back to the plan.
    pub(super) fn bridge_ended(&mut self, ctx: &mut Context<Self>) -> bool {
        if self.ivr.is_none() {
            return false;
        }
        self.end_supervision();
        if self.queue_bridge_ended(ctx) {
            return true;
        }
        if !matches!(
            self.ivr.as_ref().map(|i| &i.running),
            Some(Running::Dial { bridged: true, .. })
        ) {
            return false;
        }
        self.winner = None;
        self.unbridge_media();
        if let Some(i) = self.ivr.as_mut() {
            // The trunk call is over: its slot on the trunk is free again.
            i.trunk = None;
        }
        self.step(ctx, Event::ActionCompleted);
        true
    }

    /// Ends a bridge on the media side: the caller is held by the engine again, leg B is gone.
    pub(super) fn unbridge_media(&self) {
        if let Some(r) = &self.relay {
            r.set_route(Leg::A, Route::Local);
            r.set_format(Leg::B, None);
        }
    }

    /// Bridges A (answered by the engine) and the answering B leg.
    pub(super) fn bridge_media(&mut self) {
        if let Some(r) = &self.relay {
            r.stop_play(Leg::A);
            r.set_route(Leg::A, Route::Bridge);
            r.set_route(Leg::B, Route::Bridge);
        }
    }

    /// `transfer`. Blind: REFER the caller to `to`, then hang up once it is accepted (any
    /// failure: the plan goes on). Attended: the engine consults the target first: the caller
    /// hears hold music while the engine calls `to` (a user or a SIP URI), and is bridged only
    /// when the target answers (`DialAnswered`, `ActionCompleted` when that bridge ends); when
    /// the target does not answer the caller is back in the plan (`DialFailed`).
    fn start_transfer(
        &mut self,
        ctx: &mut Context<Self>,
        to: String,
        attended: bool,
    ) -> Option<Event> {
        if attended {
            if let Err(e) = self.answer_here(ctx) {
                return self.media_failure(ctx, &e);
            }
            let target = if to.contains(':') {
                DialTarget::Uri(to)
            } else {
                DialTarget::User(to)
            };
            let ring = Duration::from_secs(30);
            self.set_running(Running::Dial {
                rest: VecDeque::new(),
                timeout: ring,
                bridged: false,
            });
            self.dial(ctx, vec![target], ring);
            self.play_hold_music(ctx);
            return None;
        }
        if let Err(e) = self.answer_here(ctx) {
            return self.media_failure(ctx, &e);
        }
        let target = if to.starts_with("sip:") || to.starts_with("sips:") || to.starts_with("tel:")
        {
            to
        } else {
            format!("sip:{to}@{}", self.local())
        };
        let local = self.local();
        let Some(d) = self.a_dialog.as_mut() else {
            return Some(Event::ActionCompleted);
        };
        let mut refer = d.request(Method::Refer);
        refer
            .headers
            .push(HeaderName::ReferTo, format!("<{target}>"));
        refer
            .headers
            .push(HeaderName::ReferredBy, format!("<sip:switchboard@{local}>"));
        let dest = d.peer;
        self.next_id += 1;
        let id = self.next_id;
        self.transfer_tx = Some(id);
        self.set_running(Running::Transfer);
        self.post(crate::router::Command::Send {
            req: refer,
            dest,
            owner: Some(ctx.address().recipient()),
            tag: super::TxTag::Forwarded(id),
        });
        None
    }

    /// The caller's answer to our REFER.
    pub(super) fn on_refer_response(&mut self, ctx: &mut Context<Self>, status: u16) {
        self.transfer_tx = None;
        if (200..300).contains(&status) {
            self.hang_up(ctx, "transferred");
        } else {
            self.step(ctx, Event::ActionCompleted);
        }
    }

    /// Media events of the call (digits, end of prompts).
    pub(super) fn on_media_event(&mut self, ctx: &mut Context<Self>, ev: MediaEvent) {
        match ev {
            MediaEvent::PlayDone { leg: Leg::A, id } => self.on_play_done(ctx, id),
            MediaEvent::PlayDone { .. } => {}
            MediaEvent::Dtmf {
                leg,
                digit,
                duration_ms,
                source,
                ..
            } => {
                tracing::info!(
                    call_id = %self.guard.state.record.call_id,
                    ?leg,
                    digit = %digit_char(digit),
                    ?source,
                    duration_ms,
                    "DTMF digit"
                );
                let bridged = self.winner.is_some();
                if bridged {
                    self.relay_digit_as_info(leg, digit, duration_ms);
                } else if leg == Leg::A {
                    self.on_caller_digit(ctx, digit_char(digit));
                }
            }
        }
    }

    /// While bridged: a digit from one leg goes to the other as SIP INFO when that leg has no
    /// `telephone-event` (the relay does not forward RFC 4733 packets to it).
    fn relay_digit_as_info(&mut self, from: Leg, digit: Digit, duration_ms: u32) {
        let to = from.other();
        let to_has_events =
            self.leg_formats[to as usize].is_some_and(|f| f.dtmf_payload_type.is_some());
        if to_has_events {
            return;
        }
        let dialog = match to {
            Leg::A => self.a_dialog.as_mut(),
            Leg::B => self
                .winner
                .and_then(|w| self.legs.get_mut(w as usize))
                .and_then(|l| l.dialog.as_mut()),
        };
        let Some(d) = dialog else { return };
        let mut info = d.request(Method::Info);
        info.headers
            .push(HeaderName::ContentType, "application/dtmf-relay");
        info.body = Bytes::from(format!(
            "Signal={}\r\nDuration={}\r\n",
            digit_char(digit),
            duration_ms.max(40)
        ));
        let dest = d.peer;
        self.post(crate::router::Command::Send {
            req: info,
            dest,
            owner: None,
            tag: super::TxTag::Fire,
        });
    }
}

/// The engine SDP codec for a media codec (what can be offered).
pub(super) fn engine_codec(k: CodecKind) -> Option<Codec> {
    match k.sdp_name().to_ascii_lowercase().as_str() {
        "pcmu" => Some(Codec::Pcmu),
        "pcma" => Some(Codec::Pcma),
        "g722" => Some(Codec::G722),
        "opus" => Some(Codec::Opus),
        _ => None,
    }
}

/// A binding for a SIP URI with an IP host (`sip:user@127.0.0.1:5080`), sent over UDP.
pub(super) fn direct_binding(uri: &str) -> Option<Binding> {
    let addr = crate::registrar::contact_socket_addr(uri)?;
    Some(Binding {
        contact: uri.to_string(),
        expires_at: Instant::now(),
        expires_at_ms: 0,
        q: 1.0,
        call_id: String::new(),
        cseq: 0,
        source: Peer {
            transport: TransportKind::Udp,
            addr,
            conn: None,
        },
    })
}

/// Parses an `application/dtmf-relay` INFO body (`Signal=5`) into the digit.
pub(super) fn info_digit(body: &[u8]) -> Option<char> {
    let text = std::str::from_utf8(body).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("signal") {
            return None;
        }
        let c = v.trim().chars().next()?;
        (c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D' | 'a'..='d'))
            .then(|| c.to_ascii_uppercase())
    })
}

/// A digit as a media DTMF digit.
pub(super) fn to_digit(c: char) -> Option<Digit> {
    Digit::from_char(c)
}
