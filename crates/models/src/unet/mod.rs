//! The guided-diffusion ADM UNet: configuration ([`config`]), blocks, the network ([`model`])
//! and its use as a [`Prior`] ([`prior`]). Layers and parameter loading are `dipbench-nn`'s.
//!
//! [`Prior`]: crate::Prior

pub mod blocks;
pub mod config;
pub mod model;
pub mod prior;

pub use config::UnetConfig;
pub use model::AdmUnet;
pub use prior::UnetPrior;
