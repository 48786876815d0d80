// The int8 linear layer's GEMM on AMX's int8 tiles (Intel Xeon from Sapphire Rapids on): uint8 codes (the int8
// codes plus a zero point) times int8 weights packed once into tile order. stance_amx_linear dequantises each
// 32 × 32 block of int32 sums into the layer's float32 output in the same pass; stance_amx_gelu_codes ends the
// feed-forward input layer in GELU and the output layer's codes (gelu.h) instead, and stance_amx_linear_norm the
// attention-output and feed-forward-output layers in the residual, LayerNorm and the next layer's codes. The GEMM
// itself is amx.h's. Built and loaded by model/fused_attention.py; without AMX, on emulated tiles (tiles.h); on a
// CPU without AMX or AVX512-VNNI, to a stub whose init fails.
#include <cfloat>
#include <cstdint>

#include "tiles.h"

#if STANCE_INT8_TILES
#include <sys/syscall.h>
#include <unistd.h>

#include "amx.h"
#include "gelu.h"

// 0 once Linux lets this process use AMX's tile registers (ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA); emulated
// tiles need no leave.
extern "C" int stance_amx_init() {
    return STANCE_TILES_EMULATED ? 0 : static_cast<int>(syscall(SYS_arch_prctl, 0x1023, 18));
}

// weights [k, n] row-major into tiles [columns / 16][depth / 64][16 depth quads][16 columns][4 depths], with k and n
// padded by zeros to multiples of 64 and 32: (round_up(n, 32) / 16) * (round_up(k, 64) / 64) tiles of 1,024 bytes.
extern "C" void stance_amx_pack(const int8_t* weights, int8_t* packed, int64_t k, int64_t n) {
    const int64_t depth = round_up(k, 64), columns = round_up(n, BLOCK);
    for (int64_t column = 0; column < columns; ++column)
        for (int64_t d = 0; d < depth; ++d) {
            const int64_t tile = (column / 16) * (depth / 64) + d / 64;
            packed[tile * 1024 + (d % 64) / 4 * TILE_BYTES + (column % 16) * 4 + d % 4] =
                column < n && d < k ? weights[d * n + column] : 0;
        }
}

// The `valid` rows from `first` of a block's sums [STRIPE][BLOCK] at `column`, dequantised into `out`, in the order
// of Int8Linear's torch steps: products, times the row's scale, plus its offset's share, plus the bias.
static void dequantise_block(const int32_t (*sums)[BLOCK], int64_t first, int64_t valid, int64_t column, int64_t n,
                             const float* column_scale, const float* row_scale, const float* row_offset,
                             const float* weight_sum, const float* bias, float* out) {
    for (int64_t c = column; c < std::min(column + BLOCK, n); c += 16) {
        const __mmask16 mask = lanes(n - c);
        const __m512 scale = _mm512_maskz_loadu_ps(mask, column_scale + c);
        const __m512 sum = _mm512_maskz_loadu_ps(mask, weight_sum + c);
        const __m512 shift = bias ? _mm512_maskz_loadu_ps(mask, bias + c) : _mm512_setzero_ps();
        for (int64_t r = 0; r < valid; ++r) {
            const __m512 product = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_load_si512(&sums[r][c - column])), scale);
            __m512 y = _mm512_mul_ps(product, _mm512_set1_ps(row_scale[first + r]));
            y = _mm512_add_ps(y, _mm512_mul_ps(_mm512_set1_ps(row_offset[first + r]), sum));
            _mm512_mask_storeu_ps(out + (first + r) * n + c, mask, _mm512_add_ps(y, shift));
        }
    }
}

