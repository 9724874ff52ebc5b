//! Support shared by clearline's tests and benches: one seeded random number generator
//! ([`Rng`]), one workload generator for ledger transfers ([`ledger`]), one for the
//! exchange-core order mix ([`orders`]), and the uniform and Zipfian account choice of the
//! history benches ([`AccountPicker`]), and the calling thread's priority for tests of
//! background threads ([`thread`]), and a real etcd server on loopback for the replication
//! tests ([`etcd`]).
//!
//! The generators are deterministic: the same seed gives the same numbers and the same workload
//! on every run and machine, so a failing seed replays exactly. They read no clock and no
//! environment; only [`thread`] asks the operating system.
//!
//! Not for production: the engine and the servers never use it. Tests and benches take it as a
//! dev-dependency; the binary takes it for `clearline benchmark --orders`, which sends the order
//! mix, so the benchmark and the benches run the same flow. The engine's own unit tests do not
//! use it, because it links the engine as an ordinary library.

mod accounts;
pub mod etcd;
pub mod ledger;
pub mod orders;
mod rng;
pub mod thread;

pub use accounts::AccountPicker;
pub use rng::Rng;
