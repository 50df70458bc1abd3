//! Workflow compilation, filter matching and moving interactions between steps.

use super::{Router, RouterError};
use crate::routing::events::{EventKind, Explanation, SkipReason, StepReason, Trigger};
use crate::routing::expr::{Ctx, Expr, Scope, StepStats, TaskView};
use crate::routing::ids::InteractionId;
use crate::routing::interaction::{Interaction, NewInteraction, StepRef};
use crate::routing::queue::LeaveReason;
use crate::routing::router::timers::TimerKind;
use crate::routing::workflow::{
    Filter, Step, Workflow, WorkflowError, WorkflowErrorKind, WorkflowSpec,
};
use std::sync::Arc;

/// Compiles `spec` against the router's queues, vocabulary and target classes.
pub(super) fn compile_workflow(
    r: &mut Router,
    spec: &WorkflowSpec,
) -> Result<Workflow, WorkflowError> {
    let mut filters = Vec::with_capacity(spec.filters.len());
    for (fi, f) in spec.filters.iter().enumerate() {
        let err =
            |step: Option<usize>, field: &'static str, kind: WorkflowErrorKind| WorkflowError {
                filter: fi,
                step,
                field,
                kind,
            };
        let expr = Expr::compile(&f.expression, Scope::Filter, &mut r.vocab)
            .map_err(|e| err(None, "expression", WorkflowErrorKind::Expr(e)))?;
        if f.steps.is_empty() {
            return Err(err(None, "steps", WorkflowErrorKind::NoSteps));
        }
        let mut steps = Vec::with_capacity(f.steps.len());
        for (si, s) in f.steps.iter().enumerate() {
            let queue = *r
                .queue_slots
                .get(&s.queue)
                .ok_or_else(|| err(Some(si), "queue", WorkflowErrorKind::UnknownQueue(s.queue)))?;
            let class = r
                .classes
                .intern(s.target.as_deref(), &mut r.vocab, &r.agents, &r.live)
                .map_err(|e| err(Some(si), "target", WorkflowErrorKind::Expr(e)))?;
            let skip_if = match s.skip_if.as_deref().map(str::trim) {
                Some(src) if !src.is_empty() => Some(
                    Expr::compile(src, Scope::SkipIf, &mut r.vocab)
                        .map_err(|e| err(Some(si), "skip_if", WorkflowErrorKind::Expr(e)))?,
                ),
                _ => None,
            };
            steps.push(Step {
                queue,
                class,
                order: s.order,
                timeout_ms: s.timeout_ms,
                skip_if,
                ring_all: s.ring_all,
                priority: s.priority,
                boost_ms: s.boost_ms,
            });
        }
        filters.push(Filter {
            name: Arc::from(f.name.as_str()),
            expr,
            steps,
        });
    }
    let default_queue = match spec.default_queue {
        Some(q) => Some(*r.queue_slots.get(&q).ok_or(WorkflowError {
            filter: spec.filters.len(),
            step: None,
            field: "default_queue",
            kind: WorkflowErrorKind::UnknownQueue(q),
        })?),
        None => None,
    };
    Ok(Workflow {
        filters,
        default_queue,
    })
}

pub(super) fn task_view(it: &Interaction) -> TaskView<'_> {
    TaskView {
        channel: it.channel,
        priority: it.priority,
        attributes: &it.attributes,
    }
}

impl Router {
    /// The compiled step `s` refers to (refs are made only from existing workflows and queues,
    /// both append-only, so indexing cannot fail).
    pub(super) fn step_of(&self, s: StepRef) -> &Step {
        match s {
            StepRef::Workflow {
                workflow,
                filter,
                step,
            } => &self.workflows[workflow as usize].filters[filter as usize].steps[step as usize],
            StepRef::Direct(q) => &self.queues[q as usize].direct,
        }
    }

    pub(super) fn filter_name(&self, s: StepRef) -> Option<Arc<str>> {
        match s {
            StepRef::Workflow {
                workflow, filter, ..
            } => Some(
                self.workflows[workflow as usize].filters[filter as usize]
                    .name
                    .clone(),
            ),
            StepRef::Direct(_) => None,
        }
    }

