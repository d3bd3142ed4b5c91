//! The order in which `-j N` workers take the planned boots: longest first, by each
//! configuration's wall time in the last run that booted it (`target/xtask/durations`).
//! Starting the long boots first lets the short ones fill in at the end (the LPT rule),
//! instead of a long boot started last running alone while the other workers idle. One
//! exception ([`Queue`]): while a boot of several CPUs runs, a worker takes a one-CPU boot
//! before another boot of several. The order decides only when a boot starts: reports
//! keep the plan's order.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// Wall time per configuration name.
pub type Durations = BTreeMap<String, Duration>;

/// The durations on record; none when the file is missing or unreadable (the order is
/// then the plan's).
pub fn load(path: &Path) -> Durations {
    std::fs::read_to_string(path)
        .map(|text| parse(&text))
        .unwrap_or_default()
}

/// Records `measured` over what `path` held (a boot that was not run keeps its old figure).
/// A write that fails costs only the order of the next run, so it is not an error.
pub fn save(path: &Path, measured: &Durations) {
    let mut all = load(path);
    all.extend(measured.iter().map(|(k, v)| (k.clone(), *v)));
    let text: String = all
        .iter()
        .map(|(name, time)| format!("{name} {}\n", time.as_millis()))
        .collect();
    let _ = std::fs::write(path, text);
}

fn parse(text: &str) -> Durations {
    text.lines()
        .filter_map(|line| {
            let (name, millis) = line.split_once(' ')?;
            Some((
                name.to_string(),
                Duration::from_millis(millis.parse().ok()?),
            ))
        })
        .collect()
}

/// Indices of `names` in the order to start them: configurations with no figure first
/// (they may be long), then the longest first; ties keep the plan's order.
pub fn longest_first(names: &[&str], known: &Durations) -> Vec<usize> {
    let mut order: Vec<usize> = (0..names.len()).collect();
    order
        .sort_by_key(|&i| std::cmp::Reverse(known.get(names[i]).copied().unwrap_or(Duration::MAX)));
    order
}

/// The boots not started yet, handed out in [`longest_first`] order, except that while
/// a boot of several CPUs runs, the next one-CPU boot goes before another of several.
/// Under TCG every vCPU is a host thread: two such boots at once put six or more vCPUs on
/// a 2-core host, whose CPUs then spin at barriers and locks through one another's time
/// slices (`-j 2` over the default group: 12-21 s of CPU with `smp2` and `smp4` started
/// together, 12.6-13.8 s with `smp2` started last).
#[derive(Debug)]
pub struct Queue {
    /// Indices not started yet, in start order.
    waiting: Vec<usize>,
    /// Whether boot `i` has several CPUs.
    multi: Vec<bool>,
    /// Boots of several CPUs running now.
    running_multi: usize,
}

impl Queue {
    /// The boots `order` names, indices into `multi` (whether each has several CPUs).
    pub fn new(order: &[usize], multi: Vec<bool>) -> Self {
        Self {
            waiting: order.to_vec(),
            multi,
            running_multi: 0,
        }
    }

    /// The next boot to start, now counted as running; `None` when all have started.
    pub fn take(&mut self) -> Option<usize> {
        if self.waiting.is_empty() {
            return None;
        }
        let one_cpu_first = self.running_multi > 0;
        let at = one_cpu_first
            .then(|| self.waiting.iter().position(|&i| !self.multi[i]))
            .flatten()
            .unwrap_or(0);
        let index = self.waiting.remove(at);
        self.running_multi += usize::from(self.multi[index]);
        Some(index)
    }

    /// Boot `index`, which [`Queue::take`] handed out, has ended.
    pub fn ended(&mut self, index: usize) {
        self.running_multi -= usize::from(self.multi[index]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn longest_start_first_and_unknown_before_them() {
        let known: Durations = [("a", 100), ("b", 900), ("c", 400)]
            .into_iter()
            .map(|(n, t)| (n.to_string(), ms(t)))
            .collect();
        assert_eq!(
            longest_first(&["a", "b", "new", "c", "a"], &known),
            [2, 1, 3, 0, 4]
        );
        assert_eq!(longest_first(&["x", "y"], &Durations::new()), [0, 1]);
    }

    #[test]
    fn a_boot_of_several_cpus_waits_while_another_runs_and_one_cpu_boots_are_left() {
        // Start order 0..5; boots 0, 1 and 3 have several CPUs.
        let multi = vec![true, true, false, true, false];
        let mut q = Queue::new(&[0, 1, 2, 3, 4], multi);
        assert_eq!(q.take(), Some(0));
        assert_eq!(q.take(), Some(2), "1 waits while 0 runs");
        q.ended(2);
        assert_eq!(q.take(), Some(4));
        q.ended(4);
        // Only boots of several CPUs are left: the next goes, although 0 still runs.
        assert_eq!(q.take(), Some(1));
        q.ended(0);
        q.ended(1);
        assert_eq!(q.take(), Some(3));
        assert_eq!(q.take(), None);
        // Without boots of several CPUs the order is the start order.
        let mut q = Queue::new(&[2, 0, 1], vec![false; 3]);
        assert_eq!(
            [q.take(), q.take(), q.take(), q.take()],
            [Some(2), Some(0), Some(1), None]
        );
    }

    #[test]
    fn saved_figures_merge_with_the_old_ones_and_bad_lines_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("durations");
        assert!(load(&path).is_empty());
        std::fs::write(&path, "a 100\nb 200\ngarbage\nc x\n").unwrap();
        save(
            &path,
            &[("b".to_string(), ms(250)), ("d".to_string(), ms(5))].into(),
        );
        let all = load(&path);
        assert_eq!(
            all.into_iter().collect::<Vec<_>>(),
            [
                ("a".to_string(), ms(100)),
                ("b".to_string(), ms(250)),
                ("d".to_string(), ms(5))
            ]
        );
    }
}
