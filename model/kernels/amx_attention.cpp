// BERT's self-attention on AMX's tiles for the int8 path, from the query-key-value layer's input codes to the
// attention-output layer's: per group of whole sequences, the query-key-value GEMM (int8 tiles, amx.h) dequantised
// into bf16 rows held in the thread's cache, then per sequence and head the scores (bf16 tiles, float32 sums), the
// softmax (float32), the weighted values (bf16 tiles), and each row of the result quantised for the
// attention-output layer. The [rows, 3 x width] float32 projections are never written out: a bf16 attention that
// read them as attention.cpp does spent its largest share loading them from beyond L2, at about 15 GB/s (perf;
// benchmarks/PROFILE.md, session 19). Head sizes must be multiples of 32, a bf16 tile's depth. Built and loaded by
// model/fused_attention.py; without AMX, on emulated tiles (tiles.h); on AMX without its bf16 tiles or AVX512-BF16
// (or a compiler that targets them), or without AMX and AVX512-VNNI, to a stub that says so.
#include <cstdint>

#include "tiles.h"

#if STANCE_BF16_TILES
#include "amx.h"

namespace {

constexpr int DEPTH = 32;            // bf16 values in a tile row: 64 bytes
constexpr int64_t GROUP_ROWS = 256;  // rows of sequences per GEMM: the group's bf16 projections stay in L2

// lo's 16 values then hi's, rounded to bf16.
#if defined(__AVX512BF16__)
__m512i bf16_pair(__m512 lo, __m512 hi) { return (__m512i)_mm512_cvtne2ps_pbh(hi, lo); }
#else
// x's bits rounded to bf16 in their upper halves as vcvtne2ps2bf16 rounds: subnormals to a zero of their sign, the
// rest to nearest, ties to even (NaN never comes here).
__m512i bf16_rounded(__m512 x) {
    __m512i bits = _mm512_castps_si512(x);
    const __mmask16 subnormal = _mm512_testn_epi32_mask(bits, _mm512_set1_epi32(0x7f800000));
    bits = _mm512_mask_and_epi32(bits, subnormal, bits, _mm512_set1_epi32(INT32_MIN));
    const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
    return _mm512_add_epi32(bits, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7fff)));
}

__m512i bf16_pair(__m512 lo, __m512 hi) {
    // Words 1, 3, ..., 63 of lo and hi side by side: the upper halves of lo's 16 values, then of hi's.
    const __m512i upper = _mm512_set_epi32(0x3f003d, 0x3b0039, 0x370035, 0x330031, 0x2f002d, 0x2b0029, 0x270025,
                                           0x230021, 0x1f001d, 0x1b0019, 0x170015, 0x130011, 0xf000d, 0xb0009,
                                           0x70005, 0x30001);
    return _mm512_permutex2var_epi16(bf16_rounded(lo), upper, bf16_rounded(hi));
}
#endif

constexpr float LOG2_E = 1.44269504088896341f;

// 2^t to bf16's precision for the softmax's weights, which go to bf16: a cubic of t's fraction (relative error
// 7.5e-5, under bf16's 3.9e-3) times 2^floor(t) by scalef, seven instructions where e^x by a quartic of the reduced
// argument took ten. t is clamped at -125 so that no result is subnormal, which takes the CPU's slow path (at -126,
// where the cubic's 0.99992 at 0 made one, the kernel took 2.8x the time); a masked key's weight is then 2.4e-38.
__m512 exp2_bf16(__m512 t) {
    t = _mm512_max_ps(t, _mm512_set1_ps(-125.0f));
    const __m512 f = _mm512_reduce_ps(t, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);  // t - floor(t)
    __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(0.0780225845f), f, _mm512_set1_ps(0.226065679f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.695836391f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.999924686f));
    return _mm512_scalef_ps(p, t);
}

float bf16_to_float(uint16_t x) {
    const uint32_t bits = uint32_t(x) << 16;
    float out;
    std::memcpy(&out, &bits, sizeof out);
    return out;
}

