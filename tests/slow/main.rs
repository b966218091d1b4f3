//! The slow runs: faults on every topology (nodes killed, frozen, failed over), network faults
//! that send no RST (in network namespaces of their own), the chaos test
//! with its model checks, and the soak (ignored by default: `--ignored`).

mod chaos;
mod faults;
mod network;
mod soak;
