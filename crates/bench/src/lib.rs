//! # dipbench — the benchmark runner
//!
//! What this crate is for: the `dipbench` command line and the library behind it.
//!
//! - [`experiment`]: experiment files, parsed and validated into typed settings;
//! - [`benchmarks`]: the GMM and image benchmarks (jobs, one job's work, tables);
//! - [`pipeline`]: the one runner every benchmark goes through (lock, resume, shards, batches,
//!   atomic job files) and the results folder on disk;
//! - [`tables`]: aggregation, CSV / Markdown / LaTeX tables and the regression check;
//! - [`registry`]: the closed sets of names (metrics, tasks, samplers, networks);
//! - setting a node up: [`weights`] (checkpoints: registry, fetch, verify), [`download`],
//!   [`datasets`] (the dataset registry), [`prepare`] (`data prepare`), [`resample`] (the papers'
//!   resize and crop), [`doctor`] (checks before a run), [`digest`] (sha256);
//! - [`sweep`] (Slurm scripts, merging shards), [`grids`] (labelled image grids), [`network`] (running and verifying the
//!   UNet), [`measure`] (applying an operator), [`scoring`] (metrics between folders), [`speed`]
//!   (speed benchmarks against baselines measured in the same run), [`backend`] (CPU, CUDA,
//!   WebGPU).
//!
//! What it is not for: numerics. Priors, operators, samplers and metrics live in their own crates
//! and know nothing about files or jobs.

#![warn(missing_docs)]

pub mod backend;
pub mod benchmarks;
pub mod datasets;
pub mod digest;
pub mod doctor;
pub mod download;
pub mod experiment;
pub mod figures;
pub mod grids;
pub mod measure;
pub mod network;
pub mod pipeline;
pub mod prepare;
pub mod registry;
pub mod resample;
pub mod scoring;
pub mod speed;
pub mod sweep;
pub mod tables;
pub mod weights;
