// temporal.cu — causal temporal depthwise convolution over each stream's ring buffer
// (the MoViNet stream buffer), read and updated in place in the device slot pool:
//   y[b,e] = act(bias[c] + sum_{j<kt-1} w[j,c] * ring_b[(head+j) % (kt-1), e]
//                        + w[kt-1,c] * cur[b,e]),   then ring_b[head, e] = cur[b,e]
// with e = p*C + c, ring_b = state[slots[b]] ([kt-1, P, C]), head = t[b] % (kt-1): the
// ring position of frame f is f % (kt-1), so `head` holds the oldest frame (t - (kt-1)),
// which is exactly the one the current frame replaces. Zero state = frames before start.
//
// cur: [B, P, C] T; w: [kt, C] T; bias: [C] f32; state: [slots, kt-1, P, C] T;
// slots: [B] u32 (pairwise distinct); t: [B] u64 (frames already processed); y: [B, P, C]
// T (may alias cur: each thread reads its element before writing it).
// Launch: 1-D grid-stride over B*P*C, 256-thread blocks; each (b, e) is owned by one
// thread, which reads its ring column and then overwrites its own head element, so the
// in-place update has no races. Kernels: temporal_causal_f16, temporal_causal_f32.
#include "common.cuh"

template <typename T>
__device__ __forceinline__ void temporal_causal_impl(const T* cur, const T* __restrict__ w,
                                                     const float* __restrict__ bias,
                                                     T* __restrict__ state, T* y,
                                                     const unsigned int* __restrict__ slots,
                                                     const unsigned long long* __restrict__ t,
                                                     int batch, int p, int c, int kt, int act) {
    long long frame = (long long)p * c;
    long long total = (long long)batch * frame;
    int depth = kt - 1;
    GRID_STRIDE_LOOP(idx, total) {
        long long b = idx / frame;
        long long e = idx - b * frame;
        int ch = (int)(e % c);
        T* ring = state + (long long)slots[b] * depth * frame;
        int head = (int)(t[b] % (unsigned long long)depth);
        float acc = bias[ch];
        for (int j = 0; j < depth; ++j) {
            int pos = (head + j) % depth;
            acc += to_f32(w[j * c + ch]) * to_f32(ring[pos * frame + e]);
        }
        T cv = cur[idx];
        acc += to_f32(w[depth * c + ch]) * to_f32(cv);
        y[idx] = from_f32<T>(act_apply(act, acc));
        ring[head * frame + e] = cv;
    }
}

#define TEMPORAL_ARGS(T)                                                                    \
    const T *cur, const T *__restrict__ w, const float *__restrict__ bias,                  \
        T *__restrict__ state, T *y, const unsigned int *__restrict__ slots,                \
        const unsigned long long *__restrict__ t, int batch, int p, int c, int kt, int act

extern "C" __global__ void temporal_causal_f16(TEMPORAL_ARGS(__half)) {
    temporal_causal_impl<__half>(cur, w, bias, state, y, slots, t, batch, p, c, kt, act);
}

extern "C" __global__ void temporal_causal_f32(TEMPORAL_ARGS(float)) {
    temporal_causal_impl<float>(cur, w, bias, state, y, slots, t, batch, p, c, kt, act);
}
