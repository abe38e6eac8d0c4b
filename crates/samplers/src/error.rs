//! The error type of the samplers crate.

use dipbench_models::ModelError;
use dipbench_operators::OperatorError;

/// Everything that can go wrong when configuring or running a sampler.
#[derive(Debug, thiserror::Error)]
pub enum SamplerError {
    /// The operator lacks structure the sampler needs (e.g. DDRM on a nonlinear operator).
    #[error(transparent)]
    Operator(#[from] OperatorError),
    /// The prior failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A configuration value out of range or inconsistent.
    #[error("sampler `{sampler}`: invalid setting `{key}`: {why}")]
    Config {
        /// The sampler.
        sampler: String,
        /// The setting at fault.
        key: String,
        /// Why.
        why: String,
    },
    /// The sampler needs something only some problems provide (the exact posterior, an SVD …).
    #[error("sampler `{sampler}` cannot run on this problem: {why}")]
    Unsupported {
        /// The sampler.
        sampler: String,
        /// Why.
        why: String,
    },
}

impl SamplerError {
    /// Whether the error says the sampler cannot run on this problem (missing operator
    /// structure, no exact posterior), as opposed to a failure: benchmark tables print "–" for
    /// these and go on.
    pub fn is_unsupported(&self) -> bool {
        matches!(self, Self::Unsupported { .. } | Self::Operator(OperatorError::Unsupported { .. }))
    }
}
