//! Guest page hinting: page states, the ESSA host model, discard faults.
