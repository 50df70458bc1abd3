//! Supervision of a live call: listen, whisper and barge (what Asterisk's ChanSpy and
//! FreeSWITCH's eavesdrop do), on the media crate's conference [`Room`].
//!
//! Two calls take part. The **supervised call** (a queue caller bridged to an agent: leg A the
//! caller, leg B the agent) accepts [`SuperviseMsg::Join`]: on the first supervisor it moves its
//! bridge into a room (caller and agent join as normal parties, so they keep hearing each
//! other), then adds the supervisor's leg in the asked mode. The **supervisor's call** is any
//! call answered by the engine (the dialplan's `monitor` action, or later an originate): its
//! own leg A is what joins. Modes change with [`SuperviseMsg::Mode`] (DTMF 1 / 2 / 3 on the
//! supervisor's phone, or the API for every supervisor at once); a supervisor that hangs up
//! sends [`SuperviseMsg::Leave`], and when the last one left the bridge goes back to the
//! relay's direct path (no mixing cost). When the supervised call's bridge ends, every
//! supervisor gets [`SupervisionEnded`].

use super::ivr::Running;
use super::CallActor;
use actix::prelude::*;
use std::sync::Arc;
use switchboard_dialplans::{Event, MonitorMode};
use switchboard_media::conference::Room;
use switchboard_media::mix::{MixMode, ParticipantId};
use switchboard_media::{Leg, RelaySession, Route};

/// What a supervised call is asked.
#[derive(Message)]
#[rtype(result = "Result<u64, String>")]
pub enum SuperviseMsg {
    /// Let a supervisor's leg into the conversation; answers the supervisor's id.
    Join {
        /// The supervisor's media session.
        relay: Arc<RelaySession>,
        /// The supervisor's leg of it.
        leg: Leg,
        /// How the supervisor joins.
        mode: MonitorMode,
        /// Told when the supervision ends from the supervised side.
        notify: Recipient<SupervisionEnded>,
    },
    /// Switch one supervisor's mode.
    Mode {
        /// The supervisor's id.
        id: u64,
        /// The new mode.
        mode: MonitorMode,
    },
    /// Switch every supervisor's mode (API); answers how many there are.
    ModeAll {
        /// The new mode.
        mode: MonitorMode,
    },
    /// A supervisor leaves.
    Leave {
        /// The supervisor's id.
        id: u64,
    },
}

/// The supervised call's bridge ended (or the call did): the supervisor's part is over.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SupervisionEnded {
    /// The supervisor's id in that call.
    pub id: u64,
}

struct Supervisor {
    id: u64,
    pid: ParticipantId,
    notify: Recipient<SupervisionEnded>,
}

/// The supervised side: the room the bridge moved into and who supervises it.
pub(super) struct Supervision {
    room: Room,
    caller: ParticipantId,
    agent: ParticipantId,
    supervisors: Vec<Supervisor>,
    next: u64,
}

/// The supervisor side: the call being supervised and our id there.
pub(super) struct Monitoring {
    target: Recipient<SuperviseMsg>,
    id: u64,
}

impl Supervision {
    fn mix_mode(&self, mode: MonitorMode) -> MixMode {
        match mode {
            MonitorMode::Listen => MixMode::Listen,
            MonitorMode::Whisper => MixMode::Whisper { to: self.agent },
            MonitorMode::Barge => MixMode::Barge,
        }
    }
}

impl CallActor {
    fn supervise_join(
        &mut self,
        relay: Arc<RelaySession>,
        leg: Leg,
        mode: MonitorMode,
        notify: Recipient<SupervisionEnded>,
    ) -> Result<u64, String> {
        if self.ended || self.winner.is_none() {
            return Err("the call is not connected to an agent".into());
        }
        let own = self.relay.clone().ok_or("the call has no media")?;
        if Arc::ptr_eq(&own, &relay) {
            return Err("a call cannot supervise itself".into());
        }
        if self.supervision.is_none() {
            let room = Room::start(&self.setup.services.media.handle);
            let caller = room.join(own.clone(), Leg::A, MixMode::Normal);
            let agent = room.join(own.clone(), Leg::B, MixMode::Normal);
            let (Ok(caller), Ok(agent)) = (caller, agent) else {
                self.restore_bridge();
                return Err("the conversation could not be mixed".into());
            };
            tracing::info!(call_id = %self.guard.state.record.call_id, "supervision starts");
            self.supervision = Some(Supervision {
                room,
                caller,
                agent,
                supervisors: Vec::new(),
                next: 1,
            });
        }
        let s = self.supervision.as_mut().ok_or("no room")?;
        let pid = s
            .room
            .join(relay, leg, s.mix_mode(mode))
            .map_err(|e| e.to_string())?;
        let id = s.next;
        s.next += 1;
        s.supervisors.push(Supervisor { id, pid, notify });
        tracing::info!(call_id = %self.guard.state.record.call_id, id, mode = mode.name(),
            "supervisor joined");
        Ok(id)
    }

    fn supervise_mode(&mut self, id: Option<u64>, mode: MonitorMode) -> Result<u64, String> {
        let s = self
            .supervision
            .as_mut()
            .ok_or("the call is not supervised")?;
        let m = s.mix_mode(mode);
        let mut n = 0;
        for sup in s
            .supervisors
            .iter()
            .filter(|x| id.is_none_or(|i| i == x.id))
        {
            s.room.set_mode(sup.pid, m).map_err(|e| e.to_string())?;
            n += 1;
        }
        if n == 0 {
            return Err("no such supervisor".into());
        }
        tracing::info!(call_id = %self.guard.state.record.call_id, ?id, mode = mode.name(),
            "supervision mode");
        Ok(n)
    }

