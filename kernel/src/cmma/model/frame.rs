//! The per-frame state the host model keeps, packed into one byte.

use crate::cmma::essa::{ContentState, PageStateByte, UsageState};
use core::fmt;

/// Usage, content and no-DAT of one 4 KiB frame (reference §6.3 item 1).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameState {
    /// Block-usage state, set by the guest.
    pub usage: UsageState,
    /// Block-content state, owned by the host.
    pub content: ContentState,
    /// No-DAT (facility 147): set by ORC 7, cleared by ORC 1 and reset.
    pub nodat: bool,
}

impl FrameState {
    /// The state at power-on and after reset: stable, resident, DAT (§6.3 item 1).
    pub const INITIAL: FrameState = FrameState {
        usage: UsageState::Stable,
        content: ContentState::Resident,
        nodat: false,
    };

    /// Stable with DAT, whatever the content (resident, paged out, or zero as ORC 1
    /// leaves a discarded block under KVM, `pgste_perform_essa`): a frame the host keeps,
    /// as every frame outside the page pool must stay unless a test hints it.
    pub const fn is_plain_stable(&self) -> bool {
        matches!(self.usage, UsageState::Stable) && !self.nodat
    }

    /// Builds a state from its parts.
    pub const fn new(usage: UsageState, content: ContentState, nodat: bool) -> FrameState {
        FrameState {
            usage,
            content,
            nodat,
        }
    }

    /// Whether the combination can exist on a real host.
    ///
    /// Reference §1.4, the 2007 6/6 table: Up, Vp, Pp and Pz are impossible
    /// (Ur is dropped, Vr becomes Vz, Pr becomes Sp or Vz, and the host uses Vz
    /// instead of Pz).
    pub const fn is_legal(self) -> bool {
        !matches!(
            (self.usage, self.content),
            (UsageState::Unused, ContentState::Preserved)
                | (UsageState::Volatile, ContentState::Preserved)
                | (UsageState::PotVolatile, ContentState::Preserved)
                | (UsageState::PotVolatile, ContentState::Zero)
        )
    }

    /// The ESSA result byte for this state (§1.3); also the packed storage form.
    pub const fn to_byte(self) -> PageStateByte {
        PageStateByte::encode(self.usage, self.content, self.nodat)
    }

    /// Unpacks a byte written by [`FrameState::to_byte`].
    ///
    /// The model stores only bytes it produced, so the reserved content code
    /// cannot appear; it is mapped to `Zero` rather than panicking.
    pub const fn from_byte(byte: PageStateByte) -> FrameState {
        let content = match byte.content() {
            Some(content) => content,
            None => ContentState::Zero,
        };
        FrameState::new(byte.usage(), content, byte.nodat())
    }
}

impl fmt::Debug for FrameState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.to_byte(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_states() -> impl Iterator<Item = FrameState> {
        UsageState::ALL.into_iter().flat_map(|usage| {
            ContentState::ALL.into_iter().flat_map(move |content| {
                [false, true]
                    .into_iter()
                    .map(move |nodat| FrameState::new(usage, content, nodat))
            })
        })
    }

    #[test]
    fn exactly_eight_combinations_are_legal() {
        // §1.4: "all 12 combinations, of which 8 are valid".
        let legal: Vec<String> = all_states()
            .filter(|state| !state.nodat && state.is_legal())
            .map(|state| format!("{state:?}"))
            .collect();
        assert_eq!(legal, ["Sr", "Sp", "Sz", "Ur", "Uz", "Pr", "Vr", "Vz"]);
    }

    #[test]
    fn packing_round_trips() {
        for state in all_states() {
            assert_eq!(FrameState::from_byte(state.to_byte()), state);
        }
    }

    #[test]
    fn initial_state_is_stable_resident_with_dat() {
        assert_eq!(FrameState::INITIAL.to_byte().raw(), 0x00);
    }
}