// The int8 linear layer's output, dequantised: out [rows, n] = (codes [rows, k] · weights - zero_point ×
// column_sums) × column_scale × row_scale + row_offset × weight_sum + bias (bias may be null), for `packed` from
// stance_amx_pack: model/quant.py's Int8Linear on the codes of its input.
extern "C" void stance_amx_linear(const uint8_t* codes, const int8_t* packed, const int32_t* column_sums,
                                  const float* column_scale, const float* row_scale, const float* row_offset,
                                  const float* weight_sum, const float* bias, float* out, int64_t rows, int64_t k,
                                  int64_t n, int zero_point, int threads) {
    const int64_t depth = round_up(k, 64), depth_tiles = depth / 64, stripes = (rows + STRIPE - 1) / STRIPE;
    const int64_t blocks = (n + BLOCK - 1) / BLOCK;
#pragma omp parallel num_threads(threads)
    {
        _tile_loadconfig(&TILES);
        const TileVector<int32_t> shift = zero_point_shift(column_sums, n, zero_point);
        alignas(64) int32_t sums[STRIPE][BLOCK];
        TileVector<uint8_t> padded;
        int64_t stripe = -1, stride = k;
        const uint8_t* a = nullptr;
        // The block whose sums wait in `sums`: each block's are dequantised while the next block's multiplies run
        // on the tiles, which the CPU overlaps with vector work (0.96-0.97x the time of dequantising each block
        // after its own multiplies: ad hoc, benchmarks/PROFILE.md, session 18).
        int64_t pending_first = -1, pending_valid = 0, pending_column = 0;
        auto dequantise_pending = [&] {
            if (pending_first >= 0)
                dequantise_block(sums, pending_first, pending_valid, pending_column, n, column_scale, row_scale,
                                 row_offset, weight_sum, bias, out);
        };
        // Work items are blocks (a stripe's BLOCK columns), so that a few stripes still fill every thread.
#pragma omp for schedule(static)
        for (int64_t item = 0; item < stripes * blocks; ++item) {
            const int64_t first = item / blocks * STRIPE, valid = std::min<int64_t>(STRIPE, rows - first);
            if (item / blocks != stripe) {
                stripe = item / blocks;
                a = stripe_codes(codes, first, valid, k, depth, padded, stride);
            }
            const int64_t column = item % blocks * BLOCK;
            block_product(shift.data() + column, 0, a, stride, weight_tiles(packed, column, depth_tiles), depth_tiles, 0,
                          depth_tiles, &sums[0][0], BLOCK, dequantise_pending);
            pending_first = first, pending_valid = valid, pending_column = column;
        }
        dequantise_pending();
        _tile_release();
    }
}

// Depth tiles per pass over a stripe's blocks in stripe_rows: the stripe's codes for them (32 rows of 512) stay in L1
// while the weights stream from L2. At 1,536 input features the stripe's whole depth (48 KB) did not, and the GEMM
// ran at 0.75x its rate at 384 (a standalone loop on one core, benchmarks/PROFILE.md, session 20).
constexpr int64_t DEPTH_CHUNK = 8;

