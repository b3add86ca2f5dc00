//! GELU, tanh approximation (the twin of `kernels/gelu.cu`).

use anyhow::Result;

use super::for_each_indexed;
use crate::train::backend::shape;

const GELU_SCALE: f32 = 0.797_884_6; // sqrt(2 / π)
const GELU_CUBIC: f32 = 0.044_715;

/// `tanh` through one `exp`: libm's `tanhf` was a third of a `tiny` training step. Exact at both
/// ends (`exp` overflowing to infinity gives 1); near 0 its absolute error is a few f32 ulps of 1,
/// which is all GELU can see, since it only ever adds the result to 1.
fn tanh(u: f32) -> f32 {
    1.0 - 2.0 / ((2.0 * u).exp() + 1.0)
}

pub fn forward(out: &mut [f32], inp: &[f32]) -> Result<()> {
    shape::len("gelu input", inp.len(), out.len())?;
    for_each_indexed(out, |i, o| {
        let x = inp[i];
        let u = GELU_SCALE * (x + GELU_CUBIC * x * x * x);
        *o = 0.5 * x * (1.0 + tanh(u));
    });
    Ok(())
}

pub fn backward(dinp: &mut [f32], inp: &[f32], dout: &[f32]) -> Result<()> {
    shape::len("gelu input", inp.len(), dinp.len())?;
    shape::len("gelu output gradient", dout.len(), dinp.len())?;
    for_each_indexed(dinp, |i, d| {
        let x = inp[i];
        let u = GELU_SCALE * (x + GELU_CUBIC * x * x * x);
        let th = tanh(u);
        let du = GELU_SCALE * (1.0 + 3.0 * GELU_CUBIC * x * x);
        let grad = 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * du;
        *d += grad * dout[i];
    });
    Ok(())
}
