//! Seeded randomness and measurement noise.
//!
//! DESIGN.md: "all noise comes from a seeded host RNG keyed by the job, so a result does not
//! depend on sharding, batch size, resume, or backend". Concretely:
//! - [`derive_seed`] turns a job's identity (experiment seed and the names/indices that identify
//!   the job) into a 64-bit key with a stable, platform-independent hash;
//! - [`SampleRng`] gives every sample (row) of a batch its own xoshiro256++ stream, seeded by
//!   mixing that key with the row index, so row i draws the same numbers whether it is generated
//!   alone or in a batch of N, and whatever the number of threads filling the batch.
//!   (xoshiro256++ rather than ChaCha8: generating the normals was half of DAPS's time on the
//!   GMM benchmark, a third of it in ChaCha's block function.)

use burn::prelude::*;
use rand::rngs::Xoshiro256PlusPlus;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;

/// A stable 64-bit seed from a list of parts: FNV-1a over the parts (each followed by a 0xff
/// separator byte) finished with the SplitMix64 mixer. The same parts give the same seed on
/// every platform and every run.
pub fn derive_seed(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0xffu8)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    splitmix64(h)
}

/// The SplitMix64 finaliser (Steele, Lea & Flood 2014), a bijective 64-bit mixer.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One independent random stream per sample row: row r uses xoshiro256++ seeded with
/// SplitMix64(seed ⊕ SplitMix64(r)). Draws for a batch are made row by row (in parallel over
/// rows), so they are identical for any batch split and any thread count.
#[derive(Debug, Clone)]
pub struct SampleRng {
    rows: Vec<Xoshiro256PlusPlus>,
    /// Recorded standard-normal draws handed out in order instead of fresh ones
    /// ([`SampleRng::replay`]).
    replay: Option<std::collections::VecDeque<Vec<f32>>>,
}

impl SampleRng {
    /// `n` row streams under `seed` (rows 0 … n−1).
    pub fn new(seed: u64, n: usize) -> Self {
        Self::rows(seed, 0..n)
    }

    /// Streams for an arbitrary range of rows, so a batch holding rows `start..end` of a larger
    /// job draws exactly what those rows draw in the full batch.
    pub fn rows(seed: u64, rows: std::ops::Range<usize>) -> Self {
        let rows = rows.map(|r| Xoshiro256PlusPlus::seed_from_u64(splitmix64(seed ^ splitmix64(r as u64)))).collect();
        Self { rows, replay: None }
    }

    /// A stream for `n` rows whose normal draws ([`SampleRng::normal_f32`] and
    /// [`SampleRng::normal`]) are `draws`, in order, each `[n, d]` row-major: how a sampler is run
    /// on the noises a reference implementation injected (golden fixtures). Asking for more
    /// draws than recorded, or for a draw of another size, panics naming the draw.
    pub fn replay(n: usize, draws: Vec<Vec<f32>>) -> Self {
        Self { replay: Some(draws.into()), ..Self::new(0, n) }
    }

    /// The generator of row `i`, for draws from other distributions (rand_distr).
    pub fn row_mut(&mut self, i: usize) -> &mut Xoshiro256PlusPlus {
        &mut self.rows[i]
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// A new, independent `SampleRng` for a named purpose, derived from one u64 drawn from each
    /// row (so sub-streams are also per row).
    pub fn fork(&mut self, purpose: &str) -> Self {
        let key = derive_seed(&[purpose]);
        let rows = self
            .rows
            .iter_mut()
            .map(|r| Xoshiro256PlusPlus::seed_from_u64(splitmix64(r.next_u64() ^ key)))
            .collect();
        Self { rows, replay: None }
    }

    /// `[n, d]` standard normal draws, row-major, as f32 (rand_distr's ziggurat `StandardNormal`).
    pub fn normal_f32(&mut self, d: usize) -> Vec<f32> {
        if let Some(queue) = &mut self.replay {
            let n = self.rows.len() * d;
            let draw = queue.pop_front().unwrap_or_else(|| panic!("replayed SampleRng: no recorded draw left for a normal draw of {n} values"));
            assert_eq!(draw.len(), n, "replayed SampleRng: the recorded draw has {} values, the sampler asks for {n}", draw.len());
            return draw;
        }
        let mut out = vec![0f32; self.rows.len() * d];
        if d == 0 {
            return out;
        }
        out.par_chunks_mut(d).zip(self.rows.par_iter_mut()).for_each(|(chunk, rng)| {
            for v in chunk.iter_mut() {
                *v = StandardNormal.sample(rng);
            }
        });
        out
    }

    /// `[n, d]` standard normal draws as f64 (for host-side exact sampling).
    pub fn normal_f64(&mut self, d: usize) -> Vec<f64> {
        let mut out = vec![0f64; self.rows.len() * d];
        if d == 0 {
            return out;
        }
        out.par_chunks_mut(d).zip(self.rows.par_iter_mut()).for_each(|(chunk, rng)| {
            for v in chunk.iter_mut() {
                *v = StandardNormal.sample(rng);
            }
        });
        out
    }

    /// One uniform draw in [0, 1) per row.
    pub fn uniform(&mut self) -> Vec<f64> {
        self.rows.iter_mut().map(|r| (r.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)).collect()
    }

    /// `[n, d]` standard normals as a tensor on `device`.
    pub fn normal<B: Backend>(&mut self, d: usize, device: &B::Device) -> Tensor<B, 2> {
        let n = self.rows.len();
        Tensor::from_data(TensorData::new(self.normal_f32(d), [n, d]), device)
    }
}

/// Additive Gaussian measurement noise y = A(x) + σ_y·ε, σ_y in the data's own units ([-1, 1]
/// for images, as the reference code: spec/protocols.md §0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GaussianNoise {
    /// Standard deviation σ_y.
    pub sigma: f64,
}

