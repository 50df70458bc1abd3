//! How a step picks among several matching agents.

use serde::{Deserialize, Serialize};

/// Agent ordering for a workflow step (ties go to the agent idle longest, then the lowest slot).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentOrder {
    /// The agent free for the longest time.
    #[default]
    LongestIdle,
    /// The agent with the least total conversation time.
    LeastTalkTime,
    /// The agent who handled the fewest interactions.
    FewestHandled,
    /// The next agent after the last one this queue chose.
    RoundRobin,
    /// A random agent (seeded: runs are reproducible).
    Random,
    /// The highest sum of proficiencies over the skills the target mentions.
    BestSkill,
}
