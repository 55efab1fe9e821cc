//! Run-time compilation of the CUDA sources with NVRTC — no GPU or driver needed.
//!
//! Main items: [`SOURCES`] (every `kernels/cuda/*.cu{,h}` file, embedded with
//! `include_str!`), [`Compiled`] (one compiled image: a CUBIN for `sm_XY`, PTX for
//! `compute_XY`, plus NVRTC's log), [`compile_only`] / [`nvrtc_check`] (what CI runs),
//! [`compile_cached`] (compile once per target per process), [`nvrtc_available`],
//! [`supported_archs`] and [`find_include_dir`].
//!
//! All sources are compiled as ONE program: a generated root that `#include`s each `.cu`
//! file, with every file handed to NVRTC as a named in-memory header, so the compile log
//! names the real file and line (`pointwise.cu(87): error: ...`).
//!
//! # How libnvrtc is found (cudarc 0.19, feature `dynamic-loading`)
//! cudarc never links CUDA libraries; the first NVRTC call `dlopen`s the library by bare
//! file name (`libloading::Library::new`), trying in order `libnvrtc.so`, `libnvrtc64.so`,
//! `libnvrtc64_12.so`, `libnvrtc64_128.so`, ... and finally `libnvrtc.so.12`,
//! `libnvrtc.so.11`, `.10`, `.9`, `libnvrtc.so.1` (see `cudarc::get_lib_name_candidates`;
//! the `cuda-12080` feature fixes major/minor to 12/8). A bare name is resolved by the
//! dynamic loader: `DT_RPATH` of the executable, `LD_LIBRARY_PATH`, `DT_RUNPATH`, the
//! `ld.so.cache` (`/etc/ld.so.conf.d`), then `/lib` and `/usr/lib`. With the pip wheel
//! `nvidia-cuda-nvrtc-cu12`, put `<site-packages>/nvidia/cuda_nvrtc/lib` (it holds
//! `libnvrtc.so.12` and the `libnvrtc-builtins.so.12.*` it loads in turn) on
//! `LD_LIBRARY_PATH`. If no candidate loads, cudarc *panics*; every entry point here
//! checks [`cudarc::nvrtc::sys::is_culib_present`] first and runs NVRTC under
//! `catch_unwind`, turning that into [`KernelError::NvrtcUnavailable`]. libcuda (the
//! driver) is found the same way (`libcuda.so`, ..., `libcuda.so.1`) but is never
//! touched here.
//!
//! # Where `cuda_fp16.h` comes from
//! [`find_include_dir`]: `$VIGIL_CUDA_INCLUDE`; else, for each `LD_LIBRARY_PATH` entry
//! `D`, `D/../../cuda_runtime/include` (the pip wheel layout: `nvidia/cuda_nvrtc/lib` next
//! to `nvidia/cuda_runtime/include` from `nvidia-cuda-runtime-cu12`) and `D/../include`
//! (toolkit layout); else `$CUDA_HOME/include`, `$CUDA_PATH/include`,
//! `/usr/local/cuda/include`.

use std::collections::HashMap;
use std::ffi::{c_char, c_int, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::nvrtc::result::NvrtcError;
use cudarc::nvrtc::sys;

use super::KernelError;

/// Every CUDA source of the crate, `(file name, text)`. The headers (`common.cuh`,
/// `gemm.cuh`) first; each `.cu` file is one translation-unit fragment of the single
/// NVRTC program.
pub const SOURCES: &[(&str, &str)] = &[
    ("common.cuh", include_str!("../../cuda/common.cuh")),
    ("gemm.cuh", include_str!("../../cuda/gemm.cuh")),
    ("preprocess.cu", include_str!("../../cuda/preprocess.cu")),
    ("conv2d.cu", include_str!("../../cuda/conv2d.cu")),
    ("pointwise.cu", include_str!("../../cuda/pointwise.cu")),
    ("window2d.cu", include_str!("../../cuda/window2d.cu")),
    ("temporal.cu", include_str!("../../cuda/temporal.cu")),
    ("reduce.cu", include_str!("../../cuda/reduce.cu")),
    ("linear.cu", include_str!("../../cuda/linear.cu")),
    ("layernorm.cu", include_str!("../../cuda/layernorm.cu")),
    ("attention.cu", include_str!("../../cuda/attention.cu")),
];

/// Name NVRTC gives the generated root source in its log.
pub const PROGRAM_NAME: &str = "vigil_kernels.cu";

/// Every kernel the program must export, `{op}_{dtype}`.
pub const KERNEL_NAMES: &[&str] = &[
    "preprocess_u8_f16",
    "preprocess_u8_f32",
    "conv2d_f16",
    "conv2d_f32",
    "pointwise_f16",
    "pointwise_f32",
    "depthwise2d_f16",
    "depthwise2d_f32",
    "avg_pool2d_f16",
    "avg_pool2d_f32",
    "temporal_causal_f16",
    "temporal_causal_f32",
    "spatial_mean_f16",
    "spatial_mean_f32",
    "cumulative_pool_f16",
    "cumulative_pool_f32",
    "channel_gate_f16",
    "channel_gate_f32",
    "linear_f16",
    "linear_f32",
    "layer_norm_f16",
    "layer_norm_f32",
    "attention_f16",
    "attention_f32",
];

/// One NVRTC compile of the whole program for one target.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// `sm_XY` (image is a CUBIN) or `compute_XY` (image is NUL-terminated PTX).
    pub arch: String,
    /// The image, loadable with `cuModuleLoadData` (cudarc `Ptx::from_binary`).
    pub image: Vec<u8>,
    /// True when `image` is a CUBIN.
    pub is_cubin: bool,
    /// NVRTC's program log (warnings; empty when clean).
    pub log: String,
    /// The options NVRTC was given.
    pub options: Vec<String>,
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else {
        "panic while loading libnvrtc".to_string()
    }
}

