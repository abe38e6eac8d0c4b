//! Antialiased image resampling as the papers' data pipelines do it.
//!
//! Two arithmetics of one separable filter:
//! - [`resize_u8`]: PIL's `Image.resize` (Pillow's `ImagingResample`), bit for bit: filter taps
//!   in double precision, normalised, turned into 22-bit fixed point, a horizontal pass rounded
//!   to 8 bits, then a vertical pass rounded to 8 bits. torchvision's `Resize` on a PIL image is
//!   this call.
//! - [`resize_f32`]: torchvision's `Resize` on a float tensor with `antialias=True` (the DAPS
//!   loader resizes the tensor after `ToTensor`): the same taps, applied in floating point with
//!   no rounding between or after the passes.
//!
//! The filter of output pixel `i` (input size `n`, output size `m`, scale `s = n/m`, stretch
//! `f = max(s, 1)`): centre `c = (i + ½)·s`, support `r = R·f` (R = ½ box, 1 bilinear, 2 bicubic),
//! taps `j ∈ [⌊c − r + ½⌋, ⌊c + r + ½⌋) ∩ [0, n)`, weights `K((j − c + ½)/f)` divided by their sum.

use image::RgbImage;

/// Pillow's resampling filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// `Image.BOX`: K(x) = 1 on (−½, ½].
    Box,
    /// `Image.BILINEAR`: the triangle K(x) = max(0, 1 − |x|).
    Bilinear,
    /// `Image.BICUBIC`: Keys' cubic with a = −½.
    Bicubic,
}

impl Filter {
    /// R, the filter's support at scale 1.
    fn support(self) -> f64 {
        match self {
            Filter::Box => 0.5,
            Filter::Bilinear => 1.0,
            Filter::Bicubic => 2.0,
        }
    }

    /// K(x), as Pillow's `box_filter`, `bilinear_filter`, `bicubic_filter`.
    fn weight(self, x: f64) -> f64 {
        match self {
            Filter::Box => {
                if x > -0.5 && x <= 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
            Filter::Bilinear => {
                let x = x.abs();
                if x < 1.0 { 1.0 - x } else { 0.0 }
            }
            Filter::Bicubic => {
                let a = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * a
                } else {
                    0.0
                }
            }
        }
    }
}

/// The taps of every output pixel along one axis: first input index and normalised weights.
struct Taps {
    first: Vec<usize>,
    weights: Vec<Vec<f64>>,
}

/// Pillow's `precompute_coeffs` for a resize of `n` input pixels to `m` (box = the whole input).
fn taps(n: usize, m: usize, filter: Filter) -> Taps {
    let scale = n as f64 / m as f64;
    let stretch = scale.max(1.0);
    let support = filter.support() * stretch;
    let mut first = Vec::with_capacity(m);
    let mut weights = Vec::with_capacity(m);
    for i in 0..m {
        let centre = (i as f64 + 0.5) * scale;
        // C's (int) truncates toward zero; clamped at 0 it equals the floor.
        let lo = ((centre - support + 0.5) as i64).max(0) as usize;
        let hi = ((centre + support + 0.5) as i64).min(n as i64) as usize;
        let mut w: Vec<f64> = (lo..hi).map(|j| filter.weight((j as f64 - centre + 0.5) / stretch)).collect();
        let sum: f64 = w.iter().sum();
        if sum != 0.0 {
            w.iter_mut().for_each(|k| *k /= sum);
        }
        first.push(lo);
        weights.push(w);
    }
    Taps { first, weights }
}

/// Pillow's fixed-point precision for 8-bit images: 32 − 8 − 2 bits.
const PRECISION_BITS: u32 = 22;

/// Pillow's `normalize_coeffs_8bpc`: each weight × 2²², rounded half away from zero as C's
/// `(int)(±0.5 + w·2²²)` does.
fn fixed(t: &Taps) -> Vec<Vec<i64>> {
    let one = f64::from(1u32 << PRECISION_BITS);
    t.weights.iter().map(|w| w.iter().map(|&k| if k < 0.0 { (-0.5 + k * one) as i32 as i64 } else { (0.5 + k * one) as i32 as i64 }).collect()).collect()
}

