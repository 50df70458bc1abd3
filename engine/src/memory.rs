//! Giving memory back after a burst: collections keep their peak capacity unless told otherwise,
//! so an engine that handled 60 000 live transactions once would hold that memory forever.

use std::collections::HashMap;
use std::hash::Hash;

/// Below this capacity shrinking is not worth the rehash.
const MIN_CAPACITY: usize = 1024;

/// Halves a map's spare room when it is more than 3/4 empty. Amortised O(1) per removal: the
/// capacity only shrinks geometrically.
pub fn shrink_sparse<K: Eq + Hash, V, S: std::hash::BuildHasher>(m: &mut HashMap<K, V, S>) {
    if m.capacity() > MIN_CAPACITY && m.len() * 4 < m.capacity() {
        m.shrink_to(m.len() * 2);
    }
}

/// The same for a `Vec`-backed collection given its length and capacity; returns the capacity
/// to shrink to, if any.
pub fn sparse_target(len: usize, capacity: usize) -> Option<usize> {
    (capacity > MIN_CAPACITY && len * 4 < capacity).then_some(len * 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shrinks_only_when_sparse() {
        let mut m: HashMap<u32, u32> = (0..10_000).map(|i| (i, i)).collect();
        let peak = m.capacity();
        m.retain(|k, _| *k < 100);
        shrink_sparse(&mut m);
        assert!(m.capacity() < peak / 4);
        assert_eq!(m.len(), 100);
        assert_eq!(sparse_target(100, 100_000), Some(200));
        assert_eq!(sparse_target(900, 1_000), None);
    }
}
