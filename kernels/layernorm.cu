// Layer normalization over the channel axis, one warp per row: a row (C <= a few thousand)
// fits a warp's registers in a few passes, and warp shuffles reduce it without shared memory.

#define LN_EPS 1e-5f

__device__ __forceinline__ int warp_row() {
    return blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
}

extern "C" __global__ void layernorm_forward(float* out, float* mean, float* rstd,
                                             const float* inp, const float* weight,
                                             const float* bias, int rows, int C) {
    const int row = warp_row(), lane = threadIdx.x % WARP;
    if (row >= rows) return;
    const float* x = inp + (size_t)row * C;
    float* o = out + (size_t)row * C;

    float sum = 0.0f;
    for (int c = lane; c < C; c += WARP) sum += x[c];
    const float mu = warp_sum(sum) / C;
    // Two passes (mean, then squared deviations) as in the CPU reference: one-pass E[x²]-E[x]²
    // cancels catastrophically for rows with a large mean.
    float var = 0.0f;
    for (int c = lane; c < C; c += WARP) {
        const float d = x[c] - mu;
        var += d * d;
    }
    // Not rsqrtf: its 2-ulp error would show in the fp32 parity checks.
    const float rs = 1.0f / sqrtf(warp_sum(var) / C + LN_EPS);
    for (int c = lane; c < C; c += WARP) o[c] = (x[c] - mu) * rs * weight[c] + bias[c];
    if (lane == 0) {
        mean[row] = mu;
        rstd[row] = rs;
    }
}

// dinp += rstd · (g - mean(g) - n · mean(g·n)) with n the normalized input and g = dout·weight.
extern "C" __global__ void layernorm_backward_input(float* dinp, const float* dout,
                                                    const float* inp, const float* weight,
                                                    const float* mean, const float* rstd,
                                                    int rows, int C) {
    const int row = warp_row(), lane = threadIdx.x % WARP;
    if (row >= rows) return;
    const size_t at = (size_t)row * C;
    const float mu = mean[row], rs = rstd[row];
    float g_sum = 0.0f, gn_sum = 0.0f;
    for (int c = lane; c < C; c += WARP) {
        const float g = dout[at + c] * weight[c];
        g_sum += g;
        gn_sum += g * (inp[at + c] - mu) * rs;
    }
    const float g_mean = warp_sum(g_sum) / C, gn_mean = warp_sum(gn_sum) / C;
    for (int c = lane; c < C; c += WARP) {
        const float n = (inp[at + c] - mu) * rs;
        dinp[at + c] += rs * (dout[at + c] * weight[c] - g_mean - n * gn_mean);
    }
}

// dweight += Σ_rows dout·n, dbias += Σ_rows dout: column sums on 32 x COL_ROWS blocks
// (see column_accumulate), grid (ceil(C/32), row slices).
extern "C" __global__ void layernorm_backward_params(float* dweight, float* dbias,
                                                     const float* dout, const float* inp,
                                                     const float* mean, const float* rstd,
                                                     int rows, int C) {
    const int col = blockIdx.x * WARP + threadIdx.x;
    float dw = 0.0f, db = 0.0f;
    if (col < C) {
        for (int row = blockIdx.y * COL_ROWS + threadIdx.y; row < rows;
             row += gridDim.y * COL_ROWS) {
            const size_t at = (size_t)row * C + col;
            dw += dout[at] * (inp[at] - mean[row]) * rstd[row];
            db += dout[at];
        }
    }
    column_accumulate(dweight, col, C, dw);
    __syncthreads();
    column_accumulate(dbias, col, C, db);
}
