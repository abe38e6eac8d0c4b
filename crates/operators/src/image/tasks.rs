//! The benchmark tasks by name, built exactly as each reference codebase builds them
//! (docs/protocols.md §1). Randomness (masks, kernels) comes from the job's stream.

use dipbench_nn::NnBackend;

use super::bkse::{KernelCode, KernelWizard, NonlinearBlur};
use super::blur::{ConvOperator, gaussian_blur};
use super::inpaint::{InpaintOperator, Mask};
use super::motion::motion_kernel;
use super::phase::{Hdr, PhaseRetrieval, PhaseVariant};
use super::resizer::resize_matrix;
use super::separable::{ImageShape, SeparableOperator};
use crate::error::OperatorError;
use crate::noise::SampleRng;
use crate::operator::Operator;

/// A task of the tables, with the variant where DPS and DAPS differ.
#[derive(Debug, Clone, PartialEq)]
pub enum Task {
    /// Super-resolution ×4 with the MATLAB-style resizer (DPS = DAPS).
    Sr4,
    /// 128×128 box inpainting; margin 16 (DPS) or 32 (DAPS).
    InpaintBox {
        /// Box side.
        size: usize,
        /// Distance kept from the border.
        margin: usize,
    },
    /// Random-pixel inpainting with a missing fraction drawn in [lo, hi).
    InpaintRandom {
        /// Lower bound of the missing fraction.
        lo: f64,
        /// Upper bound.
        hi: f64,
    },
    /// Gaussian deblur (61×61, σ = 3), exact separable SVD with DDRM's `ZERO` threshold.
    DeblurGauss {
        /// Kernel size (61).
        size: usize,
        /// σ (3).
        sigma: f64,
        /// Singular values below this fraction of the largest are treated as zero (DDRM: 3e-2).
        svd_threshold: f64,
    },
    /// Motion deblur with a kernel drawn by the `motionblur` algorithm from the job's stream.
    DeblurMotion {
        /// Kernel size (61).
        size: usize,
        /// Intensity (0.5).
        intensity: f64,
    },
    /// Deblur with a given kernel (e.g. the reference's motion kernels, loaded from a file).
    DeblurKernel {
        /// Kernel size.
        size: usize,
        /// Row-major kernel values.
        kernel: Vec<f32>,
    },
    /// Phase retrieval with oversampling 2.
    PhaseRetrieval {
        /// Oversampling (2.0).
        oversample: f64,
        /// DPS or DAPS variant.
        variant: PhaseVariant,
    },
    /// HDR: clip(2x, −1, 1).
    Hdr,
    /// Nonlinear deblur with the bkse KernelWizard loaded from `checkpoint` (`GOPRO_wVAE.pth`);
    /// kernel code fixed per job (DAPS) or redrawn at every call (DPS, `redraw`).
    NonlinearDeblur {
        /// The checkpoint.
        checkpoint: std::path::PathBuf,
        /// Draw a fresh kernel code at every forward call (DPS's behaviour).
        redraw: bool,
    },
}

/// Whose definition a task follows where DPS and DAPS differ (box margin, random-inpainting
/// fraction, phase-retrieval padding, nonlinear-blur kernel code; docs/protocols.md §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// The DPS code's.
    #[default]
    Dps,
    /// The DAPS code's.
    Daps,
}

impl Variant {
    /// Every variant.
    pub const ALL: [Variant; 2] = [Variant::Dps, Variant::Daps];

    /// The variant's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Dps => "dps",
            Self::Daps => "daps",
        }
    }
}

impl std::str::FromStr for Variant {
    type Err = OperatorError;

    fn from_str(s: &str) -> Result<Self, OperatorError> {
        Self::ALL
            .into_iter()
            .find(|v| v.name() == s)
            .ok_or_else(|| OperatorError::Invalid { what: "task variant".into(), why: format!("`{s}` (known: dps, daps)") })
    }
}

/// The tasks of the tables by name (`sr4`, `inpaint_box`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskName {
    /// Super-resolution ×4.
    Sr4,
    /// 128×128 box inpainting.
    InpaintBox,
    /// Random inpainting (DPS code 30–70 % missing, DAPS ≈70 %).
    InpaintRandom,
    /// Random inpainting with 92 % missing (the DPS paper).
    #[serde(rename = "inpaint_random_92")]
    InpaintRandom92,
    /// Gaussian deblur.
    DeblurGauss,
    /// Motion deblur.
    DeblurMotion,
    /// Phase retrieval.
    PhaseRetrieval,
    /// HDR.
    Hdr,
    /// Nonlinear deblur (bkse; needs its checkpoint).
    #[serde(alias = "nonlinear_deblur")]
    DeblurNonlinear,
}

