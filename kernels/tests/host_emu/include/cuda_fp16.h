// Host-emulation stand-in for <cuda_fp16.h> plus the CUDA built-ins the Vigil kernels use,
// so kernels/cuda/*.cu compile with g++ (C++20) and run on CPU threads: one std::thread per
// CUDA thread, blocks run one after another, __shared__ = function-local static (shared by
// the block's threads), __syncthreads = std::barrier, mma.sync emulated per warp from the
// PTX ISA fragment layout. For logic checks only (indexing, tiling, bounds, fragments);
// see emu.cpp.
#pragma once
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <math.h>
#include <memory>
#include <thread>
#include <vector>

#define VIGIL_HOST_EMULATION 1
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __restrict__ __restrict
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};
inline thread_local dim3 threadIdx;
inline dim3 blockIdx, blockDim, gridDim;
inline std::unique_ptr<std::barrier<>> emu_block_barrier;
inline std::vector<std::unique_ptr<std::barrier<>>> emu_warp_barriers;

inline void __syncthreads() { emu_block_barrier->arrive_and_wait(); }

struct __half {
    uint16_t bits;
};
inline float __half2float(__half h) {
    _Float16 f;
    std::memcpy(&f, &h.bits, 2);
    return (float)f;
}
inline __half __float2half_rn(float v) {
    _Float16 f = (_Float16)v;
    __half h;
    std::memcpy(&h.bits, &f, 2);
    return h;
}

struct alignas(16) uint4 {
    unsigned x, y, z, w;
};
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }

// Warp-level mma.sync.m16n8k16.row.col.f32.f16.f16.f32, from the PTX ISA fragment layout.
struct EmuWarpExchange {
    unsigned a[32][4];
    unsigned b[32][2];
};
inline EmuWarpExchange emu_warp_x[64];

inline float emu_h(unsigned reg, int hi) {
    __half h{(uint16_t)((reg >> (16 * hi)) & 0xffffu)};
    return __half2float(h);
}

inline void mma_m16n8k16_f16_f32(float (&c)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    EmuWarpExchange& X = emu_warp_x[warp];
    std::memcpy(X.a[lane], a, sizeof(a));
    std::memcpy(X.b[lane], b, sizeof(b));
    emu_warp_barriers[warp]->arrive_and_wait();
    auto A = [&](int r, int k) {
        int ln = (r % 8) * 4 + (k % 8) / 2;
        int reg = (r >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0);
        return emu_h(X.a[ln][reg], k % 2);
    };
    auto B = [&](int k, int n) {
        int ln = n * 4 + (k % 8) / 2;
        int reg = k >= 8 ? 1 : 0;
        return emu_h(X.b[ln][reg], k % 2);
    };
    int g = lane >> 2, tg = lane & 3;
    float d[4];
    for (int q = 0; q < 4; ++q) {
        int r = g + (q >> 1) * 8, n = tg * 2 + (q & 1);
        float s = 0.0f;
        for (int k = 0; k < 16; ++k) s += A(r, k) * B(k, n);
        d[q] = c[q] + s;
    }
    emu_warp_barriers[warp]->arrive_and_wait();
    for (int q = 0; q < 4; ++q) c[q] = d[q];
}

template <class F>
void emu_launch(dim3 grid, dim3 block, F kernel) {
    gridDim = grid;
    blockDim = block;
    unsigned nt = block.x * block.y * block.z;
    emu_block_barrier = std::make_unique<std::barrier<>>(nt);
    emu_warp_barriers.clear();
    for (unsigned w = 0; w < (nt + 31) / 32; ++w)
        emu_warp_barriers.push_back(std::make_unique<std::barrier<>>(std::min(32u, nt - 32 * w)));
    for (unsigned bz = 0; bz < grid.z; ++bz)
        for (unsigned by = 0; by < grid.y; ++by)
            for (unsigned bx = 0; bx < grid.x; ++bx) {
                blockIdx = dim3{bx, by, bz};
                std::vector<std::thread> ts;
                ts.reserve(nt);
                for (unsigned t = 0; t < nt; ++t)
                    ts.emplace_back([=] {
                        threadIdx = dim3{t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
                        kernel();
                    });
                for (auto& th : ts) th.join();
            }
}
