// Matrix products on tensor cores, with bias and bias-gradient reduction.
//
// Every product in the model, the linear layers and the attention scores alike, is one shape:
//     C(m, n) = alpha · Σ_k A(m, k) · B(n, k)  +  beta · C(m, n)  +  bias[n]
// where A, B and C are strided views of f32 buffers, batched over (outer, inner) pairs (batch,
// head). Strides pick the transposes: the forward `inp · Wᵀ` reads both operands along k, the
// backward `dout · W` and `doutᵀ · inp` read one or both across it. One kernel family therefore
// serves forward, backward and attention; the launch code in src/train/cuda/matmul.rs builds
// the views.
//
// Each 128-thread block computes a 64 x 64 tile of C. It stages 64 x 16 slices of A and B in
// shared memory as f32, and each of its 4 warps computes a 32 x 32 quarter of the tile from
// them: in TF32 or BF16 with mma.sync (fp32 accumulators; the operands are rounded when they
// are read from shared memory, so the f32 buffers and master weights stay untouched), or in
// plain fp32 FMAs for exact parity with the CPU reference. All three modes keep their
// accumulators in the mma.sync m16n8 fragment layout, so they share the load and store code.
//
// Deliberately simple staging (no cp.async pipeline, no double buffering): clear first, and
// the benchmark against cuBLAS says how much that leaves on the table.

#define BM 64
#define BN 64
#define BK 16
// Pads shared rows to 20 floats: the fragment reads of 8 rows x 4 columns then hit 32 distinct
// banks, and rows stay 16-byte aligned.
#define PAD 4
#define GEMM_THREADS 128

#define MODE_FP32 0
#define MODE_TF32 1
#define MODE_BF16 2

// Which part of A or C is known to be zero or unused, for causal attention: the kernel skips
// the work instead of multiplying zeros.
#define TRI_NONE 0
#define TRI_C_LOWER 1  // only C(m, n) with n <= m is needed: skip tiles wholly above the diagonal
#define TRI_A_LOWER 2  // A(m, k) = 0 for k > m: the k loop stops after the tile's last row
#define TRI_A_UPPER 3  // A(m, k) = 0 for k < m: the k loop starts at the tile's first row

// Mirrors `Gemm` in src/train/cuda/matmul.rs field for field (#[repr(C)]).
struct Gemm {
    const float* a;
    const float* b;
    float* c;
    const float* bias;  // null for none
    long long a_m, a_k, b_n, b_k, c_m;
    long long a_outer, a_inner, b_outer, b_inner, c_outer, c_inner;
    int m, n, k;
    int inner_count;  // batch index z = outer · inner_count + inner
    float alpha, beta;
    int tri;
};

// Loads a ROWS x BK slice of a strided operand X(row, k) into shared memory, zero-filling
// outside the matrix. Consecutive threads walk the operand's contiguous axis, so global reads
// coalesce whichever way the view is transposed.
__device__ __forceinline__ void load_tile(float (*tile)[BK + PAD], const float* x, long long s_row,
                                          long long s_k, int row0, int rows, int k0, int k_end) {
    const bool k_contiguous = s_k == 1;
    for (int i = threadIdx.x; i < BM * BK; i += GEMM_THREADS) {
        const int r = k_contiguous ? i / BK : i % BM;
        const int kk = k_contiguous ? i % BK : i / BM;
        const int row = row0 + r, k = k0 + kk;
        tile[r][kk] = row < rows && k < k_end ? x[row * s_row + k * s_k] : 0.0f;
    }
}

__device__ __forceinline__ u32 to_tf32(float x) {
    u32 r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return r;
}

