//! ESSA vocabulary: operation request codes, page states, the result byte and
//! the program exceptions (reference `essa-cmma.md` §1).
//!
//! These types are shared by the real-instruction wrapper in `arch` and by the
//! software [`HostModel`](super::model::HostModel), so kernel code reads the
//! same values whichever backend answered.

mod exception;
mod orc;
mod state;

pub use exception::ProgramException;
pub use orc::{InvalidOrc, Orc};
pub use state::{ContentState, PageStateByte, UsageState};
