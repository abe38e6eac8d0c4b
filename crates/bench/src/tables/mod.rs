//! What every benchmark's tables share: the polars aggregation of rows (mean, spread, diverged
//! counts, best-of-N) and the regression check of a table against a baseline. Each benchmark
//! renders its own tables (`benchmarks::<name>::table`).

pub mod aggregate;
pub mod check;
