// AMX's tile steps for the AMX kernels (amx.h, amx_linear.cpp, amx_attention.cpp): the instructions themselves
// where the build targets AMX, else, on a CPU with AVX512-VNNI, the same steps in AVX-512 registers, as the CPUs
// without AMX run them (AMD's Zen 4 and 5, Intel's Xeons before Sapphire Rapids or where a virtual machine hides
// AMX): the int8 products by AVX512-VNNI, the bf16 ones by float32 multiply-adds, or AVX512-BF16's vdpbf16ps where
// the CPU has it and a timing finds it faster. STANCE_EMULATE_TILES asks for the emulation where AMX is there too
// (model/fused_attention.py builds the kernels that way where oneDNN's ISA cap leaves AMX out). Defines
// STANCE_INT8_TILES where the int8 steps run, STANCE_BF16_TILES where the bf16 ones do too, and
// STANCE_TILES_EMULATED.
#pragma once
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdint>

#if defined(__AMX_INT8__) && defined(__AMX_TILE__) && !defined(STANCE_EMULATE_TILES)
#define STANCE_INT8_TILES 1
#define STANCE_TILES_EMULATED 0
#if defined(__AMX_BF16__) && defined(__AVX512BF16__)
#define STANCE_BF16_TILES 1
#endif
#elif defined(__AVX512VNNI__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && defined(__AVX512VL__)
#define STANCE_INT8_TILES 1
#define STANCE_TILES_EMULATED 1
#define STANCE_BF16_TILES 1
#else
#define STANCE_INT8_TILES 0
#define STANCE_TILES_EMULATED 0
#endif
#ifndef STANCE_BF16_TILES
#define STANCE_BF16_TILES 0
#endif

#if STANCE_BF16_TILES
// 16 bf16 values widened to float32: AVX512-BF16's vcvtpbh2ps is the same shift, here without it.
inline __m512 widened(__m256i bf16) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bf16), 16));
}
#endif

