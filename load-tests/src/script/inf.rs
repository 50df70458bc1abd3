//! CSV injection (`--inf FILE`), as SIPp's `-inf`: the first line says `SEQUENTIAL` or
//! `RANDOM`, every other line holds `;`-separated fields that a call reads as `[field0]`,
//! `[field1]`… One line per call: in order and wrapping around (`SEQUENTIAL`, shared by every
//! worker), or picked at random (`RANDOM`). Empty lines and lines starting with `#` or `//`
//! are skipped.

use super::ScriptError;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// How lines are handed to calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Line 1, 2, … then from the start again.
    Sequential,
    /// A random line per call.
    Random,
}

/// The lines of an injection file.
#[derive(Debug)]
pub struct Injection {
    order: Order,
    /// Each line's fields and its line number in the file.
    rows: Vec<(Vec<String>, usize)>,
    next: AtomicU64,
    seed: u64,
}

impl Injection {
    /// Reads an injection file.
    pub fn load(path: &Path) -> Result<Injection, ScriptError> {
        let text = std::fs::read_to_string(path).map_err(|e| ScriptError {
            file: Some(path.to_path_buf()),
            line: 0,
            column: 0,
            message: format!("reading the injection file: {e}"),
        })?;
        Injection::parse(&text).map_err(|e| e.in_file(path))
    }

    /// Parses injection text.
    pub fn parse(text: &str) -> Result<Injection, ScriptError> {
        let err = |line: usize, message: String| ScriptError {
            file: None,
            line,
            column: 1,
            message,
        };
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim_end_matches('\r')))
            .filter(|(_, l)| {
                let t = l.trim();
                !(t.is_empty() || t.starts_with('#') || t.starts_with("//"))
            });
        let (n, first) = lines.next().ok_or_else(|| {
            err(
                1,
                "empty injection file: the first line must be SEQUENTIAL or RANDOM".into(),
            )
        })?;
        let order = match first.trim() {
            "SEQUENTIAL" => Order::Sequential,
            "RANDOM" => Order::Random,
            "USER" => return Err(err(
                n,
                "USER order (one line per SIPp user) is not supported: use SEQUENTIAL or RANDOM"
                    .into(),
            )),
            other => {
                return Err(err(
                    n,
                    format!("the first line must be SEQUENTIAL or RANDOM, not `{other}`"),
                ))
            }
        };
        let rows: Vec<(Vec<String>, usize)> = lines
            .map(|(n, l)| {
                let fields = l.split(';').map(str::to_string).collect();
                (fields, n)
            })
            .collect();
        if rows.is_empty() {
            return Err(err(n, "the injection file has no data lines".into()));
        }
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x5eed, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id());
        Ok(Injection {
            order,
            rows,
            next: AtomicU64::new(0),
            seed,
        })
    }

    /// The order lines are handed out in.
    pub fn order(&self) -> Order {
        self.order
    }

    /// Number of data lines.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when there are no data lines (never, once parsed).
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The fields of line `i` (0-based among data lines).
    pub fn row(&self, i: usize) -> Option<&[String]> {
        self.rows.get(i).map(|(f, _)| f.as_slice())
    }

    /// The first data line with fewer than `n` fields, as (file line number, field count).
    pub fn short_line(&self, n: usize) -> Option<(usize, usize)> {
        self.rows
            .iter()
            .find(|(f, _)| f.len() < n)
            .map(|(f, line)| (*line, f.len()))
    }

    /// The line for the next call.
    pub fn pick(&self) -> usize {
        let k = self.next.fetch_add(1, Relaxed);
        let n = self.rows.len().max(1) as u64;
        let i = match self.order {
            Order::Sequential => k % n,
            Order::Random => splitmix(self.seed.wrapping_add(k)) % n,
        };
        i as usize
    }
}

/// SplitMix64: a well-mixed hash of a counter, enough to pick lines at random.
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_wraps_and_skips_comments() {
        let inf = Injection::parse("SEQUENTIAL\n# users\nalice;secret\n\nbob;pw;extra\n")
            .expect("parses");
        assert_eq!(inf.order(), Order::Sequential);
        assert_eq!(inf.len(), 2);
        let picks: Vec<usize> = (0..5).map(|_| inf.pick()).collect();
        assert_eq!(picks, vec![0, 1, 0, 1, 0]);
        assert_eq!(
            inf.row(1).expect("line"),
            &["bob".to_string(), "pw".into(), "extra".into()]
        );
        assert_eq!(inf.short_line(3), Some((3, 2)));
        assert_eq!(inf.short_line(2), None);
    }

    #[test]
    fn random_stays_in_range() {
        let inf = Injection::parse("RANDOM\na\nb\nc\n").expect("parses");
        let mut seen = [false; 3];
        for _ in 0..200 {
            let i = inf.pick();
            seen[i] = true;
        }
        assert!(seen.iter().all(|s| *s), "{seen:?}");
    }

    #[test]
    fn bad_files() {
        let e = Injection::parse("ORDERED\na;b\n").expect_err("bad order");
        assert_eq!(e.line, 1);
        assert!(e.message.contains("SEQUENTIAL"), "{e}");
        assert!(Injection::parse("SEQUENTIAL\n").is_err());
        assert!(Injection::parse("").is_err());
        assert!(Injection::parse("USER\na\n").is_err());
    }
}
