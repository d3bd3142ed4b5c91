//! ESSA as the host model executes it: operand checks in architected order,
//! then the ORC transition (reference §1.1, §1.2, §6.3 item 2).

use super::transition::{Effect, essa_transition};
use super::{FRAME_SHIFT, HostMemory, HostModel};
use crate::cmma::essa::{Orc, PageStateByte, ProgramException};

/// What an ESSA names, as the program-interruption glue decodes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EssaContext {
    /// The M3 field as found in the instruction (0-15).
    pub orc_raw: u8,
    /// The R2 contents: absolute address of the block; bits 52-63 are ignored.
    pub addr: u64,
    /// The old PSW was in problem state.
    pub problem_state: bool,
    /// Facility 147 (ESSA no-translate) is installed, making ORC 7 valid.
    pub facility_147: bool,
}

/// What ESSA does with an address beyond the configuration (§1.1, §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BadAddress {
    /// Addressing exception 0x05, as KVM does up to Linux 6.x.
    #[default]
    Addressing,
    /// Result byte 0x10 (exception indication), block untouched, as the 2026
    /// KVM rewrite (`dat_perform_essa`) does.
    ExceptionIndication,
}

impl HostModel {
    /// Executes one ESSA and returns the block's *old* state byte (§1.3).
    ///
    /// Checks in KVM's order (§1.1, §6.3 item 2): problem state ->
    /// privileged-operation; ORC above 7, or 7 without facility 147 ->
    /// specification; address beyond memory -> per [`BadAddress`]. A program
    /// exception leaves every frame untouched.
    pub fn essa(
        &mut self,
        mem: &mut impl HostMemory,
        ctx: EssaContext,
    ) -> Result<PageStateByte, ProgramException> {
        debug_assert_eq!(
            mem.frames(),
            self.frames(),
            "model and backend disagree on memory size"
        );
        let result = self.checked_essa(mem, ctx);
        match result {
            Ok(byte) if !byte.exception() => {}
            _ => self.counters.exceptions += 1,
        }
        result
    }

    fn checked_essa(
        &mut self,
        mem: &mut impl HostMemory,
        ctx: EssaContext,
    ) -> Result<PageStateByte, ProgramException> {
        if ctx.problem_state {
            return Err(ProgramException::Privileged);
        }
        let orc = Orc::try_from(ctx.orc_raw).map_err(|_| ProgramException::Specification)?;
        if orc.needs_facility_147() && !ctx.facility_147 {
            return Err(ProgramException::Specification);
        }
        let pfn = ctx.addr >> FRAME_SHIFT;
        let Some(old) = self.frame_state(pfn) else {
            return match self.options.bad_address {
                BadAddress::Addressing => Err(ProgramException::Addressing),
                BadAddress::ExceptionIndication => Ok(PageStateByte::exception_indication()),
            };
        };
        let mut transition = essa_transition(old, orc, || mem.change_bit(pfn));
        if self.options.preserve_change_bit && transition.effect == Effect::ClearChangeBit {
            transition.effect = Effect::None;
        }
        self.counters.essa_by_orc[usize::from(orc.code())] += 1;
        self.commit(mem, pfn, transition);
        Ok(old.to_byte())
    }
}

#[cfg(test)]
mod tests {
    use super::super::fake::{Call, FakeMemory};
    use super::super::{FrameState, ModelOptions};
    use super::*;
    use crate::cmma::essa::{ContentState, UsageState};

    const FRAMES: u64 = 4;
    const PFN: u64 = 2;

    fn parse(name: &str) -> FrameState {
        let mut letters = name.chars();
        let usage = match letters.next() {
            Some('S') => UsageState::Stable,
            Some('U') => UsageState::Unused,
            Some('P') => UsageState::PotVolatile,
            Some('V') => UsageState::Volatile,
            other => panic!("bad usage letter {other:?} in {name}"),
        };
        let content = match letters.next() {
            Some('r') => ContentState::Resident,
            Some('p') => ContentState::Preserved,
            Some('z') => ContentState::Zero,
            other => panic!("bad content letter {other:?} in {name}"),
        };
        FrameState::new(usage, content, false)
    }

    fn ctx(orc_raw: u8, pfn: u64) -> EssaContext {
        EssaContext {
            orc_raw,
            // Low bits set on purpose: ESSA ignores bits 52-63 (§1.1).
            addr: (pfn << FRAME_SHIFT) | 0xabc,
            problem_state: false,
            facility_147: true,
        }
    }

    fn run(model: &mut HostModel, mem: &mut FakeMemory, orc: u8) -> PageStateByte {
        model.essa(mem, ctx(orc, PFN)).expect("ESSA succeeds")
    }

