//! Incremental KTAP v1 parser for the kernel console.
//!
//! The console is not a clean KTAP document: boot banners and other noise may appear on any
//! line, lines may end in CR LF, bytes may be garbage (not UTF-8), and the stream may stop in
//! the middle of a line when the kernel crashes. The parser therefore classifies one line at a
//! time, never fails, and keeps only bounded state: a partial line of at most
//! [`MAX_LINE_BYTES`], the names of the open subtests, and at most [`MAX_PENDING_DIAGNOSTICS`]
//! diagnostics waiting for the result line they belong to (KTAP puts diagnostics *before* the
//! result they describe).
//!
//! Nesting follows KUnit: each level is indented by four spaces, the top-level plan counts
//! suites, and a suite is a subtest introduced by `# Subtest: <name>`.

/// Longest line kept; the rest of an overlong line is dropped so memory stays bounded.
pub const MAX_LINE_BYTES: usize = 16 * 1024;
/// Most diagnostics kept for one result line; later ones are counted, not stored.
pub const MAX_PENDING_DIAGNOSTICS: usize = 256;
/// Deepest nesting level tracked; deeper lines are treated as if they were at this level.
pub const MAX_DEPTH: usize = 16;
/// Most heap bytes a [`Parser`] ever retains ([`Parser::retained_bytes`]): a partial line
/// (its buffer may be twice the line limit after doubling), the open subtest names and the
/// pending diagnostics, each at most one line long. Checked by the parser's fuzz tests.
#[cfg(test)]
pub const MAX_RETAINED_BYTES: usize = 2 * MAX_LINE_BYTES
    + (MAX_DEPTH + 1) * (MAX_LINE_BYTES + 32)
    + MAX_PENDING_DIAGNOSTICS * (MAX_LINE_BYTES + 32);
/// Spaces per nesting level, as KUnit prints them.
const INDENT: usize = 4;

/// A KTAP directive after `#` on a result line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Directive {
    /// `SKIP`: the test did not run.
    Skip,
    /// `TODO`: a known failure (TAP heritage).
    Todo,
    /// `XFAIL`: expected to fail, and did.
    XFail,
    /// `TIMEOUT`: the test ran out of time (synthesized by the host).
    Timeout,
    /// `ERROR`: the test could not complete (panic, unexpected interruption).
    Error,
}

impl Directive {
    fn from_word(word: &str) -> Option<Self> {
        match word.to_ascii_uppercase().as_str() {
            "SKIP" => Some(Self::Skip),
            "TODO" => Some(Self::Todo),
            "XFAIL" => Some(Self::XFail),
            "TIMEOUT" => Some(Self::Timeout),
            "ERROR" => Some(Self::Error),
            _ => None,
        }
    }
}

/// One `ok`/`not ok` line with the diagnostics that preceded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultLine {
    /// Nesting level: 0 = top level (suites), 1 = tests inside a suite.
    pub depth: usize,
    /// `true` for `ok`, `false` for `not ok`.
    pub ok: bool,
    /// The test number (required: a line without one is noise).
    pub number: u64,
    /// The description (test name).
    pub name: String,
    /// The directive, if any.
    pub directive: Option<Directive>,
    /// Text after the directive (or after `#` when there is no known directive).
    pub reason: String,
    /// Diagnostic lines (without `# `) seen at this depth or deeper since the previous result.
    pub diagnostics: Vec<String>,
    /// Names of the enclosing subtests, outermost first (`[suite]` for a test in a suite).
    pub path: Vec<String>,
}

/// One line of `ktest.list` output: `# test: <suite>.<name> file=<file>:<line> flags=<list>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedTest {
    /// The suite (module path such as `arch::interrupts`).
    pub suite: String,
    /// The test name inside the suite.
    pub name: String,
    /// `file:line` of the test, if given.
    pub location: Option<String>,
    /// Flags such as `expect_pgm` or `slow`.
    pub flags: Vec<String>,
}

