//! Block-usage and block-content states and the ESSA result byte (reference §1.3, §1.4).

use super::Orc;
use core::fmt;

/// Block-usage state, set by the guest (reference §1.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UsageState {
    /// S: the contents matter; the host must preserve them.
    Stable,
    /// U: free; the host may discard at any time, references are not allowed.
    Unused,
    /// P: the host turns it into S (change bit set) or V (clean) when it reclaims.
    PotVolatile,
    /// V: the host may discard; touching a discarded one raises PIC 0x1A.
    Volatile,
}

impl UsageState {
    /// Every usage state, in encoding order.
    pub const ALL: [UsageState; 4] = [
        UsageState::Stable,
        UsageState::Unused,
        UsageState::PotVolatile,
        UsageState::Volatile,
    ];

    /// The unshifted 2-bit code of bits 60-61 (kvm-unit-tests `ESSA_USAGE_*`).
    pub const fn code(self) -> u8 {
        match self {
            UsageState::Stable => 0,
            UsageState::Unused => 1,
            UsageState::PotVolatile => 2,
            UsageState::Volatile => 3,
        }
    }

    /// The one-letter name the reference and the 2007 patch use (S, U, P, V).
    pub const fn letter(self) -> char {
        match self {
            UsageState::Stable => 'S',
            UsageState::Unused => 'U',
            UsageState::PotVolatile => 'P',
            UsageState::Volatile => 'V',
        }
    }

    const fn from_code(code: u8) -> UsageState {
        match code & 3 {
            0 => UsageState::Stable,
            1 => UsageState::Unused,
            2 => UsageState::PotVolatile,
            _ => UsageState::Volatile,
        }
    }
}

/// Block-content state, owned by the host (reference §1.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContentState {
    /// r: backed by a frame.
    Resident,
    /// p: kept elsewhere (paged out); a touch brings it back silently.
    Preserved,
    /// z: logically zero (discarded).
    Zero,
}

impl ContentState {
    /// Every content state, in encoding order.
    pub const ALL: [ContentState; 3] = [
        ContentState::Resident,
        ContentState::Preserved,
        ContentState::Zero,
    ];

    /// The 2-bit code of bits 62-63; 1 is reserved by the architecture.
    pub const fn code(self) -> u8 {
        match self {
            ContentState::Resident => 0,
            ContentState::Preserved => 2,
            ContentState::Zero => 3,
        }
    }

    /// The one-letter name the reference uses (r, p, z).
    pub const fn letter(self) -> char {
        match self {
            ContentState::Resident => 'r',
            ContentState::Preserved => 'p',
            ContentState::Zero => 'z',
        }
    }

    const fn from_code(code: u8) -> Option<ContentState> {
        match code & 3 {
            0 => Some(ContentState::Resident),
            2 => Some(ContentState::Preserved),
            3 => Some(ContentState::Zero),
            _ => None,
        }
    }
}

/// The state byte ESSA writes into R1: the block's state *before* the operation.
///
/// Layout (reference §1.3, MSB first): `{pad:2, nodat:1, exception:1, usage:2, content:2}`.
/// Only the low 8 bits of R1 are meaningful; callers mask before constructing.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PageStateByte(pub u8);

impl PageStateByte {
    /// Bit 58: no-DAT (no-translate), facility 147.
    pub const NODAT: u8 = 0x20;
    /// Bit 59: exception indication; the other fields are then meaningless.
    pub const EXCEPTION: u8 = 0x10;
    /// Bits 60-61: block-usage state.
    pub const USAGE_MASK: u8 = 0x0c;
    /// Bits 62-63: block-content state.
    pub const CONTENT_MASK: u8 = 0x03;

    /// The byte a host returns for a block in the given state (exception bit clear).
    pub const fn encode(usage: UsageState, content: ContentState, nodat: bool) -> PageStateByte {
        let nodat_bit = if nodat { Self::NODAT } else { 0 };
        PageStateByte(nodat_bit | (usage.code() << 2) | content.code())
    }

    /// The byte of an ESSA that could not process the block, as Linux 6.x KVM's
    /// `__do_essa` writes it: `res = orc ? 0x10 : 0; /* Exception Indication */`, so
    /// ORC 0 (extract) reports 0x00 and every other ORC 0x10.
    pub const fn exception_indication(orc: Orc) -> PageStateByte {
        match orc {
            Orc::GetState => PageStateByte(0),
            _ => PageStateByte(Self::EXCEPTION),
        }
    }

    /// The raw byte.
    pub const fn raw(self) -> u8 {
        self.0
    }

    /// Block-usage state (bits 60-61).
    pub const fn usage(self) -> UsageState {
        UsageState::from_code((self.0 & Self::USAGE_MASK) >> 2)
    }

