//! The CPU backend: the f32 numerical reference for every other backend.
//!
//! Arithmetic is f32 throughout, as on the GPU, with two exceptions where the sum is long and its
//! value is reported rather than differentiated: the gradient sum of squares accumulates in f64,
//! and the model averages per-token losses in f64. Matrix products go through ndarray's
//! matrixmultiply GEMM.
//!
//! Work is split with rayon into pieces whose boundaries depend only on the tensor shapes, never
//! on the thread count, and every float sum runs inside one piece (or over pieces' results in a
//! fixed order), so results are bit-identical however many threads run.

// One file per kernel family, named like its CUDA twin in `kernels/`.
mod adamw;
mod attention;
mod classifier;
mod dropout;
mod embedding;
mod gelu;
mod layernorm;
mod matmul;
mod norm;
mod residual;

use anyhow::Result;
use ndarray::{ArrayView2, ArrayViewMut2, ShapeBuilder};
use rayon::prelude::*;
use serde_json::json;

use crate::experiment::keys;
use crate::train::backend::{shape, AdamWUpdate, Backend, Btc, Linear};
use crate::wandb::Row;

/// Elements per rayon task: large enough to amortize scheduling, fixed so results do not depend
/// on the thread count.
const CHUNK: usize = 1 << 14;

/// Runs `f(i, &mut out[i])` for every element, in parallel chunks.
fn for_each_indexed(out: &mut [f32], f: impl Fn(usize, &mut f32) + Sync) {
    out.par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(chunk, xs)| {
            let base = chunk * CHUNK;
            for (j, x) in xs.iter_mut().enumerate() {
                f(base + j, x);
            }
        });
}

/// The CPU backend; tensors are plain host vectors.
#[derive(Debug, Default, Clone, Copy)]
pub struct CpuBackend;

impl CpuBackend {
    pub fn new() -> Self {
        Self
    }
}

/// A row-major `[rows, cols]` view of `data` whose rows start `row_stride` elements apart.
fn strided(data: &[f32], rows: usize, cols: usize, row_stride: usize) -> ArrayView2<'_, f32> {
    ArrayView2::from_shape((rows, cols).strides((row_stride, 1)), data)
        .expect("callers pass a slice that covers the view")
}

/// A dense row-major `[rows, cols]` view.
fn matrix(data: &[f32], rows: usize, cols: usize) -> ArrayView2<'_, f32> {
    strided(data, rows, cols, cols)
}

/// A dense row-major mutable `[rows, cols]` view.
fn matrix_mut(data: &mut [f32], rows: usize, cols: usize) -> ArrayViewMut2<'_, f32> {
    ArrayViewMut2::from_shape((rows, cols), data).expect("callers pass a slice of rows × cols")
}

impl Backend for CpuBackend {
    type Buf = Vec<f32>;
    type Ids = Vec<u32>;

    fn facts(&self) -> Row {
        Row::from_iter([
            (keys::config::BACKEND.to_owned(), json!("cpu")),
            (keys::config::DEVICE.to_owned(), json!("cpu")),
        ])
    }

    fn alloc(&self, len: usize) -> Result<Vec<f32>> {
        Ok(vec![0.0; len])
    }

    fn zero(&self, buf: &mut Vec<f32>) -> Result<()> {
        buf.fill(0.0);
        Ok(())
    }

    fn upload(&self, buf: &mut Vec<f32>, data: &[f32]) -> Result<()> {
        shape::len("upload source", data.len(), buf.len())?;
        buf.copy_from_slice(data);
        Ok(())
    }

    fn download(&self, buf: &Vec<f32>) -> Result<Vec<f32>> {
        Ok(buf.clone())
    }

    fn alloc_ids(&self, len: usize) -> Result<Vec<u32>> {
        Ok(vec![0; len])
    }

    fn upload_ids(&self, ids: &mut Vec<u32>, data: &[u32]) -> Result<()> {
        shape::len("token id upload source", data.len(), ids.len())?;
        ids.copy_from_slice(data);
        Ok(())
    }

    fn embedding_forward(
        &self,
        out: &mut Vec<f32>,
        ids: &Vec<u32>,
        wte: &Vec<f32>,
        wpe: &Vec<f32>,
        dims: Btc,
    ) -> Result<()> {
        embedding::forward(out, ids, wte, wpe, dims)
    }

    fn embedding_backward(
        &self,
        dwte: &mut Vec<f32>,
        dwpe: &mut Vec<f32>,
        dout: &Vec<f32>,
        ids: &Vec<u32>,
        dims: Btc,
    ) -> Result<()> {
        embedding::backward(dwte, dwpe, dout, ids, dims)
    }

