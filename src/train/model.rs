//! The GPT-2 architecture (as in nanoGPT and llm.c), written once against [`Backend`].
//!
//! Parameters are named and shaped like nanoGPT's PyTorch module, so checkpoints map onto it
//! one to one. Activations are kept per layer for the backward pass and reallocated only when the
//! batch shape changes.

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};

use crate::train::backend::{Backend, Btc, Linear, IGNORE_INDEX};
use crate::train::optim::{clip_factor, decays, AdamW};
use crate::train::rng::counter_hash;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub vocab_size: usize,
    /// The longest sequence the model accepts (rows of the position embedding).
    pub block_size: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_embd: usize,
    /// Dropout probability after the embedding and on both residual branches; training only.
    pub dropout: f32,
    /// Whether the LM head reuses the token embedding matrix.
    pub tied_head: bool,
}

impl ModelConfig {
    fn validate(&self) -> Result<()> {
        ensure!(self.vocab_size > 0, "vocab_size must be positive");
        ensure!(
            u32::try_from(self.vocab_size - 1).is_ok(),
            "vocab_size {} does not fit u32 token ids",
            self.vocab_size
        );
        ensure!(self.block_size > 0, "block_size must be positive");
        ensure!(
            self.n_head > 0 && self.n_embd > 0,
            "n_head and n_embd must be positive"
        );
        ensure!(
            self.n_embd.is_multiple_of(self.n_head),
            "n_embd {} is not divisible by n_head {}",
            self.n_embd,
            self.n_head
        );
        ensure!(
            (0.0..1.0).contains(&self.dropout),
            "dropout {} is not in [0, 1)",
            self.dropout
        );
        Ok(())
    }
}
/// Gradient L2 norms: over all parameters, and per group of parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct GradNorms {
    pub global: f32,
    /// `embedding`, `block.0` … `block.{n_layer-1}`, `final_norm`, and `head` when untied.
    pub groups: Vec<(String, f32)>,
}

/// A host copy of one tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Everything a run needs to continue bit-exactly, given the same config and seed.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelState {
    pub params: Vec<NamedTensor>,
    pub adam_m: Vec<NamedTensor>,
    pub adam_v: Vec<NamedTensor>,
    /// Optimizer steps taken.
    pub step: u64,
    /// Training forward passes taken; each draws its own dropout masks.
    pub rng_counter: u64,
}

/// How a tensor starts.
#[derive(Debug, Clone, Copy)]
enum Init {
    Zeros,
    Ones,
    /// Normal with std 0.02.
    Normal,
    /// Normal with std 0.02/sqrt(2·n_layer): the projections that write into the residual
    /// stream, so its variance does not grow with depth (GPT-2).
    ResidualNormal,
}

/// The tensors of one block, in checkpoint order: name, shape in multiples of `n_embd`, init.
/// `block_forward` and `block_backward` destructure blocks in this order.
const BLOCK_TENSORS: [(&str, &[usize], Init); 12] = [
    ("ln_1.weight", &[1], Init::Ones),
    ("ln_1.bias", &[1], Init::Zeros),
    ("attn.c_attn.weight", &[3, 1], Init::Normal),
    ("attn.c_attn.bias", &[3], Init::Zeros),
    ("attn.c_proj.weight", &[1, 1], Init::ResidualNormal),
    ("attn.c_proj.bias", &[1], Init::Zeros),
    ("ln_2.weight", &[1], Init::Ones),
    ("ln_2.bias", &[1], Init::Zeros),
    ("mlp.c_fc.weight", &[4, 1], Init::Normal),
    ("mlp.c_fc.bias", &[4], Init::Zeros),
    ("mlp.c_proj.weight", &[1, 4], Init::ResidualNormal),
    ("mlp.c_proj.bias", &[1], Init::Zeros),
];

/// A parameter tensor's identity.
#[derive(Debug, Clone)]
struct Spec {
    name: String,
    shape: Vec<usize>,
    /// The [`GradNorms`] group.
    group: String,
    init: Init,
}

impl Spec {
    fn new(
        name: impl Into<String>,
        shape: Vec<usize>,
        group: impl Into<String>,
        init: Init,
    ) -> Self {
        Self {
            name: name.into(),
            shape,
            group: group.into(),
            init,
        }
    }

    fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A parameter tensor with its gradient and AdamW moments.
struct Param<T> {
    spec: Spec,
    value: T,
    grad: T,
    m: T,
    v: T,
}

/// The model's tensors in checkpoint order.
struct Tensors<T> {
    wte: T,
    wpe: T,
    blocks: Vec<[T; 12]>,
    ln_f: [T; 2],
    /// The untied LM head.
    head: Option<T>,
}

impl<T> Tensors<T> {
    fn iter(&self) -> impl Iterator<Item = &T> {
        [&self.wte, &self.wpe]
            .into_iter()
            .chain(self.blocks.iter().flatten())
            .chain(&self.ln_f)
            .chain(&self.head)
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        [&mut self.wte, &mut self.wpe]
            .into_iter()
            .chain(self.blocks.iter_mut().flatten())
            .chain(&mut self.ln_f)
            .chain(&mut self.head)
    }

    fn try_map<U>(self, mut f: impl FnMut(T) -> Result<U>) -> Result<Tensors<U>> {
        fn array<T, U, const N: usize>(a: [T; N], f: impl FnMut(T) -> Result<U>) -> Result<[U; N]> {
            let mapped: Vec<U> = a.into_iter().map(f).collect::<Result<_>>()?;
            Ok(mapped
                .try_into()
                .unwrap_or_else(|_| unreachable!("mapping N elements yields N")))
        }
        Ok(Tensors {
            wte: f(self.wte)?,
            wpe: f(self.wpe)?,
            blocks: self
                .blocks
                .into_iter()
                .map(|b| array(b, &mut f))
                .collect::<Result<_>>()?,
            ln_f: array(self.ln_f, &mut f)?,
            head: self.head.map(&mut f).transpose()?,
        })
    }
}

fn specs(cfg: &ModelConfig) -> Tensors<Spec> {
    let (v, c) = (cfg.vocab_size, cfg.n_embd);
    let blocks = (0..cfg.n_layer)
        .map(|l| {
            BLOCK_TENSORS.map(|(name, shape, init)| {
                let shape = shape.iter().map(|m| m * c).collect();
                Spec::new(
                    format!("transformer.h.{l}.{name}"),
                    shape,
                    format!("block.{l}"),
                    init,
                )
            })
        })
        .collect();
    Tensors {
        wte: Spec::new(
            "transformer.wte.weight",
            vec![v, c],
            "embedding",
            Init::Normal,
        ),
        wpe: Spec::new(
            "transformer.wpe.weight",
            vec![cfg.block_size, c],
            "embedding",
            Init::Normal,
        ),
        blocks,
        ln_f: [
            Spec::new("transformer.ln_f.weight", vec![c], "final_norm", Init::Ones),
            Spec::new("transformer.ln_f.bias", vec![c], "final_norm", Init::Zeros),
        ],
        head: (!cfg.tied_head)
            .then(|| Spec::new("lm_head.weight", vec![v, c], "head", Init::Normal)),
    }
}

/// Random streams derived from the seed.
const INIT_STREAM: u64 = 0;
const DROPOUT_STREAM: u64 = 1;

/// A standard normal draw, by Box–Muller from draws `2i` and `2i+1` of stream `key`.
fn standard_normal(key: u64, i: u64) -> f64 {
    // 53 random bits, shifted into (0, 1] so the logarithm is finite.
    let uniform = |j| ((counter_hash(key, j) >> 11) + 1) as f64 / (1u64 << 53) as f64;
    let (u1, u2) = (uniform(2 * i), uniform(2 * i + 1));
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn initial_values(spec: &Spec, key: u64, n_layer: usize) -> Vec<f32> {
    let n = spec.numel();
    let normal = |std: f64| {
        (0..n as u64)
            .map(|i| (std * standard_normal(key, i)) as f32)
            .collect()
    };
    match spec.init {
        Init::Zeros => vec![0.0; n],
        Init::Ones => vec![1.0; n],
        Init::Normal => normal(0.02),
        Init::ResidualNormal => normal(0.02 / (2.0 * n_layer as f64).sqrt()),
    }
}

/// Dropout as applied in one training forward pass.
#[derive(Debug, Clone, Copy)]
struct Dropout {
    p: f32,
    /// The pass's key; each dropout site derives its own from it.
    key: u64,
}

/// Dropout sites of a pass: the embedding, then per block the attention and MLP branches.
const EMBEDDING_SITE: u64 = 0;
fn attention_site(l: usize) -> u64 {
    2 * l as u64 + 1
}
fn mlp_site(l: usize) -> u64 {
    2 * l as u64 + 2
}

/// Applies dropout from `inp` into `out` when it is on; returns the tensor that carries on.
fn dropout_forward<'a, B: Backend>(
    be: &B,
    dropout: Option<Dropout>,
    site: u64,
    inp: &'a B::Buf,
    out: &'a mut Option<B::Buf>,
) -> Result<&'a B::Buf> {
    match (dropout, out) {
        (Some(d), Some(out)) => {
            be.dropout_forward(out, inp, d.p, counter_hash(d.key, site))?;
            Ok(out)
        }
        _ => Ok(inp),
    }
}

