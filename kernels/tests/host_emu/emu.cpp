// Host emulation of the Vigil CUDA kernels (no GPU needed): compiles kernels/cuda/*.cu
// with g++ against include/cuda_fp16.h (built-ins on CPU threads, mma.sync emulated) and
// checks each kernel against a plain reference written here from the kernels/src/cpu.rs
// contracts. It checks indexing, tiling, bounds and the tensor-core fragment mapping —
// not timing, memory-model or real-hardware behaviour. Run: kernels/tests/host_emu/run.sh
// (builds twice: __CUDA_ARCH__=800 for the mma path, 750 for the pre-Ampere fallback).
#include "cuda_fp16.h"
#include "preprocess.cu"
#include "conv2d.cu"
#include "pointwise.cu"
#include "window2d.cu"
#include "temporal.cu"
#include "reduce.cu"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

static int failures = 0;

static float act_ref(int act, float x) {
    switch (act) {
        case 1: return std::max(x, 0.0f);
        case 2: return std::min(std::max(x, 0.0f), 6.0f);
        case 3: return x * std::min(std::max(x + 3.0f, 0.0f), 6.0f) * (1.0f / 6.0f);
        case 4: return x / (1.0f + std::exp(-x));
        default: return x;
    }
}

template <typename T> T st(float v);
template <> float st<float>(float v) { return v; }
template <> __half st<__half>(float v) { return __float2half_rn(v); }
static float ld(float v) { return v; }
static float ld(__half v) { return __half2float(v); }

template <typename T>
static bool is_f16() { return sizeof(T) == 2; }

template <typename T>
static void check(const std::string& what, const std::vector<T>& got, const std::vector<float>& want) {
    double tol = is_f16<T>() ? 1e-2 : 2e-5;
    size_t bad = 0, first = 0;
    double worst = 0;
    for (size_t i = 0; i < want.size(); ++i) {
        float g = ld(got[i]);
        double err = std::fabs((double)g - want[i]);
        if (!std::isfinite(g) || err > tol + tol * std::fabs(want[i])) {
            if (!bad) first = i;
            ++bad;
        }
        if (std::isfinite(err)) worst = std::max(worst, err);
    }
    if (bad) {
        ++failures;
        std::printf("FAIL %s [%s]: %zu/%zu off, first at %zu got %g want %g (max err %g)\n", what.c_str(),
                    is_f16<T>() ? "f16" : "f32", bad, want.size(), first, ld(got[first]), want[first], worst);
    } else {
        std::printf("ok   %s [%s] (max err %.3g)\n", what.c_str(), is_f16<T>() ? "f16" : "f32", worst);
    }
}

static std::mt19937 rng(1234);
static std::vector<float> rnd(size_t n, float lo, float hi) {
    std::uniform_real_distribution<float> d(lo, hi);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
}
template <typename T>
static std::vector<T> q(const std::vector<float>& v, std::vector<float>& back) {
    std::vector<T> out(v.size());
    back.resize(v.size());
    for (size_t i = 0; i < v.size(); ++i) {
        out[i] = st<T>(v[i]);
        back[i] = ld(out[i]);
    }
    return out;
}
template <typename T>
static std::vector<T> poison(size_t n) { return std::vector<T>(n, st<T>(NAN)); }

static dim3 grid1d(long long total) {
    long long b = (total + 255) / 256;
    return dim3{(unsigned)std::max(1LL, std::min(b, 3LL)), 1, 1};  // few blocks: grid-stride covers the rest
}

