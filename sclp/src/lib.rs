//! SCLP (service-call logical processor) driver and console for bare-metal s390x.
//!
//! Shaped like `uart_16550`: the machine access sits behind the [`Backend`] trait (SERVC and
//! the wait for its service-signal interrupt), everything above it is safe Rust that host tests
//! run against a fake SCLP. [`Sclp::new`] is `const`, so the console can live in a `static`
//! behind a lock; [`Sclp::init`] announces the event mask and picks the consoles.
//!
//! Output goes to the ASCII console (event 0x1a) and the line-mode console (event 0x02, EBCDIC
//! CP037, see [`ebcdic`]), whichever the SCLP offers; both when it offers both. A console that
//! refuses output (z/VM answers 0x05F0 for its VT220) is dropped and the other carries on.
//!
//! Layout: [`spec`] holds the architecture (command words, response codes, SCCB layouts);
//! `driver` issues one request at a time; `console` buffers lines and builds the events;
//! `scp_info` reads the configuration; `fake` (tests only) is the software SCLP the tests run
//! against, which checks every request byte for byte and completes asynchronously.
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs, clippy::undocumented_unsafe_blocks)]

mod backend;
mod console;
mod consoles;
mod cpus;
mod driver;
pub mod ebcdic;
mod error;
mod sccb;
mod scp_info;
pub mod spec;

#[cfg(test)]
mod fake;

pub use backend::Backend;
pub use console::{LINE_CAPACITY, LINE_MODE_WIDTH};
pub use consoles::Consoles;
pub use cpus::CpuAddresses;
pub use driver::{MAX_BUSY_RETRIES, MAX_UNSOLICITED_SIGNALS, Sclp};
pub use error::Error;
pub use sccb::Sccb;
pub use scp_info::ScpInfo;
