//! The residual add and the gradient accumulation of its backward pass (the twin of
//! `kernels/residual.cu`).

use anyhow::Result;

use super::for_each_indexed;
use crate::train::backend::shape;

pub fn forward(out: &mut [f32], a: &[f32], b: &[f32]) -> Result<()> {
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
