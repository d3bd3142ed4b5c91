//! The console layer: line buffering, ASCII and line-mode WRITE EVENT DATA, console dropping,
//! and `core::fmt::Write`.
//!
//! Output is collected into a line and written with one SERVC per console per line: the
//! line-mode console starts a new line with every write, and one request per byte would be slow
//! on every console. While output is held ([`Sclp::hold`]) completed lines collect instead and
//! go out together, one SERVC per console for as many lines as one SCCB carries (several lines
//! in one ASCII event, several MTOs in one line-mode message, as Linux's `sclp_vt220` and
//! `sclp_rw` write them), when released or when the next line would not fit. A line longer
//! than [`LINE_CAPACITY`] is written in pieces; the ASCII console
//! continues the piece on the same line. A line-mode line longer than [`LINE_MODE_WIDTH`] is
//! split into several message text objects (MTOs), each shown as a line of its own; every line
//! ends with an MTO shorter than the width (an empty one when the text fills its last MTO
//! exactly), so a reader gets each line back by joining every full-width MTO with the next one
//! (xtask does, before it parses KTAP).

use core::fmt;

use crate::ebcdic::to_cp037;
use crate::spec::{
    EventBufferHeader, SCCB_SIZE, SccbHeader, command, event_type, line_mode, response,
};
use crate::{Backend, Error, Sclp};

/// Bytes collected before they are written even without a newline: two full line-mode MTOs,
/// so a piece of a long line ends on a full-width MTO and the reader joins it to the next.
pub const LINE_CAPACITY: usize = 2 * LINE_MODE_WIDTH;

/// Longest line-mode line, in characters; longer lines are split into several MTOs. 132 is the
/// classic printer line (kvm-unit-tests splits at 119); what z/VM and the HMC do with longer
/// lines has not been verified.
pub const LINE_MODE_WIDTH: usize = 132;

/// Offset of the first message text object in a line-mode SCCB.
const FIRST_MTO: usize =
    SccbHeader::SIZE + EventBufferHeader::SIZE + line_mode::MDB_HEADER_SIZE + line_mode::GO_SIZE;

/// The bytes of the line being collected.
#[derive(Clone, Debug)]
pub(crate) struct LineBuffer {
    bytes: [u8; LINE_CAPACITY],
    len: usize,
}

