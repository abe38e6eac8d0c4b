//! Tests of the `dipbench` command and of the bench library, in one test binary: every module
//! below used to be its own binary, and each of those linked burn and polars again (minutes of
//! linking and half a gigabyte of disk apiece on CI's two cores).

mod support;

mod fuzz;
mod gmm_runs;
mod image_precision;
mod image_runs;
mod integrity;
mod measure;
mod method_priors;
mod model;
mod score;
mod setup;
mod several_devices;
mod structure;
