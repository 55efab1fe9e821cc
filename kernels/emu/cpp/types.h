// types.h — what the executors and the kernels' host shim share: the index types, the
// per-thread and per-block "registers" the built-in variables read, the entry points of
// `__syncthreads` and warp-level mma, and fp16 bit conversions. Free of the CUDA keyword
// macros of device_builtins.h, so runtime code can include it safely.
#pragma once

#include <cstdint>
#include <cstring>

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

/// Pointed at the running CUDA thread / block by the executor before each thread runs.
extern __thread const ThreadRegs* tls_thread;
extern __thread const BlockRegs* tls_block;

/// `__syncthreads()`: a block-wide barrier; `site` names the call ("file:line") so a
/// divergent barrier is reported with both places.
void syncthreads(const char* site);

/// `mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32` for the calling lane: every lane of
/// the warp passes its fragments, the warp's D = A*B + C is computed (mma.h) once all 32
/// lanes have arrived, and `c` receives this lane's part of D.
void warp_mma_m16n8k16_f16_f32(float (&c)[4], const unsigned (&a)[4], const unsigned (&b)[2],
                               const char* site);

/// IEEE binary16 bits to float.
inline float half_bits_to_float(uint16_t bits) {
    _Float16 f;
    std::memcpy(&f, &bits, 2);
    return static_cast<float>(f);
}
/// float to IEEE binary16 bits, round to nearest even (like cvt.rn.f16.f32).
inline uint16_t float_to_half_bits(float v) {
    _Float16 f = static_cast<_Float16>(v);
    uint16_t bits;
    std::memcpy(&bits, &f, 2);
    return bits;
}

}  // namespace vigil_emu