/// What one console line means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `KTAP version N` (or `TAP version N`).
    Version {
        /// Nesting level of the line.
        depth: usize,
        /// The version number.
        version: u32,
    },
    /// `1..N`.
    Plan {
        /// Nesting level of the line.
        depth: usize,
        /// Number of tests (or suites at depth 0) announced.
        count: u64,
    },
    /// `# Subtest: name`.
    Subtest {
        /// Nesting level of the subtest's own lines.
        depth: usize,
        /// The subtest (suite) name.
        name: String,
    },
    /// A diagnostic `# text` (also attached to the next result line).
    Diagnostic {
        /// Nesting level of the line.
        depth: usize,
        /// The text after `# `.
        text: String,
    },
    /// A `ktest.list` entry.
    Listed(ListedTest),
    /// An `ok`/`not ok` line.
    Result(ResultLine),
    /// `Bail out! reason`.
    BailOut {
        /// The reason after `Bail out!`.
        reason: String,
    },
    /// `EXIT: STATUS=N`, the kernel's in-band exit status.
    Exit {
        /// The status: 1 all passed, 3 failures, 77 all skipped.
        status: i64,
    },
    /// A line that is not KTAP (console noise, banners).
    Noise(String),
}

/// Console bytes cut into lines, with bounded memory: a line longer than [`MAX_LINE_BYTES`]
/// keeps only its start. With [`Lines::line_mode`] the line-mode console's wrapping is undone:
/// the kernel ends every line with a message text object shorter than
/// [`sclp::LINE_MODE_WIDTH`] (see `sclp::console`), so a line of exactly that width continues
/// in the next one.
#[derive(Debug, Default)]
pub struct Lines {
    input: Vec<u8>,
    consumed: usize,
    partial: Vec<u8>,
    /// Bytes of the current piece (since the last newline), for line-mode joining.
    piece: usize,
    dropping_rest_of_line: bool,
    /// Join full-width lines with the next one (the boot used the line-mode console).
    pub line_mode: bool,
    /// The line-mode console as QEMU shows it: undo QEMU's EBCDIC table ([`qemu_line_mode_char`]).
    pub qemu_charset: bool,
    /// Newlines consumed so far: the line number (1-based) of the last line returned.
    pub newlines: u64,
}

impl Lines {
    /// No bytes yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues console bytes; take the lines they complete with [`Lines::next_line`].
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.consumed == self.input.len() {
            self.input.clear();
            self.consumed = 0;
        }
        self.input.extend_from_slice(bytes);
    }

    /// The next complete line (without `\n`), or `None` until more bytes arrive.
    pub fn next_line(&mut self) -> Option<Vec<u8>> {
        loop {
            let rest = &self.input[self.consumed..];
            let newline = rest.iter().position(|&b| b == b'\n');
            let content = &rest[..newline.unwrap_or(rest.len())];
            self.piece += content.len();
            if !self.dropping_rest_of_line {
                let room = MAX_LINE_BYTES - self.partial.len();
                self.partial
                    .extend_from_slice(&content[..content.len().min(room)]);
                if content.len() > room {
                    self.dropping_rest_of_line = true;
                }
            }
            let Some(at) = newline else {
                self.consumed = self.input.len();
                return None;
            };
            self.consumed += at + 1;
            self.newlines += 1;
            let piece =
                std::mem::take(&mut self.piece) - usize::from(self.partial.ends_with(b"\r"));
            if self.line_mode && piece == sclp::LINE_MODE_WIDTH && !self.dropping_rest_of_line {
                continue; // a full-width piece: the line goes on in the next one
            }
            self.dropping_rest_of_line = false;
            let mut line = std::mem::take(&mut self.partial);
            if self.qemu_charset {
                line.iter_mut().for_each(|b| *b = qemu_line_mode_char(*b));
            }
            return Some(line);
        }
    }

    /// Ends the stream: the last line when it has no newline (truncated output). Call it
    /// once [`Lines::next_line`] returned `None`.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        self.dropping_rest_of_line = false;
        self.piece = 0;
        let mut line = (!self.partial.is_empty()).then(|| std::mem::take(&mut self.partial))?;
        if self.qemu_charset {
            line.iter_mut().for_each(|b| *b = qemu_line_mode_char(*b));
        }
        Some(line)
    }

    /// Heap bytes held between calls, beyond the unconsumed input.
    #[cfg(test)]
    fn retained_bytes(&self) -> usize {
        self.partial.capacity()
    }
}