// Each thread's buffers, sized from the padded length and the largest group of sequences.
struct Buffers {
    int64_t rows, depth, heads, head_size, width;
    TileVector<uint16_t> qkv;      // [group rows + padding][3 x width] bf16: the GEMM's output
    TileVector<uint16_t> keys;     // tiles [head][16-key block][depth step][16 depth pairs][16 keys][2]
    TileVector<uint16_t> values;   // tiles [head][32-key chunk][16-dim slice][16 key pairs][16 dims][2]
    TileVector<float> scores;      // [16][key columns]
    TileVector<uint16_t> weights;  // [16][key depth] bf16
    TileVector<float> keymask;     // [key columns]
    TileVector<float> shifted;     // [key columns]: the key mask less the block's largest score
    TileVector<float> context;     // [length][width]: the attention's output, before it is quantised
    alignas(64) float sums[3][TILE_ROWS][16];
    // The right operand that sums each row of weights: column 0 all ones, the rest zero.
    alignas(64) uint16_t ones[16][32] = {};
    Buffers(int64_t length, int64_t heads, int64_t head_size, int64_t group)
        : rows(round_up(length, TILE_ROWS)), depth(round_up(length, DEPTH)), heads(heads), head_size(head_size),
          width(heads * head_size),
          // Past the group's last row, tiles read up to a key chunk more (DEPTH rows).
          qkv((round_up(group * length, STRIPE) + DEPTH) * 3 * width), keys(rows * width), values(depth * width),
          scores(TILE_ROWS * rows), weights(TILE_ROWS * depth), keymask(rows), shifted(rows), context(length * width) {
        for (auto& r : ones) r[0] = r[1] = 0x3f80;  // bf16 1.0, for both keys of each pair
    }
};

// `valid` rows of a block's int32 sums at `column`, dequantised as stance_amx_linear does (amx_linear.cpp) into bf16
// rows `out` (n apart), for the rows whose scales and offsets start at row_scale and row_offset. Its own function,
// with every pointer an argument: as a lambda reading them through its captures it reloaded them for each row, as
// a vector store may alias anything.
void dequantise_block(const int32_t (*sums)[BLOCK], int64_t valid, int64_t column, int64_t n, const float* column_scale,
                      const float* row_scale, const float* row_offset, const float* weight_sum, const float* bias,
                      uint16_t* out) {
    __m512 scale[2], sum[2], shift[2];
    for (int half = 0; half < 2; ++half) {
        const int64_t at = column + 16 * half;
        scale[half] = _mm512_loadu_ps(column_scale + at);
        sum[half] = _mm512_loadu_ps(weight_sum + at);
        shift[half] = bias ? _mm512_loadu_ps(bias + at) : _mm512_setzero_ps();
    }
    for (int64_t r = 0; r < valid; ++r) {
        __m512 y[2];
        for (int half = 0; half < 2; ++half) {
            const __m512 product =
                _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_load_si512(&sums[r][16 * half])), scale[half]);
            y[half] = _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(product, _mm512_set1_ps(row_scale[r])),
                                                  _mm512_mul_ps(_mm512_set1_ps(row_offset[r]), sum[half])),
                                    shift[half]);
        }
        _mm512_storeu_si512(out + r * n + column, bf16_pair(y[0], y[1]));
    }
}