#if STANCE_TILES_EMULATED
namespace emulated_tiles {

// The eight tiles, each thread's own, in the one shape the kernels configure: 16 rows of 64 bytes. A loaded tile is
// a view of its rows where they are (the kernels leave those unchanged until the tile is used), until a product adds
// into it or _tile_zero clears it: then its rows are its own.
struct alignas(64) Tile {
    uint8_t row[16][64];
    float wide[16][32];  // as a bf16 product's left operand: its 32 values a row in float32, once `has_wide`
    const uint8_t* at;
    int64_t stride;
    bool has_wide;
};

inline Tile* tiles() {
    static thread_local Tile t[8];
    return t;
}

inline void load(int t, const void* from, int64_t stride) {
    Tile& x = tiles()[t];
    x.at = static_cast<const uint8_t*>(from);
    x.stride = stride;
    x.has_wide = false;
}

inline void store(int t, void* to, int64_t stride) {
    const Tile& x = tiles()[t];
    for (int r = 0; r < 16; ++r)
        _mm512_storeu_si512(static_cast<uint8_t*>(to) + r * stride, _mm512_loadu_si512(x.at + r * x.stride));
}

inline void zero(int t) {
    Tile& x = tiles()[t];
    for (int r = 0; r < 16; ++r) _mm512_store_si512(x.row[r], _mm512_setzero_si512());
    x.at = x.row[0], x.stride = 64;
}

// Tile c's rows as its own (a view's copied).
inline Tile& own(int c) {
    Tile& x = tiles()[c];
    if (x.at != x.row[0]) {
        for (int r = 0; r < 16; ++r) _mm512_store_si512(x.row[r], _mm512_loadu_si512(x.at + r * x.stride));
        x.at = x.row[0], x.stride = 64;
    }
    return x;
}

// Tile c += tile a times tile b, bf16 pairs into float32 sums. Each of c's 16 rows in a register, and per row of b
// (skipped where it is zero: the attention's values past a sequence's length) either (BY_FMA true) 32 float32
// multiply-adds, of each value of the pair broadcast from a widened to float32 (once a load) by the pair's first or
// second values of b's row, or (BY_FMA false, AVX512-BF16 only) 16 vdpbf16ps of a broadcast pair of a's row by it.
// The second product of a pair is added first, as vdpbf16ps adds them; as the products of bf16 values are exact in
// float32, both give the same sums bit for bit where subnormals are flushed, as vdpbf16ps flushes them. amx.h has
// the int8 GEMM's own emulation.
template <bool BY_FMA>
void bf16_product(Tile& sum, Tile& x, const Tile& y) {
    if (BY_FMA && !x.has_wide) {
        for (int r = 0; r < 16; ++r) {
            const __m512i v = _mm512_loadu_si512(x.at + r * x.stride);
            _mm512_store_ps(x.wide[r], widened(_mm512_castsi512_si256(v)));
            _mm512_store_ps(x.wide[r] + 16, widened(_mm512_extracti64x4_epi64(v, 1)));
        }
        x.has_wide = true;
    }
    __m512 sums[16];
    for (int r = 0; r < 16; ++r) sums[r] = _mm512_load_ps(sum.row[r]);
    for (int k = 0; k < 16; ++k) {
        const __m512i row = _mm512_loadu_si512(y.at + k * y.stride);
        if (!_mm512_test_epi32_mask(row, row)) continue;
        if constexpr (BY_FMA) {
            const __m512 first = _mm512_castsi512_ps(_mm512_slli_epi32(row, 16));
            const __m512 second = _mm512_castsi512_ps(_mm512_and_si512(row, _mm512_set1_epi32(-65536)));
            for (int r = 0; r < 16; ++r) {
                sums[r] = _mm512_fmadd_ps(_mm512_set1_ps(x.wide[r][2 * k + 1]), second, sums[r]);
                sums[r] = _mm512_fmadd_ps(_mm512_set1_ps(x.wide[r][2 * k]), first, sums[r]);
            }
        } else {
            for (int r = 0; r < 16; ++r) {
                int32_t pair;
                __builtin_memcpy(&pair, x.at + r * x.stride + 4 * k, 4);
                sums[r] = _mm512_dpbf16_ps(sums[r], (__m512bh)_mm512_set1_epi32(pair), (__m512bh)row);
            }
        }
    }
    for (int r = 0; r < 16; ++r) _mm512_store_ps(sum.row[r], sums[r]);
}

#if defined(__AVX512BF16__)
// Seconds for `step` on 12 sums 4,096 times, the least of three tries.
template <class Step>
double timed(Step step) {
    double least = 1e30;
    for (int attempt = 0; attempt < 3; ++attempt) {
        __m512 s[12];
        for (int i = 0; i < 12; ++i) s[i] = _mm512_set1_ps(static_cast<float>(i));
        const auto start = std::chrono::steady_clock::now();
        for (int n = 0; n < 4096; ++n) {
            for (int i = 0; i < 12; ++i) s[i] = step(s[i]);
            __asm__ volatile("" : "+v"(s[0]), "+v"(s[1]), "+v"(s[2]), "+v"(s[3]), "+v"(s[4]), "+v"(s[5]), "+v"(s[6]),
                             "+v"(s[7]), "+v"(s[8]), "+v"(s[9]), "+v"(s[10]), "+v"(s[11]));
        }
        least = std::min(least, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    return least;
}
#endif

// Whether the bf16 products run as float32 multiply-adds here: always without AVX512-BF16; else STANCE_BF16_BY_FMA
// (0 or 1) where a build sets it, else whether two vfmadd take less time than one vdpbf16ps, timed once a process,
// as CPUs differ (on the Xeon measured vdpbf16ps ran at a quarter of vfmadd's rate: benchmarks/PROFILE.md, session
// 24). Both give the same sums.
inline bool bf16_by_fma() {
#if !defined(__AVX512BF16__)
    return true;
#elif defined(STANCE_BF16_BY_FMA)
    return STANCE_BF16_BY_FMA;
#else
    static const bool by_fma = [] {
        const __m512 a = _mm512_set1_ps(1.0f);
        const __m512bh pairs = (__m512bh)_mm512_set1_epi32(0x3f803f80);
        const double dot = timed([&](__m512 s) { return _mm512_dpbf16_ps(s, pairs, pairs); });
        const double fma = timed([&](__m512 s) { return _mm512_fmadd_ps(a, a, _mm512_fmadd_ps(a, a, s)); });
        return fma < dot;
    }();
    return by_fma;
#endif
}

inline void dpbf16ps(int c, int a, int b) {
    Tile& sum = own(c);
#if defined(__AVX512BF16__)
    if (!bf16_by_fma()) return bf16_product<false>(sum, tiles()[a], tiles()[b]);
#endif
    bf16_product<true>(sum, tiles()[a], tiles()[b]);
}

}  // namespace emulated_tiles

#undef _tile_loadconfig
#undef _tile_release
#undef _tile_loadd
#undef _tile_stored
#undef _tile_zero
#undef _tile_dpbf16ps
#define _tile_loadconfig(config) ((void)(config))
#define _tile_release() ((void)0)
#define _tile_loadd(t, from, stride) emulated_tiles::load(t, from, stride)
#define _tile_stored(t, to, stride) emulated_tiles::store(t, to, stride)
#define _tile_zero(t) emulated_tiles::zero(t)
#define _tile_dpbf16ps(c, a, b) emulated_tiles::dpbf16ps(c, a, b)
#endif
