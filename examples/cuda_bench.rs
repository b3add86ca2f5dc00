//! Speed of the CUDA backend on a GPU: every kernel family at the shapes of a preset (ms per
//! call, TFLOP/s of the products, GB/s of the memory-bound kernels), then whole training steps
//! (ms/step, tokens/s, MFU). The figures in docs/benchmarks.md come from here, run by
//! `scripts/gpu-check.sh` on the device machine:
//!
//!     cuda_bench [shakespeare-char|gpt2-124m] [fp32|tf32|bf16]
//!
//! Times are wall-clock over back-to-back calls ended by one synchronize, so they include launch
//! overhead, as a training step pays it.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use mlwf::train::backend::Precision;
use mlwf::train::backend::{Backend, Btc, Linear};
use mlwf::train::config::TrainConfig;
use mlwf::train::cuda::CudaBackend;
use mlwf::train::model::{Gpt, ModelConfig};
use mlwf::train::optim::AdamW;
use mlwf::train::rng::counter_hash;

/// Calls per timing, after as many warm-up calls.
const ITERS: usize = 20;

struct Shape {
    b: usize,
    t: usize,
    c: usize,
    n_head: usize,
    n_layer: usize,
    vocab: usize,
}

fn shape(preset: &str) -> Result<Shape> {
    let config = TrainConfig::preset(preset)?;
    let vocab = match preset {
        "shakespeare-char" => 65,
        "gpt2-124m" => 50_257,
        _ => bail!("no benchmark vocabulary for preset {preset}"),
    };
    Ok(Shape {
        b: config.train.batch_size,
        t: config.model.block_size,
        c: config.model.n_embd,
        n_head: config.model.n_head,
        n_layer: config.model.n_layer,
        vocab,
    })
}

/// Milliseconds per call of `op`.
fn time(be: &CudaBackend, mut op: impl FnMut() -> Result<()>) -> Result<f64> {
    for _ in 0..ITERS {
        op()?;
    }
    be.synchronize()?;
    let start = Instant::now();
    for _ in 0..ITERS {
        op()?;
    }
    be.synchronize()?;
    Ok(start.elapsed().as_secs_f64() * 1e3 / ITERS as f64)
}