impl TaskName {
    /// Every task.
    pub const ALL: [TaskName; 9] = [
        TaskName::Sr4,
        TaskName::InpaintBox,
        TaskName::InpaintRandom,
        TaskName::InpaintRandom92,
        TaskName::DeblurGauss,
        TaskName::DeblurMotion,
        TaskName::PhaseRetrieval,
        TaskName::Hdr,
        TaskName::DeblurNonlinear,
    ];

    /// The task's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sr4 => "sr4",
            Self::InpaintBox => "inpaint_box",
            Self::InpaintRandom => "inpaint_random",
            Self::InpaintRandom92 => "inpaint_random_92",
            Self::DeblurGauss => "deblur_gauss",
            Self::DeblurMotion => "deblur_motion",
            Self::PhaseRetrieval => "phase_retrieval",
            Self::Hdr => "hdr",
            Self::DeblurNonlinear => "deblur_nonlinear",
        }
    }

    /// Every task name, comma-separated.
    pub fn all_names() -> String {
        Self::ALL.iter().map(|t| t.name()).collect::<Vec<_>>().join(", ")
    }
}

impl std::fmt::Display for TaskName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for TaskName {
    type Err = OperatorError;

    fn from_str(s: &str) -> Result<Self, OperatorError> {
        let s = if s == "nonlinear_deblur" { "deblur_nonlinear" } else { s };
        Self::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| OperatorError::Invalid { what: "task".into(), why: format!("unknown task `{s}` (known: {})", Self::all_names()) })
    }
}

impl Task {
    /// The task `name` as `variant`'s code defines it: `inpaint_random` is 30–70 % missing
    /// (DPS) or ≈70 % (DAPS), `inpaint_random_92` the DPS paper's 92 %; `deblur_motion` draws its
    /// kernel from the job's stream (to use the reference's kernels, build
    /// [`Task::DeblurKernel`]); `deblur_nonlinear` needs the bkse checkpoint `bkse`.
    pub fn new(name: TaskName, variant: Variant, bkse: Option<&std::path::Path>) -> Result<Self, OperatorError> {
        let daps = variant == Variant::Daps;
        Ok(match name {
            TaskName::Sr4 => Self::Sr4,
            TaskName::InpaintBox => Self::InpaintBox { size: 128, margin: if daps { 32 } else { 16 } },
            TaskName::InpaintRandom if daps => Self::InpaintRandom { lo: 0.70, hi: 0.71 },
            TaskName::InpaintRandom => Self::InpaintRandom { lo: 0.3, hi: 0.7 },
            TaskName::InpaintRandom92 => Self::InpaintRandom { lo: 0.92, hi: 0.92 },
            TaskName::DeblurGauss => Self::DeblurGauss { size: 61, sigma: 3.0, svd_threshold: 3e-2 },
            TaskName::DeblurMotion => Self::DeblurMotion { size: 61, intensity: 0.5 },
            TaskName::PhaseRetrieval => Self::PhaseRetrieval { oversample: 2.0, variant: if daps { PhaseVariant::Daps } else { PhaseVariant::Dps } },
            TaskName::Hdr => Self::Hdr,
            TaskName::DeblurNonlinear => match bkse {
                Some(path) => Self::NonlinearDeblur { checkpoint: path.to_path_buf(), redraw: !daps },
                None => {
                    return Err(OperatorError::Invalid {
                        what: "task `deblur_nonlinear`".into(),
                        why: "needs the bkse checkpoint GOPRO_wVAE.pth (see `dipbench weights`)".into(),
                    });
                }
            },
        })
    }

    /// [`Task::new`] from the names of the task and the variant.
    pub fn by_name(name: &str, variant: &str) -> Result<Self, OperatorError> {
        Self::new(name.parse()?, variant.parse()?, None)
    }
}

