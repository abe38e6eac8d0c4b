//! Sampler configurations as data: one tagged enum over every sampler, named presets, and the
//! layering of user overrides (from an experiment file) on top of a preset.

use burn::tensor::backend::AutodiffBackend;
use dipbench_models::ExactPosterior;
use serde::{Deserialize, Serialize};

use crate::daps::{Daps, DapsConfig};
use crate::ddrm::{Ddrm, DdrmConfig};
use crate::diffpir::{Diffpir, DiffpirConfig};
use crate::dps::{Dps, DpsConfig};
use crate::error::SamplerError;
use crate::exact::Exact;
use crate::mcg::{Mcg, McgConfig};
use crate::pigdm::{Pigdm, PigdmConfig};
use crate::reddiff::{RedDiff, RedDiffConfig};
use crate::Sampler;

/// Any sampler's configuration; the TOML key `sampler` names the variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "sampler", rename_all = "kebab-case")]
pub enum SamplerConfig {
    /// Exact posterior draws (analytic priors with a linear-Gaussian measurement only).
    Exact,
    /// [`Dps`].
    Dps(DpsConfig),
    /// [`Ddrm`].
    Ddrm(DdrmConfig),
    /// [`Daps`].
    Daps(DapsConfig),
    /// [`Mcg`].
    Mcg(McgConfig),
    /// [`Pigdm`].
    Pigdm(PigdmConfig),
    /// [`Diffpir`].
    Diffpir(DiffpirConfig),
    /// [`RedDiff`].
    Reddiff(RedDiffConfig),
}

/// The sampler names accepted by `sampler = "…"`.
pub const SAMPLER_KINDS: &[&str] = &["exact", "dps", "ddrm", "daps", "mcg", "pigdm", "diffpir", "reddiff"];

impl SamplerConfig {
    /// The preset `preset` of sampler `kind` (`gmm` exists for every sampler; DAPS also has
    /// `daps-1k`).
    pub fn preset(kind: &str, preset: &str) -> Result<Self, SamplerError> {
        let unknown = |known: &str| SamplerError::Config {
            sampler: kind.into(),
            key: "preset".into(),
            why: format!("unknown preset `{preset}` (known: {known})"),
        };
        Ok(match (kind, preset) {
            ("exact", _) => Self::Exact,
            ("dps", "gmm") => Self::Dps(DpsConfig::gmm()),
            ("ddrm", "gmm") => Self::Ddrm(DdrmConfig::gmm()),
            ("daps", "gmm") => Self::Daps(DapsConfig::gmm()),
            ("daps", "daps-1k") => Self::Daps(DapsConfig::daps_1k()),
            ("mcg", "gmm") => Self::Mcg(McgConfig::gmm()),
            ("pigdm", "gmm") => Self::Pigdm(PigdmConfig::gmm()),
            ("diffpir", "gmm") => Self::Diffpir(DiffpirConfig::gmm()),
            ("reddiff", "gmm") => Self::Reddiff(RedDiffConfig::gmm()),
            ("daps", _) => return Err(unknown("gmm, daps-1k")),
            (k, _) if SAMPLER_KINDS.contains(&k) => return Err(unknown("gmm")),
            (k, _) => {
                return Err(SamplerError::Config {
                    sampler: k.into(),
                    key: "sampler".into(),
                    why: format!("unknown sampler (known: {})", SAMPLER_KINDS.join(", ")),
                });
            }
        })
    }

