//! The call actors' side of the call-control API (`crate::calls_api`): listing in the live-call
//! directory, and [`Control`] requests (hang up, blind transfer, recording, play, DTMF) carried
//! out with the call's own SIP dialogs and media plane. The helpers at the bottom are shared by
//! the B2BUA ([`CallActor`]) and the two-leg outbound call (`callback.rs`).

use super::ivr::Running;
use super::{CallActor, LegState, TxTag};
use crate::calls_api::{ApiLeg, CallInfo, CallKind, Control, ControlError, ControlResult};
use crate::calls_api::{LegInfo, Listing};
use crate::registrar::now_ms;
use crate::router::Command;
use actix::prelude::*;
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use switchboard_dialplans::{Media, Prompt};
use switchboard_engine::dialog::Dialog;
use switchboard_engine::sip::{HeaderName, Method, Request};
use switchboard_media::{Leg, Pcm, RelaySession};

/// The play id of API prompts (the dialplan's ids count up from 1 and never reach it).
pub(super) const API_PLAY_ID: u64 = u64::MAX;

/// A call actor's API state: its directory entry and the REFER the API sent.
#[derive(Default)]
pub(super) struct ApiState {
    /// The directory entry (dropped when the call ends).
    pub(super) listing: Option<Listing>,
    /// The id of an API REFER waiting for its answer.
    refer: Option<u64>,
    /// What the entry last showed (so unchanged calls do not take the lock).
    shown: Option<(&'static str, Vec<&'static str>, bool)>,
}

fn leg_state(s: LegState) -> &'static str {
    match s {
        LegState::Calling => "calling",
        LegState::Early => "early",
        LegState::Answered => "answered",
        LegState::Done => "ended",
    }
}

impl CallActor {
    /// Lists the call in the directory (at start).
    pub(super) fn list_in_directory(&mut self, ctx: &mut Context<Self>) {
        let r = &self.guard.state.record;
        let info = CallInfo {
            id: 0,
            kind: CallKind::Inbound,
            call_id: r.call_id.clone(),
            caller: r.caller.clone(),
            callee: r.callee.clone(),
            state: "ringing",
            start_ms: r.start_ms,
            answer_ms: None,
            legs: Vec::new(),
            recording: false,
        };
        let listing = self
            .setup
            .services
            .calls
            .list(info, ctx.address().recipient());
        self.api.listing = Some(listing);
        self.refresh_listing();
    }

    /// Brings the directory entry up to date with the call (cheap when nothing changed).
    pub(super) fn refresh_listing(&mut self) {
        if self.api.listing.is_none() {
            return;
        }
        let state = if self.a_dialog.is_none() {
            "ringing"
        } else if self.winner.is_some() {
            "bridged"
        } else {
            "answered"
        };
        let legs: Vec<&'static str> = self.legs.iter().map(|l| leg_state(l.state)).collect();
        let recording = self.session_recording.is_some();
        let shown = Some((state, legs, recording));
        if shown == self.api.shown {
            return;
        }
        self.api.shown = shown;
        let r = &self.guard.state.record;
        let a_state = if self.a_dialog.is_some() {
            "answered"
        } else {
            "calling"
        };
        let mut legs = vec![LegInfo {
            leg: "a",
            call_id: r.call_id.clone(),
            uri: r.caller.clone(),
            state: a_state,
        }];
        legs.extend(self.legs.iter().map(|l| LegInfo {
            leg: "b",
            call_id: l.call_id.clone(),
            uri: l.invite.uri.clone(),
            state: leg_state(l.state),
        }));
        let (caller, answer_ms) = (r.caller.clone(), r.answer_ms);
        if let Some(l) = &self.api.listing {
            l.update(|i| {
                i.state = state;
                i.caller = caller;
                i.answer_ms = answer_ms;
                i.legs = legs;
                i.recording = recording;
            });
        }
    }

