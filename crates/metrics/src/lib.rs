//! # dipbench-metrics — metrics, each named and matched to its reference
//!
//! What this crate is for: the numbers in the tables. Every metric variant has its own name,
//! because the field computes "the same" metric in incompatible ways.
//!
//! - [`sliced`]: sliced Wasserstein distances between two sample sets (the Gaussian-mixture
//!   benchmark): the paper's mean sliced W1 and the max-sliced W2 variant.
//!
//! What it is not for: producing samples or reading images.

pub mod sliced;

pub use sliced::{SlicedMetric, max_sliced_w2, sliced_w1, wasserstein_1d};
