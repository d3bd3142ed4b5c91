//! Which SCLP consoles output goes to.

use crate::spec::{event_mask, event_type};

/// The set of consoles written: the ASCII (VT220) console and/or the line-mode (EBCDIC
/// message) console.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Consoles {
    /// The ASCII console, event type 0x1a.
    pub ascii: bool,
    /// The line-mode console, event type 0x02.
    pub line_mode: bool,
}

impl Consoles {
    /// No console.
    pub const NONE: Self = Self {
        ascii: false,
        line_mode: false,
    };
    /// Both consoles.
    pub const BOTH: Self = Self {
        ascii: true,
        line_mode: true,
    };

    /// The consoles an SCLP receive mask (from WRITE EVENT MASK) offers. A mask that offers
    /// neither console (an SCLP that answers WRITE EVENT MASK without filling in its masks) gives
    /// both, so that each is tried and dropped if it refuses output.
    pub const fn from_sclp_receive_mask(mask: u32) -> Self {
        let offered = Self {
            ascii: mask & event_mask(event_type::ASCII_CONSOLE) != 0,
            line_mode: mask & event_mask(event_type::MESSAGE) != 0,
        };
        if offered.is_empty() {
            Self::BOTH
        } else {
            offered
        }
    }

    /// The event mask we send with: one bit per console in the set.
    pub const fn send_mask(self) -> u32 {
        let ascii = if self.ascii {
            event_mask(event_type::ASCII_CONSOLE)
        } else {
            0
        };
        let line_mode = if self.line_mode {
            event_mask(event_type::MESSAGE)
        } else {
            0
        };
        ascii | line_mode
    }

    /// True if the set holds no console.
    pub const fn is_empty(self) -> bool {
        !self.ascii && !self.line_mode
    }
}

/// In words, for the boot banner: `ASCII`, `line-mode`, `ASCII and line-mode` or `none`.
impl core::fmt::Display for Consoles {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match (self.ascii, self.line_mode) {
            (true, true) => "ASCII and line-mode",
            (true, false) => "ASCII",
            (false, true) => "line-mode",
            (false, false) => "none",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receive_mask_selects_the_offered_consoles() {
        assert_eq!(
            Consoles::from_sclp_receive_mask(0x0000_0040),
            Consoles {
                ascii: true,
                line_mode: false
            }
        );
        assert_eq!(
            Consoles::from_sclp_receive_mask(0x4000_0000),
            Consoles {
                ascii: false,
                line_mode: true
            }
        );
        assert_eq!(
            Consoles::from_sclp_receive_mask(0x4000_0048),
            Consoles::BOTH
        );
    }

    #[test]
    fn mask_without_a_console_falls_back_to_trying_both() {
        assert_eq!(Consoles::from_sclp_receive_mask(0), Consoles::BOTH);
        assert_eq!(
            Consoles::from_sclp_receive_mask(0x0000_0008),
            Consoles::BOTH
        );
    }

    #[test]
    fn send_mask_has_one_bit_per_console() {
        assert_eq!(Consoles::BOTH.send_mask(), 0x4000_0040);
        assert_eq!(Consoles::NONE.send_mask(), 0);
        assert_eq!(
            Consoles {
                ascii: true,
                line_mode: false
            }
            .send_mask(),
            0x40
        );
    }

    #[test]
    fn consoles_read_as_words() {
        assert_eq!(Consoles::BOTH.to_string(), "ASCII and line-mode");
        assert_eq!(
            Consoles {
                ascii: true,
                line_mode: false
            }
            .to_string(),
            "ASCII"
        );
        assert_eq!(
            Consoles {
                ascii: false,
                line_mode: true
            }
            .to_string(),
            "line-mode"
        );
        assert_eq!(Consoles::NONE.to_string(), "none");
    }
}