// `row(sums, ld, i, count, scratch)` on the rows of the int32 sums of codes [rows, k] times the packed weights, less
// the zero point's share, two rows at a time (count 2, or 1 for a last odd row; `sums`: row i's n sums, row i + 1's
// `ld` further), up to TOGETHER stripes' whole rows at a time while they are in cache, so that the [rows, n] sums
// are never written out. `Scratch` is each thread's own, made from n. Stripes multiplied together load each
// block's weights from L2 for the first only, from L1 for the others, but their sums take TOGETHER times the cache
// for the rows' step.
template <class Scratch, int64_t TOGETHER, class Row>
static void stripe_rows(const uint8_t* codes, const int8_t* packed, const int32_t* column_sums, int64_t rows,
                        int64_t k, int64_t n, int zero_point, int threads, Row row) {
    const int64_t depth = round_up(k, 64), depth_tiles = depth / 64, stripes = (rows + STRIPE - 1) / STRIPE;
    const int64_t columns = round_up(n, BLOCK);
    // Groups of at most TOGETHER stripes, as many for each thread, their sizes within one of each other: as even a
    // share of stripes for each thread as one stripe at a time gives.
    const int64_t groups = round_up((stripes + TOGETHER - 1) / TOGETHER, threads);
#pragma omp parallel num_threads(threads)
    {
        _tile_loadconfig(&TILES);
        const TileVector<int32_t> shift = zero_point_shift(column_sums, n, zero_point);
        TileVector<int32_t> sums(TOGETHER * STRIPE * columns);
        TileVector<uint8_t> padded[TOGETHER];
        Scratch scratch(n);
#pragma omp for schedule(static)
        for (int64_t group = 0; group < groups; ++group) {
            const int64_t stripe = group * stripes / groups, count = (group + 1) * stripes / groups - stripe;
            const uint8_t* a[TOGETHER];
            int64_t stride[TOGETHER];
            for (int64_t s = 0; s < count; ++s) {
                const int64_t first = (stripe + s) * STRIPE;
                a[s] = stripe_codes(codes, first, std::min<int64_t>(STRIPE, rows - first), k, depth, padded[s],
                                    stride[s]);
            }
            for (int64_t from = 0; from < depth_tiles; from += DEPTH_CHUNK)
                for (int64_t column = 0; column < n; column += BLOCK)
                    for (int64_t s = 0; s < count; ++s) {
                        int32_t* block = sums.data() + s * STRIPE * columns + column;
                        // The shift first, then the sums of the depths before.
                        block_product(from == 0 ? shift.data() + column : block, from == 0 ? 0 : columns, a[s],
                                      stride[s], weight_tiles(packed, column, depth_tiles), depth_tiles, from,
                                      std::min(depth_tiles, from + DEPTH_CHUNK), block, columns, [] {});
                    }
            const int64_t valid = std::min(count * STRIPE, rows - stripe * STRIPE);
            for (int64_t r = 0; r < valid; r += 2)
                row(sums.data() + r * columns, columns, stripe * STRIPE + r, std::min<int64_t>(2, valid - r),
                    scratch);
        }
        _tile_release();
    }
}

constexpr int64_t GELU_TOGETHER = 2;

// gelu_codes_row's tables and scratch.
struct GeluScratch {
    const SplineRegisters tables;
    std::vector<vf> gelu;
    std::vector<float> tail;
    explicit GeluScratch(int64_t n) : gelu(n / W), tail(n % W) {}
};

// The feed-forward layer's middle straight from AMX's sums: each row's int32 products (less the zero point's share)
// go through gelu_codes_row (gelu.h). The arguments after `packed` and `column_sums` are gelu_codes's
// (gelu_codes.cpp) with the products' int32 path, and the same as stance_amx_linear's. A stripe's rows go through
// GELU after all its blocks are stored: one row between each block's multiplies (for the CPU to overlap the two,
// with a second stripe's sums) took 1.14x the time (ad hoc, benchmarks/PROFILE.md, session 18).
extern "C" void stance_amx_gelu_codes(const uint8_t* codes, const int8_t* packed, const int32_t* column_sums,
                                      const float* column_scale, const float* row_scale, const float* row_offset,
                                      const float* weight_sum, const float* bias, uint8_t* out_codes, float* out_scale,
                                      float* out_offset, int64_t rows, int64_t k, int64_t n, int zero_point,
                                      int threads) {
    stripe_rows<GeluScratch, GELU_TOGETHER>(
        codes, packed, column_sums, rows, k, n, zero_point, threads,
        [&](const int32_t* sums, int64_t ld, int64_t first, int64_t count, GeluScratch& s) {
            for (int64_t i = first; i < first + count; ++i, sums += ld)
                gelu_codes_row(sums, column_scale, row_scale[i], row_offset[i], weight_sum, bias, n, zero_point,
                               s.tables, s.gelu.data(), s.tail.data(), out_codes + i * n, out_scale + i,
                               out_offset + i);
        });
}

// The vectors of one row: with V > 0 (a width of 16 V), V vectors that the compiler keeps in registers once the
// loops over them are unrolled; with V = 0, any width, in memory.
template <int V>
struct RowVectors {
    __m512 v[V];
    explicit RowVectors(int64_t) {}
    __m512& operator[](int64_t c) { return v[c]; }
};
template <>
struct RowVectors<0> {
    struct Vector {
        __m512 x;
    };
    std::vector<Vector> v;
    explicit RowVectors(int64_t n) : v((n + 15) / 16) {}
    __m512& operator[](int64_t c) { return v[c].x; }
};

