// conv2d.cu — full 2-D convolution (the stem) with bias and activation, TF SAME padding
// resolved by the host (Conv2dGeom): y[b, oy, ox, co] = act(bias[co] + sum_{ky,kx,ci}
// x[b, oy*s+ky-pad_top, ox*s+kx-pad_left, ci] * w[ky, kx, ci, co]), padded taps skipped.
//
// x: [B, in_h, in_w, cin] T; w: [k_h, k_w, cin, cout] T (HWIO); bias: [cout] f32;
// y: [B, out_h, out_w, cout] T. Launch: 1-D grid-stride over B*out_h*out_w*cout outputs,
// 256-thread blocks; consecutive threads take consecutive output channels (coalesced
// weight and output access). Kernels: conv2d_f16, conv2d_f32.
#include "common.cuh"

template <typename T>
__device__ __forceinline__ void conv2d_impl(const T* __restrict__ x, const T* __restrict__ w,
                                            const float* __restrict__ bias, T* __restrict__ y,
                                            int batch, int in_h, int in_w, int cin, int out_h,
                                            int out_w, int cout, int k_h, int k_w, int stride,
                                            int pad_top, int pad_left, int act) {
    long long total = (long long)batch * out_h * out_w * cout;
    GRID_STRIDE_LOOP(idx, total) {
        int co = (int)(idx % cout);
        long long r = idx / cout;
        int ox = (int)(r % out_w);
        r /= out_w;
        int oy = (int)(r % out_h);
        long long b = r / out_h;
        float acc = bias[co];
        for (int ky = 0; ky < k_h; ++ky) {
            int iy = oy * stride + ky - pad_top;
            if (iy < 0 || iy >= in_h) continue;
            for (int kx = 0; kx < k_w; ++kx) {
                int ix = ox * stride + kx - pad_left;
                if (ix < 0 || ix >= in_w) continue;
                const T* px = x + ((b * in_h + iy) * in_w + ix) * cin;
                const T* wk = w + (long long)(ky * k_w + kx) * cin * cout + co;
                for (int ci = 0; ci < cin; ++ci) acc += to_f32(wk[(long long)ci * cout]) * to_f32(px[ci]);
            }
        }
        y[idx] = from_f32<T>(act_apply(act, acc));
    }
}

#define CONV2D_ARGS(T)                                                                      \
    const T *__restrict__ x, const T *__restrict__ w, const float *__restrict__ bias,       \
        T *__restrict__ y, int batch, int in_h, int in_w, int cin, int out_h, int out_w,    \
        int cout, int k_h, int k_w, int stride, int pad_top, int pad_left, int act

extern "C" __global__ void conv2d_f16(CONV2D_ARGS(__half)) {
    conv2d_impl<__half>(x, w, bias, y, batch, in_h, in_w, cin, out_h, out_w, cout, k_h, k_w,
                        stride, pad_top, pad_left, act);
}

extern "C" __global__ void conv2d_f32(CONV2D_ARGS(float)) {
    conv2d_impl<float>(x, w, bias, y, batch, in_h, in_w, cin, out_h, out_w, cout, k_h, k_w,
                       stride, pad_top, pad_left, act);
}
