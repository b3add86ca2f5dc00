//! The CUDA backend against the CPU reference, on a GPU only: opt in with `MLWF_GPU_TESTS=1`
//! (`scripts/gpu-check.sh` runs these on the device machine). Without it each test skips and
//! says so, except the device-selection test, which checks on any machine that a missing GPU
//! is an error or a fallback, never a panic.
//!
//! Every op runs the finite-difference checks of the CPU suite in fp32, then is compared with
//! the CPU backend on random inputs in each precision: fp32 to f32 rounding, TF32 and BF16 to
//! tolerances in the spirit of llm.c's. Dropout masks must match bit for bit. Then a whole
//! training step's loss and gradients, and a short run's loss curve.

use mlwf::train::backend::{AdamWUpdate, Backend, Btc, Linear, Precision};
use mlwf::train::cpu::CpuBackend;
use mlwf::train::cuda::{driver_present, CudaBackend};
use mlwf::train::device::{select, Device, Selected};
use mlwf::train::model::{Gpt, ModelConfig, NamedTensor};
use mlwf::train::optim::{lr_at, AdamW};

use super::*;

/// The GPU backend when `MLWF_GPU_TESTS=1`; `None` (the test skips) otherwise. With the opt-in
/// a GPU that cannot be opened fails the test: the run was promised one.
fn gpu(precision: Precision) -> Option<CudaBackend> {
    if std::env::var("MLWF_GPU_TESTS").as_deref() != Ok("1") {
        eprintln!("SKIPPED: set MLWF_GPU_TESTS=1 to run the CUDA tests on a GPU");
        return None;
    }
    Some(CudaBackend::new(0, precision).unwrap_or_else(|e| panic!("opening cuda:0: {e:#}")))
}

/// The finite-difference op checks of the CPU suite, on the GPU in fp32.
mod gradcheck {
    use super::*;

    all_op_tests!(match gpu(Precision::Fp32) {
        Some(be) => be,
        None => return,
    });
}

/// The largest error allowed, as a fraction of the largest magnitude in the reference tensor.
fn tolerance(precision: Precision) -> f32 {
    match precision {
        Precision::Fp32 => 2e-5,
        Precision::Tf32 => 5e-3,
        Precision::Bf16 => 3e-2,
    }
}

/// Asserts `|got - want| <= tol · max|want|` elementwise, reporting the worst element.
fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0.0f32, |m, w| m.max(w.abs())).max(1e-6);
    let (worst, err) = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .enumerate()
        .fold((0, 0.0f32), |best, (i, e)| {
            if e > best.1 || e.is_nan() {
                (i, e)
            } else {
                best
            }
        });
    assert!(
        err <= tol * scale,
        "{what}: element {worst} is {} on the GPU, {} on the CPU (error {err}, allowed {})",
        got[worst],
        want[worst],
        tol * scale
    );
}

/// Runs `op` on both backends with the same host inputs and compares the host outputs.
fn parity(what: &str, precision: Precision, op: impl Fn(&dyn Runner) -> Vec<Vec<f32>>) {
    let Some(gpu) = gpu(precision) else { return };
    let want = op(&CpuBackend::new());
    let got = op(&gpu);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_close(
            &format!("{what} output {i} ({precision})"),
            g,
            w,
            tolerance(precision),
        );
    }
}

/// The ops under test, callable on either backend: each takes host tensors and returns the
/// host copies of what the op wrote. Gradients start non-zero, so accumulation is checked too.
trait Runner {
    fn matmul(&self, d: Linear, t: &[Vec<f32>]) -> Vec<Vec<f32>>;
    fn attention(&self, d: Btc, n_head: usize, t: &[Vec<f32>]) -> Vec<Vec<f32>>;
    fn layernorm(&self, rows: usize, c: usize, t: &[Vec<f32>]) -> Vec<Vec<f32>>;
    fn embedding(&self, d: Btc, ids: &[u32], t: &[Vec<f32>]) -> Vec<Vec<f32>>;
    fn gelu(&self, t: &[Vec<f32>]) -> Vec<Vec<f32>>;
    fn residual(&self, t: &[Vec<f32>]) -> Vec<Vec<f32>>;
    fn classifier(
        &self,
        rows: usize,
        vocab: usize,
        targets: &[u32],
        t: &[Vec<f32>],
    ) -> Vec<Vec<f32>>;
    fn adamw(&self, t: &[Vec<f32>]) -> Vec<Vec<f32>>;
    /// `scale` of the first tensor and the sums of squares of all.
    fn norm(&self, t: &[Vec<f32>]) -> Vec<Vec<f32>>;
    /// The dropout output and the accumulated input gradient.
    fn dropout(&self, x: &[f32], g0: &[f32], p: f32, key: u64) -> (Vec<f32>, Vec<f32>);
}