impl LineBuffer {
    pub(crate) const fn new() -> Self {
        Self {
            bytes: [0; LINE_CAPACITY],
            len: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    fn is_full(&self) -> bool {
        self.len == LINE_CAPACITY
    }

    fn push(&mut self, byte: u8) {
        self.bytes[self.len] = byte;
        self.len += 1;
    }

    fn clear(&mut self) {
        self.len = 0;
    }
}

/// Most pieces of lines one write carries (a piece is a line, or part of a long one).
const MAX_PIECES: usize = 64;

/// Bytes of an ASCII event's data one SCCB carries.
const ASCII_CAPACITY: usize = SCCB_SIZE - SccbHeader::SIZE - EventBufferHeader::SIZE;

/// Bytes of MTOs one line-mode SCCB carries.
const LINE_MODE_CAPACITY: usize = SCCB_SIZE - FIRST_MTO;

/// One piece of output: bytes of the held text, and whether a newline ends it.
#[derive(Clone, Copy, Debug, Default)]
struct Piece {
    start: usize,
    end: usize,
    newline: bool,
}

/// The pieces of lines written but not yet sent, and what they take in each console's event.
#[derive(Clone, Debug)]
pub(crate) struct Held {
    text: [u8; ASCII_CAPACITY],
    len: usize,
    pieces: [Piece; MAX_PIECES],
    count: usize,
    ascii_bytes: usize,
    line_mode_bytes: usize,
}

impl Held {
    pub(crate) const fn new() -> Self {
        Self {
            text: [0; ASCII_CAPACITY],
            len: 0,
            pieces: [Piece {
                start: 0,
                end: 0,
                newline: false,
            }; MAX_PIECES],
            count: 0,
            ascii_bytes: 0,
            line_mode_bytes: 0,
        }
    }

    /// Pieces held.
    pub(crate) fn pieces_held(&self) -> usize {
        self.count
    }

    /// What `text` (ended by a newline or not) takes in an ASCII event and in line-mode
    /// MTOs. A newline counts as `"\r\n"` whatever the console's setting: that may change
    /// while lines are held ([`Sclp::set_crlf`]).
    fn cost(text: &[u8], newline: bool) -> (usize, usize) {
        let terminator = if newline { 2 } else { 0 };
        let shown = text
            .iter()
            .filter(|&&b| line_mode_char(b).is_some())
            .count();
        let mtos =
            shown.div_ceil(LINE_MODE_WIDTH) + usize::from(ends_with_empty_mto(shown, newline));
        (
            text.len() + terminator,
            mtos * line_mode::MTO_HEADER_SIZE + shown,
        )
    }

    /// Whether a piece of cost `(ascii, line_mode)` ([`Held::cost`]) fits besides what
    /// is held.
    fn fits(&self, (ascii, line_mode): (usize, usize)) -> bool {
        self.count < MAX_PIECES
            && self.ascii_bytes + ascii <= ASCII_CAPACITY
            && self.line_mode_bytes + line_mode <= LINE_MODE_CAPACITY
    }

    /// Holds `text` of cost `(ascii, line_mode)`; the caller made sure it
    /// [`fits`](Self::fits).
    fn push(&mut self, text: &[u8], newline: bool, (ascii, line_mode): (usize, usize)) {
        let start = self.len;
        self.text[start..start + text.len()].copy_from_slice(text);
        self.len += text.len();
        self.pieces[self.count] = Piece {
            start,
            end: self.len,
            newline,
        };
        self.count += 1;
        self.ascii_bytes += ascii;
        self.line_mode_bytes += line_mode;
    }

    fn pieces(&self) -> impl Iterator<Item = (&[u8], bool)> {
        self.pieces[..self.count]
            .iter()
            .map(|p| (&self.text[p.start..p.end], p.newline))
    }

    fn clear(&mut self) {
        self.len = 0;
        self.count = 0;
        self.ascii_bytes = 0;
        self.line_mode_bytes = 0;
    }
}

/// Whether a piece of `shown` line-mode characters ends with an empty MTO: at the end of a
/// line whose text filled its last MTO (so the reader does not join it to the next line),
/// and for an empty piece (a message needs an MTO).
fn ends_with_empty_mto(shown: usize, newline: bool) -> bool {
    shown.is_multiple_of(LINE_MODE_WIDTH) && (newline || shown == 0)
}

/// One of the two consoles, for dropping the one that refused output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Console {
    Ascii,
    LineMode,
}

/// What the line-mode console gets for an ASCII byte: printable ASCII as it is, a tab as a
/// space, carriage returns nothing (every MTO is a line of its own), anything else (control
/// characters, UTF-8 sequences) `?`.
fn line_mode_char(byte: u8) -> Option<u8> {
    match byte {
        b'\r' => None,
        b'\t' => Some(b' '),
        0x20..=0x7e => Some(byte),
        _ => Some(b'?'),
    }
}

impl<B: Backend> Sclp<B> {
    /// Queues `byte` for output; `'\n'` writes the line. Errors are dropped, as a console has
    /// nowhere to report them; use [`write_bytes`](Self::write_bytes) to see them.
    pub fn send(&mut self, byte: u8) {
        let _ = self.write_byte(byte);
    }

    /// Queues `byte` for output; `'\n'` writes the line, and so does a full line buffer.
    pub fn write_byte(&mut self, byte: u8) -> Result<(), Error> {
        if byte == b'\n' {
            return self.write_line(true);
        }
        if self.line.is_full() {
            self.write_line(false)?;
        }
        self.line.push(byte);
        Ok(())
    }