// The query-key-value layer on `count` rows from `first` into b.qkv in bf16, each block's sums dequantised while
// the next block's multiplies run on the tiles.
void projections(const uint8_t* codes, const int8_t* packed, const int32_t* shift, const float* column_scale,
                 const float* row_scale, const float* row_offset, const float* weight_sum, const float* bias,
                 int64_t first, int64_t count, int64_t k, int64_t n, Buffers& b) {
    const int64_t depth = round_up(k, 64), depth_tiles = depth / 64;
    alignas(64) int32_t sums[STRIPE][BLOCK];
    TileVector<uint8_t> padded;
    uint16_t* const qkv = b.qkv.data();
    int64_t pending_row = -1, pending_valid = 0, pending_column = 0;
    auto dequantise_pending = [&] {
        if (pending_row >= 0)
            dequantise_block(sums, pending_valid, pending_column, n, column_scale, row_scale + first + pending_row,
                             row_offset + first + pending_row, weight_sum, bias, qkv + pending_row * n);
    };
    for (int64_t row = 0; row < count; row += STRIPE) {
        const int64_t valid = std::min<int64_t>(STRIPE, count - row);
        int64_t stride;
        const uint8_t* a = stripe_codes(codes, first + row, valid, k, depth, padded, stride);
        for (int64_t column = 0; column < n; column += BLOCK) {
            block_product(shift + column, 0, a, stride, weight_tiles(packed, column, depth_tiles), depth_tiles, 0,
                          depth_tiles, &sums[0][0], BLOCK, dequantise_pending);
            pending_row = row, pending_valid = valid, pending_column = column;
        }
    }
    dequantise_pending();
}

// One sequence's keys and values, from its bf16 projections `qkv` (rows 3 x width apart), laid out as the right
// operands of the tiles; those past its length are zero (past the group's rows, b.qkv holds whatever it held).
void operands(const uint16_t* qkv, int64_t length, Buffers& b) {
    const int64_t width = b.width, heads = b.heads, head_size = b.head_size, rows = b.rows, depth = b.depth;
    const int64_t n = 3 * width, steps = head_size / DEPTH, slices = head_size / 16;
    const int64_t blocks = rows / TILE_ROWS, chunks = depth / DEPTH;
    uint16_t *const keys = b.keys.data(), *const values = b.values.data();
    // Keys: for 16 keys, their pairs of dimensions (32-bit words) transposed, so that each tile row holds one pair
    // of dimensions for the 16 keys.
    for (int64_t h = 0; h < heads; ++h)
        for (int64_t j0 = 0; j0 < rows; j0 += TILE_ROWS)
            for (int64_t s = 0; s < steps; ++s) {
                __m512 pairs[16], tile[16];
                for (int r = 0; r < 16; ++r)
                    pairs[r] = _mm512_maskz_loadu_ps(j0 + r < length ? 0xffff : 0,
                                                     qkv + (j0 + r) * n + width + h * head_size + s * DEPTH);
                transpose16(pairs, tile);
                uint16_t* to = keys + ((h * blocks + j0 / TILE_ROWS) * steps + s) * 512;
                for (int r = 0; r < 16; ++r) _mm512_storeu_ps(to + r * 32, tile[r]);
            }
    // Values: for 32 keys and 16 dimensions, row r holds keys 2r and 2r + 1 interleaved.
    alignas(64) uint16_t lower[32], upper[32];
    for (int i = 0; i < 16; ++i) {
        lower[2 * i] = i, lower[2 * i + 1] = 32 + i;
        upper[2 * i] = 16 + i, upper[2 * i + 1] = 48 + i;
    }
    const __m512i low_index = _mm512_load_si512(lower), high_index = _mm512_load_si512(upper);
    for (int64_t j = 0; j < depth; j += 2)
        for (int64_t h = 0; h < heads; ++h)
            for (int64_t e = 0; e < slices; e += 2) {
                const uint16_t* v = qkv + j * n + 2 * width + h * head_size + e * 16;
                const __m512i first = _mm512_maskz_loadu_epi16(j < length ? ~0u : 0, v);
                const __m512i second = _mm512_maskz_loadu_epi16(j + 1 < length ? ~0u : 0, v + n);
                uint16_t* to = values + (((h * chunks + j / DEPTH) * slices + e) * 16 + j % DEPTH / 2) * 32;
                _mm512_storeu_si512(to, _mm512_permutex2var_epi16(first, low_index, second));
                _mm512_storeu_si512(to + 512, _mm512_permutex2var_epi16(first, high_index, second));
            }
}

// Tile numbers must be literals (GCC's AMX intrinsics paste them into the assembly), hence macros for the steps
// that run on several tiles.

