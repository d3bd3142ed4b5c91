//! The zhint kernel: a bare-metal s390x test harness for guest page hinting (CMMA).
//!
//! Policy code (memory management, page-state rules, the CMMA host model, the
//! KTAP writer, the command line) is safe Rust that builds and unit-tests on the
//! host with plain `cargo test`. Everything that touches the machine lives in
//! [`arch`], which only exists on s390x and is the one module allowed `unsafe`.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

extern crate alloc;

pub mod cmma;
pub mod mm;