    fn supervise_leave(&mut self, id: u64) -> Result<u64, String> {
        let s = self
            .supervision
            .as_mut()
            .ok_or("the call is not supervised")?;
        let i = s
            .supervisors
            .iter()
            .position(|x| x.id == id)
            .ok_or("no such supervisor")?;
        let sup = s.supervisors.remove(i);
        let _ = s.room.leave(sup.pid);
        if s.supervisors.is_empty() {
            self.restore_bridge();
        }
        Ok(id)
    }

    /// Dissolves the room (if any) and puts caller and agent back on the relay's direct bridge.
    fn restore_bridge(&mut self) {
        if let Some(s) = self.supervision.take() {
            let _ = s.room.leave(s.caller);
            let _ = s.room.leave(s.agent);
            drop(s.room);
        }
        if let (Some(r), Some(_)) = (&self.relay, self.winner) {
            r.stop_play(Leg::A);
            r.stop_play(Leg::B);
            r.set_route(Leg::A, Route::Bridge);
            r.set_route(Leg::B, Route::Bridge);
        }
        tracing::info!(call_id = %self.guard.state.record.call_id, "supervision ends");
    }

    /// The supervised bridge is over (agent or caller hung up): tell every supervisor and drop
    /// the room. Called before the bridge's own teardown.
    pub(super) fn end_supervision(&mut self) {
        let Some(s) = self.supervision.take() else {
            return;
        };
        for sup in &s.supervisors {
            sup.notify.do_send(SupervisionEnded { id: sup.id });
        }
        drop(s);
    }

    /// The dialplan's `monitor` action: answer, find the agent's live call, join it.
    pub(super) fn start_monitor(
        &mut self,
        ctx: &mut Context<Self>,
        agent: String,
        mode: MonitorMode,
    ) -> Option<Event> {
        if let Err(e) = self.answer_here(ctx) {
            tracing::warn!(error = %e, "monitor: cannot answer");
            return Some(self.monitor_status("error"));
        }
        let (Some(cc), Some(relay)) = (self.setup.services.contact.clone(), self.relay.clone())
        else {
            return Some(self.monitor_status("not_found"));
        };
        self.set_running_monitor();
        let notify = ctx.address().recipient();
        async move {
            let target = cc.voice_call_of_agent(&agent).await?;
            let id = target
                .send(SuperviseMsg::Join {
                    relay,
                    leg: Leg::A,
                    mode,
                    notify,
                })
                .await
                .map_err(|_| "the call ended".to_string())??;
            Ok::<_, String>((target, id))
        }
        .into_actor(self)
        .map(|res, act, ctx| {
            if !matches!(act.ivr.as_ref().map(|i| &i.running), Some(Running::Monitor)) || act.ended
            {
                // Hung up meanwhile: leave at once.
                if let Ok((target, id)) = res {
                    target.do_send(SuperviseMsg::Leave { id });
                }
                return;
            }
            match res {
                Ok((target, id)) => {
                    // (No stop_play here: it would end the room's stream into our leg.)
                    act.monitoring = Some(Monitoring { target, id });
                }
                Err(e) => {
                    tracing::info!(error = %e, "monitor: nothing to supervise");
                    let ev = act.monitor_status("not_found");
                    act.step(ctx, ev);
                }
            }
        })
        .spawn(ctx);
        None
    }

    fn set_running_monitor(&mut self) {
        if let Some(i) = self.ivr.as_mut() {
            i.running = Running::Monitor;
        }
    }

    fn monitor_status(&mut self, status: &str) -> Event {
        if let Some(i) = self.ivr.as_mut() {
            i.session.set_var("monitor_status", status);
        }
        Event::ActionCompleted
    }

    /// A digit from the supervisor while monitoring: 1 listen, 2 whisper, 3 barge.
    pub(super) fn monitor_digit(&mut self, c: char) {
        let (Some(m), Some(mode)) = (&self.monitoring, MonitorMode::parse(&c.to_string())) else {
            return;
        };
        m.target.do_send(SuperviseMsg::Mode { id: m.id, mode });
    }

    /// The supervisor's call ends or leaves the action: leave the supervised call.
    pub(super) fn stop_monitoring(&mut self) {
        if let Some(m) = self.monitoring.take() {
            m.target.do_send(SuperviseMsg::Leave { id: m.id });
        }
    }
}

impl Handler<SuperviseMsg> for CallActor {
    type Result = Result<u64, String>;

    fn handle(&mut self, msg: SuperviseMsg, _ctx: &mut Context<Self>) -> Self::Result {
        match msg {
            SuperviseMsg::Join {
                relay,
                leg,
                mode,
                notify,
            } => self.supervise_join(relay, leg, mode, notify),
            SuperviseMsg::Mode { id, mode } => self.supervise_mode(Some(id), mode),
            SuperviseMsg::ModeAll { mode } => self.supervise_mode(None, mode),
            SuperviseMsg::Leave { id } => self.supervise_leave(id),
        }
    }
}

impl Handler<SupervisionEnded> for CallActor {
    type Result = ();

    fn handle(&mut self, msg: SupervisionEnded, ctx: &mut Context<Self>) {
        let ours = self.monitoring.as_ref().is_some_and(|m| m.id == msg.id);
        if !ours || self.ended {
            return;
        }
        self.monitoring = None;
        if let Some(r) = &self.relay {
            r.set_route(Leg::A, Route::Local);
        }
        let ev = self.monitor_status("ended");
        self.step(ctx, ev);
    }
}
