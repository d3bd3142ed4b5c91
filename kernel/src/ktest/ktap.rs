//! KTAP v1 lines as Linux KUnit prints them (`Documentation/dev-tools/ktap.rst`,
//! `lib/kunit/test.c`): suites are four-space-indented subtests.

use core::fmt::{self, Write};

/// Indentation of one subtest level (KUnit's `KUNIT_SUBTEST_INDENT`).
pub const SUBTEST_INDENT: &str = "    ";

/// How a result line ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Directive<'a> {
    /// No directive.
    None,
    /// `# SKIP reason`.
    Skip(&'a str),
    /// `# XFAIL reason`.
    Xfail(&'a str),
    /// `# ERROR reason` (only on `not ok`).
    Error(&'a str),
}

/// Counts for a `# Totals:`-style line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Passed (XFAIL included).
    pub pass: u32,
    /// Failed (ERROR included).
    pub fail: u32,
    /// Skipped.
    pub skip: u32,
}

impl Counts {
    /// pass + fail + skip.
    pub fn total(&self) -> u32 {
        self.pass + self.fail + self.skip
    }

    /// Adds another set of counts.
    pub fn add(&mut self, other: Counts) {
        self.pass += other.pass;
        self.fail += other.fail;
        self.skip += other.skip;
    }
}

/// `KTAP version 1`.
pub fn version(out: &mut dyn Write, indent: &str) -> fmt::Result {
    writeln!(out, "{indent}KTAP version 1")
}

/// `1..n`.
pub fn plan(out: &mut dyn Write, indent: &str, n: usize) -> fmt::Result {
    writeln!(out, "{indent}1..{n}")
}

/// `# Subtest: name`.
pub fn subtest(out: &mut dyn Write, indent: &str, name: &str) -> fmt::Result {
    writeln!(out, "{indent}# Subtest: {name}")
}

/// `# text` (a diagnostic line); embedded newlines become separate diagnostic lines.
pub fn diagnostic(out: &mut dyn Write, indent: &str, text: fmt::Arguments<'_>) -> fmt::Result {
    let mut line = LineSplitter {
        out,
        indent,
        at_line_start: true,
    };
    line.write_fmt(text)?;
    if !line.at_line_start {
        line.out.write_char('\n')?;
    }
    Ok(())
}

/// `ok|not ok n description [# DIRECTIVE reason]`. `#` in the description would start a
/// directive, so it is replaced.
pub fn result(
    out: &mut dyn Write,
    indent: &str,
    ok: bool,
    n: usize,
    description: &str,
    directive: Directive<'_>,
) -> fmt::Result {
    write!(out, "{indent}{} {n} ", if ok { "ok" } else { "not ok" })?;
    for c in description.chars() {
        out.write_char(if c == '#' { '_' } else { c })?;
    }
    let one_line = |s: &str, out: &mut dyn Write| -> fmt::Result {
        for c in s.chars() {
            out.write_char(if c == '\n' || c == '\r' { ' ' } else { c })?;
        }
        Ok(())
    };
    match directive {
        Directive::None => {}
        Directive::Skip(r) => {
            out.write_str(" # SKIP ")?;
            one_line(r, out)?;
        }
        Directive::Xfail(r) => {
            out.write_str(" # XFAIL ")?;
            one_line(r, out)?;
        }
        Directive::Error(r) => {
            out.write_str(" # ERROR ")?;
            one_line(r, out)?;
        }
    }
    out.write_char('\n')
}

/// `# name: pass:P fail:F skip:S total:T` (per suite; `Totals` for the whole run).
pub fn totals(out: &mut dyn Write, indent: &str, name: &str, c: Counts) -> fmt::Result {
    writeln!(
        out,
        "{indent}# {name}: pass:{} fail:{} skip:{} total:{}",
        c.pass,
        c.fail,
        c.skip,
        c.total()
    )
}

/// Prefixes every line written through it with `indent# `.
struct LineSplitter<'a, 'b> {
    out: &'a mut dyn Write,
    indent: &'b str,
    at_line_start: bool,
}

impl Write for LineSplitter<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            if self.at_line_start {
                write!(self.out, "{}# ", self.indent)?;
                self.at_line_start = false;
            }
            if c == '\n' {
                self.at_line_start = true;
            }
            if c != '\r' {
                self.out.write_char(c)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;

    #[test]
    fn lines_have_kunit_shape() {
        let mut s = String::new();
        version(&mut s, "").unwrap();
        plan(&mut s, "", 2).unwrap();
        subtest(&mut s, SUBTEST_INDENT, "mm::vma").unwrap();
        diagnostic(&mut s, SUBTEST_INDENT, format_args!("file: a.rs:1\nsecond")).unwrap();
        result(&mut s, SUBTEST_INDENT, true, 1, "split", Directive::None).unwrap();
        result(
            &mut s,
            SUBTEST_INDENT,
            true,
            2,
            "a#b",
            Directive::Skip("no\nESSA"),
        )
        .unwrap();
        result(
            &mut s,
            "",
            false,
            1,
            "mm::vma",
            Directive::Error("panic: x"),
        )
        .unwrap();
        totals(
            &mut s,
            "",
            "Totals",
            Counts {
                pass: 1,
                fail: 2,
                skip: 3,
            },
        )
        .unwrap();
        assert_eq!(
            s,
            "KTAP version 1\n1..2\n    # Subtest: mm::vma\n    # file: a.rs:1\n    # second\n    ok 1 split\n    ok 2 a_b # SKIP no ESSA\nnot ok 1 mm::vma # ERROR panic: x\n# Totals: pass:1 fail:2 skip:3 total:6\n"
        );
    }
}