    /// Queues `bytes` for output, writing each completed line. All bytes are processed even
    /// after an error (a console that keeps failing must not silence the other one); the first
    /// error is returned.
    pub fn write_bytes(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let mut first_error = Ok(());
        for &byte in bytes {
            if let Err(error) = self.write_byte(byte) {
                first_error = first_error.and(Err(error));
            }
        }
        first_error
    }

    /// As [`write_bytes`](Self::write_bytes) for a string, with the driver's own error type
    /// instead of `fmt::Error`.
    pub fn write_str_raw(&mut self, s: &str) -> Result<(), Error> {
        self.write_bytes(s.as_bytes())
    }

    /// Writes what is queued even though no newline ended it, held lines included. On the
    /// ASCII console the next output continues the same line; on the line-mode console it
    /// starts a new one.
    pub fn flush(&mut self) -> Result<(), Error> {
        // Queuing sends what is held first when the line does not fit, and keeps the line
        // even when that send fails: it goes out here all the same, the first error kept.
        let queued = if self.line.len() > 0 {
            self.queue_line(false)
        } else {
            Ok(())
        };
        let sent = self.send_held();
        queued.and(sent)
    }

    /// Holds completed lines from now on instead of writing each: they go out together at
    /// [`release`](Self::release), [`flush`](Self::flush), or when an SCCB is full. For
    /// stretches of output that cannot hang (a banner, a test's result lines); what is
    /// held is lost if the machine stops before the release.
    pub fn hold(&mut self) {
        self.holding = true;
    }

    /// Writes the held lines and writes each line again as it completes.
    pub fn release(&mut self) -> Result<(), Error> {
        self.holding = false;
        self.send_held()
    }

    /// Whether completed lines are held.
    pub fn is_holding(&self) -> bool {
        self.holding
    }

    /// Ends ASCII-console lines with `"\r\n"` instead of `"\n"` (the LPAR HMC's integrated ASCII
    /// console needs the carriage return).
    pub fn set_crlf(&mut self, on: bool) {
        self.crlf = on;
    }

    /// Ends the queued line (`newline`) or a piece of it: written at once, or held.
    fn write_line(&mut self, newline: bool) -> Result<(), Error> {
        self.queue_line(newline)?;
        if self.holding {
            return Ok(());
        }
        self.send_held()
    }

    /// Moves the queued line into the held pieces, sending what is held first if it would
    /// not fit.
    fn queue_line(&mut self, newline: bool) -> Result<(), Error> {
        let mut result = Ok(());
        let cost = Held::cost(self.line.as_bytes(), newline);
        if !self.held.fits(cost) {
            result = self.send_held();
        }
        self.held.push(self.line.as_bytes(), newline, cost);
        self.line.clear();
        result
    }

    /// Writes the held pieces to every console and empties them. A console that answers
    /// "not active" (0x05F0, z/VM's VT220) or "invalid function" (0x40F0, no such device) is
    /// dropped and the other carries on; any other failure is returned after both were tried.
    fn send_held(&mut self) -> Result<(), Error> {
        if self.held.pieces_held() == 0 {
            return Ok(());
        }
        let mut first_error = None;
        if self.consoles.ascii
            && let Err(error) = self.write_ascii()
        {
            first_error = Some(error);
        }
        if self.consoles.line_mode
            && let Err(error) = self.write_line_mode()
        {
            first_error.get_or_insert(error);
        }
        self.held.clear();
        match first_error {
            Some(error) => Err(error),
            None if self.consoles.is_empty() => Err(Error::NoConsole),
            None => Ok(()),
        }
    }

    /// One ASCII console event (type 0x1a) with the held pieces, each newline as the line
    /// terminator.
    fn write_ascii(&mut self) -> Result<(), Error> {
        let terminator: &[u8] = if self.crlf { b"\r\n" } else { b"\n" };
        self.sccb.clear();
        let bytes = self.sccb.as_bytes_mut();
        let data = SccbHeader::SIZE + EventBufferHeader::SIZE;
        let mut end = data;
        for (text, newline) in self.held.pieces() {
            bytes[end..end + text.len()].copy_from_slice(text);
            end += text.len();
            if newline {
                bytes[end..end + terminator.len()].copy_from_slice(terminator);
                end += terminator.len();
            }
        }
        SccbHeader::request(end).encode(bytes);
        EventBufferHeader {
            length: (end - SccbHeader::SIZE) as u16,
            event_type: event_type::ASCII_CONSOLE,
            flags: 0,
        }
        .encode(&mut bytes[SccbHeader::SIZE..]);
        self.write_event_data(Console::Ascii)
    }