// ---- pointwise -------------------------------------------------------------------------
template <typename T>
static void pointwise_case(int M, int K, int N, int act, bool res, int gate_p, bool misalign) {
    int off = misalign ? 1 : 0;
    std::vector<float> x, w, r, g;
    auto hx = q<T>(rnd(M * K + off, -1, 1), x);
    auto hw = q<T>(rnd(N * K, -1, 1), w);
    auto hr = q<T>(rnd(M * N, -1, 1), r);
    auto bias = rnd(N, -0.5, 0.5);
    int streams = gate_p > 0 ? M / gate_p : 0;
    auto hg = q<T>(rnd(std::max(1, streams * K), 0, 6), g);
    float scale = 1.0f / 6.0f;
    std::vector<float> want(M * N);
    for (int m = 0; m < M; ++m)
        for (int n = 0; n < N; ++n) {
            double s = 0;
            for (int k = 0; k < K; ++k) {
                float a = x[off + m * K + k];
                if (gate_p > 0) {
                    a = a * (g[(m / gate_p) * K + k] * scale);
                    a = ld(st<T>(a));
                }
                s += (double)a * w[n * K + k];
            }
            float v = act_ref(act, (float)s + bias[n]);
            if (res) v += r[m * N + n];
            want[m * N + n] = v;
        }
    auto y = poison<T>(M * N);
    const T* xp = hx.data() + off;
    const T* rp = res ? hr.data() : nullptr;
    const T* gp = gate_p > 0 ? hg.data() : nullptr;
    int gpp = gate_p > 0 ? gate_p : 1;
    dim3 grid{(unsigned)((M + 63) / 64), (unsigned)((N + 63) / 64), 1};
    if constexpr (sizeof(T) == 2)
        emu_launch(grid, dim3{128, 1, 1}, [&] { pointwise_f16(xp, hw.data(), bias.data(), rp, gp, scale, gpp, y.data(), M, N, K, act); });
    else
        emu_launch(grid, dim3{256, 1, 1}, [&] { pointwise_f32(xp, hw.data(), bias.data(), rp, gp, scale, gpp, y.data(), M, N, K, act); });
    char buf[160];
    std::snprintf(buf, sizeof buf, "pointwise M=%d K=%d N=%d act=%d res=%d gate_p=%d misalign=%d", M, K, N, act, res, gate_p, misalign);
    check<T>(buf, y, want);
}

// ---- window ops ------------------------------------------------------------------------
struct Geom {
    int in_h, in_w, out_h, out_w, k_h, k_w, stride, pad_top, pad_left;
};
static Geom same(int in_h, int in_w, int k, int s) {
    int oh = (in_h + s - 1) / s, ow = (in_w + s - 1) / s;
    int ph = std::max((oh - 1) * s + k - in_h, 0), pw = std::max((ow - 1) * s + k - in_w, 0);
    return Geom{in_h, in_w, oh, ow, k, k, s, ph / 2, pw / 2};
}

template <typename T>
static void window_case(int B, Geom G, int C, int act, bool pool) {
    std::vector<float> x, w;
    auto hx = q<T>(rnd((size_t)B * G.in_h * G.in_w * C, -2, 2), x);
    auto hw = q<T>(rnd(G.k_h * G.k_w * C, -0.7f, 0.7f), w);
    auto bias = rnd(C, -0.5, 0.5);
    std::vector<float> want((size_t)B * G.out_h * G.out_w * C);
    for (int b = 0; b < B; ++b)
        for (int oy = 0; oy < G.out_h; ++oy)
            for (int ox = 0; ox < G.out_w; ++ox)
                for (int c = 0; c < C; ++c) {
                    float acc = pool ? 0 : bias[c];
                    int cnt = 0;
                    for (int ky = 0; ky < G.k_h; ++ky)
                        for (int kx = 0; kx < G.k_w; ++kx) {
                            int iy = oy * G.stride + ky - G.pad_top, ix = ox * G.stride + kx - G.pad_left;
                            if (iy < 0 || iy >= G.in_h || ix < 0 || ix >= G.in_w) continue;
                            float xv = x[(((size_t)b * G.in_h + iy) * G.in_w + ix) * C + c];
                            acc += pool ? xv : w[(ky * G.k_w + kx) * C + c] * xv;
                            ++cnt;
                        }
                    want[(((size_t)b * G.out_h + oy) * G.out_w + ox) * C + c] = pool ? acc / std::max(cnt, 1) : act_ref(act, acc);
                }
    auto y = poison<T>(want.size());
    dim3 grid = grid1d(want.size());
    emu_launch(grid, dim3{256, 1, 1}, [&] {
        if constexpr (sizeof(T) == 2) {
            if (pool) avg_pool2d_f16(hx.data(), y.data(), B, G.in_h, G.in_w, C, G.out_h, G.out_w, G.k_h, G.k_w, G.stride, G.pad_top, G.pad_left);
            else depthwise2d_f16(hx.data(), hw.data(), bias.data(), y.data(), B, G.in_h, G.in_w, C, G.out_h, G.out_w, G.k_h, G.k_w, G.stride, G.pad_top, G.pad_left, act);
        } else {
            if (pool) avg_pool2d_f32(hx.data(), y.data(), B, G.in_h, G.in_w, C, G.out_h, G.out_w, G.k_h, G.k_w, G.stride, G.pad_top, G.pad_left);
            else depthwise2d_f32(hx.data(), hw.data(), bias.data(), y.data(), B, G.in_h, G.in_w, C, G.out_h, G.out_w, G.k_h, G.k_w, G.stride, G.pad_top, G.pad_left, act);
        }
    });
    char buf[160];
    std::snprintf(buf, sizeof buf, "%s %dx%d k%d s%d pad(%d,%d) C=%d", pool ? "avg_pool2d" : "depthwise2d", G.in_h, G.in_w, G.k_h, G.stride, G.pad_top, G.pad_left, C);
    check<T>(buf, y, want);
}