/// Pillow's `clip8`: the accumulator (with its ½ already added) shifted down and clamped.
fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// One pass of a separable resize over a channels-last RGB buffer of `w × h` pixels: the axis
/// (`horizontal` or vertical) becomes `n_out` pixels long, and output pixel i of a line, channel
/// c, is `value(i, get)` where `get(j)` reads input pixel j of the same line and channel.
fn pass<T: Copy, U>(src: &[T], (w, h): (usize, usize), horizontal: bool, n_out: usize, value: impl Fn(usize, &dyn Fn(usize) -> T) -> U) -> Vec<U> {
    let (ow, oh) = if horizontal { (n_out, h) } else { (w, n_out) };
    let mut out = Vec::with_capacity(ow * oh * 3);
    for y in 0..oh {
        for x in 0..ow {
            for c in 0..3 {
                out.push(if horizontal { value(x, &|j| src[(y * w + j) * 3 + c]) } else { value(y, &|j| src[(j * w + x) * 3 + c]) });
            }
        }
    }
    out
}

/// `img.resize((width, height), filter)` in Pillow, bit for bit: the horizontal pass (when the
/// width changes) rounded to 8 bits, then the vertical pass (when the height changes).
pub fn resize_u8(img: &RgbImage, width: u32, height: u32, filter: Filter) -> RgbImage {
    let half = 1i64 << (PRECISION_BITS - 1);
    let (mut w, mut h) = (img.width() as usize, img.height() as usize);
    let mut cur: Vec<u8> = img.as_raw().clone();
    for (horizontal, n_out) in [(true, width as usize), (false, height as usize)] {
        let n_in = if horizontal { w } else { h };
        if n_out == n_in {
            continue;
        }
        let t = taps(n_in, n_out, filter);
        let k = fixed(&t);
        cur = pass(&cur, (w, h), horizontal, n_out, |i, get| {
            clip8(half + k[i].iter().enumerate().map(|(j, &kj)| i64::from(get(t.first[i] + j)) * kj).sum::<i64>())
        });
        if horizontal { w = n_out } else { h = n_out }
    }
    RgbImage::from_raw(w as u32, h as u32, cur).expect("buffer of the resized size")
}

/// A float image, channels last (`h × w × 3`), values in whatever range the caller uses.
#[derive(Debug, Clone, PartialEq)]
pub struct FloatImage {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `height · width · 3` values, row-major, channels last.
    pub data: Vec<f64>,
}

impl FloatImage {
    /// `ToTensor`: each 8-bit value divided by 255.
    pub fn from_u8(img: &RgbImage) -> Self {
        Self { width: img.width() as usize, height: img.height() as usize, data: img.as_raw().iter().map(|&v| f64::from(v) / 255.0).collect() }
    }
}

/// torchvision `Resize` of a float tensor with `antialias=True`: the taps of [`resize_u8`]
/// applied in floating point, horizontal then vertical, without rounding.
pub fn resize_f32(img: &FloatImage, width: usize, height: usize, filter: Filter) -> FloatImage {
    let (mut w, mut h) = (img.width, img.height);
    let mut cur = img.data.clone();
    for (horizontal, n_out) in [(true, width), (false, height)] {
        let n_in = if horizontal { w } else { h };
        if n_out == n_in {
            continue;
        }
        let t = taps(n_in, n_out, filter);
        cur = pass(&cur, (w, h), horizontal, n_out, |i, get| t.weights[i].iter().enumerate().map(|(j, &kj)| get(t.first[i] + j) * kj).sum::<f64>());
        if horizontal { w = n_out } else { h = n_out }
    }
    FloatImage { width: w, height: h, data: cur }
}

/// torchvision `Resize(side)` with one size: the short side becomes `side`, the long side
/// `int(side · long / short)` (truncated); an image already of that size is returned as is.
pub fn short_side_size(width: usize, height: usize, side: usize) -> (usize, usize) {
    let (short, long) = (width.min(height), width.max(height));
    let new_long = ((side * long) as f64 / short as f64) as usize;
    if width <= height { (side, new_long) } else { (new_long, side) }
}

/// torchvision `CenterCrop(side)` offsets: `int(round((size − side)/2))` with Python's round
/// (half to even).
pub fn centre_crop_offsets(width: usize, height: usize, side: usize) -> (usize, usize) {
    let off = |n: usize| ((n as f64 - side as f64) / 2.0).round_ties_even().max(0.0) as usize;
    (off(width), off(height))
}

/// `Compose([Resize(side), CenterCrop(side)])` on a PIL image (8-bit result).
pub fn resize_crop_u8(img: &RgbImage, side: usize) -> RgbImage {
    let (w, h) = short_side_size(img.width() as usize, img.height() as usize, side);
    let resized = if (w, h) == (img.width() as usize, img.height() as usize) { img.clone() } else { resize_u8(img, w as u32, h as u32, Filter::Bilinear) };
    let (left, top) = centre_crop_offsets(w, h, side);
    image::imageops::crop_imm(&resized, left as u32, top as u32, side as u32, side as u32).to_image()
}

