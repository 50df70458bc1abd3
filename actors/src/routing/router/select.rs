//! The decisions: which agent for a waiting interaction (task-driven, on arrival, step change,
//! delay, return), and which interaction for an agent that became free (agent-driven).
//!
//! Task-driven: the candidates are the intersection, 64 agents per word, of the agents open for
//! the channel, the queue's profile members whose delay has elapsed and the agents matching the
//! step target's agent part; only those are visited (rejects, the target's interaction part and
//! the ordering key). Agent-driven: the agent looks at the heads of the lanes (target × channel)
//! it qualifies for in the queues of its profile, best profile priority first, and takes the
//! best by interaction priority then age. Neither scans all agents or all waiting interactions.

use super::steps::task_view;
use super::Router;
use crate::routing::bitset::Bits;
use crate::routing::events::{Decision, Excluded, Explanation, Trigger, Why};
use crate::routing::expr::Ctx;
use crate::routing::ids::{Channel, InteractionId};
use crate::routing::interaction::Interaction;
use crate::routing::order::AgentOrder;
use crate::routing::queue::QueueKey;

/// A candidate's sort key: smaller wins; the slot breaks ties.
type Key = (u64, u64, u32);

fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Router {
    /// Task-driven decision for a waiting interaction.
    pub(super) fn route_interaction(&mut self, id: InteractionId, trigger: Trigger) {
        let Some(it) = self.interactions.get(&id) else {
            return;
        };
        if !it.state.is_waiting() {
            return;
        }
        let step = self.step_of(it.route.step);
        let (q, class_id, order) = (step.queue as usize, step.class, step.order);
        let ring_all = step.ring_all && it.channel == Channel::Voice;
        let rand = if order == AgentOrder::Random {
            self.rng.next_u64()
        } else {
            0
        };
        self.decisions += 1;
        let (best, mut ring, candidates) = self.candidates(it, q, class_id, order, ring_all, rand);
        let skipped = self.skipped(it, q, class_id);
        let decision = |chosen, why| Decision {
            at: self.now,
            interaction: id,
            trigger,
            filter: self.filter_name(it.route.step),
            step: Self::step_index(it.route.step),
            queue: self.queues[q].queue.id,
            chosen,
            why,
            candidates,
            skipped,
        };
        if ring_all && !ring.is_empty() {
            ring.sort_unstable();
            ring.truncate(self.cfg.ring_all_limit.max(1));
            let slots: Vec<u32> = ring.iter().map(|k| k.2).collect();
            let agents = slots.iter().map(|&s| self.agents[s as usize].id).collect();
            let d = decision(agents, Why::RingAll);
            self.make_offer(id, &slots, d);
            return;
        }
        let Some(best) = best else {
            let d = decision(Vec::new(), Why::NoAgent);
            self.explain(Explanation::Decision(d));
            return;
        };
        let slot = best.2;
        let a = &self.agents[slot as usize];
        let figure = match order {
            AgentOrder::LongestIdle => self.now.saturating_sub(a.stats.idle_since),
            AgentOrder::LeastTalkTime => a.stats.talk_ms,
            AgentOrder::FewestHandled => a.stats.handled,
            AgentOrder::BestSkill => u64::MAX - best.0,
            AgentOrder::RoundRobin | AgentOrder::Random => 0,
        };
        let d = decision(vec![a.id], Why::Ordering(order, figure));
        if order == AgentOrder::RoundRobin {
            self.queues[q].rr_cursor = slot as usize;
        }
        self.make_offer(id, &[slot], d);
    }

    /// Visits the candidates: returns the best, all of them when ringing all, and their count.
    fn candidates(
        &self,
        it: &Interaction,
        q: usize,
        class_id: u32,
        order: AgentOrder,
        ring_all: bool,
        rand: u64,
    ) -> (Option<Key>, Vec<Key>, u32) {
        let qs = &self.queues[q];
        let class = self.classes.get(class_id);
        let open = &self.open[it.channel.index()];
        let age = self.now.saturating_sub(it.times.queued.unwrap_or(self.now));
        let n = self.agents.len().max(1);
        let task = task_view(it);
        let mut best: Option<Key> = None;
        let mut ring = Vec::new();
        let mut count = 0u32;
        for w in 0..open.word_len() {
            let o = open.word(w) & class.members.word(w);
            if o == 0 {
                continue;
            }
            let mut m = 0u64;
            for (delay, set) in &qs.members {
                if *delay > age {
                    break;
                }
                m |= set.word(w);
            }
            for b in Bits(o & m) {
                let slot = w * 64 + b;
                if it.route.rejected.contains(&(slot as u32)) {
                    continue;
                }
                if let Some(tp) = &class.task_part {
                    let cx = Ctx {
                        agent: Some(self.agents[slot].view()),
                        task: Some(task),
                        stats: None,
                        vocab: &self.vocab,
                    };
                    if !tp.eval(&cx) {
                        continue;
                    }
                }
                count += 1;
                // Invariant: refresh_agent sized `figures` for every agent slot.
                let [idle_since, talk_ms, handled] = self.figures[slot];
                let (k1, k2) = match order {
                    AgentOrder::LongestIdle => (idle_since, 0),
                    AgentOrder::LeastTalkTime => (talk_ms, idle_since),
                    AgentOrder::FewestHandled => (handled, idle_since),
                    AgentOrder::BestSkill => (u64::MAX - u64::from(class.score(slot)), idle_since),
                    AgentOrder::RoundRobin => {
                        let c = qs.rr_cursor;
                        let d = if c == usize::MAX || slot > c {
                            slot.wrapping_sub(c.wrapping_add(1))
                        } else {
                            slot + n - c - 1
                        };
                        (d as u64, 0)
                    }
                    AgentOrder::Random => (mix(rand ^ slot as u64), 0),
                };
                let key = (k1, k2, slot as u32);
                if ring_all {
                    ring.push(key);
                }
                if best.is_none_or(|b| key < b) {
                    best = Some(key);
                }
            }
        }
        (best, ring, count)
    }

    /// Some open agents that were passed over, with the reason.
    fn skipped(
        &self,
        it: &Interaction,
        q: usize,
        class_id: u32,
    ) -> Vec<(crate::routing::ids::AgentId, Excluded)> {
        let limit = if self.cfg.explanations {
            self.cfg.explain_skipped
        } else {
            0
        };
        let mut out = Vec::new();
        if limit == 0 {
            return out;
        }
        let qs = &self.queues[q];
        let class = self.classes.get(class_id);
        let age = self.now.saturating_sub(it.times.queued.unwrap_or(self.now));
        let task = task_view(it);
        // Look at a bounded number of open agents: explanations must not cost a full scan.
        for slot in self.open[it.channel.index()].iter().take(limit * 8) {
            let member = qs.members.iter().find(|(_, set)| set.contains(slot));
            let reason = match member {
                None => Excluded::NotInQueue,
                Some((d, _)) if *d > age => Excluded::Delay,
                Some(_) if !class.members.contains(slot) => Excluded::Target,
                Some(_) if it.route.rejected.contains(&(slot as u32)) => Excluded::Rejected,
                Some(_) => match &class.task_part {
                    Some(tp)
                        if !tp.eval(&Ctx {
                            agent: Some(self.agents[slot].view()),
                            task: Some(task),
                            stats: None,
                            vocab: &self.vocab,
                        }) =>
                    {
                        Excluded::Target
                    }
                    _ => continue,
                },
            };
            out.push((self.agents[slot].id, reason));
            if out.len() >= limit {
                break;
            }
        }
        out
    }

    /// Agent-driven decisions: offers the agent the best interactions it can take, one at a time,
    /// while it has room.
    pub(super) fn route_agent(&mut self, slot: u32) {
        while let Some((id, profile_priority)) = self.next_for_agent(slot) {
            self.decisions += 1;
            let Some(it) = self.interactions.get(&id) else {
                return;
            };
            let q = it.route.queue_slot.unwrap_or(0) as usize;
            let agent = self.agents[slot as usize].id;
            let d = Decision {
                at: self.now,
                interaction: id,
                trigger: Trigger::AgentFree(agent),
                filter: self.filter_name(it.route.step),
                step: Self::step_index(it.route.step),
                queue: self.queues[q].queue.id,
                chosen: vec![agent],
                why: Why::NextInLine { profile_priority },
                candidates: 1,
                skipped: Vec::new(),
            };
            if !self.make_offer(id, &[slot], d) {
                return;
            }
        }
    }

    /// The interaction a free agent should be offered next, with the profile priority it came by.
    fn next_for_agent(&self, slot: u32) -> Option<(InteractionId, u32)> {
        let s = slot as usize;
        if !self.live.contains(s)
            || !Channel::ALL
                .iter()
                .any(|c| self.open[c.index()].contains(s))
        {
            return None;
        }
        let a = &self.agents[s];
        let profile = &a.profile;
        let mut i = 0;
        while i < profile.len() {
            let prio = profile[i].priority;
            let mut best: Option<(QueueKey, InteractionId)> = None;
            while i < profile.len() && profile[i].priority == prio {
                let entry = profile[i];
                i += 1;
                let Some(&q) = self.queue_slots.get(&entry.queue) else {
                    continue;
                };
                let queue = &self.queues[q as usize].queue;
                if queue.is_empty() {
                    continue;
                }
                for lane in queue.lanes() {
                    if lane.items.is_empty() {
                        continue;
                    }
                    let (class_id, ch) = (lane.id / 4, Channel::ALL[(lane.id % 4) as usize]);
                    let class = self.classes.get(class_id);
                    if !self.open[ch.index()].contains(s) || !class.members.contains(s) {
                        continue;
                    }
                    for (k, iid) in lane.items.iter().take(self.cfg.scan_limit.max(1)) {
                        if best.is_some_and(|(bk, _)| *k >= bk) {
                            break;
                        }
                        let Some(it) = self.interactions.get(iid) else {
                            continue;
                        };
                        let waited = self.now.saturating_sub(it.times.queued.unwrap_or(self.now));
                        if waited < entry.delay_ms || it.route.rejected.contains(&slot) {
                            continue;
                        }
                        if let Some(tp) = &class.task_part {
                            let cx = Ctx {
                                agent: Some(a.view()),
                                task: Some(task_view(it)),
                                stats: None,
                                vocab: &self.vocab,
                            };
                            if !tp.eval(&cx) {
                                continue;
                            }
                        }
                        best = Some((*k, *iid));
                        break;
                    }
                }
            }
            if let Some((_, id)) = best {
                return Some((id, prio));
            }
        }
        None
    }
}
