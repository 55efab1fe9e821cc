// driver.cpp — the exported CUDA driver API of vigil-cuda-emu (libcuda.so for tests).
//
// One device, ordinal 0: "Vigil CUDA emulator (CPU, not a GPU)", compute capability 8.0
// (so NVRTC builds sm_80 and the tensor-core path runs; a build for VIGIL_EMU_SM=75 runs
// the kernels' pre-Ampere paths), an A100-like set of limits, 8 GiB of memory (or half the
// host's). Entry points validate their arguments the way the
// driver does and return its error codes; the device work they enqueue runs later, in
// stream order (state.h). What is not emulated returns CUDA_ERROR_NOT_SUPPORTED, never a
// silent success: non-primary contexts, managed memory, memory pools, arrays/textures,
// cooperative launches, graph memory/child nodes, manual graph construction.
//
// Extensions (for tests): vigilEmuVersion, vigilEmuCounters, vigilEmuStreamCounters,
// vigilEmuResetCounters, vigilEmuCounterFields, vigilEmuLayoutOfMemcpy2D.
#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include "cuda_abi.h"
#include "exec.h"
#include "memory.h"
#include "report.h"
#include "state.h"

#define API extern "C" __attribute__((visibility("default")))

namespace vigil_emu {
namespace {

constexpr const char* kDeviceName = "Vigil CUDA emulator (CPU, not a GPU)";
constexpr int kDriverVersion = 12090;  // CUDA 12.9: accepts PTX ISA up to 8.8
constexpr unsigned kPtxMajorMax = 8, kPtxMinorMax = 8;
#ifndef VIGIL_EMU_SM
#define VIGIL_EMU_SM 80
#endif
constexpr int kSm = VIGIL_EMU_SM;  // the build's -DVIGIL_EMU_SM (sm_80 unless asked)
constexpr unsigned kMaxSmemPerBlock = 48 * 1024;          // without opt-in
constexpr unsigned kMaxSmemPerBlockOptin = 163 * 1024;    // sm_80
constexpr unsigned kRegsPerSm = 65536;

struct PrimaryContext {
    int retained = 0;
    unsigned flags = 0;
};
PrimaryContext g_ctx;
CUcontext const kCtxHandle = reinterpret_cast<CUcontext>(&g_ctx);

std::atomic<bool> g_initialized{false};
std::mutex g_api;  // handle tables, events, capture bookkeeping, the context
std::set<const void*> g_streams, g_events, g_modules, g_functions, g_graphs, g_execs;
std::atomic<uint64_t> g_launch_serial{0}, g_copy_serial{0};
std::atomic<int> g_global_captures{0};

thread_local std::vector<CUcontext> t_ctx_stack;  // back() is current
thread_local int t_strict_captures = 0;             // GLOBAL/THREAD_LOCAL captures begun here
thread_local Stream* t_per_thread_stream = nullptr;

bool live(const std::set<const void*>& s, const void* h) {
    std::lock_guard<std::mutex> g(g_api);
    return s.count(h) != 0;
}

CUcontext current_ctx() { return t_ctx_stack.empty() ? nullptr : t_ctx_stack.back(); }

#define REQUIRE_INIT() \
    if (!g_initialized.load(std::memory_order_acquire)) return CUDA_ERROR_NOT_INITIALIZED
#define REQUIRE_CTX()                                 \
    REQUIRE_INIT();                                   \
    if (current_ctx() == nullptr) return CUDA_ERROR_INVALID_CONTEXT
#define CHECK(expr)                  \
    do {                             \
        CUresult r_ = (expr);        \
        if (r_ != CUDA_SUCCESS) return r_; \
    } while (0)

CUresult resolve_stream(CUstream h, Stream** out) {
    if (h == nullptr || h == VIGIL_CU_STREAM_LEGACY) {
        *out = legacy_stream();
        return CUDA_SUCCESS;
    }
    if (h == VIGIL_CU_STREAM_PER_THREAD) {
        if (!t_per_thread_stream) {
            t_per_thread_stream = new Stream();  // synchronises with the legacy stream only
            register_stream(t_per_thread_stream);
        }
        *out = t_per_thread_stream;
        return CUDA_SUCCESS;
    }
    if (!live(g_streams, h)) return CUDA_ERROR_INVALID_HANDLE;
    *out = reinterpret_cast<Stream*>(h);
    return CUDA_SUCCESS;
}

/// Calls that may synchronise are illegal while this thread (or any thread, in GLOBAL
/// mode) captures: the driver invalidates the capture and returns this error.
CUresult capture_forbids(const char* call) {
    if (t_strict_captures == 0 && g_global_captures.load() == 0) return CUDA_SUCCESS;
    const auto me = std::this_thread::get_id();
    bool hit = false;
    for (Stream* s : all_streams()) {
        std::lock_guard<std::mutex> q(s->m);
        if (!s->capture) continue;
        Capture& c = *s->capture;
        if (c.mode == CU_STREAM_CAPTURE_MODE_GLOBAL ||
            (c.mode == CU_STREAM_CAPTURE_MODE_THREAD_LOCAL && c.owner == me)) {
            c.invalidated = true;
            c.why = std::string(call) + " is not permitted while a stream capture is active";
            hit = true;
        }
    }
    if (!hit) return CUDA_SUCCESS;
    note("%s during stream capture: CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED (the capture is invalidated)", call);
    return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
}

CUresult sync_stream(Stream* s) {
    uint64_t upto;
    {
        std::lock_guard<std::mutex> q(s->m);
        if (s->capture) return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
        upto = s->enqueued;
    }
    drain(s, upto);
    VIGIL_EMU_COUNT(&s->counters, synchronizations, 1);
    return CUDA_SUCCESS;
}

/// Classify a host-side pointer of a copy: pinned (ours) or pageable.
Space host_space(const void* p) {
    const Allocation* a = find_live(reinterpret_cast<uintptr_t>(p));
    return a && a->kind == MemKind::PinnedHost ? Space::PinnedHost : Space::PageableHost;
}

/// Validate [p, p + n) as device memory for `call`; print why and return
/// CUDA_ERROR_INVALID_VALUE when it is not (what the driver returns for a bad pointer).
CUresult check_device(const char* call, const char* role, uintptr_t p, std::size_t n) {
    char why[512];
    if (check_range(p, n, MemKind::Device, nullptr, why, sizeof why)) return CUDA_SUCCESS;
    note("%s: %s %s", call, role, why);
    return CUDA_ERROR_INVALID_VALUE;
}

CUresult check_pinned(const char* call, const char* role, uintptr_t p, std::size_t n) {
    char why[512];
    if (check_range(p, n, MemKind::PinnedHost, nullptr, why, sizeof why)) return CUDA_SUCCESS;
    note("%s: %s %s", call, role, why);
    return CUDA_ERROR_INVALID_VALUE;
}

/// Enqueue a (2-D) copy after validating both endpoints; pageable sources are staged now,
/// like the driver does, so the caller may reuse them on return.
CUresult enqueue_copy(const char* call, Stream* s, uintptr_t src, std::size_t src_pitch, Space src_space,
                      uintptr_t dst, std::size_t dst_pitch, Space dst_space, std::size_t width,
                      std::size_t height, bool synchronous) {
    if (width == 0 || height == 0) return CUDA_SUCCESS;
    if (!src || !dst) {
        note("%s: null %s pointer", call, !src ? "source" : "destination");
        return CUDA_ERROR_INVALID_VALUE;
    }
    const std::size_t src_span = (height - 1) * src_pitch + width;
    const std::size_t dst_span = (height - 1) * dst_pitch + width;
    if (height > 1 && (src_pitch < width || dst_pitch < width)) {
        note("%s: pitch smaller than the row width", call);
        return CUDA_ERROR_INVALID_VALUE;
    }
    if (src_space == Space::Device) CHECK(check_device(call, "source", src, src_span));
    if (dst_space == Space::Device) CHECK(check_device(call, "destination", dst, dst_span));
    if (src_space == Space::PinnedHost) CHECK(check_pinned(call, "source", src, src_span));
    if (dst_space == Space::PinnedHost) CHECK(check_pinned(call, "destination", dst, dst_span));
    Op op;
    op.kind = Op::Copy;
    op.api = call;
    op.serial = ++g_copy_serial;
    op.src = src;
    op.dst = dst;
    op.src_pitch = src_pitch;
    op.dst_pitch = dst_pitch;
    op.src_space = src_space;
    op.dst_space = dst_space;
    op.width = width;
    op.height = height;
    bool capturing;
    {
        std::lock_guard<std::mutex> q(s->m);
        capturing = s->capture != nullptr;
    }
    if (src_space == Space::PageableHost && !capturing) {
        auto staged = std::make_shared<std::vector<unsigned char>>(width * height);
        for (std::size_t r = 0; r < height; ++r)
            std::memcpy(staged->data() + r * width, reinterpret_cast<const unsigned char*>(src) + r * src_pitch,
                        width);
        op.staged = std::move(staged);
    }
    CHECK(submit(s, std::move(op)));
    // Into pageable memory the driver returns only when the copy is done; synchronous
    // calls always do.
    if (synchronous || (dst_space == Space::PageableHost && !capturing)) return sync_stream(s);
    return CUDA_SUCCESS;
}

CUresult enqueue_memset(const char* call, Stream* s, CUdeviceptr dst, uint32_t value, unsigned elem,
                        std::size_t count, bool synchronous) {
    if (count == 0) return CUDA_SUCCESS;
    if (dst % elem) {
        note("%s: destination %#llx is not %u-byte aligned", call, dst, elem);
        return CUDA_ERROR_INVALID_VALUE;
    }
    CHECK(check_device(call, "destination", dst, count * elem));
    Op op;
    op.kind = Op::Memset;
    op.api = call;
    op.dst = dst;
    op.dst_space = Space::Device;
    op.value = value;
    op.elem = elem;
    op.count = count;
    CHECK(submit(s, std::move(op)));
    return synchronous ? sync_stream(s) : CUDA_SUCCESS;
}

unsigned max_threads_for(const ImageKernel& k) {
    unsigned m = 1024;
    if (k.maxntid[0]) m = std::min(m, k.maxntid[0] * k.maxntid[1] * k.maxntid[2]);
    if (k.regs) {
        // Registers are allocated per warp in units of 256.
        const unsigned per_warp = (k.regs * 32 + 255) / 256 * 256;
        m = std::min(m, kRegsPerSm / per_warp * 32);
    }
    return m;
}

const char* result_name(CUresult r) {
    switch (r) {
#define VIGIL_CU_NAME(name, value) \
    case name: return #name;
        VIGIL_CU_RESULTS(VIGIL_CU_NAME)
#undef VIGIL_CU_NAME
    }
    return nullptr;
}

const char* result_string(CUresult r) {
    switch (r) {
        case CUDA_SUCCESS: return "no error";
        case CUDA_ERROR_INVALID_VALUE: return "invalid argument";
        case CUDA_ERROR_OUT_OF_MEMORY: return "out of memory";
        case CUDA_ERROR_NOT_INITIALIZED: return "initialization error";
        case CUDA_ERROR_NO_DEVICE: return "no CUDA-capable device is detected";
        case CUDA_ERROR_INVALID_DEVICE: return "invalid device ordinal";
        case CUDA_ERROR_INVALID_IMAGE: return "device kernel image is invalid";
        case CUDA_ERROR_INVALID_CONTEXT: return "invalid device context";
        case CUDA_ERROR_NO_BINARY_FOR_GPU: return "no kernel image is available for execution on the device";
        case CUDA_ERROR_INVALID_PTX: return "a PTX JIT compilation failed";
        case CUDA_ERROR_UNSUPPORTED_PTX_VERSION: return "the provided PTX was compiled with an unsupported toolchain.";
        case CUDA_ERROR_INVALID_HANDLE: return "invalid resource handle";
        case CUDA_ERROR_ILLEGAL_STATE: return "the operation cannot be performed in the present state";
        case CUDA_ERROR_NOT_FOUND: return "named symbol not found";
        case CUDA_ERROR_NOT_READY: return "device not ready";
        case CUDA_ERROR_ILLEGAL_ADDRESS: return "an illegal memory access was encountered";
        case CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES: return "too many resources requested for launch";
        case CUDA_ERROR_LAUNCH_FAILED: return "unspecified launch failure";
        case CUDA_ERROR_NOT_PERMITTED: return "operation not permitted";
        case CUDA_ERROR_NOT_SUPPORTED: return "operation not supported (by the Vigil CUDA emulator)";
        case CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED: return "operation not permitted when stream is capturing";
        case CUDA_ERROR_STREAM_CAPTURE_INVALIDATED: return "operation failed due to a previous error during capture";
        case CUDA_ERROR_STREAM_CAPTURE_UNMATCHED: return "capture was not initiated in this stream";
        case CUDA_ERROR_STREAM_CAPTURE_ISOLATION: return "operation would make the legacy stream depend on a capturing blocking stream";
        case CUDA_ERROR_STREAM_CAPTURE_IMPLICIT: return "operation would make the legacy stream depend on a capturing blocking stream";
        case CUDA_ERROR_CAPTURED_EVENT: return "operation not permitted on an event last recorded in a capturing stream";
        case CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD: return "attempt to terminate a thread-local capture sequence from another thread";
        default: return result_name(r) ? "CUDA driver error (see its name)" : nullptr;
    }
}

void banner_once() {
    static std::once_flag once;
    std::call_once(once, [] {
        const char* quiet = std::getenv("VIGIL_EMU_QUIET");
        if (quiet && *quiet && std::strcmp(quiet, "0") != 0) return;
        note("EMULATED CUDA driver (vigil-cuda-emu): device \"%s\", sm_%d, %u CPU worker threads — "
             "kernels run on the CPU; nothing here is a GPU measurement",
             kDeviceName, kSm, worker_count());
    });
}

}  // namespace
}  // namespace vigil_emu

