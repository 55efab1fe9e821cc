// layernorm.cu — PyTorch LayerNorm over rows, the CUDA twin of
// vigil_kernels::cpu::layer_norm:
//   y[r,:] = (x[r,:] - mean) / sqrt(var + eps) * gamma + beta
// with mean and the biased variance in fp32, two passes (mean, then the sum of squared
// deviations: no cancellation), as on the CPU. x: rows of d values T, row r at
// r * x_stride (x_stride >= d: e.g. every image's class token); gamma, beta: [d] f32;
// y: [rows, d] T, contiguous.
//
// One block of LN_THREADS threads per row (grid.x = rows): each thread strides the row,
// the partial sums meet in a shared-memory tree (fixed order: deterministic). Rows of a
// few hundred to a few thousand values (CLIP widths 512-1664) keep 128 threads busy
// with 4-13 values each.
#include "common.cuh"

#define LN_THREADS 128

// Sum of every thread's `v` across the block, returned to all threads. `red` must not be
// in use by another reduction: the trailing barrier lets the caller reuse it at once.
__device__ __forceinline__ float ln_block_sum(float (&red)[LN_THREADS], float v) {
    red[threadIdx.x] = v;
    __syncthreads();
#pragma unroll
    for (int s = LN_THREADS / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) red[threadIdx.x] += red[threadIdx.x + s];
        __syncthreads();
    }
    const float total = red[0];
    __syncthreads();
    return total;
}

template <typename T>
__device__ __forceinline__ void layer_norm_impl(const T* __restrict__ x, long long x_stride,
                                                const float* __restrict__ gamma,
                                                const float* __restrict__ beta, float eps,
                                                T* __restrict__ y, int d) {
    __shared__ float red[LN_THREADS];
    const long long r = blockIdx.x;
    const T* xr = x + r * x_stride;
    T* yr = y + r * d;
    float s = 0.0f;
    for (int c = threadIdx.x; c < d; c += LN_THREADS) s += to_f32(xr[c]);
    const float mean = ln_block_sum(red, s) / (float)d;
    float s2 = 0.0f;
    for (int c = threadIdx.x; c < d; c += LN_THREADS) {
        const float dv = to_f32(xr[c]) - mean;
        s2 += dv * dv;
    }
    const float var = ln_block_sum(red, s2) / (float)d;
    const float rstd = 1.0f / sqrtf(var + eps);
    for (int c = threadIdx.x; c < d; c += LN_THREADS)
        yr[c] = from_f32<T>((to_f32(xr[c]) - mean) * rstd * gamma[c] + beta[c]);
}

extern "C" __global__ void __launch_bounds__(LN_THREADS)
    layer_norm_f16(const __half* __restrict__ x, long long x_stride, const float* __restrict__ gamma,
                   const float* __restrict__ beta, float eps, __half* __restrict__ y, int d) {
    layer_norm_impl<__half>(x, x_stride, gamma, beta, eps, y, d);
}

extern "C" __global__ void __launch_bounds__(LN_THREADS)
    layer_norm_f32(const float* __restrict__ x, long long x_stride, const float* __restrict__ gamma,
                   const float* __restrict__ beta, float eps, float* __restrict__ y, int d) {
    layer_norm_impl<float>(x, x_stride, gamma, beta, eps, y, d);
}