    pub(super) fn step_index(s: StepRef) -> u32 {
        match s {
            StepRef::Workflow { step, .. } => step,
            StepRef::Direct(_) => 0,
        }
    }

    fn next_step(&self, s: StepRef) -> Option<StepRef> {
        match s {
            StepRef::Workflow {
                workflow,
                filter,
                step,
            } => {
                let n = self.workflows[workflow as usize].filters[filter as usize]
                    .steps
                    .len();
                ((step as usize + 1) < n).then_some(StepRef::Workflow {
                    workflow,
                    filter,
                    step: step + 1,
                })
            }
            StepRef::Direct(_) => None,
        }
    }

    /// Starts routing a new interaction: filter, first step that takes it, first decision.
    pub(super) fn start(
        &mut self,
        n: NewInteraction,
        transferred_from: Option<InteractionId>,
    ) -> Result<(), RouterError> {
        let id = n.id;
        if self.interactions.contains_key(&id) {
            return Err(RouterError::DuplicateInteraction(id));
        }
        let step = match n.queue {
            Some(q) => StepRef::Direct(self.queue_slot(q)?),
            None => self.match_filter(&n)?,
        };
        let mut it = Interaction::new(n, self.now, step);
        it.transferred_from = transferred_from;
        self.interactions.insert(id, it);
        let filter = self.filter_name(step);
        self.explain(Explanation::FilterMatched {
            at: self.now,
            interaction: id,
            filter,
        });
        if !self.enter_step(id, step, StepReason::First) {
            self.interactions.remove(&id);
            return Err(RouterError::NoRoute(id));
        }
        self.route_interaction(id, Trigger::Arrived);
        Ok(())
    }

    fn match_filter(&self, n: &NewInteraction) -> Result<StepRef, RouterError> {
        let wi = self.workflows.len() - 1;
        let wf = &self.workflows[wi];
        let cx = Ctx {
            agent: None,
            task: Some(TaskView {
                channel: n.channel,
                priority: n.priority,
                attributes: &n.attributes,
            }),
            stats: None,
            vocab: &self.vocab,
        };
        if let Some(fi) = wf.filters.iter().position(|f| f.expr.eval(&cx)) {
            return Ok(StepRef::Workflow {
                workflow: wi as u32,
                filter: fi as u32,
                step: 0,
            });
        }
        wf.default_queue
            .map(StepRef::Direct)
            .ok_or(RouterError::NoRoute(n.id))
    }

    /// Whether step `s`'s `skip_if` holds for interaction `id` now.
    fn skip_now(&self, it: &Interaction, s: StepRef) -> bool {
        let step = self.step_of(s);
        let Some(skip) = &step.skip_if else {
            return false;
        };
        let stats = StepStats {
            available: self.count_open(it, step),
            waiting: self.queues[step.queue as usize].queue.len() as u32,
        };
        let cx = Ctx {
            agent: None,
            task: Some(task_view(it)),
            stats: Some(stats),
            vocab: &self.vocab,
        };
        skip.eval(&cx)
    }

    /// Agents open now, in the step's queue without delay, matching its target.
    fn count_open(&self, it: &Interaction, step: &Step) -> u32 {
        let open = &self.open[it.channel.index()];
        let class = self.classes.get(step.class);
        let qs = &self.queues[step.queue as usize];
        let Some((0, members)) = qs.members.first() else {
            return 0;
        };
        (0..open.word_len())
            .map(|w| (open.word(w) & members.word(w) & class.members.word(w)).count_ones())
            .sum()
    }

