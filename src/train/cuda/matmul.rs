//! Launches of the `matmul.cu` family: the strided, batched product that every linear layer and
//! attention product is an instance of, and the bias-gradient reduction.

use anyhow::Result;
use cudarc::driver::{DeviceRepr, LaunchConfig};

use super::{dim, CudaBackend};
use crate::train::backend::Linear;
use crate::train::backend::Precision;

/// A strided view `X(row, k) = ptr[row·row_stride + k·k_stride]`, batched: batch `(outer, inner)`
/// starts `outer·outer_stride + inner·inner_stride` elements on.
#[derive(Debug, Clone, Copy)]
pub(super) struct View {
    pub ptr: u64,
    pub row_stride: i64,
    pub k_stride: i64,
    pub outer_stride: i64,
    pub inner_stride: i64,
}

impl View {
    /// A single dense row-major `[rows, k]` matrix.
    pub fn rows(ptr: u64, k: usize) -> Self {
        Self::strided(ptr, k, 1)
    }

    /// The transpose of a dense row-major matrix with `cols` columns, read as `X(row, k)`.
    pub fn cols(ptr: u64, cols: usize) -> Self {
        Self::strided(ptr, 1, cols)
    }

    pub fn strided(ptr: u64, row_stride: usize, k_stride: usize) -> Self {
        Self {
            ptr,
            row_stride: row_stride as i64,
            k_stride: k_stride as i64,
            outer_stride: 0,
            inner_stride: 0,
        }
    }

    /// The same view, batched.
    pub fn batched(self, outer: usize, inner: usize) -> Self {
        Self {
            outer_stride: outer as i64,
            inner_stride: inner as i64,
            ..self
        }
    }
}

/// Which zeros of a causal product the kernel may skip (`TRI_*` in `matmul.cu`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tri {
    Dense = 0,
    /// Only `C(m, n)` with `n <= m` is read afterwards.
    COnlyLower = 1,
    /// `A(m, k) = 0` for `k > m`.
    ALower = 2,
    /// `A(m, k) = 0` for `k < m`.
    AUpper = 3,
}

/// The kernel's parameter block, `struct Gemm` in `matmul.cu`, field for field.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct GemmParams {
    a: u64,
    b: u64,
    c: u64,
    bias: u64,
    a_m: i64,
    a_k: i64,
    b_n: i64,
    b_k: i64,
    c_m: i64,
    a_outer: i64,
    a_inner: i64,
    b_outer: i64,
    b_inner: i64,
    c_outer: i64,
    c_inner: i64,
    m: i32,
    n: i32,
    k: i32,
    inner_count: i32,
    alpha: f32,
    beta: f32,
    tri: i32,
}

// SAFETY: plain old data with the C layout of the kernel's struct.
unsafe impl DeviceRepr for GemmParams {}

/// A `static_assert`, compiled with `matmul.cu`, that `struct Gemm` there has the size of
/// [`GemmParams`]: a field added on one side only fails every compile, the CI's included. (NVRTC
/// has no `offsetof` to check the order with; the GPU parity tests catch a swap.)
pub(super) fn layout_checks() -> String {
    format!(
        "static_assert(sizeof(Gemm) == {}, \"struct Gemm differs from GemmParams in \
         src/train/cuda/matmul.rs\");\n",
        std::mem::size_of::<GemmParams>()
    )
}

/// `C(m, n) = alpha·Σ_k A(m, k)·B(n, k) + beta·C(m, n) + bias[n]` over `outer × inner` batches.
#[derive(Debug, Clone, Copy)]
pub(super) struct Gemm {
    pub a: View,
    pub b: View,
    /// `C(m, n)` at `ptr[m·row_stride + n]`: `k_stride` is unused.
    pub c: View,
    pub bias: Option<u64>,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub outer: usize,
    pub inner: usize,
    pub alpha: f32,
    pub beta: f32,
    pub tri: Tri,
}

impl Gemm {
    pub fn new(a: View, b: View, c: View, (m, n, k): (usize, usize, usize)) -> Self {
        Self {
            a,
            b,
            c,
            bias: None,
            m,
            n,
            k,
            outer: 1,
            inner: 1,
            alpha: 1.0,
            beta: 0.0,
            tri: Tri::Dense,
        }
    }

    /// Adds into C instead of overwriting it.
    pub fn accumulate(self) -> Self {
        Self { beta: 1.0, ..self }
    }
}

