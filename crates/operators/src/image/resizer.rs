//! The MATLAB-`imresize`-style resizer of DPS and DAPS (`util/resizer.py`, from
//! assafshocher/resizer; docs/protocols.md §1.1), as the 1-D weight matrix it applies along each
//! axis. Downscaling by s: antialiased Keys cubic kernel k_s(d) = s·k(s·d) (a = −0.5, support
//! 4/s input pixels), output j (1-based) centred at p_j = j/s + ½(1 − 1/s), taps
//! floor(p_j − 2/s) − 1 … (+ ceil(4/s) + 2), weights normalised to sum 1 per output, indices
//! folded by the mirror sequence [0…n−1, n−1…0].

use nalgebra::DMatrix;

/// Keys' cubic convolution kernel with a = −0.5 (MATLAB `cubic`).
pub fn cubic(x: f64) -> f64 {
    let a = x.abs();
    if a <= 1.0 {
        1.5 * a * a * a - 2.5 * a * a + 1.0
    } else if a <= 2.0 {
        -0.5 * a * a * a + 2.5 * a * a - 4.0 * a + 2.0
    } else {
        0.0
    }
}

/// The `out_len × in_len` matrix that resizes one axis of length `in_len` by `scale` (< 1:
/// antialiased), computed in f64 exactly as the reference's `contributions`.
pub fn resize_matrix(in_len: usize, scale: f64) -> DMatrix<f64> {
    let out_len = (in_len as f64 * scale).ceil() as usize;
    let antialias = scale < 1.0;
    let kernel_width = if antialias { 4.0 / scale } else { 4.0 };
    let kernel = |d: f64| if antialias { scale * cubic(scale * d) } else { cubic(d) };
    let taps = kernel_width.ceil() as i64 + 2;
    let mirror: Vec<usize> = (0..in_len).chain((0..in_len).rev()).collect();
    let period = mirror.len() as i64;
    let mut m = DMatrix::zeros(out_len, in_len);
    for j in 0..out_len {
        let out_coord = (j + 1) as f64 - (out_len as f64 - in_len as f64 * scale) / 2.0;
        let centre = out_coord / scale + 0.5 * (1.0 - 1.0 / scale);
        let left = (centre - kernel_width / 2.0).floor() as i64;
        let fov: Vec<i64> = (0..taps).map(|t| left + t - 1).collect();
        let w: Vec<f64> = fov.iter().map(|&f| kernel(centre - f as f64 - 1.0)).collect();
        let sum: f64 = w.iter().sum();
        let sum = if sum == 0.0 { 1.0 } else { sum };
        for (f, wt) in fov.iter().zip(&w) {
            let idx = mirror[f.rem_euclid(period) as usize];
            m[(j, idx)] += wt / sum;
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarter_scale_rows_sum_to_one_and_span_sixteen_pixels() {
        let m = resize_matrix(256, 0.25);
        assert_eq!(m.shape(), (64, 256));
        for j in 0..64 {
            let row = m.row(j);
            assert!((row.sum() - 1.0).abs() < 1e-12);
            let nz: Vec<usize> = (0..256).filter(|&i| row[i] != 0.0).collect();
            // Interior rows: 16 taps centred at 4j − 1.5 (0-based 4j + 2.5 − 1 … ).
            if (2..62).contains(&j) {
                assert_eq!(nz.len(), 16, "row {j}: {nz:?}");
                assert_eq!(nz[0], 4 * j + 2 - 8 + 1 - 1);
            }
        }
        // A constant image stays constant.
        let ones = DMatrix::from_element(256, 1, 1.0);
        assert!((m * ones).iter().all(|v| (v - 1.0).abs() < 1e-12));
    }
}
