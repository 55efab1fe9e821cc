// mma.h — mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 for a whole warp, assembled
// from the fragments its 32 lanes hold, per the PTX ISA fragment layout
// (lane = 4*group + tg):
//   A row-major 16x16 f16: a[0] = (group, 2tg..2tg+1), a[1] = (group+8, 2tg..),
//                          a[2] = (group, 2tg+8..),   a[3] = (group+8, 2tg+8..)
//   B col-major 16x8 f16:  b[0] = (k=2tg..2tg+1, n=group), b[1] = (k=2tg+8.., n=group)
//   C/D 16x8 f32:          c[0..1] = (group, 2tg..2tg+1), c[2..3] = (group+8, 2tg..)
// The lower-indexed element of each f16 pair is the low half of its 32-bit register.
//
// Each lane deposits its fragments into the warp's tile (transposed, see MmaTile), the
// warp computes D = A*B + C once every lane has arrived, and each lane collects its part
// of D. Products and sums in fp32 (the hardware's accumulation order is unspecified).
#pragma once

#include "types.h"

namespace vigil_emu {

/// The operands of one warp-wide m16n8k16 mma, transposed so that the compute vectorises
/// over the 16 rows: A as [k][row] (f16 bits), B as [k][n] (f16 bits), C/D as [n][row].
struct MmaTile {
    uint16_t at[16][16];
    uint16_t b[16][8];
    float ct[8][16];  ///< C on input, D after mma_compute
};

inline void mma_deposit(MmaTile& t, unsigned lane, const unsigned (&a)[4], const unsigned (&b)[2],
                        const float (&c)[4]) {
    const unsigned g = lane >> 2, k = 2 * (lane & 3);
    t.at[k][g] = static_cast<uint16_t>(a[0]);
    t.at[k + 1][g] = static_cast<uint16_t>(a[0] >> 16);
    t.at[k][g + 8] = static_cast<uint16_t>(a[1]);
    t.at[k + 1][g + 8] = static_cast<uint16_t>(a[1] >> 16);
    t.at[k + 8][g] = static_cast<uint16_t>(a[2]);
    t.at[k + 9][g] = static_cast<uint16_t>(a[2] >> 16);
    t.at[k + 8][g + 8] = static_cast<uint16_t>(a[3]);
    t.at[k + 9][g + 8] = static_cast<uint16_t>(a[3] >> 16);
    t.b[k][g] = static_cast<uint16_t>(b[0]);
    t.b[k + 1][g] = static_cast<uint16_t>(b[0] >> 16);
    t.b[k + 8][g] = static_cast<uint16_t>(b[1]);
    t.b[k + 9][g] = static_cast<uint16_t>(b[1] >> 16);
    t.ct[k][g] = c[0];
    t.ct[k + 1][g] = c[1];
    t.ct[k][g + 8] = c[2];
    t.ct[k + 1][g + 8] = c[3];
}

inline void mma_compute(MmaTile& t) {
#if defined(__AVX2__) && defined(__F16C__) && defined(__FMA__)
    // D[:, n] += A[:, k] * B[k][n], 8 rows per register, accumulators in registers.
    float bf[16][8];
    for (int k = 0; k < 16; ++k)
        _mm256_storeu_ps(bf[k], _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(t.b[k]))));
    __m256 lo[8], hi[8];
    for (int n = 0; n < 8; ++n) {
        lo[n] = _mm256_loadu_ps(&t.ct[n][0]);
        hi[n] = _mm256_loadu_ps(&t.ct[n][8]);
    }
    for (int k = 0; k < 16; ++k) {
        const __m256 alo = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(&t.at[k][0])));
        const __m256 ahi = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(&t.at[k][8])));
        for (int n = 0; n < 8; ++n) {
            const __m256 bv = _mm256_broadcast_ss(&bf[k][n]);
            lo[n] = _mm256_fmadd_ps(alo, bv, lo[n]);
            hi[n] = _mm256_fmadd_ps(ahi, bv, hi[n]);
        }
    }
    for (int n = 0; n < 8; ++n) {
        _mm256_storeu_ps(&t.ct[n][0], lo[n]);
        _mm256_storeu_ps(&t.ct[n][8], hi[n]);
    }
#else
    float A[16][16], B[16][8];
    for (int k = 0; k < 16; ++k) {
        for (int r = 0; r < 16; ++r) A[k][r] = half_bits_to_float(t.at[k][r]);
        for (int n = 0; n < 8; ++n) B[k][n] = half_bits_to_float(t.b[k][n]);
    }
    for (int n = 0; n < 8; ++n)
        for (int k = 0; k < 16; ++k)
            for (int r = 0; r < 16; ++r) t.ct[n][r] += A[k][r] * B[k][n];
#endif
}

inline void mma_collect(const MmaTile& t, unsigned lane, float (&c)[4]) {
    const unsigned g = lane >> 2, k = 2 * (lane & 3);
    c[0] = t.ct[k][g];
    c[1] = t.ct[k + 1][g];
    c[2] = t.ct[k][g + 8];
    c[3] = t.ct[k + 1][g + 8];
}

}  // namespace vigil_emu
