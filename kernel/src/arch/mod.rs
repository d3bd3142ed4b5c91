//! The s390x machine layer: the only part of the kernel that uses `unsafe`.
//!
//! Each privileged instruction has one thin, typed wrapper here with a `// SAFETY:`
//! comment; everything above this module is safe Rust. Modeled on rust-osdev/x86_64:
//! `cpu` (PSW, control registers, SIGP, STFLE, STSI, TOD), `lowcore` (interruption
//! parameters), `interrupts` (frames, handlers, recovery), `sclp` (the SERVC backend for
//! the `sclp` crate), `image` (what the loader left us: command line, initrd, layout),
//! `css` (channel I/O, I/O interruptions, DMA memory), `virtio` (the `virtio-drivers`
//! HAL, DIAGNOSE 0x500, block requests completed by interruption), `percpu` (which CPU
//! runs, per-CPU arrays), `smp` (secondary CPUs: bring-up, signals, jobs), `sync` (locks
//! that know their holder).
#![allow(unsafe_code)]

pub mod cpu;
pub mod css;
pub mod essa;
pub mod heap;
pub mod image;
pub mod interrupts;
pub mod kspace;
pub mod lowcore;
pub mod percpu;
pub mod probe;
pub mod revoke;
pub mod sclp;
pub mod smp;
pub mod storage;
pub mod sync;
pub mod uaccess;
pub mod virtio;

pub use interrupts::InterruptFrame;
