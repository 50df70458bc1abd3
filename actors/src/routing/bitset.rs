//! A growable bitset over dense agent slots: the router's availability index.
//!
//! Sets are intersected word by word, so finding the agents that are open for a channel, staff a
//! queue and match a target costs `agents / 64` word operations, never a scan of every agent.

/// A set of dense indices.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bitset {
    words: Vec<u64>,
}

impl Bitset {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `i`.
    pub fn insert(&mut self, i: usize) {
        let w = i / 64;
        if w >= self.words.len() {
            self.words.resize(w + 1, 0);
        }
        self.words[w] |= 1 << (i % 64);
    }

    /// Removes `i`.
    pub fn remove(&mut self, i: usize) {
        if let Some(w) = self.words.get_mut(i / 64) {
            *w &= !(1 << (i % 64));
        }
    }

    /// Adds or removes `i`.
    pub fn set(&mut self, i: usize, on: bool) {
        if on {
            self.insert(i)
        } else {
            self.remove(i)
        }
    }

    /// Whether `i` is in the set.
    pub fn contains(&self, i: usize) -> bool {
        self.words
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// The 64-bit word `w` (0 past the end).
    #[inline]
    pub fn word(&self, w: usize) -> u64 {
        self.words.get(w).copied().unwrap_or(0)
    }

    /// How many words are stored.
    pub fn word_len(&self) -> usize {
        self.words.len()
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Whether the set has no member.
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|&w| w == 0)
    }

    /// Members in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.words
            .iter()
            .enumerate()
            .flat_map(|(wi, &w)| Bits(w).map(move |b| wi * 64 + b))
    }
}

/// The set bits of one word, lowest first.
pub struct Bits(pub u64);

impl Iterator for Bits {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        if self.0 == 0 {
            return None;
        }
        let b = self.0.trailing_zeros() as usize;
        self.0 &= self.0 - 1;
        Some(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_remove_iterate() {
        let mut s = Bitset::new();
        for i in [3, 64, 65, 700] {
            s.insert(i);
        }
        s.remove(64);
        s.remove(10_000);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![3, 65, 700]);
        assert_eq!(s.len(), 3);
        assert!(s.contains(700) && !s.contains(64) && !s.contains(99_999));
    }
}