/// The byte the kernel wrote, from the byte QEMU's line-mode console shows for it. The kernel
/// writes CP037 (what z/VM and the HMC read, see `sclp::ebcdic`); QEMU decodes with its own
/// table, which differs for five characters: `!` shows as `]`, `]` as `|`, `|` as `!`, `[`
/// as 0xAA and `^` as 0x9B. The mapping is a permutation, so nothing is lost and `Bail out!`
/// reads as itself again.
pub fn qemu_line_mode_char(shown: u8) -> u8 {
    match shown {
        b']' => b'!',
        b'|' => b']',
        b'!' => b'|',
        0xAA => b'[',
        0x9B => b'^',
        other => other,
    }
}

/// Incremental parser: feed bytes or lines, get [`Event`]s.
#[derive(Debug, Default)]
pub struct Parser {
    #[cfg(test)]
    lines: Lines,
    subtests: Vec<Option<String>>,
    pending: Vec<(usize, String)>,
    pending_dropped: usize,
}

impl Parser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds a chunk of console bytes; returns the events of every line completed by it.
    #[cfg(test)]
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Event> {
        self.lines.feed(bytes);
        let mut events = Vec::new();
        while let Some(line) = self.lines.next_line() {
            events.push(self.parse_line(&line));
        }
        events
    }

    /// Heap bytes the parser holds between calls (partial line, open subtest names,
    /// diagnostics waiting for their result). Bounded by the constants above whatever the
    /// input, so a long console stream cannot grow it. Measured by the fuzz tests.
    #[cfg(test)]
    pub fn retained_bytes(&self) -> usize {
        let subtests: usize = self
            .subtests
            .iter()
            .map(|s| std::mem::size_of::<Option<String>>() + s.as_ref().map_or(0, String::capacity))
            .sum();
        let pending: usize = self
            .pending
            .iter()
            .map(|(_, text)| std::mem::size_of::<(usize, String)>() + text.capacity())
            .sum();
        self.lines.retained_bytes() + subtests + pending
    }

    /// Ends the stream: a last line without a newline (truncated output) is still parsed.
    #[cfg(test)]
    pub fn finish(&mut self) -> Option<Event> {
        let line = self.lines.finish()?;
        Some(self.parse_line(&line))
    }

    /// Parses one complete line (without its `\n`; a trailing `\r` is ignored).
    pub fn parse_line(&mut self, raw: &[u8]) -> Event {
        let raw = &raw[..raw.len().min(MAX_LINE_BYTES)];
        let decoded = String::from_utf8_lossy(raw);
        let line = decoded.trim_end_matches(['\r', '\n']);
        let spaces = line.len() - line.trim_start_matches(' ').len();
        let depth = (spaces / INDENT).min(MAX_DEPTH);
        let body = line.trim().to_string();
        self.classify(depth, body, line)
    }

    fn classify(&mut self, depth: usize, body: String, line: &str) -> Event {
        if let Some(rest) = body.strip_prefix("EXIT: STATUS=")
            && let Ok(status) = rest.trim().parse::<i64>()
        {
            return Event::Exit { status };
        }
        if let Some(reason) = body.strip_prefix("Bail out!") {
            return Event::BailOut {
                reason: reason.trim().to_string(),
            };
        }
        if let Some(version) = parse_version(&body) {
            if depth == 0 {
                // A new run (the next boot): what the last one left unattached (a crashed
                // test's dump) must not land on this run's first result.
                self.pending.clear();
                self.pending_dropped = 0;
                self.subtests.clear();
            }
            return Event::Version { depth, version };
        }
        if let Some(count) = parse_plan(&body) {
            return Event::Plan { depth, count };
        }
        if let Some(text) = body.strip_prefix('#') {
            return self.diagnostic(depth, text.trim().to_string());
        }
        if let Some(result) = parse_result(depth, &body) {
            return Event::Result(self.complete_result(result));
        }
        Event::Noise(line.to_string())
    }

    fn diagnostic(&mut self, depth: usize, text: String) -> Event {
        if let Some(name) = text.strip_prefix("Subtest:") {
            let name = name.trim().to_string();
            self.subtests.truncate(depth);
            self.subtests.resize(depth, None);
            self.subtests.push(Some(name.clone()));
            return Event::Subtest { depth, name };
        }
        if let Some(listed) = text.strip_prefix("test:").and_then(parse_listed) {
            return Event::Listed(listed);
        }
        if self.pending.len() < MAX_PENDING_DIAGNOSTICS {
            self.pending.push((depth, text.clone()));
        } else {
            self.pending_dropped += 1;
        }
        Event::Diagnostic { depth, text }
    }

    fn complete_result(&mut self, mut result: ResultLine) -> ResultLine {
        let depth = result.depth;
        let (mine, theirs): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|(d, _)| *d >= depth);
        self.pending = theirs;
        result.diagnostics = mine.into_iter().map(|(_, text)| text).collect();
        if self.pending_dropped > 0 {
            result.diagnostics.push(format!(
                "({} more diagnostics dropped)",
                self.pending_dropped
            ));
            self.pending_dropped = 0;
        }
        result.path = self
            .subtests
            .iter()
            .take(depth + 1)
            .skip(1)
            .flatten()
            .cloned()
            .collect();
        // A result line closes the subtest one level deeper (its own children).
        self.subtests.truncate(depth + 1);
        result
    }
}

