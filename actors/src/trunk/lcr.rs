//! Least-cost routing tables: number prefix → trunks in cost order, longest prefix wins.

use std::collections::BTreeMap;

/// One routing table (`[routes.NAME]` in the config).
#[derive(Clone, Debug, Default)]
pub struct Table {
    /// Prefix digits (without `+`) → trunks, cheapest first.
    entries: BTreeMap<String, Vec<String>>,
}

impl Table {
    /// Builds a table from the config's prefix → trunks map (a leading `+` is ignored).
    pub fn new(map: &BTreeMap<String, Vec<String>>) -> Table {
        Table {
            entries: map
                .iter()
                .map(|(p, t)| (p.trim_start_matches('+').to_string(), t.clone()))
                .collect(),
        }
    }

    /// The trunks for `number` (its longest matching prefix; `+` and a leading `00` are
    /// ignored), or an empty slice.
    pub fn lookup(&self, number: &str) -> &[String] {
        let n = number.trim_start_matches('+');
        let n = n.strip_prefix("00").unwrap_or(n);
        (0..=n.len())
            .rev()
            .filter(|&i| n.is_char_boundary(i))
            .find_map(|i| self.entries.get(&n[..i]))
            .map_or(&[], |v| v.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins() {
        let mut m = BTreeMap::new();
        m.insert("".to_string(), vec!["default".to_string()]);
        m.insert(
            "+44".to_string(),
            vec!["uk".to_string(), "backup".to_string()],
        );
        m.insert("4420".to_string(), vec!["london".to_string()]);
        let t = Table::new(&m);
        assert_eq!(t.lookup("+442071234567"), ["london"]);
        assert_eq!(t.lookup("00441611234567"), ["uk", "backup"]);
        assert_eq!(t.lookup("+33123"), ["default"]);
        assert!(Table::new(&BTreeMap::new()).lookup("1").is_empty());
    }
}
