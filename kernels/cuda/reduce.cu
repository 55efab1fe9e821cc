// reduce.cu — per-stream channel reductions and the squeeze-excitation gate:
//   spatial_mean:    out[b,c] = scale[c] * sum_p x[b,p,c]
//                    x [B,P,C] T, scale [C] f32, out [B,C] T.
//                    Launch: grid (ceil(C/32), B), block (32, 8): threadIdx.x walks 32
//                    consecutive channels (coalesced), threadIdx.y strides the pixels;
//                    the 8 partial sums are combined in shared memory.
//   cumulative_pool: sums[slots[b],c] += x[b,c]; out[b,c] = sums[slots[b],c] / (t[b]+1)
//                    x [B,C] T, sums [slots,C] f32 (pool, updated in place), slots [B] u32,
//                    t [B] u64, out [B,C] T. Launch: 1-D grid-stride over B*C, 256 threads.
//   channel_gate:    x[b,p,c] *= gate[b,c] * scale, in place
//                    x [B,P,C] T, gate [B,C] T, scale f32. Launch: 1-D grid-stride, 256.
// Kernels: {spatial_mean,cumulative_pool,channel_gate}_{f16,f32}.
#include "common.cuh"

#define SM_TX 32
#define SM_TY 8

template <typename T>
__device__ __forceinline__ void spatial_mean_impl(const T* __restrict__ x,
                                                  const float* __restrict__ scale,
                                                  T* __restrict__ out, int p, int c) {
    __shared__ float part[SM_TY][SM_TX + 1];
    int ch = blockIdx.x * SM_TX + threadIdx.x;
    long long b = blockIdx.y;
    float acc = 0.0f;
    if (ch < c) {
        const T* xb = x + b * p * c + ch;
        for (int px = threadIdx.y; px < p; px += SM_TY) acc += to_f32(xb[(long long)px * c]);
    }
    part[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && ch < c) {
        float s = 0.0f;
        for (int i = 0; i < SM_TY; ++i) s += part[i][threadIdx.x];
        out[b * c + ch] = from_f32<T>(s * scale[ch]);
    }
}

extern "C" __global__ void __launch_bounds__(SM_TX * SM_TY)
    spatial_mean_f16(const __half* __restrict__ x, const float* __restrict__ scale,
                     __half* __restrict__ out, int p, int c) {
    spatial_mean_impl<__half>(x, scale, out, p, c);
}

extern "C" __global__ void __launch_bounds__(SM_TX * SM_TY)
    spatial_mean_f32(const float* __restrict__ x, const float* __restrict__ scale,
                     float* __restrict__ out, int p, int c) {
    spatial_mean_impl<float>(x, scale, out, p, c);
}

template <typename T>
__device__ __forceinline__ void cumulative_pool_impl(const T* __restrict__ x,
                                                     const unsigned int* __restrict__ slots,
                                                     const unsigned long long* __restrict__ t,
                                                     float* __restrict__ sums,
                                                     T* __restrict__ out, int batch, int c) {
    GRID_STRIDE_LOOP(idx, (long long)batch * c) {
        long long b = idx / c;
        int ch = (int)(idx - b * c);
        float* s = sums + (long long)slots[b] * c + ch;
        float v = *s + to_f32(x[idx]);
        *s = v;
        out[idx] = from_f32<T>(v / (float)(t[b] + 1ull));
    }
}

#define CUMPOOL_ARGS(T)                                                                     \
    const T *__restrict__ x, const unsigned int *__restrict__ slots,                        \
        const unsigned long long *__restrict__ t, float *__restrict__ sums,                 \
        T *__restrict__ out, int batch, int c

extern "C" __global__ void cumulative_pool_f16(CUMPOOL_ARGS(__half)) {
    cumulative_pool_impl<__half>(x, slots, t, sums, out, batch, c);
}

extern "C" __global__ void cumulative_pool_f32(CUMPOOL_ARGS(float)) {
    cumulative_pool_impl<float>(x, slots, t, sums, out, batch, c);
}

template <typename T>
__device__ __forceinline__ void channel_gate_impl(T* __restrict__ x, const T* __restrict__ gate,
                                                  float scale, int batch, int p, int c) {
    long long frame = (long long)p * c;
    GRID_STRIDE_LOOP(idx, (long long)batch * frame) {
        long long b = idx / frame;
        int ch = (int)(idx % c);
        x[idx] = from_f32<T>(to_f32(x[idx]) * (to_f32(gate[b * c + ch]) * scale));
    }
}

extern "C" __global__ void channel_gate_f16(__half* __restrict__ x, const __half* __restrict__ gate,
                                            float scale, int batch, int p, int c) {
    channel_gate_impl<__half>(x, gate, scale, batch, p, c);
}

extern "C" __global__ void channel_gate_f32(float* __restrict__ x, const float* __restrict__ gate,
                                            float scale, int batch, int p, int c) {
    channel_gate_impl<float>(x, gate, scale, batch, p, c);
}
