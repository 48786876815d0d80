// The feed-forward layer's middle on the CPU, in one pass per row: the intermediate layer's int8 products
// dequantised (times the row's scale, plus the row's offset times each column's weight sum, plus the bias), GELU,
// and the result quantised for the output layer with the row's own scale and offset, over the range
// [GELU_FLOOR, max(0, largest pre-activation)] (model/quant.py: gelu_range). Inductor's kernel for the same step
// spent half its time in its erf; this one evaluates the same formula (Abramowitz-Stegun 7.1.26, as ATen's
// vectorised erf) with the exp of vec.h. Built and loaded by model/fused_attention.py.
#include <cmath>
#include <cstdint>
#include <vector>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "vec.h"

typedef uint8_t vb __attribute__((vector_size(W)));

constexpr float GELU_FLOOR = -0.17f;
constexpr float INT8_MAX_F = 127.0f;
// Adding and taking away 1.5 * 2^23 rounds a float of magnitude below 2^22 to the nearest integer, ties to even,
// as torch.round does.
constexpr float ROUNDER = 12582912.0f;

// |x|, by clearing the sign bit.
static inline vf vabs(vf x) {
    vi bits;
    __builtin_memcpy(&bits, &x, sizeof bits);
    bits &= 0x7fffffff;
    __builtin_memcpy(&x, &bits, sizeof x);
    return x;
}

// e^x for x <= 0. With AVX-512: vec.h's polynomial (exp_reduced), with n rounded and 2^n applied by AVX-512's own
// instructions (roundscale, scalef); else vexp. With the sign-bit |x| above, it took the kernel from 1.23 to 0.99 ms
// on 1,480 rows of 1,536 (ad hoc, benchmarks/PROFILE.md).
static inline vf exp_nonpositive(vf x) {
#if defined(__AVX512F__)
    x = x < splat(-87.0f) ? splat(-87.0f) : x;
    const __m512 n = _mm512_roundscale_ps((__m512)(x * splat(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    return (vf)_mm512_scalef_ps((__m512)exp_reduced(x, (vf)n), n);
#else
    return vexp(x);
#endif
}

// 1 / d for d >= 1: with AVX-512, its 14-bit estimate and one Newton step (a relative error near float's own),
// which took the kernel from 1.35 to 1.23 ms against a division (ad hoc, benchmarks/PROFILE.md).
static inline vf reciprocal(vf d) {
#if defined(__AVX512F__)
    const vf r = (vf)_mm512_rcp14_ps((__m512)d);
    return r * (splat(2.0f) - d * r);
#else
    return splat(1.0f) / d;
#endif
}

// 0.5 x (1 + erf(x / sqrt 2)), with erf(|z|) = 1 - t (a1 + t (a2 + ...)) e^(-z^2), t = 1 / (1 + p |z|); the error of
// erf is below 1.5e-7.
static inline vf vgelu(vf x) {
    const vf a = vabs(x * splat(0.7071067811865476f));
    const vf t = reciprocal(a * splat(0.3275911f) + splat(1.0f));
    vf p = splat(1.061405429f);
    p = p * t + splat(-1.453152027f);
    p = p * t + splat(1.421413741f);
    p = p * t + splat(-0.284496736f);
    p = p * t + splat(0.254829592f);
    const vf erf_abs = splat(1.0f) - p * t * exp_nonpositive(-(a * a));
    const vf half_x = x * splat(0.5f);
    return half_x + vabs(half_x) * erf_abs;
}

// raw: the GEMM's [rows, n] products, float32 (already times each column's weight scale) or, with column_scale,
// int32; codes: [rows, n] bytes, the int8 code plus zero_point (0 for int8 codes, 128 for uint8 ones).
extern "C" void stance_gelu_codes(const void* raw, const float* column_scale, const float* row_scale,
                                  const float* row_offset, const float* weight_sum, const float* bias, uint8_t* codes,
                                  float* out_scale, float* out_offset, int64_t rows, int64_t n, int zero_point,
                                  int threads) {
#pragma omp parallel num_threads(threads)
    {
        std::vector<vf> gelu(n / W);
        std::vector<float> tail(n % W);
#pragma omp for schedule(static)
        for (int64_t i = 0; i < rows; ++i) {
            const float scale = row_scale[i], offset = row_offset[i];
            auto pre = [&](int64_t c) {
                const float product = column_scale ? float(static_cast<const int32_t*>(raw)[i * n + c]) * scale * column_scale[c]
                                                   : static_cast<const float*>(raw)[i * n + c] * scale;
                return product + offset * weight_sum[c] + bias[c];
            };
            vf high_v = splat(0.0f);
            int64_t c = 0;
            for (; c + W <= n; c += W) {
                vf y;
                if (column_scale) {
                    vi products;
                    __builtin_memcpy(&products, static_cast<const int32_t*>(raw) + i * n + c, sizeof products);
                    y = __builtin_convertvector(products, vf) * splat(scale) * loadv(column_scale + c);
                } else {
                    y = loadv(static_cast<const float*>(raw) + i * n + c) * splat(scale);
                }
                y = y + splat(offset) * loadv(weight_sum + c) + loadv(bias + c);
                high_v = y > high_v ? y : high_v;
                gelu[c / W] = vgelu(y);
            }
            float high = hmax(high_v);
            for (int64_t k = c; k < n; ++k) {
                const float y = pre(k);
                high = y > high ? y : high;
                tail[k - c] = 0.5f * y * (1.0f + std::erf(y * 0.7071067811865476f));
            }
            const float middle = (high + GELU_FLOOR) / 2;
            const float half = std::fmax((high - GELU_FLOOR) / 2, 1.1754943508222875e-38f);
            const float inverse = INT8_MAX_F / half;
            for (c = 0; c + W <= n; c += W) {
                vf q = (gelu[c / W] - splat(middle)) * splat(inverse);
                q = (q + splat(ROUNDER)) - splat(ROUNDER);
                q = q < splat(-INT8_MAX_F) ? splat(-INT8_MAX_F) : q;
                q = q > splat(INT8_MAX_F) ? splat(INT8_MAX_F) : q;
                const vb bytes = __builtin_convertvector(__builtin_convertvector(q, vi) + zero_point, vb);
                __builtin_memcpy(codes + i * n + c, &bytes, sizeof bytes);
            }
            for (int64_t k = c; k < n; ++k) {
                const float q = std::fmin(std::fmax(std::nearbyint((tail[k - c] - middle) * inverse), -INT8_MAX_F), INT8_MAX_F);
                codes[i * n + k] = static_cast<uint8_t>(static_cast<int32_t>(q) + zero_point);
            }
            out_scale[i] = half / INT8_MAX_F;
            out_offset[i] = middle;
        }
    }
}
