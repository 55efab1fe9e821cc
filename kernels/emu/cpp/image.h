// image.h — reading what cuModuleLoadData is handed: NVRTC's real output, either PTX text
// (`compute_XY`) or a CUBIN (`sm_XY`, an ELF for EM_CUDA).
//
// From PTX: `.version`, `.target`, each `.entry` with its `.param` list, `.maxntid`,
// the `.shared` arrays declared in its body and whether it uses `bar.sync`.
// From a CUBIN: the SM in e_flags, each entry symbol (STT_FUNC, global, STO_CUDA_ENTRY),
// its registers (sh_info >> 24 of `.text.<name>`), barriers (sh_flags bits 20-26),
// static shared memory (`.nv.shared.<name>`), and from `.nv.info.<name>` the parameter
// ordinals/offsets/sizes (EIATTR_KPARAM_INFO), the parameter bank size
// (EIATTR_CBANK_PARAM_SIZE) and the launch bounds (EIATTR_MAX_THREADS).
//
// The module loader then checks every entry against the host-compiled registry: same
// name, same number, sizes and offsets of parameters — so the code the emulator runs is
// the code the image was compiled from, or the load fails saying why.
#pragma once

#include <string>
#include <vector>

namespace vigil_emu {

struct ImageParam {
    unsigned size;
    int offset;  ///< -1 when the image does not say (PTX: implied by order and alignment)
};

struct ImageKernel {
    std::string name;
    std::vector<ImageParam> params;
    unsigned maxntid[3] = {0, 0, 0};  ///< launch bounds (0: none)
    unsigned static_smem = 0;         ///< bytes of `__shared__` arrays
    unsigned regs = 0;                ///< registers per thread (0: unknown, PTX)
    unsigned barriers = 0;            ///< named barriers used (PTX: 1 if any bar.sync)
};

struct Image {
    bool cubin = false;
    unsigned sm = 0;                   ///< CUBIN: its SM (80); PTX: `.target sm_XY`
    unsigned ptx_major = 0, ptx_minor = 0;
    std::vector<ImageKernel> kernels;
};

enum class ImageError { None, NotAnImage, WrongArch, BadPtxVersion, Malformed };

/// Parse the image at `data` (PTX: NUL-terminated text; CUBIN: its ELF headers give the
/// size). On failure `why` says what is wrong.
ImageError parse_image(const void* data, Image* out, std::string* why);

}  // namespace vigil_emu