// Two rows' vectors, for linear_norm's rows two at a time.
template <int V>
struct TwoRows {
    RowVectors<V> first, second;
    explicit TwoRows(int64_t n) : first(n), second(n) {}
};

// A sum of four partial sums, for a shorter dependency chain than one.
static float sum4(const __m512 parts[4]) {
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(parts[0], parts[1]), _mm512_add_ps(parts[2], parts[3])));
}

// A LayerNorm row's middle: `y` holds the row's width values, `total` and `squares` four partial sums of them and of
// their squares; normalises them (gamma, beta, eps) into `hidden` and leaves in `y` their product with `next_scale`
// (null for none), giving those values' codes' scale. Every pointer is an argument: as a lambda reading them through
// its captures, each vector reloaded them (a code's byte store may alias anything): 534 scalar movs in the
// LayerNorm kernel's OpenMP function, 147 after (session 20).
template <int V>
static inline RowCodes norm_scaled(RowVectors<V>& y, const __m512 total[4], const __m512 squares[4], int64_t width,
                                   const float* gamma, const float* beta, const float* next_scale, float eps,
                                   int zero_point, float* hidden) {
    const int64_t vectors = (width + 15) / 16;
    // The mean and the mean square from one pass (session 20: 0.93x the attention-output kernel's time, before the
    // pointers were arguments). A row's squared mean is small next to its mean square, so their difference keeps
    // its digits (the tests compare with torch's LayerNorm); the floor at 0 guards the rounding.
    const float mean = sum4(total) / width;
    const __m512 rstd = _mm512_set1_ps(1.0f / std::sqrt(std::fmax(sum4(squares) / width - mean * mean, 0.0f) + eps));
    const __m512 shift = _mm512_set1_ps(-mean);
    // Four running extremes each, for chains a quarter as long (the step is bound by its chains of waits).
    __m512 low[4], high[4];
    for (int j = 0; j < 4; ++j) low[j] = _mm512_set1_ps(INFINITY), high[j] = _mm512_set1_ps(-INFINITY);
#pragma GCC unroll 24
    for (int64_t c = 0; c < vectors; ++c) {
        const __mmask16 mask = lanes(width - 16 * c);
        // (y - mean) × rstd × gamma + beta
        const __m512 times = _mm512_mul_ps(rstd, _mm512_maskz_loadu_ps(mask, gamma + 16 * c));
        const __m512 h = _mm512_fmadd_ps(_mm512_add_ps(y[c], shift), times, _mm512_maskz_loadu_ps(mask, beta + 16 * c));
        _mm512_mask_storeu_ps(hidden + 16 * c, mask, h);
        y[c] = next_scale ? _mm512_mul_ps(h, _mm512_maskz_loadu_ps(mask, next_scale + 16 * c)) : h;
        low[c % 4] = _mm512_mask_min_ps(low[c % 4], mask, low[c % 4], y[c]);
        high[c % 4] = _mm512_mask_max_ps(high[c % 4], mask, high[c % 4], y[c]);
    }
    const __m512 lowest = _mm512_min_ps(_mm512_min_ps(low[0], low[1]), _mm512_min_ps(low[2], low[3]));
    const __m512 highest = _mm512_max_ps(_mm512_max_ps(high[0], high[1]), _mm512_max_ps(high[2], high[3]));
    return RowCodes(_mm512_reduce_min_ps(lowest), _mm512_reduce_max_ps(highest), zero_point);
}

// The codes of a row's values `y` into `codes`, and their scale and offset.
template <int V>
static inline void store_row_codes(RowVectors<V>& y, const RowCodes& row_codes, int64_t width, int zero_point,
                                   uint8_t* codes, float* out_scale, float* out_offset) {
    const int64_t vectors = (width + 15) / 16;
#pragma GCC unroll 24
    for (int64_t c = 0; c < vectors; ++c) row_codes.store(y[c], zero_point, codes + 16 * c, lanes(width - 16 * c));
    *out_scale = row_codes.scale;
    *out_offset = row_codes.offset;
}

