//! The trainer's numerics: every backend op against central finite differences, the whole GPT
//! likewise, AdamW and the schedule against hand-computed values, determinism, resume, and a
//! small model overfitting one batch.
//!
//! The op checks are generic over `Backend`, so a device backend can run the same ones.

use mlwf::train::backend::{dropout_keep, dropout_threshold, Backend, Btc, Linear, IGNORE_INDEX};
use mlwf::train::cpu::CpuBackend;
use mlwf::train::model::{Gpt, ModelConfig, ModelState, NamedTensor};
use mlwf::train::optim::{clip_factor, decays, lr_at, AdamW};
use mlwf::train::rng::counter_hash;

/// `n` deterministic values uniform in `[lo, hi)`.
fn data(seed: u64, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n as u64)
        .map(|i| {
            let u = (counter_hash(seed, i) >> 40) as f32 / (1u64 << 24) as f32;
            lo + (hi - lo) * u
        })
        .collect()
}

/// `n` deterministic token ids below `vocab`.
fn tokens(seed: u64, n: usize, vocab: usize) -> Vec<u32> {
    (0..n as u64)
        .map(|i| (counter_hash(seed, i) % vocab as u64) as u32)
        .collect()
}

fn up<B: Backend>(be: &B, values: &[f32]) -> B::Buf {
    let mut buf = be.alloc(values.len()).unwrap();
    be.upload(&mut buf, values).unwrap();
    buf
}

fn down<B: Backend>(be: &B, buf: &B::Buf) -> Vec<f32> {
    be.download(buf).unwrap()
}

fn zeros<B: Backend>(be: &B, len: usize) -> B::Buf {
    be.alloc(len).unwrap()
}

fn up_ids<B: Backend>(be: &B, ids: &[u32]) -> B::Ids {
    let mut buf = be.alloc_ids(ids.len()).unwrap();
    be.upload_ids(&mut buf, ids).unwrap();
    buf
}

/// `Σ a·w` in f64: the scalar loss whose gradient with respect to `a` is `w`.
fn dot(a: &[f32], w: &[f32]) -> f64 {
    assert_eq!(a.len(), w.len());
    a.iter()
        .zip(w)
        .map(|(&a, &w)| f64::from(a) * f64::from(w))
        .sum()
}

/// Step of the central differences.
const EPS: f32 = 1e-2;

/// Compares `analytic`, the gradient of `loss` at `x`, with central differences of step
/// `eps` (in f64, over the step actually representable in f32), allowing `atol + rtol·|g|`.
fn check_grad(
    what: &str,
    x: &[f32],
    analytic: &[f32],
    eps: f32,
    (atol, rtol): (f64, f64),
    mut loss: impl FnMut(&[f32]) -> f64,
) {
    assert_eq!(x.len(), analytic.len(), "{what}: gradient length");
    let mut xp = x.to_vec();
    for i in 0..x.len() {
        let (hi, lo) = (x[i] + eps, x[i] - eps);
        xp[i] = hi;
        let l_hi = loss(&xp);
        xp[i] = lo;
        let l_lo = loss(&xp);
        xp[i] = x[i];
        let numeric = (l_hi - l_lo) / (f64::from(hi) - f64::from(lo));
        let a = f64::from(analytic[i]);
        assert!(
            (a - numeric).abs() <= atol + rtol * numeric.abs(),
            "{what}[{i}]: analytic {a} vs numeric {numeric}"
        );
    }
    // A gradient that is zero everywhere would pass against a loss that ignores `x`.
    assert!(
        analytic.iter().any(|g| g.abs() > 1e-3),
        "{what}: gradient is zero everywhere"
    );
}

const LINEAR_TOL: (f64, f64) = (1e-3, 1e-3);
const SMOOTH_TOL: (f64, f64) = (2e-3, 1e-2);

fn embedding_gradcheck<B: Backend>(be: &B) {
    let (v, p) = (5, 4);
    let d = Btc { b: 2, t: 3, c: 3 };
    // Repeated ids check that their gradients add up.
    let ids = vec![1u32, 4, 1, 0, 1, 4];
    let wte = data(1, v * d.c, -1.0, 1.0);
    let wpe = data(2, p * d.c, -1.0, 1.0);
    let w = data(3, d.numel(), -1.0, 1.0);
    let fwd = |wte: &[f32], wpe: &[f32]| {
        let mut out = zeros(be, d.numel());
        let ids = up_ids(be, &ids);
        be.embedding_forward(&mut out, &ids, &up(be, wte), &up(be, wpe), d)
            .unwrap();
        down(be, &out)
    };
    let out = fwd(&wte, &wpe);
    assert_eq!(out[d.c + 2], wte[4 * d.c + 2] + wpe[d.c + 2], "row (0,1)");

    let (mut dwte, mut dwpe) = (zeros(be, wte.len()), zeros(be, wpe.len()));
    let ids_buf = up_ids(be, &ids);
    be.embedding_backward(&mut dwte, &mut dwpe, &up(be, &w), &ids_buf, d)
        .unwrap();
    let (dwte, dwpe) = (down(be, &dwte), down(be, &dwpe));
    check_grad("dwte", &wte, &dwte, EPS, LINEAR_TOL, |x| {
        dot(&fwd(x, &wpe), &w)
    });
    check_grad("dwpe", &wpe, &dwpe, EPS, LINEAR_TOL, |x| {
        dot(&fwd(&wte, x), &w)
    });
}

