//! Causal multi-head self-attention, one rayon task per (batch, head) pair.
//!
//! Each task reads its head's queries, keys and values straight out of the interleaved `qkv`
//! tensor through strided views and works in its own contiguous head-major block; a second pass
//! moves the blocks into the `[B, T, C]`-style layout. Both passes write disjoint memory.

use anyhow::Result;
use ndarray::linalg::general_mat_mul;
use ndarray::ArrayView2;
use rayon::prelude::*;

use super::{matrix, matrix_mut, strided};
use crate::train::backend::{shape, Btc};

/// The head geometry of one attention call.
struct Heads {
    d: Btc,
    n_head: usize,
    /// Channels per head.
    hs: usize,
}

impl Heads {
    fn new(d: Btc, n_head: usize) -> Result<Self> {
        Ok(Self {
            d,
            n_head,
            hs: shape::head_size(d, n_head)?,
        })
    }

    /// Size of one head's `[T, hs]` block.
    fn block(&self) -> usize {
        self.d.t * self.hs
    }

    /// The `[T, hs]` rows of head `h` in batch `b`, from channel section `part` of a tensor with
    /// `parts` sections of C channels per position (`qkv`: 3, an attention output: 1).
    fn view<'a>(
        &self,
        x: &'a [f32],
        parts: usize,
        b: usize,
        h: usize,
        part: usize,
    ) -> ArrayView2<'a, f32> {
        let Btc { t, c, .. } = self.d;
        let row = parts * c;
        strided(&x[b * t * row + part * c + h * self.hs..], t, self.hs, row)
    }

    /// Moves head-major blocks `[B, n_head, parts, T, hs]` into `dst` (`[B, T, parts·C]`),
    /// overwriting or adding.
    fn scatter(&self, dst: &mut [f32], blocks: &[f32], parts: usize, accumulate: bool) {
        let Btc { t, c, .. } = self.d;
        dst.par_chunks_mut(t * parts * c)
            .enumerate()
            .for_each(|(b, dst)| {
                for (i, block) in blocks[b * self.n_head * parts * self.block()..]
                    .chunks(self.block())
                    .take(self.n_head * parts)
                    .enumerate()
                {
                    let (h, part) = (i / parts, i % parts);
                    for (ti, src) in block.chunks(self.hs).enumerate() {
                        let at = ti * parts * c + part * c + h * self.hs;
                        let d = &mut dst[at..at + self.hs];
                        if accumulate {
                            d.iter_mut().zip(src).for_each(|(d, s)| *d += s);
                        } else {
                            d.copy_from_slice(src);
                        }
                    }
                }
            });
    }

    fn scale(&self) -> f32 {
        1.0 / (self.hs as f32).sqrt()
    }
}

/// Softmax over the first `len` entries of `row`; the masked rest becomes 0.
fn causal_softmax(row: &mut [f32], len: usize) {
    let (live, masked) = row.split_at_mut(len);
    let max = live.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for x in live.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    let inv = 1.0 / sum;
    live.iter_mut().for_each(|x| *x *= inv);
    masked.fill(0.0);
}

pub fn forward(out: &mut [f32], att: &mut [f32], qkv: &[f32], d: Btc, n_head: usize) -> Result<()> {
    let heads = Heads::new(d, n_head)?;
    shape::attention(d, n_head, qkv.len(), out.len(), att.len())?;
    let t = d.t;
    let mut y = vec![0.0f32; d.numel()];
    att.par_chunks_mut(t * t)
        .zip(y.par_chunks_mut(heads.block()))
        .enumerate()
        .for_each(|(bh, (a, y))| {
            let (b, h) = (bh / n_head, bh % n_head);
            let q = heads.view(qkv, 3, b, h, 0);
            let k = heads.view(qkv, 3, b, h, 1);
            let v = heads.view(qkv, 3, b, h, 2);
            general_mat_mul(heads.scale(), &q, &k.t(), 0.0, &mut matrix_mut(a, t, t));
            for (i, row) in a.chunks_mut(t).enumerate() {
                causal_softmax(row, i + 1);
            }
            general_mat_mul(
                1.0,
                &matrix(a, t, t),
                &v,
                0.0,
                &mut matrix_mut(y, t, heads.hs),
            );
        });
    heads.scatter(out, &y, 1, false);
    Ok(())
}

pub fn backward(
    dqkv: &mut [f32],
    dout: &[f32],
    qkv: &[f32],
    att: &[f32],
    d: Btc,
    n_head: usize,
) -> Result<()> {
    let heads = Heads::new(d, n_head)?;
    shape::attention(d, n_head, qkv.len(), dout.len(), att.len())?;
    shape::len("attention qkv gradient", dqkv.len(), qkv.len())?;
    let (t, hs) = (d.t, heads.hs);
    let mut grads = vec![0.0f32; 3 * d.numel()];
    grads
        .par_chunks_mut(3 * heads.block())
        .enumerate()
        .for_each(|(bh, g)| {
            let (b, h) = (bh / n_head, bh % n_head);
            let q = heads.view(qkv, 3, b, h, 0);
            let k = heads.view(qkv, 3, b, h, 1);
            let v = heads.view(qkv, 3, b, h, 2);
            let dy = heads.view(dout, 1, b, h, 0);
            let a = &att[bh * t * t..][..t * t];
            let (dq, dkv) = g.split_at_mut(heads.block());
            let (dk, dv) = dkv.split_at_mut(heads.block());

            general_mat_mul(
                1.0,
                &matrix(a, t, t).t(),
                &dy,
                0.0,
                &mut matrix_mut(dv, t, hs),
            );
            let mut da = vec![0.0f32; t * t];
            general_mat_mul(1.0, &dy, &v.t(), 0.0, &mut matrix_mut(&mut da, t, t));
            // Through the softmax, scaled for the pre-softmax 1/sqrt(hs):
            // dpre = a ⊙ (da - Σ_j a·da) / sqrt(hs); masked entries have a = 0.
            for (i, (dp, a)) in da.chunks_mut(t).zip(a.chunks(t)).enumerate() {
                let live = i + 1;
                let dot: f32 = dp[..live].iter().zip(&a[..live]).map(|(d, a)| d * a).sum();
                for (dp, &a) in dp[..live].iter_mut().zip(&a[..live]) {
                    *dp = a * (*dp - dot) * heads.scale();
                }
                dp[live..].fill(0.0);
            }
            let dpre = matrix(&da, t, t);
            general_mat_mul(1.0, &dpre, &k, 0.0, &mut matrix_mut(dq, t, hs));
            general_mat_mul(1.0, &dpre.t(), &q, 0.0, &mut matrix_mut(dk, t, hs));
        });
    heads.scatter(dqkv, &grads, 3, true);
    Ok(())
}
