//! The raw SCLP layer: one request at a time through the driver's own SCCB, with the busy retry
//! and the wait for the completion interrupt; plus WRITE EVENT MASK, which selects the consoles.

use core::fmt;

use crate::console::{Held, LineBuffer};
use crate::spec::{
    INTERRUPTION_PARAMETER_FLAGS, WriteEventMask, command, condition_code, response,
};
use crate::{Backend, Consoles, Error, Sccb};

/// How often a SERVC that answers "busy" (condition code 2) is reissued before the request
/// fails with [`Error::Busy`].
pub const MAX_BUSY_RETRIES: u32 = 100_000;

/// How many service signals that carry no SCCB address (event-pending notifications) are
/// tolerated while waiting for our completion before giving up.
pub const MAX_UNSOLICITED_SIGNALS: u32 = 64;

/// An SCLP driver and console: the backend, its own SCCB and the console state.
pub struct Sclp<B: Backend> {
    // First, so the 4 KiB alignment costs no padding before it.
    pub(crate) sccb: Sccb,
    pub(crate) backend: B,
    pub(crate) consoles: Consoles,
    pub(crate) crlf: bool,
    pub(crate) line: LineBuffer,
    pub(crate) held: Held,
    pub(crate) holding: bool,
}

impl<B: Backend> Sclp<B> {
    /// A driver that has not yet announced its event mask. Until [`init`](Self::init) it tries
    /// both consoles (QEMU prints without a WRITE EVENT MASK).
    pub const fn new(backend: B) -> Self {
        Self {
            sccb: Sccb::new(),
            backend,
            consoles: Consoles::BOTH,
            crlf: false,
            line: LineBuffer::new(),
            held: Held::new(),
            holding: false,
        }
    }

    /// WRITE EVENT MASK (length from the struct: 28), then picks the consoles from the masks the
    /// SCLP reports (ASCII 0x1a and/or line mode 0x02). An SCLP that reports neither gets both
    /// tried. On error the console set is left as it was.
    ///
    /// # Safety
    /// The backend must be functional (interrupt infrastructure set up) and the Sclp must not
    /// move afterwards; it must lie where the SCLP can address its SCCB (below 2 GiB, outside the
    /// first 8 KiB and the prefix area).
    pub unsafe fn init(&mut self) -> Result<Consoles, Error> {
        self.sccb.clear();
        WriteEventMask::request(0, Consoles::BOTH.send_mask()).encode(self.sccb.as_bytes_mut());
        match self.execute(command::WRITE_EVENT_MASK)? {
            response::NORMAL_COMPLETION => {
                let answer = WriteEventMask::decode(self.sccb.as_bytes());
                self.consoles = Consoles::from_sclp_receive_mask(answer.sclp_receive_mask);
                Ok(self.consoles)
            }
            code => Err(Error::Response(code)),
        }
    }

    /// The consoles output currently goes to.
    pub fn consoles(&self) -> Consoles {
        self.consoles
    }

    /// Issues `command` for the request prepared in the SCCB and waits for its completion;
    /// returns the response code. Busy is retried up to [`MAX_BUSY_RETRIES`] times.
    pub(crate) fn execute(&mut self, command: u32) -> Result<u16, Error> {
        let mut busy = 0;
        loop {
            match self.backend.service_call(command, &mut self.sccb) {
                condition_code::ACCEPTED => break,
                condition_code::BUSY if busy < MAX_BUSY_RETRIES => {
                    busy += 1;
                    core::hint::spin_loop();
                }
                condition_code::BUSY => return Err(Error::Busy),
                condition_code::NOT_OPERATIONAL => return Err(Error::NotOperational),
                cc => return Err(Error::ConditionCode(cc)),
            }
        }
        self.await_completion()?;
        Ok(self.sccb.header().response_code)
    }

    /// Waits for the service signal that names our SCCB. Signals without an address only say
    /// that an event is pending (for example console input) and are skipped.
    fn await_completion(&mut self) -> Result<(), Error> {
        // The SCCB lies below 2 GiB, so its address fits the 32-bit parameter.
        let own = self.sccb.addr() as u32;
        let mut parameter = 0;
        for _ in 0..=MAX_UNSOLICITED_SIGNALS {
            parameter = self.backend.wait_for_completion(&mut self.sccb);
            match parameter & !INTERRUPTION_PARAMETER_FLAGS {
                0 => continue,
                address if address == own => return Ok(()),
                _ => return Err(Error::UnexpectedCompletion(parameter)),
            }
        }
        Err(Error::UnexpectedCompletion(parameter))
    }
}

