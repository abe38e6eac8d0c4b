//! The ADM UNet as a [`Prior`]: ε̂ in the discrete VP view at integer steps of the linear
//! schedule it was trained with, and D(x; σ) through DAPS's VP→EDM preconditioning
//! (`VPPrecond`, EDM Table 1): c_in = 1/√(1+σ²), c_skip = 1, c_out = −σ,
//! c_noise = 999·t(σ) fed as a float timestep, D(x; σ) = x − σ·F(c_in·x, c_noise)[:3].

use burn::prelude::*;
use dipbench_nn::NnBackend;

use super::model::AdmUnet;
use crate::prior::Prior;
use crate::schedule::{ContinuousVp, VpSchedule};

/// An ADM UNet used as a diffusion prior on images of shape `[c, h, w]`, one flattened image
/// per row.
#[derive(Debug, Clone)]
pub struct UnetPrior<B: Backend> {
    net: AdmUnet<B>,
    schedule: VpSchedule,
    continuous: ContinuousVp,
}

impl<B: NnBackend> UnetPrior<B> {
    /// Wraps `net`, trained on the DDPM linear schedule (1e-4 → 0.02, 1000 steps) as every
    /// guided-diffusion checkpoint dipbench knows.
    pub fn new(net: AdmUnet<B>) -> Self {
        Self { net, schedule: VpSchedule::linear(1e-4, 0.02, 1000), continuous: ContinuousVp::default() }
    }

    /// Wraps `net` trained on `schedule` (its ε̂ is indexed by that table's steps); D(x; σ) keeps
    /// the pixel models' continuous-VP c_noise whatever the schedule, as DAPS's wrapper does for
    /// the latent-diffusion UNets.
    pub fn with_schedule(net: AdmUnet<B>, schedule: VpSchedule) -> Self {
        Self { net, schedule, continuous: ContinuousVp::default() }
    }

    /// The network.
    pub fn net(&self) -> &AdmUnet<B> {
        &self.net
    }

    fn image(&self, x: Tensor<B, 2>) -> Tensor<B, 4> {
        let c = self.net.config();
        let n = x.dims()[0];
        x.reshape([n, c.in_channels, c.image_size, c.image_size])
    }

    /// The network output split into (ε̂, v) as rows `[n, c·h·w]` each (v only with learned
    /// variance).
    fn split(&self, out: Tensor<B, 4>) -> (Tensor<B, 2>, Option<Tensor<B, 2>>) {
        let c = self.net.config();
        let [n, _, h, w] = out.dims();
        let ch = c.in_channels;
        let eps = out.clone().slice([0..n, 0..ch, 0..h, 0..w]).reshape([n, ch * h * w]);
        let v = c.learn_sigma().then(|| out.slice([0..n, ch..2 * ch, 0..h, 0..w]).reshape([n, ch * h * w]));
        (eps, v)
    }

    /// c_noise(σ) = 999·t(σ) as the float32 timestep the network receives (computed in float32
    /// as the reference does: [`ContinuousVp::c_noise_f32`]).
    pub fn c_noise(&self, sigma: f64) -> f32 {
        self.continuous.c_noise_f32(sigma)
    }
}

impl<B: NnBackend> Prior<B> for UnetPrior<B> {
    fn name(&self) -> String {
        format!("adm-unet({})", self.net.config().name)
    }

    fn dim(&self) -> usize {
        let c = self.net.config();
        c.in_channels * c.image_size * c.image_size
    }

    fn sample_shape(&self) -> Vec<usize> {
        let c = self.net.config();
        vec![c.in_channels, c.image_size, c.image_size]
    }

    fn device(&self) -> B::Device {
        self.net.device().clone()
    }

    fn schedule(&self) -> &VpSchedule {
        &self.schedule
    }

    /// VPPrecond: D(x; σ) = x − σ·F(x/√(1+σ²), 999·t(σ)).
    fn denoise(&self, x: Tensor<B, 2>, sigma: f64) -> Tensor<B, 2> {
        let c_in = 1.0 / (1.0 + sigma * sigma).sqrt();
        let out = self.net.forward(self.image(x.clone().mul_scalar(c_in)), &[self.c_noise(sigma)]);
        let (f, _) = self.split(out);
        x - f.mul_scalar(sigma)
    }

    fn eps(&self, x_t: Tensor<B, 2>, t: usize) -> Tensor<B, 2> {
        self.eps_and_variance(x_t, t).0
    }

    fn eps_and_variance(&self, x_t: Tensor<B, 2>, t: usize) -> (Tensor<B, 2>, Option<Tensor<B, 2>>) {
        let out = self.net.forward(self.image(x_t), &[t as f32]);
        self.split(out)
    }
}
