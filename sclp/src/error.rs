//! What can go wrong talking to the SCLP.

use core::fmt;

/// A failed SCLP request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// SERVC kept answering condition code 2 (busy) for
    /// [`MAX_BUSY_RETRIES`](crate::MAX_BUSY_RETRIES) attempts.
    Busy,
    /// SERVC answered condition code 3: the SCLP is not operational.
    NotOperational,
    /// SERVC answered a condition code the architecture does not define for it.
    ConditionCode(u8),
    /// The request completed with this unexpected response code (see
    /// [`spec::response`](crate::spec::response)).
    Response(u16),
    /// A service signal named another SCCB than ours (the interruption parameter), or only
    /// unsolicited signals arrived.
    UnexpectedCompletion(u32),
    /// Every console has been dropped (each refused output), so output has nowhere to go.
    NoConsole,
    /// READ SCP INFO completed but reported no storage or no CPU.
    InvalidScpInfo,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Busy => write!(f, "SCLP busy after {} attempts", crate::MAX_BUSY_RETRIES),
            Self::NotOperational => f.write_str("SCLP not operational (condition code 3)"),
            Self::ConditionCode(cc) => write!(f, "SERVC gave unexpected condition code {cc}"),
            Self::Response(code) => write!(f, "SCLP response code {code:#06x}"),
            Self::UnexpectedCompletion(parameter) => {
                write!(f, "unexpected service signal, parameter {parameter:#010x}")
            }
            Self::NoConsole => f.write_str("no SCLP console accepts output"),
            Self::InvalidScpInfo => f.write_str("READ SCP INFO reported no storage or no CPU"),
        }
    }
}

impl core::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn display_names_the_response_code_in_hex() {
        assert_eq!(
            Error::Response(0x05f0).to_string(),
            "SCLP response code 0x05f0"
        );
        assert_eq!(
            Error::NotOperational.to_string(),
            "SCLP not operational (condition code 3)"
        );
    }
}