    /// Drives frame `PFN` into `target` with nothing but ESSA and host reclaim,
    /// proving the state reachable, then forgets the calls it caused.
    fn reach(target: FrameState) -> (HostModel, FakeMemory) {
        let mut model = HostModel::new(FRAMES, ModelOptions::default());
        let mut mem = FakeMemory::new(FRAMES);
        run(&mut model, &mut mem, if target.nodat { 7 } else { 1 });
        let reclaim = |model: &mut HostModel, mem: &mut FakeMemory| {
            model.reclaim(mem, PFN);
        };
        match (target.usage, target.content) {
            (UsageState::Stable, ContentState::Resident) => {}
            (UsageState::Stable, ContentState::Preserved) => reclaim(&mut model, &mut mem),
            (UsageState::Unused, ContentState::Resident) => drop(run(&mut model, &mut mem, 2)),
            (UsageState::Unused, ContentState::Zero) => {
                run(&mut model, &mut mem, 2);
                reclaim(&mut model, &mut mem);
            }
            (UsageState::Volatile, ContentState::Resident) => drop(run(&mut model, &mut mem, 3)),
            (UsageState::Volatile, ContentState::Zero) => {
                run(&mut model, &mut mem, 3);
                reclaim(&mut model, &mut mem);
            }
            (UsageState::PotVolatile, ContentState::Resident) => drop(run(&mut model, &mut mem, 4)),
            other => panic!("no route to {other:?}"),
        }
        assert_eq!(model.frame_state(PFN), Some(target), "reaching {target:?}");
        mem.calls.clear();
        (model, mem)
    }

    /// One row of the ORC table: from a state, with the change bit, an ORC gives
    /// a new state (nodat written separately) and the backend calls.
    struct Row {
        from: &'static str,
        changed: bool,
        orc: u8,
        to: &'static str,
        calls: &'static [Call],
    }

    const fn row(from: &'static str, orc: u8, to: &'static str, calls: &'static [Call]) -> Row {
        Row {
            from,
            changed: false,
            orc,
            to,
            calls,
        }
    }

    const fn dirty(from: &'static str, orc: u8, to: &'static str, calls: &'static [Call]) -> Row {
        Row {
            from,
            changed: true,
            orc,
            to,
            calls,
        }
    }

    const D: &[Call] = &[Call::Discard(PFN)];
    const Z: &[Call] = &[Call::RestoreZeroed(PFN)];
    const C: &[Call] = &[Call::ClearChangeBit(PFN)];
    const N: &[Call] = &[];

    /// Every ORC 0-7 from every reachable state. Sources: §1.2 (ORC effects,
    /// KVM's ORC 4 detail), §1.4 (guest transitions: "any resident state changes
    /// usage in place; Uz, Sz and Vz change usage in place, except that setting
    /// P on a z page yields Vz; Sp becomes Uz or Vz when the guest sets U or V"),
    /// §6.3 item 2, §6.3 item 4 (clear C on entering P), and the module rule
    /// that a zero frame made stable gets a zero-filled frame (HPMA, §5.2).
    const TABLE: &[Row] = &[
        // ORC 0: extract only.
        row("Sr", 0, "Sr", N),
        row("Sp", 0, "Sp", N),
        row("Ur", 0, "Ur", N),
        row("Uz", 0, "Uz", N),
        row("Vr", 0, "Vr", N),
        row("Vz", 0, "Vz", N),
        row("Pr", 0, "Pr", N),
        // ORC 1: usage := S.
        row("Sr", 1, "Sr", N),
        row("Sp", 1, "Sp", N),
        row("Ur", 1, "Sr", N),
        row("Uz", 1, "Sr", Z),
        row("Vr", 1, "Sr", N),
        row("Vz", 1, "Sr", Z),
        row("Pr", 1, "Sr", N),
        // ORC 2: usage := U; a preserved copy is dropped now.
        row("Sr", 2, "Ur", N),
        row("Sp", 2, "Uz", D),
        row("Ur", 2, "Ur", N),
        row("Uz", 2, "Uz", N),
        row("Vr", 2, "Ur", N),
        row("Vz", 2, "Uz", N),
        row("Pr", 2, "Ur", N),
        // ORC 3: usage := V; a preserved copy is dropped now.
        row("Sr", 3, "Vr", N),
        row("Sp", 3, "Vz", D),
        row("Ur", 3, "Vr", N),
        row("Uz", 3, "Vz", N),
        row("Vr", 3, "Vr", N),
        row("Vz", 3, "Vz", N),
        row("Pr", 3, "Vr", N),
        // ORC 4: resident -> P (clear C), zero -> V, preserved -> C ? S : Vz.
        row("Sr", 4, "Pr", C),
        row("Sp", 4, "Vz", D),
        dirty("Sp", 4, "Sp", N),
        row("Ur", 4, "Pr", C),
        row("Uz", 4, "Vz", N),
        row("Vr", 4, "Pr", C),
        row("Vz", 4, "Vz", N),
        row("Pr", 4, "Pr", C),
        // ORC 5: usage := S and make resident.
        row("Sr", 5, "Sr", N),
        row("Sp", 5, "Sr", N),
        row("Ur", 5, "Sr", N),
        row("Uz", 5, "Sr", Z),
        row("Vr", 5, "Sr", N),
        row("Vz", 5, "Sr", Z),
        row("Pr", 5, "Sr", N),
        // ORC 6: usage := S only if resident.
        row("Sr", 6, "Sr", N),
        row("Sp", 6, "Sp", N),
        row("Ur", 6, "Sr", N),
        row("Uz", 6, "Uz", N),
        row("Vr", 6, "Sr", N),
        row("Vz", 6, "Vz", N),
        row("Pr", 6, "Sr", N),
        // ORC 7: usage := S, no-DAT := 1.
        row("Sr", 7, "Sr", N),
        row("Sp", 7, "Sp", N),
        row("Ur", 7, "Sr", N),
        row("Uz", 7, "Sr", Z),
        row("Vr", 7, "Sr", N),
        row("Vz", 7, "Sr", Z),
        row("Pr", 7, "Sr", N),
    ];

