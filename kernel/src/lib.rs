//! The zhint kernel: a bare-metal s390x test harness for guest page hinting (CMMA).
//!
//! Policy code (memory management, page-state rules, the CMMA host model, the
//! KTAP writer, the command line) is safe Rust that builds and unit-tests on the
//! host with plain `cargo test`. Everything that touches the machine lives in
//! `arch`, which only exists on s390x and is the one module allowed `unsafe`;
//! the modules that drive the machine (console, traps, start-up) exist only there too.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

extern crate alloc;

pub mod cmdline;
pub mod cmma;
pub mod io;
pub mod ktest;
pub use layout;
pub mod machine;
pub mod mm;
pub mod quiesce;

#[cfg(test)]
mod layers;

#[cfg(target_arch = "s390x")]
pub mod arch;
#[cfg(target_arch = "s390x")]
pub mod console;
#[cfg(target_arch = "s390x")]
pub mod panic;
#[cfg(target_arch = "s390x")]
pub mod shutdown;
#[cfg(target_arch = "s390x")]
pub mod smp;
#[cfg(target_arch = "s390x")]
pub mod start;
#[cfg(target_arch = "s390x")]
pub mod trap;
#[cfg(target_arch = "s390x")]
pub mod vm;
