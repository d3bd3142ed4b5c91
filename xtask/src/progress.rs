//! Progress bars (indicatif) for long runs: seed sweeps, `stress` and `bench`. A bar is
//! drawn on stderr only when stderr is a terminal (indicatif hides it otherwise, so CI logs
//! and pipes get the plain lines alone); lines printed while a bar is shown go through
//! [`println`], which lifts the bar for them.

use indicatif::{ProgressBar, ProgressStyle};
use std::sync::Mutex;
use std::time::Duration;

/// The bar on screen, if any (one at a time).
static CURRENT: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// A bar on screen until dropped.
#[derive(Debug)]
pub struct Bar(ProgressBar);

impl Bar {
    /// A bar over `total` steps of `what` (e.g. "boots"), with the elapsed time and an
    /// estimate of the time left.
    pub fn steps(total: u64, what: &str) -> Self {
        let style = ProgressStyle::with_template(&format!(
            "{{bar:40}} {{pos}}/{{len}} {what} {{msg}} [{{elapsed_precise}}, about {{eta}} left]"
        ))
        .expect("a valid template");
        Self::show(ProgressBar::new(total).with_style(style))
    }

    /// A bar over a time budget of `total` (`stress --minutes`): the position is the
    /// seconds spent.
    pub fn time(total: Duration) -> Self {
        let style = ProgressStyle::with_template("{bar:40} {elapsed_precise} of {len}s {msg}")
            .expect("a valid template");
        let bar = Self::show(ProgressBar::new(total.as_secs()).with_style(style));
        bar.0.enable_steady_tick(Duration::from_secs(1));
        bar
    }

    fn show(bar: ProgressBar) -> Self {
        if let Ok(mut current) = CURRENT.lock() {
            *current = Some(bar.clone());
        }
        Self(bar)
    }

    /// One more step done.
    pub fn inc(&self) {
        self.0.inc(1);
    }

    /// Sets the position (seconds spent, for [`Bar::time`]).
    pub fn set_position(&self, position: u64) {
        self.0.set_position(position);
    }

    /// The text after the counts (e.g. "2 failed").
    pub fn message(&self, text: String) {
        self.0.set_message(text);
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.0.finish_and_clear();
        if let Ok(mut current) = CURRENT.lock() {
            *current = None;
        }
    }
}

/// Prints a line on stdout, lifting the bar while it does.
pub fn println(line: &str) {
    let bar = CURRENT.lock().ok().and_then(|c| c.clone());
    match bar {
        Some(bar) => bar.suspend(|| println!("{line}")),
        None => println!("{line}"),
    }
}

/// Prints a line on stderr, lifting the bar while it does.
#[cfg(feature = "bench")]
pub fn eprintln(line: &str) {
    let bar = CURRENT.lock().ok().and_then(|c| c.clone());
    match bar {
        Some(bar) => bar.suspend(|| eprintln!("{line}")),
        None => eprintln!("{line}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_print_with_and_without_a_bar_and_the_bar_goes_away() {
        println("no bar");
        {
            let bar = Bar::steps(3, "boots");
            bar.inc();
            bar.message("0 failed".into());
            println("under a bar");
            assert!(CURRENT.lock().unwrap().is_some());
        }
        assert!(CURRENT.lock().unwrap().is_none(), "dropped with its owner");
    }
}
