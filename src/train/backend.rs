//! The compute interface the model is written against.
//!
//! A backend owns its memory: tensors are opaque handles ([`Backend::Buf`] for f32 data,
//! [`Backend::Ids`] for token ids) that only the backend reads or writes, so a CUDA backend keeps
//! everything in device buffers and the host only sees data through [`Backend::download`] and
//! [`Backend::sum_squares`]. Every op is one layer-level kernel (llm.c style) with explicit
//! dimensions; none of them returns data to the host.
//!
//! # Layout
//! Every tensor is dense, row-major, f32, with no padding: `[B, T, C]` means element
//! `(b, t, c)` lives at `(b * T + t) * C + c`. Linear weights are stored PyTorch style as
//! `[out_features, in_features]`, so a linear layer computes `out = inp · Wᵀ + bias`.
//!
//! # Gradient convention
//! Backward ops *accumulate* (`+=`) into every gradient they write — parameter gradients and the
//! gradients of their inputs alike — so that a tensor used in several places (the tied embedding,
//! the residual stream) sums its contributions. Callers zero scratch gradients before reuse.
//! Outputs of forward ops (and `dlogits` of the fused loss) are overwritten.
//!
//! # Randomness
//! Dropout masks are a pure function of a 64-bit key and the element index ([`dropout_keep`]),
//! so the backward pass regenerates the mask instead of storing it, results do not depend on
//! thread or block scheduling, and a resumed run reproduces the same masks. A GPU backend must
//! use exactly [`counter_hash`] and the integer threshold of [`dropout_threshold`] to match.

use anyhow::Result;

/// Layer dimensions of a `[B, T, C]` activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Btc {
    pub b: usize,
    pub t: usize,
    pub c: usize,
}

impl Btc {
    /// Number of `(b, t)` positions, the row count of every `[B, T, *]` tensor.
    pub fn rows(&self) -> usize {
        self.b * self.t
    }

    /// Elements of one `[B, T, C]` tensor.
    pub fn numel(&self) -> usize {
        self.rows() * self.c
    }
}

/// Dimensions of a linear layer applied to `rows` row vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Linear {
    pub rows: usize,
    pub in_features: usize,
    pub out_features: usize,
}

/// The per-step constants of one AdamW update (see [`crate::train::optim::AdamW::update`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWUpdate {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// Zero for tensors that are not decayed.
    pub weight_decay: f32,
    /// `1 - beta1^t`, computed on the host in f64 so every backend uses the same value.
    pub bias_correction1: f32,
    /// `1 - beta2^t`.
    pub bias_correction2: f32,
}

/// A compute backend: memory plus the forward and backward kernels of every layer of the GPT.
///
/// Every method returns `Result` because a device backend can fail at any call (out of memory, a
/// failed launch); the CPU backend fails only on tensors whose sizes do not match the dimensions.
#[allow(clippy::too_many_arguments)] // kernels take each tensor separately, like the launches
pub trait Backend {
    /// An f32 tensor in the backend's memory.
    type Buf;
    /// A u32 tensor of token ids in the backend's memory.
    type Ids;

    /// A zero-filled tensor of `len` elements.
    fn alloc(&self, len: usize) -> Result<Self::Buf>;
    fn zero(&self, buf: &mut Self::Buf) -> Result<()>;
    /// Copies `data` into `buf`; the lengths must match.
    fn upload(&self, buf: &mut Self::Buf, data: &[f32]) -> Result<()>;
    fn download(&self, buf: &Self::Buf) -> Result<Vec<f32>>;
    /// A new id tensor holding `ids`.
    fn upload_ids(&self, ids: &[u32]) -> Result<Self::Ids>;