// Sums tile t = 16 queries from `queries` (rows 3 x width apart, in tile 4; loaded once by the caller where a head
// is one tile deep) times 16 keys from the key tiles at `keys` (in tile k).
#define SCORE_BLOCK(t, k, keys)                                           \
    _tile_zero(t);                                                        \
    for (int64_t s = 0; s < steps; ++s) {                                 \
        if (steps > 1) _tile_loadd(4, queries + s * DEPTH, 6 * b.width);  \
        _tile_loadd(k, (keys) + s * 512, 64);                             \
        _tile_dpbf16ps(t, 4, k);                                          \
    }

// Scores of 16 queries from `queries` against every key of head h into b.scores [16][b.rows], unscaled: three
// blocks of 16 keys at a time in three sums tiles, so that the blocks' products overlap.
void scores(const uint16_t* queries, int64_t h, Buffers& b) {
    const int64_t steps = b.head_size / DEPTH, blocks = b.rows / TILE_ROWS;
    const uint16_t* keys = b.keys.data() + h * blocks * steps * 512;
    float* out = b.scores.data();
    const int64_t stride = b.rows * 4, tile = steps * 512;
    if (steps == 1) _tile_loadd(4, queries, 6 * b.width);
    int64_t j = 0;
    for (; j + 3 <= blocks; j += 3) {
        SCORE_BLOCK(0, 5, keys + j * tile)
        SCORE_BLOCK(1, 6, keys + (j + 1) * tile)
        SCORE_BLOCK(2, 7, keys + (j + 2) * tile)
        _tile_stored(0, out + j * TILE_ROWS, stride);
        _tile_stored(1, out + (j + 1) * TILE_ROWS, stride);
        _tile_stored(2, out + (j + 2) * TILE_ROWS, stride);
    }
    if (j + 2 == blocks) {
        SCORE_BLOCK(0, 5, keys + j * tile)
        SCORE_BLOCK(1, 6, keys + (j + 1) * tile)
        _tile_stored(0, out + j * TILE_ROWS, stride);
        _tile_stored(1, out + (j + 1) * TILE_ROWS, stride);
    } else if (j + 1 == blocks) {
        SCORE_BLOCK(0, 5, keys + j * tile)
        _tile_stored(0, out + j * TILE_ROWS, stride);
    }
}
#undef SCORE_BLOCK

// Whether each row's sum of its weights comes from the tiles (times `ones`) or, on emulated tiles, where the tiles'
// product would take 16 multiply-adds a pair of keys for it, from the weights as they are made.
constexpr bool SUMS_BY_TILES = !STANCE_TILES_EMULATED;

