//! Seeded randomness and measurement noise.
//!
//! All noise comes from seeded streams keyed by the job, so a result does not depend on
//! sharding, batch size, resume, thread count or backend:
//! - [`derive_seed`] turns a job's identity (experiment seed and the names/indices that identify
//!   the job) into a 64-bit key with a stable, platform-independent hash;
//! - [`SampleRng`] gives every sample (row) of a batch its own key, made by mixing that seed with
//!   the row index, and numbers the draws made from it. The numbers are those of the
//!   counter-based generator Philox4x32-10 at (row key, draw number, position)
//!   ([`dipbench_nn::cpu::random`]), so row i draws the same numbers whether it is generated alone
//!   or in a batch of N, on any thread, and a draw can be made inside the kernel that uses it
//!   ([`SampleRng::combine`]).
//!
//! [`NOISE_VERSION`] names this generator; results folders record it.

use burn::prelude::*;
use dipbench_nn::cpu::random::philox4x32;
use dipbench_nn::{NnBackend, NoiseDraw};
use rand_distr::Distribution;
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

/// The version of the random streams: results made with different versions are different
/// numbers (version 1 was xoshiro256++ with ziggurat normals; version 2 is Philox4x32-10 with
/// Box–Muller normals).
pub const NOISE_VERSION: u32 = 2;

/// Kinds of draws, the last counter word of a Philox block (so that a normal draw and a uniform
/// draw with the same number never share numbers).
mod tag {
    pub const NORMAL_F32: u32 = 0;
    pub const NORMAL_F64: u32 = 1;
    pub const UNIFORM: u32 = 2;
    pub const RAW: u32 = 3;
}

/// One row's stream of raw random words (for draws from other distributions with `rand_distr`):
/// Philox blocks with counter (i mod 2³², ⌊i/2³²⌋, 0, raw tag) for i = 0, 1, …, independent of the
/// row's normal and uniform draws.
#[derive(Debug, Clone)]
pub struct RowStream {
    key: [u32; 2],
    next: u64,
}

impl RowStream {
    fn block(&mut self) -> [u32; 4] {
        let b = philox4x32([self.next as u32, (self.next >> 32) as u32, 0, tag::RAW], self.key);
        self.next += 1;
        b
    }
}

impl rand::TryRng for RowStream {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.block()[0])
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let b = self.block();
        Ok(u64::from(b[0]) | (u64::from(b[1]) << 32))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for chunk in dst.chunks_mut(16) {
            let words = self.block();
            let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        Ok(())
    }
}

/// One independent random stream per sample row (module documentation): row r's key is
/// SplitMix64(seed ⊕ SplitMix64(r)); draws are numbered, and all rows of a `SampleRng` make their
/// draws together, so draw number c is the same for every row.
#[derive(Debug, Clone)]
pub struct SampleRng {
    keys: Vec<[u32; 2]>,
    draws: u64,
    raw: Vec<RowStream>,
    /// Recorded standard-normal draws handed out in order instead of fresh ones
    /// ([`SampleRng::replay`]).
    replay: Option<std::collections::VecDeque<Vec<f32>>>,
}

fn key_of(k: u64) -> [u32; 2] {
    [k as u32, (k >> 32) as u32]
}

fn key_u64(k: [u32; 2]) -> u64 {
    u64::from(k[0]) | (u64::from(k[1]) << 32)
}

impl SampleRng {
    /// `n` row streams under `seed` (rows 0 … n−1).
    pub fn new(seed: u64, n: usize) -> Self {
        Self::rows(seed, 0..n)
    }

    /// Streams for an arbitrary range of rows, so a batch holding rows `start..end` of a larger
    /// job draws exactly what those rows draw in the full batch.
    pub fn rows(seed: u64, rows: std::ops::Range<usize>) -> Self {
        Self::from_keys(rows.map(|r| key_of(splitmix64(seed ^ splitmix64(r as u64)))).collect())
    }

