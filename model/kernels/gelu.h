// GELU and per-row quantisation of the int8 feed-forward layer's middle, shared by the CPU kernels that end in it
// (gelu_codes.cpp after oneDNN's or torch's GEMM, amx_linear.cpp after its own): dequantise a row of the
// intermediate layer's int8 products (times the row's scale, plus the row's offset times each column's weight sum,
// plus the bias), GELU, and quantise the result for the output layer with the row's own scale and offset, over the
// range [GELU_FLOOR, max(0, largest pre-activation)] (model/quant.py: gelu_range). Inductor's kernel for the same
// step spent half its time in its erf. With AVX-512 GELU comes from a cubic spline of erf (vgelu below), elsewhere
// from the same formula as ATen's erf. vgelu gives twice GELU, x + |x| erf(|x| / sqrt 2), whose halving costs
// nothing in the quantising's multiply-add.
#pragma once
#include <cmath>
#include <cstdint>

#include "vec.h"

typedef uint8_t vb __attribute__((vector_size(W)));

constexpr float GELU_FLOOR = -0.17f;

// |x|, by clearing the sign bit.
static inline vf vabs(vf x) {
    vi bits;
    __builtin_memcpy(&bits, &x, sizeof bits);
    bits &= 0x7fffffff;
    __builtin_memcpy(&x, &bits, sizeof x);
    return x;
}

#if defined(__AVX512F__) && defined(__AVX512DQ__)
// GELU(x) = x/2 + |x|/2 E(|x|) with E(a) = erf(a / sqrt 2), and E a cubic on each of SEGMENTS equal pieces of
// [0, TOP] (Hermite: E and E' at both ends of each piece); from TOP on, E(TOP) = 1 - 4e-8. GELU is within 1.1e-6 of
// the exact one (ATen's erf formula, below, within 1.5e-7). A lookup in 32-entry tables is one permute per
// coefficient, so the AVX-512 build's loop over 16 values was 34 instructions where the reciprocal and exp of
// ATen's formula made it 51 (objdump), and the kernel took 0.198 s of a 2,000-pair pass where it took 0.342
// (benchmarks/PROFILE.md, session 17). The piece's own coordinate from AVX-512's vreduceps, and codes from one
// multiply-add and a saturating narrowing (store_codes), took the GELU kernel to 0.93x the time (session 19); twice
// GELU, with |x| clamped by one vrangeps, two instructions fewer, and the dequantising one fewer (session 20).
constexpr int SEGMENTS = 32;
constexpr double TOP = 5.5;

// The four coefficients of each piece, in the piece's own coordinate u in [0, 1), worked out in double when the
// library loads.
struct Spline {
    alignas(64) float c[4][SEGMENTS];
    Spline() {
        const double h = TOP / SEGMENTS, slope = 0.7978845608028654;  // sqrt(2 / pi)
        auto e = [](double a) { return std::erf(a / std::sqrt(2.0)); };
        auto de = [&](double a) { return h * slope * std::exp(-a * a / 2); };  // dE/du
        for (int i = 0; i < SEGMENTS; ++i) {
            const double f0 = e(i * h), f1 = e((i + 1) * h), d0 = de(i * h), d1 = de((i + 1) * h);
            c[0][i] = float(f0);
            c[1][i] = float(d0);
            c[2][i] = float(3 * (f1 - f0) - 2 * d0 - d1);
            c[3][i] = float(2 * (f0 - f1) + d0 + d1);
        }
    }
};
static const Spline spline;

// The tables in registers, loaded once per thread: each coefficient's 32 entries in two.
struct SplineRegisters {
    __m512 low[4], high[4];
    SplineRegisters() {
        for (int k = 0; k < 4; ++k) {
            low[k] = _mm512_load_ps(spline.c[k]);
            high[k] = _mm512_load_ps(spline.c[k] + 16);
        }
    }
};

static inline vf vgelu(vf x, const SplineRegisters& t) {
    // min(|x| SEGMENTS / TOP, SEGMENTS - 2e-6) in one vrangeps (the smaller magnitude, sign cleared): below
    // SEGMENTS, so that the piece is at most the last, as the permutes read an index's low 5 bits only.
    const __m512 f = _mm512_range_ps(_mm512_mul_ps((__m512)x, _mm512_set1_ps(float(SEGMENTS / TOP))),
                                     _mm512_set1_ps(SEGMENTS - 2e-6f), 0x0a);
    const __m512i piece = _mm512_cvttps_epi32(f);
    const __m512 u = _mm512_reduce_ps(f, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);  // f - floor(f)
    __m512 e = _mm512_permutex2var_ps(t.low[3], piece, t.high[3]);
    for (int k = 2; k >= 0; --k) e = _mm512_fmadd_ps(e, u, _mm512_permutex2var_ps(t.low[k], piece, t.high[k]));
    return (vf)_mm512_fmadd_ps(_mm512_abs_ps((__m512)x), e, (__m512)x);
}