template <typename T>
static void conv2d_case(int B, Geom G, int CI, int CO, int act) {
    std::vector<float> x, w;
    auto hx = q<T>(rnd((size_t)B * G.in_h * G.in_w * CI, 0, 1), x);
    auto hw = q<T>(rnd(G.k_h * G.k_w * CI * CO, -0.5, 0.5), w);
    auto bias = rnd(CO, -0.5, 0.5);
    std::vector<float> want((size_t)B * G.out_h * G.out_w * CO);
    for (int b = 0; b < B; ++b)
        for (int oy = 0; oy < G.out_h; ++oy)
            for (int ox = 0; ox < G.out_w; ++ox)
                for (int co = 0; co < CO; ++co) {
                    float acc = bias[co];
                    for (int ky = 0; ky < G.k_h; ++ky)
                        for (int kx = 0; kx < G.k_w; ++kx) {
                            int iy = oy * G.stride + ky - G.pad_top, ix = ox * G.stride + kx - G.pad_left;
                            if (iy < 0 || iy >= G.in_h || ix < 0 || ix >= G.in_w) continue;
                            for (int ci = 0; ci < CI; ++ci)
                                acc += w[((ky * G.k_w + kx) * CI + ci) * CO + co] * x[(((size_t)b * G.in_h + iy) * G.in_w + ix) * CI + ci];
                        }
                    want[(((size_t)b * G.out_h + oy) * G.out_w + ox) * CO + co] = act_ref(act, acc);
                }
    auto y = poison<T>(want.size());
    emu_launch(grid1d(want.size()), dim3{256, 1, 1}, [&] {
        if constexpr (sizeof(T) == 2)
            conv2d_f16(hx.data(), hw.data(), bias.data(), y.data(), B, G.in_h, G.in_w, CI, G.out_h, G.out_w, CO, G.k_h, G.k_w, G.stride, G.pad_top, G.pad_left, act);
        else
            conv2d_f32(hx.data(), hw.data(), bias.data(), y.data(), B, G.in_h, G.in_w, CI, G.out_h, G.out_w, CO, G.k_h, G.k_w, G.stride, G.pad_top, G.pad_left, act);
    });
    char buf[160];
    std::snprintf(buf, sizeof buf, "conv2d %dx%d k%d s%d cin=%d cout=%d", G.in_h, G.in_w, G.k_h, G.stride, CI, CO);
    check<T>(buf, y, want);
}

