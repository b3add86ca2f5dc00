//! Layer normalization over the channel axis.

use anyhow::Result;
use rayon::prelude::*;

use crate::train::backend::shape;

const EPS: f32 = 1e-5;
/// Rows per rayon task: a row is only C elements, too little work to schedule alone.
const ROWS_PER_TASK: usize = 16;
/// Channels per rayon task in the weight-gradient pass.
const CHANNELS_PER_TASK: usize = 64;

#[allow(clippy::too_many_arguments)] // one argument per tensor, as in the Backend trait
pub fn forward(
    out: &mut [f32],
    mean: &mut [f32],
    rstd: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: &[f32],
    rows: usize,
    c: usize,
) -> Result<()> {
    let lens = [&*out, &*mean, &*rstd].map(<[f32]>::len);
    shape::layernorm_forward(rows, c, lens, [inp, weight, bias].map(<[f32]>::len))?;
    out.par_chunks_mut(c)
        .zip(inp.par_chunks(c))
        .zip(mean.par_iter_mut().zip(rstd.par_iter_mut()))
        .with_min_len(ROWS_PER_TASK)
        .for_each(|((o, x), (mean, rstd))| {
            let mu = x.iter().sum::<f32>() / c as f32;
            let var = x.iter().map(|&v| (v - mu) * (v - mu)).sum::<f32>() / c as f32;
            let rs = 1.0 / (var + EPS).sqrt();
            for (((o, &x), &w), &b) in o.iter_mut().zip(x).zip(weight).zip(bias) {
                *o = (x - mu) * rs * w + b;
            }
            *mean = mu;
            *rstd = rs;
        });
    Ok(())
}

#[allow(clippy::too_many_arguments)] // one argument per tensor, as in the Backend trait
pub fn backward(
    dinp: &mut [f32],
    dweight: &mut [f32],
    dbias: &mut [f32],
    dout: &[f32],
    inp: &[f32],
    weight: &[f32],
    mean: &[f32],
    rstd: &[f32],
    rows: usize,
    c: usize,
) -> Result<()> {
    let grads = [&*dinp, &*dweight, &*dbias].map(<[f32]>::len);
    let inputs = [dout, inp, weight, mean, rstd].map(<[f32]>::len);
    shape::layernorm_backward(rows, c, grads, inputs)?;

    // Input gradient, row by row: with n the normalized input and g = dout·weight,
    // dx = rstd · (g - mean(g) - n · mean(g·n)).
    dinp.par_chunks_mut(c)
        .zip(dout.par_chunks(c).zip(inp.par_chunks(c)))
        .zip(mean.par_iter().zip(rstd.par_iter()))
        .with_min_len(ROWS_PER_TASK)
        .for_each(|((dx, (dy, x)), (&mu, &rs))| {
            let (mut g_mean, mut gn_mean) = (0.0f32, 0.0f32);
            for ((&dy, &x), &w) in dy.iter().zip(x).zip(weight) {
                let g = dy * w;
                g_mean += g;
                gn_mean += g * (x - mu) * rs;
            }
            g_mean /= c as f32;
            gn_mean /= c as f32;
            for (((dx, &dy), &x), &w) in dx.iter_mut().zip(dy).zip(x).zip(weight) {
                let n = (x - mu) * rs;
                *dx += rs * (dy * w - g_mean - n * gn_mean);
            }
        });

    // Parameter gradients sum over rows, so they split by channel instead: each task owns a
    // channel range and adds the rows in order.
    dweight
        .par_chunks_mut(CHANNELS_PER_TASK)
        .zip(dbias.par_chunks_mut(CHANNELS_PER_TASK))
        .enumerate()
        .for_each(|(task, (dw, db))| {
            let c0 = task * CHANNELS_PER_TASK;
            for row in 0..rows {
                let at = row * c + c0;
                let (dy, x) = (&dout[at..][..dw.len()], &inp[at..][..dw.len()]);
                for (((dw, db), &dy), &x) in dw.iter_mut().zip(db.iter_mut()).zip(dy).zip(x) {
                    *dw += dy * (x - mean[row]) * rstd[row];
                    *db += dy;
                }
            }
        });
    Ok(())
}
