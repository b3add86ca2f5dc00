// The softmax half of causal self-attention. The products around it (q·kᵀ, att·v and their
// gradients) run on the matmul kernels with strided, batched views; see
// src/train/cuda/attention.rs. This is the softmax-plus-matmul formulation, which the Backend
// trait's saved `att` tensor requires; a fused flash-attention kernel would not store it.

// Row r = (b, h, i) of `att` holds the scaled scores of query i; keys 0..=i stay, the future is
// masked. One warp per row, in place: att[r] = softmax(scores[r, 0..=i]), zeros after.
extern "C" __global__ void causal_softmax_forward(float* att, int T, size_t rows) {
    const size_t row = (size_t)blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
    const int lane = threadIdx.x % WARP;
    if (row >= rows) return;
    const int live = row % T + 1;
    float* a = att + row * T;

    float max = -INFINITY;
    for (int j = lane; j < live; j += WARP) max = fmaxf(max, a[j]);
    max = warp_max(max);
    float sum = 0.0f;
    for (int j = lane; j < live; j += WARP) {
        const float e = expf(a[j] - max);
        a[j] = e;
        sum += e;
    }
    const float inv = 1.0f / warp_sum(sum);
    for (int j = lane; j < T; j += WARP) a[j] = j < live ? a[j] * inv : 0.0f;
}

// Through the softmax, in place on the probability gradient `datt`:
// dscores = att ⊙ (datt - Σ_j att·datt) · scale, with the 1/sqrt(hs) of the forward's scores
// folded in, and zeros above the diagonal (the masked scores have no gradient).
extern "C" __global__ void causal_softmax_backward(float* datt, const float* att, int T,
                                                   size_t rows, float scale) {
    const size_t row = (size_t)blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
    const int lane = threadIdx.x % WARP;
    if (row >= rows) return;
    const int live = row % T + 1;
    float* d = datt + row * T;
    const float* a = att + row * T;

    float dot = 0.0f;
    for (int j = lane; j < live; j += WARP) dot += a[j] * d[j];
    dot = warp_sum(dot);
    for (int j = lane; j < T; j += WARP) d[j] = j < live ? a[j] * (d[j] - dot) * scale : 0.0f;
}