/// Run `f` (which calls into NVRTC) with cudarc's "library not found" / "missing symbol"
/// panics turned into [`KernelError::NvrtcUnavailable`].
fn guarded<R>(f: impl FnOnce() -> Result<R, KernelError>) -> Result<R, KernelError> {
    catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|p| Err(KernelError::NvrtcUnavailable(panic_message(p))))
}

/// Check that libnvrtc can be loaded and return its version `(major, minor)`.
pub fn nvrtc_available() -> Result<(i32, i32), KernelError> {
    // SAFETY: `is_culib_present` only tries to dlopen candidate names; it has no
    // preconditions.
    let present = catch_unwind(|| unsafe { sys::is_culib_present() }).unwrap_or(false);
    if !present {
        return Err(KernelError::NvrtcUnavailable(format!(
            "no loadable libnvrtc among {:?} (LD_LIBRARY_PATH={:?})",
            cudarc::get_lib_name_candidates("nvrtc"),
            std::env::var("LD_LIBRARY_PATH").unwrap_or_default()
        )));
    }
    guarded(|| {
        let (mut major, mut minor): (c_int, c_int) = (0, 0);
        // SAFETY: both pointers are valid for writes of one c_int.
        unsafe { sys::nvrtcVersion(&mut major, &mut minor) }.result()?;
        Ok((major, minor))
    })
}

/// The SM versions (e.g. `[75, 80, 86, 89, 90, ...]`) this NVRTC can target.
pub fn supported_archs() -> Result<Vec<i32>, KernelError> {
    nvrtc_available()?;
    guarded(|| {
        let mut n: c_int = 0;
        // SAFETY: `n` is valid for one c_int write.
        unsafe { sys::nvrtcGetNumSupportedArchs(&mut n) }.result()?;
        let mut archs = vec![0 as c_int; n.max(0) as usize];
        // SAFETY: `archs` has room for the `n` entries NVRTC writes.
        unsafe { sys::nvrtcGetSupportedArchs(archs.as_mut_ptr()) }.result()?;
        Ok(archs)
    })
}

