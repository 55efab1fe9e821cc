// device_builtins.h — what a CUDA kernel source sees when vigil-cuda-emu compiles it for
// the host: the execution-space keywords, `__shared__`, the built-in index variables,
// `__syncthreads`, `__half` and the warp-level `mma.sync` the sources use through the
// `VIGIL_HOST_EMULATION` hook in pointwise.cu. Reached through include/cuda_fp16.h, which
// shadows NVIDIA's header on the host include path, so kernels/cuda/*.cu compile unchanged.
//
// The built-ins read per-thread and per-block registers that the executor points at before
// it runs each CUDA thread: in the driver (exec_fibers.cpp) through the header on top of
// the running fiber's stack (types.h: fiber_header), in the race build (exec_threads.cpp)
// through the thread-locals tls_thread / tls_block.
// `__shared__` is `static thread_local`: the fiber executor runs every thread of a block on
// one OS thread, and two OS threads never run the same block, so each block in flight has
// its own shared memory. The race build (VIGIL_EMU_OS_THREADS: one OS thread per CUDA
// thread, one block at a time) makes it a plain `static`.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <math.h>

#ifndef __CUDA_ARCH__
#error "vigil-cuda-emu compiles kernels with -D__CUDA_ARCH__=800 (the sm_80 tensor-core path)"
#endif

#include "types.h"

#define VIGIL_HOST_EMULATION 1

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#if defined(VIGIL_EMU_OS_THREADS) && VIGIL_EMU_OS_THREADS
#define __shared__ static
#else
#define __shared__ static thread_local
#endif

using vigil_emu::dim3;
using vigil_emu::uint3;

struct alignas(16) uint4 {
    unsigned x, y, z, w;
};
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }

struct __half {
    uint16_t bits;
};
inline float __half2float(__half h) { return vigil_emu::half_bits_to_float(h.bits); }
inline __half __float2half_rn(float v) { return __half{vigil_emu::float_to_half_bits(v)}; }

#define VIGIL_EMU_STR2(x) #x
#define VIGIL_EMU_STR(x) VIGIL_EMU_STR2(x)

#if defined(VIGIL_EMU_OS_THREADS) && VIGIL_EMU_OS_THREADS
#define threadIdx (::vigil_emu::tls_thread->idx)
#define blockIdx (::vigil_emu::tls_block->idx)
#define blockDim (::vigil_emu::tls_block->dim)
#define gridDim (::vigil_emu::tls_block->grid)
#else
#define threadIdx (::vigil_emu::fiber_header()->thread->idx)
#define blockIdx (::vigil_emu::fiber_header()->block->idx)
#define blockDim (::vigil_emu::fiber_header()->block->dim)
#define gridDim (::vigil_emu::fiber_header()->block->grid)
#endif
#define __syncthreads() ::vigil_emu::syncthreads(__FILE__ ":" VIGIL_EMU_STR(__LINE__))

// pointwise.cu's tensor-core helper (its inline-PTX definition is skipped under
// VIGIL_HOST_EMULATION): the warp-level mma above.
#define mma_m16n8k16_f16_f32(c, a, b) \
    ::vigil_emu::warp_mma_m16n8k16_f16_f32(c, a, b, __FILE__ ":" VIGIL_EMU_STR(__LINE__))
