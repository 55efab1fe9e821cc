// gemm.cuh — the tiled GEMM main loops shared by pointwise.cu (1x1 convolutions, MoViNet)
// and linear.cu (transformer linears, CLIP): acc = x[M,K] * w[N,K]^T over one 64x64 output
// tile; each kernel adds its own epilogue. Both operands are row-major with K contiguous
// (x: activations, w: PyTorch Linear / OHWI weights).
//
// gemm_f16_mainloop: tensor cores. Block tile 64x64x32, 128 threads = 4 warps in a 2x2
// grid, each warp a 32x32 tile of mma.sync.m16n8k16 (fp16 in, fp32 accumulate; sm_80+,
// with a scalar fp32 fallback on older archs that keeps the same fragment ownership).
// Operands are staged in padded shared memory (16-byte vector loads when K % 8 == 0 and
// the pointers are 16-byte aligned, element loads with zero fill otherwise — the M, N and
// K tails), an optional per-(stream, k) gate is applied while staging A. The accumulator
// of thread (warp wm/wn, lane = 4*g + tg) element acc[mi][ni][q] is output
// (gemm_f16_row(mi, q), gemm_f16_col(ni, q)) of the tile.
//
// gemm_f32_mainloop: classic tiled SIMT SGEMM, block tile 64x64x16, 256 threads in a 16x16
// grid, each thread a 4x4 micro-tile (rows ty+16i, cols tx+16j).
//
// The shared tiles are declared by the calling kernel and passed in.
#pragma once
#include "common.cuh"

#define GEMM_BM 64
#define GEMM_BN 64
#define GEMM_BK 32
#define GEMM_LDS (GEMM_BK + 8)  // padded row (80 bytes): keeps 16-byte alignment, spreads banks

// Stage a 64x32 tile of a row-major [rows, K] fp16 matrix into shared memory, zero-filled
// outside [rows, K]; optionally multiply by the per-(stream, k) gate.
__device__ __forceinline__ void gemm_stage_f16(__half (*dst)[GEMM_LDS], const __half* __restrict__ src,
                                               int rows, int K, int r0, int k0, bool vec,
                                               const __half* __restrict__ gate, float gate_scale,
                                               int gate_p) {
    for (int i = threadIdx.x; i < GEMM_BM * (GEMM_BK / 8); i += blockDim.x) {
        int r = i / (GEMM_BK / 8);
        int cc = (i % (GEMM_BK / 8)) * 8;
        int gr = r0 + r;
        int gk = k0 + cc;
        uint4 raw = make_uint4(0u, 0u, 0u, 0u);
        __half* v = reinterpret_cast<__half*>(&raw);
        if (gr < rows) {
            const __half* row = src + (long long)gr * K;
            if (vec && gk + 8 <= K) {
                raw = *reinterpret_cast<const uint4*>(row + gk);
            } else {
#pragma unroll
                for (int e = 0; e < 8; ++e) v[e] = (gk + e < K) ? row[gk + e] : __float2half_rn(0.0f);
            }
            if (gate != nullptr) {
                const __half* g = gate + (long long)(gr / gate_p) * K;
#pragma unroll
                for (int e = 0; e < 8; ++e)
                    if (gk + e < K)
                        v[e] = __float2half_rn(__half2float(v[e]) * (__half2float(g[gk + e]) * gate_scale));
            }
        }
        *reinterpret_cast<uint4*>(&dst[r][cc]) = raw;
    }
}

__device__ __forceinline__ unsigned gemm_ld32(const __half* p) {
    return *reinterpret_cast<const unsigned*>(p);
}

// One warp-wide D = A*B + D on tensor cores: A 16x16 row-major fp16 (4 regs of 2 halves),
// B 16x8 column-major fp16 (2 regs), C/D 16x8 fp32 (4 floats), PTX ISA fragment layout:
// lane = 4*group + tg; a{0,1}: (group, 2tg..+1), a{2,3}: (group+8, 2tg..+1),
// a{4..7}: same rows at cols +8; b{0,1}: (k=2tg..+1, n=group), b{2,3}: k+8;
// c{0,1}: (group, 2tg..+1), c{2,3}: (group+8, 2tg..+1). sm_80+.
// (A host emulation can provide its own definition: VIGIL_HOST_EMULATION.)
#ifndef VIGIL_HOST_EMULATION
__device__ __forceinline__ void mma_m16n8k16_f16_f32(float (&c)[4], const unsigned (&a)[4],
                                                     const unsigned (&b)[2]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}
#endif

// Tile-relative output row / column of accumulator element acc[mi][ni][q] of this thread.
__device__ __forceinline__ int gemm_f16_row(int mi, int q) {
    return ((threadIdx.x >> 5) >> 1) * 32 + mi * 16 + ((threadIdx.x & 31) >> 2) + (q >> 1) * 8;
}
__device__ __forceinline__ int gemm_f16_col(int ni, int q) {
    return ((threadIdx.x >> 5) & 1) * 32 + ni * 8 + (threadIdx.x & 3) * 2 + (q & 1);
}

