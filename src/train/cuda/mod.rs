//! The CUDA backend: hand-written kernels (`kernels/*.cu`), compiled at run time by NVRTC for
//! the device's exact architecture, launched through cudarc.
//!
//! Every op is enqueued on one stream and returns at once; nothing waits for the GPU except
//! [`Backend::download`] and [`Backend::sum_squares`], the trait's only ways back to the host.
//! The model allocates its buffers once per batch shape, and the backend's own scratch (the
//! attention-probability gradient, the sums of squares) grows once and is reused.
//!
//! Loading is dynamic: a binary built anywhere runs on a machine without CUDA, and
//! [`CudaBackend::new`] then fails with a reason instead of panicking.
//!
//! Shapes are checked on the host with the backends' shared checks (`backend::shape`), so both
//! backends reject the same calls. Token ids are checked on the host when uploaded (their maximum is kept with
//! them), never by reading the device.

/// Launches kernel `$name` of backend `$be` with `cfg` and arguments `$arg` (references to
/// device buffers or to plain values), mapping launch failures to errors.
///
/// The arguments must match the kernel's C signature in order and type (`usize` for `size_t`,
/// `i32` for `int`, `u64` for a raw device pointer): the one unchecked contract of this module.
macro_rules! launch {
    ($be:expr, $name:expr, $cfg:expr, $($arg:expr),+ $(,)?) => {{
        let name: &str = $name;
        let function = $be.gpu.function(name)?;
        let mut args = $be.gpu.stream.launch_builder(function);
        use cudarc::driver::PushKernelArg as _;
        $(args.arg($arg);)+
        // SAFETY: the caller passes the kernel's parameters in order, with matching types, and
        // buffers that the launch's sizes stay within (checked before every launch).
        unsafe { args.launch($cfg) }
            .map(|_| ())
            .map_err(|e| $be.gpu.error(&format!("launching {name}"), e))
    }};
}

mod attention;
pub mod compile;
mod context;
mod matmul;
pub mod metrics;

use std::sync::Mutex;

use anyhow::{anyhow, ensure, Context as _, Result};
use cudarc::driver::{CudaSlice, DevicePtr, LaunchConfig};
use serde_json::json;

pub use context::{driver_present, GpuFacts};

use crate::experiment::keys;
use crate::train::backend::{
    dropout_threshold, shape, AdamWUpdate, Backend, Btc, Linear, MetricSource, Precision,
    IGNORE_INDEX,
};
use crate::wandb::Row;

use context::Gpu;

/// Token ids on the device, with the largest one kept on the host for the vocabulary checks.
pub struct CudaIds {
    buf: CudaSlice<u32>,
    /// The largest id that is not [`IGNORE_INDEX`].
    max: Option<u32>,
    /// Whether some id is [`IGNORE_INDEX`] (targets may be; embedding inputs may not).
    ignored: bool,
}

impl CudaIds {
    /// Inputs: every id in the vocabulary.
    fn check_below(&self, what: &str, vocab: usize) -> Result<()> {
        ensure!(
            !self.ignored,
            "a {what} is the ignore index, which only targets may be"
        );
        self.check_targets(what, vocab)
    }

    /// Targets: every id in the vocabulary or ignored.
    fn check_targets(&self, what: &str, vocab: usize) -> Result<()> {
        match self.max {
            Some(id) if id as usize >= vocab => {
                Err(anyhow!("{what} {id} is outside the vocabulary of {vocab}"))
            }
            _ => Ok(()),
        }
    }
}

/// The CUDA backend on one GPU.
pub struct CudaBackend {
    gpu: Gpu,
    precision: Precision,
    /// The attention-probability gradient of the last backward call, `[B, n_head, T, T]`.
    datt: Mutex<Option<CudaSlice<f32>>>,
    /// One f64 sum per tensor of a [`Backend::sum_squares`] call.
    sums: Mutex<Option<CudaSlice<f64>>>,
}

/// A size as a kernel's `int` parameter.
fn dim(n: usize) -> Result<i32> {
    i32::try_from(n).with_context(|| format!("size {n} exceeds what the kernels index with int"))
}