/// The gradient before dropout, given `dout` after it: `dout` itself when dropout was off.
fn dropout_backward<'a, B: Backend>(
    be: &B,
    dropout: Option<Dropout>,
    site: u64,
    dout: &'a B::Buf,
    scratch: &'a mut Option<B::Buf>,
) -> Result<&'a B::Buf> {
    match (dropout, scratch) {
        (Some(d), Some(dinp)) => {
            be.zero(dinp)?;
            be.dropout_backward(dinp, dout, d.p, counter_hash(d.key, site))?;
            Ok(dinp)
        }
        _ => Ok(dout),
    }
}

/// Zeroes `buf` for a backward op to accumulate into.
fn cleared<'a, B: Backend>(be: &B, buf: &'a mut B::Buf) -> Result<&'a mut B::Buf> {
    be.zero(buf)?;
    Ok(buf)
}

/// Allocates optional tensors only when dropout can be on.
fn dropout_buffer<B: Backend>(be: &B, cfg: &ModelConfig, len: usize) -> Result<Option<B::Buf>> {
    (cfg.dropout > 0.0).then(|| be.alloc(len)).transpose()
}

/// One block's saved activations.
struct BlockActs<T> {
    ln1: T,
    ln1_mean: T,
    ln1_rstd: T,
    qkv: T,
    att: T,
    /// Attention output before the projection.
    atty: T,
    attn_proj: T,
    attn_dropped: Option<T>,
    /// The residual stream after the attention branch.
    res2: T,
    ln2: T,
    ln2_mean: T,
    ln2_rstd: T,
    fc: T,
    fc_gelu: T,
    fc_proj: T,
    mlp_dropped: Option<T>,
    /// The residual stream leaving the block.
    res3: T,
}

/// The activations of the last forward pass, and its token ids.
struct Acts<B: Backend> {
    dims: Btc,
    inputs: B::Ids,
    targets: B::Ids,
    embedded: B::Buf,
    embedded_dropped: Option<B::Buf>,
    blocks: Vec<BlockActs<B::Buf>>,
    lnf: B::Buf,
    lnf_mean: B::Buf,
    lnf_rstd: B::Buf,
    logits: B::Buf,
    /// Written with the loss, consumed by backward.
    dlogits: B::Buf,
    losses: B::Buf,
}

impl<B: Backend> Acts<B> {
    fn new(be: &B, cfg: &ModelConfig, d: Btc) -> Result<Self> {
        let (n, rows, h) = (d.numel(), d.rows(), cfg.n_head);
        let block = || -> Result<BlockActs<B::Buf>> {
            Ok(BlockActs {
                ln1: be.alloc(n)?,
                ln1_mean: be.alloc(rows)?,
                ln1_rstd: be.alloc(rows)?,
                qkv: be.alloc(3 * n)?,
                att: be.alloc(d.b * h * d.t * d.t)?,
                atty: be.alloc(n)?,
                attn_proj: be.alloc(n)?,
                attn_dropped: dropout_buffer(be, cfg, n)?,
                res2: be.alloc(n)?,
                ln2: be.alloc(n)?,
                ln2_mean: be.alloc(rows)?,
                ln2_rstd: be.alloc(rows)?,
                fc: be.alloc(4 * n)?,
                fc_gelu: be.alloc(4 * n)?,
                fc_proj: be.alloc(n)?,
                mlp_dropped: dropout_buffer(be, cfg, n)?,
                res3: be.alloc(n)?,
            })
        };
        Ok(Self {
            dims: d,
            inputs: be.alloc_ids(rows)?,
            targets: be.alloc_ids(rows)?,
            embedded: be.alloc(n)?,
            embedded_dropped: dropout_buffer(be, cfg, n)?,
            blocks: (0..cfg.n_layer).map(|_| block()).collect::<Result<_>>()?,
            lnf: be.alloc(n)?,
            lnf_mean: be.alloc(rows)?,
            lnf_rstd: be.alloc(rows)?,
            logits: be.alloc(rows * cfg.vocab_size)?,
            dlogits: be.alloc(rows * cfg.vocab_size)?,
            losses: be.alloc(rows)?,
        })
    }

