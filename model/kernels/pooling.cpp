// The heads' pooling for scoring: each sequence's mean hidden row under each of its masks, side by side, as
// model/network.py's masked_means computes it with a batched matmul. Called right after the encoder, whose kernels
// leave the caches full of their own data, that matmul and the steps around it took 0.39 ms a batch against
// 0.04 ms in a loop of its own (benchmarks/PROFILE.md, session 21): here they are one call. Built and loaded by
// model/fused_attention.py.
#include <cstdint>
#include <cstring>

#include "vec.h"

// The weight of row j of sequence b under a mask [batch][length] of int64 (`wide`) or float32 values.
static inline float weight(const void* mask, bool wide, int64_t at) {
    return wide ? float(static_cast<const int64_t*>(mask)[at]) : static_cast<const float*>(mask)[at];
}

// hidden [batch][length][width]; masks: `count` (at most 3) masks [batch][length] of any weights, mask i int64 where
// bit i of `wide` is set, else float32 (the attention mask and the marks as collate makes them, read in place); a
// row's share is its weight over the mask's sum, or over 1 where that is below 1; out [batch][count × width].
extern "C" void stance_masked_means(const float* hidden, const void* first, const void* second, const void* third,
                                    int wide, float* out, int64_t batch, int64_t length, int64_t width,
                                    int64_t count, int threads) {
    const void* masks[3] = {first, second, third};
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t b = 0; b < batch; ++b)
        for (int64_t m = 0; m < count; ++m) {
            const bool is_wide = wide >> m & 1;
            float total = 0.0f;
            for (int64_t j = 0; j < length; ++j) total += weight(masks[m], is_wide, b * length + j);
            const float divisor = total > 1.0f ? total : 1.0f;
            float* o = out + (b * count + m) * width;
            std::memset(o, 0, width * sizeof(float));
            for (int64_t j = 0; j < length; ++j) {
                const float w = weight(masks[m], is_wide, b * length + j);
                if (w == 0.0f) continue;
                const float share = w / divisor;
                const float* row = hidden + (b * length + j) * width;
                int64_t c = 0;
                for (; c + W <= width; c += W) {
                    vf acc, x;
                    __builtin_memcpy(&acc, o + c, sizeof acc);
                    __builtin_memcpy(&x, row + c, sizeof x);
                    acc += splat(share) * x;
                    __builtin_memcpy(o + c, &acc, sizeof acc);
                }
                for (; c < width; ++c) o[c] += share * row[c];
            }
        }
}
