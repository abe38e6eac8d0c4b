//! The guided-diffusion ADM UNet: configuration ([`config`]), parameter sources and strict
//! loading ([`source`]), layers and blocks, the network ([`model`]) and its use as a [`Prior`]
//! ([`prior`]).
//!
//! [`Prior`]: crate::Prior

pub mod blocks;
pub mod config;
pub mod layers;
pub mod model;
pub mod prior;
pub mod source;

pub use config::UnetConfig;
pub use layers::Precision;
pub use model::AdmUnet;
pub use prior::UnetPrior;
pub use source::{GoldenFill, LoadError, MemorySource, ParamSource, RecordingSource, ShapeSource};
