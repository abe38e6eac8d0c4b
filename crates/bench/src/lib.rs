//! # dipbench — the benchmark runner
//!
//! What this crate is for: the `dipbench` command line and the library behind it: reading
//! experiment files ([`experiment`]), running their jobs resumably ([`runner`]) on a benchmark
//! ([`gmm`]: the exact-posterior Gaussian-mixture benchmark), and turning per-replicate rows
//! into tables ([`table`]).
//!
//! What it is not for: numerics. Priors, operators, samplers and metrics live in their own crates
//! and know nothing about files or jobs.

pub mod backend;
pub mod experiment;
pub mod gmm;
pub mod runner;
pub mod table;
