// Prepended to every kernel file before NVRTC compiles it, so no file needs an include path:
// NVRTC ships without the CUDA toolkit headers, and the kernels need none of them.
//
// Conventions shared by all kernels: tensors are dense row-major f32 (see src/train/backend.rs),
// sizes that can exceed 2^31 elements are size_t, and backward kernels accumulate (+=) into
// gradients, as the Backend trait requires.

typedef unsigned int u32;
typedef unsigned long long u64;

// math.h is not there to define it.
#define INFINITY __int_as_float(0x7f800000)

#define WARP 32
#define FULL_MASK 0xffffffffu

// Grid-stride loop over n elements: any grid size covers any n.
#define FOR_EACH_INDEX(i, n) \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
         i += (size_t)gridDim.x * blockDim.x)

struct Sum {
    template <typename T>
    __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};
struct Max {
    __device__ __forceinline__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

// Reduces over a warp with butterfly shuffles; every lane gets the result.
template <typename T, typename Op>
__device__ __forceinline__ T warp_reduce(T x, Op op) {
    for (int offset = WARP / 2; offset > 0; offset >>= 1) {
        x = op(x, __shfl_xor_sync(FULL_MASK, x, offset));
    }
    return x;
}

// Reduces over a 1-D block (blockDim.x a multiple of 32); every thread gets the result. The first
// barrier lets a previous call's readers finish with `partial` before it is overwritten.
template <typename T, typename Op>
__device__ T block_reduce(T x, T identity, Op op) {
    __shared__ T partial[32];
    const int lane = threadIdx.x % WARP, warp = threadIdx.x / WARP;
    x = warp_reduce(x, op);
    __syncthreads();
    if (lane == 0) partial[warp] = x;
    __syncthreads();
    x = lane < blockDim.x / WARP ? partial[lane] : identity;
    return warp_reduce(x, op);
}

template <typename T>
__device__ __forceinline__ T warp_sum(T x) { return warp_reduce(x, Sum()); }
__device__ __forceinline__ float warp_max(float x) { return warp_reduce(x, Max()); }
template <typename T>
__device__ __forceinline__ T block_sum(T x) { return block_reduce(x, (T)0, Sum()); }
__device__ __forceinline__ float block_max(float x) { return block_reduce(x, -INFINITY, Max()); }

// Column reductions (a bias gradient, LayerNorm's parameter gradients) run on 32 x COL_ROWS
// blocks: threadIdx.x picks a column, so a warp reads 32 adjacent floats of a row, and
// threadIdx.y strides over rows. This adds the COL_ROWS partial sums of a column and
// atomically accumulates them into dst[col]; atomics because several blocks share a column.
#define COL_ROWS 8
__device__ void column_accumulate(float* dst, int col, int cols, float partial) {
    __shared__ float sums[COL_ROWS][WARP + 1];
    sums[threadIdx.y][threadIdx.x] = partial;
    __syncthreads();
    if (threadIdx.y == 0 && col < cols) {
        float total = 0.0f;
        for (int r = 0; r < COL_ROWS; r++) total += sums[r][threadIdx.x];
        atomicAdd(&dst[col], total);
    }
}