/// Locate a directory containing `cuda_fp16.h` (see the module docs for the order).
pub fn find_include_dir() -> Result<PathBuf, KernelError> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os("VIGIL_CUDA_INCLUDE") {
        candidates.push(PathBuf::from(dir));
    }
    if let Some(paths) = std::env::var_os("LD_LIBRARY_PATH") {
        for d in std::env::split_paths(&paths) {
            candidates.push(d.join("../../cuda_runtime/include"));
            candidates.push(d.join("../include"));
        }
    }
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Some(dir) = std::env::var_os(var) {
            candidates.push(Path::new(&dir).join("include"));
        }
    }
    candidates.push(PathBuf::from("/usr/local/cuda/include"));
    for c in &candidates {
        if c.join("cuda_fp16.h").is_file() {
            return Ok(c.canonicalize().unwrap_or_else(|_| c.clone()));
        }
    }
    Err(KernelError::IncludeNotFound {
        searched: candidates
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

fn c_string(what: &str, s: &str) -> Result<CString, KernelError> {
    CString::new(s).map_err(|_| KernelError::Compile {
        program: PROGRAM_NAME.into(),
        arch: String::new(),
        status: format!("{what} contains a NUL byte"),
        options: Vec::new(),
        log: String::new(),
    })
}

fn c_buf_to_string(buf: &[c_char]) -> String {
    let bytes: Vec<u8> = buf
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Owns an `nvrtcProgram` and destroys it on drop.
struct Program(sys::nvrtcProgram);

impl Drop for Program {
    fn drop(&mut self) {
        // SAFETY: self.0 came from a successful nvrtcCreateProgram and is destroyed once.
        // A failure to destroy only leaks the program, so the status is ignored.
        let _ = unsafe { sys::nvrtcDestroyProgram(&mut self.0) };
    }
}

fn nvrtc(r: sys::nvrtcResult) -> Result<(), KernelError> {
    r.result().map_err(|e: NvrtcError| KernelError::Nvrtc(e))
}

/// Extra NVRTC options from `$VIGIL_NVRTC_OPTIONS` (whitespace-separated), e.g.
/// `--ptxas-options=-v` to get register and spill counts in the log.
fn extra_options() -> Vec<String> {
    std::env::var("VIGIL_NVRTC_OPTIONS")
        .map(|s| s.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// Compile every source for `arch` (`"sm_80"` → CUBIN, `"compute_80"` → PTX) with
/// `cuda_fp16.h` from `include`. Needs libnvrtc only — no driver, no GPU.
pub fn compile_for(arch: &str, include: &Path) -> Result<Compiled, KernelError> {
    compile_for_with(arch, include, &[])
}

/// [`compile_for`] with extra NVRTC options after the standard ones, e.g.
/// `["--ptxas-options=-v"]` for ptxas's per-kernel resource report in the log (see
/// [`super::ptxas`]).
pub fn compile_for_with(
    arch: &str,
    include: &Path,
    extra: &[&str],
) -> Result<Compiled, KernelError> {
    let root: String = SOURCES
        .iter()
        .filter(|(name, _)| name.ends_with(".cu"))
        .map(|(name, _)| format!("#include \"{name}\"\n"))
        .collect();
    compile_program(&root, arch, include, extra)
}

/// Compile one standalone source (every file of [`SOURCES`] is available to it as an
/// `#include`) for `arch`. Used to test error reporting and to try out kernels.
pub fn compile_source(src: &str, arch: &str) -> Result<Compiled, KernelError> {
    nvrtc_available()?;
    compile_program(src, arch, &find_include_dir()?, &[])
}

fn compile_program(
    root: &str,
    arch: &str,
    include: &Path,
    extra: &[&str],
) -> Result<Compiled, KernelError> {
    nvrtc_available()?;
    let is_cubin = arch.starts_with("sm_");
    if !is_cubin && !arch.starts_with("compute_") {
        return Err(KernelError::Compile {
            program: PROGRAM_NAME.into(),
            arch: arch.into(),
            status: "arch must be sm_XY or compute_XY".into(),
            options: Vec::new(),
            log: String::new(),
        });
    }
    let root_c = c_string("root source", root)?;
    let name_c = c_string("program name", PROGRAM_NAME)?;
    let header_texts = SOURCES
        .iter()
        .map(|(_, text)| c_string("source", text))
        .collect::<Result<Vec<_>, _>>()?;
    let header_names = SOURCES
        .iter()
        .map(|(name, _)| c_string("source name", name))
        .collect::<Result<Vec<_>, _>>()?;
    let header_ptrs: Vec<*const c_char> = header_texts.iter().map(|c| c.as_ptr()).collect();
    let name_ptrs: Vec<*const c_char> = header_names.iter().map(|c| c.as_ptr()).collect();
    let options = [
        format!("--gpu-architecture={arch}"),
        format!("--include-path={}", include.display()),
        "--std=c++17".to_string(),
        "-lineinfo".to_string(),
    ]
    .into_iter()
    .chain(extra.iter().map(|o| o.to_string()))
    .chain(extra_options())
    .collect::<Vec<_>>();
    let options_c = options
        .iter()
        .map(|o| c_string("option", o))
        .collect::<Result<Vec<_>, _>>()?;
    let option_ptrs: Vec<*const c_char> = options_c.iter().map(|c| c.as_ptr()).collect();

    guarded(|| {
        let mut raw: sys::nvrtcProgram = std::ptr::null_mut();
        // SAFETY: all strings are NUL-terminated and outlive the program (they live until
        // the end of this function, after `Program` is dropped); the header arrays have
        // SOURCES.len() entries each.
        nvrtc(unsafe {
            sys::nvrtcCreateProgram(
                &mut raw,
                root_c.as_ptr(),
                name_c.as_ptr(),
                header_ptrs.len() as c_int,
                header_ptrs.as_ptr(),
                name_ptrs.as_ptr(),
            )
        })?;
        let prog = Program(raw);
        // SAFETY: prog.0 is a live program; option_ptrs holds option_ptrs.len() valid
        // C strings.
        let status = unsafe {
            sys::nvrtcCompileProgram(prog.0, option_ptrs.len() as c_int, option_ptrs.as_ptr())
        };
        let log = {
            let mut size = 0usize;
            // SAFETY: prog.0 is live; `size` is valid for a write.
            nvrtc(unsafe { sys::nvrtcGetProgramLogSize(prog.0, &mut size) })?;
            let mut buf = vec![0 as c_char; size.max(1)];
            // SAFETY: `buf` holds the `size` bytes NVRTC writes.
            nvrtc(unsafe { sys::nvrtcGetProgramLog(prog.0, buf.as_mut_ptr()) })?;
            c_buf_to_string(&buf)
        };
        if let Err(e) = status.result() {
            return Err(KernelError::Compile {
                program: PROGRAM_NAME.into(),
                arch: arch.into(),
                status: format!("{e:?}"),
                options: options.clone(),
                log,
            });
        }
        let mut size = 0usize;
        let image = if is_cubin {
            // SAFETY: prog.0 is live and compiled for a real arch; `size` is writable.
            nvrtc(unsafe { sys::nvrtcGetCUBINSize(prog.0, &mut size) })?;
            let mut buf = vec![0u8; size];
            // SAFETY: `buf` holds the `size` bytes NVRTC writes.
            nvrtc(unsafe { sys::nvrtcGetCUBIN(prog.0, buf.as_mut_ptr() as *mut c_char) })?;
            buf
        } else {
            // SAFETY: prog.0 is live and compiled; `size` is writable.
            nvrtc(unsafe { sys::nvrtcGetPTXSize(prog.0, &mut size) })?;
            let mut buf = vec![0u8; size];
            // SAFETY: `buf` holds the `size` bytes (NUL included) NVRTC writes.
            nvrtc(unsafe { sys::nvrtcGetPTX(prog.0, buf.as_mut_ptr() as *mut c_char) })?;
            buf
        };
        Ok(Compiled {
            arch: arch.into(),
            image,
            is_cubin,
            log,
            options: options.clone(),
        })
    })
}

/// Compile every source for `arch` with the include dir from [`find_include_dir`].
/// No driver or GPU is touched.
pub fn compile_only(arch: &str) -> Result<Compiled, KernelError> {
    nvrtc_available()?;
    compile_for(arch, &find_include_dir()?)
}

/// [`compile_only`] for each arch (e.g. `["sm_80", "sm_90"]`), checking that every kernel
/// of [`KERNEL_NAMES`] is present in each image. CI runs this.
pub fn nvrtc_check(archs: &[&str]) -> Result<Vec<Compiled>, KernelError> {
    let mut out = Vec::with_capacity(archs.len());
    for arch in archs {
        let c = compile_only(arch)?;
        let missing: Vec<&str> = KERNEL_NAMES
            .iter()
            .copied()
            .filter(|k| !c.image.windows(k.len()).any(|w| w == k.as_bytes()))
            .collect();
        if !missing.is_empty() {
            return Err(KernelError::Compile {
                program: PROGRAM_NAME.into(),
                arch: (*arch).into(),
                status: format!("kernels missing from the image: {missing:?}"),
                options: c.options.clone(),
                log: c.log.clone(),
            });
        }
        out.push(c);
    }
    Ok(out)
}

/// Compile for `arch` once per process; later calls return the cached image.
pub fn compile_cached(arch: &str) -> Result<Arc<Compiled>, KernelError> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Compiled>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut map = cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = map.get(arch) {
        return Ok(c.clone());
    }
    let c = Arc::new(compile_only(arch)?);
    map.insert(arch.to_string(), c.clone());
    Ok(c)
}

/// The target for a device of compute capability `major.minor`: `sm_XY` (CUBIN, no
/// driver JIT, so a newer NVRTC works with an older 12.x driver) when this NVRTC supports
/// it, else PTX for the newest supported `compute_XY` below it (JIT by the driver).
pub fn target_for(major: i32, minor: i32) -> Result<String, KernelError> {
    let cc = major * 10 + minor;
    let supported = supported_archs()?;
    if supported.contains(&cc) {
        return Ok(format!("sm_{cc}"));
    }
    match supported.iter().copied().filter(|&a| a <= cc).max() {
        Some(a) => Ok(format!("compute_{a}")),
        None => Err(KernelError::UnsupportedArch {
            major,
            minor,
            supported,
        }),
    }
}

/// Format NVRTC's log for printing (empty → "(empty)").
pub fn log_or_empty(log: &str) -> &str {
    if log.trim().is_empty() {
        "(empty)"
    } else {
        log
    }
}
