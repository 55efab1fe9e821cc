// race_main.cpp — the race check (`vigil-emu-race`, built with -fsanitize=thread): every
// kernel of the registry, in both precisions, at small sizes that still span several
// blocks, warps and shared-memory tiles, each CUDA thread a real OS thread
// (exec_threads.cpp). ThreadSanitizer reports any pair of accesses to shared or global
// memory that no barrier orders; the process then exits with TSan's exit code (set to 66
// by vigil_cuda_emu::race_check). A kernel of the registry without a case here fails the
// check, so a new kernel cannot go unchecked.
//
// Usage: vigil-emu-race [FILTER]   (only kernels whose name contains FILTER)
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "exec.h"
#include "registry.h"

using vigil_emu::dim3;

namespace {

const char* g_filter = nullptr;
std::set<std::string> g_covered;
unsigned g_launches = 0;
bool g_failed = false;
std::mt19937 g_rng(7);

bool wanted(const char* name) { return !g_filter || std::strstr(name, g_filter); }

/// Pack `args` by the kernel's own parameter layout (checking count and sizes) and run it.
template <typename... A>
void launch(const char* name, dim3 grid, dim3 block, A... args) {
    g_covered.insert(name);
    if (!wanted(name)) return;
    const vigil_emu::KernelEntry* k = vigil_emu::find_kernel(name);
    if (!k) {
        std::printf("race-check: FAIL: no kernel %s in the registry\n", name);
        g_failed = true;
        return;
    }
    if (k->num_params != sizeof...(A)) {
        std::printf("race-check: FAIL: %s takes %u parameters, the case passes %zu\n", name, k->num_params,
                    sizeof...(A));
        g_failed = true;
        return;
    }
    std::vector<unsigned char> buf(k->param_bytes + 1);
    unsigned i = 0;
    auto put = [&](const void* p, std::size_t size) {
        if (k->params[i].size != size) {
            std::printf("race-check: FAIL: %s parameter #%u is %u bytes, the case passes %zu\n", name, i,
                        k->params[i].size, size);
            g_failed = true;
        } else {
            std::memcpy(buf.data() + k->params[i].offset, p, size);
        }
        ++i;
    };
    (put(&args, sizeof(A)), ...);
    if (g_failed) return;
    vigil_emu::Launch l{k, buf.data(), grid, block, name};
    vigil_emu::execute(l);
    ++g_launches;
    std::printf("race-check: %-22s grid (%u,%u,%u) block (%u,%u,%u) ran\n", name, grid.x, grid.y, grid.z, block.x,
                block.y, block.z);
    std::fflush(stdout);
}

uint16_t to_half(float v) { return vigil_emu::float_to_half_bits(v); }

/// Random storage data of `n` elements: f16 bits or f32, as raw bytes.
std::vector<unsigned char> data(std::size_t n, bool f16, float lo = -1.0f, float hi = 1.0f) {
    std::uniform_real_distribution<float> d(lo, hi);
    std::vector<unsigned char> out(n * (f16 ? 2 : 4));
    for (std::size_t i = 0; i < n; ++i) {
        const float v = d(g_rng);
        if (f16) {
            const uint16_t h = to_half(v);
            std::memcpy(out.data() + 2 * i, &h, 2);
        } else {
            std::memcpy(out.data() + 4 * i, &v, 4);
        }
    }
    return out;
}

std::vector<float> floats(std::size_t n, float lo = -0.5f, float hi = 0.5f) {
    std::uniform_real_distribution<float> d(lo, hi);
    std::vector<float> v(n);
    for (float& x : v) x = d(g_rng);
    return v;
}

void cases(bool f16) {
    const char* sfx = f16 ? "_f16" : "_f32";
    auto name = [&](const char* op) {
        static std::string s;
        s = std::string(op) + sfx;
        return s.c_str();
    };
    const dim3 b256{256, 1, 1};
    {  // preprocess_u8: 3 blocks over 1000 elements (grid-stride)
        std::vector<unsigned char> frames(1000, 77);
        auto out = data(1000, f16);
        launch(name("preprocess_u8"), dim3{3, 1, 1}, b256, (const void*)frames.data(), (void*)out.data(),
               (long long)1000);
    }
    {  // conv2d: 9x9x3 -> 5x5x8, k3 s2, SAME
        auto x = data(2 * 9 * 9 * 3, f16), w = data(3 * 3 * 3 * 8, f16), y = data(2 * 5 * 5 * 8, f16);
        auto bias = floats(8);
        launch(name("conv2d"), dim3{2, 1, 1}, b256, (const void*)x.data(), (const void*)w.data(),
               (const void*)bias.data(), (void*)y.data(), 2, 9, 9, 3, 5, 5, 8, 3, 3, 2, 1, 1, 3);
    }
    {  // pointwise: M=N=70 (2x2 tiles), K=72 (several k-tiles: both barriers matter),
       // plain, then with residual and the SE gate.
        const int M = 70, N = 70, K = 72, P = 35;
        auto x = data(M * K, f16), w = data(N * K, f16), r = data(M * N, f16), g = data(2 * K, f16, 0, 6);
        auto y = data(M * N, f16);
        auto bias = floats(N);
        const dim3 blk{f16 ? 128u : 256u, 1, 1}, grd{2, 2, 1};
        launch(name("pointwise"), grd, blk, (const void*)x.data(), (const void*)w.data(), (const void*)bias.data(),
               (const void*)nullptr, (const void*)nullptr, 1.0f, 1, (void*)y.data(), M, N, K, 4);
        launch(name("pointwise"), grd, blk, (const void*)x.data(), (const void*)w.data(), (const void*)bias.data(),
               (const void*)r.data(), (const void*)g.data(), 1.0f / 6.0f, P, (void*)y.data(), M, N, K, 3);
    }
    {  // depthwise2d and avg_pool2d: 2 x 6x6x5, k3 s1 pad 1
        auto x = data(2 * 6 * 6 * 5, f16), w = data(3 * 3 * 5, f16), y = data(2 * 6 * 6 * 5, f16);
        auto bias = floats(5);
        launch(name("depthwise2d"), dim3{2, 1, 1}, b256, (const void*)x.data(), (const void*)w.data(),
               (const void*)bias.data(), (void*)y.data(), 2, 6, 6, 5, 6, 6, 3, 3, 1, 1, 1, 4);
        auto yp = data(2 * 3 * 3 * 5, f16);
        launch(name("avg_pool2d"), dim3{1, 1, 1}, b256, (const void*)x.data(), (void*)yp.data(), 2, 6, 6, 5, 3, 3, 3,
               3, 2, 1, 1);
    }
    {  // temporal_causal: 3 streams in slots {2,0,3} of 4, P=7, C=9, kt=3; y aliases cur
        const int B = 3, P = 7, C = 9, KT = 3;
        auto cur = data(B * P * C, f16), w = data(KT * C, f16), state = data(4 * (KT - 1) * P * C, f16);
        auto bias = floats(C);
        std::vector<uint32_t> slots{2, 0, 3};
        std::vector<uint64_t> t{5, 0, 1};
        launch(name("temporal_causal"), dim3{2, 1, 1}, b256, (const void*)cur.data(), (const void*)w.data(),
               (const void*)bias.data(), (void*)state.data(), (void*)cur.data(), (const void*)slots.data(),
               (const void*)t.data(), B, P, C, KT, 1);
    }
    {  // spatial_mean: B=3, P=29, C=37 -> grid (2, 3), block (32, 8)
        const int B = 3, P = 29, C = 37;
        auto x = data(B * P * C, f16), out = data(B * C, f16);
        auto scale = floats(C, 0.01f, 0.05f);
        launch(name("spatial_mean"), dim3{2, 3, 1}, dim3{32, 8, 1}, (const void*)x.data(), (const void*)scale.data(),
               (void*)out.data(), P, C);
    }
    {  // cumulative_pool: B=3, C=37 over slots {1,3,0} of 4
        const int B = 3, C = 37;
        auto x = data(B * C, f16), out = data(B * C, f16);
        auto sums = floats(4 * C);
        std::vector<uint32_t> slots{1, 3, 0};
        std::vector<uint64_t> t{2, 0, 7};
        launch(name("cumulative_pool"), dim3{1, 1, 1}, dim3{64, 1, 1}, (const void*)x.data(),
               (const void*)slots.data(), (const void*)t.data(), (void*)sums.data(), (void*)out.data(), B, C);
    }
    {  // channel_gate in place: B=2, P=9, C=13
        auto x = data(2 * 9 * 13, f16), g = data(2 * 13, f16, 0, 6);
        launch(name("channel_gate"), dim3{2, 1, 1}, b256, (void*)x.data(), (const void*)g.data(), 1.0f / 6.0f, 2, 9,
               13);
    }
    {  // linear: M=70, N=66 (2x2 tiles with tails), K=40 (two k-tiles, a K tail), quick
       // GELU + residual, then exact GELU without
        const int M = 70, N = 66, K = 40;
        auto x = data(M * K, f16), w = data(N * K, f16), r = data(M * N, f16), y = data(M * N, f16);
        auto bias = floats(N);
        const dim3 blk{f16 ? 128u : 256u, 1, 1}, grd{2, 2, 1};
        launch(name("linear"), grd, blk, (const void*)x.data(), (const void*)w.data(), (const void*)bias.data(),
               (const void*)r.data(), (void*)y.data(), M, N, K, 1);
        launch(name("linear"), grd, blk, (const void*)x.data(), (const void*)w.data(), (const void*)bias.data(),
               (const void*)nullptr, (void*)y.data(), M, N, K, 2);
    }
    {  // layer_norm: 3 rows of 150 (every thread 1-2 values), rows strided by 160
        auto x = data(3 * 160, f16), y = data(3 * 150, f16);
        auto gamma = floats(150, 0.5f, 1.5f), beta = floats(150);
        launch(name("layer_norm"), dim3{3, 1, 1}, dim3{128, 1, 1}, (const void*)x.data(), (long long)160,
               (const void*)gamma.data(), (const void*)beta.data(), 1e-5f, (void*)y.data(), 150);
    }
    {  // attention: 2 sequences x 2 heads, 40 tokens (2 query blocks, 3 key tiles), head_dim
       // 12, q/k/v the thirds of one fused QKV row; causal, then not
        const int B = 2, H = 2, S = 40, HD = 12, D = H * HD;
        auto qkv = data(B * S * 3 * D, f16), out = data(B * S * D, f16);
        const std::size_t es = f16 ? 2 : 4;
        const unsigned char* base = qkv.data();
        for (int causal = 1; causal >= 0; --causal)
            launch(name("attention"), dim3{2, H, B}, dim3{128, 1, 1}, (const void*)base, (long long)(3 * D),
                   (const void*)(base + D * es), (long long)(3 * D), (const void*)(base + 2 * D * es),
                   (long long)(3 * D), (void*)out.data(), H, S, S, HD, causal, 0.25f);
    }
}

}  // namespace

int main(int argc, char** argv) {
    if (argc > 1) g_filter = argv[1];
    cases(true);
    cases(false);
    for (unsigned i = 0; i < vigil_emu::kKernelRegistrySize; ++i) {
        const char* k = vigil_emu::kKernelRegistry[i].name;
        if (!g_covered.count(k)) {
            std::printf("race-check: FAIL: kernel %s has no race-check case (add one to kernels/emu/cpp/race_main.cpp)\n", k);
            g_failed = true;
        }
    }
    std::printf("race-check: %u launches, %u kernels%s\n", g_launches, vigil_emu::kKernelRegistrySize,
                g_failed ? ", FAILED" : "");
    return g_failed ? 1 : 0;
}
