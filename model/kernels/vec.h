// Vector helpers shared by the CPU kernels (attention.cpp, and gelu.h for gelu_codes.cpp and amx_linear.cpp): GCC/Clang
// vector types at the width -march=native gives.
#pragma once
#include <cstdint>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

// W lanes of the CPU's widest vector registers: a wider generic vector is split into several and passed through
// memory, which made an AVX2 build 13x slower.
#if defined(__AVX512F__)
constexpr int W = 16;
#elif defined(__AVX__)
constexpr int W = 8;
#else
constexpr int W = 4;
#endif
typedef float vf __attribute__((vector_size(4 * W)));
typedef int32_t vi __attribute__((vector_size(4 * W)));
typedef float vh __attribute__((vector_size(2 * W)));

// The int8 codes' range, [-127, 127], as model/quant.py's INT8_MAX.
constexpr float INT8_MAX_F = 127.0f;
constexpr int INT8_MAX_I = 127;

#if defined(__AVX512F__)
// The int8 codes of 16 values plus zero_point, round((x - middle) x inverse) + zero_point, as model/quant.py's
// Int8Linear quantises, with shift = zero_point - middle x inverse: one multiply-add, then a floor at zero_point -
// 127 and a saturating narrowing. For values within the range their scale was made from, so that nothing passes
// zero_point + 127 but by rounding.
static inline __m128i codes16(__m512 x, __m512 inverse, __m512 shift, int zero_point) {
    const __m512i q = _mm512_max_epi32(_mm512_cvtps_epi32(_mm512_fmadd_ps(x, inverse, shift)),
                                       _mm512_set1_epi32(zero_point - INT8_MAX_I));
    return zero_point ? _mm512_cvtusepi32_epi8(q) : _mm512_cvtsepi32_epi8(q);
}

// The codes of 64 values, x0's 16 first, as four codes16 give them, in one vector: two packs to 16 bits with
// signed saturation (each code's value fits), one to 8 bits, and a permute back into order, where codes16's
// narrowing takes two uops of the shuffle port for each 16 values.
static inline __m512i codes64(__m512 x0, __m512 x1, __m512 x2, __m512 x3, __m512 inverse, __m512 shift,
                              int zero_point) {
    const __m512 x[4] = {x0, x1, x2, x3};
    __m512i q[4];
    for (int j = 0; j < 4; ++j)
        q[j] = _mm512_max_epi32(_mm512_cvtps_epi32(_mm512_fmadd_ps(x[j], inverse, shift)),
                                _mm512_set1_epi32(zero_point - INT8_MAX_I));
    const __m512i low = _mm512_packs_epi32(q[0], q[1]), high = _mm512_packs_epi32(q[2], q[3]);
    // Each 128-bit lane i now holds 4 codes of each of q[0..3], in that order: put lane i's group of q[j] at 4j + i.
    const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    return _mm512_permutexvar_epi32(order, zero_point ? _mm512_packus_epi16(low, high) : _mm512_packs_epi16(low, high));
}
#endif

// x - 0 is x for every x, so this compiles to a bare broadcast (folded into the FMAs that use it); 0 + x is not (-0),
// which left a scalar add before every broadcast and cost 10% of the kernel's time.
static inline vf splat(float x) { return x - vf{}; }

// e^(x - n ln 2) for an integer-valued n near x / ln 2 (the reduced argument within ln 2 / 2 of 0): what vexp and
// its AVX-512 variants scale by 2^n.
static inline vf exp_reduced(vf x, vf n) {
    const vf r = x - n * splat(0.693359375f) + n * splat(2.12194440e-4f);
    vf p = splat(1.9875691500e-4f);
    p = p * r + splat(1.3981999507e-3f);
    p = p * r + splat(8.3334519073e-3f);
    p = p * r + splat(4.1665795894e-2f);
    p = p * r + splat(1.6666665459e-1f);
    p = p * r + splat(5.0000001201e-1f);
    return p * r * r + r + splat(1.0f);
}

// e^x, with a relative error of about 2e-7; 0 below -87.
static inline vf vexp(vf x) {
    const vi underflow = x < splat(-87.0f);
    x = x < splat(-87.0f) ? splat(-87.0f) : x;
    x = x > splat(88.0f) ? splat(88.0f) : x;
    vf n = x * splat(1.44269504088896341f) + splat(12582912.0f);
    n = n - splat(12582912.0f);
    const vf p = exp_reduced(x, n);
    vi bits = (__builtin_convertvector(n, vi) + 127) << 23;
    vf scale;
    __builtin_memcpy(&scale, &bits, sizeof scale);
    vf out = p * scale;
    vi outbits;
    __builtin_memcpy(&outbits, &out, sizeof out);
    outbits &= ~underflow;
    __builtin_memcpy(&out, &outbits, sizeof out);
    return out;
}