    /// One message event (type 0x02): MDB header, GO object, then for each held piece one
    /// MTO per [`LINE_MODE_WIDTH`] characters of EBCDIC text. At the end of a line the last
    /// MTO is shorter than the width: an empty one follows text that filled its MTO.
    fn write_line_mode(&mut self) -> Result<(), Error> {
        self.sccb.clear();
        let bytes = self.sccb.as_bytes_mut();
        let mut end = FIRST_MTO;
        let mut put_mto = |bytes: &mut [u8], chunk: &[u8]| {
            line_mode::encode_mto_header(&mut bytes[end..], chunk.len());
            let text_start = end + line_mode::MTO_HEADER_SIZE;
            bytes[text_start..text_start + chunk.len()].copy_from_slice(chunk);
            end = text_start + chunk.len();
        };
        for (piece, newline) in self.held.pieces() {
            let mut text = [0; LINE_CAPACITY];
            let mut text_len = 0;
            for code in piece.iter().filter_map(|&b| line_mode_char(b)) {
                text[text_len] = to_cp037(code);
                text_len += 1;
            }
            let text = &text[..text_len];
            for chunk in text.chunks(LINE_MODE_WIDTH) {
                put_mto(bytes, chunk);
            }
            if ends_with_empty_mto(text.len(), newline) {
                put_mto(bytes, &[]);
            }
        }

        SccbHeader::request(end).encode(bytes);
        let event = SccbHeader::SIZE;
        EventBufferHeader {
            length: (end - event) as u16,
            event_type: event_type::MESSAGE,
            flags: 0,
        }
        .encode(&mut bytes[event..]);
        let mdb = event + EventBufferHeader::SIZE;
        line_mode::encode_mdb_header(&mut bytes[mdb..], end - mdb);
        line_mode::encode_go(&mut bytes[mdb + line_mode::MDB_HEADER_SIZE..]);
        self.write_event_data(Console::LineMode)
    }

    /// Issues WRITE EVENT DATA for the event prepared in the SCCB.
    fn write_event_data(&mut self, console: Console) -> Result<(), Error> {
        match self.execute(command::WRITE_EVENT_DATA)? {
            response::NORMAL_COMPLETION => Ok(()),
            response::NOT_ACTIVE | response::INVALID_FUNCTION => {
                match console {
                    Console::Ascii => self.consoles.ascii = false,
                    Console::LineMode => self.consoles.line_mode = false,
                }
                Ok(())
            }
            code => Err(Error::Response(code)),
        }
    }
}

impl<B: Backend> fmt::Write for Sclp<B> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.write_bytes(s.as_bytes()).map_err(|_| fmt::Error)
    }
}

#[cfg(test)]
mod tests {
    use core::fmt::Write as _;
    use std::string::String;
    use std::vec::Vec;

    use super::*;
    use crate::Consoles;
    use crate::fake::{Config, initialized, sclp};

    const ASCII_ONLY: u32 = 0x0000_0040;
    const LINE_MODE_ONLY: u32 = 0x4000_0000;

    fn event_requests(sclp: &Sclp<crate::fake::FakeSclp>) -> Vec<&[u8]> {
        let requests = &sclp.backend.requests;
        requests
            .iter()
            .filter(|r| r.command == 0x0076_0005)
            .map(|r| &r.bytes[..])
            .collect()
    }