    /// The relay leg behind an API leg, and its dialog.
    fn api_dialog(&mut self, leg: ApiLeg) -> Option<&mut Dialog> {
        match leg {
            ApiLeg::A => self.a_dialog.as_mut(),
            ApiLeg::B => self
                .winner
                .and_then(|w| self.legs.get_mut(w as usize))
                .and_then(|l| l.dialog.as_mut()),
        }
    }

    /// Whether a REFER the API sent is waiting for its answer.
    pub(super) fn api_refer_pending(&self) -> bool {
        self.api.refer.is_some()
    }

    fn api_hang_up(&mut self, ctx: &mut Context<Self>) -> ControlResult {
        if self.ended {
            return Err(ControlError::not_found());
        }
        if self.a_final {
            self.hang_up(ctx, "api");
        } else {
            let r = self.a_response(480, Some("Temporarily Unavailable (ended by the API)"));
            self.fail_a(ctx, r, "api");
        }
        Ok(json!({ "state": "ended", "cause": "api" }))
    }

    fn api_transfer(&mut self, ctx: &mut Context<Self>, leg: ApiLeg, to: &str) -> ControlResult {
        if self.api.refer.is_some() || self.transfer_tx.is_some() {
            return Err(ControlError::conflict("a transfer is in progress"));
        }
        let local = self.local();
        let Some(d) = self.api_dialog(leg) else {
            return Err(ControlError::conflict(format!(
                "leg {} is not answered",
                leg.name()
            )));
        };
        let target = refer_target(to, local);
        let (refer, dest) = (refer_request(d, &target, local), d.peer);
        self.next_id += 1;
        let id = self.next_id;
        self.api.refer = Some(id);
        self.post(Command::Send {
            req: refer,
            dest,
            owner: Some(ctx.address().recipient()),
            tag: TxTag::Forwarded(id),
        });
        Ok(json!({ "leg": leg.name(), "to": target, "state": "referring" }))
    }

    /// The answer to an API REFER (true when `id` was one): accepted ends the call
    /// (`transferred`), refused leaves it as it was.
    pub(super) fn api_refer_answered(
        &mut self,
        ctx: &mut Context<Self>,
        id: u64,
        status: u16,
    ) -> bool {
        if self.api.refer != Some(id) {
            return false;
        }
        self.api.refer = None;
        if (200..300).contains(&status) {
            self.setup.services.events.publish(
                "call.transferred",
                json!({ "call_id": self.guard.state.record.call_id, "kind": "api" }),
            );
            self.hang_up(ctx, "transferred");
        } else {
            tracing::info!(status, "REFER from the API refused; the call goes on");
        }
        true
    }

    fn api_recording(&mut self, start: bool) -> ResponseFuture<ControlResult> {
        let Some(relay) = self.relay.clone() else {
            return ready(Err(ControlError::conflict("the call has no media")));
        };
        if start {
            if self.session_recording.is_some() {
                return ready(Err(ControlError::conflict("already recording")));
            }
            let dir = self.setup.services.ivr.recordings_dir.clone();
            let path = match start_recording(&relay, dir, &self.guard.state.record.call_id) {
                Ok(p) => p,
                Err(e) => return ready(Err(e)),
            };
            // event: call.recording_started
            self.guard.state.record.recording = Some(path.display().to_string());
            self.session_recording = Some(path.clone());
            self.refresh_listing();
            return ready(Ok(
                json!({ "recording": true, "path": path.display().to_string() }),
            ));
        }
        let Some(path) = self.session_recording.take() else {
            return ready(Err(ControlError::conflict("not recording")));
        };
        self.refresh_listing();
        // event: call.recording_stopped
        let storage = self.setup.services.storage.clone();
        let call_id = self.guard.state.record.call_id.clone();
        Box::pin(async move { stop_recording(&relay, &storage, &call_id, path).await })
    }