/// Output tile edge and threads per block, as `BM`/`BN` and `GEMM_THREADS` in `matmul.cu`.
const TILE: usize = 64;
const GEMM_THREADS: u32 = 128;
/// Rows per block of the column-sum kernels (`COL_ROWS` in `common.cuh`).
pub(super) const COL_ROWS: u32 = 8;

impl CudaBackend {
    pub(super) fn gemm(&self, g: Gemm) -> Result<()> {
        if g.m == 0 || g.n == 0 {
            return Ok(());
        }
        let params = GemmParams {
            a: g.a.ptr,
            b: g.b.ptr,
            c: g.c.ptr,
            bias: g.bias.unwrap_or(0),
            a_m: g.a.row_stride,
            a_k: g.a.k_stride,
            b_n: g.b.row_stride,
            b_k: g.b.k_stride,
            c_m: g.c.row_stride,
            a_outer: g.a.outer_stride,
            a_inner: g.a.inner_stride,
            b_outer: g.b.outer_stride,
            b_inner: g.b.inner_stride,
            c_outer: g.c.outer_stride,
            c_inner: g.c.inner_stride,
            m: dim(g.m)?,
            n: dim(g.n)?,
            k: dim(g.k)?,
            inner_count: dim(g.inner)?,
            alpha: g.alpha,
            beta: g.beta,
            tri: g.tri as i32,
        };
        let cfg = LaunchConfig {
            grid_dim: (
                g.n.div_ceil(TILE) as u32,
                g.m.div_ceil(TILE) as u32,
                dim(g.outer * g.inner)? as u32,
            ),
            block_dim: (GEMM_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        let name = match self.precision {
            Precision::Fp32 => "gemm_fp32",
            Precision::Tf32 => "gemm_tf32",
            Precision::Bf16 => "gemm_bf16",
        };
        launch!(self, name, cfg, &params)
    }

    /// The launch shape of the column-sum kernels over `rows × cols`: 32 columns per block, and
    /// enough row slices to fill the GPU about four times over.
    pub(super) fn column_sums(&self, rows: usize, cols: usize) -> LaunchConfig {
        let col_blocks = cols.div_ceil(32).max(1) as u32;
        let target = 4 * self.gpu.facts.multiprocessors;
        let row_blocks = target
            .div_ceil(col_blocks)
            .clamp(1, rows.div_ceil(COL_ROWS as usize).max(1) as u32);
        LaunchConfig {
            grid_dim: (col_blocks, row_blocks, 1),
            block_dim: (32, COL_ROWS, 1),
            shared_mem_bytes: 0,
        }
    }

    pub(super) fn linear_forward(
        &self,
        out: u64,
        inp: u64,
        weight: u64,
        bias: Option<u64>,
        d: Linear,
    ) -> Result<()> {
        let (ic, oc) = (d.in_features, d.out_features);
        self.gemm(Gemm {
            bias,
            ..Gemm::new(
                View::rows(inp, ic),
                View::rows(weight, ic),
                View::rows(out, oc),
                (d.rows, oc, ic),
            )
        })
    }

    pub(super) fn linear_backward(
        &self,
        (dinp, dweight, dbias): (u64, u64, Option<u64>),
        dout: u64,
        inp: u64,
        weight: u64,
        d: Linear,
    ) -> Result<()> {
        let (ic, oc) = (d.in_features, d.out_features);
        // dinp(r, i) += Σ_o dout(r, o)·W(o, i)
        self.gemm(
            Gemm::new(
                View::rows(dout, oc),
                View::cols(weight, ic),
                View::rows(dinp, ic),
                (d.rows, ic, oc),
            )
            .accumulate(),
        )?;
        // dW(o, i) += Σ_r dout(r, o)·inp(r, i)
        self.gemm(
            Gemm::new(
                View::cols(dout, oc),
                View::cols(inp, ic),
                View::rows(dweight, ic),
                (oc, ic, d.rows),
            )
            .accumulate(),
        )?;
        if let Some(dbias) = dbias {
            let (rows, n) = (dim(d.rows)?, dim(oc)?);
            launch!(
                self,
                "bias_backward",
                self.column_sums(d.rows, oc),
                &dbias,
                &dout,
                &rows,
                &n
            )?;
        }
        Ok(())
    }
}