fn random(be: &CudaBackend, seed: u64, n: usize) -> Result<<CudaBackend as Backend>::Buf> {
    let values: Vec<f32> = (0..n as u64)
        .map(|i| ((counter_hash(seed, i) >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0)
        .collect();
    let mut buf = be.alloc(n)?;
    be.upload(&mut buf, &values)?;
    Ok(buf)
}

fn report(what: &str, ms: f64, flops: f64, bytes: f64) {
    let mut line = format!("{what:<34} {ms:>9.3} ms");
    if flops > 0.0 {
        line += &format!("  {:>7.1} TFLOP/s", flops / ms / 1e9);
    }
    if bytes > 0.0 {
        line += &format!("  {:>7.0} GB/s", bytes / ms / 1e6);
    }
    println!("{line}");
}

fn kernels(be: &CudaBackend, s: &Shape) -> Result<()> {
    let rows = s.b * s.t;
    let d = Btc {
        b: s.b,
        t: s.t,
        c: s.c,
    };
    let n = d.numel();
    for (name, inf, outf) in [
        ("qkv", s.c, 3 * s.c),
        ("attn proj", s.c, s.c),
        ("fc", s.c, 4 * s.c),
        ("fc proj", 4 * s.c, s.c),
        ("lm head", s.c, s.vocab),
    ] {
        let dims = Linear {
            rows,
            in_features: inf,
            out_features: outf,
        };
        let (x, w, bias) = (
            random(be, 1, rows * inf)?,
            random(be, 2, outf * inf)?,
            random(be, 3, outf)?,
        );
        let (mut out, mut dx, mut dw, mut db) = (
            be.alloc(rows * outf)?,
            be.alloc(rows * inf)?,
            be.alloc(outf * inf)?,
            be.alloc(outf)?,
        );
        let flops = 2.0 * (rows * inf * outf) as f64;
        let fwd = time(be, || {
            be.matmul_forward(&mut out, &x, &w, Some(&bias), dims)
        })?;
        report(
            &format!("matmul fwd {name} {rows}x{inf}x{outf}"),
            fwd,
            flops,
            0.0,
        );
        let bwd = time(be, || {
            be.matmul_backward(&mut dx, &mut dw, Some(&mut db), &out, &x, &w, dims)
        })?;
        report(&format!("matmul bwd {name}"), bwd, 2.0 * flops, 0.0);
    }

    let hs = s.c / s.n_head;
    let att_len = s.b * s.n_head * s.t * s.t;
    let (qkv, dy) = (random(be, 4, 3 * n)?, random(be, 5, n)?);
    let (mut out, mut att, mut dqkv) = (be.alloc(n)?, be.alloc(att_len)?, be.alloc(3 * n)?);
    // Causal: half of the T×T scores and products are needed.
    let att_flops = 2.0 * 2.0 * (s.b * s.n_head * s.t * s.t * hs) as f64 / 2.0;
    let fwd = time(be, || {
        be.attention_forward(&mut out, &mut att, &qkv, d, s.n_head)
    })?;
    report("attention fwd", fwd, att_flops, 0.0);
    let bwd = time(be, || {
        be.attention_backward(&mut dqkv, &dy, &qkv, &att, d, s.n_head)
    })?;
    report("attention bwd", bwd, 2.0 * att_flops, 0.0);

    let f = 4.0; // bytes per f32
    let (x, w, bias) = (random(be, 6, n)?, random(be, 7, s.c)?, random(be, 8, s.c)?);
    let (mut y, mut mean, mut rstd) = (be.alloc(n)?, be.alloc(rows)?, be.alloc(rows)?);
    let (mut dx, mut dw, mut db) = (be.alloc(n)?, be.alloc(s.c)?, be.alloc(s.c)?);
    let ms = time(be, || {
        be.layernorm_forward(&mut y, &mut mean, &mut rstd, &x, &w, &bias, rows, s.c)
    })?;
    report("layernorm fwd", ms, 0.0, 2.0 * f * n as f64);
    let ms = time(be, || {
        be.layernorm_backward(
            &mut dx, &mut dw, &mut db, &y, &x, &w, &mean, &rstd, rows, s.c,
        )
    })?;
    // dout and inp twice (input gradient, then parameter gradients), dinp read and written.
    report("layernorm bwd", ms, 0.0, 6.0 * f * n as f64);

    let (h, dh) = (random(be, 9, 4 * n)?, random(be, 10, 4 * n)?);
    let (mut g, mut dg) = (be.alloc(4 * n)?, be.alloc(4 * n)?);
    let ms = time(be, || be.gelu_forward(&mut g, &h))?;
    report("gelu fwd", ms, 0.0, 2.0 * f * (4 * n) as f64);
    let ms = time(be, || be.gelu_backward(&mut dg, &h, &dh))?;
    report("gelu bwd", ms, 0.0, 4.0 * f * (4 * n) as f64);
    let ms = time(be, || be.residual_forward(&mut y, &x, &dy))?;
    report("residual fwd", ms, 0.0, 3.0 * f * n as f64);
    let ms = time(be, || be.dropout_forward(&mut y, &x, 0.1, 7))?;
    report("dropout fwd", ms, 0.0, 2.0 * f * n as f64);

    let logits = random(be, 11, rows * s.vocab)?;
    let (mut losses, mut dlogits) = (be.alloc(rows)?, be.alloc(rows * s.vocab)?);
    let mut targets = be.alloc_ids(rows)?;
    let ids: Vec<u32> = (0..rows as u64)
        .map(|i| (counter_hash(12, i) % s.vocab as u64) as u32)
        .collect();
    be.upload_ids(&mut targets, &ids)?;
    let ms = time(be, || {
        be.softmax_cross_entropy(
            &mut losses,
            &mut dlogits,
            &logits,
            &targets,
            rows,
            s.vocab,
            1.0,
        )
    })?;
    report(
        "classifier (softmax+CE+dlogits)",
        ms,
        0.0,
        3.0 * f * (rows * s.vocab) as f64,
    );

    let params = 12 * s.n_layer * s.c * s.c + s.vocab * s.c;
    let (mut p, grad, mut m, mut v) = (
        random(be, 13, params)?,
        random(be, 14, params)?,
        be.alloc(params)?,
        be.alloc(params)?,
    );
    let update = AdamW::default().update(1e-4, 10, true);
    let ms = time(be, || be.adamw(&mut p, &grad, &mut m, &mut v, &update))?;
    report(
        &format!("adamw ({params} params)"),
        ms,
        0.0,
        7.0 * f * params as f64,
    );
    let ms = time(be, || be.sum_squares(&[&grad]).map(drop))?;
    report(
        "sum of squares (incl. readback)",
        ms,
        0.0,
        f * params as f64,
    );
    Ok(())
}

/// Peak dense tensor throughput of the GPU in `precision`, TFLOP/s, for the MFU; `None` for a
/// GPU not in the table (set `MLWF_PEAK_TFLOPS`).
fn peak_tflops(name: &str, precision: Precision) -> Option<f64> {
    if let Some(peak) = std::env::var("MLWF_PEAK_TFLOPS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return Some(peak);
    }
    // H100/H200 SXM: 989 bf16, 495 tf32, 67 fp32 (non-tensor) TFLOP/s.
    (name.contains("H100") || name.contains("H200")).then_some(match precision {
        Precision::Bf16 => 989.0,
        Precision::Tf32 => 495.0,
        Precision::Fp32 => 67.0,
    })
}

fn steps(be: CudaBackend, s: &Shape, precision: Precision) -> Result<()> {
    let name = be.gpu_facts().name.clone();
    let config = ModelConfig {
        vocab_size: s.vocab,
        block_size: s.t,
        n_layer: s.n_layer,
        n_head: s.n_head,
        n_embd: s.c,
        dropout: 0.0,
        tied_head: true,
    };
    let mut model = Gpt::new(config, be, 1)?;
    let tokens = s.b * s.t;
    let ids = |seed| -> Vec<u32> {
        (0..tokens as u64)
            .map(|i| (counter_hash(seed, i) % s.vocab as u64) as u32)
            .collect()
    };
    let (inputs, targets) = (ids(1), ids(2));
    let opt = AdamW::default();
    let mut step = || -> Result<()> {
        model.forward(&inputs, Some(&targets), s.b, s.t, true)?;
        model.backward()?;
        model.step(&opt, 1e-4, 1.0).unwrap();
        model.zero_grad().unwrap();
        Ok(())
    };
    for _ in 0..3 {
        step()?;
    }
    let n = 10;
    let start = Instant::now();
    for _ in 0..n {
        step()?;
    }
    let ms = start.elapsed().as_secs_f64() * 1e3 / n as f64;
    let tok_s = tokens as f64 / (ms / 1e3);
    // nanoGPT's estimate: 6 FLOPs per parameter per token, plus attention's 12·L·C·T.
    let params = (12 * s.n_layer * s.c * s.c + s.vocab * s.c + s.t * s.c) as f64;
    let flops_per_token = 6.0 * params + 12.0 * (s.n_layer * s.c * s.t) as f64;
    let achieved = flops_per_token * tok_s / 1e12;
    let mfu = peak_tflops(&name, precision)
        .map(|peak| format!("{:.1}%", 100.0 * achieved / peak))
        .unwrap_or_else(|| "n/a (set MLWF_PEAK_TFLOPS)".into());
    println!("train step: {ms:.2} ms/step, {tok_s:.0} tokens/s, {achieved:.1} TFLOP/s, MFU {mfu}");
    Ok(())
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let preset = args.next().unwrap_or_else(|| "shakespeare-char".into());
    let precision: Precision = args.next().as_deref().unwrap_or("bf16").parse()?;
    let s = shape(&preset)?;
    let be = CudaBackend::new(0, precision).context("opening cuda:0")?;
    println!(
        "# {preset}, {precision}, B={} T={} on {:?}",
        s.b,
        s.t,
        be.facts()
    );
    kernels(&be, &s)?;
    steps(be, &s, precision)
}
