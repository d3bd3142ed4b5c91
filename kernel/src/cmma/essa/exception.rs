//! Program exceptions ESSA can raise (reference §1.1) and the discard fault (§2).

use core::fmt;

/// A program exception recognized for an ESSA or for an access to a discarded block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProgramException {
    /// 0x0001: ESSA not available (QEMU TCG, CMMA not enabled for the VM).
    Operation,
    /// 0x0002: ESSA in problem state.
    Privileged,
    /// 0x0005: address beyond the configuration (KVM before 2026), or a strict
    /// host's answer to a reference to an unused, discarded block.
    Addressing,
    /// 0x0006: ORC above 7, or ORC 7 without facility 147.
    Specification,
    /// 0x001A: reference to a discarded (volatile, logically zero) block.
    BlockVolatility,
}

impl ProgramException {
    /// The program-interruption code the machine stores at lowcore 0x8E.
    pub const fn code(self) -> u16 {
        match self {
            ProgramException::Operation => 0x0001,
            ProgramException::Privileged => 0x0002,
            ProgramException::Addressing => 0x0005,
            ProgramException::Specification => 0x0006,
            ProgramException::BlockVolatility => 0x001a,
        }
    }
}

impl From<ProgramException> for u16 {
    fn from(exception: ProgramException) -> u16 {
        exception.code()
    }
}

impl fmt::Display for ProgramException {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            ProgramException::Operation => "operation",
            ProgramException::Privileged => "privileged-operation",
            ProgramException::Addressing => "addressing",
            ProgramException::Specification => "specification",
            ProgramException::BlockVolatility => "block-volatility",
        };
        write!(f, "{name} exception ({:#06x})", self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn interruption_codes_are_architected() {
        assert_eq!(ProgramException::Operation.code(), 0x01);
        assert_eq!(ProgramException::Privileged.code(), 0x02);
        assert_eq!(ProgramException::Addressing.code(), 0x05);
        assert_eq!(ProgramException::Specification.code(), 0x06);
        assert_eq!(u16::from(ProgramException::BlockVolatility), 0x1a);
    }

    #[test]
    fn display_names_the_exception_and_code() {
        let text = format!("{}", ProgramException::BlockVolatility);
        assert_eq!(text, "block-volatility exception (0x001a)");
    }
}
