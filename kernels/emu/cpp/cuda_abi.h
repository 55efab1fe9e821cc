// cuda_abi.h — the slice of the CUDA driver API's binary interface that the emulated
// driver implements: handle types, enum values and struct layouts, written down from the
// driver ABI as cudarc 0.19 (`cudarc::driver::sys`, feature cuda-12080) declares it, so
// the emulator builds from the project's own sources with no NVIDIA header.
//
// Every value here is checked from Rust: vigil-cuda-emu's `abi` tests compare each
// CUresult name/number with cudarc's enum and the CUDA_MEMCPY2D field offsets with
// cudarc's struct (see kernels/emu/tests/driver_api.rs).
#pragma once
#include <cstddef>
#include <cstdint>

extern "C" {

typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef struct CUctx_st* CUcontext;
typedef struct CUmod_st* CUmodule;
typedef struct CUfunc_st* CUfunction;
typedef struct CUstream_st* CUstream;
typedef struct CUevent_st* CUevent;
typedef struct CUgraph_st* CUgraph;
typedef struct CUgraphExec_st* CUgraphExec;
typedef struct CUarray_st* CUarray;
typedef struct CUmemPoolHandle_st* CUmemoryPool;
typedef void (*CUhostFn)(void* userData);

typedef struct CUuuid_st {
    char bytes[16];
} CUuuid;

// CUresult: X(name, value), in cudarc's (cuda-12080) order.
#define VIGIL_CU_RESULTS(X)                                                                  \
    X(CUDA_SUCCESS, 0)                                                                       \
    X(CUDA_ERROR_INVALID_VALUE, 1)                                                           \
    X(CUDA_ERROR_OUT_OF_MEMORY, 2)                                                           \
    X(CUDA_ERROR_NOT_INITIALIZED, 3)                                                         \
    X(CUDA_ERROR_DEINITIALIZED, 4)                                                           \
    X(CUDA_ERROR_PROFILER_DISABLED, 5)                                                       \
    X(CUDA_ERROR_PROFILER_NOT_INITIALIZED, 6)                                                \
    X(CUDA_ERROR_PROFILER_ALREADY_STARTED, 7)                                                \
    X(CUDA_ERROR_PROFILER_ALREADY_STOPPED, 8)                                                \
    X(CUDA_ERROR_STUB_LIBRARY, 34)                                                           \
    X(CUDA_ERROR_DEVICE_UNAVAILABLE, 46)                                                     \
    X(CUDA_ERROR_NO_DEVICE, 100)                                                             \
    X(CUDA_ERROR_INVALID_DEVICE, 101)                                                        \
    X(CUDA_ERROR_DEVICE_NOT_LICENSED, 102)                                                   \
    X(CUDA_ERROR_INVALID_IMAGE, 200)                                                         \
    X(CUDA_ERROR_INVALID_CONTEXT, 201)                                                       \
    X(CUDA_ERROR_CONTEXT_ALREADY_CURRENT, 202)                                               \
    X(CUDA_ERROR_MAP_FAILED, 205)                                                            \
    X(CUDA_ERROR_UNMAP_FAILED, 206)                                                          \
    X(CUDA_ERROR_ARRAY_IS_MAPPED, 207)                                                       \
    X(CUDA_ERROR_ALREADY_MAPPED, 208)                                                        \
    X(CUDA_ERROR_NO_BINARY_FOR_GPU, 209)                                                     \
    X(CUDA_ERROR_ALREADY_ACQUIRED, 210)                                                      \
    X(CUDA_ERROR_NOT_MAPPED, 211)                                                            \
    X(CUDA_ERROR_NOT_MAPPED_AS_ARRAY, 212)                                                   \
    X(CUDA_ERROR_NOT_MAPPED_AS_POINTER, 213)                                                 \
    X(CUDA_ERROR_ECC_UNCORRECTABLE, 214)                                                     \
    X(CUDA_ERROR_UNSUPPORTED_LIMIT, 215)                                                     \
    X(CUDA_ERROR_CONTEXT_ALREADY_IN_USE, 216)                                                \
    X(CUDA_ERROR_PEER_ACCESS_UNSUPPORTED, 217)                                               \
    X(CUDA_ERROR_INVALID_PTX, 218)                                                           \
    X(CUDA_ERROR_INVALID_GRAPHICS_CONTEXT, 219)                                              \
    X(CUDA_ERROR_NVLINK_UNCORRECTABLE, 220)                                                  \
    X(CUDA_ERROR_JIT_COMPILER_NOT_FOUND, 221)                                                \
    X(CUDA_ERROR_UNSUPPORTED_PTX_VERSION, 222)                                               \
    X(CUDA_ERROR_JIT_COMPILATION_DISABLED, 223)                                              \
    X(CUDA_ERROR_UNSUPPORTED_EXEC_AFFINITY, 224)                                             \
    X(CUDA_ERROR_UNSUPPORTED_DEVSIDE_SYNC, 225)                                              \
    X(CUDA_ERROR_CONTAINED, 226)                                                             \
    X(CUDA_ERROR_INVALID_SOURCE, 300)                                                        \
    X(CUDA_ERROR_FILE_NOT_FOUND, 301)                                                        \
    X(CUDA_ERROR_SHARED_OBJECT_SYMBOL_NOT_FOUND, 302)                                        \
    X(CUDA_ERROR_SHARED_OBJECT_INIT_FAILED, 303)                                             \
    X(CUDA_ERROR_OPERATING_SYSTEM, 304)                                                      \
    X(CUDA_ERROR_INVALID_HANDLE, 400)                                                        \
    X(CUDA_ERROR_ILLEGAL_STATE, 401)                                                         \
    X(CUDA_ERROR_LOSSY_QUERY, 402)                                                           \
    X(CUDA_ERROR_NOT_FOUND, 500)                                                             \
    X(CUDA_ERROR_NOT_READY, 600)                                                             \
    X(CUDA_ERROR_ILLEGAL_ADDRESS, 700)                                                       \
    X(CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES, 701)                                               \
    X(CUDA_ERROR_LAUNCH_TIMEOUT, 702)                                                        \
    X(CUDA_ERROR_LAUNCH_INCOMPATIBLE_TEXTURING, 703)                                         \
    X(CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED, 704)                                           \
    X(CUDA_ERROR_PEER_ACCESS_NOT_ENABLED, 705)                                               \
    X(CUDA_ERROR_PRIMARY_CONTEXT_ACTIVE, 708)                                                \
    X(CUDA_ERROR_CONTEXT_IS_DESTROYED, 709)                                                  \
    X(CUDA_ERROR_ASSERT, 710)                                                                \
    X(CUDA_ERROR_TOO_MANY_PEERS, 711)                                                        \
    X(CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED, 712)                                        \
    X(CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED, 713)                                            \
    X(CUDA_ERROR_HARDWARE_STACK_ERROR, 714)                                                  \
    X(CUDA_ERROR_ILLEGAL_INSTRUCTION, 715)                                                   \
    X(CUDA_ERROR_MISALIGNED_ADDRESS, 716)                                                    \
    X(CUDA_ERROR_INVALID_ADDRESS_SPACE, 717)                                                 \
    X(CUDA_ERROR_INVALID_PC, 718)                                                            \
    X(CUDA_ERROR_LAUNCH_FAILED, 719)                                                         \
    X(CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE, 720)                                          \
    X(CUDA_ERROR_TENSOR_MEMORY_LEAK, 721)                                                    \
    X(CUDA_ERROR_NOT_PERMITTED, 800)                                                         \
    X(CUDA_ERROR_NOT_SUPPORTED, 801)                                                         \
    X(CUDA_ERROR_SYSTEM_NOT_READY, 802)                                                      \
    X(CUDA_ERROR_SYSTEM_DRIVER_MISMATCH, 803)                                                \
    X(CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE, 804)                                        \
    X(CUDA_ERROR_MPS_CONNECTION_FAILED, 805)                                                 \
    X(CUDA_ERROR_MPS_RPC_FAILURE, 806)                                                       \
    X(CUDA_ERROR_MPS_SERVER_NOT_READY, 807)                                                  \
    X(CUDA_ERROR_MPS_MAX_CLIENTS_REACHED, 808)                                               \
    X(CUDA_ERROR_MPS_MAX_CONNECTIONS_REACHED, 809)                                           \
    X(CUDA_ERROR_MPS_CLIENT_TERMINATED, 810)                                                 \
    X(CUDA_ERROR_CDP_NOT_SUPPORTED, 811)                                                     \
    X(CUDA_ERROR_CDP_VERSION_MISMATCH, 812)                                                  \
    X(CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED, 900)                                            \
    X(CUDA_ERROR_STREAM_CAPTURE_INVALIDATED, 901)                                            \
    X(CUDA_ERROR_STREAM_CAPTURE_MERGE, 902)                                                  \
    X(CUDA_ERROR_STREAM_CAPTURE_UNMATCHED, 903)                                              \
    X(CUDA_ERROR_STREAM_CAPTURE_UNJOINED, 904)                                               \
    X(CUDA_ERROR_STREAM_CAPTURE_ISOLATION, 905)                                              \
    X(CUDA_ERROR_STREAM_CAPTURE_IMPLICIT, 906)                                               \
    X(CUDA_ERROR_CAPTURED_EVENT, 907)                                                        \
    X(CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD, 908)                                           \
    X(CUDA_ERROR_TIMEOUT, 909)                                                               \
    X(CUDA_ERROR_GRAPH_EXEC_UPDATE_FAILURE, 910)                                             \
    X(CUDA_ERROR_EXTERNAL_DEVICE, 911)                                                       \
    X(CUDA_ERROR_INVALID_CLUSTER_SIZE, 912)                                                  \
    X(CUDA_ERROR_FUNCTION_NOT_LOADED, 913)                                                   \
    X(CUDA_ERROR_INVALID_RESOURCE_TYPE, 914)                                                 \
    X(CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION, 915)                                        \
    X(CUDA_ERROR_KEY_ROTATION, 916)                                                          \
    X(CUDA_ERROR_UNKNOWN, 999)

typedef enum cudaError_enum {
#define VIGIL_CU_ENUM(name, value) name = value,
    VIGIL_CU_RESULTS(VIGIL_CU_ENUM)
#undef VIGIL_CU_ENUM
} CUresult;

// CUdevice_attribute (only the values the emulator answers by name; the rest are 0).
enum {
    CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK = 1,
    CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_X = 2,
    CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Y = 3,
    CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Z = 4,
    CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X = 5,
    CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y = 6,
    CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Z = 7,
    CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK = 8,
    CU_DEVICE_ATTRIBUTE_TOTAL_CONSTANT_MEMORY = 9,
    CU_DEVICE_ATTRIBUTE_WARP_SIZE = 10,
    CU_DEVICE_ATTRIBUTE_MAX_PITCH = 11,
    CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_BLOCK = 12,
    CU_DEVICE_ATTRIBUTE_CLOCK_RATE = 13,
    CU_DEVICE_ATTRIBUTE_TEXTURE_ALIGNMENT = 14,
    CU_DEVICE_ATTRIBUTE_GPU_OVERLAP = 15,
    CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16,
    CU_DEVICE_ATTRIBUTE_INTEGRATED = 18,
    CU_DEVICE_ATTRIBUTE_CAN_MAP_HOST_MEMORY = 19,
    CU_DEVICE_ATTRIBUTE_CONCURRENT_KERNELS = 31,
    CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE = 36,
    CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH = 37,
    CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE = 38,
    CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR = 39,
    CU_DEVICE_ATTRIBUTE_ASYNC_ENGINE_COUNT = 40,
    CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING = 41,
    CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75,
    CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76,
    CU_DEVICE_ATTRIBUTE_STREAM_PRIORITIES_SUPPORTED = 78,
    CU_DEVICE_ATTRIBUTE_GLOBAL_L1_CACHE_SUPPORTED = 79,
    CU_DEVICE_ATTRIBUTE_LOCAL_L1_CACHE_SUPPORTED = 80,
    CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR = 81,
    CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_MULTIPROCESSOR = 82,
    CU_DEVICE_ATTRIBUTE_MANAGED_MEMORY = 83,
    CU_DEVICE_ATTRIBUTE_COMPUTE_PREEMPTION_SUPPORTED = 90,
    CU_DEVICE_ATTRIBUTE_COOPERATIVE_LAUNCH = 95,
    CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 97,
    CU_DEVICE_ATTRIBUTE_MAX_BLOCKS_PER_MULTIPROCESSOR = 106,
    CU_DEVICE_ATTRIBUTE_RESERVED_SHARED_MEMORY_PER_BLOCK = 111,
    CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED = 115,
    CU_DEVICE_ATTRIBUTE_MAX = 144,
};
typedef int CUdevice_attribute;

enum {
    CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK = 0,
    CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES = 1,
    CU_FUNC_ATTRIBUTE_CONST_SIZE_BYTES = 2,
    CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES = 3,
    CU_FUNC_ATTRIBUTE_NUM_REGS = 4,
    CU_FUNC_ATTRIBUTE_PTX_VERSION = 5,
    CU_FUNC_ATTRIBUTE_BINARY_VERSION = 6,
    CU_FUNC_ATTRIBUTE_CACHE_MODE_CA = 7,
    CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8,
    CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT = 9,
    CU_FUNC_ATTRIBUTE_MAX = 18,
};
typedef int CUfunction_attribute;

enum {
    CU_MEMORYTYPE_HOST = 1,
    CU_MEMORYTYPE_DEVICE = 2,
    CU_MEMORYTYPE_ARRAY = 3,
    CU_MEMORYTYPE_UNIFIED = 4,
};
typedef int CUmemorytype;

enum {
    CU_STREAM_CAPTURE_STATUS_NONE = 0,
    CU_STREAM_CAPTURE_STATUS_ACTIVE = 1,
    CU_STREAM_CAPTURE_STATUS_INVALIDATED = 2,
};
typedef int CUstreamCaptureStatus;

enum {
    CU_STREAM_CAPTURE_MODE_GLOBAL = 0,
    CU_STREAM_CAPTURE_MODE_THREAD_LOCAL = 1,
    CU_STREAM_CAPTURE_MODE_RELAXED = 2,
};
typedef int CUstreamCaptureMode;

enum { CU_STREAM_DEFAULT = 0, CU_STREAM_NON_BLOCKING = 1 };
enum { CU_EVENT_DEFAULT = 0, CU_EVENT_BLOCKING_SYNC = 1, CU_EVENT_DISABLE_TIMING = 2, CU_EVENT_INTERPROCESS = 4 };
enum { CU_MEMHOSTALLOC_PORTABLE = 1, CU_MEMHOSTALLOC_DEVICEMAP = 2, CU_MEMHOSTALLOC_WRITECOMBINED = 4 };
enum {
    CUDA_GRAPH_INSTANTIATE_FLAG_AUTO_FREE_ON_LAUNCH = 1,
    CUDA_GRAPH_INSTANTIATE_FLAG_UPLOAD = 2,
    CUDA_GRAPH_INSTANTIATE_FLAG_DEVICE_LAUNCH = 4,
    CUDA_GRAPH_INSTANTIATE_FLAG_USE_NODE_PRIORITY = 8,
};

// The special stream handles of the driver API.
#define VIGIL_CU_STREAM_LEGACY ((CUstream)0x1)
#define VIGIL_CU_STREAM_PER_THREAD ((CUstream)0x2)

// cuLaunchKernel `extra` keys.
#define VIGIL_CU_LAUNCH_PARAM_END ((void*)0x00)
#define VIGIL_CU_LAUNCH_PARAM_BUFFER_POINTER ((void*)0x01)
#define VIGIL_CU_LAUNCH_PARAM_BUFFER_SIZE ((void*)0x02)

typedef struct CUDA_MEMCPY2D_st {
    size_t srcXInBytes;
    size_t srcY;
    CUmemorytype srcMemoryType;
    const void* srcHost;
    CUdeviceptr srcDevice;
    CUarray srcArray;
    size_t srcPitch;
    size_t dstXInBytes;
    size_t dstY;
    CUmemorytype dstMemoryType;
    void* dstHost;
    CUdeviceptr dstDevice;
    CUarray dstArray;
    size_t dstPitch;
    size_t WidthInBytes;
    size_t Height;
} CUDA_MEMCPY2D;

}  // extern "C"
