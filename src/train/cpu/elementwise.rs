//! Element-wise kernels: GELU, residual add, dropout, AdamW, scaling and the sum of squares.

use anyhow::Result;
use rayon::prelude::*;

use crate::train::backend::shape;
use crate::train::backend::{dropout_keep, dropout_threshold, AdamWUpdate};

/// Elements per rayon task: large enough to amortize scheduling, fixed so results do not depend
/// on the thread count.
const CHUNK: usize = 1 << 14;

/// Runs `f(i, &mut out[i])` for every element, in parallel chunks.
fn for_each_indexed(out: &mut [f32], f: impl Fn(usize, &mut f32) + Sync) {
    out.par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(chunk, xs)| {
            let base = chunk * CHUNK;
            for (j, x) in xs.iter_mut().enumerate() {
                f(base + j, x);
            }
        });
}

const GELU_SCALE: f32 = 0.797_884_6; // sqrt(2 / π)
const GELU_CUBIC: f32 = 0.044_715;

/// `tanh` through one `exp`: libm's `tanhf` was a third of a `tiny` training step. Exact at both
/// ends (`exp` overflowing to infinity gives 1); near 0 its absolute error is a few f32 ulps of 1,
/// which is all GELU can see, since it only ever adds the result to 1.
fn tanh(u: f32) -> f32 {
    1.0 - 2.0 / ((2.0 * u).exp() + 1.0)
}

pub fn gelu_forward(out: &mut [f32], inp: &[f32]) -> Result<()> {
    shape::len("gelu input", inp.len(), out.len())?;
    for_each_indexed(out, |i, o| {
        let x = inp[i];
        let u = GELU_SCALE * (x + GELU_CUBIC * x * x * x);
        *o = 0.5 * x * (1.0 + tanh(u));
    });
    Ok(())
}

pub fn gelu_backward(dinp: &mut [f32], inp: &[f32], dout: &[f32]) -> Result<()> {
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

pub fn residual_forward(out: &mut [f32], a: &[f32], b: &[f32]) -> Result<()> {
    shape::len("residual input a", a.len(), out.len())?;
    shape::len("residual input b", b.len(), out.len())?;
    for_each_indexed(out, |i, o| *o = a[i] + b[i]);
    Ok(())
}

/// `acc += x`.
pub fn accumulate(acc: &mut [f32], x: &[f32]) -> Result<()> {
    shape::len("accumulated gradient", x.len(), acc.len())?;
    for_each_indexed(acc, |i, a| *a += x[i]);
    Ok(())
}

/// Writes the dropped-out `inp` into `out`, or with `accumulate` adds it (the backward pass, which
/// applies the same mask and scale to the output gradient).
pub fn dropout(out: &mut [f32], inp: &[f32], p: f32, key: u64, accumulate: bool) -> Result<()> {
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

pub fn adamw(
    param: &mut [f32],
    grad: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    u: &AdamWUpdate,
) -> Result<()> {
    shape::len("AdamW gradient", grad.len(), param.len())?;
    shape::len("AdamW first moment", m.len(), param.len())?;
    shape::len("AdamW second moment", v.len(), param.len())?;
    param
        .par_chunks_mut(CHUNK)
        .zip(grad.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
        .for_each(|((ps, gs), (ms, vs))| {
            for (((p, &g), m), v) in ps.iter_mut().zip(gs).zip(ms).zip(vs) {
                *m = u.beta1 * *m + (1.0 - u.beta1) * g;
                *v = u.beta2 * *v + (1.0 - u.beta2) * g * g;
                let m_hat = *m / u.bias_correction1;
                let v_hat = *v / u.bias_correction2;
                *p -= u.lr * (m_hat / (v_hat.sqrt() + u.eps) + u.weight_decay * *p);
            }
        });
    Ok(())
}

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