// The softmax's weights of the first `valid` rows of b.scores, unnormalised, into b.weights [16][b.depth] in bf16
// (0 past the padded keys and in the other rows). Every row is shifted by the largest scaled score of the 16, not
// its own, which saves a reduction across a vector per row; a row whose own largest lies far below loses its
// weights to underflow and is redone by lone_row. Without SUMS_BY_TILES, each row's sum of weights into b.sums[2].
void weights(int64_t valid, float scale, Buffers& b) {
    // Locals, not b's members: a vector store may alias anything, so the members were reloaded after each.
    const int64_t rows = b.rows, depth = b.depth;
    const float *scores = b.scores.data(), *keymask = b.keymask.data();
    float* const shifted = b.shifted.data();
    const __m512 vscale = _mm512_set1_ps(scale);
    __m512 top = _mm512_set1_ps(-INFINITY);
    for (int64_t r = 0; r < valid; ++r)
        for (int64_t j = 0; j < rows; j += 16)
            top = _mm512_max_ps(top, _mm512_fmadd_ps(_mm512_loadu_ps(scores + r * rows + j), vscale,
                                                     _mm512_loadu_ps(keymask + j)));
    // The key mask less the shift, once for the 16 rows; both, and the scale, times log2(e) for exp2_bf16.
    const __m512 shift = _mm512_set1_ps(_mm512_reduce_max_ps(top)), log2_e = _mm512_set1_ps(LOG2_E);
    for (int64_t j = 0; j < rows; j += 16)
        _mm512_storeu_ps(shifted + j, _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(keymask + j), shift), log2_e));
    const __m512 scale2 = _mm512_set1_ps(scale * LOG2_E);
    const bool odd = rows % DEPTH;  // the last 32 keys have only 16 columns of scores
    const int64_t whole = depth - (odd ? DEPTH : 0);
    for (int64_t r = 0; r < valid; ++r) {
        uint16_t* w = b.weights.data() + r * depth;
        const float* sr = scores + r * rows;
        auto weight = [sr, scale2, shifted](int64_t j) {
            return exp2_bf16(_mm512_fmadd_ps(_mm512_loadu_ps(sr + j), scale2, _mm512_loadu_ps(shifted + j)));
        };
        __m512 sum = _mm512_setzero_ps();
        auto put = [w, &sum](int64_t j, __m512i pair) {
            _mm512_storeu_si512(w + j, pair);
            if (!SUMS_BY_TILES)
                sum = _mm512_add_ps(sum, _mm512_add_ps(widened(_mm512_castsi512_si256(pair)),
                                                       widened(_mm512_extracti64x4_epi64(pair, 1))));
        };
        for (int64_t j = 0; j < whole; j += DEPTH) put(j, bf16_pair(weight(j), weight(j + 16)));
        if (odd) put(whole, bf16_pair(weight(whole), _mm512_setzero_ps()));
        if (!SUMS_BY_TILES) b.sums[2][r][0] = _mm512_reduce_add_ps(sum);
    }
    std::memset(b.weights.data() + valid * depth, 0, (TILE_ROWS - valid) * depth * 2);
}

// Below this sum of a row's weights, they lost their precision to the block's shift: e^-69, where the largest
// weight of some row of the block is 1.
constexpr float UNDERFLOWED = 1e-30f;

// Row r of b.scores, shifted by its own largest score, times head h's values in float32 (from `qkv`) into `out`:
// for the rare row whose weights underflowed under the block's shift.
void lone_row(int64_t r, int64_t length, float scale, const uint16_t* qkv, int64_t h, float* out, Buffers& b) {
    const float* sr = b.scores.data() + r * b.rows;
    float top = -INFINITY;
    for (int64_t j = 0; j < length; ++j) top = std::fmax(top, sr[j] * scale + b.keymask[j]);
    std::vector<float> acc(b.head_size, 0.0f);
    float total = 0.0f;
    for (int64_t j = 0; j < length; ++j) {
        const float p = std::exp(sr[j] * scale + b.keymask[j] - top);
        total += p;
        const uint16_t* v = qkv + j * 3 * b.width + 2 * b.width + h * b.head_size;
        for (int64_t d = 0; d < b.head_size; ++d) acc[d] += p * bf16_to_float(v[d]);
    }
    for (int64_t d = 0; d < b.head_size; ++d) out[d] = acc[d] / total;
}

// Sums tiles 0 and 1 = the weights (tile 5) times value slices e and e + 1 (tiles 6 and 7) over every 32-key
// chunk, and with `with_sums`, tile 2 = each row's sum of weights (times `ones`, in tile 4).
#define WEIGHTED(with_sums)                                                      \
    _tile_zero(0);                                                               \
    _tile_zero(1);                                                               \
    if (with_sums) _tile_zero(2);                                                \
    for (int64_t c = 0; c < chunks; ++c) {                                       \
        _tile_loadd(5, b.weights.data() + c * DEPTH, b.depth * 2);               \
        _tile_loadd(6, values + (c * slices + e) * 512, 64);                     \
        _tile_loadd(7, values + (c * slices + e + 1) * 512, 64);                 \
        _tile_dpbf16ps(0, 5, 6);                                                 \
        _tile_dpbf16ps(1, 5, 7);                                                 \
        if (with_sums) _tile_dpbf16ps(2, 5, 4);                                  \
    }                                                                            \
    _tile_stored(0, b.sums[0], 64);                                              \
    _tile_stored(1, b.sums[1], 64);                                              \
    if (with_sums) _tile_stored(2, b.sums[2], 64);