fn layernorm_gradcheck<B: Backend>(be: &B) {
    // Enough rows and channels to span several parallel tasks.
    let (rows, c) = (20, 70);
    let x = data(1, rows * c, -2.0, 2.0);
    let weight = data(2, c, 0.5, 1.5);
    let bias = data(3, c, -0.5, 0.5);
    let w = data(4, rows * c, -1.0, 1.0);
    let fwd = |x: &[f32], weight: &[f32], bias: &[f32]| {
        let (mut out, mut mean, mut rstd) = (zeros(be, rows * c), zeros(be, rows), zeros(be, rows));
        be.layernorm_forward(
            &mut out,
            &mut mean,
            &mut rstd,
            &up(be, x),
            &up(be, weight),
            &up(be, bias),
            rows,
            c,
        )
        .unwrap();
        (out, mean, rstd)
    };
    let loss =
        |x: &[f32], weight: &[f32], bias: &[f32]| dot(&down(be, &fwd(x, weight, bias).0), &w);

    // With unit weight and zero bias every row comes out with mean 0 and variance 1.
    let (plain, _, _) = fwd(&x, &vec![1.0; c], &vec![0.0; c]);
    for row in down(be, &plain).chunks(c) {
        let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / c as f64;
        let var = row
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / c as f64;
        assert!(
            mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-3,
            "mean {mean}, var {var}"
        );
    }

    let (_, mean, rstd) = fwd(&x, &weight, &bias);
    let (mut dx, mut dw, mut db) = (zeros(be, x.len()), zeros(be, c), zeros(be, c));
    be.layernorm_backward(
        &mut dx,
        &mut dw,
        &mut db,
        &up(be, &w),
        &up(be, &x),
        &up(be, &weight),
        &mean,
        &rstd,
        rows,
        c,
    )
    .unwrap();
    let (dx, dw, db) = (down(be, &dx), down(be, &dw), down(be, &db));
    check_grad("layernorm dinp", &x, &dx, EPS, SMOOTH_TOL, |x| {
        loss(x, &weight, &bias)
    });
    check_grad("layernorm dweight", &weight, &dw, EPS, SMOOTH_TOL, |p| {
        loss(&x, p, &bias)
    });
    check_grad("layernorm dbias", &bias, &db, EPS, SMOOTH_TOL, |p| {
        loss(&x, &weight, p)
    });
}

fn matmul_gradcheck<B: Backend>(be: &B) {
    matmul_case(be, true);
    matmul_case(be, false);
}

fn matmul_case<B: Backend>(be: &B, with_bias: bool) {
    // More rows and output features than one parallel task takes.
    let d = Linear {
        rows: 67,
        in_features: 5,
        out_features: 66,
    };
    let x = data(1, d.rows * d.in_features, -1.0, 1.0);
    let weight = data(2, d.out_features * d.in_features, -1.0, 1.0);
    let bias = data(3, d.out_features, -1.0, 1.0);
    let w = data(4, d.rows * d.out_features, -1.0, 1.0);
    let fwd = |x: &[f32], weight: &[f32], bias: &[f32]| {
        let mut out = zeros(be, d.rows * d.out_features);
        let bias = up(be, bias);
        let bias = with_bias.then_some(&bias);
        be.matmul_forward(&mut out, &up(be, x), &up(be, weight), bias, d)
            .unwrap();
        down(be, &out)
    };

    let out = fwd(&x, &weight, &bias);
    for (r, o) in [(0, 0), (66, 65), (64, 3), (5, 64)] {
        let expected: f32 = (0..d.in_features)
            .map(|i| x[r * d.in_features + i] * weight[o * d.in_features + i])
            .sum::<f32>()
            + if with_bias { bias[o] } else { 0.0 };
        let got = out[r * d.out_features + o];
        assert!(
            (got - expected).abs() < 1e-5,
            "out[{r},{o}] = {got}, expected {expected}"
        );
    }

    let (mut dx, mut dw, mut db) = (
        zeros(be, x.len()),
        zeros(be, weight.len()),
        zeros(be, bias.len()),
    );
    be.matmul_backward(
        &mut dx,
        &mut dw,
        with_bias.then_some(&mut db),
        &up(be, &w),
        &up(be, &x),
        &up(be, &weight),
        d,
    )
    .unwrap();
    let (dx, dw, db) = (down(be, &dx), down(be, &dw), down(be, &db));
    let loss = |x: &[f32], weight: &[f32], bias: &[f32]| dot(&fwd(x, weight, bias), &w);
    check_grad("matmul dinp", &x, &dx, EPS, LINEAR_TOL, |p| {
        loss(p, &weight, &bias)
    });
    check_grad("matmul dweight", &weight, &dw, EPS, LINEAR_TOL, |p| {
        loss(&x, p, &bias)
    });
    if with_bias {
        check_grad("matmul dbias", &bias, &db, EPS, LINEAR_TOL, |p| {
            loss(&x, &weight, p)
        });
    } else {
        assert!(db.iter().all(|&g| g == 0.0), "no bias, no bias gradient");
    }
}

/// Attention written out loop by loop, in f64.
fn naive_attention(qkv: &[f32], d: Btc, n_head: usize) -> Vec<f64> {
    let (t, c) = (d.t, d.c);
    let hs = c / n_head;
    let at = |b: usize, ti: usize, part: usize, h: usize, i: usize| {
        f64::from(qkv[(b * t + ti) * 3 * c + part * c + h * hs + i])
    };
    let mut out = vec![0.0; d.numel()];
    for b in 0..d.b {
        for h in 0..n_head {
            for t1 in 0..t {
                let scores: Vec<f64> = (0..=t1)
                    .map(|t2| {
                        (0..hs)
                            .map(|i| at(b, t1, 0, h, i) * at(b, t2, 1, h, i))
                            .sum::<f64>()
                            / (hs as f64).sqrt()
                    })
                    .collect();
                let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let sum: f64 = exps.iter().sum();
                for i in 0..hs {
                    out[(b * t + t1) * c + h * hs + i] = exps
                        .iter()
                        .enumerate()
                        .map(|(t2, e)| e / sum * at(b, t2, 2, h, i))
                        .sum();
                }
            }
        }
    }
    out
}

fn attention_gradcheck<B: Backend>(be: &B) {
    let d = Btc { b: 2, t: 5, c: 8 };
    let n_head = 2;
    let qkv = data(1, 3 * d.numel(), -1.5, 1.5);
    let w = data(2, d.numel(), -1.0, 1.0);
    let fwd = |qkv: &[f32]| {
        let (mut out, mut att) = (zeros(be, d.numel()), zeros(be, d.b * n_head * d.t * d.t));
        be.attention_forward(&mut out, &mut att, &up(be, qkv), d, n_head)
            .unwrap();
        (out, att)
    };
    let (out, att) = fwd(&qkv);
    for (got, expected) in down(be, &out).iter().zip(naive_attention(&qkv, d, n_head)) {
        assert!(
            (f64::from(*got) - expected).abs() < 1e-5,
            "{got} vs {expected}"
        );
    }
    for (i, &p) in down(be, &att).iter().enumerate() {
        let (t1, t2) = ((i / d.t) % d.t, i % d.t);
        assert!(t2 <= t1 || p == 0.0, "attention to the future at {i}");
    }
    // Causality: a change at the last position leaves every earlier output as it was.
    let mut later = qkv.clone();
    let last = (d.t - 1) * 3 * d.c;
    later[last..last + 3 * d.c]
        .iter_mut()
        .for_each(|x| *x += 1.0);
    let (a, b) = (down(be, &out), down(be, &fwd(&later).0));
    assert_eq!(a[..(d.t - 1) * d.c], b[..(d.t - 1) * d.c]);
    assert_ne!(a[(d.t - 1) * d.c..d.t * d.c], b[(d.t - 1) * d.c..d.t * d.c]);

    let mut dqkv = zeros(be, qkv.len());
    be.attention_backward(&mut dqkv, &up(be, &w), &up(be, &qkv), &att, d, n_head)
        .unwrap();
    check_grad(
        "attention dqkv",
        &qkv,
        &down(be, &dqkv),
        EPS,
        SMOOTH_TOL,
        |x| dot(&down(be, &fwd(x).0), &w),
    );
}

