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
    /// Addressing exception 0x05, as Linux 6.x KVM does for a guest frame outside
    /// every memory slot (`__do_essa`: `kvm_is_error_hva` -> `PGM_ADDRESSING`).
    #[default]
    Addressing,
    /// The exception indication in the result, block untouched, as Linux 6.x KVM
    /// answers when `pgste_perform_essa` cannot process the block
    /// (`res = orc ? 0x10 : 0; /* Exception Indication */`): 0x10 for ORC 1-7, and
    /// 0x00 for ORC 0. (The 2026 KVM rewrite, `dat_perform_essa`, reports bad
    /// addresses this way too.)
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
        let (result, processed) = self.checked_essa(mem, ctx);
        if !processed {
            self.counters.exceptions += 1;
        }
        result
    }

    /// The result, and whether the block was processed (no program exception, no
    /// exception indication).
    fn checked_essa(
        &mut self,
        mem: &mut impl HostMemory,
        ctx: EssaContext,
    ) -> (Result<PageStateByte, ProgramException>, bool) {
        if ctx.problem_state {
            return (Err(ProgramException::Privileged), false);
        }
        let Ok(orc) = Orc::try_from(ctx.orc_raw) else {
            return (Err(ProgramException::Specification), false);
        };
        if orc.needs_facility_147() && !ctx.facility_147 {
            return (Err(ProgramException::Specification), false);
        }
        let pfn = ctx.addr >> FRAME_SHIFT;
        let Some(old) = self.settle(mem, pfn) else {
            let result = match self.options.bad_address {
                BadAddress::Addressing => Err(ProgramException::Addressing),
                BadAddress::ExceptionIndication => Ok(PageStateByte::exception_indication(orc)),
            };
            return (result, false);
        };
        let mut transition = essa_transition(old, orc, || mem.change_bit(pfn));
        if !self.options.clear_change_bit_on_pot_volatile
            && transition.effect == Effect::ClearChangeBit
        {
            transition.effect = Effect::None;
        }
        self.counters.essa_by_orc[usize::from(orc.code())] += 1;
        self.commit(mem, pfn, transition);
        (Ok(old.to_byte()), true)
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
        let stable = if target.nodat { 7 } else { 1 };
        run(&mut model, &mut mem, stable);
        let reclaim = |model: &mut HostModel, mem: &mut FakeMemory| {
            model.reclaim(mem, PFN);
        };
        match (target.usage, target.content) {
            (UsageState::Stable, ContentState::Resident) => {}
            (UsageState::Stable, ContentState::Preserved) => reclaim(&mut model, &mut mem),
            (UsageState::Stable, ContentState::Zero) => {
                run(&mut model, &mut mem, 2);
                reclaim(&mut model, &mut mem);
                run(&mut model, &mut mem, stable);
            }
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

    /// One row of the ORC table: from a state, with the guest change bit, an ORC
    /// gives a new state (no-DAT written separately) and the backend calls; `kvm`
    /// names the branch of Linux 6.x `pgste_perform_essa` (`arch/s390/mm/pgtable.c`)
    /// the row follows.
    struct Row {
        from: &'static str,
        changed: bool,
        orc: u8,
        to: &'static str,
        calls: &'static [Call],
        kvm: &'static str,
    }

    const fn row(
        from: &'static str,
        orc: u8,
        to: &'static str,
        calls: &'static [Call],
        kvm: &'static str,
    ) -> Row {
        Row {
            from,
            changed: false,
            orc,
            to,
            calls,
            kvm,
        }
    }

    const fn dirty(
        from: &'static str,
        orc: u8,
        to: &'static str,
        calls: &'static [Call],
        kvm: &'static str,
    ) -> Row {
        Row {
            from,
            changed: true,
            orc,
            to,
            calls,
            kvm,
        }
    }

    const D: &[Call] = &[Call::Discard(PFN)];
    const N: &[Call] = &[];

    // The KVM branches, as `pgste_perform_essa` spells them. The content letter is
    // `__do_essa`'s: PTE valid -> r, invalid -> p, invalid + _PGSTE_GPS_ZERO -> z.
    const GET: &str = "ESSA_GET_STATE: break";
    const STABLE: &str = "ESSA_SET_STABLE: usage = STABLE, NODAT cleared; PTE and ZERO untouched";
    const UNUSED_VALID: &str = "ESSA_SET_UNUSED: usage = UNUSED; PTE valid: res 0";
    const UNUSED_INVALID: &str =
        "ESSA_SET_UNUSED: usage = UNUSED; PTE invalid: res 1 -> ZERO set, CBRL drops the copy";
    const VOLATILE_VALID: &str = "ESSA_SET_VOLATILE: usage = VOLATILE; PTE valid: res 0";
    const VOLATILE_INVALID: &str =
        "ESSA_SET_VOLATILE: usage = VOLATILE; PTE invalid: res 1 -> ZERO set, CBRL drops the copy";
    const POT_VALID: &str = "ESSA_SET_POT_VOLATILE: PTE valid -> POT_VOLATILE";
    const POT_ZERO: &str = "ESSA_SET_POT_VOLATILE: PTE invalid, ZERO -> VOLATILE";
    const POT_CLEAN: &str =
        "ESSA_SET_POT_VOLATILE: PTE invalid, !PGSTE_GC_BIT -> VOLATILE, res 1 (ZERO)";
    const POT_DIRTY: &str =
        "ESSA_SET_POT_VOLATILE: PTE invalid, PGSTE_GC_BIT -> usage cleared (STABLE)";
    const RESIDENT: &str = "ESSA_SET_STABLE_RESIDENT: usage = STABLE, NODAT kept; \"we will not make this page resident\"";
    const IF_VALID: &str = "ESSA_SET_STABLE_IF_RESIDENT: PTE valid -> usage = STABLE";
    const IF_INVALID: &str = "ESSA_SET_STABLE_IF_RESIDENT: PTE invalid -> unchanged";
    const NODAT: &str = "ESSA_SET_STABLE_NODAT: usage = STABLE | NODAT";

    /// Every ORC 0-7 from every reachable state (the eight legal combinations of the
    /// 2007 6/6 table), compared with Linux 6.x KVM pair by pair. The ESSA side of
    /// the model never touches the backend except to drop a preserved copy (D): no
    /// ORC makes a block resident, only a guest touch does (`on_access`).
    const TABLE: &[Row] = &[
        row("Sr", 0, "Sr", N, GET),
        row("Sp", 0, "Sp", N, GET),
        row("Sz", 0, "Sz", N, GET),
        row("Ur", 0, "Ur", N, GET),
        row("Uz", 0, "Uz", N, GET),
        row("Vr", 0, "Vr", N, GET),
        row("Vz", 0, "Vz", N, GET),
        row("Pr", 0, "Pr", N, GET),
        row("Sr", 1, "Sr", N, STABLE),
        row("Sp", 1, "Sp", N, STABLE),
        row("Sz", 1, "Sz", N, STABLE),
        row("Ur", 1, "Sr", N, STABLE),
        row("Uz", 1, "Sz", N, STABLE),
        row("Vr", 1, "Sr", N, STABLE),
        row("Vz", 1, "Sz", N, STABLE),
        row("Pr", 1, "Sr", N, STABLE),
        row("Sr", 2, "Ur", N, UNUSED_VALID),
        row("Sp", 2, "Uz", D, UNUSED_INVALID),
        row("Sz", 2, "Uz", N, UNUSED_INVALID),
        row("Ur", 2, "Ur", N, UNUSED_VALID),
        row("Uz", 2, "Uz", N, UNUSED_INVALID),
        row("Vr", 2, "Ur", N, UNUSED_VALID),
        row("Vz", 2, "Uz", N, UNUSED_INVALID),
        row("Pr", 2, "Ur", N, UNUSED_VALID),
        row("Sr", 3, "Vr", N, VOLATILE_VALID),
        row("Sp", 3, "Vz", D, VOLATILE_INVALID),
        row("Sz", 3, "Vz", N, VOLATILE_INVALID),
        row("Ur", 3, "Vr", N, VOLATILE_VALID),
        row("Uz", 3, "Vz", N, VOLATILE_INVALID),
        row("Vr", 3, "Vr", N, VOLATILE_VALID),
        row("Vz", 3, "Vz", N, VOLATILE_INVALID),
        row("Pr", 3, "Vr", N, VOLATILE_VALID),
        row("Sr", 4, "Pr", N, POT_VALID),
        row("Sp", 4, "Vz", D, POT_CLEAN),
        dirty("Sp", 4, "Sp", N, POT_DIRTY),
        row("Sz", 4, "Vz", N, POT_ZERO),
        row("Ur", 4, "Pr", N, POT_VALID),
        row("Uz", 4, "Vz", N, POT_ZERO),
        row("Vr", 4, "Pr", N, POT_VALID),
        row("Vz", 4, "Vz", N, POT_ZERO),
        row("Pr", 4, "Pr", N, POT_VALID),
        row("Sr", 5, "Sr", N, RESIDENT),
        row("Sp", 5, "Sp", N, RESIDENT),
        row("Sz", 5, "Sz", N, RESIDENT),
        row("Ur", 5, "Sr", N, RESIDENT),
        row("Uz", 5, "Sz", N, RESIDENT),
        row("Vr", 5, "Sr", N, RESIDENT),
        row("Vz", 5, "Sz", N, RESIDENT),
        row("Pr", 5, "Sr", N, RESIDENT),
        row("Sr", 6, "Sr", N, IF_VALID),
        row("Sp", 6, "Sp", N, IF_INVALID),
        row("Sz", 6, "Sz", N, IF_INVALID),
        row("Ur", 6, "Sr", N, IF_VALID),
        row("Uz", 6, "Uz", N, IF_INVALID),
        row("Vr", 6, "Sr", N, IF_VALID),
        row("Vz", 6, "Vz", N, IF_INVALID),
        row("Pr", 6, "Sr", N, IF_VALID),
        row("Sr", 7, "Sr", N, NODAT),
        row("Sp", 7, "Sp", N, NODAT),
        row("Sz", 7, "Sz", N, NODAT),
        row("Ur", 7, "Sr", N, NODAT),
        row("Uz", 7, "Sz", N, NODAT),
        row("Vr", 7, "Sr", N, NODAT),
        row("Vz", 7, "Sz", N, NODAT),
        row("Pr", 7, "Sr", N, NODAT),
    ];

    /// Every legal combination of the 2007 6/6 table (Up, Vp, Pp, Pz are impossible).
    const STATES: [&str; 8] = ["Sr", "Sp", "Sz", "Ur", "Uz", "Vr", "Vz", "Pr"];

    /// No-DAT after the ORC: ORC 1 clears it, ORC 7 sets it, everything else
    /// keeps it (`pgste_perform_essa` touches `_PGSTE_GPS_NODAT` only for these two).
    fn nodat_after(orc: u8, before: bool) -> bool {
        match orc {
            1 => false,
            7 => true,
            _ => before,
        }
    }

    #[test]
    fn table_covers_every_reachable_state_and_orc() {
        for from in STATES {
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
    fn every_orc_from_every_reachable_state_as_kvm() {
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
                    "{from:?} --ORC {}{}--> (KVM: {})",
                    row.orc,
                    if row.changed { " dirty" } else { "" },
                    row.kvm
                );
                // __do_essa: res = usage | 2 if PTE invalid | 1 if ZERO | 0x20 if NODAT.
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
                // A later extract says what the ORC left (and changes nothing).
                assert_eq!(
                    run(&mut model, &mut mem, 0),
                    to.to_byte(),
                    "{what} then ORC 0"
                );
            }
        }
    }

    #[test]
    fn orc_eight_from_every_reachable_state_changes_nothing() {
        for from in STATES {
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
        let (mut model, mut mem) = reach(parse("Sz"));
        assert_eq!(run(&mut model, &mut mem, 0).raw(), 0x03);
    }

    #[test]
    fn a_stable_zero_block_stays_zero_until_touched() {
        let (mut model, mut mem) = reach(parse("Sz"));
        for orc in [0, 5, 6, 7, 1, 0] {
            run(&mut model, &mut mem, orc);
            assert_eq!(model.state(PFN).1, ContentState::Zero, "after ORC {orc}");
        }
        assert!(mem.calls.is_empty(), "no zero frame before the touch");
        assert_eq!(
            model.on_access(&mut mem, PFN),
            super::super::AccessVerdict::Ok
        );
        assert_eq!(run(&mut model, &mut mem, 0), parse("Sr").to_byte());
    }

    #[test]
    fn a_touched_paged_out_block_is_resident_for_every_later_orc() {
        // Touched, the block is Sr: ORC 2 and 3 then keep its bytes (no discard), as on
        // any resident block.
        for (orc, after) in [(2, "Ur"), (3, "Vr"), (4, "Pr")] {
            let (mut model, mut mem) = reach(parse("Sp"));
            assert_eq!(
                model.on_access(&mut mem, PFN),
                super::super::AccessVerdict::Ok
            );
            assert_eq!(run(&mut model, &mut mem, 0), parse("Sr").to_byte());
            mem.calls.clear();
            run(&mut model, &mut mem, orc);
            assert_eq!(model.frame_state(PFN), Some(parse(after)), "ORC {orc}");
            assert!(mem.calls.is_empty(), "ORC {orc}: {:?}", mem.calls);
        }
    }

    #[test]
    fn entering_p_can_clear_the_change_bit() {
        // Not KVM: with the option, a store before ORC 4 no longer saves the frame.
        let options = ModelOptions {
            clear_change_bit_on_pot_volatile: true,
            ..ModelOptions::default()
        };
        let mut model = HostModel::new(FRAMES, options);
        let mut mem = FakeMemory::new(FRAMES);
        mem.store(PFN);
        run(&mut model, &mut mem, 4);
        assert_eq!(mem.calls, [Call::ClearChangeBit(PFN)]);
        assert_eq!(
            model.reclaim(&mut mem, PFN),
            super::super::ReclaimOutcome::Discarded
        );
    }

    #[test]
    fn the_change_bit_is_left_to_the_guest_as_kvm_does() {
        let mut model = HostModel::new(FRAMES, ModelOptions::default());
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
        // Linux 6.x __do_essa: `res = orc ? 0x10 : 0; /* Exception Indication */`.
        for orc_raw in 1..=7 {
            let byte = model
                .essa(&mut mem, exception_case(orc_raw, false, true, FRAMES))
                .expect("no program exception");
            assert_eq!(byte.raw(), 0x10, "ORC {orc_raw}");
            assert!(byte.exception());
        }
        let extract = model
            .essa(&mut mem, exception_case(0, false, true, FRAMES))
            .expect("no program exception");
        assert_eq!(extract.raw(), 0x00, "ORC 0");
        assert_eq!(model.counters().exceptions, 8);
        // Ordering still holds: the ORC is checked before the address.
        let spec = model.essa(&mut mem, exception_case(9, false, true, FRAMES));
        assert_eq!(spec, Err(ProgramException::Specification));
        for pfn in 0..FRAMES {
            assert_eq!(model.frame_state(pfn), Some(FrameState::INITIAL));
        }
    }
}
