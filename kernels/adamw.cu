// Fused AdamW: one pass reads the gradient and both moments and updates the f32 master weights
// in place (the mixed-precision matmuls round copies of them, never the weights themselves).

extern "C" __global__ void adamw(float* param, const float* grad, float* m, float* v, float lr,
                                 float beta1, float beta2, float eps, float weight_decay,
                                 float bias_correction1, float bias_correction2, size_t n) {
    FOR_EACH_INDEX(i, n) {
        const float g = grad[i];
        const float mi = beta1 * m[i] + (1.0f - beta1) * g;
        const float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
        m[i] = mi;
        v[i] = vi;
        const float m_hat = mi / bias_correction1, v_hat = vi / bias_correction2;
        const float p = param[i];
        param[i] = p - lr * (m_hat / (sqrtf(v_hat) + eps) + weight_decay * p);
    }
}
