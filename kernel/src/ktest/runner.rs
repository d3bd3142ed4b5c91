//! Selects, orders and runs tests, printing KTAP v1 (see [`super::ktap`]).
//!
//! The runner is machine-independent: an [`Executor`] runs one test body (on s390x under
//! a program-interruption recovery scope) and reads the clock, so the whole output format
//! is unit-tested on the host.

use super::ktap::{self, Counts, Directive, SUBTEST_INDENT};
use super::test::{Outcome, Test};
use super::{KTest, flags, glob};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

/// What the command line asks of the runner.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// `ktest.filter` globs (empty: all).
    pub filter: Vec<String>,
    /// Do not run the first N selected tests.
    pub skip: usize,
    /// Only list the tests.
    pub list: bool,
    /// Seed for randomized tests.
    pub seed: u64,
    /// Enabled self-tests (`fail`, `panic`, `pgm`, `hang`, `all`).
    pub selftest: Vec<String>,
    /// Run the benchmarks (tests flagged `BENCH`) too.
    pub bench: bool,
    /// Faults to inject into named tests (`ktest.inject=`), to test the harness.
    pub inject: Vec<Inject>,
}

/// A fault `ktest.inject=kind@TEST` injects instead of running a test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Injection {
    /// The test panics.
    Panic,
    /// The test never returns.
    Hang,
    /// The test takes an unexpected program interruption.
    Pgm,
    /// Console garbage instead of the test's result line.
    Garbage,
    /// The kernel ends the run (`EXIT: STATUS=1`) in the middle of the test.
    Exit,
}

impl Injection {
    /// The injection named `name` (`panic`, `hang`, `pgm`, `garbage`, `exit`).
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "panic" => Injection::Panic,
            "hang" => Injection::Hang,
            "pgm" => Injection::Pgm,
            "garbage" => Injection::Garbage,
            "exit" => Injection::Exit,
            _ => return None,
        })
    }
}

/// One requested injection: `kind` into the tests matching the `suite.test` glob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inject {
    /// What to inject.
    pub kind: Injection,
    /// Glob over `suite.test`.
    pub target: String,
}

/// Console noise that looks almost like KTAP: control characters, a broken result line,
/// a line without an end. The harness must not take any of it for a result.
const GARBAGE: &str = "\u{1}\u{7}\u{1b}[31m#\u{7f}~\nnt ok 1 ##\u{0}\n    not ok x y\nKTAP versio\n    okay 3\n\u{2}\u{3}ok? ok!";

/// Where a test body runs.
pub trait Executor {
    /// Runs `test` with context `t`. `Err(reason)` when it ended abnormally (an
    /// unexpected program interruption); `position` is where the test stands in the
    /// output (suite number, test number) for crash reports.
    fn execute(
        &mut self,
        test: &KTest,
        t: &mut Test<'_>,
        position: (usize, usize),
    ) -> Result<(), String>;
    /// A microsecond clock.
    fn now_us(&mut self) -> u64;
    /// Injects `kind` (never `Garbage`, which the runner prints itself) where `test`
    /// would run; returns like [`Executor::execute`] if the injection returns at all.
    fn inject(
        &mut self,
        kind: Injection,
        test: &KTest,
        t: &mut Test<'_>,
        position: (usize, usize),
    ) -> Result<(), String>;
}

/// Result of a whole run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Counts over every test that ran.
    pub counts: Counts,
    /// Tests selected (including those passed over by `ktest.skip`).
    pub selected: usize,
}

impl Totals {
    /// The kvm-unit-tests-style exit status: 1 all passed, 3 failures, 77 all skipped.
    pub fn exit_status(&self) -> u32 {
        if self.counts.fail > 0 {
            3
        } else if self.counts.pass == 0 {
            77
        } else {
            1
        }
    }
}

/// The selected tests in run order: sorted by suite, then source position.
pub fn select<'t>(tests: &'t [KTest], o: &Options) -> Vec<&'t KTest> {
    let selftest_on = |name: &str| o.selftest.iter().any(|s| s == name || s == "all");
    let mut selected: Vec<&KTest> = tests
        .iter()
        .filter(|t| glob::selects(&o.filter, t.suite, t.name))
        .filter(|t| !t.has(flags::SELFTEST) || selftest_on(t.name))
        .filter(|t| !t.has(flags::BENCH) || o.bench)
        .collect();
    selected
        .sort_by(|a, b| (a.suite, a.file, a.line, a.name).cmp(&(b.suite, b.file, b.line, b.name)));
    selected
}