// The second half of a LayerNorm row (norm_scaled, then the codes), for linear_norm and embed_row.
template <int V>
static inline void norm_codes(RowVectors<V>& y, const __m512 total[4], const __m512 squares[4], int64_t width,
                              const float* gamma, const float* beta, const float* next_scale, float eps,
                              int zero_point, float* hidden, uint8_t* codes, float* out_scale, float* out_offset) {
    const RowCodes row_codes = norm_scaled<V>(y, total, squares, width, gamma, beta, next_scale, eps, zero_point,
                                              hidden);
    store_row_codes<V>(y, row_codes, width, zero_point, codes, out_scale, out_offset);
}

// The first half of a row of linear_norm (below): the row's dense output from its n int32 `sums`, plus its
// `residual`, into `y`, and their partial sums and sums of squares.
template <int V>
static inline void dense_residual(const int32_t* sums, RowVectors<V>& y, __m512 total[4], __m512 squares[4],
                                  int64_t width, float row_scale, float row_offset, const float* column_scale,
                                  const float* weight_sum, const float* bias, const float* residual) {
    const int64_t vectors = (width + 15) / 16;
    const __m512 scale = _mm512_set1_ps(row_scale), offset = _mm512_set1_ps(row_offset);
    for (int j = 0; j < 4; ++j) total[j] = squares[j] = _mm512_setzero_ps();
#pragma GCC unroll 24
    for (int64_t c = 0; c < vectors; ++c) {
        const __mmask16 mask = lanes(width - 16 * c);
        const __m512 sum = _mm512_cvtepi32_ps(_mm512_maskz_loadu_epi32(mask, sums + 16 * c));
        __m512 v = _mm512_fmadd_ps(_mm512_mul_ps(sum, _mm512_maskz_loadu_ps(mask, column_scale + 16 * c)), scale,
                                   _mm512_mul_ps(offset, _mm512_maskz_loadu_ps(mask, weight_sum + 16 * c)));
        if (bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, bias + 16 * c));
        y[c] = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, residual + 16 * c));
        total[c % 4] = _mm512_add_ps(total[c % 4], y[c]);  // masked-off lanes are 0
        squares[c % 4] = _mm512_fmadd_ps(y[c], y[c], squares[c % 4]);
    }
}

// One row of embed_codes (below): the sum of its word, token type and position embeddings' rows, in
// model/bert.py's order ((word + token type) + position).
template <int V>
static inline void embed_row(const float* word, const float* token_type, const float* position, RowVectors<V>& y,
                             int64_t width, const float* gamma, const float* beta, const float* next_scale, float eps,
                             int zero_point, float* hidden, uint8_t* codes, float* out_scale, float* out_offset) {
    const int64_t vectors = (width + 15) / 16;
    __m512 total[4] = {}, squares[4] = {};
#pragma GCC unroll 24
    for (int64_t c = 0; c < vectors; ++c) {
        const __mmask16 mask = lanes(width - 16 * c);
        const __m512 v = _mm512_add_ps(_mm512_maskz_loadu_ps(mask, word + 16 * c),
                                       _mm512_maskz_loadu_ps(mask, token_type + 16 * c));
        y[c] = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, position + 16 * c));
        total[c % 4] = _mm512_add_ps(total[c % 4], y[c]);
        squares[c % 4] = _mm512_fmadd_ps(y[c], y[c], squares[c % 4]);
    }
    norm_codes<V>(y, total, squares, width, gamma, beta, next_scale, eps, zero_point, hidden, codes, out_scale,
                  out_offset);
}

// Rows ahead whose word embeddings embed_codes prefetches: the table (47 MB at all-MiniLM-L6-v2's vocabulary) is
// read a row here and there, and in perf three quarters of the kernel's samples sat on each row's first load while
// the machine ran slow, when the kernel took 7.5% of a pass (benchmarks/PROFILE.md, session 22).
constexpr int64_t AHEAD = 6;