    /// `out[b,t,:] = wte[ids[b,t],:] + wpe[t,:]`.
    /// `out`: `[B,T,C]`; `ids`: `[B,T]`, each `< V`; `wte`: `[V,C]`; `wpe`: `[P,C]` with `P >= T`.
    fn embedding_forward(
        &self,
        out: &mut Self::Buf,
        ids: &Self::Ids,
        wte: &Self::Buf,
        wpe: &Self::Buf,
        dims: Btc,
    ) -> Result<()>;
    /// Accumulates `dout` (`[B,T,C]`) into the rows of `dwte` and `dwpe` that the forward read.
    fn embedding_backward(
        &self,
        dwte: &mut Self::Buf,
        dwpe: &mut Self::Buf,
        dout: &Self::Buf,
        ids: &Self::Ids,
        dims: Btc,
    ) -> Result<()>;

    /// Normalizes each of `rows` rows of `inp` (`[rows,C]`) to zero mean and unit variance
    /// (biased variance, epsilon 1e-5), then applies `weight` and `bias` (`[C]`).
    /// Saves the row statistics `mean` and `rstd = 1/sqrt(var + eps)` (`[rows]`) for backward.
    fn layernorm_forward(
        &self,
        out: &mut Self::Buf,
        mean: &mut Self::Buf,
        rstd: &mut Self::Buf,
        inp: &Self::Buf,
        weight: &Self::Buf,
        bias: &Self::Buf,
        rows: usize,
        c: usize,
    ) -> Result<()>;
    /// Accumulates into `dinp` (`[rows,C]`), `dweight` and `dbias` (`[C]`).
    fn layernorm_backward(
        &self,
        dinp: &mut Self::Buf,
        dweight: &mut Self::Buf,
        dbias: &mut Self::Buf,
        dout: &Self::Buf,
        inp: &Self::Buf,
        weight: &Self::Buf,
        mean: &Self::Buf,
        rstd: &Self::Buf,
        rows: usize,
        c: usize,
    ) -> Result<()>;

    /// `out = inp · weightᵀ + bias`: `inp` `[rows,in]`, `weight` `[out,in]`, `bias` `[out]`,
    /// `out` `[rows,out]`.
    fn matmul_forward(
        &self,
        out: &mut Self::Buf,
        inp: &Self::Buf,
        weight: &Self::Buf,
        bias: Option<&Self::Buf>,
        dims: Linear,
    ) -> Result<()>;
    /// Accumulates `dinp += dout · weight`, `dweight += doutᵀ · inp` and `dbias += Σ_rows dout`.
    fn matmul_backward(
        &self,
        dinp: &mut Self::Buf,
        dweight: &mut Self::Buf,
        dbias: Option<&mut Self::Buf>,
        dout: &Self::Buf,
        inp: &Self::Buf,
        weight: &Self::Buf,
        dims: Linear,
    ) -> Result<()>;

    /// Causal multi-head self-attention over `qkv` (`[B,T,3C]`: for each position the C query
    /// channels, then the C key channels, then the C value channels; head `h` owns channels
    /// `h*hs .. (h+1)*hs` of each, `hs = C / n_head`). Writes the heads' outputs side by side in
    /// `out` (`[B,T,C]`) and saves the attention probabilities `softmax(q·kᵀ/sqrt(hs))` in `att`
    /// (`[B,n_head,T,T]`, zero above the diagonal) for backward.
    fn attention_forward(
        &self,
        out: &mut Self::Buf,
        att: &mut Self::Buf,
        qkv: &Self::Buf,
        dims: Btc,
        n_head: usize,
    ) -> Result<()>;
    /// Accumulates into `dqkv` (`[B,T,3C]`) given `dout` (`[B,T,C]`) and the saved `att`.
    fn attention_backward(
        &self,
        dqkv: &mut Self::Buf,
        dout: &Self::Buf,
        qkv: &Self::Buf,
        att: &Self::Buf,
        dims: Btc,
        n_head: usize,
    ) -> Result<()>;