/// Groups consecutive tests of the same suite.
fn suites<'a, 't>(tests: &'a [&'t KTest]) -> Vec<&'a [&'t KTest]> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=tests.len() {
        if i == tests.len() || tests[i].suite != tests[start].suite {
            if i > start {
                out.push(&tests[start..i]);
            }
            start = i;
        }
    }
    out
}

/// Prints the KTAP header line that identifies the run.
fn header(out: &mut dyn Write, o: &Options) {
    let _ = ktap::version(out, "");
    let filter = if o.filter.is_empty() {
        String::from("*")
    } else {
        o.filter.join(",")
    };
    let _ = writeln!(
        out,
        "# zhint: seed={} filter={} skip={}",
        o.seed, filter, o.skip
    );
}

/// `ktest.list`: the plan and one descriptor line per test.
pub fn list(tests: &[KTest], o: &Options, out: &mut dyn Write) -> Totals {
    let selected = select(tests, o);
    header(out, o);
    let _ = ktap::plan(out, "", suites(&selected).len());
    for t in &selected {
        let names: Vec<&str> = flags::NAMES
            .iter()
            .enumerate()
            .filter(|(bit, _)| t.flags & (1 << bit) != 0)
            .map(|(_, n)| *n)
            .collect();
        let _ = writeln!(
            out,
            "# test: {}.{} file={}:{} flags={}",
            t.suite,
            t.name,
            t.file,
            t.line,
            if names.is_empty() {
                String::from("-")
            } else {
                names.join(",")
            }
        );
    }
    Totals {
        counts: Counts::default(),
        selected: selected.len(),
    }
}

/// Runs the selected tests and prints KTAP.
pub fn run(tests: &[KTest], o: &Options, out: &mut dyn Write, exec: &mut dyn Executor) -> Totals {
    let selected = select(tests, o);
    let suites = suites(&selected);
    header(out, o);
    let _ = ktap::plan(out, "", suites.len());
    let mut totals = Totals {
        selected: selected.len(),
        ..Totals::default()
    };
    let run_start = exec.now_us();
    let mut index = 0;
    for (suite_no, suite) in suites.iter().enumerate() {
        let name = suite[0].suite;
        let first_run = o.skip.saturating_sub(index);
        index += suite.len();
        if first_run >= suite.len() {
            continue; // already reported by an earlier boot
        }
        let _ = ktap::version(out, SUBTEST_INDENT);
        let _ = ktap::subtest(out, SUBTEST_INDENT, name);
        let _ = ktap::plan(out, SUBTEST_INDENT, suite.len());
        let mut counts = Counts::default();
        for (i, test) in suite.iter().enumerate().skip(first_run) {
            let full = alloc::format!("{}.{}", test.suite, test.name);
            let inject = o
                .inject
                .iter()
                .find(|j| glob::matches(&j.target, &full))
                .map(|j| j.kind);
            counts.add(run_one(
                test,
                (suite_no + 1, i + 1),
                o.seed,
                inject,
                out,
                exec,
            ));
        }
        let _ = ktap::totals(out, "", name, counts);
        let directive = if counts.total() > 0 && counts.skip == counts.total() {
            Directive::Skip("all tests skipped")
        } else {
            Directive::None
        };
        let _ = ktap::result(out, "", counts.fail == 0, suite_no + 1, name, directive);
        totals.counts.add(counts);
    }
    let _ = ktap::totals(out, "", "Totals", totals.counts);
    // Guest time of the whole run; with the per-test `time_us` it gives the framework's
    // own cost per test (xtask bench).
    let run_us = exec.now_us().saturating_sub(run_start);
    let _ = ktap::diagnostic(out, "", format_args!("run_us: {run_us}"));
    totals
}