impl<B: Backend> Runner for B {
    fn matmul(&self, d: Linear, t: &[Vec<f32>]) -> Vec<Vec<f32>> {
        let [x, w, bias, dy, g0] = t else {
            unreachable!()
        };
        let mut out = zeros(self, d.rows * d.out_features);
        let (bias, x, w, dy) = (up(self, bias), up(self, x), up(self, w), up(self, dy));
        self.matmul_forward(&mut out, &x, &w, Some(&bias), d)
            .unwrap();
        let (mut dx, mut dw, mut db) = (
            up(self, &g0[..d.rows * d.in_features]),
            up(self, &g0[..d.out_features * d.in_features]),
            up(self, &g0[..d.out_features]),
        );
        self.matmul_backward(&mut dx, &mut dw, Some(&mut db), &dy, &x, &w, d)
            .unwrap();
        [out, dx, dw, db].iter().map(|b| down(self, b)).collect()
    }

    fn attention(&self, d: Btc, n_head: usize, t: &[Vec<f32>]) -> Vec<Vec<f32>> {
        let [qkv, dy, g0] = t else { unreachable!() };
        let (mut out, mut att) = (
            zeros(self, d.numel()),
            zeros(self, d.b * n_head * d.t * d.t),
        );
        let qkv = up(self, qkv);
        self.attention_forward(&mut out, &mut att, &qkv, d, n_head)
            .unwrap();
        let mut dqkv = up(self, g0);
        self.attention_backward(&mut dqkv, &up(self, dy), &qkv, &att, d, n_head)
            .unwrap();
        [out, att, dqkv].iter().map(|b| down(self, b)).collect()
    }

    fn layernorm(&self, rows: usize, c: usize, t: &[Vec<f32>]) -> Vec<Vec<f32>> {
        let [x, w, b, dy, g0] = t else { unreachable!() };
        let (mut out, mut mean, mut rstd) =
            (zeros(self, rows * c), zeros(self, rows), zeros(self, rows));
        let (x, w) = (up(self, x), up(self, w));
        self.layernorm_forward(
            &mut out,
            &mut mean,
            &mut rstd,
            &x,
            &w,
            &up(self, b),
            rows,
            c,
        )
        .unwrap();
        let (mut dx, mut dw, mut db) = (up(self, g0), up(self, &g0[..c]), up(self, &g0[..c]));
        self.layernorm_backward(
            &mut dx,
            &mut dw,
            &mut db,
            &up(self, dy),
            &x,
            &w,
            &mean,
            &rstd,
            rows,
            c,
        )
        .unwrap();
        [out, mean, rstd, dx, dw, db]
            .iter()
            .map(|b| down(self, b))
            .collect()
    }

    fn embedding(&self, d: Btc, ids: &[u32], t: &[Vec<f32>]) -> Vec<Vec<f32>> {
        let [wte, wpe, dy] = t else { unreachable!() };
        let mut out = zeros(self, d.numel());
        let ids = up_ids(self, ids);
        self.embedding_forward(&mut out, &ids, &up(self, wte), &up(self, wpe), d)
            .unwrap();
        let (mut dwte, mut dwpe) = (up(self, wte), up(self, wpe));
        self.embedding_backward(&mut dwte, &mut dwpe, &up(self, dy), &ids, d)
            .unwrap();
        [out, dwte, dwpe].iter().map(|b| down(self, b)).collect()
    }

    fn gelu(&self, t: &[Vec<f32>]) -> Vec<Vec<f32>> {
        let [x, dy] = t else { unreachable!() };
        let n = x.len();
        let (x, dy) = (up(self, x), up(self, dy));
        let (mut gelu, mut dgelu) = (zeros(self, n), up(self, &vec![0.5; n]));
        self.gelu_forward(&mut gelu, &x).unwrap();
        self.gelu_backward(&mut dgelu, &x, &dy).unwrap();
        [gelu, dgelu].iter().map(|b| down(self, b)).collect()
    }

