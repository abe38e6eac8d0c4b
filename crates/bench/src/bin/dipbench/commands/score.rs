//! `dipbench score`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use dipbench::registry::{Metric, metric_names};

use super::say;

/// Arguments of `dipbench score`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Images to score (e.g. reconstructions).
    a: PathBuf,
    /// Reference images.
    b: PathBuf,
    #[arg(long, conflicts_with = "protocol", help = format!("Comma-separated metrics: {}", metric_names()))]
    metrics: Option<String>,
    /// A protocol preset instead: dps or daps.
    #[arg(long)]
    protocol: Option<String>,
    /// Write the Inception features of both sets to this safetensors file.
    #[arg(long)]
    features: Option<PathBuf>,
    /// Write per-image values to this CSV.
    #[arg(long)]
    per_image: Option<PathBuf>,
}

/// Scores the folders.
pub fn run(a: Args) -> Result<i32> {
    let list = match (&a.metrics, &a.protocol) {
        (Some(m), _) => m.split(',').map(|s| s.trim().parse::<Metric>()).collect::<Result<Vec<_>>>().context("--metrics")?,
        (None, Some(p)) => Metric::preset(p).context("--protocol")?,
        (None, None) => bail!("give --metrics psnr,ssim,… or --protocol dps|daps"),
    };
    let report = dipbench::scoring::score::<burn::backend::Flex>(&a.a, &a.b, &list, a.features.as_deref(), &Default::default())?;
    for (m, v) in &report.summary {
        // Shortest round-trip form: every digit of the f64 (scripts parse it).
        say(format_args!("{m}: {v}"))?;
    }
    if let Some(path) = a.per_image {
        let mut w = csv::Writer::from_path(&path).with_context(|| format!("cannot write {}", path.display()))?;
        w.write_record(["metric", "image", "value"])?;
        for (m, rows) in &report.per_image {
            for (name, v) in rows {
                w.write_record([m.as_str(), name.as_str(), &v.to_string()])?;
            }
        }
        w.flush().with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(0)
}
