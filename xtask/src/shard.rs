//! `--shard K/N`: one CI machine's share of a run. Shard K of N takes every Nth job starting
//! at the (K-1)th, in the order the plan lists them, so N machines running shards 1..=N with
//! the same plan cover every job exactly once and no job twice.

use std::fmt;
use std::str::FromStr;

/// Shard `index` (1-based) of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    index: usize,
    count: usize,
}

impl Shard {
    /// Whether the job at position `position` of the plan belongs to this shard.
    pub fn owns(self, position: usize) -> bool {
        position % self.count == self.index - 1
    }

    /// Whether this is shard 1, which also runs what is not split (the host tests).
    pub fn is_first(self) -> bool {
        self.index == 1
    }

    /// This shard's share of `items`, in their order.
    pub fn take<T>(self, items: Vec<T>) -> Vec<T> {
        items
            .into_iter()
            .enumerate()
            .filter(|(position, _)| self.owns(*position))
            .map(|(_, item)| item)
            .collect()
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = String;

    /// `K/N` with 1 <= K <= N; clap reports the error as a usage error (exit 2).
    fn from_str(text: &str) -> Result<Self, String> {
        let usage = || format!("`{text}` is not a shard: expected K/N with 1 <= K <= N (e.g. 1/4)");
        let (k, n) = text.split_once('/').ok_or_else(usage)?;
        let index: usize = k.trim().parse().map_err(|_| usage())?;
        let count: usize = n.trim().parse().map_err(|_| usage())?;
        if count == 0 || index == 0 || index > count {
            return Err(usage());
        }
        Ok(Self { index, count })
    }
}

#[cfg(test)]
mod tests {
    use super::Shard;

    #[test]
    fn bad_shards_are_refused() {
        for bad in ["0/2", "3/2", "x", "1/0", "1", "/", "1/2/3", "-1/2", ""] {
            assert!(bad.parse::<Shard>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn shards_cover_every_job_exactly_once() {
        for count in 1..=7 {
            let mut seen = vec![0u32; 23];
            for index in 1..=count {
                let shard: Shard = format!("{index}/{count}").parse().unwrap();
                for position in shard.take((0..23).collect::<Vec<usize>>()) {
                    seen[position] += 1;
                }
            }
            assert!(seen.iter().all(|&n| n == 1), "{count} shards: {seen:?}");
        }
    }
}