    /// Elementwise GELU, tanh approximation: `0.5·x·(1 + tanh(sqrt(2/π)·(x + 0.044715·x³)))`.
    fn gelu_forward(&self, out: &mut Self::Buf, inp: &Self::Buf) -> Result<()>;
    fn gelu_backward(&self, dinp: &mut Self::Buf, inp: &Self::Buf, dout: &Self::Buf) -> Result<()>;

    /// `out = a + b`, elementwise over equal-length tensors.
    fn residual_forward(&self, out: &mut Self::Buf, a: &Self::Buf, b: &Self::Buf) -> Result<()>;
    /// `da += dout; db += dout`.
    fn residual_backward(
        &self,
        da: &mut Self::Buf,
        db: &mut Self::Buf,
        dout: &Self::Buf,
    ) -> Result<()>;

    /// Inverted dropout: `out[i] = inp[i] · s` with the f32 `s = 1 / (1 - p)`, where
    /// [`dropout_keep`]`(key, i, `[`dropout_threshold`]`(p))`, else 0. `p` is in `[0, 1)`.
    fn dropout_forward(&self, out: &mut Self::Buf, inp: &Self::Buf, p: f32, key: u64)
        -> Result<()>;
    /// `dinp[i] += dout[i] · s` where the forward kept element `i`.
    fn dropout_backward(
        &self,
        dinp: &mut Self::Buf,
        dout: &Self::Buf,
        p: f32,
        key: u64,
    ) -> Result<()>;

    /// Softmax cross-entropy fused with its gradient. For each of `rows` rows of `logits`
    /// (`[rows,V]`) writes `losses[r] = logsumexp(logits[r]) - logits[r, targets[r]]` and
    /// overwrites `dlogits[r] = (softmax(logits[r]) - onehot(targets[r])) · grad_scale`.
    fn softmax_cross_entropy(
        &self,
        losses: &mut Self::Buf,
        dlogits: &mut Self::Buf,
        logits: &Self::Buf,
        targets: &Self::Ids,
        rows: usize,
        vocab: usize,
        grad_scale: f32,
    ) -> Result<()>;

    /// One AdamW step on a parameter tensor and its moments (all the same length):
    /// `m = β1·m + (1-β1)·g`, `v = β2·v + (1-β2)·g²`,
    /// `param -= lr·(m/bc1 / (sqrt(v/bc2) + eps) + weight_decay·param)`.
    fn adamw(
        &self,
        param: &mut Self::Buf,
        grad: &Self::Buf,
        m: &mut Self::Buf,
        v: &mut Self::Buf,
        update: &AdamWUpdate,
    ) -> Result<()>;
    /// `buf *= factor`.
    fn scale(&self, buf: &mut Self::Buf, factor: f32) -> Result<()>;
    /// The sum of squares of each tensor, in one trip to the host.
    fn sum_squares(&self, bufs: &[&Self::Buf]) -> Result<Vec<f64>>;
}

const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// SplitMix64's output function: a bijective avalanche of 64 bits.
pub const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Draw number `index` of the random stream `key`: the `index + 1`-th output of a SplitMix64
/// generator seeded with `key`, computed directly from the counter so any thread can draw any
/// element. Also derives child keys (`counter_hash(parent, child_id)`).
pub const fn counter_hash(key: u64, index: u64) -> u64 {
    mix64(key.wrapping_add(index.wrapping_add(1).wrapping_mul(GOLDEN_GAMMA)))
}

/// The integer threshold below which a draw is dropped: `floor(p · 2³²)`, computed in f64 so the
/// comparison itself is exact on every backend.
pub fn dropout_threshold(p: f32) -> u32 {
    (f64::from(p) * 4_294_967_296.0).min(f64::from(u32::MAX)) as u32
}

/// Whether element `index` survives dropout with probability `p` under `key`: the high 32 bits of
/// its draw are at least [`dropout_threshold`]`(p)`.
pub fn dropout_keep(key: u64, index: u64, threshold: u32) -> bool {
    (counter_hash(key, index) >> 32) as u32 >= threshold
}
