//! Target classes: each distinct step target, compiled once, with the bitset of agents whose
//! own attributes satisfy it. The part of a target that reads the interaction is kept aside and
//! evaluated per candidate.

use crate::routing::agent::Agent;
use crate::routing::bitset::Bitset;
use crate::routing::expr::{Ctx, Expr, ExprError, Scope};
use crate::routing::vocab::Vocabulary;
use std::collections::HashMap;

/// One compiled target.
#[derive(Debug)]
pub(crate) struct Class {
    /// The agent-only part, indexed in `members`.
    pub agent_part: Expr,
    /// The part that reads the interaction, if any.
    pub task_part: Option<Expr>,
    /// Agent slots satisfying `agent_part`.
    pub members: Bitset,
    /// Best-skill score per agent slot: the sum of its proficiencies in the skills the target
    /// mentions (kept next to the bitset so the ordering reads contiguous memory).
    pub scores: Vec<u16>,
}

impl Class {
    fn index(&mut self, slot: usize, agent: &Agent, vocab: &Vocabulary) {
        let cx = Ctx {
            agent: Some(agent.view()),
            task: None,
            stats: None,
            vocab,
        };
        self.members.set(slot, self.agent_part.eval(&cx));
        if self.scores.len() <= slot {
            self.scores.resize(slot + 1, 0);
        }
        self.scores[slot] = self
            .agent_part
            .skills()
            .iter()
            .map(|s| u16::from(agent.proficiency(s.0 as usize)))
            .sum();
    }

    /// The best-skill score of an agent slot.
    #[inline]
    pub fn score(&self, slot: usize) -> u16 {
        self.scores.get(slot).copied().unwrap_or(0)
    }
}

/// All classes; class 0 is "any agent".
#[derive(Debug)]
pub(crate) struct Classes {
    list: Vec<Class>,
    by_source: HashMap<String, u32>,
}

impl Classes {
    pub fn new() -> Classes {
        let any = Expr::always();
        Classes {
            list: vec![Class {
                agent_part: any,
                task_part: None,
                members: Bitset::new(),
                scores: Vec::new(),
            }],
            by_source: HashMap::new(),
        }
    }

    /// The class of `target` (`None`: any agent), compiling and indexing it if new.
    pub fn intern(
        &mut self,
        target: Option<&str>,
        vocab: &mut Vocabulary,
        agents: &[Agent],
        live: &Bitset,
    ) -> Result<u32, ExprError> {
        let Some(src) = target.map(str::trim).filter(|s| !s.is_empty()) else {
            return Ok(0);
        };
        if let Some(&id) = self.by_source.get(src) {
            return Ok(id);
        }
        let source = Expr::compile(src, Scope::Target, vocab)?;
        let (agent_part, task_part) = source.split_by_task();
        let mut class = Class {
            agent_part,
            task_part,
            members: Bitset::new(),
            scores: Vec::new(),
        };
        for slot in live.iter() {
            class.index(slot, &agents[slot], vocab);
        }
        let id = self.list.len() as u32;
        self.list.push(class);
        self.by_source.insert(src.to_owned(), id);
        Ok(id)
    }

    /// Re-evaluates every class for one agent (after it is added or its skills change).
    pub fn index_agent(&mut self, slot: usize, agent: &Agent, vocab: &Vocabulary) {
        for c in &mut self.list {
            c.index(slot, agent, vocab);
        }
    }

    /// Drops an agent from every class.
    pub fn unindex_agent(&mut self, slot: usize) {
        for c in &mut self.list {
            c.members.remove(slot);
        }
    }

    /// Class `id` (ids come from `intern`, so they are valid).
    pub fn get(&self, id: u32) -> &Class {
        &self.list[id as usize]
    }
}