    fn layernorm_forward(
        &self,
        out: &mut Vec<f32>,
        mean: &mut Vec<f32>,
        rstd: &mut Vec<f32>,
        inp: &Vec<f32>,
        weight: &Vec<f32>,
        bias: &Vec<f32>,
        rows: usize,
        c: usize,
    ) -> Result<()> {
        layernorm::forward(out, mean, rstd, inp, weight, bias, rows, c)
    }

    fn layernorm_backward(
        &self,
        dinp: &mut Vec<f32>,
        dweight: &mut Vec<f32>,
        dbias: &mut Vec<f32>,
        dout: &Vec<f32>,
        inp: &Vec<f32>,
        weight: &Vec<f32>,
        mean: &Vec<f32>,
        rstd: &Vec<f32>,
        rows: usize,
        c: usize,
    ) -> Result<()> {
        layernorm::backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, rows, c)
    }

    fn matmul_forward(
        &self,
        out: &mut Vec<f32>,
        inp: &Vec<f32>,
        weight: &Vec<f32>,
        bias: Option<&Vec<f32>>,
        dims: Linear,
    ) -> Result<()> {
        matmul::forward(out, inp, weight, bias.map(Vec::as_slice), dims)
    }

    fn matmul_backward(
        &self,
        dinp: &mut Vec<f32>,
        dweight: &mut Vec<f32>,
        dbias: Option<&mut Vec<f32>>,
        dout: &Vec<f32>,
        inp: &Vec<f32>,
        weight: &Vec<f32>,
        dims: Linear,
    ) -> Result<()> {
        let dbias = dbias.map(Vec::as_mut_slice);
        matmul::backward(dinp, dweight, dbias, dout, inp, weight, dims)
    }

    fn attention_forward(
        &self,
        out: &mut Vec<f32>,
        att: &mut Vec<f32>,
        qkv: &Vec<f32>,
        dims: Btc,
        n_head: usize,
    ) -> Result<()> {
        attention::forward(out, att, qkv, dims, n_head)
    }

    fn attention_backward(
        &self,
        dqkv: &mut Vec<f32>,
        dout: &Vec<f32>,
        qkv: &Vec<f32>,
        att: &Vec<f32>,
        dims: Btc,
        n_head: usize,
    ) -> Result<()> {
        attention::backward(dqkv, dout, qkv, att, dims, n_head)
    }

    fn gelu_forward(&self, out: &mut Vec<f32>, inp: &Vec<f32>) -> Result<()> {
        gelu::forward(out, inp)
    }

    fn gelu_backward(&self, dinp: &mut Vec<f32>, inp: &Vec<f32>, dout: &Vec<f32>) -> Result<()> {
        gelu::backward(dinp, inp, dout)
    }

    fn residual_forward(&self, out: &mut Vec<f32>, a: &Vec<f32>, b: &Vec<f32>) -> Result<()> {
        residual::forward(out, a, b)
    }

    fn residual_backward(
        &self,
        da: &mut Vec<f32>,
        db: &mut Vec<f32>,
        dout: &Vec<f32>,
    ) -> Result<()> {
        residual::accumulate(da, dout)?;
        residual::accumulate(db, dout)
    }

    fn dropout_forward(&self, out: &mut Vec<f32>, inp: &Vec<f32>, p: f32, key: u64) -> Result<()> {
        dropout::apply(out, inp, p, key, false)
    }

    fn dropout_backward(
        &self,
        dinp: &mut Vec<f32>,
        dout: &Vec<f32>,
        p: f32,
        key: u64,
    ) -> Result<()> {
        dropout::apply(dinp, dout, p, key, true)
    }

    fn softmax_cross_entropy(
        &self,
        losses: &mut Vec<f32>,
        dlogits: &mut Vec<f32>,
        logits: &Vec<f32>,
        targets: &Vec<u32>,
        rows: usize,
        vocab: usize,
        grad_scale: f32,
    ) -> Result<()> {
        classifier::softmax_cross_entropy(losses, dlogits, logits, targets, rows, vocab, grad_scale)
    }

    fn adamw(
        &self,
        param: &mut Vec<f32>,
        grad: &Vec<f32>,
        m: &mut Vec<f32>,
        v: &mut Vec<f32>,
        update: &AdamWUpdate,
    ) -> Result<()> {
        adamw::step(param, grad, m, v, update)
    }

    fn scale(&self, buf: &mut Vec<f32>, factor: f32) -> Result<()> {
        norm::scale(buf, factor);
        Ok(())
    }

    fn sum_squares(&self, bufs: &[&Vec<f32>]) -> Result<Vec<f64>> {
        Ok(bufs.iter().map(|b| norm::sum_squares(b)).collect())
    }
}
