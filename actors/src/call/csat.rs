//! The post-call survey on a queue call (`csat` dialplan action, or `csat_survey` on the
//! queue): which agent and queue the caller just left, and the running [`Survey`] (the pure
//! state machine of the dialplans crate) whose commands the IVR side carries out like any
//! other (`ivr.rs` hands it the outcome of each command while it runs). The score goes to the
//! CRM (`crm::voice::record_csat`) as soon as it is known; the dialplan gets `csat_status`
//! and `csat_score` when the survey is over.

use super::CallActor;
use crate::contact::InteractionId;
use actix::prelude::*;
use switchboard_dialplans::{Command as PlanCommand, CsatSurvey, Event, Survey, SurveyStep};

/// The agent leg of a queue call.
#[derive(Clone, Debug)]
pub(super) struct AgentLeg {
    /// The routing interaction.
    pub interaction: InteractionId,
    /// The agent's name.
    pub agent: String,
    /// The queue it waited in.
    pub queue: Option<String>,
    /// The queue asks for a survey when the agent hangs up.
    pub survey: bool,
}

/// The survey side of a call.
#[derive(Default)]
pub(super) struct CsatCall {
    /// The offer ringing now (becomes `leg` when answered).
    pub offered: Option<AgentLeg>,
    /// The last agent the caller talked to.
    pub leg: Option<AgentLeg>,
    /// A survey ran for `leg` already (a queue's survey and a plan's `csat` ask once).
    pub surveyed: bool,
    /// The survey in progress.
    pub running: Option<Survey>,
}

impl CallActor {
    /// The agent answered: the leg the survey will be about; the CRM's row of the call gets
    /// the agent and queue (created when the screen pop did not already).
    pub(super) fn csat_leg_answered(&mut self) {
        let Some(leg) = self.csat.offered.take() else {
            return;
        };
        self.csat.surveyed = false;
        let call = self.crm_call(&leg);
        let storage = self.setup.services.storage.clone();
        actix_rt::spawn(async move {
            if let Err(e) = crate::crm::voice::call_interaction(&storage, &call).await {
                tracing::warn!(error = %e, "CRM: cannot note the agent on the call");
            }
        });
        self.csat.leg = Some(leg);
    }

    /// True when the queue of the leg that just ended asks for a survey (and none ran yet).
    pub(super) fn queue_wants_survey(&self) -> bool {
        self.csat.leg.as_ref().is_some_and(|l| l.survey) && !self.csat.surveyed
    }

    fn crm_call(&self, leg: &AgentLeg) -> crate::crm::voice::VoiceCall {
        let r = &self.guard.state.record;
        crate::crm::voice::VoiceCall {
            call_id: r.call_id.clone(),
            caller: r.caller.clone(),
            agent: Some(leg.agent.clone()),
            queue: leg.queue.clone(),
            started_at_ms: r.start_ms,
        }
    }

    /// Starts a survey about the last agent leg; `Some(event)` when it is skipped at once (no
    /// agent answered this call, or a survey already ran for that agent).
    pub(super) fn start_survey(
        &mut self,
        ctx: &mut Context<Self>,
        spec: CsatSurvey,
    ) -> Option<Event> {
        if self.csat.leg.is_none() || self.csat.surveyed {
            self.set_csat_vars("skipped", None);
            return Some(Event::ActionCompleted);
        }
        if let Err(e) = self.answer_here(ctx) {
            tracing::warn!(error = %e, "survey: cannot answer");
            self.set_csat_vars("skipped", None);
            return Some(Event::ActionCompleted);
        }
        self.csat.surveyed = true;
        let (survey, first) = Survey::start(spec);
        self.csat.running = Some(survey);
        self.execute_plan_command(ctx, first)
    }

    /// Routes an event to the running survey. `Ok(next)`: the survey took it (`next` is the
    /// event of a command that completed at once); `Err(event)`: for the dialplan (no survey,
    /// the caller hung up, or the survey is over: then `ActionCompleted`).
    pub(super) fn survey_event(
        &mut self,
        ctx: &mut Context<Self>,
        ev: Event,
    ) -> Result<Option<Event>, Event> {
        let Some(survey) = self.csat.running.as_mut() else {
            return Err(ev);
        };
        if ev == Event::Hangup {
            if let Some(score) = survey.take_score() {
                self.store_score(score);
            }
            self.csat.running = None;
            return Err(ev);
        }
        let step = survey.handle(&ev);
        let asked = survey.asked();
        if let Some(score) = survey.take_score() {
            tracing::info!(score, asked, "survey answered");
            self.store_score(score);
        } else if let SurveyStep::Execute(PlanCommand::Gather(_)) = &step {
            tracing::info!(after = ?ev, "survey: asking again (question {asked})");
        }
        match step {
            SurveyStep::Execute(cmd) => Ok(self.execute_plan_command(ctx, cmd)),
            SurveyStep::Done(outcome) => {
                self.csat.running = None;
                tracing::info!(status = outcome.status(), score = ?outcome.score(), "survey over");
                self.set_csat_vars(outcome.status(), outcome.score());
                Err(Event::ActionCompleted)
            }
        }
    }

    fn set_csat_vars(&mut self, status: &str, score: Option<u8>) {
        if let Some(i) = self.ivr.as_mut() {
            i.session.set_var("csat_status", status);
            i.session.set_var(
                "csat_score",
                score.map(|s| s.to_string()).unwrap_or_default(),
            );
        }
    }

    /// Stores the score on the call's CRM interaction (its tickets too), in the background.
    fn store_score(&mut self, score: u8) {
        let Some(leg) = self.csat.leg.clone() else {
            return;
        };
        let call = self.crm_call(&leg);
        let s = &self.setup.services;
        let crm = crate::crm::Crm::new(s.storage.clone()).with_events(s.events.clone());
        tracing::info!(score, agent = %leg.agent, interaction = %leg.interaction, "CSAT score");
        actix_rt::spawn(async move {
            match crate::crm::voice::record_csat(&crm, &call, i64::from(score)).await {
                Ok(Some(id)) => tracing::debug!(crm_interaction = id, "CSAT stored"),
                Ok(None) => {
                    tracing::warn!(caller = %call.caller, "CSAT: the caller has no identity; score not stored")
                }
                Err(e) => tracing::warn!(error = %e, "CSAT: cannot store the score"),
            }
        });
    }

    /// Carries out one survey command with the IVR's machinery.
    fn execute_plan_command(&mut self, ctx: &mut Context<Self>, cmd: PlanCommand) -> Option<Event> {
        self.execute(ctx, cmd)
    }
}
