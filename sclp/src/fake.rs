//! A software SCLP for host tests.
//!
//! It checks every byte of every request against the architecture (independently of the
//! driver's encoders, from literal offsets) and answers the way the configuration says: normal
//! completion, busy, not operational, error response codes. Like z/VM and LPAR it completes
//! asynchronously: the answer is stored only inside `wait_for_completion`, never at SERVC time,
//! so a driver that polls the response code reads 0 and fails. It also fails the test when the
//! driver touches the SCCB while a request is in flight, waits without a request, or issues a
//! second request before the first completed.

use std::string::String;
use std::vec::Vec;

use crate::ebcdic::from_cp037;
use std::boxed::Box;

use crate::{Backend, Consoles, Error, Sccb, Sclp};

const WRITE_EVENT_MASK: u32 = 0x0078_0005;
const WRITE_EVENT_DATA: u32 = 0x0076_0005;
const READ_SCP_INFO: u32 = 0x0002_0001;
const READ_SCP_INFO_FORCED: u32 = 0x0012_0001;

/// How the fake answers.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    /// Response code of WRITE EVENT MASK.
    pub mask_response: u16,
    /// The SCLP receive mask WRITE EVENT MASK reports at byte 20 (the consoles on offer).
    pub receive_mask: u32,
    /// The SCLP send mask WRITE EVENT MASK reports at byte 24.
    pub send_mask: u32,
    /// Response code of WRITE EVENT DATA with an ASCII console event.
    pub ascii_response: u16,
    /// Response code of WRITE EVENT DATA with a message (line-mode) event.
    pub line_mode_response: u16,
    /// Number of SERVCs answered with condition code 2 before one is accepted.
    pub busy_calls: u32,
    /// Answer every SERVC with condition code 3.
    pub not_operational: bool,
    /// Service signals without an SCCB address delivered before each completion.
    pub unsolicited_signals: u32,
    /// Report completion with this interruption parameter instead of the SCCB address.
    pub foreign_parameter: Option<u32>,
    /// Whether READ SCP INFO FORCED is known (otherwise it answers 0x01F0).
    pub forced_read_info: bool,
    /// Response code of a READ SCP INFO the fake knows.
    pub read_info_response: u16,
    /// The READ SCP INFO answer page; its first 8 bytes (the header) are not copied.
    pub read_info: Vec<u8>,
    /// Bytes a READ SCP INFO SCCB must hold (QEMU: the fixed part plus 16 per possible
    /// CPU); a shorter one answers 0x0300. 0: one page is enough.
    pub read_info_required: usize,
    /// Whether the extended-length-SCCB facility is installed: a READ SCP INFO SCCB may then
    /// exceed a page, and one that asks for a variable-length response gets the required
    /// length with 0x0300. Without it an SCCB that crosses a page answers 0x0100.
    pub extended_length: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            read_info: std::vec![0; 4096],
            ..Self::DEFAULT
        }
    }
}

impl Config {
    /// The defaults, without a READ SCP INFO answer (so usable in constants).
    const DEFAULT: Self = Self {
        mask_response: 0x0020,
        // What QEMU 7.2 reports with both console devices.
        receive_mask: 0x4080_0040,
        send_mask: 0x9080_0048,
        ascii_response: 0x0020,
        line_mode_response: 0x0020,
        busy_calls: 0,
        not_operational: false,
        unsolicited_signals: 0,
        foreign_parameter: None,
        forced_read_info: true,
        read_info_response: 0x0010,
        read_info: Vec::new(),
        read_info_required: 0,
        extended_length: false,
    };
}

/// One accepted request as it was at SERVC time.
#[derive(Clone, Debug)]
pub(crate) struct Request {
    pub command: u32,
    /// The SCCB bytes, `header.length` of them.
    pub bytes: Vec<u8>,
}

/// What to store into the SCCB at completion.
#[derive(Clone, Debug)]
enum Answer {
    Mask {
        response: u16,
    },
    EventData {
        response: u16,
    },
    ReadInfo {
        response: u16,
        body: Option<Vec<u8>>,
        /// The length to store into the header (a variable-length response).
        length: Option<u16>,
    },
}

#[derive(Debug)]
struct InFlight {
    snapshot: Vec<u8>,
    answer: Answer,
    unsolicited_left: u32,
}

/// The fake SCLP; see the module documentation.
#[derive(Debug)]
pub(crate) struct FakeSclp {
    pub config: Config,
    /// Accepted requests, in order.
    pub requests: Vec<Request>,
    /// SERVCs answered busy.
    pub busy_answers: u32,
    /// Everything the ASCII console printed.
    pub ascii_output: Vec<u8>,
    /// Every line the line-mode console printed, as raw EBCDIC.
    pub line_mode_ebcdic: Vec<Vec<u8>>,
    in_flight: Option<InFlight>,
}

fn be16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

fn be32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

