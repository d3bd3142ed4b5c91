//! ESSA operation request codes (the M3 field), reference §1.2.

use core::fmt;

/// An ESSA operation request code (ORC), the M3 field of `ESSA R1,R2,M3`.
///
/// Names follow Linux (2017+); the effects are listed in reference §1.2.
/// ORC 0-6 are always valid, ORC 7 needs facility 147 (reference §1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Orc {
    /// Extract the state only.
    GetState = 0,
    /// Usage := stable; also clears no-DAT.
    SetStable = 1,
    /// Usage := unused; a preserved block is discarded at once.
    SetUnused = 2,
    /// Usage := volatile; a preserved block is discarded at once.
    SetVolatile = 3,
    /// Resident -> potentially volatile; the host decides later by the change bit.
    SetPotVolatile = 4,
    /// Usage := stable and make the block resident.
    SetStableResident = 5,
    /// Usage := stable only if the block is resident (2007: "stable if not discarded").
    SetStableIfResident = 6,
    /// Usage := stable and no-DAT := 1 (facility 147).
    SetStableNodat = 7,
}

impl Orc {
    /// Every valid ORC, in code order.
    pub const ALL: [Orc; 8] = [
        Orc::GetState,
        Orc::SetStable,
        Orc::SetUnused,
        Orc::SetVolatile,
        Orc::SetPotVolatile,
        Orc::SetStableResident,
        Orc::SetStableIfResident,
        Orc::SetStableNodat,
    ];

    /// The 4-bit M3 value.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// Whether this ORC needs facility 147 (ESSA enhancement, no-translate).
    pub const fn needs_facility_147(self) -> bool {
        matches!(self, Orc::SetStableNodat)
    }
}

/// A value that is not an architected ORC (anything above 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidOrc(pub u8);

impl fmt::Display for InvalidOrc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid ESSA operation request code {}", self.0)
    }
}

impl TryFrom<u8> for Orc {
    type Error = InvalidOrc;

    fn try_from(code: u8) -> Result<Self, Self::Error> {
        Orc::ALL
            .get(usize::from(code))
            .copied()
            .ok_or(InvalidOrc(code))
    }
}

impl From<Orc> for u8 {
    fn from(orc: Orc) -> u8 {
        orc.code()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_the_architecture() {
        // §1.2 table: ORC numbers as Linux and KVM use them.
        let expected = [
            (0, Orc::GetState),
            (1, Orc::SetStable),
            (2, Orc::SetUnused),
            (3, Orc::SetVolatile),
            (4, Orc::SetPotVolatile),
            (5, Orc::SetStableResident),
            (6, Orc::SetStableIfResident),
            (7, Orc::SetStableNodat),
        ];
        for (code, orc) in expected {
            assert_eq!(Orc::try_from(code), Ok(orc));
            assert_eq!(orc.code(), code);
            assert_eq!(u8::from(orc), code);
        }
    }

    #[test]
    fn codes_above_seven_are_rejected() {
        for code in 8..=u8::MAX {
            assert_eq!(Orc::try_from(code), Err(InvalidOrc(code)));
        }
    }

    #[test]
    fn only_orc_seven_needs_facility_147() {
        let needing: Vec<Orc> = Orc::ALL
            .into_iter()
            .filter(|orc| orc.needs_facility_147())
            .collect();
        assert_eq!(needing, [Orc::SetStableNodat]);
    }
}