/// The launch shape of the row kernels: a warp per row, 8 rows per block (at least one block:
/// a launch of none is an error, and the kernels skip rows past the end).
fn warp_rows(rows: usize) -> LaunchConfig {
    const ROWS_PER_BLOCK: usize = 8;
    LaunchConfig {
        grid_dim: (rows.div_ceil(ROWS_PER_BLOCK).max(1) as u32, 1, 1),
        block_dim: (32 * ROWS_PER_BLOCK as u32, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Grows `slot` to hold at least `len` elements and returns it.
fn scratch<'a, T: cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits>(
    gpu: &Gpu,
    slot: &'a mut Option<CudaSlice<T>>,
    len: usize,
) -> Result<&'a mut CudaSlice<T>> {
    if slot.as_ref().is_none_or(|s| s.len() < len) {
        *slot = Some(
            gpu.stream
                .alloc_zeros(len)
                .map_err(|e| gpu.error(&format!("allocating {len} scratch elements"), e))?,
        );
    }
    Ok(slot.as_mut().expect("filled above"))
}

impl CudaBackend {
    /// Opens GPU `ordinal` and loads every kernel, compiling those not in the cache.
    pub fn new(ordinal: usize, precision: Precision) -> Result<Self> {
        Ok(Self {
            gpu: Gpu::open(ordinal)?,
            precision,
            datt: Mutex::new(None),
            sums: Mutex::new(None),
        })
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    pub fn gpu_facts(&self) -> &GpuFacts {
        &self.gpu.facts
    }

    /// Waits for every enqueued op; a kernel fault surfaces here (or at the next download).
    pub fn synchronize(&self) -> Result<()> {
        self.gpu
            .stream
            .synchronize()
            .map_err(|e| self.gpu.error("waiting for the GPU", e))
    }

    /// The raw device address of a buffer, for the kernels that take views into buffers.
    /// Event tracking is off (one stream orders everything), so the returned guard is inert.
    fn ptr<T>(&self, buf: &CudaSlice<T>) -> u64 {
        buf.device_ptr(&self.gpu.stream).0
    }

    /// The launch shape of the element-wise kernels (grid-stride loops): enough blocks to fill
    /// every multiprocessor several times, never more than the elements need.
    fn elementwise(&self, n: usize) -> LaunchConfig {
        const THREADS: u32 = 256;
        let max_blocks = 16 * self.gpu.facts.multiprocessors;
        LaunchConfig {
            grid_dim: (
                (n.div_ceil(THREADS as usize) as u32).clamp(1, max_blocks),
                1,
                1,
            ),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        }
    }

    fn driver<T>(&self, what: &str, r: Result<T, cudarc::driver::DriverError>) -> Result<T> {
        r.map_err(|e| self.gpu.error(what, e))
    }
}

#[allow(clippy::too_many_arguments)] // the trait's signatures
impl Backend for CudaBackend {
    type Buf = CudaSlice<f32>;
    type Ids = CudaIds;

    /// The device facts a run records in its config: the keys of a CPU run's (`backend`,
    /// `device.resolved`) and the GPU's (`keys::config::GPU`).
    fn facts(&self) -> Row {
        let f = &self.gpu.facts;
        let mut map = Row::from_iter([
            (keys::config::BACKEND.to_owned(), json!("cuda")),
            (
                keys::config::DEVICE.to_owned(),
                json!(format!("cuda:{}", f.ordinal)),
            ),
        ]);
        let values = [
            json!(f.name),
            json!(f.total_memory_bytes),
            json!(format!("{}.{}", f.arch.major, f.arch.minor)),
            json!(f.multiprocessors),
            json!(f.driver_cuda_version),
            json!(f.nvrtc_version),
            json!(self.precision.to_string()),
        ];
        map.extend(keys::config::GPU.map(str::to_owned).into_iter().zip(values));
        map
    }

    fn metric_sources(&self) -> Vec<Box<dyn MetricSource>> {
        vec![Box::new(metrics::GpuMetrics::new(
            self.gpu.ctx.clone(),
            self.gpu.facts.ordinal,
        ))]
    }

    fn alloc(&self, len: usize) -> Result<Self::Buf> {
        let r = self.gpu.stream.alloc_zeros(len);
        self.driver(&format!("allocating {len} floats on the GPU"), r)
    }

    fn zero(&self, buf: &mut Self::Buf) -> Result<()> {
        let r = self.gpu.stream.memset_zeros(buf);
        self.driver("zeroing a GPU buffer", r)
    }

    fn upload(&self, buf: &mut Self::Buf, data: &[f32]) -> Result<()> {
        shape::len("upload source", data.len(), buf.len())?;
        let r = self.gpu.stream.memcpy_htod(data, buf);
        self.driver("copying to the GPU", r)
    }

    fn download(&self, buf: &Self::Buf) -> Result<Vec<f32>> {
        let r = self.gpu.stream.clone_dtoh(buf);
        let data = self.driver("copying from the GPU", r)?;
        self.synchronize()?;
        Ok(data)
    }

    fn alloc_ids(&self, len: usize) -> Result<Self::Ids> {
        let r = self.gpu.stream.alloc_zeros(len);
        let buf = self.driver(&format!("allocating {len} token ids on the GPU"), r)?;
        Ok(CudaIds {
            buf,
            max: (len > 0).then_some(0),
            ignored: false,
        })
    }

    fn upload_ids(&self, ids: &mut Self::Ids, data: &[u32]) -> Result<()> {
        shape::len("token id upload source", data.len(), ids.buf.len())?;
        let r = self.gpu.stream.memcpy_htod(data, &mut ids.buf);
        self.driver("copying token ids to the GPU", r)?;
        ids.max = data.iter().copied().filter(|&id| id != IGNORE_INDEX).max();
        ids.ignored = data.contains(&IGNORE_INDEX);
        Ok(())
    }

    fn embedding_forward(
        &self,
        out: &mut Self::Buf,
        ids: &Self::Ids,
        wte: &Self::Buf,
        wpe: &Self::Buf,
        dims: Btc,
    ) -> Result<()> {
        let vocab = shape::embedding(ids.buf.len(), wte.len(), wpe.len(), out.len(), dims)?;
        ids.check_below("token id", vocab)?;
        let (t, c, n) = (dim(dims.t)?, dim(dims.c)?, out.len());
        let cfg = self.elementwise(n);
        launch!(
            self,
            "embedding_forward",
            cfg,
            out,
            &ids.buf,
            wte,
            wpe,
            &t,
            &c,
            &n
        )
    }

    fn embedding_backward(
        &self,
        dwte: &mut Self::Buf,
        dwpe: &mut Self::Buf,
        dout: &Self::Buf,
        ids: &Self::Ids,
        dims: Btc,
    ) -> Result<()> {
        let vocab = shape::embedding(ids.buf.len(), dwte.len(), dwpe.len(), dout.len(), dims)?;
        ids.check_below("token id", vocab)?;
        let (t, c, n) = (dim(dims.t)?, dim(dims.c)?, dout.len());
        let cfg = self.elementwise(n);
        launch!(
            self,
            "embedding_backward",
            cfg,
            dwte,
            dwpe,
            dout,
            &ids.buf,
            &t,
            &c,
            &n
        )
    }

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
    ) -> Result<()> {
        let outputs = [&*out, &*mean, &*rstd].map(CudaSlice::len);
        shape::layernorm_forward(rows, c, outputs, [inp, weight, bias].map(CudaSlice::len))?;
        let (r, c) = (dim(rows)?, dim(c)?);
        launch!(
            self,
            "layernorm_forward",
            warp_rows(rows),
            out,
            mean,
            rstd,
            inp,
            weight,
            bias,
            &r,
            &c
        )
    }

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
    ) -> Result<()> {
        let grads = [&*dinp, &*dweight, &*dbias].map(CudaSlice::len);
        let inputs = [dout, inp, weight, mean, rstd].map(CudaSlice::len);
        shape::layernorm_backward(rows, c, grads, inputs)?;
        let (r, c32) = (dim(rows)?, dim(c)?);
        launch!(
            self,
            "layernorm_backward_input",
            warp_rows(rows),
            dinp,
            dout,
            inp,
            weight,
            mean,
            rstd,
            &r,
            &c32
        )?;
        launch!(
            self,
            "layernorm_backward_params",
            self.column_sums(rows, c),
            dweight,
            dbias,
            dout,
            inp,
            mean,
            rstd,
            &r,
            &c32
        )
    }

    fn matmul_forward(
        &self,
        out: &mut Self::Buf,
        inp: &Self::Buf,
        weight: &Self::Buf,
        bias: Option<&Self::Buf>,
        dims: Linear,
    ) -> Result<()> {
        shape::linear(dims, inp.len(), weight.len(), out.len())?;
        if let Some(bias) = bias {
            shape::len("linear bias", bias.len(), dims.out_features)?;
        }
        let bias = bias.map(|b| self.ptr(b));
        self.linear_forward(self.ptr(out), self.ptr(inp), self.ptr(weight), bias, dims)
    }

    fn matmul_backward(
        &self,
        dinp: &mut Self::Buf,
        dweight: &mut Self::Buf,
        dbias: Option<&mut Self::Buf>,
        dout: &Self::Buf,
        inp: &Self::Buf,
        weight: &Self::Buf,
        dims: Linear,
    ) -> Result<()> {
        shape::linear(dims, inp.len(), weight.len(), dout.len())?;
        shape::len("linear input gradient", dinp.len(), inp.len())?;
        shape::len("linear weight gradient", dweight.len(), weight.len())?;
        if let Some(dbias) = &dbias {
            shape::len("linear bias gradient", dbias.len(), dims.out_features)?;
        }
        let grads = (
            self.ptr(dinp),
            self.ptr(dweight),
            dbias.map(|b| self.ptr(b)),
        );
        self.linear_backward(grads, self.ptr(dout), self.ptr(inp), self.ptr(weight), dims)
    }

    fn attention_forward(
        &self,
        out: &mut Self::Buf,
        att: &mut Self::Buf,
        qkv: &Self::Buf,
        dims: Btc,
        n_head: usize,
    ) -> Result<()> {
        shape::attention(dims, n_head, qkv.len(), out.len(), att.len())?;
        let layout = attention::Layout::new(dims, n_head);
        self.attention_forward_ptrs(self.ptr(out), self.ptr(att), self.ptr(qkv), &layout)
    }

    fn attention_backward(
        &self,
        dqkv: &mut Self::Buf,
        dout: &Self::Buf,
        qkv: &Self::Buf,
        att: &Self::Buf,
        dims: Btc,
        n_head: usize,
    ) -> Result<()> {
        shape::attention(dims, n_head, qkv.len(), dout.len(), att.len())?;
        shape::len("attention qkv gradient", dqkv.len(), qkv.len())?;
        let layout = attention::Layout::new(dims, n_head);
        let mut slot = self.datt.lock().unwrap_or_else(|e| e.into_inner());
        let datt = self.ptr(scratch(&self.gpu, &mut slot, att.len())?);
        self.attention_backward_ptrs(
            (self.ptr(dqkv), datt),
            self.ptr(dout),
            self.ptr(qkv),
            self.ptr(att),
            &layout,
        )
    }

    fn gelu_forward(&self, out: &mut Self::Buf, inp: &Self::Buf) -> Result<()> {
        shape::len("gelu input", inp.len(), out.len())?;
        let n = out.len();
        launch!(self, "gelu_forward", self.elementwise(n), out, inp, &n)
    }

    fn gelu_backward(&self, dinp: &mut Self::Buf, inp: &Self::Buf, dout: &Self::Buf) -> Result<()> {
        shape::len("gelu input", inp.len(), dinp.len())?;
        shape::len("gelu output gradient", dout.len(), dinp.len())?;
        let n = dinp.len();
        launch!(
            self,
            "gelu_backward",
            self.elementwise(n),
            dinp,
            inp,
            dout,
            &n
        )
    }

    fn residual_forward(&self, out: &mut Self::Buf, a: &Self::Buf, b: &Self::Buf) -> Result<()> {
        shape::len("residual input a", a.len(), out.len())?;
        shape::len("residual input b", b.len(), out.len())?;
        let n = out.len();
        launch!(self, "residual_forward", self.elementwise(n), out, a, b, &n)
    }

    fn residual_backward(
        &self,
        da: &mut Self::Buf,
        db: &mut Self::Buf,
        dout: &Self::Buf,
    ) -> Result<()> {
        shape::len("accumulated gradient", dout.len(), da.len())?;
        shape::len("accumulated gradient", dout.len(), db.len())?;
        let n = dout.len();
        launch!(
            self,
            "residual_backward",
            self.elementwise(n),
            da,
            db,
            dout,
            &n
        )
    }

    fn dropout_forward(
        &self,
        out: &mut Self::Buf,
        inp: &Self::Buf,
        p: f32,
        key: u64,
    ) -> Result<()> {
        self.dropout(out, inp, p, key, false)
    }

    fn dropout_backward(
        &self,
        dinp: &mut Self::Buf,
        dout: &Self::Buf,
        p: f32,
        key: u64,
    ) -> Result<()> {
        self.dropout(dinp, dout, p, key, true)
    }

    fn softmax_cross_entropy(
        &self,
        losses: &mut Self::Buf,
        dlogits: &mut Self::Buf,
        logits: &Self::Buf,
        targets: &Self::Ids,
        rows: usize,
        vocab: usize,
        grad_scale: f32,
    ) -> Result<()> {
        let lens = (losses.len(), dlogits.len(), logits.len(), targets.buf.len());
        shape::cross_entropy(lens, rows, vocab)?;
        targets.check_targets("target", vocab)?;
        if rows == 0 {
            return Ok(());
        }
        let v = dim(vocab)?;
        let cfg = LaunchConfig {
            grid_dim: (rows as u32, 1, 1),
            // Small vocabularies (characters) need few threads; GPT-2's 50257 takes 1024.
            block_dim: ((vocab.div_ceil(32) * 32).clamp(32, 1024) as u32, 1, 1),
            shared_mem_bytes: 0,
        };
        launch!(
            self,
            "softmax_cross_entropy",
            cfg,
            losses,
            dlogits,
            logits,
            &targets.buf,
            &v,
            &grad_scale
        )
    }

    fn adamw(
        &self,
        param: &mut Self::Buf,
        grad: &Self::Buf,
        m: &mut Self::Buf,
        v: &mut Self::Buf,
        u: &AdamWUpdate,
    ) -> Result<()> {
        shape::len("AdamW gradient", grad.len(), param.len())?;
        shape::len("AdamW first moment", m.len(), param.len())?;
        shape::len("AdamW second moment", v.len(), param.len())?;
        let n = param.len();
        launch!(
            self,
            "adamw",
            self.elementwise(n),
            param,
            grad,
            m,
            v,
            &u.lr,
            &u.beta1,
            &u.beta2,
            &u.eps,
            &u.weight_decay,
            &u.bias_correction1,
            &u.bias_correction2,
            &n
        )
    }

    fn scale(&self, buf: &mut Self::Buf, factor: f32) -> Result<()> {
        let n = buf.len();
        launch!(self, "scale", self.elementwise(n), buf, &factor, &n)
    }

    fn sum_squares(&self, bufs: &[&Self::Buf]) -> Result<Vec<f64>> {
        if bufs.is_empty() {
            return Ok(Vec::new());
        }
        let mut slot = self.sums.lock().unwrap_or_else(|e| e.into_inner());
        let sums = scratch(&self.gpu, &mut slot, bufs.len())?;
        let r = self.gpu.stream.memset_zeros(sums);
        self.driver("zeroing the sums of squares", r)?;
        let base = self.ptr(sums);
        for (i, buf) in bufs.iter().enumerate() {
            let (out, n) = (base + (i * std::mem::size_of::<f64>()) as u64, buf.len());
            if n > 0 {
                launch!(self, "sum_squares", self.elementwise(n), &out, *buf, &n)?;
            }
        }
        let r = self.gpu.stream.clone_dtoh(&sums.slice(..bufs.len()));
        let sums = self.driver("copying the sums of squares from the GPU", r)?;
        self.synchronize()?;
        Ok(sums)
    }
}

impl CudaBackend {
    /// Dropout forward, or with `accumulate` its backward (same mask and scale, added).
    fn dropout(
        &self,
        out: &mut CudaSlice<f32>,
        inp: &CudaSlice<f32>,
        p: f32,
        key: u64,
        accumulate: bool,
    ) -> Result<()> {
        shape::len("dropout input", inp.len(), out.len())?;
        ensure!(
            (0.0..1.0).contains(&p),
            "dropout probability {p} is not in [0, 1)"
        );
        let (threshold, scale, n) = (dropout_threshold(p), 1.0 / (1.0 - p), out.len());
        let accumulate = i32::from(accumulate);
        launch!(
            self,
            "dropout",
            self.elementwise(n),
            out,
            inp,
            &key,
            &threshold,
            &scale,
            &accumulate,
            &n
        )
    }
}

// The trainer may move the backend to its own thread: cudarc's handles are Send + Sync and the
// scratch slots are locked.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<CudaBackend>();
};
