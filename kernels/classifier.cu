// Softmax cross-entropy fused with its gradient: one block per row of logits. The row is read
// twice (statistics, then dlogits) and the probabilities are never stored, so the classifier
// costs two reads and one write of the [rows, V] logits, however large V is.

extern "C" __global__ void softmax_cross_entropy(float* losses, float* dlogits,
                                                 const float* logits, const u32* targets,
                                                 int V, float grad_scale) {
    const size_t row = blockIdx.x;
    const float* x = logits + row * V;
    float* d = dlogits + row * V;
    const u32 target = targets[row];

    // An ignored target (IGNORE_INDEX in backend/mod.rs) counts for nothing. The whole block
    // takes this branch, so leaving before the reductions' barriers is safe.
    if (target == 0xffffffffu) {
        for (int i = threadIdx.x; i < V; i += blockDim.x) d[i] = 0.0f;
        if (threadIdx.x == 0) losses[row] = 0.0f;
        return;
    }

    // Online softmax statistics: each thread keeps the running max of its elements and the sum
    // of exp(x - max), rescaling the sum whenever the max grows.
    float max = -INFINITY, sum = 0.0f;
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
        const float v = x[i];
        if (v > max) {
            sum *= expf(max - v);
            max = v;
        }
        sum += expf(v - max);
    }
    const float row_max = block_max(max);
    // A thread that saw no element has max = -inf and sum = 0; expf(-inf) = 0 keeps it at 0.
    const float row_sum = block_sum(sum * expf(max - row_max));

    if (threadIdx.x == 0) losses[row] = logf(row_sum) - (x[target] - row_max);
    const float norm = grad_scale / row_sum;
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
        const float p = expf(x[i] - row_max) * norm;
        d[i] = i == (int)target ? p - grad_scale : p;
    }
}