    /// No-DAT after the ORC: ORC 1 clears it, ORC 7 sets it, everything else
    /// keeps it (§1.2; KVM touches the bit only for these two).
    fn nodat_after(orc: u8, before: bool) -> bool {
        match orc {
            1 => false,
            7 => true,
            _ => before,
        }
    }

    #[test]
    fn table_covers_every_reachable_state_and_orc() {
        let states = ["Sr", "Sp", "Ur", "Uz", "Vr", "Vz", "Pr"];
        for from in states {
            for orc in 0..=7 {
                let rows = TABLE
                    .iter()
                    .filter(|r| r.from == from && r.orc == orc && !r.changed)
                    .count();
                assert_eq!(rows, 1, "{from} ORC {orc}");
            }
        }
    }

    #[test]
    fn every_orc_from_every_reachable_state() {
        for row in TABLE {
            for nodat in [false, true] {
                let from = FrameState {
                    nodat,
                    ..parse(row.from)
                };
                let (mut model, mut mem) = reach(from);
                mem.change[PFN as usize] = row.changed;
                let before = model.counters().essa_by_orc;
                let old = run(&mut model, &mut mem, row.orc);
                let to = FrameState {
                    nodat: nodat_after(row.orc, nodat),
                    ..parse(row.to)
                };
                let what = format!(
                    "{from:?} --ORC {}{}-->",
                    row.orc,
                    if row.changed { " dirty" } else { "" }
                );
                assert_eq!(old, from.to_byte(), "{what} returned byte");
                assert_eq!(model.frame_state(PFN), Some(to), "{what} new state");
                assert_eq!(mem.calls, row.calls, "{what} backend calls");
                let mut expected = before;
                expected[usize::from(row.orc)] += 1;
                assert_eq!(
                    model.counters().essa_by_orc,
                    expected,
                    "{what} counted by ORC"
                );
            }
        }
    }

    #[test]
    fn orc_eight_from_every_reachable_state_changes_nothing() {
        for from in ["Sr", "Sp", "Ur", "Uz", "Vr", "Vz", "Pr"] {
            for nodat in [false, true] {
                let from = FrameState {
                    nodat,
                    ..parse(from)
                };
                let (mut model, mut mem) = reach(from);
                let result = model.essa(&mut mem, ctx(8, PFN));
                assert_eq!(result, Err(ProgramException::Specification), "{from:?}");
                assert_eq!(model.frame_state(PFN), Some(from));
                assert!(mem.calls.is_empty(), "{from:?}");
            }
        }
    }

    #[test]
    fn returned_byte_has_the_exact_encoding() {
        // §1.3 spelled out: Vz with no-DAT is 0x20 | 0x0c | 0x03.
        let (mut model, mut mem) = reach(FrameState {
            nodat: true,
            ..parse("Vz")
        });
        assert_eq!(run(&mut model, &mut mem, 0).raw(), 0x2f);
        let (mut model, mut mem) = reach(parse("Pr"));
        assert_eq!(run(&mut model, &mut mem, 0).raw(), 0x08);
        let (mut model, mut mem) = reach(parse("Sp"));
        assert_eq!(run(&mut model, &mut mem, 0).raw(), 0x02);
    }