    #[test]
    fn ascii_line_is_one_event_laid_out_byte_for_byte() {
        let (mut sclp, _) = initialized(Config {
            receive_mask: ASCII_ONLY,
            ..Config::default()
        });
        sclp.write_str_raw("hello\n").unwrap();
        let events = event_requests(&sclp);
        assert_eq!(events.len(), 1);
        assert_eq!(
            events[0],
            [
                0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // SCCB: length 20
                0x00, 0x0C, 0x1A, 0x00, 0x00, 0x00, // event: length 12, ASCII console
                b'h', b'e', b'l', b'l', b'o', b'\n',
            ]
        );
        assert_eq!(sclp.backend.ascii_text(), "hello\n");
    }

    #[test]
    fn output_is_written_once_per_line_not_per_byte() {
        let (mut sclp, _) = initialized(Config {
            receive_mask: ASCII_ONLY,
            ..Config::default()
        });
        sclp.write_str_raw("first line\nsecond").unwrap();
        assert_eq!(event_requests(&sclp).len(), 1);
        sclp.write_str_raw(" line\n").unwrap();
        assert_eq!(event_requests(&sclp).len(), 2);
        assert_eq!(sclp.backend.ascii_text(), "first line\nsecond line\n");
    }

    /// Output with lines of every length that matters (empty, a full MTO, a full line buffer,
    /// longer), a piece without newline, carriage returns and tabs.
    fn mixed_output(sclp: &mut Sclp<crate::fake::FakeSclp>) {
        for n in [0, 1, 131, 132, 133, 263, 264, 265, 600, 5] {
            writeln!(sclp, "{}", "z".repeat(n)).unwrap();
        }
        for i in 0..200 {
            writeln!(sclp, "    ok {i} a_test_name\t# time_us: {}\r", i * 37).unwrap();
        }
        write!(sclp, "no newline yet").unwrap();
        sclp.flush().unwrap();
        writeln!(sclp, " and then one").unwrap();
    }

    #[test]
    fn held_lines_read_exactly_as_lines_written_one_by_one_in_fewer_writes() {
        for crlf in [false, true] {
            let (mut one_by_one, _) = initialized(Config::default());
            one_by_one.set_crlf(crlf);
            mixed_output(&mut one_by_one);
            let (mut held, _) = initialized(Config::default());
            held.set_crlf(crlf);
            held.hold();
            assert!(held.is_holding());
            mixed_output(&mut held);
            held.release().unwrap();
            assert!(!held.is_holding());
            assert_eq!(held.backend.ascii_text(), one_by_one.backend.ascii_text());
            assert_eq!(
                held.backend.line_mode_lines(),
                one_by_one.backend.line_mode_lines()
            );
            let (few, many) = (
                event_requests(&held).len(),
                event_requests(&one_by_one).len(),
            );
            assert!(few * 10 < many, "{few} writes held, {many} one by one");
            for event in event_requests(&held) {
                assert!(event.len() <= crate::spec::SCCB_SIZE, "{}", event.len());
            }
        }
    }

    #[test]
    fn held_lines_wait_for_the_release_or_a_flush() {
        let (mut sclp, _) = initialized(Config {
            receive_mask: ASCII_ONLY,
            ..Config::default()
        });
        sclp.hold();
        sclp.write_str_raw("first\nsecond\n").unwrap();
        assert_eq!(event_requests(&sclp).len(), 0);
        sclp.flush().unwrap();
        assert_eq!(event_requests(&sclp).len(), 1);
        assert_eq!(sclp.backend.ascii_text(), "first\nsecond\n");
        sclp.write_str_raw("third\n").unwrap();
        assert_eq!(event_requests(&sclp).len(), 1, "still held after a flush");
        sclp.release().unwrap();
        sclp.write_str_raw("fourth\n").unwrap();
        assert_eq!(event_requests(&sclp).len(), 3);
        assert_eq!(sclp.backend.ascii_text(), "first\nsecond\nthird\nfourth\n");
        sclp.release().unwrap();
        assert_eq!(event_requests(&sclp).len(), 3, "nothing held: no write");
    }

