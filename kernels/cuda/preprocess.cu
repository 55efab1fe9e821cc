// preprocess.cu — u8 RGB frames to the storage dtype in [0, 1]: out[i] = frames[i] / 255.
//
// frames: [B, H, W, 3] u8 contiguous (the batch's frames packed back to back);
// out: [B, H, W, 3] T. Launch: 1-D grid-stride, 256-thread blocks, one element per
// thread-iteration. Kernels: preprocess_u8_f16, preprocess_u8_f32.
#include "common.cuh"

template <typename T>
__device__ __forceinline__ void preprocess_u8_impl(const unsigned char* __restrict__ frames,
                                                   T* __restrict__ out, long long n) {
    GRID_STRIDE_LOOP(i, n) { out[i] = from_f32<T>((float)frames[i] / 255.0f); }
}

extern "C" __global__ void preprocess_u8_f16(const unsigned char* __restrict__ frames,
                                             __half* __restrict__ out, long long n) {
    preprocess_u8_impl<__half>(frames, out, n);
}

extern "C" __global__ void preprocess_u8_f32(const unsigned char* __restrict__ frames,
                                             float* __restrict__ out, long long n) {
    preprocess_u8_impl<float>(frames, out, n);
}
