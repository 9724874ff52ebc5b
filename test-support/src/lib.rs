//! Support shared by clearline's tests and benches: one seeded random number generator
//! ([`Rng`]), one workload generator for ledger transfers ([`ledger`]), one for the
//! exchange-core order mix ([`orders`]), and the uniform and Zipfian account choice of the
//! history benches ([`AccountPicker`]).
//!
//! Everything here is deterministic: the same seed gives the same numbers and the same workload
//! on every run and machine, so a failing seed replays exactly. It reads no clock and no
//! environment.
//!
//! Not for production: the engine and the servers never use it. Tests and benches take it as a
//! dev-dependency; the binary takes it for `clearline benchmark --orders`, which sends the order
//! mix, so the benchmark and the benches run the same flow. The engine's own unit tests do not
//! use it, because it links the engine as an ordinary library.

mod accounts;
pub mod ledger;
pub mod orders;
mod rng;

pub use accounts::AccountPicker;
pub use rng::Rng;