fn gelu_gradcheck<B: Backend>(be: &B) {
    let x = data(1, 64, -5.0, 5.0);
    let w = data(2, 64, -1.0, 1.0);
    let fwd = |x: &[f32]| {
        let mut out = zeros(be, x.len());
        be.gelu_forward(&mut out, &up(be, x)).unwrap();
        down(be, &out)
    };
    let known = fwd(&[1.0, -1.0, 0.0]);
    for (got, expected) in known.iter().zip([0.841_192, -0.158_808, 0.0]) {
        assert!((got - expected).abs() < 1e-5, "gelu {got} vs {expected}");
    }
    let mut dx = zeros(be, x.len());
    be.gelu_backward(&mut dx, &up(be, &x), &up(be, &w)).unwrap();
    check_grad("gelu", &x, &down(be, &dx), 1e-3, SMOOTH_TOL, |x| {
        dot(&fwd(x), &w)
    });
}

fn residual_gradcheck<B: Backend>(be: &B) {
    let (a, b, w) = (
        data(1, 30, -1.0, 1.0),
        data(2, 30, -1.0, 1.0),
        data(3, 30, -1.0, 1.0),
    );
    let fwd = |a: &[f32], b: &[f32]| {
        let mut out = zeros(be, a.len());
        be.residual_forward(&mut out, &up(be, a), &up(be, b))
            .unwrap();
        down(be, &out)
    };
    let (mut da, mut db) = (zeros(be, a.len()), zeros(be, b.len()));
    be.residual_backward(&mut da, &mut db, &up(be, &w)).unwrap();
    check_grad("residual da", &a, &down(be, &da), EPS, LINEAR_TOL, |x| {
        dot(&fwd(x, &b), &w)
    });
    check_grad("residual db", &b, &down(be, &db), EPS, LINEAR_TOL, |x| {
        dot(&fwd(&a, x), &w)
    });
}

fn classifier_gradcheck<B: Backend>(be: &B) {
    let (rows, vocab) = (6, 5);
    let logits = data(1, rows * vocab, -3.0, 3.0);
    // All targets counted, then two ignored (the prompt tokens of a problem).
    for targets in [
        vec![0u32, 4, 2, 2, 1, 3],
        vec![0, IGNORE_INDEX, 2, IGNORE_INDEX, 1, 3],
    ] {
        let counted = targets.iter().filter(|&&t| t != IGNORE_INDEX).count();
        let targets_buf = up_ids(be, &targets);
        let run = |logits: &[f32]| {
            let (mut losses, mut dlogits) = (zeros(be, rows), zeros(be, rows * vocab));
            be.softmax_cross_entropy(
                &mut losses,
                &mut dlogits,
                &up(be, logits),
                &targets_buf,
                rows,
                vocab,
                1.0 / counted as f32,
            )
            .unwrap();
            (down(be, &losses), down(be, &dlogits))
        };
        let mean =
            |losses: Vec<f32>| losses.iter().map(|&l| f64::from(l)).sum::<f64>() / counted as f64;

        let (uniform, _) = run(&vec![0.7; rows * vocab]);
        for (l, &t) in uniform.iter().zip(&targets) {
            let want = if t == IGNORE_INDEX {
                0.0
            } else {
                (vocab as f32).ln()
            };
            assert!(
                (l - want).abs() < 1e-6,
                "uniform logits give {want}, not {l}"
            );
        }
        let (_, dlogits) = run(&logits);
        for (row, &t) in targets.iter().enumerate() {
            if t == IGNORE_INDEX {
                let grad = &dlogits[row * vocab..(row + 1) * vocab];
                assert!(
                    grad.iter().all(|&g| g == 0.0),
                    "ignored row {row}: {grad:?}"
                );
            }
        }
        check_grad(
            &format!("cross-entropy dlogits, {counted} of {rows} counted"),
            &logits,
            &dlogits,
            EPS,
            SMOOTH_TOL,
            |x| mean(run(x).0),
        );
    }
}

fn dropout_gradcheck<B: Backend>(be: &B) {
    let (p, key) = (0.25, 99);
    let x = data(1, 40_000, -1.0, 1.0);
    let fwd = |x: &[f32], key: u64| {
        let mut out = zeros(be, x.len());
        be.dropout_forward(&mut out, &up(be, x), p, key).unwrap();
        down(be, &out)
    };
    let out = fwd(&x, key);
    let kept = out.iter().filter(|&&o| o != 0.0).count() as f64 / x.len() as f64;
    assert!((kept - 0.75).abs() < 0.01, "kept fraction {kept}");
    for (i, (&o, &x)) in out.iter().zip(&x).enumerate() {
        let keep = dropout_keep(key, i as u64, dropout_threshold(p));
        assert_eq!(
            o,
            if keep { x * (1.0 / (1.0 - p)) } else { 0.0 },
            "element {i}"
        );
    }
    assert_eq!(out, fwd(&x, key), "same key, same mask");
    assert_ne!(out, fwd(&x, key + 1), "another key, another mask");
    assert_eq!(fwd(&x, key), fwd(&x, key));

    // The mask is fixed by the key, so the gradient check sees a fixed linear map.
    let (x, w) = (data(2, 50, -1.0, 1.0), data(3, 50, -1.0, 1.0));
    let mut dx = zeros(be, x.len());
    be.dropout_backward(&mut dx, &up(be, &w), p, key).unwrap();
    check_grad("dropout", &x, &down(be, &dx), EPS, LINEAR_TOL, |x| {
        dot(&fwd(x, key), &w)
    });
}

