//! # dipbench — the benchmark runner
//!
//! What this crate is for: the `dipbench` command line and the library behind it: reading
//! experiment files ([`experiment`]), running their jobs resumably ([`runner`]) on a benchmark
//! ([`gmm`]: the exact-posterior Gaussian-mixture benchmark), and turning per-replicate rows
//! into tables ([`table`]); checkpoints ([`weights`]), running a network on a tensor file
//! ([`model_cmd`]), measuring an image with a benchmark operator ([`measure_cmd`]), image
//! metrics between folders ([`score_cmd`]) and speed benchmarks ([`speed`]).
//!
//! What it is not for: numerics. Priors, operators, samplers and metrics live in their own crates
//! and know nothing about files or jobs.

pub mod aggregate;
pub mod backend;
pub mod check_cmd;
pub mod datasets;
pub mod experiment;
pub mod gmm;
pub mod grid_cmd;
pub mod image_bench;
pub mod image_table;
pub mod measure_cmd;
pub mod model_cmd;
pub mod runner;
pub mod score_cmd;
pub mod speed;
pub mod sweep_cmd;
pub mod table;
pub mod weights;