    fn residual(&self, t: &[Vec<f32>]) -> Vec<Vec<f32>> {
        let [x, y, dy] = t else { unreachable!() };
        let n = x.len();
        let (x, y, dy) = (up(self, x), up(self, y), up(self, dy));
        let (mut sum, mut da, mut db) = (zeros(self, n), up(self, &vec![1.0; n]), zeros(self, n));
        self.residual_forward(&mut sum, &x, &y).unwrap();
        self.residual_backward(&mut da, &mut db, &dy).unwrap();
        [sum, da, db].iter().map(|b| down(self, b)).collect()
    }

    fn classifier(
        &self,
        rows: usize,
        vocab: usize,
        targets: &[u32],
        t: &[Vec<f32>],
    ) -> Vec<Vec<f32>> {
        let [logits] = t else { unreachable!() };
        let (mut losses, mut dlogits) = (zeros(self, rows), zeros(self, rows * vocab));
        let targets = up_ids(self, targets);
        self.softmax_cross_entropy(
            &mut losses,
            &mut dlogits,
            &up(self, logits),
            &targets,
            rows,
            vocab,
            0.25,
        )
        .unwrap();
        [losses, dlogits].iter().map(|b| down(self, b)).collect()
    }

    fn adamw(&self, t: &[Vec<f32>]) -> Vec<Vec<f32>> {
        let [p, g, m, v] = t else { unreachable!() };
        let (mut p, mut m, mut v) = (up(self, p), up(self, m), up(self, v));
        let update = AdamWUpdate {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
            bias_correction1: 0.19,
            bias_correction2: 0.0975,
        };
        let g = up(self, g);
        Backend::adamw(self, &mut p, &g, &mut m, &mut v, &update).unwrap();
        vec![down(self, &p), down(self, &m), down(self, &v)]
    }

    fn norm(&self, t: &[Vec<f32>]) -> Vec<Vec<f32>> {
        let tensors: Vec<B::Buf> = t.iter().map(|x| up(self, x)).collect();
        let mut scaled = up(self, &t[0]);
        self.scale(&mut scaled, 0.37).unwrap();
        let sums = self
            .sum_squares(&tensors.iter().collect::<Vec<_>>())
            .unwrap();
        vec![
            down(self, &scaled),
            sums.iter().map(|&s| s as f32).collect(),
        ]
    }

    fn dropout(&self, x: &[f32], g0: &[f32], p: f32, key: u64) -> (Vec<f32>, Vec<f32>) {
        let mut out = zeros(self, x.len());
        let x = up(self, x);
        self.dropout_forward(&mut out, &x, p, key).unwrap();
        let mut dx = up(self, g0);
        self.dropout_backward(&mut dx, &x, p, key).unwrap();
        (down(self, &out), down(self, &dx))
    }
}

const PRECISIONS: [Precision; 3] = [Precision::Fp32, Precision::Tf32, Precision::Bf16];

/// Shapes that are not multiples of the 64 × 64 matmul tile, so partial tiles are exercised.
mod matmul {
    use super::*;

    #[test]
    fn matches_cpu() {
        for precision in PRECISIONS {
            for d in [
                Linear {
                    rows: 130,
                    in_features: 96,
                    out_features: 200,
                },
                Linear {
                    rows: 64,
                    in_features: 768,
                    out_features: 64,
                },
                Linear {
                    rows: 7,
                    in_features: 5,
                    out_features: 3,
                },
            ] {
                let n = d.rows.max(d.out_features) * d.in_features.max(d.out_features);
                let t = [
                    data(1, d.rows * d.in_features, -1.0, 1.0),
                    data(2, d.out_features * d.in_features, -1.0, 1.0),
                    data(3, d.out_features, -1.0, 1.0),
                    data(4, d.rows * d.out_features, -1.0, 1.0),
                    data(5, n, -1.0, 1.0),
                ];
                parity(&format!("matmul {d:?}"), precision, |r| r.matmul(d, &t));
            }
        }
    }
}

mod attention {
    use super::*;