    fn api_play(&mut self, leg: ApiLeg, prompt: Prompt) -> ResponseFuture<ControlResult> {
        let busy = self.ivr.as_ref().is_some_and(|i| {
            !matches!(
                i.running,
                Running::Idle | Running::Echo | Running::Dial { bridged: true, .. }
            )
        });
        if busy {
            return ready(Err(ControlError::conflict(
                "the dialplan is playing to or listening on the call",
            )));
        }
        let media_leg = relay_leg(leg);
        let (Some(relay), Some(format)) =
            (self.relay.clone(), self.leg_formats[media_leg as usize])
        else {
            return ready(Err(ControlError::conflict(format!(
                "leg {} has no media yet",
                leg.name()
            ))));
        };
        let field = prompt_field(&prompt);
        let render = render_prompt(&self.setup.services.ivr, prompt, format.codec.sample_rate());
        Box::pin(async move {
            let clip = render
                .await
                .map_err(|e| ControlError::field(422, field, e))?;
            let ms = clip_ms(&clip);
            // event: call.play_started
            relay.play(media_leg, clip, 1, API_PLAY_ID);
            Ok(json!({ "leg": leg.name(), "playing": true, "duration_ms": ms }))
        })
    }

    fn api_dtmf(&mut self, leg: ApiLeg, digits: &str, duration_ms: u32) -> ControlResult {
        let media_leg = relay_leg(leg);
        let (Some(relay), Some(_)) = (self.relay.clone(), self.leg_formats[media_leg as usize])
        else {
            return Err(ControlError::conflict(format!(
                "leg {} has no media yet",
                leg.name()
            )));
        };
        send_digits(
            &self.setup.services.media.handle,
            relay,
            media_leg,
            digits,
            duration_ms,
        );
        Ok(json!({ "leg": leg.name(), "digits": digits }))
    }
}

/// The relay leg of an API leg in the B2BUA.
fn relay_leg(leg: ApiLeg) -> Leg {
    match leg {
        ApiLeg::A => Leg::A,
        ApiLeg::B => Leg::B,
    }
}

/// An answer known at once. A plain future (not an actor future), so that it is answered even
/// when the request stopped the actor (hang up).
pub(super) fn ready(r: ControlResult) -> ResponseFuture<ControlResult> {
    Box::pin(std::future::ready(r))
}

impl Handler<Control> for CallActor {
    type Result = ResponseFuture<ControlResult>;

    fn handle(&mut self, msg: Control, ctx: &mut Context<Self>) -> Self::Result {
        if self.ended {
            return ready(Err(ControlError::not_found()));
        }
        let r = match msg {
            Control::Hangup => self.api_hang_up(ctx),
            Control::Transfer { leg, to } => self.api_transfer(ctx, leg, &to),
            Control::Recording { start } => return self.api_recording(start),
            Control::Play { leg, prompt } => return self.api_play(leg, prompt),
            Control::Dtmf {
                leg,
                digits,
                duration_ms,
            } => self.api_dtmf(leg, &digits, duration_ms),
            Control::Replace(h) => self.hand_over(ctx, *h),
        };
        self.refresh_listing();
        ready(r)
    }
}

/// The request field a prompt came from (for errors).
pub(super) fn prompt_field(p: &Prompt) -> &'static str {
    match p {
        Prompt::Play(Media::File(_)) => "prompt",
        Prompt::Play(Media::Url(_)) => "url",
        Prompt::Say { .. } => "say",
    }
}

/// A clip's length in ms.
pub(super) fn clip_ms(clip: &Pcm) -> u64 {
    clip.samples.len() as u64 * 1000 / u64::from(clip.rate.max(1))
}

