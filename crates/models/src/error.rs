//! The error type of the models crate.

/// Everything that can go wrong when building or evaluating a prior.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A name in a config (schedule, prior, preset) that this crate does not know.
    #[error("unknown {what} `{name}` (known: {known})")]
    UnknownName {
        /// What kind of thing was named.
        what: &'static str,
        /// The name given.
        name: String,
        /// The names that exist.
        known: String,
    },
    /// Inconsistent sizes between parts of a model or between a model and its input.
    #[error("shape mismatch in {context}: expected {expected}, got {got}")]
    Shape {
        /// Where the mismatch was found.
        context: String,
        /// What was expected.
        expected: String,
        /// What was found.
        got: String,
    },
    /// A parameter outside its valid range (a negative variance, weights that do not sum to 1 …).
    #[error("invalid {what}: {why}")]
    Invalid {
        /// The parameter at fault.
        what: String,
        /// Why it is invalid.
        why: String,
    },
}
