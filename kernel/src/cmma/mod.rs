//! Guest page hinting: page states, the ESSA host model, discard faults.
//!
//! - [`essa`]: the vocabulary of the instruction (ORCs, state byte, exceptions).
//! - [`model`]: the software host that executes ESSA where the machine cannot
//!   (QEMU TCG), including host reclaim and discard faults.
//! - [`rules`]: when a page may become volatile (the 2007 series and its seed).
//!
//! Everything here is pure logic that builds and tests on the host; the real
//! instruction and the fault glue live in `arch`.

#[cfg(target_arch = "s390x")]
pub mod backend;
pub mod essa;
pub mod model;
pub mod rules;
pub mod states;
