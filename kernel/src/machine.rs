//! What machine we run on: the host (STSI), facilities (STFLE), for the banner and for
//! tests that depend on them. The decoding is pure and host-tested.

use core::fmt;

/// Who provides our virtual or real machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Host {
    /// QEMU's TCG emulator.
    Tcg,
    /// KVM (QEMU with hardware virtualization).
    Kvm,
    /// z/VM.
    Zvm,
    /// A logical partition, no hypervisor in between.
    Lpar,
    /// The Hercules emulator (it reports configuration level 2, like an LPAR).
    Hercules,
    /// A basic machine or an unrecognized hypervisor.
    Unknown,
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Host::Tcg => "TCG",
            Host::Kvm => "KVM",
            Host::Zvm => "z/VM",
            Host::Lpar => "LPAR",
            Host::Hercules => "Hercules",
            Host::Unknown => "unknown",
        })
    }
}

static HOST: spin::Once<Host> = spin::Once::new();

/// Records the host detected at boot.
pub fn set_host(host: Host) {
    HOST.call_once(|| host);
}

/// The host detected at boot (`None` before detection).
pub fn host() -> Option<Host> {
    HOST.get().copied()
}

/// EBCDIC "QEMU", the STSI 1.1.1 manufacturer QEMU reports under TCG.
const EBCDIC_QEMU: [u8; 4] = [0xd8, 0xc5, 0xd4, 0xe4];
/// EBCDIC "KVM/", the start of the STSI 3.2.2 control-program identifier under KVM.
const EBCDIC_KVM: [u8; 4] = [0xd2, 0xe5, 0xd4, 0x61];
/// EBCDIC "z/VM".
const EBCDIC_ZVM: [u8; 4] = [0xa9, 0x61, 0xe5, 0xd4];
/// EBCDIC "HRC ", the STSI 1.1.1 manufacturer Hercules reports unless its configuration
/// says otherwise (`MANUFACTURER` statement; Hercules `control.c` default `manufact`).
const EBCDIC_HERCULES: [u8; 4] = [0xc8, 0xd9, 0xc3, 0x40];

/// Decides the host from the configuration level (STSI fc 0), the STSI 1.1.1
/// manufacturer and, for level 3, the STSI 3.2.2 control-program identifier of the
/// innermost VM (as kvm-unit-tests' `detect_host` does). Hercules stores level 2 like
/// an LPAR; its manufacturer tells it apart.
pub fn detect_host(level: u8, sysinfo_111: Option<&[u8]>, sysinfo_322: Option<&[u8]>) -> Host {
    // 1.1.1: manufacturer at offset 32 (16 bytes, EBCDIC).
    let manufacturer =
        |name: &[u8; 4]| sysinfo_111.is_some_and(|b| b.get(32..36) == Some(&name[..]));
    match level {
        1 | 2 if manufacturer(&EBCDIC_HERCULES) => Host::Hercules,
        2 => Host::Lpar,
        3 => {
            if manufacturer(&EBCDIC_QEMU) {
                return Host::Tcg;
            }
            // 3.2.2: count of VM levels in the low nibble of byte 31; vm[0] (the level
            // we run at) at 32, its control-program identifier at +24 (16 bytes).
            match sysinfo_322.and_then(|b| b.get(56..60)) {
                Some(cpi) if cpi == EBCDIC_KVM => Host::Kvm,
                Some(cpi) if cpi == EBCDIC_ZVM => Host::Zvm,
                _ => Host::Unknown,
            }
        }
        _ => Host::Unknown,
    }
}

/// Facility bits from STFLE (bit 0 is the leftmost bit of the first doubleword).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Facilities(pub [u64; 4]);

impl Facilities {
    /// True if facility `bit` is installed.
    pub fn has(&self, bit: usize) -> bool {
        bit < 256 && self.0[bit / 64] & (1 << (63 - bit % 64)) != 0
    }
}

/// Facility numbers the kernel cares about.
pub mod facility {
    /// DAT enhancement (IDTE, CSPG).
    pub const DAT_ENHANCEMENT: usize = 3;
    /// Enhanced-DAT 1 (large pages).
    pub const EDAT1: usize = 8;
    /// Instruction-execution protection.
    pub const IEP: usize = 130;
    /// Side-effect access and enhanced suppression on protection 2 (protection
    /// exceptions say in the TEID which protection refused the access).
    pub const ESOP2: usize = 131;
    /// Extended-length SCCB: READ SCP INFO may use an SCCB longer than a page.
    pub const EXTENDED_LENGTH_SCCB: usize = 140;
    /// CMM ESSA-enhancement (no-translate, ORC 7).
    pub const CMM_NODAT: usize = 147;
}

impl fmt::Display for Facilities {
    /// Installed facilities as ranges, e.g. `0-9,16-22,24-30`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut bit = 0;
        while bit < 256 {
            if self.has(bit) {
                let start = bit;
                while bit + 1 < 256 && self.has(bit + 1) {
                    bit += 1;
                }
                if !first {
                    f.write_str(",")?;
                }
                first = false;
                if start == bit {
                    write!(f, "{start}")?
                } else {
                    write!(f, "{start}-{bit}")?
                }
            }
            bit += 1;
        }
        if first { f.write_str("none") } else { Ok(()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    #[test]
    fn hosts_are_told_apart() {
        let mut s111 = vec![0u8; 4096];
        let mut s322 = vec![0u8; 4096];
        assert_eq!(detect_host(2, None, None), Host::Lpar);
        assert_eq!(detect_host(1, None, None), Host::Unknown);
        s111[32..36].copy_from_slice(&[0xc9, 0xc2, 0xd4, 0x40]); // "IBM "
        assert_eq!(detect_host(2, Some(&s111), None), Host::Lpar);
        s111[32..36].copy_from_slice(&EBCDIC_HERCULES);
        assert_eq!(detect_host(2, Some(&s111), None), Host::Hercules);
        assert_eq!(detect_host(1, Some(&s111), None), Host::Hercules);
        assert_eq!(
            detect_host(3, Some(&s111), None),
            Host::Unknown,
            "a VM on Hercules"
        );
        s111[32..36].copy_from_slice(&EBCDIC_QEMU);
        assert_eq!(detect_host(3, Some(&s111), Some(&s322)), Host::Tcg);
        s111[32..36].copy_from_slice(&[0xc9, 0xc2, 0xd4, 0x40]); // "IBM "
        s322[56..60].copy_from_slice(&EBCDIC_KVM);
        assert_eq!(detect_host(3, Some(&s111), Some(&s322)), Host::Kvm);
        s322[56..60].copy_from_slice(&EBCDIC_ZVM);
        assert_eq!(detect_host(3, Some(&s111), Some(&s322)), Host::Zvm);
        assert_eq!(detect_host(3, Some(&s111), None), Host::Unknown);
    }

    #[test]
    fn facilities_print_as_ranges() {
        let mut f = Facilities([0; 4]);
        assert_eq!(f.to_string(), "none");
        f.0[0] = 0xf000_0000_0000_0000 | (1 << (63 - 8));
        f.0[2] = 1 << (63 - (147 - 128));
        assert!(f.has(3) && f.has(8) && f.has(147) && !f.has(4));
        assert_eq!(f.to_string(), "0-3,8,147");
    }
}