// Two floats as a bf16x2 register: `lo` in the low half, the element with the lower k index.
__device__ __forceinline__ u32 to_bf16x2(float lo, float hi) {
    u32 r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

__device__ __forceinline__ void mma_tf32(float* d, const u32* a, const u32* b) {
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

__device__ __forceinline__ void mma_bf16(float* d, const u32* a, const u32* b) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// One BK-deep step of a warp's 32 x 32 quarter: acc[mi][ni] is the m16n8 fragment at rows
// wm + 16·mi, columns wn + 8·ni. In that layout lane (g = lane/4, t = lane%4) holds rows g and
// g+8, columns 2t and 2t+1: acc[..][..][2·half + j] is (row g + 8·half, column 2t + j).
template <int MODE>
__device__ __forceinline__ void warp_step(float acc[2][4][4], const float (*as)[BK + PAD],
                                          const float (*bs)[BK + PAD], int wm, int wn) {
    const int lane = threadIdx.x % WARP, g = lane / 4, t = lane % 4;
    if (MODE == MODE_FP32) {
        for (int kk = 0; kk < BK; kk++) {
            for (int mi = 0; mi < 2; mi++) {
                const float a0 = as[wm + 16 * mi + g][kk], a1 = as[wm + 16 * mi + g + 8][kk];
                for (int ni = 0; ni < 4; ni++) {
                    const float b0 = bs[wn + 8 * ni + 2 * t][kk];
                    const float b1 = bs[wn + 8 * ni + 2 * t + 1][kk];
                    acc[mi][ni][0] += a0 * b0;
                    acc[mi][ni][1] += a0 * b1;
                    acc[mi][ni][2] += a1 * b0;
                    acc[mi][ni][3] += a1 * b1;
                }
            }
        }
    } else if (MODE == MODE_TF32) {
        // m16n8k8: A fragment (rows g, g+8) x (k t, t+4); B fragment k (t, t+4) x column g.
        for (int k8 = 0; k8 < BK; k8 += 8) {
            u32 a[2][4], b[4][2];
            for (int mi = 0; mi < 2; mi++) {
                const int r = wm + 16 * mi + g;
                a[mi][0] = to_tf32(as[r][k8 + t]);
                a[mi][1] = to_tf32(as[r + 8][k8 + t]);
                a[mi][2] = to_tf32(as[r][k8 + t + 4]);
                a[mi][3] = to_tf32(as[r + 8][k8 + t + 4]);
            }
            for (int ni = 0; ni < 4; ni++) {
                const int col = wn + 8 * ni + g;
                b[ni][0] = to_tf32(bs[col][k8 + t]);
                b[ni][1] = to_tf32(bs[col][k8 + t + 4]);
            }
            for (int mi = 0; mi < 2; mi++)
                for (int ni = 0; ni < 4; ni++) mma_tf32(acc[mi][ni], a[mi], b[ni]);
        }
    } else {
        // m16n8k16: A fragment (rows g, g+8) x (k 2t..2t+1, 2t+8..2t+9), packed in pairs;
        // B fragment k (2t..2t+1, 2t+8..2t+9) x column g.
        u32 a[2][4], b[4][2];
        for (int mi = 0; mi < 2; mi++) {
            const int r = wm + 16 * mi + g;
            a[mi][0] = to_bf16x2(as[r][2 * t], as[r][2 * t + 1]);
            a[mi][1] = to_bf16x2(as[r + 8][2 * t], as[r + 8][2 * t + 1]);
            a[mi][2] = to_bf16x2(as[r][2 * t + 8], as[r][2 * t + 9]);
            a[mi][3] = to_bf16x2(as[r + 8][2 * t + 8], as[r + 8][2 * t + 9]);
        }
        for (int ni = 0; ni < 4; ni++) {
            const int col = wn + 8 * ni + g;
            b[ni][0] = to_bf16x2(bs[col][2 * t], bs[col][2 * t + 1]);
            b[ni][1] = to_bf16x2(bs[col][2 * t + 8], bs[col][2 * t + 9]);
        }
        for (int mi = 0; mi < 2; mi++)
            for (int ni = 0; ni < 4; ni++) mma_bf16(acc[mi][ni], a[mi], b[ni]);
    }
}

// Grid: (ceil(n / BN), ceil(m / BM), batches); GEMM_THREADS threads.
template <int MODE>
__device__ void gemm(const Gemm p) {
    const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
    if (p.tri == TRI_C_LOWER && n0 > m0 + BM - 1) return;
    const int outer = blockIdx.z / p.inner_count, inner = blockIdx.z % p.inner_count;
    const float* a = p.a + outer * p.a_outer + inner * p.a_inner;
    const float* b = p.b + outer * p.b_outer + inner * p.b_inner;
    float* c = p.c + outer * p.c_outer + inner * p.c_inner;

    int k_begin = 0, k_end = p.k;
    if (p.tri == TRI_A_LOWER) k_end = min(p.k, m0 + BM);
    if (p.tri == TRI_A_UPPER) k_begin = m0;

    __shared__ float as[BM][BK + PAD];
    __shared__ float bs[BN][BK + PAD];
    const int warp = threadIdx.x / WARP;
    const int wm = 32 * (warp / 2), wn = 32 * (warp % 2);
    float acc[2][4][4] = {};

    for (int k0 = k_begin; k0 < k_end; k0 += BK) {
        load_tile(as, a, p.a_m, p.a_k, m0, p.m, k0, k_end);
        load_tile(bs, b, p.b_n, p.b_k, n0, p.n, k0, k_end);
        __syncthreads();
        warp_step<MODE>(acc, as, bs, wm, wn);
        __syncthreads();
    }

    const int lane = threadIdx.x % WARP, g = lane / 4, t = lane % 4;
    for (int mi = 0; mi < 2; mi++) {
        for (int ni = 0; ni < 4; ni++) {
            for (int r = 0; r < 4; r++) {
                const int row = m0 + wm + 16 * mi + g + 8 * (r / 2);
                const int col = n0 + wn + 8 * ni + 2 * t + r % 2;
                if (row >= p.m || col >= p.n) continue;
                float* out = c + row * p.c_m + col;
                float v = p.alpha * acc[mi][ni][r];
                if (p.beta != 0.0f) v += p.beta * *out;
                if (p.bias) v += p.bias[col];
                *out = v;
            }
        }
    }
}

extern "C" __global__ void __launch_bounds__(GEMM_THREADS) gemm_fp32(const Gemm p) {
    gemm<MODE_FP32>(p);
}
extern "C" __global__ void __launch_bounds__(GEMM_THREADS) gemm_tf32(const Gemm p) {
    gemm<MODE_TF32>(p);
}
extern "C" __global__ void __launch_bounds__(GEMM_THREADS) gemm_bf16(const Gemm p) {
    gemm<MODE_BF16>(p);
}

// dbias += Σ_rows dout: column sums on 32 x COL_ROWS blocks, grid (ceil(N/32), row slices).
extern "C" __global__ void bias_backward(float* dbias, const float* dout, int rows, int N) {
    const int col = blockIdx.x * WARP + threadIdx.x;
    float sum = 0.0f;
    if (col < N) {
        for (int row = blockIdx.y * COL_ROWS + threadIdx.y; row < rows;
             row += gridDim.y * COL_ROWS) {
            sum += dout[(size_t)row * N + col];
        }
    }
    column_accumulate(dbias, col, N, sum);
}