fn parse_version(body: &str) -> Option<u32> {
    let rest = body
        .strip_prefix("KTAP version ")
        .or_else(|| body.strip_prefix("TAP version "))?;
    rest.trim().parse().ok()
}

fn parse_plan(body: &str) -> Option<u64> {
    let rest = body.strip_prefix("1..")?;
    let digits = rest.split(" #").next()?.trim();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn parse_result(depth: usize, body: &str) -> Option<ResultLine> {
    let (ok, rest) = if let Some(rest) = body.strip_prefix("not ok") {
        (false, rest)
    } else {
        (true, body.strip_prefix("ok")?)
    };
    if !(rest.is_empty() || rest.starts_with(' ')) {
        return None;
    }
    let rest = rest.trim_start();
    let digits_end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    // KTAP and TAP require the number; without it the line is console noise that merely
    // starts like a result (`not ok x y`), and taking it for one would invent a test.
    let number = rest[..digits_end].parse().ok()?;
    let rest = &rest[digits_end..];
    if !(rest.is_empty() || rest.starts_with(' ')) {
        return None;
    }
    let rest = rest.trim_start();
    let rest = rest.strip_prefix("- ").unwrap_or(rest);
    let (name, comment) = split_unescaped_hash(rest);
    let (directive, reason) = match comment {
        None => (None, String::new()),
        Some(comment) => {
            let comment = comment.trim();
            let (word, after) = comment
                .split_once(char::is_whitespace)
                .unwrap_or((comment, ""));
            match Directive::from_word(word) {
                Some(directive) => (Some(directive), after.trim().to_string()),
                None => (None, comment.to_string()),
            }
        }
    };
    Some(ResultLine {
        depth,
        ok,
        number,
        name: name.trim().replace("\\#", "#").replace("\\\\", "\\"),
        directive,
        reason,
        diagnostics: Vec::new(),
        path: Vec::new(),
    })
}

/// Splits at the first `#` not escaped by a backslash.
fn split_unescaped_hash(text: &str) -> (&str, Option<&str>) {
    let mut escaped = false;
    for (index, c) in text.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '#' if !escaped => return (&text[..index], Some(&text[index + 1..])),
            _ => escaped = false,
        }
    }
    (text, None)
}

