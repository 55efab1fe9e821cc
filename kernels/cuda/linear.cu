// linear.cu — transformer linear layers (PyTorch nn.Linear) as one GEMM with a fused
// epilogue, the CUDA twin of vigil_kernels::cpu::linear:
//   y[m,n] = gelu?(sum_k x[m,k] * w[n,k] + bias[n]) + (residual ? residual[m,n] : 0)
// x: [M, K] T (M = batch * tokens); w: [N, K] T (Linear's [out, in]); bias: [N] f32;
// residual: [M, N] T or null (added after the activation: the pre-LN block's skip);
// y: [M, N] T. act: GELU_* below (ids of `vigil_kernels::cuda::gelu_id`), formulas as
// `cpu::gelu::Gelu::apply`. The GELU is fused here, so there is no separate GELU kernel.
//
// Main loops from gemm.cuh (shared with pointwise.cu):
// linear_f16: tensor cores (mma.sync.m16n8k16, fp16 in, fp32 accumulate), block tile
// 64x64x32, 128 threads. linear_f32: SIMT SGEMM, 64x64x16, 256 threads (verification).
// Grid: (ceil(M/64), ceil(N/64)). Tails in M, N and K are zero-filled while staging.
#include "gemm.cuh"

#define GELU_NONE 0
#define GELU_QUICK 1
#define GELU_ERF 2
#define GELU_TANH 3

// Same formulas, in the same order, as `Gelu::apply` on the CPU.
__device__ __forceinline__ float gelu_apply(int act, float x) {
    switch (act) {
        case GELU_QUICK: return x / (1.0f + expf(-1.702f * x));
        case GELU_ERF: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
        case GELU_TANH: {
            const float u = 0.7978846f * (x + 0.044715f * x * x * x);
            return x * (1.0f - 1.0f / (expf(2.0f * u) + 1.0f));
        }
        default: return x;
    }
}

extern "C" __global__ void __launch_bounds__(128)
    linear_f16(const __half* __restrict__ x, const __half* __restrict__ w,
               const float* __restrict__ bias, const __half* __restrict__ residual,
               __half* __restrict__ y, int M, int N, int K, int act) {
    __shared__ __align__(16) __half As[GEMM_BM][GEMM_LDS];
    __shared__ __align__(16) __half Bs[GEMM_BN][GEMM_LDS];
    const int m0 = blockIdx.x * GEMM_BM;
    const int n0 = blockIdx.y * GEMM_BN;
    float acc[2][4][4];
    gemm_f16_mainloop(acc, As, Bs, x, w, nullptr, 1.0f, 1, M, N, K, m0, n0);
#pragma unroll
    for (int mi = 0; mi < 2; ++mi)
#pragma unroll
        for (int ni = 0; ni < 4; ++ni)
#pragma unroll
            for (int q = 0; q < 4; ++q) {
                const int row = m0 + gemm_f16_row(mi, q);
                const int col = n0 + gemm_f16_col(ni, q);
                if (row < M && col < N) {
                    const long long o = (long long)row * N + col;
                    float v = gelu_apply(act, acc[mi][ni][q] + bias[col]);
                    if (residual != nullptr) v += __half2float(residual[o]);
                    y[o] = __float2half_rn(v);
                }
            }
}

extern "C" __global__ void __launch_bounds__(256)
    linear_f32(const float* __restrict__ x, const float* __restrict__ w,
               const float* __restrict__ bias, const float* __restrict__ residual,
               float* __restrict__ y, int M, int N, int K, int act) {
    __shared__ float As[GEMM32_BK][GEMM32_BM + 1];
    __shared__ float Bs[GEMM32_BK][GEMM32_BN + 1];
    const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
    const int m0 = blockIdx.x * GEMM32_BM;
    const int n0 = blockIdx.y * GEMM32_BN;
    float acc[4][4];
    gemm_f32_mainloop(acc, As, Bs, x, w, nullptr, 1.0f, 1, M, N, K, m0, n0);
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int row = m0 + ty + 16 * i;
            const int col = n0 + tx + 16 * j;
            if (row < M && col < N) {
                const long long o = (long long)row * N + col;
                float v = gelu_apply(act, acc[i][j] + bias[col]);
                if (residual != nullptr) v += residual[o];
                y[o] = v;
            }
        }
}