fn adamw_matches_hand_computation<B: Backend>(be: &B) {
    let opt = AdamW {
        beta1: 0.8,
        beta2: 0.9,
        eps: 1e-8,
        weight_decay: 0.5,
    };
    let update = opt.update(0.1, 2, true);
    assert!((update.bias_correction1 - 0.36).abs() < 1e-7);
    assert!((update.bias_correction2 - 0.19).abs() < 1e-7);
    assert_eq!(opt.update(0.1, 2, false).weight_decay, 0.0);

    let (mut param, mut m, mut v) = (
        up(be, &[1.0, -2.0]),
        up(be, &[0.5, 0.0]),
        up(be, &[0.25, 1.0]),
    );
    be.adamw(&mut param, &up(be, &[1.0, -3.0]), &mut m, &mut v, &update)
        .unwrap();
    // m = 0.8·m + 0.2·g;  v = 0.9·v + 0.1·g²;  p -= 0.1·(m/0.36 / (sqrt(v/0.19) + eps) + 0.5·p)
    let expected_m = [0.6, -0.6];
    let expected_v = [0.325, 1.8];
    let expected_p = [
        1.0 - 0.1 * ((0.6 / 0.36) / (0.325f64 / 0.19).sqrt() + 0.5),
        -2.0 - 0.1 * ((-0.6 / 0.36) / (1.8f64 / 0.19).sqrt() - 1.0),
    ];
    for (got, expected) in [
        (down(be, &m), expected_m),
        (down(be, &v), expected_v),
        (down(be, &param), expected_p),
    ] {
        for (g, e) in got.iter().zip(expected) {
            assert!((f64::from(*g) - e).abs() < 1e-6, "{got:?} vs {expected:?}");
        }
    }
}

fn norm_scale_and_sum_squares<B: Backend>(be: &B) {
    let x = data(1, 40_000, -1.0, 1.0);
    let mut buf = up(be, &x);
    let y = up(be, &[3.0, 4.0]);
    let expected: f64 = x.iter().map(|&v| f64::from(v).powi(2)).sum();
    let sums = be.sum_squares(&[&buf, &y]).unwrap();
    assert!(
        (sums[0] - expected).abs() < 1e-9 * expected && sums[1] == 25.0,
        "{sums:?}"
    );
    be.scale(&mut buf, 0.5).unwrap();
    assert_eq!(
        down(be, &buf),
        x.iter().map(|v| v * 0.5).collect::<Vec<_>>()
    );
}

/// One `#[test]` per op check, run on the backend `$backend` (an expression, which may `return`
/// to skip the test).
macro_rules! op_tests {
    ($backend:expr; $($check:ident),* $(,)?) => {
        $(
            #[test]
            fn $check() {
                crate::train::numerics::$check(&$backend);
            }
        )*
    };
}

/// Every op check, one `#[test]` each, on the backend `$backend`.
macro_rules! all_op_tests {
    ($backend:expr) => {
        op_tests!(
            $backend;
            embedding_gradcheck,
            layernorm_gradcheck,
            matmul_gradcheck,
            attention_gradcheck,
            gelu_gradcheck,
            residual_gradcheck,
            classifier_gradcheck,
            dropout_gradcheck,
            adamw_matches_hand_computation,
            norm_scale_and_sum_squares,
        );
    };
}

// Laid out like the source: `mlwf::train::{cpu, cuda, model, optim}`.
mod cuda;

mod cpu {
    use super::*;

    all_op_tests!(CpuBackend::new());

    #[test]
    fn ops_reject_mismatched_shapes() {
        let be = CpuBackend::new();
        let d = Linear {
            rows: 2,
            in_features: 3,
            out_features: 4,
        };
        let mut out = zeros(&be, 8);
        let err = be
            .matmul_forward(&mut out, &zeros(&be, 5), &zeros(&be, 12), None, d)
            .unwrap_err();
        assert!(err.to_string().contains("linear input"), "{err}");
        let dims = Btc { b: 1, t: 2, c: 6 };
        let (mut out, mut att) = (zeros(&be, 12), zeros(&be, 16));
        let err = be
            .attention_forward(&mut out, &mut att, &zeros(&be, 36), dims, 4)
            .unwrap_err();
        assert!(err.to_string().contains("heads"), "{err}");
        let ids = up_ids(&be, &[0, 7]);
        let err = be
            .embedding_forward(&mut out, &ids, &zeros(&be, 18), &zeros(&be, 12), dims)
            .unwrap_err();
        assert!(err.to_string().contains("token id 7"), "{err}");
    }
}

mod model {
    use super::*;

    fn tiny(tied: bool, dropout: f32) -> ModelConfig {
        ModelConfig {
            vocab_size: 7,
            block_size: 5,
            n_layer: 2,
            n_head: 2,
            n_embd: 8,
            dropout,
            tied_head: tied,
        }
    }

    fn gpt(config: ModelConfig, seed: u64) -> Gpt<CpuBackend> {
        Gpt::new(config, CpuBackend::new(), seed).unwrap()
    }

    /// Moves every parameter away from its initialization, so that LayerNorm gains, biases and
    /// attention patterns are all non-trivial for the gradient check.
    fn perturbed(mut state: ModelState) -> ModelState {
        for (k, t) in state.params.iter_mut().enumerate() {
            let noise = data(1000 + k as u64, t.data.len(), -0.3, 0.3);
            t.data.iter_mut().zip(noise).for_each(|(x, n)| *x += n);
        }
        state
    }

    /// A model with the gradients of one batch.
    fn with_gradients(config: ModelConfig) -> Gpt<CpuBackend> {
        let mut model = gpt(config.clone(), 1);
        let (inputs, targets) = batch(3, &config, 2, 4);
        model.forward(&inputs, Some(&targets), 2, 4, false).unwrap();
        model.backward().unwrap();
        model
    }

    fn all_zero(tensors: &[NamedTensor]) -> bool {
        tensors.iter().all(|t| t.data.iter().all(|&x| x == 0.0))
    }

    /// Asserts `got = factor · base`, tensor by tensor, up to f32 rounding.
    fn assert_scaled(got: &[NamedTensor], base: &[NamedTensor], factor: f32) {
        for (got, base) in got.iter().zip(base) {
            for (a, b) in got.data.iter().zip(&base.data) {
                let expected = factor * b;
                assert!(
                    (a - expected).abs() <= 1e-5 * expected.abs().max(1e-3),
                    "{}: {a} vs {expected}",
                    base.name
                );
            }
        }
    }

