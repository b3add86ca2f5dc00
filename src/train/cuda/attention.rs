//! Causal self-attention as products and a softmax: `att = softmax(q·kᵀ/sqrt(hs))` stored for
//! backward as the trait requires, then `y = att·v`. Every product is one batched launch of the
//! strided matmul over (batch, head), reading q, k and v straight out of the interleaved `qkv`
//! tensor and writing each head's output into its channels of `out`.

use anyhow::Result;

use super::matmul::{Gemm, Tri, View};
use super::{dim, warp_rows, CudaBackend};
use crate::train::backend::Btc;

/// The strides of one attention call.
pub(super) struct Layout {
    t: usize,
    c: usize,
    hs: usize,
    n_head: usize,
    batch: usize,
}

impl Layout {
    pub fn new(d: Btc, n_head: usize) -> Self {
        Self {
            t: d.t,
            c: d.c,
            hs: d.c / n_head,
            n_head,
            batch: d.b,
        }
    }

    /// Part `part` (0 q, 1 k, 2 v) of `qkv` (or of its gradient) as `X(t, i)`, batched over
    /// (batch, head).
    fn qkv(&self, qkv: u64, part: usize) -> View {
        let row = 3 * self.c;
        View::strided(offset(qkv, part * self.c), row, 1).batched(self.t * row, self.hs)
    }

    /// The same part read transposed, `X(i, t)`.
    fn qkv_t(&self, qkv: u64, part: usize) -> View {
        let row = 3 * self.c;
        View::strided(offset(qkv, part * self.c), 1, row).batched(self.t * row, self.hs)
    }

    /// A `[B, T, C]` tensor as each head's `X(t, i)`.
    fn heads(&self, x: u64) -> View {
        View::strided(x, self.c, 1).batched(self.t * self.c, self.hs)
    }

    /// The same, transposed: `X(i, t)`.
    fn heads_t(&self, x: u64) -> View {
        View::strided(x, 1, self.c).batched(self.t * self.c, self.hs)
    }

    /// A `[B, n_head, T, T]` tensor as `X(t1, t2)`.
    fn scores(&self, att: u64) -> View {
        let tt = self.t * self.t;
        View::strided(att, self.t, 1).batched(self.n_head * tt, tt)
    }

    /// The same, transposed: `X(t2, t1)`.
    fn scores_t(&self, att: u64) -> View {
        let tt = self.t * self.t;
        View::strided(att, 1, self.t).batched(self.n_head * tt, tt)
    }

    fn gemm(&self, a: View, b: View, c: View, (m, n, k): (usize, usize, usize)) -> Gemm {
        Gemm {
            outer: self.batch,
            inner: self.n_head,
            ..Gemm::new(a, b, c, (m, n, k))
        }
    }

    pub fn scale(&self) -> f32 {
        1.0 / (self.hs as f32).sqrt()
    }

    /// Rows of the scores tensor: one per (batch, head, query).
    fn rows(&self) -> usize {
        self.batch * self.n_head * self.t
    }
}

/// A device pointer `elements` f32s further on.
fn offset(ptr: u64, elements: usize) -> u64 {
    ptr + (elements * std::mem::size_of::<f32>()) as u64
}

impl CudaBackend {
    pub(super) fn attention_forward_ptrs(
        &self,
        out: u64,
        att: u64,
        qkv: u64,
        l: &Layout,
    ) -> Result<()> {
        let (t, hs) = (l.t, l.hs);
        // att(t1, t2) = Σ_i q(t1, i)·k(t2, i) / sqrt(hs), wanted only for t2 <= t1.
        self.gemm(Gemm {
            alpha: l.scale(),
            tri: Tri::COnlyLower,
            ..l.gemm(l.qkv(qkv, 0), l.qkv(qkv, 1), l.scores(att), (t, t, hs))
        })?;
        let (rows, t32) = (l.rows(), dim(t)?);
        launch!(
            self,
            "causal_softmax_forward",
            warp_rows(rows),
            &att,
            &t32,
            &rows
        )?;
        // y(t1, i) = Σ_t2 att(t1, t2)·v(t2, i); att is zero for t2 > t1.
        self.gemm(Gemm {
            tri: Tri::ALower,
            ..l.gemm(l.scores(att), l.qkv_t(qkv, 2), l.heads(out), (t, hs, t))
        })
    }

    /// `datt` is scratch of the size of `att`.
    pub(super) fn attention_backward_ptrs(
        &self,
        (dqkv, datt): (u64, u64),
        dout: u64,
        qkv: u64,
        att: u64,
        l: &Layout,
    ) -> Result<()> {
        let (t, hs) = (l.t, l.hs);
        // The gradients of q, k and v sit in dqkv where q, k and v sit in qkv.
        let (dq, dk, dv) = (l.qkv(dqkv, 0), l.qkv(dqkv, 1), l.qkv(dqkv, 2));
        // dv(t2, i) += Σ_t1 att(t1, t2)·dy(t1, i); att(t1, t2) = 0 for t1 < t2.
        self.gemm(
            Gemm {
                tri: Tri::AUpper,
                ..l.gemm(l.scores_t(att), l.heads_t(dout), dv, (t, hs, t))
            }
            .accumulate(),
        )?;
        // datt(t1, t2) = Σ_i dy(t1, i)·v(t2, i), wanted only for t2 <= t1.
        self.gemm(Gemm {
            tri: Tri::COnlyLower,
            ..l.gemm(l.heads(dout), l.qkv(qkv, 2), l.scores(datt), (t, t, hs))
        })?;
        let (rows, t32, scale) = (l.rows(), dim(t)?, l.scale());
        launch!(
            self,
            "causal_softmax_backward",
            warp_rows(rows),
            &datt,
            &att,
            &t32,
            &rows,
            &scale
        )?;
        // dq(t1, i) += Σ_t2 dscores(t1, t2)·k(t2, i); zero for t2 > t1.
        self.gemm(
            Gemm {
                tri: Tri::ALower,
                ..l.gemm(l.scores(datt), l.qkv_t(qkv, 1), dq, (t, hs, t))
            }
            .accumulate(),
        )?;
        // dk(t2, i) += Σ_t1 dscores(t1, t2)·q(t1, i); zero for t1 < t2.
        self.gemm(
            Gemm {
                tri: Tri::AUpper,
                ..l.gemm(l.scores_t(datt), l.qkv_t(qkv, 0), dk, (t, hs, t))
            }
            .accumulate(),
        )
    }
}
