//! Linear layers on matrixmultiply's GEMM.

use anyhow::Result;
use ndarray::linalg::general_mat_mul;
use ndarray::{s, ArrayView1};
use rayon::prelude::*;

use super::{matrix, matrix_mut};
use crate::train::backend::{shape, Linear};

/// Rows (of the output, or of the weight gradient) per rayon task. Each task is one GEMM over
/// the full reduction axis, so splitting never changes a sum's order.
const ROWS_PER_TASK: usize = 64;

pub fn forward(
    out: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    d: Linear,
) -> Result<()> {
    shape::linear(d, inp.len(), weight.len(), out.len())?;
    if let Some(bias) = bias {
        shape::len("linear bias", bias.len(), d.out_features)?;
    }
    let (ic, oc) = (d.in_features, d.out_features);
    let w = matrix(weight, oc, ic);
    out.par_chunks_mut(ROWS_PER_TASK * oc)
        .zip(inp.par_chunks(ROWS_PER_TASK * ic))
        .for_each(|(o, x)| {
            let rows = x.len() / ic;
            let mut o = matrix_mut(o, rows, oc);
            let beta = match bias {
                Some(bias) => {
                    o.rows_mut()
                        .into_iter()
                        .for_each(|mut row| row.assign(&ArrayView1::from(bias)));
                    1.0
                }
                None => 0.0,
            };
            general_mat_mul(1.0, &matrix(x, rows, ic), &w.t(), beta, &mut o);
        });
    Ok(())
}

pub fn backward(
    dinp: &mut [f32],
    dweight: &mut [f32],
    dbias: Option<&mut [f32]>,
    dout: &[f32],
    inp: &[f32],
    weight: &[f32],
    d: Linear,
) -> Result<()> {
    shape::linear(d, inp.len(), weight.len(), dout.len())?;
    shape::len("linear input gradient", dinp.len(), inp.len())?;
    shape::len("linear weight gradient", dweight.len(), weight.len())?;
    let (ic, oc) = (d.in_features, d.out_features);

    // dinp += dout · W, split over rows.
    let w = matrix(weight, oc, ic);
    dinp.par_chunks_mut(ROWS_PER_TASK * ic)
        .zip(dout.par_chunks(ROWS_PER_TASK * oc))
        .for_each(|(dx, dy)| {
            let rows = dy.len() / oc;
            general_mat_mul(
                1.0,
                &matrix(dy, rows, oc),
                &w,
                1.0,
                &mut matrix_mut(dx, rows, ic),
            );
        });

    // dW += doutᵀ · inp, split over output features.
    let (dy_all, x_all) = (matrix(dout, d.rows, oc), matrix(inp, d.rows, ic));
    dweight
        .par_chunks_mut(ROWS_PER_TASK * ic)
        .enumerate()
        .for_each(|(task, dw)| {
            let o0 = task * ROWS_PER_TASK;
            let n = dw.len() / ic;
            let dy = dy_all.slice(s![.., o0..o0 + n]);
            general_mat_mul(1.0, &dy.t(), &x_all, 1.0, &mut matrix_mut(dw, n, ic));
        });

    // dbias += Σ_rows dout, split over output features, rows added in order.
    if let Some(dbias) = dbias {
        shape::len("linear bias gradient", dbias.len(), oc)?;
        dbias
            .par_chunks_mut(ROWS_PER_TASK)
            .enumerate()
            .for_each(|(task, db)| {
                let o0 = task * ROWS_PER_TASK;
                for dy in dout.chunks(oc) {
                    for (b, g) in db.iter_mut().zip(&dy[o0..]) {
                        *b += g;
                    }
                }
            });
    }
    Ok(())
}
