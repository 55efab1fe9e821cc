// types.h — what the executors and the kernels' host shim share: the index types, the
// per-thread and per-block "registers" the built-in variables read, the entry points of
// `__syncthreads` and warp-level mma, and fp16 bit conversions. Free of the CUDA keyword
// macros of device_builtins.h, so runtime code can include it safely.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__F16C__)
#include <immintrin.h>
#endif

namespace vigil_emu {

struct uint3 {
    unsigned x, y, z;
};
struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};

/// The registers a CUDA thread reads: its index in the block.
struct ThreadRegs {
    uint3 idx;
};
/// The registers every thread of a block reads.
struct BlockRegs {
    uint3 idx;
    dim3 dim;
    dim3 grid;
};

/// Pointed at the running CUDA thread / block by the race executor (exec_threads.cpp),
/// where every CUDA thread is an OS thread.
extern __thread const ThreadRegs* tls_thread;
extern __thread const BlockRegs* tls_block;

/// The fiber executor's equivalent, found without thread-local storage (which costs a
/// call per access in a dlopen()ed library): every fiber stack is a kFiberRegion-aligned
/// region whose top bytes hold this header, so the running CUDA thread finds its
/// registers from the address of any local variable.
struct FiberHeader {
    const ThreadRegs* thread;
    const BlockRegs* block;
    void* fiber;  ///< the executor's Fiber
};

/// Size and alignment of a fiber stack region (guard page at the bottom, header on top).
constexpr uintptr_t kFiberRegion = 128 * 1024;

/// The header of the fiber the caller runs on (only valid on a fiber stack).
inline FiberHeader* fiber_header() {
    char probe;
    const uintptr_t sp = reinterpret_cast<uintptr_t>(&probe);
    return reinterpret_cast<FiberHeader*>((sp | (kFiberRegion - 1)) + 1 - sizeof(FiberHeader));
}

/// `__syncthreads()`: a block-wide barrier; `site` names the call ("file:line") so a
/// divergent barrier is reported with both places.
void syncthreads(const char* site);

/// `mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32` for the calling lane: every lane of
/// the warp passes its fragments, the warp's D = A*B + C is computed (mma.h) once all 32
/// lanes have arrived, and `c` receives this lane's part of D.
void warp_mma_m16n8k16_f16_f32(float (&c)[4], const unsigned (&a)[4], const unsigned (&b)[2],
                               const char* site);

// fp16 conversions: the F16C instructions when the build targets them (GCC 12 converts
// _Float16 through libgcc calls otherwise), IEEE _Float16 casts elsewhere. Both round to
// nearest even, like cvt.rn.f16.f32.
#if defined(__F16C__)
/// IEEE binary16 bits to float.
inline float half_bits_to_float(uint16_t bits) { return _cvtsh_ss(bits); }
/// float to IEEE binary16 bits, round to nearest even.
inline uint16_t float_to_half_bits(float v) { return _cvtss_sh(v, _MM_FROUND_TO_NEAREST_INT); }
#else
inline float half_bits_to_float(uint16_t bits) {
    _Float16 f;
    std::memcpy(&f, &bits, 2);
    return static_cast<float>(f);
}
inline uint16_t float_to_half_bits(float v) {
    _Float16 f = static_cast<_Float16>(v);
    uint16_t bits;
    std::memcpy(&bits, &f, 2);
    return bits;
}
#endif

}  // namespace vigil_emu
