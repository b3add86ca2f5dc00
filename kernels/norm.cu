// Gradient norms and clipping: sums of squares for the global norm, and in-place scaling.

// out[0] += Σ x², accumulated in f64 like the CPU reference: the squares of a large tensor's
// small gradients would lose digits in an f32 sum. One atomic per block.
extern "C" __global__ void sum_squares(double* out, const float* x, size_t n) {
    double sum = 0.0;
    FOR_EACH_INDEX(i, n) {
        const double v = x[i];
        sum += v * v;
    }
    sum = block_sum(sum);
    if (threadIdx.x == 0) atomicAdd(out, sum);
}

extern "C" __global__ void scale(float* x, float factor, size_t n) {
    FOR_EACH_INDEX(i, n) x[i] *= factor;
}