    /// Central differences of the mean loss over every parameter of a tiny GPT against backward.
    /// Loading the state also restores the dropout counter, so every evaluation sees the same masks.
    fn model_gradcheck(config: ModelConfig, train: bool) {
        let (b, t) = (2, 4);
        let inputs = tokens(1, b * t, config.vocab_size);
        let targets = tokens(2, b * t, config.vocab_size);
        let mut model = gpt(config, 5);
        let mut state = perturbed(model.state().unwrap());
        state.rng_counter = 11;
        model.load_state(&state).unwrap();
        model.forward(&inputs, Some(&targets), b, t, train).unwrap();
        model.backward().unwrap();
        let grads = model.grads().unwrap();

        for (k, grad) in grads.iter().enumerate() {
            assert_eq!(grad.name, state.params[k].name);
            let x = state.params[k].data.clone();
            check_grad(&grad.name, &x, &grad.data, EPS, SMOOTH_TOL, |xp| {
                state.params[k].data.copy_from_slice(xp);
                model.load_state(&state).unwrap();
                let loss = model.forward(&inputs, Some(&targets), b, t, train).unwrap();
                f64::from(loss.unwrap())
            });
            state.params[k].data = x;
        }
    }

    #[test]
    fn whole_model_gradients_untied() {
        model_gradcheck(tiny(false, 0.0), false);
    }

    #[test]
    fn whole_model_gradients_tied_with_dropout() {
        model_gradcheck(tiny(true, 0.2), true);
    }

    fn batch(seed: u64, config: &ModelConfig, b: usize, t: usize) -> (Vec<u32>, Vec<u32>) {
        let v = config.vocab_size;
        (tokens(seed, b * t, v), tokens(seed + 1, b * t, v))
    }

    #[test]
    fn initialization_follows_gpt2() {
        let config = ModelConfig {
            vocab_size: 64,
            block_size: 16,
            n_layer: 2,
            n_head: 4,
            n_embd: 64,
            dropout: 0.0,
            tied_head: false,
        };
        let (v, p, c, l) = (64, 16, 64, 2);
        let model = gpt(config.clone(), 3);
        let per_block = 12 * c * c + 13 * c;
        assert_eq!(
            model.num_parameters(),
            2 * v * c + p * c + l * per_block + 2 * c
        );
        let tied = gpt(
            ModelConfig {
                tied_head: true,
                ..config.clone()
            },
            3,
        );
        assert_eq!(tied.num_parameters(), model.num_parameters() - v * c);

        let state = model.state().unwrap();
        let std = |name: &str| {
            let t = state.params.iter().find(|t| t.name == name).unwrap();
            let n = t.data.len() as f64;
            let mean = t.data.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
            (t.data
                .iter()
                .map(|&x| (f64::from(x) - mean).powi(2))
                .sum::<f64>()
                / n)
                .sqrt()
        };
        let near = |got: f64, want: f64| (got / want - 1.0).abs() < 0.05;
        assert!(near(std("transformer.wte.weight"), 0.02));
        assert!(near(std("transformer.h.1.mlp.c_fc.weight"), 0.02));
        assert!(near(std("lm_head.weight"), 0.02));
        let residual = 0.02 / (2.0 * l as f64).sqrt();
        assert!(near(std("transformer.h.0.attn.c_proj.weight"), residual));
        assert!(near(std("transformer.h.1.mlp.c_proj.weight"), residual));
        for t in &state.params {
            let expected = if t.name.ends_with("bias") {
                Some(0.0)
            } else if t.name.contains("ln_") {
                Some(1.0)
            } else {
                None
            };
            if let Some(e) = expected {
                assert!(t.data.iter().all(|&x| x == e), "{} is not all {e}", t.name);
            }
        }
        assert_eq!(state.params[0].name, "transformer.wte.weight");
        assert_eq!(state.params[0].shape, vec![v, c]);
        assert!(tied
            .state()
            .unwrap()
            .params
            .iter()
            .all(|t| t.name != "lm_head.weight"));
        assert_eq!(
            gpt(config.clone(), 3).state().unwrap(),
            state,
            "same seed, same model"
        );
        assert_ne!(gpt(config, 4).state().unwrap().params, state.params);
        assert!(all_zero(&model.grads().unwrap()));
    }

    #[test]
    fn logits_are_causal_and_independent_of_targets() {
        let config = tiny(false, 0.0);
        let mut model = gpt(config.clone(), 1);
        let (b, t, v) = (2, 5, config.vocab_size);
        let (inputs, targets) = batch(3, &config, b, t);
        assert!(model.logits().unwrap().is_empty());
        assert_eq!(model.forward(&inputs, None, b, t, false).unwrap(), None);
        let logits = model.logits().unwrap();
        assert_eq!(logits.len(), b * t * v);
        let loss = model
            .forward(&inputs, Some(&targets), b, t, false)
            .unwrap()
            .unwrap();
        assert_eq!(model.logits().unwrap(), logits);

        // The mean loss is the cross-entropy of those logits.
        let expected: f64 = logits
            .chunks(v)
            .zip(&targets)
            .map(|(row, &target)| {
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let sum: f64 = row.iter().map(|&x| f64::from(x - max).exp()).sum();
                sum.ln() - f64::from(row[target as usize] - max)
            })
            .sum::<f64>()
            / (b * t) as f64;
        assert!(
            (f64::from(loss) - expected).abs() < 1e-5,
            "{loss} vs {expected}"
        );

        let mut changed = inputs.clone();
        changed[t - 1] = (changed[t - 1] + 1) % v as u32;
        model.forward(&changed, None, b, t, false).unwrap();
        let after = model.logits().unwrap();
        assert_eq!(
            after[..(t - 1) * v],
            logits[..(t - 1) * v],
            "earlier positions"
        );
        assert_ne!(
            after[(t - 1) * v..t * v],
            logits[(t - 1) * v..t * v],
            "the changed one"
        );
        assert_eq!(after[t * v..], logits[t * v..], "the other sequence");
    }

    #[test]
    fn dropout_acts_in_training_only() {
        let config = tiny(false, 0.3);
        let mut model = gpt(config.clone(), 1);
        let (inputs, targets) = batch(3, &config, 2, 4);
        let mut loss = |train| {
            model
                .forward(&inputs, Some(&targets), 2, 4, train)
                .unwrap()
                .unwrap()
        };
        let (eval, eval_again) = (loss(false), loss(false));
        let (train, train_again) = (loss(true), loss(true));
        assert_eq!(eval, eval_again);
        assert_ne!(train, eval);
        assert_ne!(train, train_again, "each training pass draws new masks");
    }

