//! Scaling a tensor and its sum of squares, for gradient clipping (the twin of
//! `kernels/norm.cu`).

use rayon::prelude::*;

use super::{for_each_indexed, CHUNK};

pub fn scale(buf: &mut [f32], factor: f32) {
    for_each_indexed(buf, |_, x| *x *= factor);
}

/// Σx² in f64: per-chunk partial sums, added in chunk order.
pub fn sum_squares(buf: &[f32]) -> f64 {
    let partials: Vec<f64> = buf
        .par_chunks(CHUNK)
        .map(|xs| xs.iter().map(|&x| f64::from(x) * f64::from(x)).sum())
        .collect();
    partials.iter().sum()
}
