// What the AMX kernels share (amx_linear.cpp, amx_attention.cpp): the tile configuration, the int8 GEMM (uint8
// codes times int8 weights packed by stance_amx_pack, in blocks of 32 rows x 32 columns) and a row's quantising.
// Included only where tiles.h finds the int8 tile steps (STANCE_INT8_TILES).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <immintrin.h>
#include <new>
#include <vector>

#include "tiles.h"
#include "vec.h"

constexpr int TILE_ROWS = 16;
constexpr int TILE_BYTES = 64;         // of a tile row: 64 codes of one row, or 4 depths × 16 columns of weights
constexpr int STRIPE = 2 * TILE_ROWS;  // rows per block: two A tiles
constexpr int BLOCK = 2 * 16;          // columns per block: two B tiles of 16 int32 sums each

// All eight tiles 16 rows of 64 bytes. In the int8 GEMM tiles 0-3 hold a block's sums, 4-5 two tiles of codes, 6-7
// two tiles of weights; amx_attention.cpp's bf16 products use the same shapes (16 x 16 float32 sums, 16 rows of 32
// bf16 values).
struct alignas(64) TileConfig {
    uint8_t palette = 1, start_row = 0, reserved[14] = {};
    uint16_t bytes[16] = {TILE_BYTES, TILE_BYTES, TILE_BYTES, TILE_BYTES,
                          TILE_BYTES, TILE_BYTES, TILE_BYTES, TILE_BYTES};
    uint8_t rows[16] = {TILE_ROWS, TILE_ROWS, TILE_ROWS, TILE_ROWS, TILE_ROWS, TILE_ROWS, TILE_ROWS, TILE_ROWS};
};
const TileConfig TILES;

// Memory that tiles load or store, or whose rows the vector steps read, aligned to cache lines: std::vector's own
// (16 bytes) split each tile row across two lines, which halved the int8 GEMM's rate (a standalone loop from L1:
// 1.8 against 3.5 TOPS on one core; benchmarks/PROFILE.md, session 20). A TileVector made with a size alone is left
// uninitialised, as the kernels write their buffers before they read them: zero-filling them, 0.4 MB a thread in
// each call of the GELU kernel and 0.8 MB in the attention's, was memset's 1.4-1.8% of a pass (perf,
// benchmarks/PROFILE.md, session 22).
template <class T>
struct LineAligned {
    using value_type = T;
    LineAligned() = default;
    template <class U>
    LineAligned(const LineAligned<U>&) {}
    T* allocate(std::size_t n) {
        T* p = static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(64)));
#ifdef STANCE_POISON_BUFFERS
        // A test's build: every byte 0xFF (NaN as float32 or bf16), so that a read before a write shows.
        std::memset(static_cast<void*>(p), 0xFF, n * sizeof(T));
#endif
        return p;
    }
    void deallocate(T* p, std::size_t) { ::operator delete(p, std::align_val_t(64)); }
    template <class U>
    void construct(U* p) noexcept {
        ::new (static_cast<void*>(p)) U;
    }
    template <class U, class V>
    void construct(U* p, V&& value) {
        ::new (static_cast<void*>(p)) U(static_cast<V&&>(value));
    }
    template <class U>
    bool operator==(const LineAligned<U>&) const { return true; }
    template <class U>
    bool operator!=(const LineAligned<U>&) const { return false; }
};
template <class T>
using TileVector = std::vector<T, LineAligned<T>>;

// The padded sizes AMX's tiles take: depth to a multiple of 64, columns to one of 32 (a block).
static int64_t round_up(int64_t x, int64_t to) { return (x + to - 1) / to * to; }

// The first min(count, 16) of 16 lanes.
static __mmask16 lanes(int64_t count) { return count >= 16 ? 0xffff : static_cast<__mmask16>((1u << count) - 1); }

// The codes of the stripe of `valid` rows at `first`, or where it is short of rows (the last) or of depth, a copy
// zero-filled to STRIPE rows of `depth` in `padded`: tiles load whole tiles. Sets `stride` to its rows' spacing.
static const uint8_t* stripe_codes(const uint8_t* codes, int64_t first, int64_t valid, int64_t k, int64_t depth,
                                   TileVector<uint8_t>& padded, int64_t& stride) {
    stride = k;
    if (valid == STRIPE && depth == k) return codes + first * k;
    padded.assign(STRIPE * depth, 0);
    for (int64_t r = 0; r < valid; ++r) std::memcpy(padded.data() + r * depth, codes + (first + r) * k, k);
    stride = depth;
    return padded.data();
}

// -zero_point × each column's sum of weights, padded to whole blocks: where each column's sums start, so that they
// come out without the zero point's share.
static TileVector<int32_t> zero_point_shift(const int32_t* column_sums, int64_t n, int zero_point) {
    TileVector<int32_t> shift(round_up(n, BLOCK), 0);
    for (int64_t c = 0; c < n; ++c) shift[c] = -zero_point * column_sums[c];
    return shift;
}

// The packed weights' tiles from `column` on (a multiple of 16).
static const int8_t* weight_tiles(const int8_t* packed, int64_t column, int64_t depth_tiles) {
    return packed + column / 16 * depth_tiles * 1024;
}