    #[test]
    fn backward_accumulates_until_zeroed() {
        let mut model = with_gradients(tiny(true, 0.0));
        let once = model.grads().unwrap();
        model.backward().unwrap();
        assert_scaled(&model.grads().unwrap(), &once, 2.0);
        model.scale_grads(0.5).unwrap();
        assert_scaled(&model.grads().unwrap(), &once, 1.0);
        model.zero_grad().unwrap();
        assert!(all_zero(&model.grads().unwrap()));
    }

    #[test]
    fn adamw_step_decays_only_matrices() {
        let mut model = with_gradients(tiny(false, 0.0));
        let (before, grads) = (model.state().unwrap(), model.grads().unwrap());
        let norm = model.grad_norms().unwrap().global;
        let opt = AdamW {
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.5,
        };
        let lr = 0.1;
        assert_eq!(model.step(&opt, lr, 0.0).unwrap(), norm);
        let after = model.state().unwrap();
        assert_eq!((after.step, before.step), (1, 0));

        let (b1, b2, eps) = (
            f64::from(opt.beta1),
            f64::from(opt.beta2),
            f64::from(opt.eps),
        );
        for (k, g) in grads.iter().enumerate() {
            // Biases and LayerNorm parameters are vectors: no decay.
            let decay = if g.shape.len() == 2 { 0.5 } else { 0.0 };
            assert_eq!(decays(&g.shape), decay > 0.0);
            for (i, &g) in g.data.iter().enumerate() {
                let (g, p) = (f64::from(g), f64::from(before.params[k].data[i]));
                let (m, v) = ((1.0 - b1) * g, (1.0 - b2) * g * g);
                // First step: the bias corrections are exactly 1 - β.
                let expected = p - f64::from(lr)
                    * ((m / (1.0 - b1)) / ((v / (1.0 - b2)).sqrt() + eps) + decay * p);
                let got = |t: &[NamedTensor]| f64::from(t[k].data[i]);
                assert!(
                    (got(&after.params) - expected).abs() < 1e-6,
                    "{}[{i}]",
                    before.params[k].name
                );
                assert!((got(&after.adam_m) - m).abs() <= 1e-6 * m.abs());
                assert!((got(&after.adam_v) - v).abs() <= 1e-6 * v.abs());
            }
        }
    }

    #[test]
    fn clipping_scales_gradients_to_max_norm() {
        let mut model = with_gradients(tiny(false, 0.0));
        let norms = model.grad_norms().unwrap();
        let names: Vec<&str> = norms.groups.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["embedding", "block.0", "block.1", "final_norm", "head"]
        );
        let from_groups = norms
            .groups
            .iter()
            .map(|(_, n)| f64::from(*n).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!((from_groups - f64::from(norms.global)).abs() < 1e-6);
        let global = norms.global;
        assert!(global > 0.0);

        let opt = AdamW::default();
        assert_eq!(
            model.step(&opt, 0.0, global * 2.0).unwrap(),
            global,
            "under the limit"
        );
        assert_eq!(model.grad_norms().unwrap().global, global, "left alone");
        assert_eq!(model.step(&opt, 0.0, 0.0).unwrap(), global, "clipping off");
        assert_eq!(
            model.step(&opt, 0.0, global / 4.0).unwrap(),
            global,
            "returns the pre-clip norm"
        );
        let clipped = model.grad_norms().unwrap().global;
        assert!(
            (clipped - global / 4.0).abs() < 1e-5 * global,
            "{clipped} vs {}",
            global / 4.0
        );

        assert_eq!(clip_factor(1.0, 5.0), None);
        assert_eq!(clip_factor(10.0, 0.0), None);
        assert_eq!(clip_factor(f32::NAN, 1.0), None);
        assert!((clip_factor(10.0, 5.0).unwrap() - 0.5).abs() < 1e-6);
    }

    fn mid(dropout: f32) -> ModelConfig {
        // Big enough that every op spans several parallel tasks.
        ModelConfig {
            vocab_size: 32,
            block_size: 32,
            n_layer: 2,
            n_head: 4,
            n_embd: 48,
            dropout,
            tied_head: true,
        }
    }

    /// Trains `steps` (a fresh batch each, dropout on, clipping on, the schedule applied) and
    /// returns the losses.
    fn train_steps(
        model: &mut Gpt<CpuBackend>,
        steps: std::ops::Range<u64>,
        (b, t): (usize, usize),
    ) -> Vec<f32> {
        let opt = AdamW::default();
        let config = model.config().clone();
        steps
            .map(|step| {
                let (inputs, targets) = batch(100 + step, &config, b, t);
                let loss = model
                    .forward(&inputs, Some(&targets), b, t, true)
                    .unwrap()
                    .unwrap();
                model.backward().unwrap();
                model
                    .step(&opt, lr_at(step, 3e-3, 3e-4, 2, 10), 1.0)
                    .unwrap();
                model.zero_grad().unwrap();
                loss
            })
            .collect()
    }