    /// The residual stream entering block `l`; `l == n_layer` gives the final norm's input.
    fn stream_into(&self, l: usize, dropout: Option<Dropout>) -> &B::Buf {
        match l.checked_sub(1) {
            Some(prev) => &self.blocks[prev].res3,
            None => match (&self.embedded_dropped, dropout) {
                (Some(dropped), Some(_)) => dropped,
                _ => &self.embedded,
            },
        }
    }
}

/// Gradient buffers of the backward pass, shared by all blocks.
struct Scratch<T> {
    dims: Btc,
    /// The residual-stream gradient, handed from block to block.
    stream: T,
    res2: T,
    /// The gradient of a residual branch's output.
    branch: T,
    /// A branch gradient before dropout.
    undropped: Option<T>,
    fc_gelu: T,
    fc: T,
    /// The gradient of a LayerNorm output.
    ln: T,
    atty: T,
    qkv: T,
}

impl<T> Scratch<T> {
    fn new<B: Backend<Buf = T>>(be: &B, cfg: &ModelConfig, d: Btc) -> Result<Self> {
        let n = d.numel();
        Ok(Self {
            dims: d,
            stream: be.alloc(n)?,
            res2: be.alloc(n)?,
            branch: be.alloc(n)?,
            undropped: dropout_buffer(be, cfg, n)?,
            fc_gelu: be.alloc(4 * n)?,
            fc: be.alloc(4 * n)?,
            ln: be.alloc(n)?,
            atty: be.alloc(n)?,
            qkv: be.alloc(3 * n)?,
        })
    }
}

/// What backward needs to know about the last forward pass.
struct LastForward {
    dropout: Option<Dropout>,
    with_targets: bool,
}

/// The shape and randomness of one forward/backward pass.
#[derive(Debug, Clone, Copy)]
struct Pass {
    dims: Btc,
    n_head: usize,
    dropout: Option<Dropout>,
}

impl Pass {
    fn linear(&self, in_features: usize, out_features: usize) -> Linear {
        Linear {
            rows: self.dims.rows(),
            in_features,
            out_features,
        }
    }
}

fn block_forward<B: Backend>(
    be: &B,
    p: &[Param<B::Buf>; 12],
    a: &mut BlockActs<B::Buf>,
    x: &B::Buf,
    pass: Pass,
    l: usize,
) -> Result<()> {
    let [ln1_w, ln1_b, qkv_w, qkv_b, proj_w, proj_b, ln2_w, ln2_b, fc_w, fc_b, fcp_w, fcp_b] = p;
    let (rows, c) = (pass.dims.rows(), pass.dims.c);

    be.layernorm_forward(
        &mut a.ln1,
        &mut a.ln1_mean,
        &mut a.ln1_rstd,
        x,
        &ln1_w.value,
        &ln1_b.value,
        rows,
        c,
    )?;
    be.matmul_forward(
        &mut a.qkv,
        &a.ln1,
        &qkv_w.value,
        Some(&qkv_b.value),
        pass.linear(c, 3 * c),
    )?;
    be.attention_forward(&mut a.atty, &mut a.att, &a.qkv, pass.dims, pass.n_head)?;
    be.matmul_forward(
        &mut a.attn_proj,
        &a.atty,
        &proj_w.value,
        Some(&proj_b.value),
        pass.linear(c, c),
    )?;
    let branch = dropout_forward(
        be,
        pass.dropout,
        attention_site(l),
        &a.attn_proj,
        &mut a.attn_dropped,
    )?;
    be.residual_forward(&mut a.res2, x, branch)?;

    be.layernorm_forward(
        &mut a.ln2,
        &mut a.ln2_mean,
        &mut a.ln2_rstd,
        &a.res2,
        &ln2_w.value,
        &ln2_b.value,
        rows,
        c,
    )?;
    be.matmul_forward(
        &mut a.fc,
        &a.ln2,
        &fc_w.value,
        Some(&fc_b.value),
        pass.linear(c, 4 * c),
    )?;
    be.gelu_forward(&mut a.fc_gelu, &a.fc)?;
    be.matmul_forward(
        &mut a.fc_proj,
        &a.fc_gelu,
        &fcp_w.value,
        Some(&fcp_b.value),
        pass.linear(4 * c, c),
    )?;
    let branch = dropout_forward(
        be,
        pass.dropout,
        mlp_site(l),
        &a.fc_proj,
        &mut a.mlp_dropped,
    )?;
    be.residual_forward(&mut a.res3, &a.res2, branch)
}

