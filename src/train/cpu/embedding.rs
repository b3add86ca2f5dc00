//! Token plus position embedding.

use anyhow::Result;
use rayon::prelude::*;

use crate::train::backend::{shape, Btc};

/// Checks the shapes and token ids; returns the vocabulary size.
fn check(ids: &[u32], wte_len: usize, wpe_len: usize, other_len: usize, d: Btc) -> Result<usize> {
    let vocab = shape::embedding(ids.len(), wte_len, wpe_len, other_len, d)?;
    if let Some((i, &id)) = ids.iter().enumerate().find(|(_, &id)| id as usize >= vocab) {
        anyhow::bail!("token id {id} at position {i} is outside the vocabulary of {vocab}");
    }
    Ok(vocab)
}

pub fn forward(out: &mut [f32], ids: &[u32], wte: &[f32], wpe: &[f32], d: Btc) -> Result<()> {
    check(ids, wte.len(), wpe.len(), out.len(), d)?;
    out.par_chunks_mut(d.c)
        .zip(ids.par_iter())
        .enumerate()
        .for_each(|(row, (o, &id))| {
            let tok = &wte[id as usize * d.c..][..d.c];
            let pos = &wpe[(row % d.t) * d.c..][..d.c];
            for ((o, a), b) in o.iter_mut().zip(tok).zip(pos) {
                *o = a + b;
            }
        });
    Ok(())
}

/// Serial over rows: several rows may share a token, and adding their gradients in row order
/// keeps the result independent of scheduling.
pub fn backward(
    dwte: &mut [f32],
    dwpe: &mut [f32],
    dout: &[f32],
    ids: &[u32],
    d: Btc,
) -> Result<()> {
    check(ids, dwte.len(), dwpe.len(), dout.len(), d)?;
    for (row, (g, &id)) in dout.chunks(d.c).zip(ids).enumerate() {
        let tok = &mut dwte[id as usize * d.c..][..d.c];
        tok.iter_mut().zip(g).for_each(|(w, g)| *w += g);
        let pos = &mut dwpe[(row % d.t) * d.c..][..d.c];
        pos.iter_mut().zip(g).for_each(|(w, g)| *w += g);
    }
    Ok(())
}