    #[test]
    fn change_bit_can_be_left_to_the_guest() {
        let options = ModelOptions {
            preserve_change_bit: true,
            ..ModelOptions::default()
        };
        let mut model = HostModel::new(FRAMES, options);
        let mut mem = FakeMemory::new(FRAMES);
        // A store before ORC 4 still counts at reclaim: the frame is paged out, not discarded.
        mem.store(PFN);
        run(&mut model, &mut mem, 4);
        assert!(mem.calls.is_empty());
        assert_eq!(
            model.reclaim(&mut mem, PFN),
            super::super::ReclaimOutcome::PagedOut
        );
    }

    #[test]
    fn orc_six_reports_a_discard_through_the_old_state() {
        // §2: page_set_stable_if_present checks (old usage V && content Z).
        let (mut model, mut mem) = reach(parse("Vz"));
        assert!(run(&mut model, &mut mem, 6).is_discarded());
        let (mut model, mut mem) = reach(parse("Vr"));
        assert!(!run(&mut model, &mut mem, 6).is_discarded());
    }

    fn exception_case(
        orc_raw: u8,
        problem_state: bool,
        facility_147: bool,
        pfn: u64,
    ) -> EssaContext {
        EssaContext {
            orc_raw,
            addr: pfn << FRAME_SHIFT,
            problem_state,
            facility_147,
        }
    }

    #[test]
    fn exceptions_in_architected_order() {
        let beyond = FRAMES;
        let cases = [
            // Problem state wins over everything (§1.1: 0x02 first).
            (
                exception_case(0, true, true, PFN),
                ProgramException::Privileged,
            ),
            (
                exception_case(8, true, true, beyond),
                ProgramException::Privileged,
            ),
            // Then the ORC: above 7, or 7 without facility 147 (0x06).
            (
                exception_case(8, false, true, PFN),
                ProgramException::Specification,
            ),
            (
                exception_case(15, false, true, beyond),
                ProgramException::Specification,
            ),
            (
                exception_case(7, false, false, PFN),
                ProgramException::Specification,
            ),
            (
                exception_case(7, false, false, beyond),
                ProgramException::Specification,
            ),
            // Then the address.
            (
                exception_case(0, false, true, beyond),
                ProgramException::Addressing,
            ),
            (
                exception_case(7, false, true, beyond),
                ProgramException::Addressing,
            ),
        ];
        for (ctx, expected) in cases {
            let mut model = HostModel::new(FRAMES, ModelOptions::default());
            let mut mem = FakeMemory::new(FRAMES);
            assert_eq!(model.essa(&mut mem, ctx), Err(expected), "{ctx:?}");
            assert!(mem.calls.is_empty(), "{ctx:?} touched the backend");
            assert_eq!(model.frame_state(PFN), Some(FrameState::INITIAL));
            let counters = model.counters();
            assert_eq!(
                (counters.exceptions, counters.essa_total()),
                (1, 0),
                "{ctx:?}"
            );
        }
    }

    #[test]
    fn every_orc_above_seven_is_a_specification_exception() {
        for orc_raw in 8..=u8::MAX {
            let mut model = HostModel::new(FRAMES, ModelOptions::default());
            let mut mem = FakeMemory::new(FRAMES);
            let result = model.essa(&mut mem, exception_case(orc_raw, false, true, PFN));
            assert_eq!(
                result,
                Err(ProgramException::Specification),
                "ORC {orc_raw}"
            );
        }
    }

    #[test]
    fn orcs_zero_to_six_need_no_facility() {
        // §1.1: "ORCs 0-6 are always valid".
        for orc_raw in 0..=6 {
            let mut model = HostModel::new(FRAMES, ModelOptions::default());
            let mut mem = FakeMemory::new(FRAMES);
            assert!(
                model
                    .essa(&mut mem, exception_case(orc_raw, false, false, PFN))
                    .is_ok()
            );
        }
    }

    #[test]
    fn bad_address_can_set_the_exception_bit_instead() {
        let options = ModelOptions {
            bad_address: BadAddress::ExceptionIndication,
            ..ModelOptions::default()
        };
        let mut model = HostModel::new(FRAMES, options);
        let mut mem = FakeMemory::new(FRAMES);
        let byte = model
            .essa(&mut mem, exception_case(3, false, true, FRAMES))
            .expect("no program exception");
        assert_eq!(byte.raw(), 0x10);
        assert!(byte.exception());
        assert_eq!(model.counters().exceptions, 1);
        // Ordering still holds: the ORC is checked before the address.
        let spec = model.essa(&mut mem, exception_case(9, false, true, FRAMES));
        assert_eq!(spec, Err(ProgramException::Specification));
        for pfn in 0..FRAMES {
            assert_eq!(model.frame_state(pfn), Some(FrameState::INITIAL));
        }
    }
}