/// Backward through block `l`: `s.stream` holds the gradient of the block's output on entry and
/// that of its input `x` on return.
fn block_backward<B: Backend>(
    be: &B,
    p: &mut [Param<B::Buf>; 12],
    a: &BlockActs<B::Buf>,
    x: &B::Buf,
    s: &mut Scratch<B::Buf>,
    pass: Pass,
    l: usize,
) -> Result<()> {
    let [ln1_w, ln1_b, qkv_w, qkv_b, proj_w, proj_b, ln2_w, ln2_b, fc_w, fc_b, fcp_w, fcp_b] = p;
    let (rows, c) = (pass.dims.rows(), pass.dims.c);

    // MLP branch.
    be.zero(&mut s.res2)?;
    be.residual_backward(&mut s.res2, cleared(be, &mut s.branch)?, &s.stream)?;
    let dfc_proj = dropout_backward(be, pass.dropout, mlp_site(l), &s.branch, &mut s.undropped)?;
    be.matmul_backward(
        cleared(be, &mut s.fc_gelu)?,
        &mut fcp_w.grad,
        Some(&mut fcp_b.grad),
        dfc_proj,
        &a.fc_gelu,
        &fcp_w.value,
        pass.linear(4 * c, c),
    )?;
    be.gelu_backward(cleared(be, &mut s.fc)?, &a.fc, &s.fc_gelu)?;
    be.matmul_backward(
        cleared(be, &mut s.ln)?,
        &mut fc_w.grad,
        Some(&mut fc_b.grad),
        &s.fc,
        &a.ln2,
        &fc_w.value,
        pass.linear(c, 4 * c),
    )?;
    be.layernorm_backward(
        &mut s.res2,
        &mut ln2_w.grad,
        &mut ln2_b.grad,
        &s.ln,
        &a.res2,
        &ln2_w.value,
        &a.ln2_mean,
        &a.ln2_rstd,
        rows,
        c,
    )?;

    // Attention branch.
    be.zero(&mut s.stream)?;
    be.residual_backward(&mut s.stream, cleared(be, &mut s.branch)?, &s.res2)?;
    let dattn_proj = dropout_backward(
        be,
        pass.dropout,
        attention_site(l),
        &s.branch,
        &mut s.undropped,
    )?;
    be.matmul_backward(
        cleared(be, &mut s.atty)?,
        &mut proj_w.grad,
        Some(&mut proj_b.grad),
        dattn_proj,
        &a.atty,
        &proj_w.value,
        pass.linear(c, c),
    )?;
    be.attention_backward(
        cleared(be, &mut s.qkv)?,
        &s.atty,
        &a.qkv,
        &a.att,
        pass.dims,
        pass.n_head,
    )?;
    be.matmul_backward(
        cleared(be, &mut s.ln)?,
        &mut qkv_w.grad,
        Some(&mut qkv_b.grad),
        &s.qkv,
        &a.ln1,
        &qkv_w.value,
        pass.linear(c, 3 * c),
    )?;
    be.layernorm_backward(
        &mut s.stream,
        &mut ln1_w.grad,
        &mut ln1_b.grad,
        &s.ln,
        x,
        &ln1_w.value,
        &a.ln1_mean,
        &a.ln1_rstd,
        rows,
        c,
    )
}

/// A GPT on backend `B`.
pub struct Gpt<B: Backend> {
    config: ModelConfig,
    backend: B,
    params: Tensors<Param<B::Buf>>,
    /// The root key of every dropout mask.
    dropout_key: u64,
    step: u64,
    rng_counter: u64,
    acts: Option<Acts<B>>,
    scratch: Option<Scratch<B::Buf>>,
    last: Option<LastForward>,
}