// out [STRIPE][BLOCK] (rows `out_ld` int32 apart) = in (rows `in_ld` apart, or with in_ld = 0 the same row for all,
// zero_point_shift's at the block's first column) + the stripe's codes `a` times the packed weights' BLOCK columns
// from `b` (weight_tiles) on, over depth tiles [from, to) of depth_tiles; `between()` runs before out is written
// (it may read what out held). in may be out.
#if STANCE_TILES_EMULATED
// Without AMX (tiles.h) the products are AVX512-VNNI's: 8 rows by the block's 32 columns at a time in 16 registers,
// each a multiply-add of a broadcast quad of a row's codes by a row of a weight tile (a quad of depths for 16
// columns), as tdpbusd does; the sums go from `in` through the registers to `out`.
template <class Between>
static void block_product(const int32_t* in, int64_t in_ld, const uint8_t* a, int64_t stride, const int8_t* b,
                          int64_t depth_tiles, int64_t from, int64_t to, int32_t* out, int64_t out_ld,
                          Between between) {
    constexpr int ROWS = 8;
    between();
    for (int g = 0; g < STRIPE; g += ROWS) {
        __m512i low[ROWS], high[ROWS];
        for (int r = 0; r < ROWS; ++r) {
            low[r] = _mm512_loadu_si512(in + (g + r) * in_ld);
            high[r] = _mm512_loadu_si512(in + (g + r) * in_ld + 16);
        }
        for (int64_t d = from; d < to; ++d) {
            const int8_t *w0 = b + d * 1024, *w1 = b + (depth_tiles + d) * 1024;
            const uint8_t* x = a + g * stride + d * 64;
            // Unrolled, or the loop's own instructions take ports 0 and 5 from the multiply-adds: 0.69-0.73x
            // torch._int_mm's rate rolled, 0.77-0.91x unrolled (benchmarks/PROFILE.md, session 23).
#pragma GCC unroll 16
            for (int q = 0; q < 16; ++q) {
                const __m512i lw = _mm512_load_si512(w0 + q * TILE_BYTES), hw = _mm512_load_si512(w1 + q * TILE_BYTES);
                for (int r = 0; r < ROWS; ++r) {
                    int32_t quad;
                    std::memcpy(&quad, x + r * stride + 4 * q, 4);
                    const __m512i codes = _mm512_set1_epi32(quad);
                    low[r] = _mm512_dpbusd_epi32(low[r], codes, lw);
                    high[r] = _mm512_dpbusd_epi32(high[r], codes, hw);
                }
            }
        }
        for (int r = 0; r < ROWS; ++r) {
            _mm512_storeu_si512(out + (g + r) * out_ld, low[r]);
            _mm512_storeu_si512(out + (g + r) * out_ld + 16, high[r]);
        }
    }
}
#else
// On AMX's tiles 0-3 (codes in 4-5, weights in 6-7); between() runs while they multiply, as the CPU overlaps vector
// work with the tiles. The tiles start from `in` rather than being corrected after they are stored: reading them
// back at once to correct them stalled on the tile stores and took a quarter of the kernel's time (perf).
template <class Between>
static void block_product(const int32_t* in, int64_t in_ld, const uint8_t* a, int64_t stride, const int8_t* b,
                          int64_t depth_tiles, int64_t from, int64_t to, int32_t* out, int64_t out_ld,
                          Between between) {
    _tile_loadd(0, in, in_ld * 4);
    _tile_loadd(1, in + 16, in_ld * 4);
    _tile_loadd(2, in + TILE_ROWS * in_ld, in_ld * 4);
    _tile_loadd(3, in + TILE_ROWS * in_ld + 16, in_ld * 4);
    for (int64_t d = from; d < to; ++d) {
        _tile_loadd(4, a + d * 64, stride);
        _tile_loadd(5, a + TILE_ROWS * stride + d * 64, stride);
        _tile_loadd(6, b + d * 1024, TILE_BYTES);
        _tile_loadd(7, b + (depth_tiles + d) * 1024, TILE_BYTES);
        _tile_dpbusd(0, 4, 6);
        _tile_dpbusd(1, 4, 7);
        _tile_dpbusd(2, 5, 6);
        _tile_dpbusd(3, 5, 7);
    }
    between();
    _tile_stored(0, out, out_ld * 4);
    _tile_stored(1, out + 16, out_ld * 4);
    _tile_stored(2, out + TILE_ROWS * out_ld, out_ld * 4);
    _tile_stored(3, out + TILE_ROWS * out_ld + 16, out_ld * 4);
}
#endif


// A row's quantising as model/quant.py's Int8Linear quantises its input, over the row's range [lo, hi]: its
// scale and offset, and its codes plus a zero point 16 values at a time (codes16).
struct RowCodes {
    float scale, offset;
    __m512 inverse, shift;
    RowCodes(float lo, float hi, int zero_point) {
        const float half = std::fmax((hi - lo) / 2, 1.1754943508222875e-38f);
        offset = (hi + lo) / 2;
        scale = half / INT8_MAX_F;
        inverse = _mm512_set1_ps(INT8_MAX_F / half);
        shift = _mm512_set1_ps(zero_point - offset * (INT8_MAX_F / half));
    }
    // The codes of x's first lanes (`mask`) into `to`.
    void store(__m512 x, int zero_point, uint8_t* to, __mmask16 mask) const {
        _mm_mask_storeu_epi8(to, mask, codes16(x, inverse, shift, zero_point));
    }
    // The codes of 64 values into `to`.
    void store64(__m512 x0, __m512 x1, __m512 x2, __m512 x3, int zero_point, uint8_t* to) const {
        _mm512_storeu_si512(to, codes64(x0, x1, x2, x3, inverse, shift, zero_point));
    }
};
