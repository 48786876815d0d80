// BERT's int8 encoder on AMX in one call a batch, for model/amx_encoder.py: the embeddings kernel, then each layer's
// query-key-value attention, attention-output LayerNorm, feed-forward GELU and feed-forward output LayerNorm
// kernels (amx_linear.cpp, amx_attention.cpp, built into this library with it), on buffers the caller made. Called
// one by one from Python, the 25 kernels of a batch spent 0.0125 s of a 2,000-pair pass in ctypes and Python
// (benchmarks/PROFILE.md, session 21).
#include "amx_linear.cpp"
#include "amx_attention.cpp"

// One int8 linear layer's weights as the AMX kernels take them (model/quant.py's Int8Linear on "amx").
struct LinearWeights {
    const int8_t* packed;
    const int32_t* column_sums;
    const float* weight_scale;
    const float* weight_sum;
    const float* bias;
};

// A LayerNorm and the next int8 layer's input smoothing (null for none).
struct NormWeights {
    const float* gamma;
    const float* beta;
    const float* next_scale;
    float eps;
};

// One BERT layer: the query-key-value layer with the attention-output layer's smoothing and the attention's scale,
// the attention-output layer and its LayerNorm, the feed-forward input and output layers and the last LayerNorm.
struct LayerWeights {
    LinearWeights qkv;
    const float* attention_next_scale;
    float scaling;
    LinearWeights attention_output;
    NormWeights attention_norm;
    LinearWeights intermediate;
    LinearWeights output;
    NormWeights output_norm;
};

// The embeddings' tables, LayerNorm and the first query-key-value layer's smoothing, and the tables' sizes.
struct EmbeddingWeights {
    const float* word;
    const float* token_type;
    const float* position;
    NormWeights norm;
    int64_t words, token_types;
};

#if STANCE_BF16_TILES
// The encoder on `batch` sequences of `length` tokens (ids, token types and attention mask [rows]): hidden holds two
// [rows, n] states, the first the result; codes [rows × (2n + inner)] bytes; scales [7][rows] floats (the codes'
// scales and offsets, and the key mask). Returns stance_amx_embed_codes's flags: 0, or which table an index fell
// outside (nothing after the embeddings runs then).
extern "C" int stance_amx_encoder(const EmbeddingWeights* embeddings, const LayerWeights* layers, int64_t count,
                                  const int64_t* ids, const int64_t* types, const int64_t* attended, float* hidden,
                                  uint8_t* codes, float* scales, int64_t batch, int64_t length, int64_t n,
                                  int64_t inner, int64_t heads, int zero_point, int threads) {
    const int64_t rows = batch * length;
    float* const h[2] = {hidden, hidden + rows * n};
    uint8_t* const c[3] = {codes, codes + rows * n, codes + 2 * rows * n};
    // Each codes' rows' scale and offset; the key mask between the first pair and the second.
    float* const s[3][2] = {{scales, scales + rows}, {scales + 3 * rows, scales + 4 * rows},
                            {scales + 5 * rows, scales + 6 * rows}};
    float* const mask = scales + 2 * rows;
    const EmbeddingWeights& e = *embeddings;
    const int outside = stance_amx_embed_codes(ids, types, attended, e.word, e.token_type, e.position, e.norm.gamma,
                                               e.norm.beta, e.norm.next_scale, h[0], c[0], s[0][0], s[0][1], mask,
                                               rows, length, n, e.words, e.token_types, e.norm.eps, zero_point,
                                               threads);
    if (outside) return outside;
    for (int64_t i = 0; i < count; ++i) {
        const LayerWeights& l = layers[i];
        stance_amx_qkv_attention(c[0], l.qkv.packed, l.qkv.column_sums, l.qkv.weight_scale, s[0][0], s[0][1],
                                 l.qkv.weight_sum, l.qkv.bias, mask, l.attention_next_scale, c[1], s[1][0], s[1][1],
                                 rows, n, 3 * n, batch, heads, l.scaling, zero_point, threads);
        const LinearWeights& a = l.attention_output;
        stance_amx_linear_norm(c[1], a.packed, a.column_sums, a.weight_scale, s[1][0], s[1][1], a.weight_sum, a.bias,
                               h[0], l.attention_norm.gamma, l.attention_norm.beta, l.attention_norm.next_scale, h[1],
                               c[0], s[0][0], s[0][1], rows, n, n, l.attention_norm.eps, zero_point, threads);
        const LinearWeights& f = l.intermediate;
        stance_amx_gelu_codes(c[0], f.packed, f.column_sums, f.weight_scale, s[0][0], s[0][1], f.weight_sum, f.bias,
                              c[2], s[2][0], s[2][1], rows, n, inner, zero_point, threads);
        const LinearWeights& o = l.output;
        stance_amx_linear_norm(c[2], o.packed, o.column_sums, o.weight_scale, s[2][0], s[2][1], o.weight_sum, o.bias,
                               h[1], l.output_norm.gamma, l.output_norm.beta, l.output_norm.next_scale, h[0], c[0],
                               s[0][0], s[0][1], rows, inner, n, l.output_norm.eps, zero_point, threads);
    }
    return 0;
}
#else
extern "C" int stance_amx_encoder(const EmbeddingWeights*, const LayerWeights*, int64_t, const int64_t*,
                                  const int64_t*, const int64_t*, float*, uint8_t*, float*, int64_t, int64_t, int64_t,
                                  int64_t, int64_t, int, int) {
    return -1;
}
#endif