impl<B: Backend> fmt::Debug for Sclp<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sclp")
            .field("sccb", &self.sccb)
            .field("consoles", &self.consoles)
            .field("crlf", &self.crlf)
            .field("pending", &self.line.len())
            .field("held", &self.held.pieces_held())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{Config, FakeSclp, initialized, sclp};

    #[test]
    fn init_announces_the_28_byte_mask_and_takes_the_offered_consoles() {
        let (sclp, consoles) = initialized(Config::default());
        assert_eq!(consoles, Ok(Consoles::BOTH));
        let requests = &sclp.backend.requests;
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].command, 0x0078_0005);
        assert_eq!(
            requests[0].bytes,
            [
                0x00, 0x1C, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // length 28, fc 0, rc 0
                0x00, 0x00, 0x00, 0x04, // reserved, mask length 4
                0x00, 0x00, 0x00, 0x00, // we receive nothing
                0x40, 0x00, 0x00, 0x40, // we send message (0x02) and ASCII (0x1a) events
                0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // the SCLP's masks
            ]
        );
    }

    #[test]
    fn init_keeps_only_the_console_the_sclp_offers() {
        let ascii_only = Config {
            receive_mask: 0x0000_0040,
            ..Config::default()
        };
        let (_, consoles) = initialized(ascii_only);
        assert_eq!(
            consoles,
            Ok(Consoles {
                ascii: true,
                line_mode: false
            })
        );

        let line_mode_only = Config {
            receive_mask: 0x4000_0000,
            ..Config::default()
        };
        let (sclp, consoles) = initialized(line_mode_only);
        assert_eq!(
            consoles,
            Ok(Consoles {
                ascii: false,
                line_mode: true
            })
        );
        assert_eq!(
            sclp.consoles(),
            Consoles {
                ascii: false,
                line_mode: true
            }
        );
    }

    #[test]
    fn init_reads_the_consoles_from_byte_20_not_from_the_sclp_send_mask() {
        // The SCLP send mask (byte 24) lists ASCII input but no message event: were it read as
        // the receive mask, the line-mode console would be lost and the ASCII one kept.
        let config = Config {
            receive_mask: 0x4000_0000,
            send_mask: 0x9080_0048,
            ..Config::default()
        };
        let (_, consoles) = initialized(config);
        assert_eq!(
            consoles,
            Ok(Consoles {
                ascii: false,
                line_mode: true
            })
        );
    }

    #[test]
    fn init_with_an_empty_mask_report_tries_both_consoles() {
        let (sclp, consoles) = initialized(Config {
            receive_mask: 0,
            ..Config::default()
        });
        assert_eq!(consoles, Ok(Consoles::BOTH));
        assert_eq!(sclp.consoles(), Consoles::BOTH);
    }

    #[test]
    fn init_reports_an_error_response_and_leaves_the_consoles() {
        for code in [0x01f0, 0x0300, 0x74f0] {
            let (sclp, consoles) = initialized(Config {
                mask_response: code,
                ..Config::default()
            });
            assert_eq!(consoles, Err(Error::Response(code)));
            assert_eq!(sclp.consoles(), Consoles::BOTH);
        }
    }

    #[test]
    fn busy_is_retried_until_accepted() {
        let (sclp, consoles) = initialized(Config {
            busy_calls: 5,
            ..Config::default()
        });
        assert_eq!(consoles, Ok(Consoles::BOTH));
        assert_eq!(sclp.backend.busy_answers, 5);
        assert_eq!(sclp.backend.requests.len(), 1);
    }

    #[test]
    fn busy_gives_up_after_the_retry_limit() {
        let (sclp, consoles) = initialized(Config {
            busy_calls: MAX_BUSY_RETRIES + 1,
            ..Config::default()
        });
        assert_eq!(consoles, Err(Error::Busy));
        assert_eq!(sclp.backend.busy_answers, MAX_BUSY_RETRIES + 1);
        assert!(sclp.backend.requests.is_empty());
    }

    #[test]
    fn not_operational_is_an_error() {
        let (mut sclp, consoles) = initialized(Config {
            not_operational: true,
            ..Config::default()
        });
        assert_eq!(consoles, Err(Error::NotOperational));
        assert_eq!(sclp.write_str_raw("x\n"), Err(Error::NotOperational));
        assert_eq!(sclp.read_scp_info(), Err(Error::NotOperational));
    }

    #[test]
    fn unsolicited_service_signals_are_skipped() {
        let (sclp, consoles) = initialized(Config {
            unsolicited_signals: 3,
            ..Config::default()
        });
        assert_eq!(consoles, Ok(Consoles::BOTH));
        assert_eq!(sclp.backend.requests.len(), 1);
    }

    #[test]
    fn only_unsolicited_signals_end_in_an_error() {
        let config = Config {
            unsolicited_signals: MAX_UNSOLICITED_SIGNALS + 1,
            ..Config::default()
        };
        let (_, consoles) = initialized(config);
        assert_eq!(consoles, Err(Error::UnexpectedCompletion(1)));
    }

    #[test]
    fn completion_for_another_sccb_is_an_error() {
        let config = Config {
            foreign_parameter: Some(0x0123_4000),
            ..Config::default()
        };
        let (_, consoles) = initialized(config);
        assert_eq!(consoles, Err(Error::UnexpectedCompletion(0x0123_4000)));
    }

    #[test]
    fn the_fake_answers_only_at_completion_so_polling_would_fail() {
        let mut fake = FakeSclp::new(Config::default());
        let mut sccb = Sccb::new();
        WriteEventMask::request(0, Consoles::BOTH.send_mask()).encode(sccb.as_bytes_mut());
        assert_eq!(fake.service_call(0x0078_0005, &mut sccb), 0);
        assert_eq!(
            sccb.header().response_code,
            0,
            "answer visible before the interrupt"
        );
        assert_eq!(fake.wait_for_completion(&mut sccb), sccb.addr() as u32);
        assert_eq!(sccb.header().response_code, 0x0020);
    }

    #[test]
    fn new_is_usable_in_a_static_initializer() {
        static CONSOLE: Sclp<FakeSclp> = Sclp::new(FakeSclp::empty());
        assert_eq!(CONSOLE.consoles(), Consoles::BOTH);
        let _ = sclp(Config::default());
    }
}