using namespace vigil_emu;

// ---- initialisation, device, context --------------------------------------------------

API CUresult cuInit(unsigned int flags) {
    if (flags != 0) return CUDA_ERROR_INVALID_VALUE;
    memory_init();
    g_initialized.store(true, std::memory_order_release);
    banner_once();
    return CUDA_SUCCESS;
}

API CUresult cuDriverGetVersion(int* version) {
    if (!version) return CUDA_ERROR_INVALID_VALUE;
    *version = kDriverVersion;
    return CUDA_SUCCESS;
}

API CUresult cuDeviceGetCount(int* count) {
    REQUIRE_INIT();
    if (!count) return CUDA_ERROR_INVALID_VALUE;
    *count = 1;
    return CUDA_SUCCESS;
}

API CUresult cuDeviceGet(CUdevice* dev, int ordinal) {
    REQUIRE_INIT();
    if (!dev) return CUDA_ERROR_INVALID_VALUE;
    if (ordinal != 0) return CUDA_ERROR_INVALID_DEVICE;
    *dev = 0;
    return CUDA_SUCCESS;
}

API CUresult cuDeviceGetName(char* name, int len, CUdevice dev) {
    REQUIRE_INIT();
    if (!name || len <= 0) return CUDA_ERROR_INVALID_VALUE;
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    std::snprintf(name, static_cast<std::size_t>(len), "%s", kDeviceName);
    return CUDA_SUCCESS;
}

API CUresult cuDeviceGetUuid(CUuuid* uuid, CUdevice dev) {
    REQUIRE_INIT();
    if (!uuid) return CUDA_ERROR_INVALID_VALUE;
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    std::memcpy(uuid->bytes, "VIGIL-CUDA-EMU-0", 16);
    return CUDA_SUCCESS;
}

API CUresult cuDeviceGetUuid_v2(CUuuid* uuid, CUdevice dev) { return cuDeviceGetUuid(uuid, dev); }

API CUresult cuDeviceTotalMem_v2(size_t* bytes, CUdevice dev) {
    REQUIRE_INIT();
    if (!bytes) return CUDA_ERROR_INVALID_VALUE;
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    *bytes = device_total_bytes();
    return CUDA_SUCCESS;
}

API CUresult cuDeviceGetAttribute(int* value, CUdevice_attribute attr, CUdevice dev) {
    REQUIRE_INIT();
    if (!value) return CUDA_ERROR_INVALID_VALUE;
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    if (attr <= 0 || attr >= CU_DEVICE_ATTRIBUTE_MAX) return CUDA_ERROR_INVALID_VALUE;
    int v = 0;
    switch (attr) {
        case CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK: v = 1024; break;
        case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_X: v = 1024; break;
        case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Y: v = 1024; break;
        case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Z: v = 64; break;
        case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X: v = 2147483647; break;
        case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y: v = 65535; break;
        case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Z: v = 65535; break;
        case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK: v = kMaxSmemPerBlock; break;
        case CU_DEVICE_ATTRIBUTE_TOTAL_CONSTANT_MEMORY: v = 65536; break;
        case CU_DEVICE_ATTRIBUTE_WARP_SIZE: v = 32; break;
        case CU_DEVICE_ATTRIBUTE_MAX_PITCH: v = 2147483647; break;
        case CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_BLOCK: v = 65536; break;
        case CU_DEVICE_ATTRIBUTE_CLOCK_RATE: v = 1410000; break;
        case CU_DEVICE_ATTRIBUTE_TEXTURE_ALIGNMENT: v = 512; break;
        case CU_DEVICE_ATTRIBUTE_GPU_OVERLAP: v = 1; break;
        case CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT: v = static_cast<int>(worker_count()); break;
        case CU_DEVICE_ATTRIBUTE_INTEGRATED: v = 0; break;
        case CU_DEVICE_ATTRIBUTE_CAN_MAP_HOST_MEMORY: v = 1; break;
        case CU_DEVICE_ATTRIBUTE_CONCURRENT_KERNELS: v = 1; break;
        case CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE: v = 1215000; break;
        case CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH: v = 5120; break;
        case CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE: v = 40 * 1024 * 1024; break;
        case CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR: v = 2048; break;
        case CU_DEVICE_ATTRIBUTE_ASYNC_ENGINE_COUNT: v = 2; break;
        case CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING: v = 1; break;
        case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: v = kSm / 10; break;
        case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: v = kSm % 10; break;
        case CU_DEVICE_ATTRIBUTE_STREAM_PRIORITIES_SUPPORTED: v = 1; break;
        case CU_DEVICE_ATTRIBUTE_GLOBAL_L1_CACHE_SUPPORTED: v = 1; break;
        case CU_DEVICE_ATTRIBUTE_LOCAL_L1_CACHE_SUPPORTED: v = 1; break;
        case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR: v = 164 * 1024; break;
        case CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_MULTIPROCESSOR: v = kRegsPerSm; break;
        case CU_DEVICE_ATTRIBUTE_MANAGED_MEMORY: v = 0; break;
        case CU_DEVICE_ATTRIBUTE_COMPUTE_PREEMPTION_SUPPORTED: v = 1; break;
        case CU_DEVICE_ATTRIBUTE_COOPERATIVE_LAUNCH: v = 0; break;
        case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN: v = kMaxSmemPerBlockOptin; break;
        case CU_DEVICE_ATTRIBUTE_MAX_BLOCKS_PER_MULTIPROCESSOR: v = 32; break;
        case CU_DEVICE_ATTRIBUTE_RESERVED_SHARED_MEMORY_PER_BLOCK: v = 1024; break;
        // Like an A100 with a current driver; cudarc then allocates and frees with
        // cuMemAllocAsync/cuMemFreeAsync (stream-ordered), which the emulator checks.
        case CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED: v = 1; break;
        default: v = 0;
    }
    *value = v;
    return CUDA_SUCCESS;
}