    fn bits(xs: &[f32]) -> Vec<u32> {
        xs.iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn same_seed_same_losses_on_any_thread_count() {
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut model = gpt(mid(0.1), 7);
                let losses = train_steps(&mut model, 0..4, (4, 32));
                (bits(&losses), model.state().unwrap())
            })
        };
        let (one, one_state) = run(1);
        let (three, three_state) = run(3);
        assert_eq!(one, three);
        assert_eq!(one_state, three_state);
        assert_eq!(run(1).0, one, "rerun");
        let mut other = gpt(mid(0.1), 8);
        assert_ne!(
            bits(&train_steps(&mut other, 0..4, (4, 32))),
            one,
            "another seed"
        );
    }

    #[test]
    fn resuming_from_state_continues_the_same_run() {
        let shape = (2, 16);
        let config = mid(0.2);
        let mut straight = gpt(config.clone(), 9);
        let mut losses = train_steps(&mut straight, 0..3, shape);
        // Evaluation draws no dropout masks, so it does not shift the training run.
        let (inputs, targets) = batch(1, &config, 2, 16);
        straight
            .forward(&inputs, Some(&targets), 2, 16, false)
            .unwrap();
        losses.extend(train_steps(&mut straight, 3..6, shape));

        let mut first = gpt(config.clone(), 9);
        let head = train_steps(&mut first, 0..3, shape);
        let saved = first.state().unwrap();
        drop(first);
        let mut resumed = gpt(config, 9);
        resumed.load_state(&saved).unwrap();
        let tail = train_steps(&mut resumed, 3..6, shape);

        assert_eq!(bits(&losses), bits(&[head, tail].concat()));
        assert_eq!(straight.state().unwrap(), resumed.state().unwrap());
    }

    #[test]
    fn tiny_model_overfits_one_batch() {
        let config = ModelConfig {
            vocab_size: 16,
            block_size: 8,
            n_layer: 2,
            n_head: 2,
            n_embd: 32,
            dropout: 0.0,
            tied_head: false,
        };
        let (b, t) = (4, 8);
        let (inputs, targets) = batch(5, &config, b, t);
        let mut model = gpt(config, 1);
        let opt = AdamW {
            weight_decay: 0.0,
            ..AdamW::default()
        };
        let mut losses = Vec::new();
        for step in 0..100 {
            losses.push(
                model
                    .forward(&inputs, Some(&targets), b, t, true)
                    .unwrap()
                    .unwrap(),
            );
            model.backward().unwrap();
            model
                .step(&opt, lr_at(step, 1e-2, 1e-3, 10, 100), 1.0)
                .unwrap();
            model.zero_grad().unwrap();
        }
        let (first, last) = (losses[0], losses[99]);
        assert!(
            (first - 16f32.ln()).abs() < 0.1,
            "starts near uniform: {first}"
        );
        assert!(last < first / 20.0, "loss {first} -> {last}");
    }

    fn err_text<T>(result: anyhow::Result<T>) -> String {
        match result {
            Ok(_) => panic!("expected an error"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn bad_configs_are_errors() {
        let config = tiny(false, 0.0);
        let cases = [
            (
                ModelConfig {
                    n_embd: 10,
                    n_head: 4,
                    ..config.clone()
                },
                "divisible",
            ),
            (
                ModelConfig {
                    n_head: 0,
                    ..config.clone()
                },
                "positive",
            ),
            (
                ModelConfig {
                    vocab_size: 0,
                    ..config.clone()
                },
                "vocab_size",
            ),
            (
                ModelConfig {
                    block_size: 0,
                    ..config.clone()
                },
                "block_size",
            ),
            (
                ModelConfig {
                    dropout: 1.0,
                    ..config.clone()
                },
                "dropout",
            ),
            (
                ModelConfig {
                    dropout: f32::NAN,
                    ..config.clone()
                },
                "dropout",
            ),
        ];
        for (config, needle) in cases {
            let message = err_text(Gpt::new(config, CpuBackend::new(), 0));
            assert!(message.contains(needle), "{message}");
        }
    }

    /// Inputs, targets, batch, seq, and a part of the expected message.
    type BadBatch<'a> = (&'a [u32], Option<&'a [u32]>, usize, usize, &'a str);

    #[test]
    fn bad_batches_are_errors() {
        let config = tiny(false, 0.0);
        let mut model = gpt(config.clone(), 1);
        assert!(err_text(model.backward()).contains("forward pass with targets"));
        let (inputs, targets) = batch(3, &config, 2, 4);
        let mut bad_token = inputs.clone();
        bad_token[5] = 7;
        let mut bad_target = targets.clone();
        // One past the vocabulary (u32::MAX would be the ignore index, which targets may be).
        bad_target[0] = 7;
        let long = tokens(1, 12, 7);
        let cases: [BadBatch; 6] = [
            (
                &bad_token,
                Some(&targets),
                2,
                4,
                "input token 7 at position 5 is outside the vocabulary of 7",
            ),
            (
                &inputs,
                Some(&bad_target),
                2,
                4,
                "target token 7 at position 0 is outside the vocabulary of 7",
            ),
            (
                &long,
                None,
                2,
                6,
                "sequence length 6 exceeds the block size 5",
            ),
            (
                &inputs,
                None,
                3,
                4,
                "8 input tokens given for a batch of 12",
            ),
            (&inputs, Some(&targets[1..]), 2, 4, "7 target tokens"),
            (&[], None, 0, 4, "empty batch"),
        ];
        for (inputs, targets, b, t, needle) in cases {
            let message = err_text(model.forward(inputs, targets, b, t, false));
            assert!(message.contains(needle), "{message}");
        }
        model.forward(&inputs, None, 2, 4, false).unwrap();
        assert!(err_text(model.backward()).contains("had none"));
    }

    #[test]
    fn mismatched_states_are_rejected_without_change() {
        let mut model = gpt(tiny(true, 0.0), 1);
        let before = model.state().unwrap();
        let untied = gpt(tiny(false, 0.0), 1).state().unwrap();
        assert!(err_text(model.load_state(&untied)).contains("tensors where the model has"));

        let mut renamed = before.clone();
        renamed.adam_v[3].name = "transformer.h.0.attn.bias".into();
        assert!(
            err_text(model.load_state(&renamed)).contains("adam_v holds transformer.h.0.attn.bias")
        );
        let mut short = before.clone();
        short.params[2].data.pop();
        assert!(err_text(model.load_state(&short)).contains("values for shape"));
        let mut other = gpt(
            ModelConfig {
                n_embd: 12,
                ..tiny(true, 0.0)
            },
            1,
        )
        .state()
        .unwrap();
        other.step = 5;
        assert!(model.load_state(&other).is_err());
        assert_eq!(model.state().unwrap(), before);
    }
}

mod optim {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays_along_a_cosine() {
        let lr = |step| lr_at(step, 1.0, 0.1, 10, 110);
        assert!(
            (lr(0) - 1.0 / 11.0).abs() < 1e-7,
            "first warmup step is not zero"
        );
        assert!((lr(9) - 10.0 / 11.0).abs() < 1e-7);
        assert_eq!(lr(10), 1.0, "peak at the end of warmup");
        assert!((lr(60) - 0.55).abs() < 1e-6, "halfway down the cosine");
        assert!(
            (lr(35) - (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::FRAC_PI_4).cos()) as f32)).abs()
                < 1e-6
        );
        assert!((lr(109) - 0.1).abs() < 1e-3);
        assert_eq!(lr(110), 0.1);
        assert_eq!(lr(10_000), 0.1);
        assert!((10..110).all(|s| lr(s + 1) <= lr(s)), "monotone decay");
        assert_eq!(lr_at(0, 3e-4, 3e-5, 0, 100), 3e-4, "no warmup");
        assert_eq!(
            lr_at(5, 1.0, 0.1, 10, 5),
            6.0 / 11.0,
            "warmup beyond max_iters"
        );
        assert_eq!(lr_at(20, 1.0, 0.1, 10, 5), 0.1);
    }
}