fn run_one(
    test: &KTest,
    position: (usize, usize),
    seed: u64,
    inject: Option<Injection>,
    out: &mut dyn Write,
    exec: &mut dyn Executor,
) -> Counts {
    if inject == Some(Injection::Garbage) {
        // No result line for this test: the harness must notice it is missing.
        let _ = writeln!(out, "{GARBAGE}");
        return Counts {
            fail: 1,
            ..Counts::default()
        };
    }
    let start = exec.now_us();
    let (outcome, error) = {
        let mut t = Test::new(out, SUBTEST_INDENT, seed);
        let error = match inject {
            Some(kind) => exec.inject(kind, test, &mut t, position),
            None => exec.execute(test, &mut t, position),
        }
        .err();
        (t.outcome(), error)
    };
    let elapsed = exec.now_us().saturating_sub(start);
    let _ = ktap::diagnostic(out, SUBTEST_INDENT, format_args!("time_us: {elapsed}"));
    let outcome = match error {
        Some(reason) => Outcome::Error(reason),
        None => outcome,
    };
    let xfail = test.has(flags::XFAIL);
    let n = position.1;
    let (ok, directive, counts) = match (&outcome, xfail) {
        (Outcome::Pass, false) => (
            true,
            Directive::None,
            Counts {
                pass: 1,
                ..Counts::default()
            },
        ),
        (Outcome::Pass, true) => {
            let _ = ktap::diagnostic(
                out,
                SUBTEST_INDENT,
                format_args!("xfail: expected to fail, but passed"),
            );
            (
                false,
                Directive::None,
                Counts {
                    fail: 1,
                    ..Counts::default()
                },
            )
        }
        (Outcome::Fail(_), true) => (
            false,
            Directive::Xfail("expected failure"),
            Counts {
                pass: 1,
                ..Counts::default()
            },
        ),
        (Outcome::Fail(_), false) => (
            false,
            Directive::None,
            Counts {
                fail: 1,
                ..Counts::default()
            },
        ),
        (Outcome::Skip(reason), _) => (
            true,
            Directive::Skip(reason),
            Counts {
                skip: 1,
                ..Counts::default()
            },
        ),
        (Outcome::Error(reason), _) => (
            false,
            Directive::Error(reason),
            Counts {
                fail: 1,
                ..Counts::default()
            },
        ),
    };
    let _ = ktap::result(out, SUBTEST_INDENT, ok, n, test.name, directive);
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    fn pass(_: &mut Test<'_>) {}
    fn fail(t: &mut Test<'_>) {
        crate::check_eq!(t, 1, 2);
    }
    fn skip(t: &mut Test<'_>) {
        t.skip("no ESSA");
    }
    fn error(_: &mut Test<'_>) {}

    const fn d(
        suite: &'static str,
        name: &'static str,
        line: u32,
        flags: u32,
        run: fn(&mut Test<'_>),
    ) -> KTest {
        KTest {
            suite,
            name,
            file: "t.rs",
            line,
            flags,
            run,
        }
    }

    static TESTS: [KTest; 7] = [
        d("b::two", "fails", 20, 0, fail),
        d("a::one", "second", 11, 0, skip),
        d("a::one", "first", 10, 0, pass),
        d("b::two", "xfails", 21, flags::XFAIL, fail),
        d("b::two", "errors", 22, 0, error),
        d("c::selftest", "panic", 30, flags::SELFTEST, pass),
        d("d::bench", "lookup", 40, flags::BENCH, pass),
    ];

    struct Fake;
    impl Executor for Fake {
        fn execute(
            &mut self,
            test: &KTest,
            t: &mut Test<'_>,
            _: (usize, usize),
        ) -> Result<(), String> {
            if test.name == "errors" {
                return Err("program interruption 0x11 at 0x1000".to_string());
            }
            (test.run)(t);
            Ok(())
        }
        fn now_us(&mut self) -> u64 {
            0
        }
        fn inject(
            &mut self,
            kind: Injection,
            _: &KTest,
            _: &mut Test<'_>,
            _: (usize, usize),
        ) -> Result<(), String> {
            Err(alloc::format!("injected {kind:?}"))
        }
    }

    fn output(o: &Options) -> (String, Totals) {
        let mut s = String::new();
        let totals = run(&TESTS, o, &mut s, &mut Fake);
        // Strip the check location, which depends on this file's line numbers.
        let s = s
            .lines()
            .map(|l| l.split(" at kernel/").next().unwrap())
            .collect::<Vec<_>>()
            .join("\n");
        (s, totals)
    }

    #[test]
    fn full_run_is_sorted_ktap_with_totals() {
        let (s, totals) = output(&Options {
            seed: 5,
            ..Options::default()
        });
        let expected = "KTAP version 1
# zhint: seed=5 filter=* skip=0
1..2
    KTAP version 1
    # Subtest: a::one
    1..2
    # time_us: 0
    ok 1 first
    # time_us: 0
    ok 2 second # SKIP no ESSA
# a::one: pass:1 fail:0 skip:1 total:2
ok 1 a::one
    KTAP version 1
    # Subtest: b::two
    1..3
    # check_eq failed: 1 == 2: left: 1, right: 2
    # time_us: 0
    not ok 1 fails
    # check_eq failed: 1 == 2: left: 1, right: 2
    # time_us: 0
    not ok 2 xfails # XFAIL expected failure
    # time_us: 0
    not ok 3 errors # ERROR program interruption 0x11 at 0x1000
# b::two: pass:1 fail:2 skip:0 total:3
not ok 2 b::two
# Totals: pass:2 fail:2 skip:1 total:5
# run_us: 0";
        assert_eq!(s, expected);
        assert_eq!(
            totals.counts,
            Counts {
                pass: 2,
                fail: 2,
                skip: 1
            }
        );
        assert_eq!(totals.exit_status(), 3);
    }

    #[test]
    fn skip_resumes_after_n_tests_and_selftests_need_enabling() {
        let o = Options {
            skip: 3,
            selftest: alloc::vec!["panic".into()],
            ..Options::default()
        };
        let (s, totals) = output(&o);
        assert_eq!(totals.selected, 6);
        assert!(!s.contains("a::one"), "{s}");
        assert!(!s.contains("ok 1 fails"), "{s}");
        assert!(s.contains("not ok 2 xfails"), "{s}");
        assert!(s.contains("ok 1 panic"), "{s}");
        assert!(s.contains("\n1..3\n"), "{s}");
    }

    #[test]
    fn filter_and_exit_status() {
        let o = Options {
            filter: alloc::vec!["a::one.first".into()],
            ..Options::default()
        };
        let (_, totals) = output(&o);
        assert_eq!(
            totals.counts,
            Counts {
                pass: 1,
                fail: 0,
                skip: 0
            }
        );
        assert_eq!(totals.exit_status(), 1);
        let o = Options {
            filter: alloc::vec!["a::one.second".into()],
            ..Options::default()
        };
        assert_eq!(output(&o).1.exit_status(), 77);
        let o = Options {
            filter: alloc::vec!["nothing".into()],
            ..Options::default()
        };
        assert_eq!(output(&o).1.exit_status(), 77);
    }

    #[test]
    fn injections_replace_the_named_test_only() {
        let inject = alloc::vec![
            Inject {
                kind: Injection::Pgm,
                target: "a::one.first".into()
            },
            Inject {
                kind: Injection::Garbage,
                target: "b::two.fails".into()
            },
        ];
        let (s, totals) = output(&Options {
            inject,
            ..Options::default()
        });
        assert!(s.contains("not ok 1 first # ERROR injected Pgm"), "{s}");
        assert!(!s.contains("not ok 1 fails"), "{s}");
        assert!(s.contains("nt ok 1 ##"), "{s}");
        assert!(s.contains("not ok 2 xfails # XFAIL"), "{s}");
        assert_eq!(totals.counts.fail, 3);
        assert_eq!(Injection::from_name("exit"), Some(Injection::Exit));
        assert_eq!(Injection::from_name("boom"), None);
    }

    #[test]
    fn benchmarks_run_only_when_asked() {
        let (s, _) = output(&Options::default());
        assert!(!s.contains("d::bench"), "{s}");
        let (s, totals) = output(&Options {
            bench: true,
            filter: alloc::vec!["d::*".into()],
            ..Options::default()
        });
        assert!(s.contains("ok 1 lookup"), "{s}");
        assert_eq!(totals.counts.pass, 1);
    }

    #[test]
    fn list_prints_descriptors() {
        let mut s = String::new();
        let totals = list(&TESTS, &Options::default(), &mut s);
        assert_eq!(totals.selected, 5);
        assert!(
            s.contains("# test: b::two.xfails file=t.rs:21 flags=xfail\n"),
            "{s}"
        );
        assert!(
            s.contains("# test: a::one.first file=t.rs:10 flags=-\n"),
            "{s}"
        );
        assert!(s.contains("\n1..2\n"), "{s}");
    }
}