    /// One row per seed, row k being row 0 of `SampleRng::new(seeds[k], 1)`: a batch of
    /// independent jobs (each with its own seed) draws exactly what each job draws alone.
    pub fn from_seeds(seeds: &[u64]) -> Self {
        Self::from_keys(seeds.iter().map(|&s| key_of(splitmix64(s ^ splitmix64(0)))).collect())
    }

    fn from_keys(keys: Vec<[u32; 2]>) -> Self {
        let raw = keys.iter().map(|&key| RowStream { key, next: 0 }).collect();
        Self { keys, draws: 0, raw, replay: None }
    }

    /// A stream for `n` rows whose normal draws ([`SampleRng::normal_f32`],
    /// [`SampleRng::normal`] and the noise of [`SampleRng::combine`]) are `draws`, in order, each
    /// `[n, d]` row-major: how a sampler is run on the noises a reference implementation
    /// injected (golden fixtures). Asking for more draws than recorded, or for a draw of another
    /// size, panics naming the draw.
    pub fn replay(n: usize, draws: Vec<Vec<f32>>) -> Self {
        Self { replay: Some(draws.into()), ..Self::new(0, n) }
    }

    /// The raw word stream of row `i`, for draws from other distributions (rand_distr).
    pub fn row_mut(&mut self, i: usize) -> &mut RowStream {
        &mut self.raw[i]
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The number of the next draw (and counts it).
    fn next_draw(&mut self) -> u64 {
        let c = self.draws;
        self.draws += 1;
        c
    }

    /// A new, independent `SampleRng` for a named purpose: each row's key mixed with the
    /// purpose and this stream's draw number (which it counts, so two forks differ).
    pub fn fork(&mut self, purpose: &str) -> Self {
        let p = derive_seed(&[purpose]);
        let c = splitmix64(self.next_draw());
        Self::from_keys(self.keys.iter().map(|&k| key_of(splitmix64(key_u64(k) ^ p ^ c))).collect())
    }

    /// The next recorded draw (replay mode), checked to have `n` values.
    fn replayed(&mut self, n: usize) -> Option<Vec<f32>> {
        let queue = self.replay.as_mut()?;
        let draw = queue.pop_front().unwrap_or_else(|| panic!("replayed SampleRng: no recorded draw left for a normal draw of {n} values"));
        assert_eq!(draw.len(), n, "replayed SampleRng: the recorded draw has {} values, the sampler asks for {n}", draw.len());
        Some(draw)
    }

    /// The next draw of standard normals as a description ([`NoiseDraw`]), to be made where it is
    /// used.
    pub fn normal_draw(&mut self) -> NoiseDraw {
        NoiseDraw { keys: self.keys.clone(), counter: self.next_draw(), tag: tag::NORMAL_F32 }
    }

    /// `[n, d]` standard normal draws, row-major, as f32 (Box–Muller, [`dipbench_nn::cpu::random`]).
    pub fn normal_f32(&mut self, d: usize) -> Vec<f32> {
        if let Some(draw) = self.replayed(self.len() * d) {
            return draw;
        }
        self.normal_draw().host(d)
    }

    /// `[n, d]` standard normal draws as f64 (for host-side exact sampling): Box–Muller on two
    /// 53-bit uniforms per Philox block, element j from block ⌊j/2⌋.
    pub fn normal_f64(&mut self, d: usize) -> Vec<f64> {
        let c = self.next_draw();
        let (lo, hi) = (c as u32, (c >> 32) as u32);
        let mut out = vec![0f64; self.len() * d];
        if d == 0 {
            return out;
        }
        out.par_chunks_mut(d).zip(self.keys.par_iter()).for_each(|(row, &key)| {
            for (j, v) in row.iter_mut().enumerate() {
                let w = philox4x32([(j / 2) as u32, lo, hi, tag::NORMAL_F64], key);
                let u1 = (((u64::from(w[0]) << 32 | u64::from(w[1])) >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64);
                let u2 = ((u64::from(w[2]) << 32 | u64::from(w[3])) >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
                let (s, co) = (std::f64::consts::TAU * u2).sin_cos();
                *v = (-2.0 * u1.ln()).sqrt() * if j % 2 == 0 { co } else { s };
            }
        });
        out
    }

    /// One uniform draw in [0, 1) per row (53 bits).
    pub fn uniform(&mut self) -> Vec<f64> {
        let c = self.next_draw();
        self.keys
            .iter()
            .map(|&key| {
                let w = philox4x32([0, c as u32, (c >> 32) as u32, tag::UNIFORM], key);
                ((u64::from(w[0]) << 32 | u64::from(w[1])) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
            })
            .collect()
    }

    /// `[n, d]` standard normals as a tensor on `device`.
    pub fn normal<B: Backend>(&mut self, d: usize, device: &B::Device) -> Tensor<B, 2> {
        let n = self.len();
        Tensor::from_data(TensorData::new(self.normal_f32(d), [n, d]), device)
    }

    /// Σᵢ cᵢ·tᵢ + s·ε with ε the next normal draw (`[n, d]` terms, one row per stream), in one
    /// pass where the backend fuses it ([`NnBackend::combine`]); with `noise_scale` = 0 no draw
    /// is made. In replay mode ε is the next recorded draw.
    pub fn combine<B: NnBackend>(&mut self, terms: Vec<(Tensor<B, 2>, f64)>, noise_scale: f64) -> Tensor<B, 2> {
        let [n, d] = terms.first().expect("at least one term").0.dims();
        assert_eq!(n, self.len(), "one stream per row");
        if noise_scale != 0.0
            && let Some(eps) = self.replayed(n * d)
        {
            let device = terms[0].0.device();
            let mut all = terms;
            all.push((Tensor::from_data(TensorData::new(eps, [n, d]), &device), noise_scale));
            return combine::<B>(all, None);
        }
        let noise = (noise_scale != 0.0).then(|| (noise_scale, self.normal_draw()));
        combine::<B>(terms, noise)
    }

    /// [`SampleRng::combine`] with the term c·Aᵀ(A·t₀ − y) of `ls` after `terms` (t₀ the first
    /// term), in one pass where the backend fuses it (`NnBackend::combine_least_squares`). In
    /// replay mode the gradient is made with matrix products and ε is the next recorded draw.
    pub fn combine_least_squares<B: NnBackend>(&mut self, terms: Vec<(Tensor<B, 2>, f64)>, ls: LeastSquaresTerm<B>, noise_scale: f64) -> Tensor<B, 2> {
        let [n, d] = terms.first().expect("at least one term").0.dims();
        assert_eq!(n, self.len(), "one stream per row");
        if noise_scale != 0.0
            && let Some(eps) = self.replayed(n * d)
        {
            let device = terms[0].0.device();
            let grad = dipbench_nn::backend::least_squares_gradient(terms[0].0.clone(), ls.a, ls.y);
            let mut all = terms;
            all.push((grad, ls.c));
            all.push((Tensor::from_data(TensorData::new(eps, [n, d]), &device), noise_scale));
            return combine::<B>(all, None);
        }
        let noise = (noise_scale != 0.0).then(|| (noise_scale, self.normal_draw()));
        let prims = terms.into_iter().map(|(t, c)| (t.into_primitive().tensor(), c)).collect();
        let (a, y) = (ls.a.into_primitive().tensor(), ls.y.into_primitive().tensor());
        Tensor::from_primitive(burn::tensor::TensorPrimitive::Float(B::combine_least_squares(prims, a, y, ls.c, noise)))
    }
}

/// [`SampleRng::combine_least_squares`]'s term: c·Aᵀ(A·t₀ − y) for a dense A `[m, d]` and y
/// `[n, m]` (`NnBackend::combine_least_squares`).
#[derive(Debug, Clone)]
pub struct LeastSquaresTerm<B: Backend> {
    /// A `[m, d]`.
    pub a: Tensor<B, 2>,
    /// y `[n, m]`.
    pub y: Tensor<B, 2>,
    /// The coefficient c.
    pub c: f64,
}

/// Σᵢ cᵢ·tᵢ over `[n, d]` terms, summed left to right, in one pass where the backend fuses it
/// ([`NnBackend::combine`] without noise): bit for bit burn's `t₀·c₀ + t₁·c₁ + …` (each product
/// and sum rounded once, none fused), with one output written instead of one per operation.
pub fn linear_combination<B: NnBackend>(terms: Vec<(Tensor<B, 2>, f64)>) -> Tensor<B, 2> {
    combine(terms, None)
}

/// [`NnBackend::combine`] on tensors.
fn combine<B: NnBackend>(terms: Vec<(Tensor<B, 2>, f64)>, noise: Option<(f64, NoiseDraw)>) -> Tensor<B, 2> {
    let prims = terms.into_iter().map(|(t, c)| (t.into_primitive().tensor(), c)).collect();
    Tensor::from_primitive(burn::tensor::TensorPrimitive::Float(B::combine(prims, noise)))
}

/// Additive Gaussian measurement noise y = A(x) + σ_y·ε, σ_y in the data's own units ([-1, 1]
/// for images, as the reference code: docs/protocols.md §0).
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
    fn a_batch_of_seeds_draws_what_each_seed_draws_alone() {
        let seeds = [3u64, 99, 7];
        let batch = SampleRng::from_seeds(&seeds).normal_f32(40);
        for (k, &s) in seeds.iter().enumerate() {
            assert_eq!(&batch[40 * k..40 * (k + 1)], &SampleRng::new(s, 1).normal_f32(40)[..]);
        }
    }

    #[test]
    fn combine_adds_the_next_normal_draw_fused_or_not() {
        use burn::backend::{Autodiff, Flex};
        let dev = Default::default();
        let x = SampleRng::new(3, 4).normal::<Flex>(70, &dev);
        let y = SampleRng::new(4, 4).normal::<Flex>(70, &dev);
        let mut a = SampleRng::new(5, 4);
        let mut b = a.clone();
        // Fused on the CPU backend …
        let fused = a.combine::<Flex>(vec![(x.clone(), 0.5), (y.clone(), -2.0)], 0.3);
        // … equals the same sum with the draw made as a tensor (same numbers, same order of
        // float32 operations) …
        let eps = b.normal::<Flex>(70, &dev);
        let plain = x.clone().mul_scalar(0.5) + y.clone().mul_scalar(-2.0) + eps.mul_scalar(0.3);
        assert_eq!(fused.to_data(), plain.to_data());
        // … and the recorded burn operations of the autodiff backend when a term is tracked.
        let xa = Tensor::<Autodiff<Flex>, 2>::from_data(x.to_data(), &dev).require_grad();
        let ya = Tensor::<Autodiff<Flex>, 2>::from_data(y.to_data(), &dev);
        let taped = SampleRng::new(5, 4).combine::<Autodiff<Flex>>(vec![(xa, 0.5), (ya, -2.0)], 0.3);
        assert_eq!(taped.inner().to_data(), plain.to_data());
        // Draws advance: the next combine uses new noise.
        let again = a.combine::<Flex>(vec![(x.clone(), 0.5), (y, -2.0)], 0.3);
        assert_ne!(again.to_data(), fused.to_data());
        // Replay hands out the recorded draw.
        let recorded = vec![1.0f32; 4 * 70];
        let replayed = SampleRng::replay(4, vec![recorded]).combine::<Flex>(vec![(x.clone(), 1.0)], 2.0);
        assert_eq!(replayed.to_data(), x.add_scalar(2.0).to_data());
    }

    #[test]
    fn combine_least_squares_is_the_gradient_step_fused_or_not() {
        use burn::backend::{Autodiff, Flex};
        let dev = Default::default();
        let (n, m, d) = (5, 3, 70);
        let x = SampleRng::new(3, n).normal::<Flex>(d, &dev);
        let h = SampleRng::new(4, n).normal::<Flex>(d, &dev);
        let a = SampleRng::new(6, m).normal::<Flex>(d, &dev);
        let y = SampleRng::new(7, n).normal::<Flex>(m, &dev);
        let ls = |a: Tensor<Flex, 2>, y: Tensor<Flex, 2>| LeastSquaresTerm { a, y, c: -0.125 };
        let mut fused_rng = SampleRng::new(5, n);
        let fused = fused_rng.combine_least_squares::<Flex>(vec![(x.clone(), 0.5), (h.clone(), 0.75)], ls(a.clone(), y.clone()), 0.3);
        // The same step with the gradient Aᵀ(Ax − y) from matrix products and the draw made as
        // a tensor. The fused residuals sum 70 products in another order: float32 rounding of
        // terms O(10) → 1e-5 absolute on entries O(1), with room.
        let eps = SampleRng::new(5, n).normal::<Flex>(d, &dev);
        let grad = (x.clone().matmul(a.clone().transpose()) - y.clone()).matmul(a.clone());
        let plain = x.clone().mul_scalar(0.5) + h.clone().mul_scalar(0.75) + grad.mul_scalar(-0.125) + eps.mul_scalar(0.3);
        let worst = (fused.clone() - plain.clone()).abs().max().into_scalar();
        assert!(worst < 1e-5, "fused vs matrix products: {worst}");
        // A tracked term takes the recorded burn operations: bit for bit the matrix-product
        // version (which the fused one is not: its residual sums run in another order), and x
        // gets its gradient, 0.5·1 − 0.125·(1ᵀAᵀA) summed over the rows' elements.
        let track = |t: &Tensor<Flex, 2>| Tensor::<Autodiff<Flex>, 2>::from_data(t.to_data(), &dev);
        let xt = track(&x).require_grad();
        let taped = SampleRng::new(5, n).combine_least_squares::<Autodiff<Flex>>(
            vec![(xt.clone(), 0.5), (track(&h), 0.75)],
            LeastSquaresTerm { a: track(&a), y: track(&y), c: -0.125 },
            0.3,
        );
        let composed = dipbench_nn::backend::combine_least_squares_composed::<Flex>(
            vec![(x.clone(), 0.5), (h.clone(), 0.75)],
            a.clone(),
            y.clone(),
            -0.125,
            Some((0.3, SampleRng::new(5, n).normal_draw())),
        );
        assert_eq!(taped.clone().inner().to_data(), composed.to_data());
        assert_ne!(fused.to_data(), composed.to_data(), "the fused sums round differently, so this check tells the paths apart");
        let dx = xt.grad(&taped.sum().backward()).expect("x is tracked");
        let ata_cols = a.clone().transpose().matmul(a.clone()).sum_dim(0);
        let want = ata_cols.mul_scalar(-0.125).add_scalar(0.5).expand([n, d]);
        assert!((dx - want).abs().max().into_scalar() < 1e-5);
        // Untracked autodiff tensors run the fused kernel: the same numbers as on Flex.
        let untracked = SampleRng::new(5, n).combine_least_squares::<Autodiff<Flex>>(
            vec![(track(&x), 0.5), (track(&h), 0.75)],
            LeastSquaresTerm { a: track(&a), y: track(&y), c: -0.125 },
            0.3,
        );
        assert_eq!(untracked.inner().to_data(), fused.to_data());
        // Replay hands out the recorded draw after the gradient term.
        let recorded = vec![1.0f32; n * d];
        let replayed = SampleRng::replay(n, vec![recorded]).combine_least_squares::<Flex>(vec![(x.clone(), 1.0)], ls(a.clone(), y.clone()), 2.0);
        let grad = (x.clone().matmul(a.clone().transpose()) - y).matmul(a);
        assert_eq!(replayed.to_data(), (x + grad.mul_scalar(-0.125)).add_scalar(2.0).to_data());
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

/// Poisson measurement noise of DPS (`PoissonNoise`, docs/protocols.md §1.9): u = clamp((y+1)/2,
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
        out.par_chunks_mut(m).zip(rng.raw.par_iter_mut()).enumerate().for_each(|(i, (row, r))| {
            for (j, v) in row.iter_mut().enumerate() {
                let lambda = scale * u[i * m + j] as f64;
                let k = if lambda > 0.0 { rand_distr::Poisson::new(lambda).expect("positive rate").sample(r) } else { 0.0 };
                *v = ((k / scale) * 2.0 - 1.0).clamp(-1.0, 1.0) as f32;
            }
        });
        Tensor::from_data(TensorData::new(out, [n, m]), &device)
    }
}
