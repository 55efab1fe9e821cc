// attention.cu — multi-head scaled dot-product attention, fused (one kernel: scores,
// softmax and the weighted sum of values never leave the block), the CUDA twin of
// vigil_kernels::cpu::attention:
//   out[b,i,h,:] = sum_j softmax_j(q[b,i,h,:] . k[b,j,h,:] * scale) v[b,j,h,:]
// with `causal`: query i sees keys 0..=i only (PyTorch's additive -inf mask above the
// diagonal; masked scores are never computed into the sum). Row (b, i) of q starts at
// (b * q_len + i) * q_stride, of k / v at (b * kv_len + j) * {k,v}_stride (q, k and v can
// be the three thirds of one fused QKV projection), head h at column h * head_dim; out is
// contiguous [batch * q_len, heads * head_dim] T.
//
// Grid: (ceil(q_len / ATT_QT), heads, batch), ATT_THREADS threads: a block owns one head
// of one sequence and ATT_QT query rows, 4 threads per row (quad). It walks the keys in
// tiles of ATT_KT with the online ("flash") softmax: per tile, scores into registers, the
// row max across the quad through shared memory, p = exp(s - max) in fp32, the running
// sum and the fp32 output accumulators (each thread head_dim/4 columns) rescaled by
// exp(old max - new max). Scores, softmax and accumulation are fp32 in both precisions;
// q/k/v tiles are staged in shared memory as fp32. head_dim <= ATT_HD. Capped at 128
// registers (__launch_bounds__(ATT_THREADS, 4): no spill) so that 4 blocks fit an SM.
//
// Why SIMT and not mma.sync: in CLIP the attention is ~1-3% of the FLOPs (ViT-B/32: 50
// tokens, head_dim 64 → QK^T and PV are 2 x 50 x 50 x 64 per head against 12 x 768^2 per
// token in the linears), and a fused kernel keeps its S x S scores out of global memory,
// which is what matters at these lengths. Tensor-core tiles pay off from a few hundred
// tokens (ViT-L/14 at 336 px: 577) — the follow-up, not needed for correctness.
#include "common.cuh"

#define ATT_QT 32                // query rows per block
#define ATT_KT 16                // keys per tile
#define ATT_HD 128               // largest head_dim
#define ATT_THREADS (ATT_QT * 4)  // a quad per query row
#define ATT_LDS (ATT_HD + 1)     // padded rows: a warp's 8 query rows hit 8 banks
#define ATT_NEG_INF (-3.0e38f)   // "minus infinity": masked scores, the max before any key

