// GELU, tanh approximation: 0.5·x·(1 + tanh(sqrt(2/π)·(x + 0.044715·x³))).

#define GELU_SCALE 0.7978845608f  // sqrt(2 / π)
#define GELU_CUBIC 0.044715f

extern "C" __global__ void gelu_forward(float* out, const float* inp, size_t n) {
    FOR_EACH_INDEX(i, n) {
        const float x = inp[i];
        const float u = GELU_SCALE * (x + GELU_CUBIC * x * x * x);
        out[i] = 0.5f * x * (1.0f + tanhf(u));
    }
}

extern "C" __global__ void gelu_backward(float* dinp, const float* inp, const float* dout,
                                         size_t n) {
    FOR_EACH_INDEX(i, n) {
        const float x = inp[i];
        const float u = GELU_SCALE * (x + GELU_CUBIC * x * x * x);
        const float th = tanhf(u);
        const float du = GELU_SCALE * (1.0f + 3.0f * GELU_CUBIC * x * x);
        const float grad = 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * du;
        dinp[i] += grad * dout[i];
    }
}