API CUresult cuDeviceComputeCapability(int* major, int* minor, CUdevice dev) {
    REQUIRE_INIT();
    if (!major || !minor) return CUDA_ERROR_INVALID_VALUE;
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    *major = kSm / 10;
    *minor = kSm % 10;
    return CUDA_SUCCESS;
}

API CUresult cuDeviceGetDefaultMemPool(CUmemoryPool*, CUdevice) { return CUDA_ERROR_NOT_SUPPORTED; }
API CUresult cuDeviceGetMemPool(CUmemoryPool*, CUdevice) { return CUDA_ERROR_NOT_SUPPORTED; }

API CUresult cuDevicePrimaryCtxRetain(CUcontext* ctx, CUdevice dev) {
    REQUIRE_INIT();
    if (!ctx) return CUDA_ERROR_INVALID_VALUE;
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    std::lock_guard<std::mutex> g(g_api);
    ++g_ctx.retained;
    *ctx = kCtxHandle;
    return CUDA_SUCCESS;
}

API CUresult cuDevicePrimaryCtxRelease_v2(CUdevice dev) {
    REQUIRE_INIT();
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    bool last;
    {
        std::lock_guard<std::mutex> g(g_api);
        if (g_ctx.retained <= 0) return CUDA_ERROR_INVALID_CONTEXT;
        last = --g_ctx.retained == 0;
    }
    // The last release would destroy the context: let its queued work finish first.
    if (last) drain_all();
    return CUDA_SUCCESS;
}

API CUresult cuDevicePrimaryCtxGetState(CUdevice dev, unsigned int* flags, int* active) {
    REQUIRE_INIT();
    if (!flags || !active) return CUDA_ERROR_INVALID_VALUE;
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    std::lock_guard<std::mutex> g(g_api);
    *flags = g_ctx.flags;
    *active = g_ctx.retained > 0;
    return CUDA_SUCCESS;
}

API CUresult cuDevicePrimaryCtxSetFlags_v2(CUdevice dev, unsigned int flags) {
    REQUIRE_INIT();
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    std::lock_guard<std::mutex> g(g_api);
    g_ctx.flags = flags;
    return CUDA_SUCCESS;
}

API CUresult cuCtxSetCurrent(CUcontext ctx) {
    REQUIRE_INIT();
    if (ctx != nullptr && ctx != kCtxHandle) return CUDA_ERROR_INVALID_CONTEXT;
    if (t_ctx_stack.empty()) t_ctx_stack.push_back(ctx);
    else t_ctx_stack.back() = ctx;
    return CUDA_SUCCESS;
}

API CUresult cuCtxGetCurrent(CUcontext* ctx) {
    REQUIRE_INIT();
    if (!ctx) return CUDA_ERROR_INVALID_VALUE;
    *ctx = current_ctx();
    return CUDA_SUCCESS;
}

API CUresult cuCtxPushCurrent_v2(CUcontext ctx) {
    REQUIRE_INIT();
    if (ctx != kCtxHandle) return CUDA_ERROR_INVALID_CONTEXT;
    t_ctx_stack.push_back(ctx);
    return CUDA_SUCCESS;
}

API CUresult cuCtxPopCurrent_v2(CUcontext* ctx) {
    REQUIRE_INIT();
    if (t_ctx_stack.empty() || !t_ctx_stack.back()) return CUDA_ERROR_INVALID_CONTEXT;
    if (ctx) *ctx = t_ctx_stack.back();
    t_ctx_stack.pop_back();
    return CUDA_SUCCESS;
}

API CUresult cuCtxGetDevice(CUdevice* dev) {
    REQUIRE_CTX();
    if (!dev) return CUDA_ERROR_INVALID_VALUE;
    *dev = 0;
    return CUDA_SUCCESS;
}

API CUresult cuCtxSynchronize() {
    REQUIRE_CTX();
    CHECK(capture_forbids("cuCtxSynchronize"));
    drain_all();
    VIGIL_EMU_COUNT_GLOBAL(synchronizations, 1);
    return CUDA_SUCCESS;
}

API CUresult cuCtxCreate_v2(CUcontext*, unsigned int, CUdevice) { return CUDA_ERROR_NOT_SUPPORTED; }
API CUresult cuCtxDestroy_v2(CUcontext) { return CUDA_ERROR_NOT_SUPPORTED; }

API CUresult cuCtxGetLimit(size_t* value, int limit) {
    REQUIRE_CTX();
    if (!value) return CUDA_ERROR_INVALID_VALUE;
    switch (limit) {
        case 0: *value = 1024; return CUDA_SUCCESS;              // stack size
        case 1: *value = 1 << 20; return CUDA_SUCCESS;           // printf FIFO
        case 2: *value = 8 << 20; return CUDA_SUCCESS;           // malloc heap
        default: return CUDA_ERROR_UNSUPPORTED_LIMIT;
    }
}

API CUresult cuCtxSetLimit(int limit, size_t) {
    REQUIRE_CTX();
    return limit >= 0 && limit <= 2 ? CUDA_SUCCESS : CUDA_ERROR_UNSUPPORTED_LIMIT;
}

API CUresult cuCtxGetStreamPriorityRange(int* least, int* greatest) {
    REQUIRE_CTX();
    if (least) *least = 0;
    if (greatest) *greatest = -5;
    return CUDA_SUCCESS;
}

API CUresult cuCtxGetCacheConfig(int* config) {
    REQUIRE_CTX();
    if (!config) return CUDA_ERROR_INVALID_VALUE;
    *config = 0;
    return CUDA_SUCCESS;
}

API CUresult cuCtxSetCacheConfig(int) {
    REQUIRE_CTX();
    return CUDA_SUCCESS;
}

API CUresult cuCtxSetFlags(unsigned int) {
    REQUIRE_CTX();
    return CUDA_SUCCESS;
}

// ---- memory ---------------------------------------------------------------------------

namespace {
CUresult device_alloc(CUdeviceptr* dptr, size_t bytes, const char* origin) {
    if (!dptr || bytes == 0) return CUDA_ERROR_INVALID_VALUE;
    void* p = allocate(bytes, MemKind::Device, origin);
    if (!p) {
        // Stream-ordered frees still queued hold memory a GPU's pool would have reclaimed
        // by now: let them run, then try again.
        drain_all();
        p = allocate(bytes, MemKind::Device, origin);
    }
    if (!p) return CUDA_ERROR_OUT_OF_MEMORY;
    *dptr = reinterpret_cast<CUdeviceptr>(p);
    VIGIL_EMU_COUNT_GLOBAL(allocations, 1);
    return CUDA_SUCCESS;
}

CUresult free_status(const char* call, CUdeviceptr p, FreeStatus st) {
    if (st == FreeStatus::Ok) return CUDA_SUCCESS;
    char where[256] = "no allocation there";
    if (const Allocation* a = find_allocation(p)) describe(a, where, sizeof where);
    const char* what = st == FreeStatus::AlreadyFreed ? "double free"
                       : st == FreeStatus::NotBase   ? "not the start of an allocation"
                       : st == FreeStatus::WrongKind ? "wrong kind of memory"
                                                     : "not allocated";
    note("%s(%#llx): %s — %s", call, p, what, where);
    return CUDA_ERROR_INVALID_VALUE;
}

// Pointers handed to cuMemFreeAsync: a second free of the same pointer is reported at the
// call, not only when the queue gets there. (Addresses are never reused, so entries never
// go stale; the set only grows by one pointer per stream-ordered free.)
std::mutex g_pending_free_mu;
std::set<CUdeviceptr> g_pending_frees;
}  // namespace

API CUresult cuMemAlloc_v2(CUdeviceptr* dptr, size_t bytes) {
    REQUIRE_CTX();
    CHECK(capture_forbids("cuMemAlloc"));
    return device_alloc(dptr, bytes, "cuMemAlloc");
}

API CUresult cuMemAllocAsync(CUdeviceptr* dptr, size_t bytes, CUstream hs) {
    REQUIRE_CTX();
    Stream* s;
    CHECK(resolve_stream(hs, &s));
    {
        std::lock_guard<std::mutex> q(s->m);
        if (s->capture) {
            s->capture->invalidated = true;
            s->capture->why = "cuMemAllocAsync in a capture (graph memory nodes) is not supported by the emulator";
            note("%s", s->capture->why.c_str());
            return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
        }
    }
    // Allocated now; an allocation is valid for later work in any stream order.
    return device_alloc(dptr, bytes, "cuMemAllocAsync");
}