impl GaussianNoise {
    /// Adds σ_y·ε to a batch of clean measurements, ε from the per-row streams of `rng`.
    pub fn apply<B: Backend>(&self, clean: Tensor<B, 2>, rng: &mut SampleRng) -> Tensor<B, 2> {
        let [n, m] = clean.dims();
        assert_eq!(n, rng.len(), "one noise stream per measurement row");
        let device = clean.device();
        clean + rng.normal::<B>(m, &device).mul_scalar(self.sigma)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derive_seed_is_stable_and_separates_parts() {
        assert_eq!(derive_seed(&["a", "b"]), derive_seed(&["a", "b"]));
        assert_ne!(derive_seed(&["ab"]), derive_seed(&["a", "b"]));
        assert_ne!(derive_seed(&["a", "b"]), derive_seed(&["b", "a"]));
    }

    #[test]
    fn rows_are_independent_of_batching() {
        let full = SampleRng::new(7, 10).normal_f32(5);
        let part = SampleRng::rows(7, 3..6).normal_f32(5);
        assert_eq!(&full[15..30], &part[..]);
        let single = SampleRng::rows(7, 9..10).normal_f32(5);
        assert_eq!(&full[45..50], &single[..]);
    }

    #[test]
    fn normals_have_unit_moments() {
        let v = SampleRng::new(1, 100).normal_f64(1000);
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        // 1e5 draws: the standard error of the mean is 3.2e-3, of the variance 4.5e-3.
        assert!(mean.abs() < 0.016, "{mean}");
        assert!((var - 1.0).abs() < 0.023, "{var}");
    }
}

/// Poisson measurement noise of DPS (`PoissonNoise`, spec/protocols.md §1.9): u = clamp((y+1)/2,
/// 0, 1); y′ = Poisson(255·λ·u)/(255·λ), mapped back to [−1, 1] and clamped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoissonNoise {
    /// Rate λ (1.0 in the DPS paper).
    pub rate: f64,
}

impl PoissonNoise {
    /// Applies the noise to a batch of clean measurements, one stream per row.
    pub fn apply<B: Backend>(&self, clean: Tensor<B, 2>, rng: &mut SampleRng) -> Tensor<B, 2> {
        let [n, m] = clean.dims();
        assert_eq!(n, rng.len(), "one noise stream per measurement row");
        let device = clean.device();
        let scale = 255.0 * self.rate;
        let u = clean.mul_scalar(0.5).add_scalar(0.5).clamp(0.0, 1.0).into_data().convert::<f32>();
        let u = u.as_slice::<f32>().expect("f32 data");
        let mut out = vec![0f32; n * m];
        out.par_chunks_mut(m).zip(rng.rows.par_iter_mut()).enumerate().for_each(|(i, (row, r))| {
            for (j, v) in row.iter_mut().enumerate() {
                let lambda = scale * u[i * m + j] as f64;
                let k = if lambda > 0.0 { rand_distr::Poisson::new(lambda).expect("positive rate").sample(r) } else { 0.0 };
                *v = ((k / scale) * 2.0 - 1.0).clamp(-1.0, 1.0) as f32;
            }
        });
        Tensor::from_data(TensorData::new(out, [n, m]), &device)
    }
}
