// registry.h — the host-compiled kernels the emulator can run, by name.
//
// kernels.cpp `#include`s every kernels/cuda/*.cu file and lists each `extern "C"
// __global__` function (the list is generated from the sources by the builder,
// kernels/emu/src/build.rs) with VIGIL_EMU_KERNEL(name). For each one a trampoline is
// generated from the function's own C++ type: the parameter layout of the CUDA parameter
// space (each parameter at the next multiple of its alignment, like the `.param` space
// NVRTC lays out), which parameters are pointers, and `invoke`, which unpacks a packed
// parameter buffer into a call of the real kernel function — so `cuLaunchKernel`'s
// `void** kernelParams` is read by the kernel's real signature, never guessed.
#pragma once

#include <array>
#include <cstddef>
#include <cstring>
#include <type_traits>
#include <utility>

namespace vigil_emu {

/// One kernel parameter of the host-compiled signature.
struct ParamInfo {
    unsigned offset;   ///< byte offset in the packed parameter buffer
    unsigned size;     ///< sizeof the parameter
    bool pointer;      ///< a pointer (checked against the allocation table at launch)
    bool writable;     ///< a pointer to non-const
};

/// A kernel the emulator can execute.
struct KernelEntry {
    const char* name;
    unsigned num_params;
    const ParamInfo* params;
    unsigned param_bytes;  ///< size of the packed parameter buffer
    /// Run one CUDA thread of this kernel with the packed parameters `buf`
    /// (threadIdx/blockIdx are set by the executor beforehand).
    void (*invoke)(const unsigned char* buf);
};

/// Every host-compiled kernel (defined in kernels.cpp), and their count.
extern const KernelEntry kKernelRegistry[];
extern const unsigned kKernelRegistrySize;

/// Look a kernel up by its `extern "C"` name; nullptr when the emulator has no such kernel.
const KernelEntry* find_kernel(const char* name);

namespace detail {

template <typename T>
constexpr ParamInfo param_info(unsigned offset) {
    return ParamInfo{offset, static_cast<unsigned>(sizeof(T)), std::is_pointer_v<T>,
                     std::is_pointer_v<T> && !std::is_const_v<std::remove_pointer_t<T>>};
}

template <typename... A>
constexpr std::array<ParamInfo, sizeof...(A)> layout() {
    std::array<ParamInfo, sizeof...(A)> out{};
    unsigned offset = 0;
    std::size_t i = 0;
    // Each parameter at the next multiple of its alignment (the .param space layout).
    ((offset = (offset + alignof(A) - 1) / alignof(A) * alignof(A),
      out[i++] = param_info<A>(offset), offset += sizeof(A)),
     ...);
    return out;
}

template <typename... A>
constexpr unsigned packed_size() {
    unsigned offset = 0;
    ((offset = (offset + alignof(A) - 1) / alignof(A) * alignof(A) + sizeof(A)), ...);
    return offset;
}

template <typename T>
inline T load(const unsigned char* p) {
    static_assert(std::is_trivially_copyable_v<T>, "kernel parameters must be trivially copyable");
    T v;
    std::memcpy(&v, p, sizeof(T));
    return v;
}

template <typename F, F Fn>
struct Trampoline;

template <typename... A, void (*Fn)(A...)>
struct Trampoline<void (*)(A...), Fn> {
    static constexpr std::array<ParamInfo, sizeof...(A)> params = layout<A...>();

    template <std::size_t... I>
    static void call(const unsigned char* buf, std::index_sequence<I...>) {
        Fn(load<A>(buf + params[I].offset)...);
    }
    static void invoke(const unsigned char* buf) { call(buf, std::index_sequence_for<A...>{}); }

    static constexpr KernelEntry entry(const char* name) {
        return KernelEntry{name, static_cast<unsigned>(sizeof...(A)),
                           sizeof...(A) ? params.data() : nullptr, packed_size<A...>(), &invoke};
    }
};

}  // namespace detail
}  // namespace vigil_emu

#define VIGIL_EMU_KERNEL(fn) \
    ::vigil_emu::detail::Trampoline<decltype(&fn), &fn>::entry(#fn),
