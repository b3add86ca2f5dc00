//! The compute interface the model is written against.
//!
//! A backend owns its memory: tensors are opaque handles ([`Backend::Buf`] for f32 data,
//! [`Backend::Ids`] for token ids) that only the backend reads or writes, so a CUDA backend keeps
//! everything in device buffers and the host only sees data through [`Backend::download`] and
//! [`Backend::sum_squares`]. Every other op is one layer-level kernel (llm.c style) with
//! explicit dimensions that reads and writes backend tensors only, so it can run asynchronously.
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
//! # Precision
//! The CPU backend is the reference: f32 arithmetic with f32 accumulators, except that
//! [`Backend::sum_squares`] accumulates in f64. Other backends match it to f32 rounding, not bit
//! for bit (their reduction orders differ), except dropout masks, which must match exactly.
//!
//! # Randomness
//! Dropout masks are a pure function of a 64-bit key and the element index ([`dropout_keep`]),
//! so the backward pass regenerates the mask instead of storing it, results do not depend on
//! thread or block scheduling, and a resumed run reproduces the same masks. A GPU backend must
//! use exactly [`counter_hash`] and the integer threshold of [`dropout_threshold`] to match.

pub mod shape;

use std::fmt;
use std::str::FromStr;

use anyhow::{anyhow, Result};

use crate::train::rng::counter_hash;
use crate::wandb::Row;

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

/// The arithmetic of the GPU matrix products. Everything else (LayerNorm, softmax, the
/// optimizer, the f32 master weights) is f32 in every mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Precision {
    /// f32 FMAs: matches the CPU reference to f32 rounding.
    #[default]
    Fp32,
    /// TF32 tensor cores (10-bit mantissa inputs), f32 accumulation.
    Tf32,
    /// BF16 tensor cores (8-bit mantissa inputs), f32 accumulation: the fastest.
    Bf16,
}

impl FromStr for Precision {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "fp32" => Ok(Self::Fp32),
            "tf32" => Ok(Self::Tf32),
            "bf16" => Ok(Self::Bf16),
            _ => Err(anyhow!(
                "unknown precision {text:?}: expected fp32, tf32 or bf16"
            )),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Fp32 => "fp32",
            Self::Tf32 => "tf32",
            Self::Bf16 => "bf16",
        })
    }
}

serde_as_text!(Precision);

/// Something that adds metrics to each sample: this process, and later the GPUs. Keys are
/// given without the `system.` prefix (the run adds it), e.g. `gpu.0.gpu`.
pub trait MetricSource: Send + 'static {
    fn sample(&mut self, row: &mut Row);
}

/// A backend call that failed on its device, as opposed to a call with wrong shapes. Trainers
/// tell these apart: running out of memory asks for a smaller batch, not for a bug fix. The
/// device's own error is kept as the source.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("out of memory on {device} while {what}")]
    OutOfMemory {
        device: String,
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{device} failed while {what}")]
    Failed {
        device: String,
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A target the loss does not count (PyTorch's `ignore_index`): its row adds nothing to the
/// loss or the gradient. Used for the prompt tokens of problems, whose answers alone are
/// learned.
pub const IGNORE_INDEX: u32 = u32::MAX;

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

    /// What a run on this backend records in its config: `keys::config::BACKEND` and `DEVICE`,
    /// and a GPU's `keys::config::GPU`.
    fn facts(&self) -> Row;
    /// This device's system metrics, sampled beside the process's (none for the CPU, which the
    /// process metrics cover).
    fn metric_sources(&self) -> Vec<Box<dyn MetricSource>> {
        Vec::new()
    }

    /// A zero-filled tensor of `len` elements.
    fn alloc(&self, len: usize) -> Result<Self::Buf>;
    fn zero(&self, buf: &mut Self::Buf) -> Result<()>;
    /// Copies `data` into `buf`; the lengths must match.
    fn upload(&self, buf: &mut Self::Buf, data: &[f32]) -> Result<()>;
    fn download(&self, buf: &Self::Buf) -> Result<Vec<f32>>;
    /// A zero-filled id tensor of `len` elements.
    fn alloc_ids(&self, len: usize) -> Result<Self::Ids>;
    /// Copies `data` into `ids`; the lengths must match.
    fn upload_ids(&self, ids: &mut Self::Ids, data: &[u32]) -> Result<()>;

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
    /// overwrites `dlogits[r] = (softmax(logits[r]) - onehot(targets[r])) · grad_scale`. A row
    /// whose target is [`IGNORE_INDEX`] gets a zero loss and a zero gradient.
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
