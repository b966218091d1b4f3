//! The slow runs: faults on every topology (nodes killed, frozen, failed over), the chaos test
//! with its model checks, and the soak (ignored by default: `--ignored`).

mod chaos;
mod faults;
mod soak;
