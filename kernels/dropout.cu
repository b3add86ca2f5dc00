// Inverted dropout with a counter-based RNG: element i's draw is a pure function of (key, i),
// so backward regenerates the mask instead of storing it and no thread order matters. The hash
// and the comparison are integer-exact copies of counter_hash and dropout_keep in
// src/train/backend.rs; the masks match the CPU backend bit for bit.

#define GOLDEN_GAMMA 0x9e3779b97f4a7c15ull

// SplitMix64's output function.
__device__ __forceinline__ u64 mix64(u64 z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

__device__ __forceinline__ u64 counter_hash(u64 key, u64 index) {
    return mix64(key + (index + 1) * GOLDEN_GAMMA);
}

// out = keep ? inp·scale : 0, or with `accumulate` out += that (the backward pass). `threshold`
// and `scale` come from the host (dropout_threshold, and 1/(1-p) in f32) so every backend uses
// the same values. __fmul_rn keeps the product from fusing into an FMA with the add, which would
// round differently from the CPU.
extern "C" __global__ void dropout(float* out, const float* inp, u64 key, u32 threshold,
                                   float scale, int accumulate, size_t n) {
    FOR_EACH_INDEX(i, n) {
        const bool keep = (u32)(counter_hash(key, i) >> 32) >= threshold;
        const float kept = keep ? __fmul_rn(inp[i], scale) : 0.0f;
        out[i] = accumulate ? out[i] + kept : kept;
    }
}