    #[test]
    fn line_mode_event_has_mdb_go_and_mto_byte_for_byte() {
        let (mut sclp, _) = initialized(Config {
            receive_mask: LINE_MODE_ONLY,
            ..Config::default()
        });
        sclp.write_str_raw("ok 1\n").unwrap();
        let events = event_requests(&sclp);
        assert_eq!(events.len(), 1);
        let mut expected = std::vec![
            0x00, 0x60, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // SCCB: length 96
            0x00, 0x58, 0x02, 0x00, 0x00, 0x00, // event: length 88, message
            0x00, 0x52, 0x00, 0x01, 0xD4, 0xC4, 0xC2, 0x40, 0x00, 0x00, 0x00, 0x01, // MDB
            0x00, 0x38, 0x00, 0x01, // GO: length 56, type 1, then 52 zero bytes
        ];
        expected.extend([0; 52]);
        expected.extend([0x00, 0x0E, 0x00, 0x04, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00]); // MTO
        expected.extend([0x96, 0x92, 0x40, 0xF1]); // "ok 1" in CP037
        assert_eq!(events[0], &expected[..]);
    }

    #[test]
    fn every_ktap_character_survives_the_line_mode_console() {
        let (mut sclp, _) = initialized(Config {
            receive_mask: LINE_MODE_ONLY,
            ..Config::default()
        });
        let lines = [
            "KTAP version 1",
            "    # Subtest: mm::page_cache",
            "    ok 12 - volatile_page_discarded # SKIP essa: unavailable (operation exception)",
            "not ok 3 - x_y.z=/()!,+*<>'\"[]{}|~^`@$%&?;\\",
            "# Totals: pass:10 fail:0 skip:2 total:12 ABCXYZ 0123456789",
            "EXIT: STATUS=1",
        ];
        for line in lines {
            writeln!(sclp, "{line}").unwrap();
        }
        assert_eq!(sclp.backend.line_mode_lines(), lines);
    }

    #[test]
    fn both_consoles_get_every_line() {
        let (mut sclp, _) = initialized(Config::default());
        sclp.write_str_raw("one\ntwo\n").unwrap();
        assert_eq!(sclp.backend.ascii_text(), "one\ntwo\n");
        assert_eq!(sclp.backend.line_mode_lines(), ["one", "two"]);
        assert_eq!(event_requests(&sclp).len(), 4);
    }

    #[test]
    fn crlf_mode_ends_ascii_lines_with_carriage_return_line_feed() {
        let (mut sclp, _) = initialized(Config::default());
        sclp.set_crlf(true);
        sclp.write_str_raw("a\nb\n").unwrap();
        assert_eq!(sclp.backend.ascii_text(), "a\r\nb\r\n");
        assert_eq!(sclp.backend.line_mode_lines(), ["a", "b"]);
        sclp.set_crlf(false);
        sclp.write_str_raw("c\n").unwrap();
        assert_eq!(sclp.backend.ascii_text(), "a\r\nb\r\nc\n");
    }

    #[test]
    fn long_lines_are_split_and_nothing_is_lost() {
        let (mut sclp, _) = initialized(Config::default());
        let line: String = (0..600)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        writeln!(sclp, "{line}").unwrap();

        assert_eq!(sclp.backend.ascii_text(), std::format!("{line}\n"));
        let ascii_events: Vec<_> = event_requests(&sclp)
            .into_iter()
            .filter(|e| e[10] == 0x1a)
            .collect();
        assert_eq!(
            ascii_events.len(),
            3,
            "600 bytes in pieces of {LINE_CAPACITY}"
        );
        assert!(
            ascii_events
                .iter()
                .all(|e| e.len() <= 14 + LINE_CAPACITY + 1)
        );

        let lines = sclp.backend.line_mode_lines();
        assert!(
            lines.iter().all(|l| l.len() <= LINE_MODE_WIDTH),
            "{lines:?}"
        );
        assert_eq!(lines.concat(), line);
        assert_eq!(lines.len(), 5, "600 = 4 x 132 + 72");
        assert_eq!(join_line_mode(&lines), [line]);
    }

