// Self-attention for short sequences on the CPU, in one pass per (sequence, head): scores, scale, additive key
// mask, softmax and the weighted sum of values, reading queries, keys and values in their [batch, length,
// heads * head_size] layout and writing the output in it. On 2,000 NewsMTSC pairs (30-40 tokens, head size 32) it
// took 0.63 s where the compiled matmul-softmax-matmul graph's attention kernels took 1.0 s (benchmarks/PROFILE.md).
// Built and loaded by model/fused_attention.py; fp32 throughout, GCC/Clang vector types at the width -march=native gives.
#include <cstdint>
#include <cmath>
#include <vector>

#include "vec.h"

// One (sequence, head). HS is the head size where it is a multiple of the vector width, 0 for any other; R query
// rows go together, so that each key and value vector loaded serves R of them.
// Scores are taken for two key blocks at once, so that each query value loaded serves both: 2R accumulators, which
// fit AVX-512's 32 vector registers with R = 8 and the 16 of AVX2 and NEON with R = 4.
#if defined(__AVX512F__)
constexpr int R = 8;
#else
constexpr int R = 4;
#endif

// kt[d * blocks + c]: dimension d of keys c W to c W + W - 1, 0 past the last key. With AVX-512 and a head size of
// 16, 32 or 64, 16 x 16 blocks transposed in registers, else element by element, dimension outer so the writes run
// along kt's rows (8% faster than key position outer). perf had the element-wise loop at about a sixth of the
// kernel's time. With this, the softmax's exp_nonpositive and vec.h's AVX-512 reductions the kernel takes 0.793x
// the time per call (benchmarks/results/attention_kernel.json, against 083d40f).
template <int HS>
static inline void transpose_keys(const float* k, vf* kt, int64_t length, int64_t row, int64_t hs, int64_t blocks) {
#if defined(__AVX512F__)
    if constexpr (HS > 0) {
        for (int64_t c = 0; c < blocks; ++c) {
            for (int64_t d0 = 0; d0 < HS; d0 += 16) {
                __m512 rows[16], cols[16];
                for (int r = 0; r < 16; ++r) {
                    const int64_t j = c * 16 + r;
                    rows[r] = j < length ? _mm512_loadu_ps(k + j * row + d0) : _mm512_setzero_ps();
                }
                transpose16(rows, cols);
                for (int dd = 0; dd < 16; ++dd) kt[(d0 + dd) * blocks + c] = (vf)cols[dd];
            }
        }
        return;
    }
#endif
    float* ktf = reinterpret_cast<float*>(kt);
    for (int64_t d = 0; d < hs; ++d) {
        for (int64_t j = length; j < blocks * W; ++j) ktf[d * blocks * W + j] = 0.0f;
    }
    for (int64_t d = 0; d < hs; ++d) {
        for (int64_t j = 0; j < length; ++j) ktf[d * blocks * W + j] = k[j * row + d];
    }
}