/// Renders a prompt (file under the prompt folder, `http://` URL, or TTS) at `rate`, off the
/// actor thread.
pub(super) fn render_prompt(
    tools: &super::IvrTools,
    prompt: Prompt,
    rate: u32,
) -> impl std::future::Future<Output = Result<Pcm, String>> + 'static {
    let prompts = tools.prompts.clone();
    let tts = tools.tts.clone();
    let default_voice = tools.tts_voice.clone();
    let dir = tools.dialplans.prompt_dir();
    let timeout = tools.webhook_timeout;
    async move {
        match prompt {
            Prompt::Play(Media::File(f)) => {
                let path = dir.join(f);
                tokio::task::spawn_blocking(move || prompts.get(&path, rate))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())
            }
            Prompt::Play(Media::Url(u)) => {
                let (bytes, ext) = crate::webhook::fetch(&u, timeout).await?;
                tokio::task::spawn_blocking(move || {
                    switchboard_media::prompt::decode_bytes(bytes, ext.as_deref(), rate)
                })
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())
            }
            Prompt::Say { text, voice } => {
                let voice = voice.or(default_voice);
                tokio::task::spawn_blocking(move || tts.render(&text, voice.as_deref(), rate))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())
            }
        }
    }
}

/// Sends `digits` into a relay leg one after the other (each `duration_ms`, 250 ms apart), on
/// the media runtime.
pub(super) fn send_digits(
    media: &tokio::runtime::Handle,
    relay: Arc<RelaySession>,
    leg: Leg,
    digits: &str,
    duration_ms: u32,
) {
    let digits: Vec<_> = digits.chars().filter_map(super::ivr::to_digit).collect();
    // event: call.dtmf_sent
    media.spawn(async move {
        for d in digits {
            relay.send_dtmf(leg, d, duration_ms);
            // The press, its end packets, then a pause before the next one.
            tokio::time::sleep(Duration::from_millis(u64::from(duration_ms) + 250)).await;
        }
    });
}

/// Starts the whole-call recording into `<recordings>/api/<call-id>-<ms>.wav`.
pub(super) fn start_recording(
    relay: &RelaySession,
    dir: PathBuf,
    call_id: &str,
) -> Result<PathBuf, ControlError> {
    let safe: String = call_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    let path = dir.join("api").join(format!("{safe}-{}.wav", now_ms()));
    relay.start_recording(&path).map_err(|e| match e {
        switchboard_media::RecordError::AlreadyRecording => {
            ControlError::conflict("the call is being recorded already (dialplan `record`)")
        }
        e => ControlError {
            status: 500,
            error: format!("recording did not start: {e}"),
            field: None,
        },
    })?;
    Ok(path)
}

/// Finishes the recording, indexes it, and describes it.
pub(super) async fn stop_recording(
    relay: &RelaySession,
    storage: &switchboard_storage::Storage,
    call_id: &str,
    path: PathBuf,
) -> ControlResult {
    match relay.stop_recording().await {
        Some(info) => {
            super::index_recording(storage, call_id, &info, "caller,callee").await;
            Ok(json!({
                "recording": false,
                "path": info.path.display().to_string(),
                "duration_ms": info.duration_ms,
                "bytes": info.bytes,
            }))
        }
        None => Ok(json!({ "recording": false, "path": path.display().to_string() })),
    }
}

/// The Refer-To URI for `to`: a SIP/tel URI as it is, a user of this engine otherwise.
pub(super) fn refer_target(to: &str, local: std::net::SocketAddr) -> String {
    if to.starts_with("sip:") || to.starts_with("sips:") || to.starts_with("tel:") {
        to.to_string()
    } else {
        format!("sip:{to}@{local}")
    }
}

/// A REFER in `d` to `target`.
pub(super) fn refer_request(d: &mut Dialog, target: &str, local: std::net::SocketAddr) -> Request {
    let mut refer = d.request(Method::Refer);
    refer
        .headers
        .push(HeaderName::ReferTo, format!("<{target}>"));
    refer
        .headers
        .push(HeaderName::ReferredBy, format!("<sip:switchboard@{local}>"));
    refer
}