impl<B: Backend> Gpt<B> {
    /// A freshly initialized model: GPT-2 initialization, deterministic in `seed`.
    pub fn new(config: ModelConfig, backend: B, seed: u64) -> Result<Self> {
        config.validate()?;
        let init_key = counter_hash(seed, INIT_STREAM);
        let mut index = 0u64;
        let params = specs(&config).try_map(|spec| {
            let key = counter_hash(init_key, index);
            index += 1;
            let numel = spec.numel();
            let mut value = backend.alloc(numel)?;
            backend.upload(&mut value, &initial_values(&spec, key, config.n_layer))?;
            Ok(Param {
                value,
                grad: backend.alloc(numel)?,
                m: backend.alloc(numel)?,
                v: backend.alloc(numel)?,
                spec,
            })
        })?;
        Ok(Self {
            dropout_key: counter_hash(seed, DROPOUT_STREAM),
            config,
            backend,
            params,
            step: 0,
            rng_counter: 0,
            acts: None,
            scratch: None,
            last: None,
        })
    }

    /// The backend the model computes on.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Optimizer steps taken (including those of a loaded state).
    pub fn steps(&self) -> u64 {
        self.step
    }

    pub fn num_parameters(&self) -> usize {
        self.params.iter().map(|p| p.spec.numel()).sum()
    }

    /// `ignorable`: the ids may be [`IGNORE_INDEX`] (targets may; inputs never).
    fn check_ids(&self, what: &str, ids: &[u32], expected: usize, ignorable: bool) -> Result<()> {
        ensure!(
            ids.len() == expected,
            "{} {what} tokens given for a batch of {expected}",
            ids.len()
        );
        let vocab = self.config.vocab_size;
        let allowed = |id: u32| (id as usize) < vocab || (ignorable && id == IGNORE_INDEX);
        if let Some((i, id)) = ids.iter().enumerate().find(|(_, &id)| !allowed(id)) {
            bail!("{what} token {id} at position {i} is outside the vocabulary of {vocab}");
        }
        Ok(())
    }

    /// `batch` sequences of `seq` tokens (`seq <= block_size`), row-major; with targets returns
    /// the mean loss. `train` turns dropout on.
    pub fn forward(
        &mut self,
        inputs: &[u32],
        targets: Option<&[u32]>,
        batch: usize,
        seq: usize,
        train: bool,
    ) -> Result<Option<f32>> {
        ensure!(
            batch > 0 && seq > 0,
            "empty batch of {batch} sequences of {seq} tokens"
        );
        ensure!(
            seq <= self.config.block_size,
            "sequence length {seq} exceeds the block size {}",
            self.config.block_size
        );
        let rows = batch.checked_mul(seq).context("batch size overflows")?;
        self.check_ids("input", inputs, rows, false)?;
        if let Some(targets) = targets {
            self.check_ids("target", targets, rows, true)?;
        }

        self.last = None;
        let be = &self.backend;
        let dims = Btc {
            b: batch,
            t: seq,
            c: self.config.n_embd,
        };
        let mut acts = match self.acts.take() {
            Some(acts) if acts.dims == dims => acts,
            _ => Acts::new(be, &self.config, dims)?,
        };
        let dropout = (train && self.config.dropout > 0.0).then(|| {
            let key = counter_hash(self.dropout_key, self.rng_counter);
            self.rng_counter += 1;
            Dropout {
                p: self.config.dropout,
                key,
            }
        });
        let pass = Pass {
            dims,
            n_head: self.config.n_head,
            dropout,
        };
        be.upload_ids(&mut acts.inputs, inputs)?;
        let p = &self.params;

        be.embedding_forward(
            &mut acts.embedded,
            &acts.inputs,
            &p.wte.value,
            &p.wpe.value,
            dims,
        )?;
        let mut x = dropout_forward(
            be,
            dropout,
            EMBEDDING_SITE,
            &acts.embedded,
            &mut acts.embedded_dropped,
        )?;
        for (l, (params, block)) in p.blocks.iter().zip(&mut acts.blocks).enumerate() {
            block_forward(be, params, block, x, pass, l)?;
            x = &block.res3;
        }
        let [lnf_w, lnf_b] = &p.ln_f;
        be.layernorm_forward(
            &mut acts.lnf,
            &mut acts.lnf_mean,
            &mut acts.lnf_rstd,
            x,
            &lnf_w.value,
            &lnf_b.value,
            rows,
            dims.c,
        )?;
        let head = p.head.as_ref().unwrap_or(&p.wte);
        let vocab = self.config.vocab_size;
        be.matmul_forward(
            &mut acts.logits,
            &acts.lnf,
            &head.value,
            None,
            pass.linear(dims.c, vocab),
        )?;

        let loss = match targets {
            Some(targets) => {
                be.upload_ids(&mut acts.targets, targets)?;
                // The mean over the targets that count; ignored ones add nothing.
                let counted = targets.iter().filter(|&&t| t != IGNORE_INDEX).count();
                ensure!(
                    counted > 0,
                    "every target of the batch is ignored: there is nothing to learn from it"
                );
                be.softmax_cross_entropy(
                    &mut acts.losses,
                    &mut acts.dlogits,
                    &acts.logits,
                    &acts.targets,
                    rows,
                    vocab,
                    1.0 / counted as f32,
                )?;
                let losses = be.download(&acts.losses)?;
                // Averaged in f64: the per-token losses are the result, not an intermediate.
                Some((losses.iter().map(|&l| f64::from(l)).sum::<f64>() / counted as f64) as f32)
            }
            None => None,
        };
        self.acts = Some(acts);
        self.last = Some(LastForward {
            dropout,
            with_targets: loss.is_some(),
        });
        Ok(loss)
    }

