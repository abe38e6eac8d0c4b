//! The `dipbench` command line. `dipbench --help` lists the commands.

use std::path::{Path, PathBuf};

/// burn allocates a fresh buffer for most tensor ops; mimalloc reuses freed pages where the system
/// allocator returns multi-megabyte buffers to the OS and page-faults them back in.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use dipbench::backend::DeviceKind;
use dipbench::experiment::Experiment;
use dipbench::{runner, table, with_backend};

/// dipbench: diffusion posterior sampling benchmarks, reproducible.
#[derive(Parser, Debug)]
#[command(name = "dipbench", version, about)]
struct Cli {
    /// Worker threads (default: RAYON_NUM_THREADS, else all cores). Results do not depend on it.
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run an experiment (resumable: finished jobs are skipped), then write its tables.
    Run {
        /// The experiment file, e.g. experiments/gmm.toml.
        experiment: PathBuf,
        /// Results folder (default: results/<experiment name>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Compute backend.
        #[arg(long, value_enum, default_value = "cpu")]
        device: DeviceKind,
        /// Do not draw a progress bar.
        #[arg(long)]
        no_progress: bool,
        /// Jobs run at the same time (default: the number of threads). Results do not depend on it.
        #[arg(long)]
        jobs: Option<usize>,
    },
    /// Rebuild the tables of an experiment from its finished job files.
    Table {
        /// The experiment file.
        experiment: PathBuf,
        /// Results folder (default: results/<experiment name>).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn default_out(name: &str, out: Option<PathBuf>) -> PathBuf {
    out.unwrap_or_else(|| Path::new("results").join(name))
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if let Some(n) = cli.threads {
        rayon::ThreadPoolBuilder::new().num_threads(n).build_global().context("cannot set up the thread pool")?;
    }
    match cli.command {
        Command::Run { experiment, out, device, no_progress, jobs } => {
            let exp = Experiment::load(&experiment)?;
            let out = default_out(&exp.experiment.experiment.name, out);
            let opts = runner::RunOptions { progress: !no_progress, jobs };
            let summary = with_backend!(device, |B, dev| runner::run::<B>(&exp, &out, &dev, &opts))?;
            let rows = runner::collect_rows(&exp, &out)?;
            let md = table::write_all(&exp, &rows, &out)?;
            println!("{md}");
            eprintln!(
                "{} jobs ({} run now, {} already done) in {:.1} s; tables in {}",
                summary.total,
                summary.ran,
                summary.skipped,
                summary.seconds,
                out.display()
            );
        }
        Command::Table { experiment, out } => {
            let exp = Experiment::load(&experiment)?;
            let out = default_out(&exp.experiment.experiment.name, out);
            let rows = runner::collect_rows(&exp, &out)?;
            println!("{}", table::write_all(&exp, &rows, &out)?);
        }
    }
    Ok(())
}