impl Task {
    /// The task scaled from the 256-pixel images the papers define it on to images of `side`
    /// pixels: box size and margin, blur kernel size (kept odd, at least 3) and Gaussian σ scale
    /// by side/256; the other tasks are already relative to the image size. Identity at 256.
    /// (Used by the small-image smoke benchmark; paper experiments run at 256.)
    pub fn for_side(self, side: usize) -> Self {
        let f = side as f64 / 256.0;
        let odd = |k: usize| (((k as f64 * f / 2.0).floor() as usize) * 2 + 1).max(3);
        match self {
            Self::InpaintBox { size, margin } => {
                Self::InpaintBox { size: ((size as f64 * f).round() as usize).max(1), margin: (margin as f64 * f).round() as usize }
            }
            Self::DeblurGauss { size, sigma, svd_threshold } => Self::DeblurGauss { size: odd(size), sigma: sigma * f, svd_threshold },
            Self::DeblurMotion { size, intensity } => Self::DeblurMotion { size: odd(size), intensity },
            other => other,
        }
    }
}

/// Builds `task` for images of `shape`; masks draw from `rng` (one row).
pub fn build<B: NnBackend>(task: &Task, shape: ImageShape, rng: &mut SampleRng, device: &B::Device) -> Result<Box<dyn Operator<B>>, OperatorError> {
    Ok(match task {
        Task::Sr4 => {
            let (l, r) = (resize_matrix(shape.h, 0.25), resize_matrix(shape.w, 0.25));
            Box::new(SeparableOperator::new("sr4", shape.c, &l, &r, 0.0, device))
        }
        Task::InpaintBox { size, margin } => {
            Box::new(InpaintOperator::new("inpaint_box", shape.c, Mask::random_box(shape.h, shape.w, *size, *margin, rng)?, device))
        }
        Task::InpaintRandom { lo, hi } => {
            Box::new(InpaintOperator::new("inpaint_random", shape.c, Mask::random_pixels(shape.h, shape.w, *lo, *hi, rng)?, device))
        }
        Task::DeblurGauss { size, sigma, svd_threshold } => Box::new(gaussian_blur::<B>(shape, *size, *sigma, *svd_threshold, device)),
        Task::DeblurMotion { size, intensity } => {
            let kernel = motion_kernel(*size, *intensity, rng);
            Box::new(ConvOperator::new("deblur_motion", shape, &kernel, *size, device)?)
        }
        Task::DeblurKernel { size, kernel } => Box::new(ConvOperator::new("deblur_kernel", shape, kernel, *size, device)?),
        Task::PhaseRetrieval { oversample, variant } => Box::new(PhaseRetrieval::new(shape, *oversample, *variant, device)),
        Task::Hdr => Box::new(Hdr::new(shape, 2.0)),
        Task::NonlinearDeblur { checkpoint, redraw } => {
            let mut src = dipbench_nn::source::MemorySource::from_pytorch(checkpoint, None)
                .map_err(|e| OperatorError::Invalid { what: "bkse checkpoint".into(), why: e.to_string() })?;
            let net = KernelWizard::<B>::load(&mut src, device).map_err(|e| OperatorError::Invalid { what: "bkse checkpoint".into(), why: e.to_string() })?;
            let code = if *redraw {
                KernelCode::RedrawEachCall(std::sync::Mutex::new(rng.fork("bkse kernel code")))
            } else {
                KernelCode::Fixed(NonlinearBlur::<B>::draw_code(shape, rng, device))
            };
            Box::new(NonlinearBlur::new(net, code, shape))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn for_side_is_the_identity_at_256_and_scales_below() {
        for name in ["sr4", "inpaint_box", "inpaint_random", "deblur_gauss", "deblur_motion", "phase_retrieval", "hdr"] {
            for variant in ["dps", "daps"] {
                let t = Task::by_name(name, variant).unwrap();
                assert_eq!(t.clone().for_side(256), t, "{name} ({variant})");
            }
        }
        // 32 px: box 128 → 16 with margin 16 → 2 (DPS); kernel 61 → 7 (odd), σ 3 → 0.375.
        assert_eq!(Task::by_name("inpaint_box", "dps").unwrap().for_side(32), Task::InpaintBox { size: 16, margin: 2 });
        assert_eq!(Task::by_name("deblur_gauss", "dps").unwrap().for_side(32), Task::DeblurGauss { size: 7, sigma: 0.375, svd_threshold: 3e-2 });
        assert_eq!(Task::by_name("deblur_motion", "dps").unwrap().for_side(8), Task::DeblurMotion { size: 3, intensity: 0.5 });
        assert!(Task::by_name("nonlinear_deblur", "dps").map_err(|e| e.to_string()).unwrap_err().contains("deblur_nonlinear"));
    }
}