    /// Backward of the last forward pass, which must have had targets; gradients accumulate.
    pub fn backward(&mut self) -> Result<()> {
        let (Some(last), Some(acts)) = (&self.last, &self.acts) else {
            bail!("backward needs a forward pass with targets first");
        };
        ensure!(
            last.with_targets,
            "backward needs targets: the last forward pass had none"
        );
        let be = &self.backend;
        let dims = acts.dims;
        let mut s = match self.scratch.take() {
            Some(s) if s.dims == dims => s,
            _ => Scratch::new(be, &self.config, dims)?,
        };
        let pass = Pass {
            dims,
            n_head: self.config.n_head,
            dropout: last.dropout,
        };
        let (rows, c) = (dims.rows(), dims.c);
        let p = &mut self.params;

        let head = p.head.as_mut().unwrap_or(&mut p.wte);
        be.matmul_backward(
            cleared(be, &mut s.ln)?,
            &mut head.grad,
            None,
            &acts.dlogits,
            &acts.lnf,
            &head.value,
            pass.linear(c, self.config.vocab_size),
        )?;
        let [lnf_w, lnf_b] = &mut p.ln_f;
        be.layernorm_backward(
            cleared(be, &mut s.stream)?,
            &mut lnf_w.grad,
            &mut lnf_b.grad,
            &s.ln,
            acts.stream_into(acts.blocks.len(), pass.dropout),
            &lnf_w.value,
            &acts.lnf_mean,
            &acts.lnf_rstd,
            rows,
            c,
        )?;
        for (l, params) in p.blocks.iter_mut().enumerate().rev() {
            let x = acts.stream_into(l, pass.dropout);
            block_backward(be, params, &acts.blocks[l], x, &mut s, pass, l)?;
        }
        let demb = dropout_backward(
            be,
            pass.dropout,
            EMBEDDING_SITE,
            &s.stream,
            &mut s.undropped,
        )?;
        be.embedding_backward(&mut p.wte.grad, &mut p.wpe.grad, demb, &acts.inputs, dims)?;
        self.scratch = Some(s);
        Ok(())
    }

    pub fn zero_grad(&mut self) -> Result<()> {
        for p in self.params.iter_mut() {
            self.backend.zero(&mut p.grad)?;
        }
        Ok(())
    }

    /// Multiplies every gradient by `factor`, e.g. `1/k` after accumulating `k` micro-batches.
    pub fn scale_grads(&mut self, factor: f32) -> Result<()> {
        for p in self.params.iter_mut() {
            self.backend.scale(&mut p.grad, factor)?;
        }
        Ok(())
    }

    /// The logits of the last forward pass, `[batch, seq, vocab]`; empty before any.
    pub fn logits(&self) -> Result<Vec<f32>> {
        match &self.acts {
            Some(acts) => self.backend.download(&acts.logits),
            None => Ok(Vec::new()),
        }
    }

