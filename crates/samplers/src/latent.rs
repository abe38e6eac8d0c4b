//! Latent-space inverse problems: y = A(D(z)) + n with D the decoder of a latent-diffusion
//! autoencoder. [`LatentOperator`] is A∘D as one operator on latent rows, so a sampler that
//! only needs A's forward pass and its gradient (DAPS, DPS) runs on a latent prior unchanged —
//! what DAPS's `LatentWrapper` does for LatentDAPS.

use burn::prelude::*;
use dipbench_models::latent::LatentPrior;
use dipbench_nn::NnBackend;
use dipbench_operators::Operator;

/// A∘D: latent rows `[n, c·h·w]` → decoded images (quantising decoder with the
/// straight-through gradient, [`LatentPrior::decode`]) → A. Not linear, whatever A is.
pub struct LatentOperator<'a, B: Backend> {
    pixel: &'a dyn Operator<B>,
    prior: &'a LatentPrior<B>,
}

impl<'a, B: NnBackend> LatentOperator<'a, B> {
    /// A∘D for the pixel operator `pixel` (on the autoencoder's image rows) and the decoder of
    /// `prior`. Fails when A's input is not the decoder's image size.
    pub fn new(pixel: &'a dyn Operator<B>, prior: &'a LatentPrior<B>) -> Result<Self, dipbench_operators::OperatorError> {
        let [c, h, w] = prior.image_shape();
        if pixel.input_dim() != c * h * w {
            return Err(dipbench_operators::OperatorError::Invalid {
                what: format!("operator `{}`", pixel.name()),
                why: format!("takes rows of {} values, the decoder makes {c}×{h}×{w} images", pixel.input_dim()),
            });
        }
        Ok(Self { pixel, prior })
    }

    /// A, on image rows.
    pub fn pixel(&self) -> &'a dyn Operator<B> {
        self.pixel
    }

    /// The latent prior, whose autoencoder D and E are.
    pub fn prior(&self) -> &'a LatentPrior<B> {
        self.prior
    }
}

impl<B: NnBackend> Operator<B> for LatentOperator<'_, B> {
    fn name(&self) -> String {
        format!("{}∘decode", self.pixel.name())
    }

    fn input_dim(&self) -> usize {
        let [c, h, w] = self.prior.latent_shape();
        c * h * w
    }

    fn output_dim(&self) -> usize {
        self.pixel.output_dim()
    }

    /// A(D(z)), differentiable in z through the decoder's straight-through quantiser.
    fn forward(&self, z: Tensor<B, 2>) -> Tensor<B, 2> {
        self.pixel.forward(self.prior.decode(z))
    }
}
