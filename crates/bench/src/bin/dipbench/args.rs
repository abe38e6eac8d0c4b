//! The command line's top level and the argument groups several commands share.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Parser, Subcommand};
use dipbench::backend::{DeviceKind, Precision};
use dipbench::experiment::Experiment;

use crate::commands;

/// dipbench: diffusion posterior sampling benchmarks, reproducible.
#[derive(Parser, Debug)]
#[command(name = "dipbench", version, about)]
pub struct Cli {
    /// Worker threads (default: RAYON_NUM_THREADS, else all cores). Results do not depend on it.
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    /// Print a backtrace with an error (also: DIPBENCH_BACKTRACE=1).
    #[arg(long, global = true)]
    pub debug: bool,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run an experiment (resumable: finished jobs are skipped), then write its tables.
    Run(commands::run::Args),
    /// Rebuild the tables of an experiment from its finished job files.
    Table(commands::table::Args),
    /// Regression check: compare a results folder's table.csv with a baseline table; exits 1 with
    /// a readable diff when a value moved beyond tolerance or a row appeared or vanished.
    Check(commands::check::Args),
    /// Join the results folders of shards run apart into one (identical jobs are checked).
    Merge(commands::merge::Args),
    /// Write an sbatch job-array script running an experiment in N shards.
    Slurm(commands::slurm::Args),
    /// Image grids of an image experiment's results: per task, GT | y | each method, first images.
    Grid(commands::grid::Args),
    /// Figures of a GMM experiment: per (d, d_y, budget) and replicate, each method's samples
    /// against the exact posterior's on (x1, x2) and on A's leading right-singular direction.
    Figures(commands::figures::Args),
    /// List the known checkpoints, or verify one (keys, shapes, storage, then a pinned sha256).
    Weights(commands::weights::Args),
    /// Prepare a registered dataset folder from files you have, or check one.
    Data(commands::data::Args),
    /// Check this node before a run: backend, GPU and CUDA libraries, kernel cache, checkpoints,
    /// dataset, free disk. One line per check; exit 1 on a blocker.
    Doctor(commands::doctor::Args),
    /// Run a network on a tensor file, or verify the port against the reference outputs.
    Model(commands::model::Args),
    /// Speed benchmarks, each printed beside a baseline measured in the same run.
    Bench(commands::bench::Args),
    /// Apply a benchmark task's operator and noise to an image (PNG/JPEG, or safetensors `x`).
    Measure(commands::measure::Args),
    /// Metrics between two folders of images (per-image metrics pair files by name).
    Score(commands::score::Args),
    /// Operator pictures.
    Operators(commands::operators::Args),
}

/// An experiment file and its results folder.
#[derive(clap::Args, Debug)]
pub struct ExperimentArgs {
    /// The experiment file, e.g. experiments/gmm.toml.
    pub experiment: PathBuf,
    /// Results folder (default: results/<experiment name>).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

impl ExperimentArgs {
    /// The validated experiment and its results folder.
    pub fn load(&self) -> Result<(Experiment, PathBuf)> {
        let exp = Experiment::load(&self.experiment)?;
        let out = self.out.clone().unwrap_or_else(|| Path::new("results").join(&exp.header.name));
        Ok((exp, out))
    }
}

/// The compute backend.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct DeviceArgs {
    /// Compute backend.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceKind,
}

/// The compute backend and the network's precision.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct NetworkArgs {
    /// Compute backend.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceKind,
    /// Network precision: f32, or mixed precision with f16/bf16 convolutions.
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: Precision,
}

/// Help text listing the UNet configurations.
pub fn config_help() -> String {
    format!("Network config: {}", dipbench::registry::unet_configs().join(", "))
}

/// The help of `model eval --config`: the UNets and the autoencoders.
pub fn eval_config_help() -> String {
    format!(
        "Network config: {} (UNets); {} (autoencoders, with --autoencoder)",
        dipbench::registry::unet_configs().join(", "),
        dipbench_models::vq::NAMES.join(", ")
    )
}
