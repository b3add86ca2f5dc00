//! Inverted dropout with counter-based masks (the twin of `kernels/dropout.cu`).

use anyhow::Result;

use super::for_each_indexed;
use crate::train::backend::{dropout_keep, dropout_threshold, shape};

/// Writes the dropped-out `inp` into `out`, or with `accumulate` adds it (the backward pass, which
/// applies the same mask and scale to the output gradient).
pub fn apply(out: &mut [f32], inp: &[f32], p: f32, key: u64, accumulate: bool) -> Result<()> {
    shape::len("dropout input", inp.len(), out.len())?;
    anyhow::ensure!(
        (0.0..1.0).contains(&p),
        "dropout probability {p} is not in [0, 1)"
    );
    let threshold = dropout_threshold(p);
    let scale = 1.0 / (1.0 - p);
    for_each_indexed(out, |i, o| {
        let kept = if dropout_keep(key, i as u64, threshold) {
            inp[i] * scale
        } else {
            0.0
        };
        *o = if accumulate { *o + kept } else { kept };
    });
    Ok(())
}