// Head h's attention for the 16 queries from i0 (`valid` of them in the sequence) into b.context.
void query_block(const uint16_t* qkv, int64_t length, int64_t h, int64_t i0, float scale, Buffers& b) {
    const int64_t slices = b.head_size / 16, chunks = b.depth / DEPTH;
    const int64_t valid = std::min<int64_t>(TILE_ROWS, length - i0);
    const uint16_t* values = b.values.data() + h * chunks * slices * 512;
    scores(qkv + i0 * 3 * b.width + h * b.head_size, h, b);
    weights(valid, scale, b);
    float inverse[TILE_ROWS];
    bool lone[TILE_ROWS];
    for (int64_t e = 0; e < slices; e += 2) {
        if (e == 0) {
            if (SUMS_BY_TILES) _tile_loadd(4, b.ones, 64);
            WEIGHTED(SUMS_BY_TILES)
            for (int64_t r = 0; r < valid; ++r) {
                lone[r] = b.sums[2][r][0] < UNDERFLOWED;
                inverse[r] = 1.0f / b.sums[2][r][0];
            }
        } else {
            WEIGHTED(false)
        }
        for (int64_t r = 0; r < valid; ++r) {
            float* o = b.context.data() + (i0 + r) * b.width + h * b.head_size + e * 16;
            const __m512 factor = _mm512_set1_ps(inverse[r]);
            _mm512_storeu_ps(o, _mm512_mul_ps(_mm512_load_ps(b.sums[0][r]), factor));
            _mm512_storeu_ps(o + 16, _mm512_mul_ps(_mm512_load_ps(b.sums[1][r]), factor));
        }
    }
    for (int64_t r = 0; r < valid; ++r)
        if (lone[r]) lone_row(r, length, scale, qkv, h, b.context.data() + (i0 + r) * b.width + h * b.head_size, b);
}
#undef WEIGHTED

// One sequence from its bf16 projections `qkv`: its attention, each row times `next_scale` (if any) quantised into
// `codes` (rows width apart), `out_scale` and `out_offset`.
void one_sequence(const uint16_t* qkv, const float* mask, const float* next_scale, uint8_t* codes, float* out_scale,
                  float* out_offset, int64_t length, float scale, int zero_point, Buffers& b) {
    for (int64_t j = 0; j < b.rows; ++j) b.keymask[j] = j < length ? mask[j] : -INFINITY;
    operands(qkv, length, b);
    for (int64_t h = 0; h < b.heads; ++h)
        for (int64_t i0 = 0; i0 < length; i0 += TILE_ROWS) query_block(qkv, length, h, i0, scale, b);
    const int64_t width = b.width;
    float* const context = b.context.data();
    for (int64_t i = 0; i < length; ++i) {
        float* x = context + i * width;
        __m512 low = _mm512_set1_ps(INFINITY), high = _mm512_set1_ps(-INFINITY);
        for (int64_t c = 0; c < width; c += 16) {
            __m512 v = _mm512_loadu_ps(x + c);
            if (next_scale) _mm512_storeu_ps(x + c, v = _mm512_mul_ps(v, _mm512_loadu_ps(next_scale + c)));
            low = _mm512_min_ps(low, v);
            high = _mm512_max_ps(high, v);
        }
        const RowCodes row_codes(_mm512_reduce_min_ps(low), _mm512_reduce_max_ps(high), zero_point);
        int64_t c = 0;
        for (; c + 64 <= width; c += 64)
            row_codes.store64(_mm512_loadu_ps(x + c), _mm512_loadu_ps(x + c + 16), _mm512_loadu_ps(x + c + 32),
                              _mm512_loadu_ps(x + c + 48), zero_point, codes + i * width + c);
        for (; c < width; c += 16)
            row_codes.store(_mm512_loadu_ps(x + c), zero_point, codes + i * width + c, 0xffff);
        out_scale[i] = row_codes.scale;
        out_offset[i] = row_codes.offset;
    }
}

}  // namespace