    /// Block-content state (bits 62-63); `None` for the reserved code 1.
    pub const fn content(self) -> Option<ContentState> {
        ContentState::from_code(self.0 & Self::CONTENT_MASK)
    }

    /// No-DAT bit (bit 58).
    pub const fn nodat(self) -> bool {
        self.0 & Self::NODAT != 0
    }

    /// Exception indication (bit 59).
    pub const fn exception(self) -> bool {
        self.0 & Self::EXCEPTION != 0
    }

    /// Whether the block had been discarded: volatile and logically zero.
    ///
    /// This is the test `page_set_stable_if_present` applies to the old state
    /// returned by ORC 6 (reference §2, 2007 `page_discarded()`).
    pub const fn is_discarded(self) -> bool {
        !self.exception()
            && matches!(self.usage(), UsageState::Volatile)
            && matches!(self.content(), Some(ContentState::Zero))
    }
}

impl fmt::Display for PageStateByte {
    /// Reference notation: `Vz`, `Sr nodat`, `exception`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.exception() {
            return f.write_str("exception");
        }
        let content = self.content().map_or('?', ContentState::letter);
        write!(f, "{}{}", self.usage().letter(), content)?;
        if self.nodat() {
            f.write_str(" nodat")?;
        }
        Ok(())
    }
}

impl fmt::Debug for PageStateByte {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PageStateByte({:#04x}: {})", self.0, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn encoding_matches_the_linux_and_kvm_constants() {
        // §1.3: ESSA_USTATE_{STABLE 0x00, UNUSED 0x04, PVOLATILE 0x08, VOLATILE 0x0c},
        // ESSA_CSTATE_{RESIDENT 0, PRESERVED 2, ZERO 3}, no-DAT 0x20.
        let r = ContentState::Resident;
        assert_eq!(
            PageStateByte::encode(UsageState::Stable, r, false).raw(),
            0x00
        );
        assert_eq!(
            PageStateByte::encode(UsageState::Unused, r, false).raw(),
            0x04
        );
        assert_eq!(
            PageStateByte::encode(UsageState::PotVolatile, r, false).raw(),
            0x08
        );
        assert_eq!(
            PageStateByte::encode(UsageState::Volatile, r, false).raw(),
            0x0c
        );
        let s = UsageState::Stable;
        assert_eq!(
            PageStateByte::encode(s, ContentState::Preserved, false).raw(),
            0x02
        );
        assert_eq!(
            PageStateByte::encode(s, ContentState::Zero, false).raw(),
            0x03
        );
        assert_eq!(PageStateByte::encode(s, r, true).raw(), 0x20);
        assert_eq!(
            PageStateByte::exception_indication(Orc::SetVolatile).raw(),
            0x10
        );
        assert_eq!(
            PageStateByte::exception_indication(Orc::GetState).raw(),
            0x00
        );
    }

    #[test]
    fn decode_inverts_encode_for_every_state() {
        for usage in UsageState::ALL {
            for content in ContentState::ALL {
                for nodat in [false, true] {
                    let byte = PageStateByte::encode(usage, content, nodat);
                    assert_eq!(byte.usage(), usage);
                    assert_eq!(byte.content(), Some(content));
                    assert_eq!(byte.nodat(), nodat);
                    assert!(!byte.exception());
                }
            }
        }
    }

    #[test]
    fn reserved_content_code_decodes_to_none() {
        assert_eq!(PageStateByte(0x01).content(), None);
    }

    #[test]
    fn exception_bit_is_decoded() {
        assert!(PageStateByte(0x10).exception());
        assert!(!PageStateByte(0x2f).exception());
    }

    #[test]
    fn only_volatile_zero_counts_as_discarded() {
        for usage in UsageState::ALL {
            for content in ContentState::ALL {
                for nodat in [false, true] {
                    let byte = PageStateByte::encode(usage, content, nodat);
                    let expected = usage == UsageState::Volatile && content == ContentState::Zero;
                    assert_eq!(byte.is_discarded(), expected, "{byte:?}");
                }
            }
        }
        // An exception result says nothing about the block.
        assert!(!PageStateByte(0x1f).is_discarded());
    }

    #[test]
    fn display_uses_reference_notation() {
        let vz = PageStateByte::encode(UsageState::Volatile, ContentState::Zero, false);
        assert_eq!(format!("{vz}"), "Vz");
        let sr = PageStateByte::encode(UsageState::Stable, ContentState::Resident, true);
        assert_eq!(format!("{sr}"), "Sr nodat");
        assert_eq!(format!("{}", PageStateByte(0x10)), "exception");
        assert_eq!(
            format!("{:?}", PageStateByte(0x09)),
            "PageStateByte(0x09: P?)"
        );
    }
}
