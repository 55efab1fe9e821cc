// counters.h — what the emulated device did, for tests that assert the design (per step:
// one graph launch, host->device bytes = frames + slot indices + frame counts,
// device->host bytes = logits, no carried state crossing the bus).
//
// Counted when the work EXECUTES (not when it is enqueued or captured), process-wide and
// per stream. Exported as `vigilEmuCounters(out, size)`, `vigilEmuStreamCounters(stream,
// out, size)` and `vigilEmuResetCounters()`; the Rust mirror is
// `vigil_cuda_emu::Counters` (kernels/emu/src/counters.rs) — same fields, same order.
#pragma once

#include <atomic>
#include <cstdint>

namespace vigil_emu {

#define VIGIL_EMU_COUNTER_FIELDS(X)                                                        \
    X(kernel_launches)        /* kernels executed, eager and graph nodes */                \
    X(eager_kernel_launches)  /* kernels executed from cuLaunchKernel outside a graph */   \
    X(graph_launches)         /* cuGraphLaunch executed */                                 \
    X(graph_nodes)            /* graph nodes executed, all kinds */                        \
    X(graph_kernel_nodes)     /* kernel nodes executed inside graphs */                    \
    X(htod_copies)                                                                         \
    X(htod_bytes)                                                                          \
    X(dtoh_copies)                                                                         \
    X(dtoh_bytes)                                                                          \
    X(dtod_copies)                                                                         \
    X(dtod_bytes)                                                                          \
    X(memsets)                                                                             \
    X(memset_bytes)                                                                        \
    X(host_memory_kernel_args) /* kernel pointer arguments into pinned host memory */      \
    X(blocks)                 /* thread blocks executed */                                 \
    X(threads)                /* CUDA threads executed */                                  \
    X(synchronizations)       /* stream/event/context synchronisations by the host */      \
    X(allocations)            /* device allocations */                                     \
    X(frees)                  /* device frees executed */                                  \
    X(graphs_instantiated)

/// The exported, plain-data snapshot.
struct CountersSnapshot {
#define VIGIL_EMU_FIELD(name) uint64_t name;
    VIGIL_EMU_COUNTER_FIELDS(VIGIL_EMU_FIELD)
#undef VIGIL_EMU_FIELD
};

/// The live counters (relaxed atomics: they are statistics, read between operations).
struct Counters {
#define VIGIL_EMU_FIELD(name) std::atomic<uint64_t> name{0};
    VIGIL_EMU_COUNTER_FIELDS(VIGIL_EMU_FIELD)
#undef VIGIL_EMU_FIELD

    void snapshot(CountersSnapshot* out) const {
#define VIGIL_EMU_FIELD(name) out->name = name.load(std::memory_order_relaxed);
        VIGIL_EMU_COUNTER_FIELDS(VIGIL_EMU_FIELD)
#undef VIGIL_EMU_FIELD
    }
    void reset() {
#define VIGIL_EMU_FIELD(name) name.store(0, std::memory_order_relaxed);
        VIGIL_EMU_COUNTER_FIELDS(VIGIL_EMU_FIELD)
#undef VIGIL_EMU_FIELD
    }
};

/// Add `v` to a field of both the process-wide and a stream's counters.
#define VIGIL_EMU_COUNT(stream_counters, field, v)                                   \
    do {                                                                             \
        ::vigil_emu::g_counters.field.fetch_add((v), std::memory_order_relaxed);     \
        if (stream_counters) (stream_counters)->field.fetch_add((v), std::memory_order_relaxed); \
    } while (0)

/// Add `v` to a field of the process-wide counters only.
#define VIGIL_EMU_COUNT_GLOBAL(field, v) \
    ::vigil_emu::g_counters.field.fetch_add((v), std::memory_order_relaxed)

extern Counters g_counters;

}  // namespace vigil_emu
