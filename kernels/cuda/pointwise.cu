// pointwise.cu — 1x1 convolution over all pixels of all streams as one GEMM with fused
// prologue and epilogue:
//   a[m,k]  = x[m,k] * (gate ? gate[m / gate_p, k] * gate_scale : 1)   (SE channel gate)
//   y[m,n]  = act(sum_k a[m,k] * w[n,k] + bias[n]) + (residual ? residual[m,n] : 0)
// x: [M, K] T (M = B*P); w: [N, K] T (OHWI, row-major); bias: [N] f32; residual: [M, N] T
// or null; gate: [B, K] T or null (gate_p = pixels per stream); y: [M, N] T.
//
// The main loops are gemm.cuh's (shared with linear.cu):
// pointwise_f16: tensor cores (mma.sync.m16n8k16, fp32 accumulate), block tile 64x64x32,
// 128 threads, the gate applied while staging A. Grid: (ceil(M/64), ceil(N/64)), block 128.
// pointwise_f32: tiled SIMT SGEMM, block tile 64x64x16, 256 threads, 4x4 per thread.
// Grid: (ceil(M/64), ceil(N/64)), block 256.
#include "gemm.cuh"

extern "C" __global__ void __launch_bounds__(128)
    pointwise_f16(const __half* __restrict__ x, const __half* __restrict__ w,
                  const float* __restrict__ bias, const __half* __restrict__ residual,
                  const __half* __restrict__ gate, float gate_scale, int gate_p,
                  __half* __restrict__ y, int M, int N, int K, int act) {
    __shared__ __align__(16) __half As[GEMM_BM][GEMM_LDS];
    __shared__ __align__(16) __half Bs[GEMM_BN][GEMM_LDS];
    const int m0 = blockIdx.x * GEMM_BM;
    const int n0 = blockIdx.y * GEMM_BN;
    float acc[2][4][4];
    gemm_f16_mainloop(acc, As, Bs, x, w, gate, gate_scale, gate_p, M, N, K, m0, n0);

    // Epilogue: accumulator (row g / g+8, cols 2tg, 2tg+1 of each 16x8 tile).
#pragma unroll
    for (int mi = 0; mi < 2; ++mi)
#pragma unroll
        for (int ni = 0; ni < 4; ++ni)
#pragma unroll
            for (int q = 0; q < 4; ++q) {
                int row = m0 + gemm_f16_row(mi, q);
                int col = n0 + gemm_f16_col(ni, q);
                if (row < M && col < N) {
                    long long o = (long long)row * N + col;
                    float v = act_apply(act, acc[mi][ni][q] + bias[col]);
                    if (residual != nullptr) v += __half2float(residual[o]);
                    y[o] = __float2half_rn(v);
                }
            }
}

extern "C" __global__ void __launch_bounds__(256)
    pointwise_f32(const float* __restrict__ x, const float* __restrict__ w,
                  const float* __restrict__ bias, const float* __restrict__ residual,
                  const float* __restrict__ gate, float gate_scale, int gate_p,
                  float* __restrict__ y, int M, int N, int K, int act) {
    __shared__ float As[GEMM32_BK][GEMM32_BM + 1];
    __shared__ float Bs[GEMM32_BK][GEMM32_BN + 1];
    const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
    const int m0 = blockIdx.x * GEMM32_BM;
    const int n0 = blockIdx.y * GEMM32_BN;
    float acc[4][4];
    gemm_f32_mainloop(acc, As, Bs, x, w, gate, gate_scale, gate_p, M, N, K, m0, n0);

#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            int row = m0 + ty + 16 * i;
            int col = n0 + tx + 16 * j;
            if (row < M && col < N) {
                long long o = (long long)row * N + col;
                float v = act_apply(act, acc[i][j] + bias[col]);
                if (residual != nullptr) v += residual[o];
                y[o] = v;
            }
        }
}