    /// Puts `id` into step `first`, or the first later step that takes it. Returns false, leaving
    /// the interaction where it was, if none does.
    pub(super) fn enter_step(
        &mut self,
        id: InteractionId,
        first: StepRef,
        reason: StepReason,
    ) -> bool {
        let now = self.now;
        let mut cur = Some(first);
        while let Some(s) = cur {
            cur = self.next_step(s);
            let Some(it) = self.interactions.get(&id) else {
                return false;
            };
            let step_idx = Self::step_index(s);
            if self.skip_now(it, s) {
                self.explain(Explanation::StepSkipped {
                    at: now,
                    interaction: id,
                    step: step_idx,
                    reason: SkipReason::SkipIf,
                });
                continue;
            }
            let step = self.step_of(s);
            let (q, class, timeout, prio, boost) = (
                step.queue,
                step.class,
                step.timeout_ms,
                step.priority,
                step.boost_ms,
            );
            let qs = &self.queues[q as usize];
            if qs.staffed == 0 && !qs.queue.config.join_when_empty {
                self.explain(Explanation::StepSkipped {
                    at: now,
                    interaction: id,
                    step: step_idx,
                    reason: SkipReason::QueueEmpty,
                });
                continue;
            }
            let old = it.route.queue_slot;
            let priority = prio.unwrap_or(it.priority);
            let boost_ms = it.boost_ms.max(boost);
            let (created, channel) = (it.times.created, it.channel);
            let lane = class * 4 + channel.index() as u32;
            if old == Some(q) {
                if let Ok(ev) = self.queues[q as usize]
                    .queue
                    .leave(id, LeaveReason::Overflow, now)
                {
                    self.queue_event(q, ev);
                }
            }
            match self.queues[q as usize]
                .queue
                .join(id, priority, created, boost_ms, lane, now)
            {
                Ok(ev) => self.queue_event(q, ev),
                Err(_) => {
                    self.explain(Explanation::StepSkipped {
                        at: now,
                        interaction: id,
                        step: step_idx,
                        reason: SkipReason::QueueFull,
                    });
                    continue;
                }
            }
            if let Some(o) = old.filter(|&o| o != q) {
                if let Ok(ev) = self.queues[o as usize]
                    .queue
                    .leave(id, LeaveReason::Overflow, now)
                {
                    self.queue_event(o, ev);
                }
            }
            let qid = self.queues[q as usize].queue.id;
            let Some(it) = self.interactions.get_mut(&id) else {
                return false;
            };
            it.route.step = s;
            it.route.step_gen += 1;
            it.route.rejected.clear();
            it.route.queue_slot = Some(q);
            it.route.lane = lane;
            it.queue = Some(qid);
            it.times.queued = Some(now);
            it.priority = priority;
            it.boost_ms = boost_ms;
            let gen = it.route.step_gen;
            if let Some(t) = timeout {
                self.timers.set(now + t, TimerKind::StepTimeout { id, gen });
            }
            let qs = &self.queues[q as usize];
            if let Some(mw) = qs.queue.config.max_wait_ms {
                self.timers.set(now + mw, TimerKind::MaxWait { id, gen });
            }
            let delays: Vec<u64> = qs.members.iter().map(|m| m.0).filter(|&d| d > 0).collect();
            for d in delays {
                self.timers
                    .set(now + d, TimerKind::DelayElapsed { id, gen });
            }
            self.event(EventKind::Queued {
                interaction: id,
                queue: qid,
                channel,
            });
            self.explain(Explanation::StepEntered {
                at: now,
                interaction: id,
                step: step_idx,
                queue: qid,
                reason,
            });
            return true;
        }
        false
    }

    /// A step timed out: move on to the next step that takes the interaction, or stay.
    pub(super) fn on_step_timeout(&mut self, id: InteractionId) {
        let Some(it) = self.interactions.get(&id) else {
            return;
        };
        let cur = it.route.step;
        let next = self.next_step(cur);
        let moved = next.is_some_and(|n| self.enter_step(id, n, StepReason::Timeout));
        if moved {
            self.route_interaction(id, Trigger::StepChanged);
        } else {
            self.explain(Explanation::StepSkipped {
                at: self.now,
                interaction: id,
                step: Self::step_index(cur),
                reason: SkipReason::LastStep,
            });
        }
    }
}