    /// What a reader of the line-mode console does: a full-width MTO continues in the next.
    fn join_line_mode(mtos: &[std::string::String]) -> Vec<std::string::String> {
        let mut lines = Vec::new();
        let mut current = std::string::String::new();
        for mto in mtos {
            current.push_str(mto);
            if mto.len() < LINE_MODE_WIDTH {
                lines.push(core::mem::take(&mut current));
            }
        }
        assert!(
            current.is_empty(),
            "a line ended on a full-width MTO: {mtos:?}"
        );
        lines
    }

    #[test]
    fn every_line_comes_back_from_the_line_mode_console_whatever_its_length() {
        let (mut sclp, _) = initialized(Config::default());
        let lengths = [0, 1, 131, 132, 133, 263, 264, 265, 396, 528, 600];
        let lines: Vec<std::string::String> = lengths.iter().map(|&n| "y".repeat(n)).collect();
        for line in &lines {
            writeln!(sclp, "{line}").unwrap();
        }
        assert_eq!(join_line_mode(&sclp.backend.line_mode_lines()), lines);
        let exact = &sclp.backend.line_mode_lines()[3..6];
        assert_eq!(
            exact
                .iter()
                .map(std::string::String::len)
                .collect::<Vec<_>>(),
            [132, 0, 132],
            "a line that fills its MTO exactly is followed by an empty one"
        );
    }

    #[test]
    fn empty_line_is_one_empty_mto() {
        let (mut sclp, _) = initialized(Config::default());
        sclp.write_str_raw("\n").unwrap();
        assert_eq!(sclp.backend.line_mode_lines(), [""]);
        assert_eq!(sclp.backend.ascii_text(), "\n");
    }

    #[test]
    fn zvm_vt220_answering_05f0_is_dropped_and_line_mode_carries_on() {
        let (mut sclp, _) = initialized(Config {
            ascii_response: 0x05f0,
            ..Config::default()
        });
        sclp.write_str_raw("first\nsecond\n").unwrap();
        assert_eq!(
            sclp.consoles(),
            Consoles {
                ascii: false,
                line_mode: true
            }
        );
        assert_eq!(sclp.backend.line_mode_lines(), ["first", "second"]);
        let ascii_attempts = event_requests(&sclp)
            .iter()
            .filter(|e| e[10] == 0x1a)
            .count();
        assert_eq!(
            ascii_attempts, 1,
            "the dropped console must not be tried again"
        );
    }

    #[test]
    fn missing_line_mode_device_answering_40f0_is_dropped() {
        let (mut sclp, _) = initialized(Config {
            line_mode_response: 0x40f0,
            ..Config::default()
        });
        sclp.write_str_raw("a\nb\n").unwrap();
        assert_eq!(
            sclp.consoles(),
            Consoles {
                ascii: true,
                line_mode: false
            }
        );
        assert_eq!(sclp.backend.ascii_text(), "a\nb\n");
    }

    #[test]
    fn other_error_responses_are_reported_and_the_console_kept() {
        for code in [0x01f0, 0x0300, 0x0340, 0x72f0] {
            let config = Config {
                ascii_response: code,
                ..Config::default()
            };
            let (mut sclp, _) = initialized(config);
            assert_eq!(sclp.write_str_raw("a\nb\n"), Err(Error::Response(code)));
            assert_eq!(sclp.consoles(), Consoles::BOTH);
            assert_eq!(
                sclp.backend.line_mode_lines(),
                ["a", "b"],
                "the other console printed all"
            );
            assert!(
                writeln!(sclp, "c").is_err(),
                "fmt::Write must report the failure"
            );
        }
    }