impl FakeSclp {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            ..Self::empty()
        }
    }

    /// A fake with the default answers and no READ SCP INFO answer.
    pub const fn empty() -> Self {
        Self {
            config: Config::DEFAULT,
            requests: Vec::new(),
            busy_answers: 0,
            ascii_output: Vec::new(),
            line_mode_ebcdic: Vec::new(),
            in_flight: None,
        }
    }

    /// The line-mode lines decoded from CP037.
    pub fn line_mode_lines(&self) -> Vec<String> {
        self.line_mode_ebcdic
            .iter()
            .map(|line| {
                line.iter()
                    .map(|&code| char::from(from_cp037(code)))
                    .collect()
            })
            .collect()
    }

    /// The ASCII console output as text.
    pub fn ascii_text(&self) -> String {
        String::from_utf8(self.ascii_output.clone()).expect("ASCII console got invalid UTF-8")
    }

    /// Checks a request and returns what to answer at completion.
    fn check_request(&mut self, command: u32, sccb: &[u8]) -> Answer {
        let length = usize::from(be16(sccb, 0));
        assert!(length >= 8, "SCCB length {length} below the 8-byte header");
        let read_info = matches!(command, READ_SCP_INFO | READ_SCP_INFO_FORCED);
        assert!(
            length <= 4096 || read_info,
            "only READ SCP INFO may use more than a page"
        );
        let page = &sccb[..length.max(4096)];
        assert_eq!(page[2], 0, "function code must be 0 (normal)");
        if read_info && length > 4096 {
            assert_eq!(
                &page[3..6],
                &[0, 0, 0x80],
                "an extended READ SCP INFO asks for a variable-length response"
            );
        } else {
            assert_eq!(&page[3..6], &[0, 0, 0], "control mask must be zero");
        }
        assert_eq!(be16(page, 6), 0, "response code must be zero in a request");
        assert!(
            page[length..].iter().all(|&b| b == 0),
            "bytes after the SCCB length are not zero (stale data)"
        );
        match command {
            WRITE_EVENT_MASK => {
                assert_eq!(length, 28, "WRITE EVENT MASK must be 28 bytes long");
                assert_eq!(
                    &page[8..28],
                    &[
                        0, 0, 0, 4, 0, 0, 0, 0, 0x40, 0, 0, 0x40, 0, 0, 0, 0, 0, 0, 0, 0
                    ],
                    "WRITE EVENT MASK: mask length 4, receive nothing, send ASCII + message"
                );
                Answer::Mask {
                    response: self.config.mask_response,
                }
            }
            WRITE_EVENT_DATA => {
                let response = self.check_event(&page[..length]);
                Answer::EventData { response }
            }
            READ_SCP_INFO | READ_SCP_INFO_FORCED => {
                assert!(
                    length == 4096 || length == 3 * 4096,
                    "READ SCP INFO needs a whole page, or three where the SCCB may be extended"
                );
                assert!(
                    page[8..].iter().all(|&b| b == 0),
                    "READ SCP INFO body must be zero"
                );
                let variable = page[5] & 0x80 != 0;
                if command == READ_SCP_INFO_FORCED && !self.config.forced_read_info {
                    Answer::ReadInfo {
                        response: 0x01f0,
                        body: None,
                        length: None,
                    }
                } else if length > 4096 && !self.config.extended_length {
                    Answer::ReadInfo {
                        response: 0x0100,
                        body: None,
                        length: None,
                    }
                } else if length < self.config.read_info_required {
                    let needed = u16::try_from(self.config.read_info_required).unwrap_or(u16::MAX);
                    Answer::ReadInfo {
                        response: 0x0300,
                        body: None,
                        length: (self.config.extended_length && variable).then_some(needed),
                    }
                } else {
                    Answer::ReadInfo {
                        response: self.config.read_info_response,
                        body: Some(self.config.read_info.clone()),
                        length: None,
                    }
                }
            }
            other => panic!("unexpected SCLP command {other:#010x}"),
        }
    }

    /// Checks one WRITE EVENT DATA SCCB holding exactly one event; prints it if the console
    /// accepts it and returns the console's response code.
    fn check_event(&mut self, sccb: &[u8]) -> u16 {
        let length = sccb.len();
        assert!(length >= 14, "WRITE EVENT DATA without an event buffer");
        assert_eq!(
            usize::from(be16(sccb, 8)),
            length - 8,
            "event buffer length != SCCB length - 8"
        );
        assert_eq!(
            &sccb[11..14],
            &[0, 0, 0],
            "event flags and reserved bytes must be zero"
        );
        match sccb[10] {
            0x1a => {
                let response = self.config.ascii_response;
                if response == 0x0020 {
                    self.ascii_output.extend_from_slice(&sccb[14..]);
                }
                response
            }
            0x02 => {
                let lines = check_message_event(sccb);
                let response = self.config.line_mode_response;
                if response == 0x0020 {
                    self.line_mode_ebcdic.extend(lines);
                }
                response
            }
            other => panic!("unexpected event type {other:#04x}"),
        }
    }
}

