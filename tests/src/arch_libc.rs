//! `arch::libc`: `memmove` as `boot` provides it (MVCLE underneath; the rest of the
//! family, `memcpy`, `memset` and `memcmp`, runs under every other test): overlapping
//! moves in both directions at every distance and length class, so each piece of a
//! backward move is checked against a byte-by-byte reference.

use alloc::vec::Vec;
use core::hint::black_box;
use kernel::{check, ktest};

kernel::ktest_suite!("arch::libc");

/// Lengths around the word, the MVC limit (256) and a page.
const LENGTHS: [usize; 14] = [0, 1, 2, 7, 8, 9, 63, 64, 65, 255, 256, 257, 300, 4097];

/// Distances between source and destination, from one byte to more than a page.
const DISTANCES: [usize; 13] = [1, 2, 3, 7, 8, 9, 15, 16, 17, 255, 256, 257, 4100];

/// Bytes left alone before and after the ranges.
const GUARD: usize = 16;

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + 3) as u8).collect()
}

ktest! {
    /// `copy_within` (a `memmove` call) of every length to every distance, up and down,
    /// leaves what a byte-by-byte copy from an untouched original leaves: moving up with
    /// the ranges overlapping goes backwards in pieces no longer than the distance, and
    /// a piece that overlapped its destination, or a wrong order, would show here.
    fn memmove_matches_a_byte_by_byte_copy_in_both_directions(t) [NO_MM] {
        for &len in &LENGTHS {
            for &distance in &DISTANCES {
                // Guard bytes on both sides catch a move that strays out of its range.
                let original = pattern(GUARD + distance + len + GUARD);
                for up in [true, false] {
                    let (src, dst) = if up { (GUARD, GUARD + distance) } else { (GUARD + distance, GUARD) };
                    let mut buf = original.clone();
                    buf.copy_within(black_box(src..src + len), black_box(dst));
                    let mut want = original.clone();
                    // A byte at a time on purpose: the reference must not go through
                    // the routines under test.
                    #[allow(clippy::manual_memcpy)]
                    for i in 0..len {
                        want[dst + i] = original[src + i];
                    }
                    if let Some(at) = buf.iter().zip(&want).position(|(a, b)| a != b) {
                        check!(t, false,
                            "{len} bytes moved {} by {distance}: byte {at} is {:#04x}, not {:#04x}",
                            if up { "up" } else { "down" }, buf[at], want[at]);
                        return;
                    }
                }
            }
        }
    }
}