// ---- temporal ring over several steps --------------------------------------------------
template <typename T>
static void temporal_case(int P, int C, int KT, int act) {
    const int SLOTS = 5, D = KT - 1;
    size_t frame = (size_t)P * C;
    std::vector<float> w;
    auto hw = q<T>(rnd(KT * C, -1, 1), w);
    auto bias = rnd(C, -0.5, 0.5);
    std::vector<float> ref_state(SLOTS * D * frame, 0.0f);
    std::vector<T> state(SLOTS * D * frame, st<T>(0.0f));
    std::vector<unsigned long long> done(SLOTS, 0);
    for (int step = 0; step < 8; ++step) {
        std::vector<unsigned> slots(SLOTS);
        for (int i = 0; i < SLOTS; ++i) slots[i] = i;
        std::shuffle(slots.begin(), slots.end(), rng);
        int B = 1 + (int)(rng() % SLOTS);
        slots.resize(B);
        std::vector<unsigned long long> t(B);
        for (int b = 0; b < B; ++b) t[b] = done[slots[b]];
        std::vector<float> cur;
        auto hcur = q<T>(rnd(B * frame, -2, 2), cur);
        std::vector<float> want(B * frame);
        for (int b = 0; b < B; ++b) {
            float* ring = &ref_state[slots[b] * D * frame];
            int head = (int)(t[b] % D);
            for (size_t e = 0; e < frame; ++e) {
                int c = (int)(e % C);
                float acc = bias[c];
                for (int j = 0; j < D; ++j) acc += w[j * C + c] * ring[((head + j) % D) * frame + e];
                acc += w[D * C + c] * cur[b * frame + e];
                want[b * frame + e] = act_ref(act, acc);
            }
            for (size_t e = 0; e < frame; ++e) ring[head * frame + e] = cur[b * frame + e];
        }
        auto y = poison<T>(B * frame);
        emu_launch(grid1d(B * frame), dim3{256, 1, 1}, [&] {
            if constexpr (sizeof(T) == 2)
                temporal_causal_f16(hcur.data(), hw.data(), bias.data(), state.data(), y.data(), slots.data(), t.data(), B, P, C, KT, act);
            else
                temporal_causal_f32(hcur.data(), hw.data(), bias.data(), state.data(), y.data(), slots.data(), t.data(), B, P, C, KT, act);
        });
        char buf[128];
        std::snprintf(buf, sizeof buf, "temporal_causal P=%d C=%d kt=%d step %d B=%d", P, C, KT, step, B);
        check<T>(buf, y, want);
        for (int b = 0; b < B; ++b) done[slots[b]]++;
    }
    check<T>("temporal_causal ring pool", state, ref_state);
}

// ---- reductions ------------------------------------------------------------------------
template <typename T>
static void reduce_cases(int B, int P, int C) {
    std::vector<float> x, gte;
    auto hx = q<T>(rnd((size_t)B * P * C, -1, 2), x);
    auto scale = rnd(C, 0.5f / P, 1.5f / P);
    std::vector<float> want(B * C, 0.0f);
    for (int b = 0; b < B; ++b)
        for (int p = 0; p < P; ++p)
            for (int c = 0; c < C; ++c) want[b * C + c] += x[((size_t)b * P + p) * C + c];
    for (int b = 0; b < B; ++b)
        for (int c = 0; c < C; ++c) want[b * C + c] *= scale[c];
    auto out = poison<T>(B * C);
    emu_launch(dim3{(unsigned)((C + 31) / 32), (unsigned)B, 1}, dim3{32, 8, 1}, [&] {
        if constexpr (sizeof(T) == 2) spatial_mean_f16(hx.data(), scale.data(), out.data(), P, C);
        else spatial_mean_f32(hx.data(), scale.data(), out.data(), P, C);
    });
    char buf[128];
    std::snprintf(buf, sizeof buf, "spatial_mean B=%d P=%d C=%d", B, P, C);
    check<T>(buf, out, want);

    // channel_gate
    auto hg = q<T>(rnd(B * C, 0, 6), gte);
    std::vector<float> gw(x);
    for (int b = 0; b < B; ++b)
        for (int p = 0; p < P; ++p)
            for (int c = 0; c < C; ++c) gw[((size_t)b * P + p) * C + c] *= gte[b * C + c] * (1.0f / 6.0f);
    auto hx2 = hx;
    emu_launch(grid1d((long long)B * P * C), dim3{256, 1, 1}, [&] {
        if constexpr (sizeof(T) == 2) channel_gate_f16(hx2.data(), hg.data(), 1.0f / 6.0f, B, P, C);
        else channel_gate_f32(hx2.data(), hg.data(), 1.0f / 6.0f, B, P, C);
    });
    std::snprintf(buf, sizeof buf, "channel_gate B=%d P=%d C=%d", B, P, C);
    check<T>(buf, hx2, gw);

    // cumulative_pool over 4 steps, slots reversed each step
    const int SLOTS = B + 2;
    std::vector<float> sums(SLOTS * C, 0.0f), ref(SLOTS * C, 0.0f);
    std::vector<unsigned long long> done(SLOTS, 0);
    for (int step = 0; step < 4; ++step) {
        std::vector<unsigned> slots(B);
        for (int b = 0; b < B; ++b) slots[b] = (unsigned)((step % 2 ? SLOTS - 1 - b : b + step % 3) % SLOTS);
        std::vector<unsigned long long> t(B);
        for (int b = 0; b < B; ++b) t[b] = done[slots[b]];
        std::vector<float> xv;
        auto hxv = q<T>(rnd(B * C, -1, 3), xv);
        std::vector<float> w2(B * C);
        for (int b = 0; b < B; ++b)
            for (int c = 0; c < C; ++c) {
                ref[slots[b] * C + c] += xv[b * C + c];
                w2[b * C + c] = ref[slots[b] * C + c] / (float)(t[b] + 1);
            }
        auto o = poison<T>(B * C);
        emu_launch(grid1d(B * C), dim3{256, 1, 1}, [&] {
            if constexpr (sizeof(T) == 2) cumulative_pool_f16(hxv.data(), slots.data(), t.data(), sums.data(), o.data(), B, C);
            else cumulative_pool_f32(hxv.data(), slots.data(), t.data(), sums.data(), o.data(), B, C);
        });
        std::snprintf(buf, sizeof buf, "cumulative_pool B=%d C=%d step %d", B, C, step);
        check<T>(buf, o, w2);
        for (int b = 0; b < B; ++b) done[slots[b]]++;
    }

    // preprocess
    std::vector<unsigned char> fr(B * P * 3);
    for (auto& v : fr) v = (unsigned char)(rng() & 0xff);
    std::vector<float> pw(fr.size());
    for (size_t i = 0; i < fr.size(); ++i) pw[i] = fr[i] / 255.0f;
    auto po = poison<T>(fr.size());
    emu_launch(grid1d(fr.size()), dim3{256, 1, 1}, [&] {
        if constexpr (sizeof(T) == 2) preprocess_u8_f16(fr.data(), po.data(), (long long)fr.size());
        else preprocess_u8_f32(fr.data(), po.data(), (long long)fr.size());
    });
    check<T>("preprocess_u8", po, pw);
}