// BERT's embeddings for the int8 path (model/bert.py's Embeddings, scoring): each token's word, token type and
// position embeddings summed (`ids` and `types` [rows], sequences of `length` tokens, so row i is at position
// i % length), through the LayerNorm (gamma, beta, eps) into `hidden` [rows, n], and quantised for the first
// query-key-value layer as linear_norm quantises for the next layer (next_scale its smoothing, null for none).
// Also the attention's additive key mask [rows] from the attention mask `attended` (0 where attended, else the
// float32 minimum, as model/bert.py makes it). Returns 0, or where an index falls outside its table (`words` word
// embeddings, `token_types` token types) 1 for a word, 2 for a token type, or both; those rows are left unwritten.
template <int V>
static int embed_codes(const int64_t* ids, const int64_t* types, const int64_t* attended, const float* word,
                       const float* token_type, const float* position, const float* gamma, const float* beta,
                       const float* next_scale, float* hidden, uint8_t* codes, float* out_scale, float* out_offset,
                       float* key_mask, int64_t rows, int64_t length, int64_t n, int64_t words, int64_t token_types,
                       float eps, int zero_point, int threads) {
    const int64_t width = V ? 16 * V : n;
    int outside = 0;
#pragma omp parallel num_threads(threads) reduction(| : outside)
    {
        RowVectors<V> y(width);
#pragma omp for schedule(static)
        for (int64_t i = 0; i < rows; ++i) {
            if (i + AHEAD < rows && ids[i + AHEAD] >= 0 && ids[i + AHEAD] < words) {
                const char* next = reinterpret_cast<const char*>(word + ids[i + AHEAD] * width);
                for (int64_t line = 0; line < width * 4; line += 64) _mm_prefetch(next + line, _MM_HINT_T0);
            }
            key_mask[i] = attended[i] ? 0.0f : -FLT_MAX;
            const int bad = (ids[i] < 0 || ids[i] >= words) | (types[i] < 0 || types[i] >= token_types) << 1;
            if (bad) {
                outside |= bad;
                continue;
            }
            embed_row<V>(word + ids[i] * width, token_type + types[i] * width, position + i % length * width, y,
                         width, gamma, beta, next_scale, eps, zero_point, hidden + i * width, codes + i * width,
                         out_scale + i, out_offset + i);
        }
    }
    return outside;
}

extern "C" int stance_amx_embed_codes(const int64_t* ids, const int64_t* types, const int64_t* attended,
                                      const float* word, const float* token_type, const float* position,
                                      const float* gamma, const float* beta, const float* next_scale, float* hidden,
                                      uint8_t* codes, float* out_scale, float* out_offset, float* key_mask,
                                      int64_t rows, int64_t length, int64_t n, int64_t words, int64_t token_types,
                                      float eps, int zero_point, int threads) {
    auto run = n == 16 * 24 ? embed_codes<24> : embed_codes<0>;
    return run(ids, types, attended, word, token_type, position, gamma, beta, next_scale, hidden, codes, out_scale,
               out_offset, key_mask, rows, length, n, words, token_types, eps, zero_point, threads);
}