API CUresult cuMemFree_v2(CUdeviceptr p) {
    REQUIRE_CTX();
    CHECK(capture_forbids("cuMemFree"));
    if (p == 0) return CUDA_SUCCESS;
    drain_all();  // cuMemFree synchronises the device
    {
        std::lock_guard<std::mutex> g(g_pending_free_mu);
        g_pending_frees.erase(p);
    }
    CHECK(free_status("cuMemFree", p, release(p, MemKind::Device, "cuMemFree")));
    VIGIL_EMU_COUNT_GLOBAL(frees, 1);
    return CUDA_SUCCESS;
}

API CUresult cuMemFreeAsync(CUdeviceptr p, CUstream hs) {
    REQUIRE_CTX();
    Stream* s;
    CHECK(resolve_stream(hs, &s));
    const Allocation* a = find_live(p);
    if (!a || a->base != p || a->kind != MemKind::Device) {
        const FreeStatus st = !a                            ? (find_allocation(p) ? FreeStatus::AlreadyFreed
                                                                                  : FreeStatus::NotAllocated)
                              : a->kind != MemKind::Device ? FreeStatus::WrongKind
                                                           : FreeStatus::NotBase;
        return free_status("cuMemFreeAsync", p, st);
    }
    {
        std::lock_guard<std::mutex> g(g_pending_free_mu);
        if (!g_pending_frees.insert(p).second)
            return free_status("cuMemFreeAsync", p, FreeStatus::AlreadyFreed);
    }
    Op op;
    op.kind = Op::Free;
    op.dst = p;
    CUresult r = submit(s, std::move(op));
    if (r != CUDA_SUCCESS) {
        std::lock_guard<std::mutex> g(g_pending_free_mu);
        g_pending_frees.erase(p);
    }
    return r;
}

API CUresult cuMemHostAlloc(void** pp, size_t bytes, unsigned int flags) {
    REQUIRE_CTX();
    if (!pp || bytes == 0) return CUDA_ERROR_INVALID_VALUE;
    if (flags & ~unsigned(CU_MEMHOSTALLOC_PORTABLE | CU_MEMHOSTALLOC_DEVICEMAP | CU_MEMHOSTALLOC_WRITECOMBINED))
        return CUDA_ERROR_INVALID_VALUE;
    CHECK(capture_forbids("cuMemHostAlloc"));
    void* p = allocate(bytes, MemKind::PinnedHost,
                       flags & CU_MEMHOSTALLOC_WRITECOMBINED ? "cuMemHostAlloc(WRITECOMBINED)" : "cuMemHostAlloc");
    if (!p) return CUDA_ERROR_OUT_OF_MEMORY;
    *pp = p;
    return CUDA_SUCCESS;
}

API CUresult cuMemAllocHost_v2(void** pp, size_t bytes) { return cuMemHostAlloc(pp, bytes, 0); }

API CUresult cuMemFreeHost(void* p) {
    REQUIRE_CTX();
    CHECK(capture_forbids("cuMemFreeHost"));
    drain_all();  // queued copies may still read or write it
    FreeStatus st = release(reinterpret_cast<uintptr_t>(p), MemKind::PinnedHost, "cuMemFreeHost");
    if (st != FreeStatus::Ok) {
        note("cuMemFreeHost(%p): not a live pinned allocation from cuMemHostAlloc", p);
        return CUDA_ERROR_INVALID_VALUE;
    }
    return CUDA_SUCCESS;
}

API CUresult cuMemHostGetDevicePointer_v2(CUdeviceptr* dptr, void* p, unsigned int flags) {
    REQUIRE_CTX();
    if (!dptr || flags != 0) return CUDA_ERROR_INVALID_VALUE;
    const Allocation* a = find_live(reinterpret_cast<uintptr_t>(p));
    if (!a || a->kind != MemKind::PinnedHost) return CUDA_ERROR_INVALID_VALUE;
    *dptr = reinterpret_cast<CUdeviceptr>(p);  // unified addressing
    return CUDA_SUCCESS;
}

API CUresult cuMemGetInfo_v2(size_t* free_bytes, size_t* total) {
    REQUIRE_CTX();
    if (!free_bytes || !total) return CUDA_ERROR_INVALID_VALUE;
    *total = device_total_bytes();
    *free_bytes = *total - std::min(*total, device_live_bytes());
    return CUDA_SUCCESS;
}

API CUresult cuMemGetAddressRange_v2(CUdeviceptr* base, size_t* size, CUdeviceptr p) {
    REQUIRE_CTX();
    const Allocation* a = find_live(p);
    if (!a || a->kind != MemKind::Device || p == a->base + a->size) return CUDA_ERROR_NOT_FOUND;
    if (base) *base = a->base;
    if (size) *size = a->size;
    return CUDA_SUCCESS;
}

API CUresult cuMemAllocManaged(CUdeviceptr*, size_t, unsigned int) { return CUDA_ERROR_NOT_SUPPORTED; }
API CUresult cuMemPoolCreate(CUmemoryPool*, const void*) { return CUDA_ERROR_NOT_SUPPORTED; }
API CUresult cuMemAllocFromPoolAsync(CUdeviceptr*, size_t, CUmemoryPool, CUstream) {
    return CUDA_ERROR_NOT_SUPPORTED;
}

// ---- copies and memsets -----------------------------------------------------------------

API CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void* src, size_t n, CUstream hs) {
    REQUIRE_CTX();
    Stream* s;
    CHECK(resolve_stream(hs, &s));
    return enqueue_copy("cuMemcpyHtoDAsync", s, reinterpret_cast<uintptr_t>(src), n, host_space(src), dst, n,
                        Space::Device, n, 1, false);
}

API CUresult cuMemcpyDtoHAsync_v2(void* dst, CUdeviceptr src, size_t n, CUstream hs) {
    REQUIRE_CTX();
    Stream* s;
    CHECK(resolve_stream(hs, &s));
    return enqueue_copy("cuMemcpyDtoHAsync", s, src, n, Space::Device, reinterpret_cast<uintptr_t>(dst), n,
                        host_space(dst), n, 1, false);
}

API CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream hs) {
    REQUIRE_CTX();
    Stream* s;
    CHECK(resolve_stream(hs, &s));
    return enqueue_copy("cuMemcpyDtoDAsync", s, src, n, Space::Device, dst, n, Space::Device, n, 1, false);
}

API CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void* src, size_t n) {
    REQUIRE_CTX();
    CHECK(capture_forbids("cuMemcpyHtoD"));
    return enqueue_copy("cuMemcpyHtoD", legacy_stream(), reinterpret_cast<uintptr_t>(src), n, host_space(src),
                        dst, n, Space::Device, n, 1, true);
}

API CUresult cuMemcpyDtoH_v2(void* dst, CUdeviceptr src, size_t n) {
    REQUIRE_CTX();
    CHECK(capture_forbids("cuMemcpyDtoH"));
    return enqueue_copy("cuMemcpyDtoH", legacy_stream(), src, n, Space::Device, reinterpret_cast<uintptr_t>(dst),
                        n, host_space(dst), n, 1, true);
}

API CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t n) {
    REQUIRE_CTX();
    CHECK(capture_forbids("cuMemcpyDtoD"));
    return enqueue_copy("cuMemcpyDtoD", legacy_stream(), src, n, Space::Device, dst, n, Space::Device, n, 1, true);
}

namespace {
/// Unified addressing: classify any pointer by the allocation tables.
Space space_of(uintptr_t p) {
    const Allocation* a = find_live(p);
    if (!a) return Space::PageableHost;
    return a->kind == MemKind::Device ? Space::Device : Space::PinnedHost;
}

CUresult memcpy2d(const char* call, const CUDA_MEMCPY2D* c, CUstream hs, bool synchronous) {
    if (!c) return CUDA_ERROR_INVALID_VALUE;
    Stream* s;
    CHECK(resolve_stream(hs, &s));
    auto endpoint = [&](CUmemorytype t, const void* host, CUdeviceptr dev, CUarray arr, size_t x, size_t y,
                        size_t pitch, uintptr_t* p, Space* sp) -> CUresult {
        switch (t) {
            case CU_MEMORYTYPE_HOST:
                *p = reinterpret_cast<uintptr_t>(host);
                *sp = host_space(host);
                break;
            case CU_MEMORYTYPE_DEVICE:
                *p = dev;
                *sp = Space::Device;
                break;
            case CU_MEMORYTYPE_UNIFIED:
                *p = dev;
                *sp = space_of(dev);
                break;
            case CU_MEMORYTYPE_ARRAY:
                (void)arr;
                note("%s: CUDA arrays are not supported by the emulator", call);
                return CUDA_ERROR_NOT_SUPPORTED;
            default:
                return CUDA_ERROR_INVALID_VALUE;
        }
        *p += y * pitch + x;
        return CUDA_SUCCESS;
    };
    uintptr_t src, dst;
    Space ss, ds;
    CHECK(endpoint(c->srcMemoryType, c->srcHost, c->srcDevice, c->srcArray, c->srcXInBytes, c->srcY, c->srcPitch,
                   &src, &ss));
    CHECK(endpoint(c->dstMemoryType, c->dstHost, c->dstDevice, c->dstArray, c->dstXInBytes, c->dstY, c->dstPitch,
                   &dst, &ds));
    if (c->Height > 1 && (c->srcPitch < c->WidthInBytes || c->dstPitch < c->WidthInBytes)) {
        note("%s: a pitch is smaller than WidthInBytes", call);
        return CUDA_ERROR_INVALID_VALUE;
    }
    return enqueue_copy(call, s, src, c->srcPitch, ss, dst, c->dstPitch, ds, c->WidthInBytes, c->Height,
                        synchronous);
}
}  // namespace

