// The heads' pooling for scoring: each sequence's mean hidden row under each of its masks, side by side, as
// model/network.py's masked_means computes it with a batched matmul. Called right after the encoder, whose kernels
// leave the caches full of their own data, that matmul and the steps around it took about 0.3 ms a batch against
// 0.04 ms in a loop of its own (benchmarks/PROFILE.md, session 21): here they are one call. Built and loaded by
// model/fused_attention.py.
#include <cstdint>
#include <cstring>

#include "vec.h"

// hidden [batch][length][width], masks [count][batch][length] (any weights; a row's share is its weight over the
// mask's sum, or over 1 where that is below 1), out [batch][count × width].
extern "C" void stance_masked_means(const float* hidden, const float* masks, float* out, int64_t batch,
                                    int64_t length, int64_t width, int64_t count, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t b = 0; b < batch; ++b)
        for (int64_t m = 0; m < count; ++m) {
            const float* mask = masks + (m * batch + b) * length;
            float total = 0.0f;
            for (int64_t j = 0; j < length; ++j) total += mask[j];
            const float divisor = total > 1.0f ? total : 1.0f;
            float* o = out + (b * count + m) * width;
            std::memset(o, 0, width * sizeof(float));
            for (int64_t j = 0; j < length; ++j) {
                if (mask[j] == 0.0f) continue;
                const float share = mask[j] / divisor;
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
