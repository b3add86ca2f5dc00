// Token plus position embedding.

// out[b,t,:] = wte[ids[b,t],:] + wpe[t,:]; one thread per output element.
extern "C" __global__ void embedding_forward(float* out, const u32* ids, const float* wte,
                                             const float* wpe, int T, int C, size_t n) {
    FOR_EACH_INDEX(i, n) {
        const size_t row = i / C;
        const int c = i % C, t = row % T;
        out[i] = wte[(size_t)ids[row] * C + c] + wpe[(size_t)t * C + c];
    }
}

// Scatters dout into the rows the forward read. Rows that share a token (or every sequence's
// position t) add into the same weights, hence the atomics; the sum order is unspecified, so
// the result matches the CPU's in-order sum to f32 rounding only.
extern "C" __global__ void embedding_backward(float* dwte, float* dwpe, const float* dout,
                                              const u32* ids, int T, int C, size_t n) {
    FOR_EACH_INDEX(i, n) {
        const size_t row = i / C;
        const int c = i % C, t = row % T;
        const float g = dout[i];
        atomicAdd(&dwte[(size_t)ids[row] * C + c], g);
        atomicAdd(&dwpe[(size_t)t * C + c], g);
    }
}