API CUresult cuMemcpy2DAsync_v2(const CUDA_MEMCPY2D* c, CUstream hs) {
    REQUIRE_CTX();
    return memcpy2d("cuMemcpy2DAsync", c, hs, false);
}

API CUresult cuMemcpy2D_v2(const CUDA_MEMCPY2D* c) {
    REQUIRE_CTX();
    CHECK(capture_forbids("cuMemcpy2D"));
    return memcpy2d("cuMemcpy2D", c, nullptr, true);
}

API CUresult cuMemcpy2DUnaligned_v2(const CUDA_MEMCPY2D* c) { return cuMemcpy2D_v2(c); }

API CUresult cuMemcpyAsync(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream hs) {
    REQUIRE_CTX();
    Stream* s;
    CHECK(resolve_stream(hs, &s));
    return enqueue_copy("cuMemcpyAsync", s, src, n, space_of(src), dst, n, space_of(dst), n, 1, false);
}

API CUresult cuMemcpy(CUdeviceptr dst, CUdeviceptr src, size_t n) {
    REQUIRE_CTX();
    CHECK(capture_forbids("cuMemcpy"));
    return enqueue_copy("cuMemcpy", legacy_stream(), src, n, space_of(src), dst, n, space_of(dst), n, 1, true);
}

API CUresult cuMemcpyPeerAsync(CUdeviceptr dst, CUcontext dctx, CUdeviceptr src, CUcontext sctx, size_t n,
                               CUstream hs) {
    REQUIRE_CTX();
    if (dctx != kCtxHandle || sctx != kCtxHandle) return CUDA_ERROR_INVALID_CONTEXT;
    return cuMemcpyDtoDAsync_v2(dst, src, n, hs);
}

API CUresult cuMemsetD8Async(CUdeviceptr d, unsigned char v, size_t n, CUstream hs) {
    REQUIRE_CTX();
    Stream* s;
    CHECK(resolve_stream(hs, &s));
    return enqueue_memset("cuMemsetD8Async", s, d, v, 1, n, false);
}

API CUresult cuMemsetD16Async(CUdeviceptr d, unsigned short v, size_t n, CUstream hs) {
    REQUIRE_CTX();
    Stream* s;
    CHECK(resolve_stream(hs, &s));
    return enqueue_memset("cuMemsetD16Async", s, d, v, 2, n, false);
}

API CUresult cuMemsetD32Async(CUdeviceptr d, unsigned int v, size_t n, CUstream hs) {
    REQUIRE_CTX();
    Stream* s;
    CHECK(resolve_stream(hs, &s));
    return enqueue_memset("cuMemsetD32Async", s, d, v, 4, n, false);
}

API CUresult cuMemsetD8_v2(CUdeviceptr d, unsigned char v, size_t n) {
    REQUIRE_CTX();
    CHECK(capture_forbids("cuMemsetD8"));
    return enqueue_memset("cuMemsetD8", legacy_stream(), d, v, 1, n, true);
}

API CUresult cuMemsetD16_v2(CUdeviceptr d, unsigned short v, size_t n) {
    REQUIRE_CTX();
    CHECK(capture_forbids("cuMemsetD16"));
    return enqueue_memset("cuMemsetD16", legacy_stream(), d, v, 2, n, true);
}

API CUresult cuMemsetD32_v2(CUdeviceptr d, unsigned int v, size_t n) {
    REQUIRE_CTX();
    CHECK(capture_forbids("cuMemsetD32"));
    return enqueue_memset("cuMemsetD32", legacy_stream(), d, v, 4, n, true);
}

// ---- streams ----------------------------------------------------------------------------

API CUresult cuStreamCreateWithPriority(CUstream* out, unsigned int flags, int priority) {
    REQUIRE_CTX();
    if (!out || (flags & ~unsigned(CU_STREAM_NON_BLOCKING))) return CUDA_ERROR_INVALID_VALUE;
    auto* s = new Stream();  // kept after destroy: queued waits on it stay valid
    s->flags = flags;
    s->priority = std::clamp(priority, -5, 0);
    register_stream(s);
    {
        std::lock_guard<std::mutex> g(g_api);
        g_streams.insert(s);
    }
    *out = reinterpret_cast<CUstream>(s);
    return CUDA_SUCCESS;
}

API CUresult cuStreamCreate(CUstream* out, unsigned int flags) { return cuStreamCreateWithPriority(out, flags, 0); }

API CUresult cuStreamDestroy_v2(CUstream hs) {
    REQUIRE_CTX();
    if (!live(g_streams, hs)) return CUDA_ERROR_INVALID_HANDLE;
    auto* s = reinterpret_cast<Stream*>(hs);
    {
        std::lock_guard<std::mutex> q(s->m);
        if (s->capture) return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    }
    {
        std::lock_guard<std::mutex> g(g_api);
        g_streams.erase(hs);
    }
    // Work queued on a destroyed stream still completes.
    drain(s, UINT64_MAX);
    unregister_stream(s);
    return CUDA_SUCCESS;
}

API CUresult cuStreamSynchronize(CUstream hs) {
    REQUIRE_CTX();
    Stream* s;
    CHECK(resolve_stream(hs, &s));
    {
        std::lock_guard<std::mutex> q(s->m);
        if (s->capture) {
            s->capture->invalidated = true;
            s->capture->why = "cuStreamSynchronize on the capturing stream";
            return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
        }
    }
    CHECK(capture_forbids("cuStreamSynchronize"));
    return sync_stream(s);
}

API CUresult cuStreamQuery(CUstream hs) {
    REQUIRE_CTX();
    Stream* s;
    CHECK(resolve_stream(hs, &s));
    {
        std::lock_guard<std::mutex> q(s->m);
        if (s->capture) return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    }
    CHECK(capture_forbids("cuStreamQuery"));
    // Work runs when the host looks: a query completes the stream, then reports it done.
    return sync_stream(s);
}

API CUresult cuStreamGetFlags(CUstream hs, unsigned int* flags) {
    REQUIRE_CTX();
    Stream* s;
    CHECK(resolve_stream(hs, &s));
    if (!flags) return CUDA_ERROR_INVALID_VALUE;
    *flags = s->flags;
    return CUDA_SUCCESS;
}

API CUresult cuStreamGetPriority(CUstream hs, int* priority) {
    REQUIRE_CTX();
    Stream* s;
    CHECK(resolve_stream(hs, &s));
    if (!priority) return CUDA_ERROR_INVALID_VALUE;
    *priority = s->priority;
    return CUDA_SUCCESS;
}

API CUresult cuStreamGetCtx(CUstream hs, CUcontext* ctx) {
    REQUIRE_CTX();
    Stream* s;
    CHECK(resolve_stream(hs, &s));
    if (!ctx) return CUDA_ERROR_INVALID_VALUE;
    *ctx = kCtxHandle;
    return CUDA_SUCCESS;
}

API CUresult cuStreamWaitEvent(CUstream hs, CUevent he, unsigned int flags) {
    REQUIRE_CTX();
    Stream* s;
    CHECK(resolve_stream(hs, &s));
    if (!live(g_events, he)) return CUDA_ERROR_INVALID_HANDLE;
    if (flags & ~1u) return CUDA_ERROR_INVALID_VALUE;
    auto* e = reinterpret_cast<Event*>(he);
    Stream* other;
    uint64_t seq;
    Capture* captured;
    {
        std::lock_guard<std::mutex> g(g_api);
        other = e->stream;
        seq = e->seq;
        captured = e->captured;
    }
    std::lock_guard<std::mutex> q(s->m);
    if (s->capture) {
        // Inside a capture only an event recorded in the same capture orders anything (a
        // no-op in a linear chain); an event from outside would make the graph depend on
        // work that is not in it.
        if (captured == s->capture.get()) return CUDA_SUCCESS;
        s->capture->invalidated = true;
        s->capture->why = "cuStreamWaitEvent on an event recorded outside the capture";
        return CUDA_ERROR_STREAM_CAPTURE_ISOLATION;
    }
    if (!other || other == s) return CUDA_SUCCESS;  // never recorded, or same stream
    s->pending.push_back(wait_op(other, seq));
    ++s->enqueued;
    return CUDA_SUCCESS;
}

API CUresult cuLaunchHostFunc(CUstream hs, CUhostFn fn, void* arg) {
    REQUIRE_CTX();
    Stream* s;
    CHECK(resolve_stream(hs, &s));
    if (!fn) return CUDA_ERROR_INVALID_VALUE;
    Op op;
    op.kind = Op::HostFn;
    op.host_fn = fn;
    op.host_arg = arg;
    return submit(s, std::move(op));
}

API CUresult cuStreamAttachMemAsync(CUstream, CUdeviceptr, size_t, unsigned int) { return CUDA_ERROR_NOT_SUPPORTED; }

// ---- stream capture and graphs ----------------------------------------------------------