/// A device failure inside the model (here, running out of memory in the optimizer step, as a
/// GPU can) is an error the trainer classifies and explains, never a panic.
mod device_errors {
    use mlwf::analyze::diagnose::{diagnose, Cause};
    use mlwf::train::backend::{AdamWUpdate, DeviceError};
    use mlwf::train::data::Batch;
    use mlwf::train::trainer::train_step;
    use mlwf::wandb::Row;

    use super::*;

    /// The CPU backend, except that every AdamW launch runs out of memory.
    struct OutOfMemoryInAdamW(CpuBackend);

    macro_rules! delegate {
        ($(fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
            $(fn $name(&self $(, $arg: $ty)*) -> $ret {
                self.0.$name($($arg),*)
            })*
        };
    }

    type Buf = Vec<f32>;
    type Ids = Vec<u32>;

    impl Backend for OutOfMemoryInAdamW {
        type Buf = Buf;
        type Ids = Ids;

        delegate! {
            fn facts(&self) -> Row;
            fn alloc(&self, len: usize) -> anyhow::Result<Buf>;
            fn zero(&self, buf: &mut Buf) -> anyhow::Result<()>;
            fn upload(&self, buf: &mut Buf, data: &[f32]) -> anyhow::Result<()>;
            fn download(&self, buf: &Buf) -> anyhow::Result<Vec<f32>>;
            fn alloc_ids(&self, len: usize) -> anyhow::Result<Ids>;
            fn upload_ids(&self, ids: &mut Ids, data: &[u32]) -> anyhow::Result<()>;
            fn embedding_forward(&self, out: &mut Buf, ids: &Ids, wte: &Buf, wpe: &Buf, dims: Btc)
                -> anyhow::Result<()>;
            fn embedding_backward(&self, dwte: &mut Buf, dwpe: &mut Buf, dout: &Buf, ids: &Ids,
                dims: Btc) -> anyhow::Result<()>;
            fn layernorm_forward(&self, out: &mut Buf, mean: &mut Buf, rstd: &mut Buf, inp: &Buf,
                weight: &Buf, bias: &Buf, rows: usize, c: usize) -> anyhow::Result<()>;
            fn layernorm_backward(&self, dinp: &mut Buf, dweight: &mut Buf, dbias: &mut Buf,
                dout: &Buf, inp: &Buf, weight: &Buf, mean: &Buf, rstd: &Buf, rows: usize,
                c: usize) -> anyhow::Result<()>;
            fn matmul_forward(&self, out: &mut Buf, inp: &Buf, weight: &Buf, bias: Option<&Buf>,
                dims: Linear) -> anyhow::Result<()>;
            fn matmul_backward(&self, dinp: &mut Buf, dweight: &mut Buf, dbias: Option<&mut Buf>,
                dout: &Buf, inp: &Buf, weight: &Buf, dims: Linear) -> anyhow::Result<()>;
            fn attention_forward(&self, out: &mut Buf, att: &mut Buf, qkv: &Buf, dims: Btc,
                n_head: usize) -> anyhow::Result<()>;
            fn attention_backward(&self, dqkv: &mut Buf, dout: &Buf, qkv: &Buf, att: &Buf,
                dims: Btc, n_head: usize) -> anyhow::Result<()>;
            fn gelu_forward(&self, out: &mut Buf, inp: &Buf) -> anyhow::Result<()>;
            fn gelu_backward(&self, dinp: &mut Buf, inp: &Buf, dout: &Buf) -> anyhow::Result<()>;
            fn residual_forward(&self, out: &mut Buf, a: &Buf, b: &Buf) -> anyhow::Result<()>;
            fn residual_backward(&self, da: &mut Buf, db: &mut Buf, dout: &Buf)
                -> anyhow::Result<()>;
            fn dropout_forward(&self, out: &mut Buf, inp: &Buf, p: f32, key: u64)
                -> anyhow::Result<()>;
            fn dropout_backward(&self, dinp: &mut Buf, dout: &Buf, p: f32, key: u64)
                -> anyhow::Result<()>;
            fn softmax_cross_entropy(&self, losses: &mut Buf, dlogits: &mut Buf, logits: &Buf,
                targets: &Ids, rows: usize, vocab: usize, grad_scale: f32) -> anyhow::Result<()>;
            fn scale(&self, buf: &mut Buf, factor: f32) -> anyhow::Result<()>;
            fn sum_squares(&self, bufs: &[&Buf]) -> anyhow::Result<Vec<f64>>;
        }

        fn adamw(
            &self,
            _: &mut Buf,
            _: &Buf,
            _: &mut Buf,
            _: &mut Buf,
            _: &AdamWUpdate,
        ) -> anyhow::Result<()> {
            Err(DeviceError::OutOfMemory {
                device: "cuda:0".into(),
                what: "launching adamw".into(),
                source: "DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")".into(),
            }
            .into())
        }
    }

    #[test]
    fn out_of_memory_in_the_optimizer_step_is_an_explained_error() {
        let config = ModelConfig {
            vocab_size: 7,
            block_size: 4,
            n_layer: 1,
            n_head: 2,
            n_embd: 8,
            dropout: 0.0,
            tied_head: true,
        };
        let mut model = Gpt::new(config, OutOfMemoryInAdamW(CpuBackend::new()), 1).unwrap();
        let batch = Batch {
            inputs: tokens(1, 8, 7),
            targets: tokens(2, 8, 7),
        };
        let err = train_step(
            &mut model,
            &AdamW::default(),
            &batch,
            (2, 4),
            1e-3,
            1.0,
            false,
        )
        .unwrap_err();
        assert!(err
            .chain()
            .any(|e| matches!(e.downcast_ref(), Some(DeviceError::OutOfMemory { .. }))));
        let text = format!("{err:#}");
        assert!(text.contains("lower train.batch_size"), "{text}");
        assert!(
            text.contains("CUDA_ERROR_OUT_OF_MEMORY"),
            "the source is kept: {text}"
        );
        assert_eq!(diagnose("failed", Some(1), &text).cause, Cause::OutOfMemory);
    }
}
