//! # dipbench-operators — forward models and measurement noise
//!
//! What this crate is for: the measurement side of an inverse problem, y = A(x) + noise, exactly
//! as the reference implementations define it, and the seeded randomness every crate draws from.
//!
//! - [`operator`]: the [`Operator`] interface (differentiable forward), its linear refinement
//!   ([`LinearOperator`]: adjoint, pseudo-inverse, projection) and the singular-value view
//!   ([`SvdView`]) the spectral baselines need.
//! - [`dense`]: a dense matrix operator with exact SVD (the Gaussian-mixture benchmark).
//! - [`image`]: the image tasks of the DPS and DAPS tables (SR ×4, box/random inpainting,
//!   Gaussian and kernel deblur, phase retrieval, HDR), built by name ([`image::Task`]).
//! - [`noise`]: per-sample seeded RNG streams ([`SampleRng`], [`derive_seed`]) and the Gaussian
//!   noise model.
//!
//! What it is not for: priors (`dipbench-models`) and sampling algorithms (`dipbench-samplers`).

pub mod dense;
pub mod error;
pub mod image;
pub mod noise;
pub mod operator;

pub use dense::DenseOperator;
pub use error::OperatorError;
pub use noise::{GaussianNoise, LeastSquaresTerm, PoissonNoise, SampleRng, derive_seed};
pub use operator::{FourierMagnitude, LinearOperator, Operator, SvdView, WholeV};