API CUresult cuStreamBeginCapture_v2(CUstream hs, CUstreamCaptureMode mode) {
    REQUIRE_CTX();
    if (hs == nullptr || hs == VIGIL_CU_STREAM_LEGACY) return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
    Stream* s;
    CHECK(resolve_stream(hs, &s));
    if (mode != CU_STREAM_CAPTURE_MODE_GLOBAL && mode != CU_STREAM_CAPTURE_MODE_THREAD_LOCAL &&
        mode != CU_STREAM_CAPTURE_MODE_RELAXED)
        return CUDA_ERROR_INVALID_VALUE;
    {
        std::lock_guard<std::mutex> q(s->m);
        if (s->capture) return CUDA_ERROR_ILLEGAL_STATE;
        s->capture = std::make_unique<Capture>();
        s->capture->mode = mode;
        s->capture->owner = std::this_thread::get_id();
    }
    if (mode != CU_STREAM_CAPTURE_MODE_RELAXED) ++t_strict_captures;
    if (mode == CU_STREAM_CAPTURE_MODE_GLOBAL) ++g_global_captures;
    return CUDA_SUCCESS;
}

API CUresult cuStreamEndCapture(CUstream hs, CUgraph* out) {
    REQUIRE_CTX();
    if (!out) return CUDA_ERROR_INVALID_VALUE;
    Stream* s;
    CHECK(resolve_stream(hs, &s));
    std::unique_ptr<Capture> c;
    {
        std::lock_guard<std::mutex> q(s->m);
        if (!s->capture) return CUDA_ERROR_ILLEGAL_STATE;
        if (s->capture->mode != CU_STREAM_CAPTURE_MODE_RELAXED && s->capture->owner != std::this_thread::get_id())
            return CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD;
        c = std::move(s->capture);
    }
    if (c->mode != CU_STREAM_CAPTURE_MODE_RELAXED) --t_strict_captures;
    if (c->mode == CU_STREAM_CAPTURE_MODE_GLOBAL) --g_global_captures;
    *out = nullptr;
    if (c->invalidated) {
        note("stream capture ended invalidated: %s", c->why.c_str());
        return CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
    }
    auto* g = new Graph();
    g->nodes = std::move(c->nodes);
    {
        std::lock_guard<std::mutex> lk(g_api);
        g_graphs.insert(g);
        // Events recorded in this capture no longer refer to it.
    }
    *out = reinterpret_cast<CUgraph>(g);
    return CUDA_SUCCESS;
}

API CUresult cuStreamIsCapturing(CUstream hs, CUstreamCaptureStatus* status) {
    REQUIRE_CTX();
    if (!status) return CUDA_ERROR_INVALID_VALUE;
    Stream* s;
    CHECK(resolve_stream(hs, &s));
    std::lock_guard<std::mutex> q(s->m);
    *status = !s->capture                  ? CU_STREAM_CAPTURE_STATUS_NONE
              : s->capture->invalidated ? CU_STREAM_CAPTURE_STATUS_INVALIDATED
                                         : CU_STREAM_CAPTURE_STATUS_ACTIVE;
    return CUDA_SUCCESS;
}

API CUresult cuGraphCreate(CUgraph* out, unsigned int flags) {
    REQUIRE_CTX();
    if (!out || flags) return CUDA_ERROR_INVALID_VALUE;
    auto* g = new Graph();
    std::lock_guard<std::mutex> lk(g_api);
    g_graphs.insert(g);
    *out = reinterpret_cast<CUgraph>(g);
    return CUDA_SUCCESS;
}

API CUresult cuGraphDestroy(CUgraph hg) {
    REQUIRE_INIT();
    std::lock_guard<std::mutex> lk(g_api);
    if (!g_graphs.erase(hg)) return CUDA_ERROR_INVALID_VALUE;
    delete reinterpret_cast<Graph*>(hg);
    return CUDA_SUCCESS;
}

API CUresult cuGraphGetNodes(CUgraph hg, void** nodes, size_t* count) {
    REQUIRE_INIT();
    if (!count || !live(g_graphs, hg)) return CUDA_ERROR_INVALID_VALUE;
    auto* g = reinterpret_cast<Graph*>(hg);
    if (!nodes) {
        *count = g->nodes.size();
        return CUDA_SUCCESS;
    }
    const std::size_t n = std::min(*count, g->nodes.size());
    for (std::size_t i = 0; i < n; ++i) nodes[i] = &g->nodes[i];
    for (std::size_t i = n; i < *count; ++i) nodes[i] = nullptr;
    *count = n;
    return CUDA_SUCCESS;
}

API CUresult cuGraphInstantiateWithFlags(CUgraphExec* out, CUgraph hg, unsigned long long flags) {
    REQUIRE_CTX();
    if (!out) return CUDA_ERROR_INVALID_VALUE;
    const unsigned long long known = CUDA_GRAPH_INSTANTIATE_FLAG_AUTO_FREE_ON_LAUNCH | CUDA_GRAPH_INSTANTIATE_FLAG_UPLOAD |
                                     CUDA_GRAPH_INSTANTIATE_FLAG_DEVICE_LAUNCH |
                                     CUDA_GRAPH_INSTANTIATE_FLAG_USE_NODE_PRIORITY;
    if ((flags & ~known) ||
        ((flags & CUDA_GRAPH_INSTANTIATE_FLAG_DEVICE_LAUNCH) && (flags & CUDA_GRAPH_INSTANTIATE_FLAG_AUTO_FREE_ON_LAUNCH)))
        return CUDA_ERROR_INVALID_VALUE;
    if (flags & (CUDA_GRAPH_INSTANTIATE_FLAG_DEVICE_LAUNCH | CUDA_GRAPH_INSTANTIATE_FLAG_UPLOAD))
        return CUDA_ERROR_NOT_SUPPORTED;
    std::lock_guard<std::mutex> lk(g_api);
    if (!g_graphs.count(hg)) return CUDA_ERROR_INVALID_VALUE;
    auto* e = new GraphExec();
    e->nodes = reinterpret_cast<Graph*>(hg)->nodes;  // an exec is independent of its graph
    g_execs.insert(e);
    *out = reinterpret_cast<CUgraphExec>(e);
    VIGIL_EMU_COUNT_GLOBAL(graphs_instantiated, 1);
    return CUDA_SUCCESS;
}

API CUresult cuGraphUpload(CUgraphExec he, CUstream hs) {
    REQUIRE_CTX();
    if (!live(g_execs, he)) return CUDA_ERROR_INVALID_VALUE;
    Stream* s;
    CHECK(resolve_stream(hs, &s));
    return CUDA_SUCCESS;  // nothing to upload: kernels are host code
}

API CUresult cuGraphLaunch(CUgraphExec he, CUstream hs) {
    REQUIRE_CTX();
    std::shared_ptr<GraphExec> exec;
    {
        std::lock_guard<std::mutex> lk(g_api);
        if (!g_execs.count(he)) return CUDA_ERROR_INVALID_VALUE;
        // Not owning: cuGraphExecDestroy executes every queued launch before it deletes.
        auto* e = reinterpret_cast<GraphExec*>(he);
        exec = std::shared_ptr<GraphExec>(e, [](GraphExec*) {});
    }
    Stream* s;
    CHECK(resolve_stream(hs, &s));
    Op op;
    op.kind = Op::Graph;
    op.graph = std::move(exec);
    return submit(s, std::move(op));
}

API CUresult cuGraphExecDestroy(CUgraphExec he) {
    REQUIRE_INIT();
    {
        std::lock_guard<std::mutex> lk(g_api);
        if (!g_execs.erase(he)) return CUDA_ERROR_INVALID_VALUE;
    }
    // Pending launches of it must finish before it goes.
    drain_all();
    delete reinterpret_cast<GraphExec*>(he);
    return CUDA_SUCCESS;
}

// ---- events -----------------------------------------------------------------------------

API CUresult cuEventCreate(CUevent* out, unsigned int flags) {
    REQUIRE_CTX();
    if (!out || (flags & ~unsigned(CU_EVENT_BLOCKING_SYNC | CU_EVENT_DISABLE_TIMING | CU_EVENT_INTERPROCESS)))
        return CUDA_ERROR_INVALID_VALUE;
    if ((flags & CU_EVENT_INTERPROCESS) && !(flags & CU_EVENT_DISABLE_TIMING)) return CUDA_ERROR_INVALID_VALUE;
    auto* e = new Event();  // kept after destroy: queued timestamps may still write it
    e->flags = flags;
    std::lock_guard<std::mutex> g(g_api);
    g_events.insert(e);
    *out = reinterpret_cast<CUevent>(e);
    return CUDA_SUCCESS;
}

API CUresult cuEventDestroy_v2(CUevent he) {
    REQUIRE_INIT();
    std::lock_guard<std::mutex> g(g_api);
    if (!g_events.erase(he)) return CUDA_ERROR_INVALID_HANDLE;
    return CUDA_SUCCESS;
}

API CUresult cuEventRecordWithFlags(CUevent he, CUstream hs, unsigned int flags) {
    REQUIRE_CTX();
    if (!live(g_events, he)) return CUDA_ERROR_INVALID_HANDLE;
    if (flags & ~1u) return CUDA_ERROR_INVALID_VALUE;
    Stream* s;
    CHECK(resolve_stream(hs, &s));
    auto* e = reinterpret_cast<Event*>(he);
    {
        std::lock_guard<std::mutex> q(s->m);
        if (s->capture) {
            std::lock_guard<std::mutex> g(g_api);
            e->captured = s->capture.get();
            e->stream = nullptr;
            return CUDA_SUCCESS;
        }
    }
    if (!(e->flags & CU_EVENT_DISABLE_TIMING)) {
        Op op;
        op.kind = Op::Timestamp;
        op.event = e;
        CHECK(submit(s, std::move(op)));
    }
    std::lock_guard<std::mutex> q(s->m);
    std::lock_guard<std::mutex> g(g_api);
    e->captured = nullptr;
    e->stream = s;
    e->seq = s->enqueued;
    return CUDA_SUCCESS;
}