    /// Per-tensor gradient sums of squares, in checkpoint order.
    fn grad_sum_squares(&self) -> Result<Vec<f64>> {
        let grads: Vec<&B::Buf> = self.params.iter().map(|p| &p.grad).collect();
        self.backend.sum_squares(&grads)
    }

    pub fn grad_norms(&self) -> Result<GradNorms> {
        let mut groups: Vec<(String, f64)> = Vec::new();
        for (p, sq) in self.params.iter().zip(self.grad_sum_squares()?) {
            match groups.last_mut() {
                Some((name, sum)) if *name == p.spec.group => *sum += sq,
                _ => groups.push((p.spec.group.clone(), sq)),
            }
        }
        let global = groups.iter().map(|(_, sq)| sq).sum::<f64>().sqrt() as f32;
        Ok(GradNorms {
            global,
            groups: groups
                .into_iter()
                .map(|(name, sq)| (name, sq.sqrt() as f32))
                .collect(),
        })
    }

    /// Clips to `max_norm` (if > 0), applies one AdamW step at `lr`; returns the pre-clip global
    /// norm. Weight decay applies to matrices only (see [`decays`]).
    pub fn step(&mut self, opt: &AdamW, lr: f32, max_norm: f32) -> Result<f32> {
        let norm = self.grad_sum_squares()?.iter().sum::<f64>().sqrt() as f32;
        if let Some(factor) = clip_factor(norm, max_norm) {
            self.scale_grads(factor)?;
        }
        self.step += 1;
        for p in self.params.iter_mut() {
            let update = opt.update(lr, self.step, decays(&p.spec.shape));
            self.backend
                .adamw(&mut p.value, &p.grad, &mut p.m, &mut p.v, &update)?;
        }
        Ok(norm)
    }

    /// Host copies of one field of every parameter, in checkpoint order.
    fn download_all(&self, field: impl Fn(&Param<B::Buf>) -> &B::Buf) -> Result<Vec<NamedTensor>> {
        self.params
            .iter()
            .map(|p| {
                Ok(NamedTensor {
                    name: p.spec.name.clone(),
                    shape: p.spec.shape.clone(),
                    data: self.backend.download(field(p))?,
                })
            })
            .collect()
    }

    /// The gradients, named like the parameters.
    pub fn grads(&self) -> Result<Vec<NamedTensor>> {
        self.download_all(|p| &p.grad)
    }

    /// Everything needed to resume bit-exactly (with the same config and seed).
    pub fn state(&self) -> Result<ModelState> {
        Ok(ModelState {
            params: self.download_all(|p| &p.value)?,
            adam_m: self.download_all(|p| &p.m)?,
            adam_v: self.download_all(|p| &p.v)?,
            step: self.step,
            rng_counter: self.rng_counter,
        })
    }

    /// Restores a [`Gpt::state`]; fails, changing nothing, unless every tensor matches this
    /// model's names and shapes. Gradients start at zero.
    pub fn load_state(&mut self, state: &ModelState) -> Result<()> {
        let sets = [
            ("params", &state.params),
            ("adam_m", &state.adam_m),
            ("adam_v", &state.adam_v),
        ];
        let count = self.params.iter().count();
        for (kind, tensors) in sets {
            ensure!(
                tensors.len() == count,
                "{kind} has {} tensors where the model has {count}",
                tensors.len()
            );
            for (t, p) in tensors.iter().zip(self.params.iter()) {
                ensure!(
                    t.name == p.spec.name && t.shape == p.spec.shape,
                    "{kind} holds {} {:?} where the model has {} {:?}",
                    t.name,
                    t.shape,
                    p.spec.name,
                    p.spec.shape
                );
                ensure!(
                    t.data.len() == p.spec.numel(),
                    "{kind} tensor {} has {} values for shape {:?}",
                    t.name,
                    t.data.len(),
                    t.shape
                );
            }
        }
        let be = &self.backend;
        for (i, p) in self.params.iter_mut().enumerate() {
            be.upload(&mut p.value, &state.params[i].data)?;
            be.upload(&mut p.m, &state.adam_m[i].data)?;
            be.upload(&mut p.v, &state.adam_v[i].data)?;
            be.zero(&mut p.grad)?;
        }
        self.step = state.step;
        self.rng_counter = state.rng_counter;
        self.last = None;
        Ok(())
    }
}