// BERT's attention-output and feed-forward-output step from AMX's sums, for a layer whose LayerNorm feeds another
// int8 layer: each row of the layer's output (dequantised as by stance_amx_linear) plus the residual goes through
// the LayerNorm (gamma, beta, eps) into `hidden`, and the result, times `next_scale` (the next layer's smoothing;
// null for none), is quantised for the next layer as model/quant.py's Int8Linear does: codes plus zero_point, with
// the row's scale and offset. Neither the layer's output nor the normed rows are read back from memory. V is n / 16
// where the rows are kept in registers (0.82-0.94x the time at 384 x 384 columns, 0.92-0.99x at 1,536 x 384:
// benchmarks/PROFILE.md, session 19), else 0.
template <int V>
static void linear_norm(const uint8_t* codes, const int8_t* packed, const int32_t* column_sums,
                        const float* column_scale, const float* row_scale, const float* row_offset,
                        const float* weight_sum, const float* bias, const float* residual, const float* gamma,
                        const float* beta, const float* next_scale, float* hidden, uint8_t* out_codes,
                        float* out_scale, float* out_offset, int64_t rows, int64_t k, int64_t n, float eps,
                        int zero_point, int threads) {
    const int64_t width = V ? 16 * V : n;
    stripe_rows<TwoRows<V>, 1>(
        codes, packed, column_sums, rows, k, width, zero_point, threads,
        [&](const int32_t* sums, int64_t ld, int64_t i, int64_t count, TwoRows<V>& y) {
            // Two rows step by step, each step of the second after the first's, so that the CPU runs one row's
            // work while the other waits on its sums' and extremes' reductions: 0.95-0.98x the time of a row at a
            // time (kernel_revisions, three runs of 21 rounds, benchmarks/PROFILE.md, session 21).
            __m512 total[2][4], squares[2][4];
            dense_residual<V>(sums, y.first, total[0], squares[0], width, row_scale[i], row_offset[i], column_scale,
                              weight_sum, bias, residual + i * width);
            if (count == 1) {
                norm_codes<V>(y.first, total[0], squares[0], width, gamma, beta, next_scale, eps, zero_point,
                              hidden + i * width, out_codes + i * width, out_scale + i, out_offset + i);
                return;
            }
            dense_residual<V>(sums + ld, y.second, total[1], squares[1], width, row_scale[i + 1], row_offset[i + 1],
                              column_scale, weight_sum, bias, residual + (i + 1) * width);
            const RowCodes first = norm_scaled<V>(y.first, total[0], squares[0], width, gamma, beta, next_scale, eps,
                                                  zero_point, hidden + i * width);
            const RowCodes second = norm_scaled<V>(y.second, total[1], squares[1], width, gamma, beta, next_scale,
                                                   eps, zero_point, hidden + (i + 1) * width);
            store_row_codes<V>(y.first, first, width, zero_point, out_codes + i * width, out_scale + i,
                               out_offset + i);
            store_row_codes<V>(y.second, second, width, zero_point, out_codes + (i + 1) * width, out_scale + i + 1,
                               out_offset + i + 1);
        });
}

// linear_norm's arguments; rows of 384 columns (MiniLM's width) are kept in registers.
extern "C" void stance_amx_linear_norm(const uint8_t* codes, const int8_t* packed, const int32_t* column_sums,
                                       const float* column_scale, const float* row_scale, const float* row_offset,
                                       const float* weight_sum, const float* bias, const float* residual,
                                       const float* gamma, const float* beta, const float* next_scale, float* hidden,
                                       uint8_t* out_codes, float* out_scale, float* out_offset, int64_t rows, int64_t k,
                                       int64_t n, float eps, int zero_point, int threads) {
    auto run = n == 16 * 24 ? linear_norm<24> : linear_norm<0>;
    run(codes, packed, column_sums, column_scale, row_scale, row_offset, weight_sum, bias, residual, gamma, beta,
        next_scale, hidden, out_codes, out_scale, out_offset, rows, k, n, eps, zero_point, threads);
}
#else
extern "C" int stance_amx_init() { return -1; }
extern "C" void stance_amx_gelu_codes(const uint8_t*, const int8_t*, const int32_t*, const float*, const float*,
                                      const float*, const float*, const float*, uint8_t*, float*, float*, int64_t,
                                      int64_t, int64_t, int, int) {}
extern "C" void stance_amx_linear_norm(const uint8_t*, const int8_t*, const int32_t*, const float*, const float*,
                                       const float*, const float*, const float*, const float*, const float*,
                                       const float*, const float*, float*, uint8_t*, float*, float*, int64_t, int64_t,
                                       int64_t, float, int, int) {}
extern "C" void stance_amx_pack(const int8_t*, int8_t*, int64_t, int64_t) {}
extern "C" int stance_amx_embed_codes(const int64_t*, const int64_t*, const int64_t*, const float*, const float*,
                                      const float*, const float*, const float*, const float*, float*, uint8_t*,
                                      float*, float*, float*, int64_t, int64_t, int64_t, int64_t, int64_t, float, int,
                                      int) {
    return -1;
}
extern "C" void stance_amx_linear(const uint8_t*, const int8_t*, const int32_t*, const float*, const float*,
                                  const float*, const float*, const float*, float*, int64_t, int64_t, int64_t, int,
                                  int) {}
#endif