/// Checks MDB header, GO object and MTOs of a message event; returns the MTO texts.
fn check_message_event(sccb: &[u8]) -> Vec<Vec<u8>> {
    let length = sccb.len();
    assert!(
        length >= 82,
        "message event shorter than SCCB + event + MDB + GO headers"
    );
    assert_eq!(
        usize::from(be16(sccb, 14)),
        length - 14,
        "MDB length != event data length"
    );
    assert_eq!(be16(sccb, 16), 1, "MDB type");
    assert_eq!(be32(sccb, 18), 0xD4C4_C240, "MDB tag 'MDB '");
    assert_eq!(be32(sccb, 22), 1, "MDB revision");
    assert_eq!(be16(sccb, 26), 56, "GO length");
    assert_eq!(be16(sccb, 28), 1, "GO type");
    assert!(sccb[30..82].iter().all(|&b| b == 0), "GO body must be zero");
    let mut lines = Vec::new();
    let mut at = 82;
    assert!(at < length, "message event without an MTO");
    while at < length {
        let mto_length = usize::from(be16(sccb, at));
        assert!(mto_length >= 10, "MTO shorter than its header");
        assert!(at + mto_length <= length, "MTO overruns the event");
        assert_eq!(be16(sccb, at + 2), 4, "MTO type");
        assert_eq!(be16(sccb, at + 4), 0x1000, "MTO line type flags: end text");
        assert_eq!(
            &sccb[at + 6..at + 10],
            &[0, 0, 0, 0],
            "MTO alarm and reserved bytes"
        );
        let text = &sccb[at + 10..at + mto_length];
        assert!(
            text.iter().all(|&code| code >= 0x40),
            "control code in line-mode text"
        );
        lines.push(text.to_vec());
        at += mto_length;
    }
    lines
}

// SAFETY: the fake stores answers only into the SCCB it is handed, and only inside
// `wait_for_completion`, as the trait requires.
unsafe impl Backend for FakeSclp {
    fn service_call(&mut self, command: u32, sccb: &mut Sccb) -> u8 {
        assert!(
            self.in_flight.is_none(),
            "SERVC issued before the previous request completed"
        );
        assert_eq!(sccb.addr() % 8, 0, "SCCB not 8-byte aligned");
        if self.config.not_operational {
            return 3;
        }
        if self.busy_answers < self.config.busy_calls {
            self.busy_answers += 1;
            return 2;
        }
        let whole = sccb.as_extended_bytes().to_vec();
        let answer = self.check_request(command, &whole);
        let length = usize::from(be16(&whole, 0));
        self.requests.push(Request {
            command,
            bytes: whole[..length].to_vec(),
        });
        self.in_flight = Some(InFlight {
            snapshot: whole,
            answer,
            unsolicited_left: self.config.unsolicited_signals,
        });
        0
    }

    fn wait_for_completion(&mut self, sccb: &mut Sccb) -> u32 {
        let mut in_flight = self
            .in_flight
            .take()
            .expect("waited without a request in flight");
        assert!(
            sccb.as_extended_bytes()[..] == in_flight.snapshot[..],
            "driver changed the SCCB while the request was in flight"
        );
        if in_flight.unsolicited_left > 0 {
            in_flight.unsolicited_left -= 1;
            self.in_flight = Some(in_flight);
            return 1;
        }
        let page = sccb.as_bytes_mut();
        let response = match in_flight.answer {
            Answer::Mask { response } => {
                if response == 0x0020 {
                    page[20..24].copy_from_slice(&self.config.receive_mask.to_be_bytes());
                    page[24..28].copy_from_slice(&self.config.send_mask.to_be_bytes());
                }
                response
            }
            Answer::EventData { response } => {
                if response == 0x0020 {
                    page[11] = 0x80;
                }
                response
            }
            Answer::ReadInfo {
                response,
                body,
                length,
            } => {
                if let Some(body) = body {
                    page[8..].copy_from_slice(&body[8..]);
                }
                if let Some(length) = length {
                    page[0..2].copy_from_slice(&length.to_be_bytes());
                }
                response
            }
        };
        page[6..8].copy_from_slice(&response.to_be_bytes());
        self.config.foreign_parameter.unwrap_or(sccb.addr() as u32)
    }
}

/// A driver on a fake configured by `config`, boxed so its SCCB stays put.
pub(crate) fn sclp(config: Config) -> Box<Sclp<FakeSclp>> {
    Box::new(Sclp::new(FakeSclp::new(config)))
}

/// As [`sclp`], after `init`.
pub(crate) fn initialized(config: Config) -> (Box<Sclp<FakeSclp>>, Result<Consoles, Error>) {
    let mut sclp = sclp(config);
    // SAFETY: the fake backend is always functional and the box keeps the driver in place.
    let consoles = unsafe { sclp.init() };
    (sclp, consoles)
}