// The codes of the row's whole vectors of twice GELU into `codes` (codes16); returns how many were written.
static inline int64_t store_codes(const vf* twice, int64_t n, float middle, float inverse, int zero_point,
                                  uint8_t* codes) {
    const __m512 scale = _mm512_set1_ps(inverse / 2), shift = _mm512_set1_ps(zero_point - middle * inverse);
    int64_t c = 0;
    for (; c + 4 * W <= n; c += 4 * W)
        _mm512_storeu_si512(codes + c, codes64((__m512)twice[c / W], (__m512)twice[c / W + 1], (__m512)twice[c / W + 2],
                                               (__m512)twice[c / W + 3], scale, shift, zero_point));
    for (; c + W <= n; c += W)
        _mm_storeu_si128((__m128i*)(codes + c), codes16((__m512)twice[c / W], scale, shift, zero_point));
    return c;
}
#else
struct SplineRegisters {};

// Adding and taking away 1.5 * 2^23 rounds a float of magnitude below 2^22 to the nearest integer, ties to even,
// as torch.round does.
static inline vi round_to_int(vf q) {
    constexpr float ROUNDER = 12582912.0f;
    return __builtin_convertvector((q + splat(ROUNDER)) - splat(ROUNDER), vi);
}

// 0.5 x (1 + erf(x / sqrt 2)), with erf(|z|) = 1 - t (a1 + t (a2 + ...)) e^(-z^2), t = 1 / (1 + p |z|) (Abramowitz
// and Stegun 7.1.26, as ATen's vectorised erf); the error of erf is below 1.5e-7.
static inline vf vgelu(vf x, const SplineRegisters&) {
    const vf a = vabs(x * splat(0.7071067811865476f));
    const vf t = splat(1.0f) / (a * splat(0.3275911f) + splat(1.0f));
    vf p = splat(1.061405429f);
    p = p * t + splat(-1.453152027f);
    p = p * t + splat(1.421413741f);
    p = p * t + splat(-0.284496736f);
    p = p * t + splat(0.254829592f);
    const vf erf_abs = splat(1.0f) - p * t * vexp(-(a * a));
    return x + vabs(x) * erf_abs;
}

// The codes of the row's whole vectors of twice GELU into `codes`; returns how many were written.
static inline int64_t store_codes(const vf* twice, int64_t n, float middle, float inverse, int zero_point,
                                  uint8_t* codes) {
    int64_t c = 0;
    for (; c + W <= n; c += W) {
        vi q = round_to_int((twice[c / W] - splat(2 * middle)) * splat(inverse / 2));
        q = q < -INT8_MAX_I ? -INT8_MAX_I : q;
        q = q > INT8_MAX_I ? INT8_MAX_I : q;
        const vb bytes = __builtin_convertvector(q + zero_point, vb);
        __builtin_memcpy(codes + c, &bytes, sizeof bytes);
    }
    return c;
}
#endif

// One row: raw holds its n products, float32 (already times each column's weight scale) or, with column_scale,
// int32; codes gets n bytes, the int8 code plus zero_point (0 for int8 codes, 128 for uint8 ones), and out_scale and
// out_offset the row's scale and offset. gelu (n / W vectors, of twice GELU) and tail (n % W floats) are the
// caller's scratch.
static inline void gelu_codes_row(const void* raw, const float* column_scale, float scale, float offset,
                                  const float* weight_sum, const float* bias, int64_t n, int zero_point,
                                  const SplineRegisters& tables, vf* gelu, float* tail, uint8_t* codes,
                                  float* out_scale, float* out_offset) {
    auto pre = [&](int64_t c) {
        const float product = column_scale ? float(static_cast<const int32_t*>(raw)[c]) * column_scale[c]
                                           : static_cast<const float*>(raw)[c];
        return product * scale + (offset * weight_sum[c] + bias[c]);
    };
    vf high_v = splat(0.0f);
    int64_t c = 0;
    for (; c + W <= n; c += W) {
        vf y;
        if (column_scale) {
            vi products;
            __builtin_memcpy(&products, static_cast<const int32_t*>(raw) + c, sizeof products);
            y = __builtin_convertvector(products, vf) * loadv(column_scale + c);
        } else {
            y = loadv(static_cast<const float*>(raw) + c);
        }
        y = y * splat(scale) + (splat(offset) * loadv(weight_sum + c) + loadv(bias + c));
        high_v = y > high_v ? y : high_v;
        gelu[c / W] = vgelu(y, tables);
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
    c = store_codes(gelu, n, middle, inverse, zero_point, codes);
    for (int64_t k = c; k < n; ++k) {
        const float q = std::fmin(std::fmax(std::nearbyint((tail[k - c] - middle) * inverse), -INT8_MAX_F), INT8_MAX_F);
        codes[k] = static_cast<uint8_t>(static_cast<int32_t>(q) + zero_point);
    }
    *out_scale = half / INT8_MAX_F;
    *out_offset = middle;
}