    #[test]
    fn matches_cpu() {
        for precision in PRECISIONS {
            for (d, n_head) in [
                (Btc { b: 2, t: 70, c: 64 }, 4),
                (
                    Btc {
                        b: 1,
                        t: 128,
                        c: 96,
                    },
                    2,
                ),
            ] {
                let t = [
                    data(1, 3 * d.numel(), -1.0, 1.0),
                    data(2, d.numel(), -1.0, 1.0),
                    data(3, 3 * d.numel(), -1.0, 1.0),
                ];
                parity(&format!("attention {d:?}"), precision, |r| {
                    r.attention(d, n_head, &t)
                });
            }
        }
    }
}

mod layernorm {
    use super::*;

    #[test]
    fn matches_cpu() {
        let (rows, c) = (100, 200);
        let t = [
            data(1, rows * c, -3.0, 5.0),
            data(2, c, 0.5, 1.5),
            data(3, c, -0.5, 0.5),
            data(4, rows * c, -1.0, 1.0),
            data(5, rows * c, -1.0, 1.0),
        ];
        parity("layernorm", Precision::Fp32, |r| r.layernorm(rows, c, &t));
    }
}

mod embedding {
    use super::*;

    #[test]
    fn matches_cpu() {
        let (v, d) = (50, Btc { b: 3, t: 17, c: 40 });
        let ids = tokens(1, d.rows(), v);
        let t = [
            data(2, v * d.c, -1.0, 1.0),
            data(3, 20 * d.c, -1.0, 1.0),
            data(4, d.numel(), -1.0, 1.0),
        ];
        parity("embedding", Precision::Fp32, |r| r.embedding(d, &ids, &t));
    }
}

mod gelu {
    use super::*;

    #[test]
    fn matches_cpu() {
        let n = 100_003;
        let t = [data(1, n, -6.0, 6.0), data(3, n, -1.0, 1.0)];
        parity("gelu", Precision::Fp32, |r| r.gelu(&t));
    }
}

mod residual {
    use super::*;

    #[test]
    fn matches_cpu() {
        let n = 100_003;
        let t = [
            data(1, n, -6.0, 6.0),
            data(2, n, -1.0, 1.0),
            data(3, n, -1.0, 1.0),
        ];
        parity("residual", Precision::Fp32, |r| r.residual(&t));
    }
}

mod classifier {
    use super::*;

    #[test]
    fn matches_cpu() {
        for (rows, vocab) in [(37, 65), (8, 50_257)] {
            let mut targets = tokens(1, rows, vocab);
            // Every third row is ignored, as the prompt tokens of a problem are.
            targets
                .iter_mut()
                .step_by(3)
                .for_each(|t| *t = IGNORE_INDEX);
            let t = [data(2, rows * vocab, -8.0, 8.0)];
            parity(&format!("classifier V={vocab}"), Precision::Fp32, |r| {
                r.classifier(rows, vocab, &targets, &t)
            });
        }
    }
}

mod adamw {
    use super::*;

    #[test]
    fn matches_cpu() {
        let n = 70_001;
        let t = [
            data(1, n, -1.0, 1.0),
            data(2, n, -1e-2, 1e-2),
            data(3, n, -1e-3, 1e-3),
            data(4, n, 0.0, 1e-5),
        ];
        parity("adamw", Precision::Fp32, |r| r.adamw(&t));
    }
}

mod norm {
    use super::*;

    #[test]
    fn matches_cpu() {
        let t = [data(1, 70_001, -1.0, 1.0), data(2, 1_000, -1e-2, 1e-2)];
        parity("scale and sums of squares", Precision::Fp32, |r| r.norm(&t));
    }
}

mod dropout {
    use super::*;

    #[test]
    fn matches_cpu_bit_for_bit() {
        let Some(gpu) = gpu(Precision::Fp32) else {
            return;
        };
        let cpu = CpuBackend::new();
        let (x, g0) = (data(1, 300_001, -1.0, 1.0), data(2, 300_001, -1.0, 1.0));
        for (p, key) in [(0.1, 7u64), (0.5, u64::MAX), (0.0, 3)] {
            let on = |be: &dyn Runner| be.dropout(&x, &g0, p, key);
            assert_eq!(on(&gpu), on(&cpu), "dropout p={p} key={key}");
        }
    }
}

fn small_gpt() -> ModelConfig {
    ModelConfig {
        vocab_size: 65,
        block_size: 64,
        n_layer: 2,
        n_head: 4,
        n_embd: 64,
        dropout: 0.1,
        tied_head: true,
    }
}