fn parse_listed(text: &str) -> Option<ListedTest> {
    let mut words = text.split_whitespace();
    let (suite, name) = words.next()?.rsplit_once('.')?;
    if suite.is_empty() || name.is_empty() {
        return None;
    }
    let mut listed = ListedTest {
        suite: suite.to_string(),
        name: name.to_string(),
        location: None,
        flags: Vec::new(),
    };
    for word in words {
        if let Some(file) = word.strip_prefix("file=") {
            listed.location = Some(file.to_string());
        } else if let Some(flags) = word.strip_prefix("flags=") {
            listed.flags = flags
                .split(',')
                .filter(|f| !f.is_empty() && *f != "-")
                .map(str::to_string)
                .collect();
        }
    }
    Some(listed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SAMPLE: &str = "\
zhint booting: 256 MiB, 1 CPU
KTAP version 1
# zhint: seed=12345 filter=* skip=0
1..2
    KTAP version 1
    # Subtest: arch::interrupts
    1..3
    ok 1 operation_exception
    # check_eq failed at tests/src/arch_interrupts.rs:42: left: 0x1, right: 0x2
    not ok 2 privileged_operation
    ok 3 essa_probe # SKIP ESSA executes natively
# arch::interrupts: pass:1 fail:1 skip:1 total:3
not ok 1 arch::interrupts
    KTAP version 1
    # Subtest: sclp::console
    1..1
    not ok 1 boom # ERROR program interruption 0x11 at 0x1234 ...
# sclp::console: pass:0 fail:1 skip:0 total:1
not ok 2 sclp::console
# Totals: pass:1 fail:2 skip:1 total:4
EXIT: STATUS=3
";

    fn results(events: &[Event]) -> Vec<&ResultLine> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Result(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn parses_the_kunit_shaped_sample() {
        let events = Parser::new().push(SAMPLE.as_bytes());
        assert_eq!(
            events[0],
            Event::Noise("zhint booting: 256 MiB, 1 CPU".into())
        );
        assert_eq!(
            events[1],
            Event::Version {
                depth: 0,
                version: 1
            }
        );
        assert_eq!(events[3], Event::Plan { depth: 0, count: 2 });
        assert_eq!(
            events[5],
            Event::Subtest {
                depth: 1,
                name: "arch::interrupts".into()
            }
        );
        let results = results(&events);
        assert_eq!(results.len(), 6);
        let failed = results[1];
        assert_eq!(
            (failed.ok, failed.number, failed.name.as_str()),
            (false, 2, "privileged_operation")
        );
        assert_eq!(failed.path, ["arch::interrupts"]);
        assert_eq!(
            failed.diagnostics,
            ["check_eq failed at tests/src/arch_interrupts.rs:42: left: 0x1, right: 0x2"]
        );
        assert!(
            results[0].diagnostics.is_empty(),
            "diagnostics belong to the next result only"
        );
        assert_eq!(results[2].directive, Some(Directive::Skip));
        assert_eq!(results[2].reason, "ESSA executes natively");
        let suite = results[3];
        assert_eq!((suite.depth, suite.name.as_str()), (0, "arch::interrupts"));
        assert!(suite.path.is_empty());
        assert_eq!(results[4].path, ["sclp::console"]);
        assert_eq!(results[4].directive, Some(Directive::Error));
        assert_eq!(results[4].reason, "program interruption 0x11 at 0x1234 ...");
        assert_eq!(events.last(), Some(&Event::Exit { status: 3 }));
    }

    #[test]
    fn crlf_and_byte_by_byte_feeding_give_the_same_events() {
        let whole = Parser::new().push(SAMPLE.as_bytes());
        let crlf = SAMPLE.replace('\n', "\r\n");
        let mut parser = Parser::new();
        let mut trickled = Vec::new();
        for byte in crlf.as_bytes() {
            trickled.extend(parser.push(std::slice::from_ref(byte)));
        }
        assert_eq!(whole, trickled);
    }

    #[test]
    fn interleaved_noise_does_not_disturb_results() {
        let text = "KTAP version 1\n1..1\n    # Subtest: s\nsclp: buffer overrun\n    1..1\n\
                    [  0.1] random kernel noise\n    # why: because\nnoise ok 1 not a result\n    ok 1 t\n";
        let events = Parser::new().push(text.as_bytes());
        let results = results(&events);
        assert_eq!(results.len(), 1);
        assert_eq!(results[0].path, ["s"]);
        assert_eq!(results[0].diagnostics, ["why: because"]);
        let noise = events
            .iter()
            .filter(|e| matches!(e, Event::Noise(_)))
            .count();
        assert_eq!(noise, 3);
    }

    #[test]
    fn truncated_output_yields_the_partial_last_line_on_finish() {
        let mut parser = Parser::new();
        let events = parser.push(b"KTAP version 1\n1..1\n    # Subtest: s\n    ok 1 fir");
        assert!(results(&events).is_empty());
        match parser.finish() {
            Some(Event::Result(r)) => assert_eq!(r.name, "fir"),
            other => panic!("expected a result, got {other:?}"),
        }
        assert_eq!(parser.finish(), None);
    }

    #[test]
    fn qemus_line_mode_characters_are_put_back() {
        // As the kernel's `sclp::console.ktap_charset` line shows on QEMU's line-mode console.
        let shown = b"    # charset: 0123456789 #:._-=/()],+*<>'\"\xaa|{}!&%$@?;~\x9b`\\\n";
        let mut lines = Lines::new();
        lines.qemu_charset = true;
        lines.feed(shown);
        assert_eq!(
            String::from_utf8(lines.next_line().unwrap()).unwrap(),
            "    # charset: 0123456789 #:._-=/()!,+*<>'\"[]{}|&%$@?;~^`\\"
        );
        let mut lines = Lines::new();
        lines.qemu_charset = true;
        lines.feed(b"Bail out] panic in s.t");
        assert_eq!(lines.next_line(), None, "no newline yet");
        assert_eq!(lines.finish().unwrap(), b"Bail out! panic in s.t");
    }

    #[test]
    fn line_mode_pieces_are_joined_back_into_their_line() {
        let width = sclp::LINE_MODE_WIDTH;
        let long = "x".repeat(width * 2 + 5);
        let exact = "y".repeat(width);
        // As QEMU shows the line-mode console: a newline before every message text object.
        let mut console = String::new();
        for mto in [
            &long[..width],
            &long[width..2 * width],
            &long[2 * width..],
            &exact[..],
            "",
            "ok 1 t",
        ] {
            console.push('\n');
            console.push_str(mto);
        }
        let mut lines = Lines::new();
        lines.line_mode = true;
        lines.feed(console.as_bytes());
        let mut got = Vec::new();
        while let Some(line) = lines.next_line() {
            got.push(String::from_utf8(line).unwrap());
        }
        got.extend(lines.finish().map(|l| String::from_utf8(l).unwrap()));
        assert_eq!(got, ["", long.as_str(), exact.as_str(), "ok 1 t"]);

        let mut plain = Lines::new();
        plain.feed(console.as_bytes());
        let mut count = 0;
        while plain.next_line().is_some() {
            count += 1;
        }
        assert_eq!(count, 6, "without line mode every piece is a line");

        let mut trickled = Lines::new();
        trickled.line_mode = true;
        let mut again = Vec::new();
        for byte in console.as_bytes() {
            trickled.feed(std::slice::from_ref(byte));
            while let Some(line) = trickled.next_line() {
                again.push(String::from_utf8(line).unwrap());
            }
        }
        again.extend(trickled.finish().map(|l| String::from_utf8(l).unwrap()));
        assert_eq!(again, got, "the same lines fed byte by byte");
    }

    #[test]
    fn garbage_bytes_are_replaced_not_fatal() {
        let mut parser = Parser::new();
        let events = parser.push(b"\xff\xfe\x00garbage\n    ok 1 na\xc3me \xff # SKIP r\xe9ason\n");
        assert!(matches!(&events[0], Event::Noise(text) if text.contains('\u{fffd}')));
        let results = results(&events);
        assert_eq!(results[0].name, "na\u{fffd}me \u{fffd}");
        assert_eq!(results[0].directive, Some(Directive::Skip));
    }

    #[test]
    fn nested_subtests_carry_their_path_and_close_correctly() {
        let text = "\
KTAP version 1
1..1
    # Subtest: suite
    1..1
        # Subtest: param_test
        1..2
        ok 1 case_a
        # inner diag
        not ok 2 case_b
    # outer diag
    not ok 1 param_test
not ok 1 suite
";
        let events = Parser::new().push(text.as_bytes());
        let results = results(&events);
        assert_eq!(results[0].path, ["suite", "param_test"]);
        assert_eq!(results[1].diagnostics, ["inner diag"]);
        assert_eq!(results[2].path, ["suite"]);
        assert_eq!(results[2].name, "param_test");
        assert_eq!(results[2].diagnostics, ["outer diag"]);
        assert!(results[3].path.is_empty());
    }

    #[test]
    fn directives_and_tap_style_descriptions() {
        let mut parser = Parser::new();
        let cases = [
            (
                "ok 3 - a \\# b # skip lowercase",
                "a # b",
                Some(Directive::Skip),
                "lowercase",
            ),
            (
                "not ok 4 t # XFAIL known",
                "t",
                Some(Directive::XFail),
                "known",
            ),
            ("not ok 5 t # TIMEOUT", "t", Some(Directive::Timeout), ""),
            (
                "not ok 6 t # TODO later",
                "t",
                Some(Directive::Todo),
                "later",
            ),
            ("not ok 7 t # weird data", "t", None, "weird data"),
            ("ok 8", "", None, ""),
        ];
        for (line, name, directive, reason) in cases {
            match parser.parse_line(line.as_bytes()) {
                Event::Result(r) => {
                    assert_eq!(
                        (r.name.as_str(), &r.directive, r.reason.as_str()),
                        (name, &directive, reason),
                        "{line}"
                    )
                }
                other => panic!("{line}: {other:?}"),
            }
        }
        assert!(matches!(parser.parse_line(b"okay then"), Event::Noise(_)));
        for unnumbered in [&b"ok"[..], b"    not ok x y", b"ok 1x", b"not ok - t"] {
            assert!(
                matches!(parser.parse_line(unnumbered), Event::Noise(_)),
                "{}",
                String::from_utf8_lossy(unnumbered)
            );
        }
        assert!(matches!(parser.parse_line(b"1..x"), Event::Noise(_)));
        assert!(matches!(
            parser.parse_line(b"EXIT: STATUS=oops"),
            Event::Noise(_)
        ));
    }

    #[test]
    fn list_lines_bail_out_and_exit() {
        let mut parser = Parser::new();
        assert_eq!(
            parser.parse_line(b"# test: arch::interrupts.operation_exception file=tests/src/a.rs:10 flags=expect_pgm,slow"),
            Event::Listed(ListedTest {
                suite: "arch::interrupts".into(),
                name: "operation_exception".into(),
                location: Some("tests/src/a.rs:10".into()),
                flags: vec!["expect_pgm".into(), "slow".into()],
            })
        );
        assert_eq!(
            parser.parse_line(b"Bail out! panic in s.t"),
            Event::BailOut {
                reason: "panic in s.t".into()
            }
        );
        assert_eq!(
            parser.parse_line(b"EXIT: STATUS=77\r"),
            Event::Exit { status: 77 }
        );
        match parser.parse_line(b"# test: s.t file=a.rs:1 flags=-") {
            Event::Listed(listed) => assert!(listed.flags.is_empty(), "`-` means no flags"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn overlong_lines_and_diagnostic_floods_stay_bounded() {
        let mut parser = Parser::new();
        let mut long = vec![b'x'; MAX_LINE_BYTES * 3];
        long.push(b'\n');
        match &parser.push(&long)[..] {
            [Event::Noise(text)] => assert_eq!(text.len(), MAX_LINE_BYTES),
            other => panic!("{other:?}"),
        }
        let flood = "# d\n".repeat(MAX_PENDING_DIAGNOSTICS * 2);
        parser.push(flood.as_bytes());
        let events = parser.push(b"ok 1 t\n");
        let result = results(&events)[0];
        assert_eq!(result.diagnostics.len(), MAX_PENDING_DIAGNOSTICS + 1);
        assert!(result.diagnostics.last().unwrap().contains("256 more"));
    }

    fn fuzz_cases() -> u32 {
        std::env::var("KTAP_FUZZ_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(2000)
    }

    fn ktap_like_line() -> impl Strategy<Value = Vec<u8>> {
        let fragments = prop::sample::select(vec![
            "KTAP version 1",
            "1..3",
            "    ",
            "# Subtest: ",
            "ok ",
            "not ok ",
            "# SKIP ",
            "# ERROR ",
            "Bail out!",
            "EXIT: STATUS=",
            "# test: a.b file=",
            "\r",
            "#",
            "\\",
            "1..",
            "-",
            " ",
        ]);
        let piece = prop_oneof![
            fragments.prop_map(|s| s.as_bytes().to_vec()),
            prop::collection::vec(any::<u8>(), 0..8),
        ];
        prop::collection::vec(piece, 0..8).prop_map(|parts| parts.concat())
    }

    /// The memory a parser keeps after `fed` input bytes in `lines` lines may grow with the
    /// input (a partial line, pending diagnostics) but never beyond a fixed multiple of it:
    /// twice the bytes (buffer doubling) plus one bookkeeping entry per line.
    fn retained_is_bounded(parser: &Parser, fed: usize, lines: usize) -> Result<(), TestCaseError> {
        let retained = parser.retained_bytes();
        prop_assert!(
            retained <= MAX_RETAINED_BYTES,
            "{retained} > {MAX_RETAINED_BYTES}"
        );
        prop_assert!(
            retained <= 2 * fed + 32 * (lines + 1),
            "{retained} bytes retained after {fed} bytes in {lines} lines"
        );
        Ok(())
    }

    #[test]
    fn retained_memory_stops_growing_at_the_limits() {
        let mut parser = Parser::new();
        let flood =
            format!("# {}\n", "d".repeat(MAX_LINE_BYTES * 2)).repeat(MAX_PENDING_DIAGNOSTICS * 2);
        parser.push(flood.as_bytes());
        let full = parser.retained_bytes();
        assert!(
            full > MAX_PENDING_DIAGNOSTICS * (MAX_LINE_BYTES - 8),
            "{full}"
        );
        assert!(full <= MAX_RETAINED_BYTES);
        parser.push(flood.as_bytes());
        assert_eq!(parser.retained_bytes(), full, "a second flood adds nothing");
        parser.push(b"ok 1 t\n");
        assert_eq!(
            parser.retained_bytes(),
            0,
            "the result line takes the diagnostics"
        );
    }

    proptest! {
        // `KTAP_FUZZ_CASES=1000000 cargo test -p xtask --release ktap::` for a long run.
        #![proptest_config(ProptestConfig::with_cases(fuzz_cases()))]

        #[test]
        fn never_panics_on_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
            let mut parser = Parser::new();
            let events = parser.push(&bytes);
            let lines = bytes.iter().filter(|&&b| b == b'\n').count();
            prop_assert!(events.len() <= lines);
            retained_is_bounded(&parser, bytes.len(), lines)?;
            parser.finish();
        }

        #[test]
        fn never_panics_on_ktap_like_lines(lines in prop::collection::vec(ktap_like_line(), 0..64)) {
            let mut parser = Parser::new();
            let (mut fed, mut newlines) = (0, 0);
            for line in &lines {
                let mut line = line.clone();
                line.push(b'\n');
                fed += line.len();
                newlines += line.iter().filter(|&&b| b == b'\n').count();
                parser.push(&line);
                retained_is_bounded(&parser, fed, newlines)?;
            }
            parser.finish();
        }

        #[test]
        fn mutated_sample_never_panics_and_splitting_is_irrelevant(
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..32),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = SAMPLE.as_bytes().to_vec();
            for (index, value) in flips {
                let at = index.index(bytes.len());
                bytes[at] = value;
            }
            let whole = Parser::new().push(&bytes);
            let at = cut.index(bytes.len());
            let mut parser = Parser::new();
            let mut split = parser.push(&bytes[..at]);
            split.extend(parser.push(&bytes[at..]));
            prop_assert_eq!(whole, split);
        }
    }
}
