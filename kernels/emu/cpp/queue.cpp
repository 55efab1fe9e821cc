// queue.cpp — enqueueing, capturing and executing device work (see state.h).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>

#include "exec.h"
#include "memory.h"
#include "report.h"
#include "state.h"

namespace vigil_emu {

std::recursive_mutex g_exec;
Counters g_counters;

namespace {

std::mutex g_streams_mu;
std::vector<Stream*>& streams() {
    static std::vector<Stream*>* v = new std::vector<Stream*>();  // never destroyed
    return *v;
}

const char* space_name(Space s) {
    switch (s) {
        case Space::Device: return "device";
        case Space::PinnedHost: return "pinned host";
        default: return "pageable host";
    }
}

/// Check one endpoint of a copy or memset at execution time; fatal when it is no longer
/// (or never was) valid memory.
void check_endpoint(const char* role, uintptr_t p, std::size_t pitch, std::size_t width,
                    std::size_t height, Space space) {
    if (space == Space::PageableHost || height == 0 || width == 0) return;
    const std::size_t span = (height - 1) * pitch + width;
    char why[512];
    const MemKind kind = space == Space::Device ? MemKind::Device : MemKind::PinnedHost;
    if (!check_range(p, span, kind, nullptr, why, sizeof why))
        fatal("%s of a queued %s operation: %s", role, space_name(space), why);
}

void run_op(Stream* s, Op& op, bool in_graph, const char* graph_ctx);

void run_kernel(Stream* s, Op& op, bool in_graph) {
    const Function* fn = op.fn;
    const KernelEntry* k = fn->kernel;
    if (!fn->module->loaded)
        fatal("kernel %s is launched after its module was unloaded (cuModuleUnload)", k->name);
    // Every pointer parameter must point into live memory (or be null, which the kernels
    // test before use). Remember the allocations to verify their red zones afterwards.
    const Allocation* touched[64];
    unsigned ntouched = 0, host_args = 0;
    for (unsigned i = 0; i < k->num_params; ++i) {
        const ParamInfo& pi = k->params[i];
        if (!pi.pointer) continue;
        uintptr_t p;
        std::memcpy(&p, op.params.data() + pi.offset, sizeof p);
        if (p == 0) continue;
        const Allocation* a = find_live(p);
        if (!a) {
            char why[512];
            check_range(p, 0, MemKind::Device, nullptr, why, sizeof why);
            fatal("kernel %s, parameter #%u (a pointer): %s", k->name, i, why);
        }
        if (a->kind == MemKind::PinnedHost) ++host_args;
        if (ntouched < 64) touched[ntouched++] = a;
    }
    Launch l{k, op.params.data(), op.grid, op.block, tls_op};
    execute(l);
    for (unsigned i = 0; i < ntouched; ++i) verify_redzones(touched[i], "the kernel");
    const uint64_t blocks = uint64_t(op.grid.x) * op.grid.y * op.grid.z;
    Counters* sc = &s->counters;
    VIGIL_EMU_COUNT(sc, kernel_launches, 1);
    if (in_graph) VIGIL_EMU_COUNT(sc, graph_kernel_nodes, 1);
    else VIGIL_EMU_COUNT(sc, eager_kernel_launches, 1);
    VIGIL_EMU_COUNT(sc, blocks, blocks);
    VIGIL_EMU_COUNT(sc, threads, blocks * op.block.x * op.block.y * op.block.z);
    VIGIL_EMU_COUNT(sc, host_memory_kernel_args, host_args);
}

void run_copy(Stream* s, Op& op) {
    check_endpoint("the source", op.src, op.src_pitch, op.width, op.height, op.src_space);
    check_endpoint("the destination", op.dst, op.dst_pitch, op.width, op.height, op.dst_space);
    const unsigned char* src = op.staged ? op.staged->data() : reinterpret_cast<const unsigned char*>(op.src);
    const std::size_t src_pitch = op.staged ? op.width : op.src_pitch;
    auto* dst = reinterpret_cast<unsigned char*>(op.dst);
    for (std::size_t r = 0; r < op.height; ++r)
        std::memmove(dst + r * op.dst_pitch, src + r * src_pitch, op.width);
    const uint64_t bytes = uint64_t(op.width) * op.height;
    const bool src_dev = op.src_space == Space::Device, dst_dev = op.dst_space == Space::Device;
    Counters* sc = &s->counters;
    if (!src_dev && dst_dev) {
        VIGIL_EMU_COUNT(sc, htod_copies, 1);
        VIGIL_EMU_COUNT(sc, htod_bytes, bytes);
    } else if (src_dev && !dst_dev) {
        VIGIL_EMU_COUNT(sc, dtoh_copies, 1);
        VIGIL_EMU_COUNT(sc, dtoh_bytes, bytes);
    } else if (src_dev && dst_dev) {
        VIGIL_EMU_COUNT(sc, dtod_copies, 1);
        VIGIL_EMU_COUNT(sc, dtod_bytes, bytes);
    }
}

void run_memset(Stream* s, Op& op) {
    const Space sp = op.dst_space;
    check_endpoint("the destination", op.dst, 0, op.count * op.elem, 1, sp);
    auto* d = reinterpret_cast<unsigned char*>(op.dst);
    if (op.elem == 1) {
        std::memset(d, static_cast<int>(op.value & 0xff), op.count);
    } else {
        for (std::size_t i = 0; i < op.count; ++i) std::memcpy(d + i * op.elem, &op.value, op.elem);
    }
    VIGIL_EMU_COUNT(&s->counters, memsets, 1);
    VIGIL_EMU_COUNT(&s->counters, memset_bytes, uint64_t(op.count) * op.elem);
}

void describe_op(Stream* s, const Op& op, const char* graph_ctx, char* buf, std::size_t n) {
    const char* in = graph_ctx ? graph_ctx : "";
    switch (op.kind) {
        case Op::Kernel:
            std::snprintf(buf, n, "kernel %s (launch #%llu, grid (%u,%u,%u), block (%u,%u,%u), stream %p%s%s)",
                          op.fn->kernel->name, static_cast<unsigned long long>(op.serial), op.grid.x, op.grid.y,
                          op.grid.z, op.block.x, op.block.y, op.block.z, static_cast<void*>(s),
                          graph_ctx ? ", " : "", in);
            break;
        case Op::Copy:
            std::snprintf(buf, n, "%s #%llu (%zu x %zu bytes, %s %#llx -> %s %#llx, stream %p%s%s)", op.api,
                          static_cast<unsigned long long>(op.serial), op.height, op.width, space_name(op.src_space),
                          static_cast<unsigned long long>(op.src), space_name(op.dst_space),
                          static_cast<unsigned long long>(op.dst), static_cast<void*>(s), graph_ctx ? ", " : "", in);
            break;
        case Op::Memset:
            std::snprintf(buf, n, "%s (%zu bytes at %#llx, stream %p%s%s)", op.api, op.count * op.elem,
                          static_cast<unsigned long long>(op.dst), static_cast<void*>(s), graph_ctx ? ", " : "", in);
            break;
        case Op::Free:
            std::snprintf(buf, n, "cuMemFreeAsync(%#llx) on stream %p", static_cast<unsigned long long>(op.dst),
                          static_cast<void*>(s));
            break;
        case Op::Graph:
            std::snprintf(buf, n, "cuGraphLaunch on stream %p", static_cast<void*>(s));
            break;
        default:
            std::snprintf(buf, n, "a stream operation on stream %p", static_cast<void*>(s));
    }
}

void run_op(Stream* s, Op& op, bool in_graph, const char* graph_ctx) {
    char saved[sizeof tls_op];
    std::memcpy(saved, tls_op, sizeof saved);
    describe_op(s, op, graph_ctx, tls_op, sizeof tls_op);
    switch (op.kind) {
        case Op::Kernel:
            run_kernel(s, op, in_graph);
            break;
        case Op::Copy:
            run_copy(s, op);
            break;
        case Op::Memset:
            run_memset(s, op);
            break;
        case Op::Free: {
            FreeStatus st = release(op.dst, MemKind::Device, "cuMemFreeAsync (stream-ordered)");
            if (st != FreeStatus::Ok) {
                char why[512];
                check_range(op.dst, 0, MemKind::Device, nullptr, why, sizeof why);
                fatal("stream-ordered free of %#llx failed: %s", static_cast<unsigned long long>(op.dst), why);
            }
            VIGIL_EMU_COUNT(&s->counters, frees, 1);
            break;
        }
        case Op::Wait:
            drain(op.other, op.seq);
            break;
        case Op::Graph: {
            GraphExec& g = *op.graph;
            const uint64_t launch = ++g.launches;
            const std::size_t n = g.nodes.size();
            for (std::size_t i = 0; i < n; ++i) {
                char ctx[96];
                std::snprintf(ctx, sizeof ctx, "node %zu of %zu of graph exec %p, its launch #%llu", i + 1, n,
                              static_cast<void*>(&g), static_cast<unsigned long long>(launch));
                run_op(s, g.nodes[i], true, ctx);
            }
            VIGIL_EMU_COUNT(&s->counters, graph_launches, 1);
            VIGIL_EMU_COUNT(&s->counters, graph_nodes, n);
            break;
        }
        case Op::HostFn:
            op.host_fn(op.host_arg);
            break;
        case Op::Timestamp:
            op.event->time_ms = now_ms();
            break;
    }
    std::memcpy(tls_op, saved, sizeof saved);
}

}  // namespace

double now_ms() {
    using namespace std::chrono;
    return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}

void drain(Stream* s, uint64_t upto) {
    std::lock_guard<std::recursive_mutex> g(g_exec);
    for (;;) {
        Op op;
        {
            std::lock_guard<std::mutex> q(s->m);
            if (s->executed >= upto || s->pending.empty()) break;
            op = std::move(s->pending.front());
            s->pending.pop_front();
        }
        run_op(s, op, false, nullptr);
        std::lock_guard<std::mutex> q(s->m);
        ++s->executed;
    }
}

void drain_all() {
    std::lock_guard<std::recursive_mutex> g(g_exec);
    for (Stream* s : all_streams()) {
        uint64_t upto;
        {
            std::lock_guard<std::mutex> q(s->m);
            upto = s->enqueued;
        }
        drain(s, upto);
    }
}

std::vector<Stream*> all_streams() {
    std::lock_guard<std::mutex> g(g_streams_mu);
    return streams();
}

void register_stream(Stream* s) {
    std::lock_guard<std::mutex> g(g_streams_mu);
    streams().push_back(s);
}

void unregister_stream(Stream* s) {
    std::lock_guard<std::mutex> g(g_streams_mu);
    auto& v = streams();
    v.erase(std::remove(v.begin(), v.end(), s), v.end());
}

Stream* legacy_stream() {
    static Stream* s = [] {
        auto* l = new Stream();  // lives as long as the process
        l->legacy = true;
        register_stream(l);
        return l;
    }();
    return s;
}

CUresult submit(Stream* s, Op op) {
    {
        std::lock_guard<std::mutex> q(s->m);
        if (s->capture) {
            Capture& c = *s->capture;
            if (c.invalidated) return CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
            const char* bad = nullptr;
            if (op.kind == Op::Copy &&
                (op.src_space == Space::PageableHost || op.dst_space == Space::PageableHost))
                bad = "a copy to or from pageable host memory cannot be captured (use pinned memory)";
            else if (op.kind == Op::Free)
                bad = "stream-ordered frees (graph memory nodes) are not supported by the emulator in a capture";
            else if (op.kind == Op::Graph)
                bad = "launching a graph into a capture (child graph nodes) is not supported by the emulator";
            if (bad) {
                c.invalidated = true;
                c.why = bad;
                note("stream capture invalidated: %s", bad);
                return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
            }
            c.nodes.push_back(std::move(op));
            return CUDA_SUCCESS;
        }
    }
    // The legacy default stream waits for all blocking streams, and they wait for it.
    std::vector<Op> waits;
    Stream* legacy = legacy_stream();
    if (s->legacy) {
        for (Stream* b : all_streams()) {
            if (b == s || (b->flags & CU_STREAM_NON_BLOCKING)) continue;
            std::lock_guard<std::mutex> q(b->m);
            if (b->capture) {
                b->capture->invalidated = true;
                b->capture->why = "the legacy default stream was used while a blocking stream was capturing";
                return CUDA_ERROR_STREAM_CAPTURE_IMPLICIT;
            }
            if (b->enqueued > b->executed) waits.push_back(wait_op(b, b->enqueued));
        }
    } else if (!(s->flags & CU_STREAM_NON_BLOCKING)) {
        std::lock_guard<std::mutex> q(legacy->m);
        if (legacy->enqueued > legacy->executed) waits.push_back(wait_op(legacy, legacy->enqueued));
    }
    std::lock_guard<std::mutex> q(s->m);
    for (Op& w : waits) {
        s->pending.push_back(std::move(w));
        ++s->enqueued;
    }
    s->pending.push_back(std::move(op));
    ++s->enqueued;
    return CUDA_SUCCESS;
}

}  // namespace vigil_emu
