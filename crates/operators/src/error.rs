//! The error type of the operators crate.

/// Everything that can go wrong when building or applying a forward operator.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// The caller needs structure the operator does not have (a sampler that needs an SVD, run
    /// on a nonlinear operator, gets this instead of a wrong answer).
    #[error("operator `{operator}` lacks {needs}, which {needed_by} requires")]
    Unsupported {
        /// The operator's name.
        operator: String,
        /// What it lacks.
        needs: String,
        /// Who asked.
        needed_by: String,
    },
    /// An input whose shape does not fit the operator.
    #[error("shape mismatch in {context}: expected {expected}, got {got}")]
    Shape {
        /// Where.
        context: String,
        /// What was expected.
        expected: String,
        /// What was given.
        got: String,
    },
    /// A parameter outside its valid range.
    #[error("invalid {what}: {why}")]
    Invalid {
        /// The parameter at fault.
        what: String,
        /// Why.
        why: String,
    },
}