// 1: this build has the kernel (the stub's is 0).
extern "C" int stance_amx_attention_built() { return 1; }

// x [n] (n a multiple of 32) rounded to bf16 into `out` as the kernel rounds its projections and weights: for tests.
extern "C" void stance_bf16_rounded(const float* x, uint16_t* out, int64_t n) {
    for (int64_t i = 0; i < n; i += 32)
        _mm512_storeu_si512(out + i, bf16_pair(_mm512_loadu_ps(x + i), _mm512_loadu_ps(x + i + 16)));
}

// The query-key-value layer and self-attention of `batch` sequences of rows / batch tokens, from the layer's input
// codes to the attention-output layer's. The arguments up to `bias`, and rows, k and n, are stance_amx_linear's for
// the query-key-value layer (n = 3 x heads x head_size, its output the queries, keys and values side by side);
// mask is the additive key mask [batch, length] (0 where attended); the result, times next_scale (the
// attention-output layer's smoothing, or null), goes out quantised per row as model/quant.py's Int8Linear
// quantises: codes [rows, n / 3] plus zero_point, and each row's scale and offset. head_size must be a multiple of
// 32; AMX's tiles must be granted first (stance_amx_init).
extern "C" void stance_amx_qkv_attention(const uint8_t* codes, const int8_t* packed, const int32_t* column_sums,
                                         const float* column_scale, const float* row_scale, const float* row_offset,
                                         const float* weight_sum, const float* bias, const float* mask,
                                         const float* next_scale, uint8_t* out_codes, float* out_scale,
                                         float* out_offset, int64_t rows, int64_t k, int64_t n, int64_t batch,
                                         int64_t heads, float scale, int zero_point, int threads) {
    const int64_t length = rows / batch, width = n / 3;
    // Groups of whole sequences, of about GROUP_ROWS rows, as many per thread, their sizes within one of each other.
    const int64_t groups = std::min(batch, round_up(std::max<int64_t>(1, batch * length / GROUP_ROWS), threads));
    const int64_t per_group = (batch + groups - 1) / groups;
#pragma omp parallel num_threads(threads)
    {
        _tile_loadconfig(&TILES);
#if STANCE_TILES_EMULATED
        // Float32 multiply-adds stand in for the bf16 products (tiles.h): without subnormals, as vdpbf16ps takes and
        // gives none, so that their sums are its sums; a masked key's weight (2.4e-38) times a value can be one,
        // which would also take the CPU's slow path (not seen to cost time here: 0.99x without, in turns).
        const unsigned control = _mm_getcsr();
        _mm_setcsr(control | _MM_FLUSH_ZERO_ON | _MM_DENORMALS_ZERO_ON);
#endif
        const TileVector<int32_t> shift = zero_point_shift(column_sums, n, zero_point);
        Buffers b(length, heads, width / heads, per_group);
#pragma omp for schedule(static)
        for (int64_t g = 0; g < groups; ++g) {
            const int64_t first = g * batch / groups, last = (g + 1) * batch / groups;
            projections(codes, packed, shift.data(), column_scale, row_scale, row_offset, weight_sum, bias,
                        first * length, (last - first) * length, k, n, b);
            for (int64_t s = first; s < last; ++s)
                one_sequence(b.qkv.data() + (s - first) * length * n, mask + s * length, next_scale,
                             out_codes + s * length * width, out_scale + s * length, out_offset + s * length, length,
                             scale, zero_point, b);
        }
#if STANCE_TILES_EMULATED
        _mm_setcsr(control);
#endif
        _tile_release();
    }
}
#else
extern "C" int stance_amx_attention_built() { return 0; }
extern "C" void stance_amx_qkv_attention(const uint8_t*, const int8_t*, const int32_t*, const float*, const float*,
                                         const float*, const float*, const float*, const float*, const float*,
                                         uint8_t*, float*, float*, int64_t, int64_t, int64_t, int64_t, int64_t,
                                         float, int, int) {}
#endif
