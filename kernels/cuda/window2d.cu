// window2d.cu — the per-channel 2-D window ops, TF SAME geometry resolved by the host
// (Conv2dGeom: out size, stride, pad_top/pad_left; padded taps are skipped):
//   depthwise2d: y[b,oy,ox,c] = act(bias[c] + sum_{ky,kx} x[b,iy,ix,c] * w[ky,kx,c])
//   avg_pool2d:  y[b,oy,ox,c] = mean of the in-bounds taps (padded taps not counted)
//
// x: [B, in_h, in_w, C] T; w: [k_h, k_w, C] T; bias: [C] f32; y: [B, out_h, out_w, C] T.
// Launch: 1-D grid-stride over B*out_h*out_w*C outputs, 256-thread blocks; consecutive
// threads take consecutive channels, so every tap is a coalesced row read.
// Kernels: depthwise2d_f16, depthwise2d_f32, avg_pool2d_f16, avg_pool2d_f32.
#include "common.cuh"

template <typename T, bool POOL>
__device__ __forceinline__ void window2d_impl(const T* __restrict__ x, const T* __restrict__ w,
                                              const float* __restrict__ bias, T* __restrict__ y,
                                              int batch, int in_h, int in_w, int c, int out_h,
                                              int out_w, int k_h, int k_w, int stride,
                                              int pad_top, int pad_left, int act) {
    long long total = (long long)batch * out_h * out_w * c;
    GRID_STRIDE_LOOP(idx, total) {
        int ch = (int)(idx % c);
        long long r = idx / c;
        int ox = (int)(r % out_w);
        r /= out_w;
        int oy = (int)(r % out_h);
        long long b = r / out_h;
        float acc = POOL ? 0.0f : bias[ch];
        int count = 0;
        for (int ky = 0; ky < k_h; ++ky) {
            int iy = oy * stride + ky - pad_top;
            if (iy < 0 || iy >= in_h) continue;
            for (int kx = 0; kx < k_w; ++kx) {
                int ix = ox * stride + kx - pad_left;
                if (ix < 0 || ix >= in_w) continue;
                float xv = to_f32(x[((b * in_h + iy) * in_w + ix) * c + ch]);
                if (POOL) {
                    acc += xv;
                    ++count;
                } else {
                    acc += to_f32(w[(ky * k_w + kx) * c + ch]) * xv;
                }
            }
        }
        float v = POOL ? acc / (float)(count > 0 ? count : 1) : act_apply(act, acc);
        y[idx] = from_f32<T>(v);
    }
}

#define DW_ARGS(T)                                                                          \
    const T *__restrict__ x, const T *__restrict__ w, const float *__restrict__ bias,       \
        T *__restrict__ y, int batch, int in_h, int in_w, int c, int out_h, int out_w,      \
        int k_h, int k_w, int stride, int pad_top, int pad_left, int act

extern "C" __global__ void depthwise2d_f16(DW_ARGS(__half)) {
    window2d_impl<__half, false>(x, w, bias, y, batch, in_h, in_w, c, out_h, out_w, k_h, k_w,
                                 stride, pad_top, pad_left, act);
}

extern "C" __global__ void depthwise2d_f32(DW_ARGS(float)) {
    window2d_impl<float, false>(x, w, bias, y, batch, in_h, in_w, c, out_h, out_w, k_h, k_w,
                                stride, pad_top, pad_left, act);
}

#define POOL_ARGS(T)                                                                        \
    const T *__restrict__ x, T *__restrict__ y, int batch, int in_h, int in_w, int c,       \
        int out_h, int out_w, int k_h, int k_w, int stride, int pad_top, int pad_left

extern "C" __global__ void avg_pool2d_f16(POOL_ARGS(__half)) {
    window2d_impl<__half, true>(x, nullptr, nullptr, y, batch, in_h, in_w, c, out_h, out_w,
                                k_h, k_w, stride, pad_top, pad_left, ACT_NONE);
}

extern "C" __global__ void avg_pool2d_f32(POOL_ARGS(float)) {
    window2d_impl<float, true>(x, nullptr, nullptr, y, batch, in_h, in_w, c, out_h, out_w, k_h,
                               k_w, stride, pad_top, pad_left, ACT_NONE);
}