    #[test]
    fn flush_sends_a_partial_line_even_when_the_send_before_it_failed() {
        // How many held lines of 100 characters go before the next one does not fit.
        let line = "a".repeat(100) + "\n";
        let (mut probe, _) = initialized(Config::default());
        probe.hold();
        let before = probe.backend.requests.len();
        let mut fit = 0;
        loop {
            probe.write_str_raw(&line).unwrap();
            if probe.backend.requests.len() != before {
                break;
            }
            fit += 1;
        }
        // The ASCII console fails every write; the line-mode console works.
        let (mut sclp, _) = initialized(Config {
            ascii_response: 0x01f0,
            ..Config::default()
        });
        sclp.hold();
        for _ in 0..fit {
            sclp.write_str_raw(&line).unwrap();
        }
        // Longer than a held line: it does not fit beside them either.
        let partial = "b".repeat(200);
        sclp.write_str_raw(&partial).unwrap();
        assert_eq!(sclp.flush(), Err(Error::Response(0x01f0)));
        let shown = sclp.backend.line_mode_lines().concat();
        assert!(shown.contains(&"a".repeat(100)), "{shown}");
        assert!(
            shown.ends_with(&partial),
            "the partial line was not sent: {shown}"
        );
    }

    #[test]
    fn when_every_console_refuses_output_writes_fail() {
        let config = Config {
            ascii_response: 0x05f0,
            line_mode_response: 0x40f0,
            ..Config::default()
        };
        let (mut sclp, _) = initialized(config);
        assert_eq!(sclp.write_str_raw("lost\n"), Err(Error::NoConsole));
        assert_eq!(sclp.consoles(), Consoles::NONE);
        let attempts = sclp.backend.requests.len();
        assert_eq!(sclp.write_str_raw("also lost\n"), Err(Error::NoConsole));
        assert_eq!(
            sclp.backend.requests.len(),
            attempts,
            "no console left to try"
        );
    }

    #[test]
    fn flush_writes_a_partial_line_and_nothing_when_empty() {
        let (mut sclp, _) = initialized(Config::default());
        sclp.write_str_raw("abc").unwrap();
        assert!(
            sclp.backend.ascii_output.is_empty(),
            "no newline, no write yet"
        );
        sclp.flush().unwrap();
        assert_eq!(sclp.backend.ascii_text(), "abc");
        assert_eq!(sclp.backend.line_mode_lines(), ["abc"]);
        let requests = sclp.backend.requests.len();
        sclp.flush().unwrap();
        assert_eq!(sclp.backend.requests.len(), requests);
    }

    #[test]
    fn send_queues_bytes_like_uart_16550() {
        let (mut sclp, _) = initialized(Config {
            receive_mask: ASCII_ONLY,
            ..Config::default()
        });
        for &byte in b"hi\n" {
            sclp.send(byte);
        }
        assert_eq!(sclp.backend.ascii_text(), "hi\n");
    }

    #[test]
    fn fmt_write_formats_into_the_console() {
        let (mut sclp, _) = initialized(Config::default());
        writeln!(sclp, "{} {:#x} {:>4}|", 42, 255, "r").unwrap();
        assert_eq!(sclp.backend.ascii_text(), "42 0xff    r|\n");
        assert_eq!(sclp.backend.line_mode_lines(), ["42 0xff    r|"]);
    }

    #[test]
    fn line_mode_replaces_what_it_cannot_show() {
        let (mut sclp, _) = initialized(Config::default());
        sclp.write_str_raw("é\tx\r\n").unwrap();
        assert_eq!(sclp.backend.line_mode_lines(), ["?? x"]);
        assert_eq!(sclp.backend.ascii_text(), "é\tx\r\n");
    }

    #[test]
    fn output_before_init_goes_to_both_consoles() {
        let mut sclp = sclp(Config::default());
        sclp.write_str_raw("early\n").unwrap();
        assert_eq!(sclp.backend.ascii_text(), "early\n");
        assert_eq!(sclp.backend.line_mode_lines(), ["early"]);
    }

    #[test]
    fn busy_console_writes_are_retried() {
        let (mut sclp, _) = initialized(Config::default());
        sclp.backend.config.busy_calls = sclp.backend.busy_answers + 2;
        sclp.write_str_raw("x\n").unwrap();
        assert_eq!(sclp.backend.ascii_text(), "x\n");
    }
}