template <typename T>
__device__ __forceinline__ void attention_impl(const T* __restrict__ q, long long q_stride,
                                               const T* __restrict__ k, long long k_stride,
                                               const T* __restrict__ v, long long v_stride,
                                               T* __restrict__ out, int heads, int q_len,
                                               int kv_len, int hd, int causal, float scale) {
    __shared__ float Qs[ATT_QT][ATT_LDS];
    __shared__ float Ks[ATT_KT][ATT_LDS];
    __shared__ float Vs[ATT_KT][ATT_LDS];
    __shared__ float Ps[ATT_QT][ATT_KT + 1];
    __shared__ float pmax[ATT_QT][4];
    __shared__ float psum[ATT_QT][4];

    const int q0 = blockIdx.x * ATT_QT;
    const int h = blockIdx.y;
    const long long b = blockIdx.z;
    const int t = threadIdx.x, r = t >> 2, quad = t & 3;
    const int row = q0 + r;
    const long long d = (long long)heads * hd;

    for (int i = t; i < ATT_QT * hd; i += ATT_THREADS) {
        const int rr = i / hd, c = i - rr * hd;
        Qs[rr][c] = (q0 + rr < q_len) ? to_f32(q[(b * q_len + q0 + rr) * q_stride + (long long)h * hd + c])
                                      : 0.0f;
    }
    // keys this row sees, and the keys any row of the block sees
    const int last = (q0 + ATT_QT < q_len ? q0 + ATT_QT : q_len);  // one past the last row
    const int row_kv = causal ? (row + 1 < kv_len ? row + 1 : kv_len) : kv_len;
    const int kv_end = causal ? (last < kv_len ? last : kv_len) : kv_len;

    float m = ATT_NEG_INF, l = 0.0f;
    float acc[ATT_HD / 4];
#pragma unroll
    for (int i = 0; i < ATT_HD / 4; ++i) acc[i] = 0.0f;

    for (int j0 = 0; j0 < kv_end; j0 += ATT_KT) {
        __syncthreads();  // the previous tile's readers are done (first pass: Qs is written)
        for (int i = t; i < ATT_KT * hd; i += ATT_THREADS) {
            const int jj = i / hd, c = i - jj * hd;
            const bool in = j0 + jj < kv_len;
            const long long key = b * kv_len + j0 + jj;
            Ks[jj][c] = in ? to_f32(k[key * k_stride + (long long)h * hd + c]) : 0.0f;
            Vs[jj][c] = in ? to_f32(v[key * v_stride + (long long)h * hd + c]) : 0.0f;
        }
        __syncthreads();
        float s[ATT_KT / 4];
        float mx = ATT_NEG_INF;
#pragma unroll
        for (int i = 0; i < ATT_KT / 4; ++i) {
            const int jj = quad + 4 * i;
            float dot = 0.0f;
            for (int c = 0; c < hd; ++c) dot += Qs[r][c] * Ks[jj][c];
            s[i] = (j0 + jj < row_kv) ? dot * scale : ATT_NEG_INF;
            mx = fmaxf(mx, s[i]);
        }
        pmax[r][quad] = mx;
        __syncthreads();
        const float m_new = fmaxf(m, fmaxf(fmaxf(pmax[r][0], pmax[r][1]), fmaxf(pmax[r][2], pmax[r][3])));
        // m_new > ATT_NEG_INF from the first tile on (key 0 is visible to every row)
        const float alpha = (m_new == ATT_NEG_INF) ? 1.0f : expf(m - m_new);
        float ps = 0.0f;
#pragma unroll
        for (int i = 0; i < ATT_KT / 4; ++i) {
            const float p = (s[i] == ATT_NEG_INF) ? 0.0f : expf(s[i] - m_new);
            Ps[r][quad + 4 * i] = p;
            ps += p;
        }
        psum[r][quad] = ps;
        __syncthreads();
        l = l * alpha + ((psum[r][0] + psum[r][1]) + (psum[r][2] + psum[r][3]));
        m = m_new;
#pragma unroll
        for (int i = 0; i < ATT_HD / 4; ++i) acc[i] *= alpha;
        for (int jj = 0; jj < ATT_KT; ++jj) {
            const float p = Ps[r][jj];
#pragma unroll
            for (int i = 0; i < ATT_HD / 4; ++i) {
                const int c = quad + 4 * i;
                if (c < hd) acc[i] += p * Vs[jj][c];
            }
        }
    }
    if (row < q_len) {
        const float inv = 1.0f / l;
        T* o = out + (b * q_len + row) * d + (long long)h * hd;
#pragma unroll
        for (int i = 0; i < ATT_HD / 4; ++i) {
            const int c = quad + 4 * i;
            if (c < hd) o[c] = from_f32<T>(acc[i] * inv);
        }
    }
}

extern "C" __global__ void __launch_bounds__(ATT_THREADS, 4)
    attention_f16(const __half* __restrict__ q, long long q_stride, const __half* __restrict__ k,
                  long long k_stride, const __half* __restrict__ v, long long v_stride,
                  __half* __restrict__ out, int heads, int q_len, int kv_len, int head_dim,
                  int causal, float scale) {
    attention_impl<__half>(q, q_stride, k, k_stride, v, v_stride, out, heads, q_len, kv_len, head_dim,
                           causal, scale);
}

extern "C" __global__ void __launch_bounds__(ATT_THREADS, 4)
    attention_f32(const float* __restrict__ q, long long q_stride, const float* __restrict__ k,
                  long long k_stride, const float* __restrict__ v, long long v_stride,
                  float* __restrict__ out, int heads, int q_len, int kv_len, int head_dim,
                  int causal, float scale) {
    attention_impl<float>(q, q_stride, k, k_stride, v, v_stride, out, heads, q_len, kv_len, head_dim,
                          causal, scale);
}
