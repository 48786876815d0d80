// Self-attention for short sequences on the CPU, in one pass per (sequence, head): scores, scale, additive key
// mask, softmax and the weighted sum of values, reading queries, keys and values in their [batch, length,
// heads * head_size] layout and writing the output in it. On 2,000 NewsMTSC pairs (30-40 tokens, head size 32) it
// took 0.63 s where the compiled matmul-softmax-matmul graph's attention kernels took 1.0 s (benchmarks/PROFILE.md).
// Built and loaded by model/fused_attention.py; fp32 throughout, GCC/Clang vector types at the width -march=native gives.
#include <cstdint>
#include <cmath>
#include <vector>

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

// x - 0 is x for every x, so this compiles to a bare broadcast (folded into the FMAs that use it); 0 + x is not (-0),
// which left a scalar add before every broadcast and cost 10% of the kernel's time.
static inline vf splat(float x) { return x - vf{}; }

// e^x, with a relative error of about 2e-7; 0 below -87.
static inline vf vexp(vf x) {
    const vi underflow = x < splat(-87.0f);
    x = x < splat(-87.0f) ? splat(-87.0f) : x;
    x = x > splat(88.0f) ? splat(88.0f) : x;
    vf n = x * splat(1.44269504088896341f) + splat(12582912.0f);
    n = n - splat(12582912.0f);
    vf r = x - n * splat(0.693359375f) + n * splat(2.12194440e-4f);
    vf p = splat(1.9875691500e-4f);
    p = p * r + splat(1.3981999507e-3f);
    p = p * r + splat(8.3334519073e-3f);
    p = p * r + splat(4.1665795894e-2f);
    p = p * r + splat(1.6666665459e-1f);
    p = p * r + splat(5.0000001201e-1f);
    p = p * r * r + r + splat(1.0f);
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

// Halves of a vector, for reductions in log steps rather than lane by lane.
static inline void halves(vf x, vh& lo, vh& hi) {
    __builtin_memcpy(&lo, &x, sizeof lo);
    __builtin_memcpy(&hi, reinterpret_cast<const char*>(&x) + sizeof lo, sizeof hi);
}

static inline float hmax(vf x) {
    vh lo, hi;
    halves(x, lo, hi);
    const vh m = lo > hi ? lo : hi;
    float out = m[0];
    for (int i = 1; i < W / 2; ++i) out = m[i] > out ? m[i] : out;
    return out;
}

static inline float hsum(vf x) {
    vh lo, hi;
    halves(x, lo, hi);
    const vh t = lo + hi;
    float out = t[0];
    for (int i = 1; i < W / 2; ++i) out += t[i];
    return out;
}

static inline vf loadv(const float* p) {
    vf x;
    __builtin_memcpy(&x, p, sizeof x);
    return x;
}

static inline void storev(float* p, vf x) { __builtin_memcpy(p, &x, sizeof x); }

// One (sequence, head). HS is the head size where it is a multiple of the vector width, 0 for any other; R query
// rows go together, so that each key and value vector loaded serves R of them.
// Scores are taken for two key blocks at once, so that each query value loaded serves both: 2R accumulators, which
// fit AVX-512's 32 vector registers with R = 8 and the 16 of AVX2 and NEON with R = 4.
#if defined(__AVX512F__)
constexpr int R = 8;
#else
constexpr int R = 4;
#endif

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
    float* ktf = reinterpret_cast<float*>(kt);
    for (int64_t d = 0; d < hs; ++d) {
        for (int64_t j = length; j < blocks * W; ++j) ktf[d * blocks * W + j] = 0.0f;
    }
    // Key dimension outer, so the writes run along kt's rows: 8% faster than key position outer.
    for (int64_t d = 0; d < hs; ++d) {
        for (int64_t j = 0; j < length; ++j) ktf[d * blocks * W + j] = k[j * row + d];
    }
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
                sr[c] = vexp(sr[c] - m);
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
