// The feed-forward layer's middle on the CPU, in one pass per row (gelu.h), after a GEMM that wrote its products to
// memory (oneDNN's int8 Linear or torch._int_mm). Built and loaded by model/fused_attention.py.
#include <cstdint>
#include <vector>

#include "gelu.h"

// raw: the GEMM's [rows, n] products, float32 (already times each column's weight scale) or, with column_scale,
// int32; codes: [rows, n] bytes, the int8 code plus zero_point (0 for int8 codes, 128 for uint8 ones).
extern "C" void stance_gelu_codes(const void* raw, const float* column_scale, const float* row_scale,
                                  const float* row_offset, const float* weight_sum, const float* bias, uint8_t* codes,
                                  float* out_scale, float* out_offset, int64_t rows, int64_t n, int zero_point,
                                  int threads) {
    const int64_t bytes = column_scale ? sizeof(int32_t) : sizeof(float);
#pragma omp parallel num_threads(threads)
    {
        const SplineRegisters tables;
        std::vector<vf> gelu(n / W);
        std::vector<float> tail(n % W);
#pragma omp for schedule(static)
        for (int64_t i = 0; i < rows; ++i)
            gelu_codes_row(static_cast<const char*>(raw) + i * n * bytes, column_scale, row_scale[i], row_offset[i],
                           weight_sum, bias, n, zero_point, tables, gelu.data(), tail.data(), codes + i * n,
                           out_scale + i, out_offset + i);
    }
}