API CUresult cuEventRecord(CUevent he, CUstream hs) { return cuEventRecordWithFlags(he, hs, 0); }

namespace {
CUresult event_wait(CUevent he, const char* call) {
    if (!live(g_events, he)) return CUDA_ERROR_INVALID_HANDLE;
    auto* e = reinterpret_cast<Event*>(he);
    Stream* s;
    uint64_t seq;
    {
        std::lock_guard<std::mutex> g(g_api);
        if (e->captured) return CUDA_ERROR_CAPTURED_EVENT;
        s = e->stream;
        seq = e->seq;
    }
    CHECK(capture_forbids(call));
    if (s) {
        drain(s, seq);
        VIGIL_EMU_COUNT(&s->counters, synchronizations, 1);
    }
    return CUDA_SUCCESS;
}
}  // namespace

API CUresult cuEventSynchronize(CUevent he) {
    REQUIRE_CTX();
    return event_wait(he, "cuEventSynchronize");
}

API CUresult cuEventQuery(CUevent he) {
    REQUIRE_CTX();
    // Work runs when the host looks: the query completes the recorded work first.
    return event_wait(he, "cuEventQuery");
}

API CUresult cuEventElapsedTime(float* ms, CUevent hstart, CUevent hend) {
    REQUIRE_CTX();
    if (!ms) return CUDA_ERROR_INVALID_VALUE;
    if (!live(g_events, hstart) || !live(g_events, hend)) return CUDA_ERROR_INVALID_HANDLE;
    auto* a = reinterpret_cast<Event*>(hstart);
    auto* b = reinterpret_cast<Event*>(hend);
    if ((a->flags | b->flags) & CU_EVENT_DISABLE_TIMING) return CUDA_ERROR_INVALID_HANDLE;
    CHECK(event_wait(hstart, "cuEventElapsedTime"));
    CHECK(event_wait(hend, "cuEventElapsedTime"));
    if (!a->stream || !b->stream) return CUDA_ERROR_INVALID_HANDLE;
    *ms = static_cast<float>(b->time_ms - a->time_ms);
    return CUDA_SUCCESS;
}

API CUresult cuEventElapsedTime_v2(float* ms, CUevent a, CUevent b) { return cuEventElapsedTime(ms, a, b); }

// ---- modules, functions, launches -------------------------------------------------------

API CUresult cuModuleLoadData(CUmodule* out, const void* image) {
    REQUIRE_CTX();
    if (!out || !image) return CUDA_ERROR_INVALID_VALUE;
    auto m = std::make_unique<Module>();
    std::string why;
    switch (parse_image(image, &m->image, &why)) {
        case ImageError::None: break;
        case ImageError::NotAnImage:
            note("cuModuleLoadData: %s", why.c_str());
            return CUDA_ERROR_INVALID_IMAGE;
        default:
            note("cuModuleLoadData: malformed image: %s", why.c_str());
            return m->image.cubin ? CUDA_ERROR_INVALID_IMAGE : CUDA_ERROR_INVALID_PTX;
    }
    const Image& img = m->image;
    if (img.cubin) {
        // A CUBIN runs on its own SM major with an equal or newer minor.
        if (img.sm / 10 != kSm / 10 || img.sm % 10 > kSm % 10) {
            note("cuModuleLoadData: CUBIN for sm_%u cannot run on the emulated sm_%d device", img.sm, kSm);
            return CUDA_ERROR_NO_BINARY_FOR_GPU;
        }
    } else {
        if (img.ptx_major > kPtxMajorMax || (img.ptx_major == kPtxMajorMax && img.ptx_minor > kPtxMinorMax)) {
            note("cuModuleLoadData: PTX ISA %u.%u is newer than this driver (12.9) supports", img.ptx_major,
                 img.ptx_minor);
            return CUDA_ERROR_UNSUPPORTED_PTX_VERSION;
        }
        if (img.sm > static_cast<unsigned>(kSm)) {
            note("cuModuleLoadData: PTX for .target sm_%u cannot be JIT-compiled for the emulated sm_%d device",
                 img.sm, kSm);
            return CUDA_ERROR_INVALID_PTX;
        }
    }
    // Every entry must be a kernel this emulator was built with, with the same parameters.
    for (const ImageKernel& k : img.kernels) {
        const KernelEntry* e = find_kernel(k.name.c_str());
        if (!e) {
            note("cuModuleLoadData: the image defines kernel `%s`, which is not compiled into the emulator "
                 "(it runs kernels/cuda/*.cu compiled for the host; rebuild it from the current sources)",
                 k.name.c_str());
            return CUDA_ERROR_INVALID_IMAGE;
        }
        bool same = k.params.size() == e->num_params;
        for (unsigned i = 0; same && i < e->num_params; ++i) {
            same = k.params[i].size == e->params[i].size &&
                   (k.params[i].offset < 0 || static_cast<unsigned>(k.params[i].offset) == e->params[i].offset);
        }
        if (!same) {
            std::ostringstream img_sig, host_sig;
            for (const auto& p : k.params) img_sig << p.size << "@" << p.offset << " ";
            for (unsigned i = 0; i < e->num_params; ++i) host_sig << e->params[i].size << "@" << e->params[i].offset << " ";
            note("cuModuleLoadData: kernel `%s` takes parameters (size@offset) [ %s] in the image but [ %s] in "
                 "the emulator's host build — the emulator is stale or the sources differ",
                 k.name.c_str(), img_sig.str().c_str(), host_sig.str().c_str());
            return CUDA_ERROR_INVALID_IMAGE;
        }
        auto f = std::make_unique<Function>();
        f->module = m.get();
        f->kernel = e;
        f->info = k;
        f->max_threads = max_threads_for(k);
        f->max_dynamic_smem = kMaxSmemPerBlock - std::min(kMaxSmemPerBlock, k.static_smem);
        m->functions.push_back(std::move(f));
    }
    Module* raw = m.release();  // kept after unload: graph nodes may still name its kernels
    std::lock_guard<std::mutex> g(g_api);
    g_modules.insert(raw);
    for (auto& f : raw->functions) g_functions.insert(f.get());
    *out = reinterpret_cast<CUmodule>(raw);
    return CUDA_SUCCESS;
}

API CUresult cuModuleLoadDataEx(CUmodule* out, const void* image, unsigned int, void*, void**) {
    return cuModuleLoadData(out, image);
}

API CUresult cuModuleLoad(CUmodule* out, const char* path) {
    REQUIRE_CTX();
    if (!path) return CUDA_ERROR_INVALID_VALUE;
    std::ifstream in(path, std::ios::binary);
    if (!in) return CUDA_ERROR_FILE_NOT_FOUND;
    std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    data.push_back('\0');
    return cuModuleLoadData(out, data.data());
}

API CUresult cuModuleLoadFatBinary(CUmodule*, const void*) { return CUDA_ERROR_NOT_SUPPORTED; }

API CUresult cuModuleUnload(CUmodule hm) {
    REQUIRE_CTX();
    if (!live(g_modules, hm)) return CUDA_ERROR_INVALID_HANDLE;
    drain_all();  // queued launches of its kernels run first
    std::lock_guard<std::mutex> g(g_api);
    auto* m = reinterpret_cast<Module*>(hm);
    g_modules.erase(hm);
    for (auto& f : m->functions) g_functions.erase(f.get());
    m->loaded = false;
    return CUDA_SUCCESS;
}

API CUresult cuModuleGetFunction(CUfunction* out, CUmodule hm, const char* name) {
    REQUIRE_CTX();
    if (!out || !name) return CUDA_ERROR_INVALID_VALUE;
    std::lock_guard<std::mutex> g(g_api);
    if (!g_modules.count(hm)) return CUDA_ERROR_INVALID_HANDLE;
    for (auto& f : reinterpret_cast<Module*>(hm)->functions)
        if (f->info.name == name) {
            *out = reinterpret_cast<CUfunction>(f.get());
            return CUDA_SUCCESS;
        }
    return CUDA_ERROR_NOT_FOUND;
}

API CUresult cuModuleGetGlobal_v2(CUdeviceptr*, size_t*, CUmodule hm, const char* name) {
    REQUIRE_CTX();
    if (!name) return CUDA_ERROR_INVALID_VALUE;
    if (!live(g_modules, hm)) return CUDA_ERROR_INVALID_HANDLE;
    return CUDA_ERROR_NOT_FOUND;  // the kernels declare no __device__ globals
}

API CUresult cuFuncGetAttribute(int* value, CUfunction_attribute attr, CUfunction hf) {
    REQUIRE_CTX();
    if (!value) return CUDA_ERROR_INVALID_VALUE;
    if (!live(g_functions, hf)) return CUDA_ERROR_INVALID_HANDLE;
    auto* f = reinterpret_cast<Function*>(hf);
    const Image& img = f->module->image;
    switch (attr) {
        case CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK: *value = static_cast<int>(f->max_threads); break;
        case CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES: *value = static_cast<int>(f->info.static_smem); break;
        case CU_FUNC_ATTRIBUTE_CONST_SIZE_BYTES: *value = 0; break;
        case CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES: *value = 0; break;
        case CU_FUNC_ATTRIBUTE_NUM_REGS: *value = static_cast<int>(f->info.regs); break;
        case CU_FUNC_ATTRIBUTE_PTX_VERSION: *value = img.cubin ? kSm : static_cast<int>(img.sm); break;
        case CU_FUNC_ATTRIBUTE_BINARY_VERSION: *value = kSm; break;
        case CU_FUNC_ATTRIBUTE_CACHE_MODE_CA: *value = 0; break;
        case CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES: *value = static_cast<int>(f->max_dynamic_smem); break;
        case CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT: *value = -1; break;
        default:
            if (attr < 0 || attr >= CU_FUNC_ATTRIBUTE_MAX) return CUDA_ERROR_INVALID_VALUE;
            *value = 0;
    }
    return CUDA_SUCCESS;
}