// acc = x[m0.., :] * w[n0.., :]^T (optionally x gated), 128 threads, tensor cores.
__device__ __forceinline__ void gemm_f16_mainloop(float (&acc)[2][4][4], __half (*As)[GEMM_LDS],
                                                  __half (*Bs)[GEMM_LDS], const __half* __restrict__ x,
                                                  const __half* __restrict__ w,
                                                  const __half* __restrict__ gate, float gate_scale,
                                                  int gate_p, int M, int N, int K, int m0, int n0) {
    const int warp = threadIdx.x >> 5;
    const int lane = threadIdx.x & 31;
    const int wm = warp >> 1, wn = warp & 1;
    const int g = lane >> 2, tg = lane & 3;
    const bool vec = (K % 8 == 0) &&
                     ((((unsigned long long)x) | ((unsigned long long)w)) & 15ull) == 0ull;
#pragma unroll
    for (int mi = 0; mi < 2; ++mi)
#pragma unroll
        for (int ni = 0; ni < 4; ++ni)
#pragma unroll
            for (int q = 0; q < 4; ++q) acc[mi][ni][q] = 0.0f;

    for (int k0 = 0; k0 < K; k0 += GEMM_BK) {
        gemm_stage_f16(As, x, M, K, m0, k0, vec, gate, gate_scale, gate_p);
        gemm_stage_f16(Bs, w, N, K, n0, k0, vec, nullptr, 1.0f, 1);
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < GEMM_BK; kk += 16) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
            unsigned a[2][4], b[4][2];
#pragma unroll
            for (int mi = 0; mi < 2; ++mi) {
                int row = wm * 32 + mi * 16 + g;
                a[mi][0] = gemm_ld32(&As[row][kk + tg * 2]);
                a[mi][1] = gemm_ld32(&As[row + 8][kk + tg * 2]);
                a[mi][2] = gemm_ld32(&As[row][kk + tg * 2 + 8]);
                a[mi][3] = gemm_ld32(&As[row + 8][kk + tg * 2 + 8]);
            }
#pragma unroll
            for (int ni = 0; ni < 4; ++ni) {
                int col = wn * 32 + ni * 8 + g;
                b[ni][0] = gemm_ld32(&Bs[col][kk + tg * 2]);
                b[ni][1] = gemm_ld32(&Bs[col][kk + tg * 2 + 8]);
            }
#pragma unroll
            for (int mi = 0; mi < 2; ++mi)
#pragma unroll
                for (int ni = 0; ni < 4; ++ni) mma_m16n8k16_f16_f32(acc[mi][ni], a[mi], b[ni]);
#else
            // Pre-Ampere fallback: same accumulator ownership as the mma fragments.
#pragma unroll
            for (int mi = 0; mi < 2; ++mi)
#pragma unroll
                for (int ni = 0; ni < 4; ++ni)
#pragma unroll
                    for (int q = 0; q < 4; ++q) {
                        int row = gemm_f16_row(mi, q);
                        int col = gemm_f16_col(ni, q);
                        float s = 0.0f;
                        for (int k = 0; k < 16; ++k)
                            s += __half2float(As[row][kk + k]) * __half2float(Bs[col][kk + k]);
                        acc[mi][ni][q] += s;
                    }
#endif
        }
        __syncthreads();
    }
}

#define GEMM32_BM 64
#define GEMM32_BN 64
#define GEMM32_BK 16

// acc = x[m0.., :] * w[n0.., :]^T (optionally x gated), 256 threads, fp32 SIMT.
__device__ __forceinline__ void gemm_f32_mainloop(float (&acc)[4][4], float (*As)[GEMM32_BM + 1],
                                                  float (*Bs)[GEMM32_BN + 1], const float* __restrict__ x,
                                                  const float* __restrict__ w,
                                                  const float* __restrict__ gate, float gate_scale,
                                                  int gate_p, int M, int N, int K, int m0, int n0) {
    const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;

    for (int k0 = 0; k0 < K; k0 += GEMM32_BK) {
        // 64x16 tiles, 4 elements per thread; k fastest for coalesced global reads.
#pragma unroll
        for (int q = 0; q < 4; ++q) {
            int i = threadIdx.x + q * 256;
            int r = i / GEMM32_BK, k = i % GEMM32_BK;
            int gm = m0 + r, gn = n0 + r, gk = k0 + k;
            float av = 0.0f, bv = 0.0f;
            if (gm < M && gk < K) {
                av = x[(long long)gm * K + gk];
                if (gate != nullptr) av = av * (gate[(long long)(gm / gate_p) * K + gk] * gate_scale);
            }
            if (gn < N && gk < K) bv = w[(long long)gn * K + gk];
            As[k][r] = av;
            Bs[k][r] = bv;
        }
        __syncthreads();
#pragma unroll
        for (int k = 0; k < GEMM32_BK; ++k) {
            float a[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) a[i] = As[k][ty + 16 * i];
#pragma unroll
            for (int j = 0; j < 4; ++j) b[j] = Bs[k][tx + 16 * j];
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
        __syncthreads();
    }
}