/// Losses of `steps` training steps (dropout, clipping and the schedule on), and the gradients
/// of the first.
fn train<B: Backend>(model: &mut Gpt<B>, steps: u64) -> (Vec<f32>, Vec<NamedTensor>) {
    let (b, t, v) = (4, 64, model.config().vocab_size);
    let opt = AdamW::default();
    let mut first_grads = Vec::new();
    let losses = (0..steps)
        .map(|step| {
            // One batch throughout: the loss has to fall, so a GPU that does not learn shows.
            let (inputs, targets) = (tokens(100, b * t, v), tokens(200, b * t, v));
            let loss = model
                .forward(&inputs, Some(&targets), b, t, true)
                .unwrap()
                .unwrap();
            model.backward().unwrap();
            if step == 0 {
                first_grads = model.grads().unwrap();
            }
            model
                .step(&opt, lr_at(step, 3e-3, 3e-4, 5, 40), 1.0)
                .unwrap();
            model.zero_grad().unwrap();
            loss
        })
        .collect();
    (losses, first_grads)
}

#[test]
fn training_step_and_short_run_track_cpu() {
    for (precision, loss_tol) in [(Precision::Fp32, 1e-4), (Precision::Bf16, 3e-2)] {
        let Some(gpu) = gpu(precision) else { return };
        let mut on_gpu = Gpt::new(small_gpt(), gpu, 1).unwrap();
        let mut on_cpu = Gpt::new(small_gpt(), CpuBackend::new(), 1).unwrap();
        let (gpu_losses, gpu_grads) = train(&mut on_gpu, 40);
        let (cpu_losses, cpu_grads) = train(&mut on_cpu, 40);
        for (g, c) in gpu_grads.iter().zip(&cpu_grads) {
            assert_close(
                &format!("{} ({precision})", c.name),
                &g.data,
                &c.data,
                10.0 * tolerance(precision),
            );
        }
        for (step, (g, c)) in gpu_losses.iter().zip(&cpu_losses).enumerate() {
            // Rounding differences compound over the run; the curves must stay together.
            let allowed = loss_tol * (1.0 + step as f32 / 4.0);
            assert!(
                (g - c).abs() <= allowed,
                "step {step} ({precision}): loss {g} on the GPU, {c} on the CPU"
            );
        }
        assert!(
            gpu_losses[39] < gpu_losses[0] - 0.3,
            "the GPU run learns: {gpu_losses:?}"
        );
    }
}

#[test]
fn device_selection_falls_back_or_fails_without_panicking() {
    if driver_present() {
        eprintln!("SKIPPED: this machine has a CUDA driver; the no-GPU paths need one without");
        return;
    }
    match select(&Device::Auto, Precision::Bf16).unwrap() {
        Selected::Cpu { why: Some(why) } => assert!(why.contains("libcuda"), "{why}"),
        Selected::Cpu { why: None } => panic!("auto fell back without saying why"),
        Selected::Cuda(_) => panic!("a GPU without a driver"),
    }
    assert!(matches!(
        select(&Device::Cpu, Precision::Fp32).unwrap(),
        Selected::Cpu { why: None }
    ));
    let err = match select(&Device::Cuda(1), Precision::Fp32) {
        Err(err) => format!("{err:#}"),
        Ok(_) => panic!("cuda:1 without a driver"),
    };
    assert!(err.contains("cuda:1") && err.contains("libcuda"), "{err}");
}

#[test]
fn precisions_parse_and_print() {
    for p in PRECISIONS {
        assert_eq!(p.to_string().parse::<Precision>().unwrap(), p);
    }
    assert_eq!(Precision::default(), Precision::Fp32);
    let err = "fp16".parse::<Precision>().unwrap_err().to_string();
    assert!(err.contains("fp32, tf32 or bf16"), "{err}");
}

#[test]
#[should_panic(expected = "element 2 is 3.01 on the GPU, 3 on the CPU")]
fn parity_comparison_catches_a_difference() {
    // The one part of the GPU checks that runs here: it must fail on a wrong element.
    assert_close(
        "probe",
        &[1.0, 2.0, 3.01],
        &[1.0, 2.0, 3.0],
        tolerance(Precision::Bf16) / 10.0,
    );
}