API CUresult cuFuncSetAttribute(CUfunction hf, CUfunction_attribute attr, int value) {
    REQUIRE_CTX();
    if (!live(g_functions, hf)) return CUDA_ERROR_INVALID_HANDLE;
    auto* f = reinterpret_cast<Function*>(hf);
    switch (attr) {
        case CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES:
            if (value < 0 || static_cast<unsigned>(value) + f->info.static_smem > kMaxSmemPerBlockOptin)
                return CUDA_ERROR_INVALID_VALUE;
            f->max_dynamic_smem = static_cast<unsigned>(value);
            return CUDA_SUCCESS;
        case CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT:
            return value >= -1 && value <= 100 ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
        default:
            return CUDA_ERROR_INVALID_VALUE;
    }
}

API CUresult cuFuncSetCacheConfig(CUfunction hf, int) {
    REQUIRE_CTX();
    return live(g_functions, hf) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

API CUresult cuLaunchKernel(CUfunction hf, unsigned int gx, unsigned int gy, unsigned int gz, unsigned int bx,
                            unsigned int by, unsigned int bz, unsigned int smem, CUstream hs, void** params,
                            void** extra) {
    REQUIRE_CTX();
    if (!live(g_functions, hf)) return CUDA_ERROR_INVALID_HANDLE;
    auto* f = reinterpret_cast<Function*>(hf);
    const KernelEntry* k = f->kernel;
    Stream* s;
    CHECK(resolve_stream(hs, &s));
    // The limits a GPU enforces at launch.
    if (gx == 0 || gy == 0 || gz == 0 || gx > 2147483647u || gy > 65535 || gz > 65535 || bx == 0 || by == 0 ||
        bz == 0 || bx > 1024 || by > 1024 || bz > 64 || uint64_t(bx) * by * bz > 1024) {
        note("cuLaunchKernel(%s): invalid configuration grid (%u,%u,%u) block (%u,%u,%u)", k->name, gx, gy, gz, bx,
             by, bz);
        return CUDA_ERROR_INVALID_VALUE;
    }
    const unsigned threads = bx * by * bz;
    if (threads > f->max_threads) {
        note("cuLaunchKernel(%s): %u threads per block exceed the kernel's limit of %u (launch bounds %ux%ux%u, %u "
             "registers)",
             k->name, threads, f->max_threads, f->info.maxntid[0], f->info.maxntid[1], f->info.maxntid[2],
             f->info.regs);
        return f->info.maxntid[0] && threads > f->info.maxntid[0] * f->info.maxntid[1] * f->info.maxntid[2]
                   ? CUDA_ERROR_INVALID_VALUE
                   : CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES;
    }
    if (smem > f->max_dynamic_smem) {
        note("cuLaunchKernel(%s): %u bytes of dynamic shared memory exceed the kernel's limit of %u", k->name, smem,
             f->max_dynamic_smem);
        return CUDA_ERROR_INVALID_VALUE;
    }
    Op op;
    op.kind = Op::Kernel;
    op.fn = f;
    op.grid = dim3{gx, gy, gz};
    op.block = dim3{bx, by, bz};
    op.params.assign(k->param_bytes ? k->param_bytes : 1, 0);
    if (params && extra) return CUDA_ERROR_INVALID_VALUE;
    if (params) {
        for (unsigned i = 0; i < k->num_params; ++i) {
            if (!params[i]) {
                note("cuLaunchKernel(%s): kernelParams[%u] is null", k->name, i);
                return CUDA_ERROR_INVALID_VALUE;
            }
            std::memcpy(op.params.data() + k->params[i].offset, params[i], k->params[i].size);
        }
    } else if (extra) {
        const void* buf = nullptr;
        std::size_t size = 0;
        bool have_size = false;
        for (void** e = extra; *e != VIGIL_CU_LAUNCH_PARAM_END; e += 2) {
            if (e[0] == VIGIL_CU_LAUNCH_PARAM_BUFFER_POINTER) buf = e[1];
            else if (e[0] == VIGIL_CU_LAUNCH_PARAM_BUFFER_SIZE) {
                size = *static_cast<std::size_t*>(e[1]);
                have_size = true;
            } else return CUDA_ERROR_INVALID_VALUE;
        }
        if (!buf || !have_size || size != k->param_bytes) {
            note("cuLaunchKernel(%s): `extra` parameter buffer of %zu bytes, the kernel takes %u", k->name, size,
                 k->param_bytes);
            return CUDA_ERROR_INVALID_VALUE;
        }
        std::memcpy(op.params.data(), buf, size);
    } else if (k->num_params > 0) {
        note("cuLaunchKernel(%s): no parameters given, the kernel takes %u", k->name, k->num_params);
        return CUDA_ERROR_INVALID_VALUE;
    }
    op.serial = ++g_launch_serial;
    return submit(s, std::move(op));
}

API CUresult cuLaunchCooperativeKernel(CUfunction, unsigned int, unsigned int, unsigned int, unsigned int,
                                       unsigned int, unsigned int, unsigned int, CUstream, void**) {
    return CUDA_ERROR_NOT_SUPPORTED;
}

// ---- errors -----------------------------------------------------------------------------

API CUresult cuGetErrorName(CUresult r, const char** out) {
    if (!out) return CUDA_ERROR_INVALID_VALUE;
    *out = result_name(r);
    return *out ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

API CUresult cuGetErrorString(CUresult r, const char** out) {
    if (!out) return CUDA_ERROR_INVALID_VALUE;
    *out = result_string(r);
    return *out ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

// NVIDIA's private export tables (NVRTC and the runtime ask libcuda for them): the
// emulator has none, and says so — a missing symbol would make NVRTC crash.
API CUresult cuGetExportTable(const void** table, const CUuuid*) {
    if (table) *table = nullptr;
    return CUDA_ERROR_NOT_SUPPORTED;
}

// ---- vigil-cuda-emu extensions ----------------------------------------------------------

API const char* vigilEmuVersion() {
    static char v[256];
    static std::once_flag once;
    std::call_once(once, [] {
        std::snprintf(v, sizeof v, "vigil-cuda-emu 1 (%s, sm_%d, %u kernels, %s executor)", kDeviceName, kSm,
                      kKernelRegistrySize, "fiber");
    });
    return v;
}

API void vigilEmuCounters(CountersSnapshot* out, size_t size) {
    if (!out) return;
    CountersSnapshot s{};
    g_counters.snapshot(&s);
    std::memcpy(out, &s, std::min(size, sizeof s));
}

API CUresult vigilEmuStreamCounters(CUstream hs, CountersSnapshot* out, size_t size) {
    if (!out) return CUDA_ERROR_INVALID_VALUE;
    Stream* s;
    CHECK(resolve_stream(hs, &s));
    CountersSnapshot snap{};
    s->counters.snapshot(&snap);
    std::memcpy(out, &snap, std::min(size, sizeof snap));
    return CUDA_SUCCESS;
}

/// The counter fields in order, comma-separated (the Rust mirror checks its layout).
API const char* vigilEmuCounterFields() {
#define VIGIL_EMU_NAME(name) #name ","
    return VIGIL_EMU_COUNTER_FIELDS(VIGIL_EMU_NAME);
#undef VIGIL_EMU_NAME
}

API void vigilEmuResetCounters() {
    g_counters.reset();
    for (Stream* s : all_streams()) s->counters.reset();
}

/// Offsets of CUDA_MEMCPY2D's fields and its size, for the ABI test against cudarc.
API void vigilEmuLayoutOfMemcpy2D(size_t* out17) {
    const size_t v[17] = {offsetof(CUDA_MEMCPY2D, srcXInBytes),   offsetof(CUDA_MEMCPY2D, srcY),
                          offsetof(CUDA_MEMCPY2D, srcMemoryType), offsetof(CUDA_MEMCPY2D, srcHost),
                          offsetof(CUDA_MEMCPY2D, srcDevice),     offsetof(CUDA_MEMCPY2D, srcArray),
                          offsetof(CUDA_MEMCPY2D, srcPitch),      offsetof(CUDA_MEMCPY2D, dstXInBytes),
                          offsetof(CUDA_MEMCPY2D, dstY),          offsetof(CUDA_MEMCPY2D, dstMemoryType),
                          offsetof(CUDA_MEMCPY2D, dstHost),       offsetof(CUDA_MEMCPY2D, dstDevice),
                          offsetof(CUDA_MEMCPY2D, dstArray),      offsetof(CUDA_MEMCPY2D, dstPitch),
                          offsetof(CUDA_MEMCPY2D, WidthInBytes),  offsetof(CUDA_MEMCPY2D, Height),
                          sizeof(CUDA_MEMCPY2D)};
    std::memcpy(out17, v, sizeof v);
}
