//! Softmax cross-entropy fused with its gradient: one pass over the logits yields both (the twin
//! of `kernels/classifier.cu`).

use anyhow::Result;
use rayon::prelude::*;

use crate::train::backend::{shape, IGNORE_INDEX};

/// Rows per rayon task; a row is a whole vocabulary, so a few rows already make a task.
const ROWS_PER_TASK: usize = 4;

pub fn softmax_cross_entropy(
    losses: &mut [f32],
    dlogits: &mut [f32],
    logits: &[f32],
    targets: &[u32],
    rows: usize,
    vocab: usize,
    grad_scale: f32,
) -> Result<()> {
    let lens = (losses.len(), dlogits.len(), logits.len(), targets.len());
    shape::cross_entropy(lens, rows, vocab)?;
    if let Some((i, &t)) = targets
        .iter()
        .enumerate()
        .find(|(_, &t)| t as usize >= vocab && t != IGNORE_INDEX)
    {
        anyhow::bail!("target {t} at position {i} is outside the vocabulary of {vocab}");
    }
    dlogits
        .par_chunks_mut(vocab)
        .zip(logits.par_chunks(vocab))
        .zip(losses.par_iter_mut().zip(targets.par_iter()))
        .with_min_len(ROWS_PER_TASK)
        .for_each(|((dl, x), (loss, &target))| {
            if target == IGNORE_INDEX {
                dl.fill(0.0);
                *loss = 0.0;
                return;
            }
            let target = target as usize;
            let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0f32;
            for (d, &x) in dl.iter_mut().zip(x) {
                *d = (x - max).exp();
                sum += *d;
            }
            *loss = sum.ln() - (x[target] - max);
            let norm = grad_scale / sum;
            dl.iter_mut().for_each(|d| *d *= norm);
            dl[target] -= grad_scale;
        });
    Ok(())
}
