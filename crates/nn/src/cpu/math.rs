//! Element-wise math written so that the compiler vectorises it: an `exp` without a library call,
//! the logistic function and SiLU with its derivative, and a helper that runs a loop body with
//! AVX2+FMA enabled when the CPU has them.

/// e^x in float32 without a library call, so that loops over it vectorise.
///
/// Cephes `expf`: x = n·ln2 + r with n = round(x·log₂e) and |r| ≤ ln2/2 (ln2 split in a high and
/// a low part so that r is exact), e^r by its degree-7 minimax polynomial, 2ⁿ assembled in the
/// exponent bits. The input is clamped to [−87.33, 88.37] (e^x stays a normal float); within it
/// the result is within 2 ulp of e^x (tested against f64 `exp`).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5·2²³: adding it rounds to the nearest integer and leaves that integer in the low bits.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.33, 88.37);
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let r2 = r * r;
    let p = ((((1.987_569_1e-4_f32 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1) * r + 5e-1;
    let er = p * r2 + r + 1.0;
    // The integer n sits in the low mantissa bits of t (offset by 0x4B40_0000); add the bias 127.
    let bits = (t.to_bits().wrapping_sub(0x4B40_0000).wrapping_add(127)) << 23;
    er * f32::from_bits(bits)
}

/// The logistic function σ(z) = 1/(1 + e^{−z}).
#[inline(always)]
pub fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + exp(-z))
}

/// SiLU(z) = z·σ(z) (torch `nn.SiLU`).
#[inline(always)]
pub fn silu(z: f32) -> f32 {
    z * sigmoid(z)
}

/// SiLU′(z) = σ(z)·(1 + z·(1 − σ(z))).
#[inline(always)]
pub fn silu_grad(z: f32) -> f32 {
    let s = sigmoid(z);
    s * (1.0 + z * (1.0 - s))
}

/// Defines a function whose body is compiled twice, once with AVX2 and FMA enabled (used when
/// this CPU has them, so that its loops are vectorised 8-wide) and once for the baseline target.
/// The body is an `#[inline(always)]` inner function inlined into both copies. (Plain
/// `a * b + c` is used in such bodies rather than `mul_add`, which would be a library call on
/// CPUs without FMA.)
macro_rules! simd_fn {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: this CPU has the features `avx2` is compiled for.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}
pub(crate) use simd_fn;

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in units in the last place between two floats of the same sign.
    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    #[test]
    fn exp_is_within_two_ulp_of_f64_exp() {
        let mut worst = 0;
        for i in 0..=200_000 {
            let x = -87.0 + 175.0 * i as f32 / 200_000.0;
            let exact = (x as f64).exp() as f32;
            worst = worst.max(ulps(exp(x), exact));
        }
        assert!(worst <= 2, "worst error {worst} ulp");
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn silu_and_its_derivative_match_f64() {
        for i in 0..=20_000 {
            let z = -40.0 + 80.0 * i as f32 / 20_000.0;
            let zd = z as f64;
            let s = 1.0 / (1.0 + (-zd).exp());
            let (want, want_grad) = (zd * s, s * (1.0 + zd * (1.0 - s)));
            assert!((silu(z) as f64 - want).abs() <= 1e-6 * (1.0 + want.abs()), "silu({z})");
            assert!((silu_grad(z) as f64 - want_grad).abs() <= 1e-6, "silu'({z})");
        }
    }
}
