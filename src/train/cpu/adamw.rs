//! One AdamW step (the twin of `kernels/adamw.cu`).

use anyhow::Result;
use rayon::prelude::*;

use super::CHUNK;
use crate::train::backend::{shape, AdamWUpdate};

pub fn step(
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
