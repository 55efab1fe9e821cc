// mma.h — mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 for a whole warp, from the
// fragments its 32 lanes hold, per the PTX ISA fragment layout (lane = 4*group + tg):
//   A row-major 16x16 f16: a[0] = (group, 2tg..2tg+1), a[1] = (group+8, 2tg..),
//                          a[2] = (group, 2tg+8..),   a[3] = (group+8, 2tg+8..)
//   B col-major 16x8 f16:  b[0] = (k=2tg..2tg+1, n=group), b[1] = (k=2tg+8.., n=group)
//   C/D 16x8 f32:          c[0..1] = (group, 2tg..2tg+1), c[2..3] = (group+8, 2tg..)
// The lower-indexed element of each f16 pair is the low half of its 32-bit register.
// Products and sums in fp32 (the hardware's accumulation order is unspecified).
#pragma once

#include "types.h"

namespace vigil_emu {

inline float mma_half(unsigned reg, int hi) {
    return half_bits_to_float(static_cast<uint16_t>((reg >> (16 * hi)) & 0xffffu));
}

inline void mma_m16n8k16_warp(const unsigned (&a)[32][4], const unsigned (&b)[32][2],
                              const float (&c)[32][4], float (&d)[32][4]) {
    float A[16][16], B[16][8], D[16][8];
    for (unsigned lane = 0; lane < 32; ++lane) {
        const unsigned g = lane >> 2, tg = lane & 3;
        for (int h = 0; h < 2; ++h) {
            A[g][2 * tg + h] = mma_half(a[lane][0], h);
            A[g + 8][2 * tg + h] = mma_half(a[lane][1], h);
            A[g][2 * tg + 8 + h] = mma_half(a[lane][2], h);
            A[g + 8][2 * tg + 8 + h] = mma_half(a[lane][3], h);
            B[2 * tg + h][g] = mma_half(b[lane][0], h);
            B[2 * tg + 8 + h][g] = mma_half(b[lane][1], h);
            D[g][2 * tg + h] = c[lane][h];
            D[g + 8][2 * tg + h] = c[lane][2 + h];
        }
    }
    for (int r = 0; r < 16; ++r)
        for (int k = 0; k < 16; ++k) {
            const float av = A[r][k];
            for (int n = 0; n < 8; ++n) D[r][n] += av * B[k][n];
        }
    for (unsigned lane = 0; lane < 32; ++lane) {
        const unsigned g = lane >> 2, tg = lane & 3;
        for (int h = 0; h < 2; ++h) {
            d[lane][h] = D[g][2 * tg + h];
            d[lane][2 + h] = D[g + 8][2 * tg + h];
        }
    }
}

}  // namespace vigil_emu