template <int HS>
static void one_head(const float* q, const float* k, const float* v, const float* mask, float* out, int64_t length,
                     int64_t row, int64_t out_row, int64_t head_size, float scale, vf* kt, vf* s, vf* keymask) {
    const int64_t blocks = (length + W - 1) / W;
    const int64_t hs = HS ? HS : head_size;
    for (int64_t c = 0; c < blocks; ++c) {
        for (int l = 0; l < W; ++l) {
            const int64_t j = c * W + l;
            keymask[c][l] = j < length ? mask[j] : -INFINITY;
        }
    }
    transpose_keys<HS>(k, kt, length, row, hs, blocks);
    const vf vscale = splat(scale);
    for (int64_t i0 = 0; i0 < length; i0 += R) {
        const int rows = length - i0 < R ? int(length - i0) : R;
        const float* qi[R];
        for (int r = 0; r < R; ++r) qi[r] = q + (i0 + (r < rows ? r : 0)) * row;
        float inv[R];
        int64_t c = 0;
        for (; c + 1 < blocks; c += 2) {
            vf acc0[R] = {}, acc1[R] = {};
            for (int64_t d = 0; d < hs; ++d) {
                const vf k0 = kt[d * blocks + c], k1 = kt[d * blocks + c + 1];
                for (int r = 0; r < R; ++r) {
                    const vf qd = splat(qi[r][d]);
                    acc0[r] += qd * k0;
                    acc1[r] += qd * k1;
                }
            }
            for (int r = 0; r < R; ++r) {
                s[r * blocks + c] = acc0[r] * vscale + keymask[c];
                s[r * blocks + c + 1] = acc1[r] * vscale + keymask[c + 1];
            }
        }
        for (; c < blocks; ++c) {
            vf acc[R] = {};
            for (int64_t d = 0; d < hs; ++d) {
                const vf kd = kt[d * blocks + c];
                for (int r = 0; r < R; ++r) acc[r] += splat(qi[r][d]) * kd;
            }
            for (int r = 0; r < R; ++r) s[r * blocks + c] = acc[r] * vscale + keymask[c];
        }
        for (int r = 0; r < R; ++r) {
            vf* sr = s + r * blocks;
            vf mv = sr[0];
            for (int64_t c = 1; c < blocks; ++c) mv = sr[c] > mv ? sr[c] : mv;
            const vf m = splat(hmax(mv));
            vf total = {};
            for (int64_t c = 0; c < blocks; ++c) {
                sr[c] = exp_nonpositive(sr[c] - m);
                total += sr[c];
            }
            inv[r] = 1.0f / hsum(total);
        }
        const float* p = reinterpret_cast<const float*>(s);
        const int64_t pstride = blocks * W;
        if constexpr (HS > 0) {
            vf o[R][HS / W] = {};
            for (int64_t j = 0; j < length; ++j) {
                vf vj[HS / W];
                for (int e = 0; e < HS / W; ++e) vj[e] = loadv(v + j * row + e * W);
                for (int r = 0; r < R; ++r) {
                    const vf pj = splat(p[r * pstride + j]);
                    for (int e = 0; e < HS / W; ++e) o[r][e] += pj * vj[e];
                }
            }
            for (int r = 0; r < rows; ++r) {
                for (int e = 0; e < HS / W; ++e) storev(out + (i0 + r) * out_row + e * W, o[r][e] * inv[r]);
            }
        } else {
            for (int r = 0; r < rows; ++r) {
                float* oi = out + (i0 + r) * out_row;
                for (int64_t d = 0; d < hs; ++d) {
                    float acc = 0.0f;
                    for (int64_t j = 0; j < length; ++j) acc += p[r * pstride + j] * v[j * row + d];
                    oi[d] = acc * inv[r];
                }
            }
        }
    }
}

// q, k and v rows are `row` floats apart (the width, or more where the three lie side by side in one tensor); out
// is contiguous.
extern "C" void stance_attention(const float* q, const float* k, const float* v, const float* mask, float* out,
                                 int64_t batch, int64_t length, int64_t heads, int64_t head_size, int64_t row,
                                 float scale, int threads) {
    const int64_t blocks = (length + W - 1) / W;
    const int64_t out_row = heads * head_size;
#pragma omp parallel num_threads(threads)
    {
        std::vector<vf> kt(head_size * blocks), s(R * blocks), keymask(blocks);
#pragma omp for schedule(static)
        for (int64_t bh = 0; bh < batch * heads; ++bh) {
            const int64_t b = bh / heads, h = bh % heads;
            const int64_t at = b * length * row + h * head_size, out_at = b * length * out_row + h * head_size;
            auto run = head_size == 16 ? one_head<16> : head_size == 32 ? one_head<32> : head_size == 64 ? one_head<64> : one_head<0>;
            run(q + at, k + at, v + at, mask + b * length, out + out_at, length, row, out_row, head_size, scale, kt.data(), s.data(),
                keymask.data());
        }
    }
}