// e^x for x <= 0; 0 below -87, as from vexp. With AVX-512, exp_reduced with n rounded and 2^n applied by AVX-512's
// own instructions (roundscale, scalef), which took session 16's GELU kernel from 1.23 to 0.99 ms on 1,480 rows of
// 1,536 (ad hoc, benchmarks/PROFILE.md); else vexp. Below -87 the result is set to 0 rather than computed: results
// under float's smallest normal (from about -87.3 down) take the CPU's slow path, which made attention, with its
// masked keys, 2.2x slower.
static inline vf exp_nonpositive(vf x) {
#if defined(__AVX512F__)
    const vi underflow = x < splat(-87.0f);
    x = underflow ? splat(-87.0f) : x;
    const __m512 n = _mm512_roundscale_ps((__m512)(x * splat(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const vf e = (vf)_mm512_scalef_ps((__m512)exp_reduced(x, (vf)n), n);
    return underflow ? splat(0.0f) : e;
#else
    return vexp(x);
#endif
}

// Halves of a vector, for reductions in log steps rather than lane by lane.
static inline void halves(vf x, vh& lo, vh& hi) {
    __builtin_memcpy(&lo, &x, sizeof lo);
    __builtin_memcpy(&hi, reinterpret_cast<const char*>(&x) + sizeof lo, sizeof hi);
}

// With AVX-512, in log steps of shuffles (the compiler's reduce); lane by lane, each lane's extraction was a shuffle
// of its own, and the two with the division after the sum took about a sixth of the attention kernel's time in perf.
static inline float hmax(vf x) {
#if defined(__AVX512F__)
    return _mm512_reduce_max_ps((__m512)x);
#else
    vh lo, hi;
    halves(x, lo, hi);
    const vh m = lo > hi ? lo : hi;
    float out = m[0];
    for (int i = 1; i < W / 2; ++i) out = m[i] > out ? m[i] : out;
    return out;
#endif
}

static inline float hsum(vf x) {
#if defined(__AVX512F__)
    return _mm512_reduce_add_ps((__m512)x);
#else
    vh lo, hi;
    halves(x, lo, hi);
    const vh t = lo + hi;
    float out = t[0];
    for (int i = 1; i < W / 2; ++i) out += t[i];
    return out;
#endif
}

static inline vf loadv(const float* p) {
    vf x;
    __builtin_memcpy(&x, p, sizeof x);
    return x;
}

static inline void storev(float* p, vf x) { __builtin_memcpy(p, &x, sizeof x); }

#if defined(__AVX512F__)
// The 16 x 16 floats (or other 32-bit words) of `rows` transposed into `cols`, in registers: 64 shuffles.
static inline void transpose16(const __m512 rows[16], __m512 cols[16]) {
    __m512 t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(rows[i], rows[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(rows[i], rows[i + 1]);
    }
    // u[g + k], in its 128-bit lane L: column 4L + k of rows g to g + 3.
    for (int g = 0; g < 16; g += 4) {
        u[g] = (__m512)_mm512_unpacklo_pd((__m512d)t[g], (__m512d)t[g + 2]);
        u[g + 1] = (__m512)_mm512_unpackhi_pd((__m512d)t[g], (__m512d)t[g + 2]);
        u[g + 2] = (__m512)_mm512_unpacklo_pd((__m512d)t[g + 1], (__m512d)t[g + 3]);
        u[g + 3] = (__m512)_mm512_unpackhi_pd((__m512d)t[g + 1], (__m512d)t[g + 3]);
    }
    for (int k = 0; k < 4; ++k) {
        const __m512 even_low = _mm512_shuffle_f32x4(u[k], u[4 + k], 0x88), odd_low = _mm512_shuffle_f32x4(u[k], u[4 + k], 0xdd);
        const __m512 even_high = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0x88);
        const __m512 odd_high = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0xdd);
        cols[k] = _mm512_shuffle_f32x4(even_low, even_high, 0x88);
        cols[4 + k] = _mm512_shuffle_f32x4(odd_low, odd_high, 0x88);
        cols[8 + k] = _mm512_shuffle_f32x4(even_low, even_high, 0xdd);
        cols[12 + k] = _mm512_shuffle_f32x4(odd_low, odd_high, 0xdd);
    }
}
#endif
