//! Per-channel capacity in units, with an interruptibility rule.
//!
//! An agent has a budget of units; each channel costs some units per interaction and may be
//! capped at a count. The defaults give: one voice call takes the whole budget, chats cost a third
//! (three at a time), so chatting blocks voice and voice blocks chat. Work on a channel marked
//! interruptible by another channel does not count against that other channel (e.g. an e-mail
//! in progress does not stop a call from being offered).

use crate::routing::ids::Channel;
use serde::{Deserialize, Serialize};

/// How much work an agent can carry at once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacity {
    /// Total units.
    pub budget: u32,
    /// Units one interaction of each channel uses, indexed by [`Channel::index`].
    pub cost: [u32; 4],
    /// Most interactions of each channel at once (0: the agent does not take that channel).
    pub max: [u32; 4],
    /// `interruptible_by[c]`: channels that may be offered while working on channel `c`, its work
    /// not counting against them.
    pub interruptible_by: [Vec<Channel>; 4],
}

impl Default for Capacity {
    /// Voice 1 (whole budget), chat 3, messaging 3, e-mail 1 (whole budget); nothing interruptible.
    fn default() -> Self {
        Capacity {
            budget: 6,
            cost: [6, 2, 2, 6],
            max: [1, 3, 3, 1],
            interruptible_by: Default::default(),
        }
    }
}

impl Capacity {
    /// A capacity that takes only `channels`, with the default costs.
    pub fn only(channels: &[Channel]) -> Capacity {
        let mut c = Capacity::default();
        for ch in Channel::ALL {
            if !channels.contains(&ch) {
                c.max[ch.index()] = 0;
            }
        }
        c
    }

    /// Sets how many chats fit at once (their cost becomes `budget / n`).
    pub fn with_chats(mut self, n: u32) -> Capacity {
        let i = Channel::Chat.index();
        self.max[i] = n;
        self.cost[i] = self.budget.checked_div(n).unwrap_or(self.budget);
        self
    }

    /// Whether an agent carrying `load` may start one more interaction on `ch`.
    pub fn can_start(&self, load: &Load, ch: Channel) -> bool {
        let c = ch.index();
        if self.max[c] == 0 || load.count[c] >= self.max[c] {
            return false;
        }
        let used: u32 = Channel::ALL
            .iter()
            .filter(|other| !self.interruptible_by[other.index()].contains(&ch))
            .map(|other| load.count[other.index()] * self.cost[other.index()])
            .sum();
        used + self.cost[c] <= self.budget
    }
}

/// What an agent carries now: interactions per channel (offered, active or in wrap-up).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Load {
    /// Count per channel.
    pub count: [u32; 4],
}

impl Load {
    /// Takes one interaction on `ch`.
    pub fn add(&mut self, ch: Channel) {
        self.count[ch.index()] += 1;
    }

    /// Releases one interaction on `ch`.
    pub fn remove(&mut self, ch: Channel) {
        let c = &mut self.count[ch.index()];
        *c = c.saturating_sub(1);
    }

    /// Whether nothing is carried.
    pub fn is_empty(&self) -> bool {
        self.count.iter().all(|&c| c == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voice_blocks_chat_and_chat_blocks_voice() {
        let cap = Capacity::default();
        let mut load = Load::default();
        for _ in 0..3 {
            assert!(cap.can_start(&load, Channel::Chat));
            assert!(load.is_empty() || !cap.can_start(&load, Channel::Voice));
            load.add(Channel::Chat);
        }
        assert!(!cap.can_start(&load, Channel::Chat), "fourth chat");
        assert!(
            !cap.can_start(&load, Channel::Voice),
            "voice while chatting"
        );
        let mut load = Load::default();
        load.add(Channel::Voice);
        assert!(!cap.can_start(&load, Channel::Chat), "chat while on a call");
    }

    #[test]
    fn interruptible_email_lets_voice_in() {
        let mut cap = Capacity::default();
        cap.interruptible_by[Channel::Email.index()] = vec![Channel::Voice];
        let mut load = Load::default();
        load.add(Channel::Email);
        assert!(cap.can_start(&load, Channel::Voice));
        assert!(!cap.can_start(&load, Channel::Chat));
    }
}