    /// The sampler's name.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Exact => "exact",
            Self::Dps(_) => "dps",
            Self::Ddrm(_) => "ddrm",
            Self::Daps(_) => "daps",
            Self::Mcg(_) => "mcg",
            Self::Pigdm(_) => "pigdm",
            Self::Diffpir(_) => "diffpir",
            Self::Reddiff(_) => "reddiff",
        }
    }

    /// Replaces fields by the entries of `overrides` (a TOML table of this sampler's keys). A key
    /// the sampler does not have is an error naming it and listing the keys that exist.
    pub fn with_overrides(self, overrides: &toml::Table) -> Result<Self, SamplerError> {
        let kind = self.kind();
        let toml::Value::Table(mut table) = toml::Value::try_from(&self).expect("configs serialise") else {
            unreachable!("a tagged enum serialises to a table")
        };
        for (key, value) in overrides {
            if key == "sampler" || !table.contains_key(key) {
                let mut known: Vec<&str> = table.keys().map(String::as_str).filter(|k| *k != "sampler").collect();
                known.sort_unstable();
                return Err(SamplerError::Config {
                    sampler: kind.into(),
                    key: key.clone(),
                    why: format!("unknown key (known: {})", if known.is_empty() { "none".into() } else { known.join(", ") }),
                });
            }
            table.insert(key.clone(), value.clone());
        }
        toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| SamplerError::Config {
            sampler: kind.into(),
            key: "(value)".into(),
            why: e.message().to_string(),
        })
    }

    /// Applies an experiment's step budget: the grid size of the discrete samplers, DAPS's
    /// annealing levels, RED-diff's Adam steps; and its η to the samplers that take one (DPS,
    /// MCG, ΠGDM). DDRM keeps its own η's (the GMM script does too).
    pub fn set_budget(&mut self, steps: usize, eta: f64) {
        match self {
            Self::Exact => {}
            Self::Dps(c) => (c.steps, c.eta) = (steps, eta),
            Self::Mcg(c) => (c.steps, c.eta) = (steps, eta),
            Self::Pigdm(c) => (c.steps, c.eta) = (steps, eta),
            Self::Ddrm(c) => c.steps = steps,
            Self::Diffpir(c) => c.steps = steps,
            Self::Reddiff(c) => c.steps = steps,
            Self::Daps(c) => c.annealing_steps = steps,
        }
    }

    /// Builds the sampler. `Exact` needs the problem's exact posterior.
    pub fn build<B: AutodiffBackend>(&self, exact: Option<&ExactPosterior>) -> Result<Box<dyn Sampler<B>>, SamplerError> {
        Ok(match self {
            Self::Exact => Box::new(Exact(exact.cloned().ok_or_else(|| SamplerError::Unsupported {
                sampler: "exact".into(),
                why: "only analytic priors with a linear-Gaussian measurement have an exact posterior".into(),
            })?)),
            Self::Dps(c) => Box::new(Dps(c.clone())),
            Self::Ddrm(c) => Box::new(Ddrm(c.clone())),
            Self::Daps(c) => Box::new(Daps(c.clone())),
            Self::Mcg(c) => Box::new(Mcg(c.clone())),
            Self::Pigdm(c) => Box::new(Pigdm(c.clone())),
            Self::Diffpir(c) => Box::new(Diffpir(c.clone())),
            Self::Reddiff(c) => Box::new(RedDiff(c.clone())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_replace_fields_and_reject_unknown_keys() {
        let base = SamplerConfig::preset("dps", "gmm").unwrap();
        let t: toml::Table = toml::from_str("scale = 0.5\ngrid = \"uniform\"").unwrap();
        let SamplerConfig::Dps(c) = base.clone().with_overrides(&t).unwrap() else { panic!() };
        assert_eq!(c.scale, 0.5);
        assert_eq!(c.grid, crate::grid::GridKind::Uniform);
        let bad: toml::Table = toml::from_str("zeta = 0.5").unwrap();
        let err = base.clone().with_overrides(&bad).unwrap_err().to_string();
        assert!(err.contains("`zeta`") && err.contains("scale"), "{err}");
        let bad_value: toml::Table = toml::from_str("grid = \"sideways\"").unwrap();
        let err = base.with_overrides(&bad_value).unwrap_err().to_string();
        assert!(err.contains("sideways"), "{err}");
    }

    #[test]
    fn unknown_sampler_and_preset_are_named() {
        let e = SamplerConfig::preset("dpss", "gmm").unwrap_err().to_string();
        assert!(e.contains("dpss") && e.contains("daps"), "{e}");
        let e = SamplerConfig::preset("dps", "paper").unwrap_err().to_string();
        assert!(e.contains("paper") && e.contains("gmm"), "{e}");
    }
}