template <typename T>
static void all() {
    pointwise_case<T>(1, 1, 1, 0, false, 0, false);
    pointwise_case<T>(37, 13, 29, 4, true, 0, false);
    pointwise_case<T>(130, 64, 72, 3, false, 0, false);
    pointwise_case<T>(130, 64, 72, 2, true, 0, true);
    pointwise_case<T>(70, 40, 96, 1, true, 0, false);
    pointwise_case<T>(5, 480, 130, 4, false, 0, false);
    pointwise_case<T>(65, 8, 65, 0, false, 0, false);
    pointwise_case<T>(3 * 25, 56, 24, 3, true, 25, false);
    pointwise_case<T>(2 * 36, 48, 70, 2, false, 36, false);
    pointwise_case<T>(4 * 9, 13, 7, 0, true, 9, false);
    window_case<T>(2, same(22, 22, 3, 1), 24, 4, false);
    window_case<T>(2, same(43, 43, 5, 2), 6, 3, false);
    window_case<T>(3, same(11, 11, 5, 2), 17, 2, false);
    window_case<T>(1, same(7, 9, 3, 2), 5, 1, false);
    window_case<T>(2, same(43, 43, 3, 2), 4, 0, true);
    window_case<T>(3, same(6, 6, 3, 2), 5, 0, true);
    window_case<T>(1, same(11, 11, 3, 2), 33, 0, true);
    conv2d_case<T>(2, same(17, 23, 3, 2), 3, 8, 3);
    conv2d_case<T>(1, same(9, 7, 3, 1), 5, 13, 2);
    conv2d_case<T>(1, same(10, 10, 5, 2), 2, 3, 4);
    temporal_case<T>(13, 7, 3, 4);
    temporal_case<T>(13, 7, 5, 3);
    temporal_case<T>(1, 1, 2, 0);
    reduce_cases<T>(3, 29, 37);
    reduce_cases<T>(2, 1, 70);
}

int main() {
    std::printf("host emulation, __CUDA_ARCH__=%d\n", (int)__CUDA_ARCH__);
    all<float>();
    all<__half>();
    std::printf(failures ? "%d FAILED\n" : "all ok\n", failures);
    return failures ? 1 : 0;
}