/// `Compose([ToTensor(), Resize(side, antialias=True), CenterCrop(side)])` (the DAPS loader):
/// values in [0, 1], not rounded.
pub fn resize_crop_f32(img: &RgbImage, side: usize) -> FloatImage {
    let (w, h) = short_side_size(img.width() as usize, img.height() as usize, side);
    let full = FloatImage::from_u8(img);
    let resized = if (w, h) == (full.width, full.height) { full } else { resize_f32(&full, w, h, Filter::Bilinear) };
    let (left, top) = centre_crop_offsets(w, h, side);
    let mut data = Vec::with_capacity(side * side * 3);
    for y in top..top + side {
        let start = (y * resized.width + left) * 3;
        data.extend_from_slice(&resized.data[start..start + side * 3]);
    }
    FloatImage { width: side, height: side, data }
}

/// guided-diffusion's `center_crop_arr(image, side)` (the ADM training loader): halve with
/// `BOX` while the short side is at least `2·side`, `BICUBIC` to a short side of `side`
/// (sizes rounded half to even, as Python's `round`), then the centre crop
/// (`(size − side) // 2`).
pub fn centre_crop_arr(img: &RgbImage, side: usize) -> RgbImage {
    let mut cur = img.clone();
    while (cur.width().min(cur.height()) as usize) >= 2 * side {
        cur = resize_u8(&cur, cur.width() / 2, cur.height() / 2, Filter::Box);
    }
    let scale = side as f64 / f64::from(cur.width().min(cur.height()));
    let (w, h) = ((f64::from(cur.width()) * scale).round_ties_even() as u32, (f64::from(cur.height()) * scale).round_ties_even() as u32);
    if (w, h) != cur.dimensions() {
        cur = resize_u8(&cur, w, h, Filter::Bicubic);
    }
    let (left, top) = ((w as usize - side) / 2, (h as usize - side) / 2);
    image::imageops::crop_imm(&cur, left as u32, top as u32, side as u32, side as u32).to_image()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Box halving in Pillow's fixed point is ⌊(a + b + 1)/2⌋ = ⌈(a + b)/2⌉ per pass (weights ½ = 2²¹, plus
    /// the rounding ½ = 2²¹): a closed form independent of the tap code.
    #[test]
    fn box_halving_is_the_rounded_pair_mean_per_pass() {
        let img = RgbImage::from_fn(6, 4, |x, y| image::Rgb([(x * 37 + y * 11) as u8, (x * 101 + y * 53) as u8 ^ 0x5a, (255 - x * 40 - y * 3) as u8]));
        let out = resize_u8(&img, 3, 2, Filter::Box);
        for y in 0..2u32 {
            for x in 0..3u32 {
                for c in 0..3 {
                    let p = |xx: u32, yy: u32| u32::from(img.get_pixel(xx, yy)[c]);
                    let top = (p(2 * x, 2 * y) + p(2 * x + 1, 2 * y)).div_ceil(2);
                    let bottom = (p(2 * x, 2 * y + 1) + p(2 * x + 1, 2 * y + 1)).div_ceil(2);
                    assert_eq!(u32::from(out.get_pixel(x, y)[c]), (top + bottom).div_ceil(2), "pixel ({x}, {y}) channel {c}");
                }
            }
        }
    }

    /// A constant image stays constant under every filter (the taps are normalised).
    #[test]
    fn constant_images_stay_constant() {
        let img = RgbImage::from_pixel(37, 23, image::Rgb([7, 128, 250]));
        for f in [Filter::Box, Filter::Bilinear, Filter::Bicubic] {
            for (w, h) in [(10, 9), (64, 40), (37, 5)] {
                assert!(resize_u8(&img, w, h, f).pixels().all(|p| p.0 == [7, 128, 250]), "{f:?} {w}×{h}");
                let r = resize_f32(&FloatImage::from_u8(&img), w as usize, h as usize, f);
                let want = [7.0 / 255.0, 128.0 / 255.0, 250.0 / 255.0];
                assert!(r.data.chunks(3).all(|p| p.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12)), "{f:?} {w}×{h}");
            }
        }
    }

    #[test]
    fn torchvision_sizes_and_offsets() {
        assert_eq!(short_side_size(500, 375, 256), (341, 256));
        assert_eq!(short_side_size(375, 500, 256), (256, 341));
        assert_eq!(centre_crop_offsets(341, 256, 256), (42, 0)); // 42.5 rounds to even
        assert_eq!(centre_crop_offsets(383, 256, 256), (64, 0)); // 63.5 rounds to even
    }
}
