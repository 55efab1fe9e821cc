// state.h — the emulated device's objects behind the driver-API handles: the primary
// context, streams and their queues, events, stream captures, graphs, modules, functions;
// and the queue machinery (queue.cpp).
//
// Execution model. Work enqueued on a stream is NOT executed when it is enqueued: it runs,
// in stream order, when the host synchronises with it (cuStreamSynchronize,
// cuEventSynchronize/Query, cuCtxSynchronize, a copy into pageable host memory, an
// implicitly synchronising call such as cuMemFree) — on the synchronising thread, with the
// kernels' blocks spread over the executor's workers. Asynchrony is therefore total and
// deterministic: a host read of a result without the synchronisation CUDA requires sees
// the old contents, every time, instead of usually winning a race. One operation executes
// at a time device-wide (g_exec); a stream waiting on another's event executes the other
// stream up to the event first.
//
// Locks: g_api (handle tables, events, captures) and each Stream::m (its queue) are held
// only briefly; g_exec is held while executing and is recursive (cross-stream waits).
// Order: g_exec, then Stream::m; g_api is never held while executing.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "counters.h"
#include "cuda_abi.h"
#include "image.h"
#include "registry.h"

namespace vigil_emu {

struct Stream;
struct Event;
struct GraphExec;
struct Module;

struct Function {
    Module* module;
    const KernelEntry* kernel;
    ImageKernel info;
    unsigned max_threads;        ///< per block: launch bounds, registers, 1024
    unsigned max_dynamic_smem;   ///< CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
};

struct Module {
    Image image;
    std::vector<std::unique_ptr<Function>> functions;
    bool loaded = true;
};

/// Where a copy endpoint lives.
enum class Space : uint8_t { Device, PinnedHost, PageableHost };

/// One queued or captured operation.
struct Op {
    enum Kind { Kernel, Copy, Memset, Free, Wait, Graph, HostFn, Timestamp };
    Kind kind = Kernel;
    uint64_t serial = 0;  ///< launch/copy number, for reports
    // Kernel
    const Function* fn = nullptr;
    dim3 grid, block;
    std::vector<unsigned char> params;
    // Copy (1-D copies are 2-D with height 1)
    uintptr_t src = 0, dst = 0;
    std::size_t src_pitch = 0, dst_pitch = 0, width = 0, height = 0;
    Space src_space = Space::Device, dst_space = Space::Device;
    std::shared_ptr<std::vector<unsigned char>> staged;  ///< pageable source, copied at enqueue
    const char* api = "";                                 ///< the call that enqueued it
    // Memset: `count` elements of `elem` bytes (1, 2, 4) with `value`
    uint32_t value = 0;
    unsigned elem = 1;
    std::size_t count = 0;
    // Free: dst
    // Wait: execute `other` up to `seq`
    Stream* other = nullptr;
    uint64_t seq = 0;
    // Graph
    std::shared_ptr<GraphExec> graph;
    // HostFn
    CUhostFn host_fn = nullptr;
    void* host_arg = nullptr;
    // Timestamp (timed event record)
    Event* event = nullptr;
};

/// An operation that executes `other` up to its `seq`-th operation (cross-stream order).
inline Op wait_op(Stream* other, uint64_t seq) {
    Op w;
    w.kind = Op::Wait;
    w.other = other;
    w.seq = seq;
    return w;
}

/// An active stream capture.
struct Capture {
    std::vector<Op> nodes;
    CUstreamCaptureMode mode = CU_STREAM_CAPTURE_MODE_GLOBAL;
    std::thread::id owner;
    bool invalidated = false;
    std::string why;  ///< why it was invalidated
};

struct Stream {
    unsigned flags = 0;
    int priority = 0;
    bool legacy = false;  ///< the NULL (legacy default) stream
    std::mutex m;
    std::deque<Op> pending;
    uint64_t enqueued = 0;  ///< operations ever enqueued (the next op's sequence number)
    uint64_t executed = 0;  ///< operations executed
    std::unique_ptr<Capture> capture;
    Counters counters;
};

struct Event {
    unsigned flags = 0;
    Stream* stream = nullptr;  ///< where it was last recorded (nullptr: never)
    uint64_t seq = 0;          ///< complete once stream->executed >= seq
    Capture* captured = nullptr;
    double time_ms = 0;  ///< host time when the record executed (timing events)
};

struct Graph {
    std::vector<Op> nodes;  ///< a chain, in capture order
};

struct GraphExec {
    std::vector<Op> nodes;
    uint64_t launches = 0;
};

// ---- the queue machinery (queue.cpp) --------------------------------------------------

extern std::recursive_mutex g_exec;

/// Execute `s` until it has executed `upto` operations (or its queue is empty).
void drain(Stream* s, uint64_t upto);
/// Execute everything enqueued so far on every stream.
void drain_all();

/// Append `op` to `s` (or to its capture); the legacy-stream ordering rules are applied.
/// Returns the CUresult of the enqueue (capture rules).
CUresult submit(Stream* s, Op op);

/// Every stream that exists (the legacy stream first).
std::vector<Stream*> all_streams();
void register_stream(Stream* s);
void unregister_stream(Stream* s);

/// The legacy default stream.
Stream* legacy_stream();

/// Host-side milliseconds (for timing events).
double now_ms();

}  // namespace vigil_emu
