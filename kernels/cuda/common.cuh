// common.cuh — shared device helpers for every Vigil kernel source.
//
// Computes nothing by itself: it defines the activation ids (ACT_*, identical to
// `vigil_kernels::Activation::id()`), the activation device function applied in kernel
// epilogues, fp16/fp32 load/store conversions (storage type T is `__half` or `float`,
// arithmetic is always fp32), and the grid-stride loop helper used by the element-wise
// kernels (1-D grid of 256-thread blocks, 64-bit indices).
#pragma once
#include <cuda_fp16.h>

#define ACT_NONE 0
#define ACT_RELU 1
#define ACT_RELU6 2
#define ACT_HARD_SWISH 3
#define ACT_SWISH 4

// Same formulas, in the same order, as `Activation::apply` on the CPU.
__device__ __forceinline__ float act_apply(int act, float x) {
    switch (act) {
        case ACT_RELU: return fmaxf(x, 0.0f);
        case ACT_RELU6: return fminf(fmaxf(x, 0.0f), 6.0f);
        case ACT_HARD_SWISH: return x * fminf(fmaxf(x + 3.0f, 0.0f), 6.0f) * (1.0f / 6.0f);
        case ACT_SWISH: return x / (1.0f + expf(-x));
        default: return x;
    }
}

__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(__half v) { return __half2float(v); }

template <typename T> __device__ __forceinline__ T from_f32(float v);
template <> __device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_f32<__half>(float v) { return __float2half_rn(v); }

// 64-bit grid-stride loop over [0, n).
#define GRID_STRIDE_LOOP(i, n)                                                              \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (long long)(n); \
         i += (long long)blockDim.x * gridDim.x)
