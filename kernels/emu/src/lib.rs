//! # vigil-cuda-emu — an emulated CUDA driver for tests (never a device)
//!
//! Vigil's CUDA backend has to run, whole, in every CI run on machines without a GPU. This
//! crate builds — from the project's own sources — a shared library that exports the CUDA
//! driver API entry points cudarc and the engine use (`libcuda.so`, SONAME `libcuda.so`)
//! and executes the SAME `kernels/cuda/*.cu` sources compiled for the host, and installs it
//! as the process's CUDA driver when no real one can be loaded. NVRTC still compiles every
//! kernel for real; the emulator checks that the loaded image (PTX or CUBIN) declares the
//! same kernels with the same parameters as its host build.
//!
//! What the emulated device does (the C++ sources in `kernels/emu/cpp`, each file opens
//! with its design):
//! - identifies itself as `Vigil CUDA emulator (CPU, not a GPU)`, compute capability 8.0
//!   (the tensor-core `mma.sync` path runs, emulated from the PTX fragment layout;
//!   `VIGIL_EMU_SM=75` builds an sm_75 device for the kernels' pre-Ampere paths), and
//!   prints an "EMULATED CUDA driver" line to stderr on `cuInit` (`VIGIL_EMU_QUIET=1`
//!   silences it);
//! - runs each CUDA thread on a fiber, `__syncthreads` and warp collectives as real
//!   barriers, independent blocks on all cores (`VIGIL_EMU_THREADS`);
//! - executes stream work in order when the host synchronises, so a missing
//!   synchronisation reads stale data every time;
//! - checks memory like a sanitizer: every allocation in its own pages behind guard pages,
//!   red zones verified after each kernel, freed memory made inaccessible and never reused,
//!   every copy and kernel pointer argument checked against the allocation table — a
//!   violation aborts the process with a report naming the kernel/copy, the thread, the
//!   pointer and the allocation;
//! - counts launches, graph nodes and bytes per direction ([`Counters`]).
//!
//! A race mode ([`race_check`]) builds every kernel with ThreadSanitizer and runs each at
//! small sizes, one OS thread per CUDA thread.
//!
//! Where it is tested: `kernels/emu/tests/driver_api.rs` (driver semantics, ABI against
//! cudarc), `kernels/emu/tests/sanitizer.rs` (each memory misuse aborts with its report),
//! `kernels/tests/{gpu_twins,emu_images,emu_race}.rs` and the engine's `cuda_*` tests.
//!
//! Main items: [`install`] (call it first in every GPU test), [`install_emulator`] (tests
//! of the emulator itself), [`Driver`], [`counters`] /
//! [`stream_counters`] / [`reset_counters`], [`build`] / [`Variant`], [`race_check`],
//! [`EmuError`]. The `vigil-cuda-emu` binary (`lib-dir`, `race`) serves
//! `scripts/emulated-gpu.sh`, which runs any command (e.g. `vigil`) on the emulator.

mod build;
mod counters;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};

/// glibc's RTLD_NOLOAD (libloading does not export it): only return an already loaded library.
pub(crate) const RTLD_NOLOAD: std::ffi::c_int = 0x0004;

pub use build::{build, build_root, kernel_names, Variant};
pub use counters::{counters, reset_counters, stream_counters, Counters, FIELDS as COUNTER_FIELDS};

/// Everything that can go wrong while building or installing the emulator.
#[derive(Debug, thiserror::Error)]
pub enum EmuError {
    #[error("cannot run the C++ compiler `{cxx}` to build the emulated CUDA driver: {why} — install g++ (bash scripts/setup.sh does) or set CXX")]
    Compiler { cxx: String, why: String },
    #[error("building the emulated CUDA driver failed ({what}):\n{log}")]
    Build { what: String, log: String },
    #[error("emulated CUDA driver: cannot {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot load the emulated CUDA driver {path}: {why}")]
    Load { path: PathBuf, why: String },
    #[error("VIGIL_CUDA_DRIVER=real but no CUDA driver can be loaded (tried {tried:?})")]
    NoRealDriver { tried: Vec<String> },
    #[error("VIGIL_CUDA_DRIVER={0:?} is not one of auto, emulated, real")]
    BadMode(String),
    #[error("the race check could not run: {0}")]
    Race(String),
}

/// The CUDA driver this process uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Driver {
    /// A real NVIDIA driver (`library` is the name it was loaded by).
    Real { library: String },
    /// The emulator: built here and loaded from `library`, or provided by the environment
    /// (LD_LIBRARY_PATH, as `scripts/emulated-gpu.sh` does).
    Emulated { library: PathBuf },
}

impl Driver {
    pub fn is_emulated(&self) -> bool {
        matches!(self, Driver::Emulated { .. })
    }
}

impl std::fmt::Display for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Driver::Real { library } => write!(f, "real NVIDIA driver ({library})"),
            Driver::Emulated { library } => write!(
                f,
                "EMULATED CUDA driver (vigil-cuda-emu, CPU, not a GPU) from {}",
                library.display()
            ),
        }
    }
}

/// Make a CUDA driver available to this process, preferring a real one.
///
/// `VIGIL_CUDA_DRIVER` chooses: `auto` (default) uses a loadable real `libcuda` and
/// otherwise builds (if stale) and loads the emulator; `emulated` always uses the emulator;
/// `real` requires the real driver. The emulator is loaded by absolute path with
/// RTLD_NOW|RTLD_GLOBAL; its SONAME is `libcuda.so`, which glibc matches when cudarc later
/// opens `libcuda.so`, so cudarc gets the emulator. Call this before anything touches CUDA
/// (cudarc loads the driver once per process). Idempotent; the first outcome is kept.
pub fn install() -> Result<&'static Driver, EmuError> {
    let mode = std::env::var("VIGIL_CUDA_DRIVER").unwrap_or_else(|_| "auto".into());
    installed(mode)
}

/// [`install`] the emulator whatever `VIGIL_CUDA_DRIVER` says and whether or not a real
/// driver exists: for tests of the emulator itself (its error codes, memory checks,
/// counters), which mean nothing on a GPU. Fails if this process already uses a real
/// driver.
pub fn install_emulator() -> Result<&'static Driver, EmuError> {
    let d = installed("emulated".into())?;
    if !d.is_emulated() {
        return Err(EmuError::Load {
            path: build_root(),
            why: format!("this process already uses the {d}"),
        });
    }
    Ok(d)
}

fn installed(mode: String) -> Result<&'static Driver, EmuError> {
    static DRIVER: OnceLock<Result<Driver, String>> = OnceLock::new();
    let r = DRIVER.get_or_init(|| install_once(&mode).map_err(|e| e.to_string()));
    match r {
        Ok(d) => Ok(d),
        Err(e) => Err(EmuError::Load {
            path: build_root(),
            why: e.clone(),
        }),
    }
}

fn install_once(mode: &str) -> Result<Driver, EmuError> {
    match mode {
        "auto" | "" => {
            if let Some(d) = probe_existing() {
                return Ok(d);
            }
            load_emulator()
        }
        "emulated" => {
            if let Some(d @ Driver::Emulated { .. }) = probe_loaded() {
                return Ok(d);
            }
            load_emulator()
        }
        "real" => match probe_existing() {
            Some(d @ Driver::Real { .. }) => Ok(d),
            _ => Err(EmuError::NoRealDriver {
                tried: cudarc::get_lib_name_candidates("cuda"),
            }),
        },
        other => Err(EmuError::BadMode(other.to_string())),
    }
}

/// A driver already loaded in this process (no new loading).
fn probe_loaded() -> Option<Driver> {
    counters::loaded_emulator().map(|_| Driver::Emulated {
        library: PathBuf::from("libcuda.so (already loaded)"),
    })
}

/// The first libcuda the dynamic loader finds under cudarc's names: real, or an emulator
/// put on the search path by the environment.
fn probe_existing() -> Option<Driver> {
    for name in cudarc::get_lib_name_candidates("cuda") {
        // SAFETY: loading libcuda runs no initialisation that cudarc would not run anyway.
        let Ok(lib) = (unsafe { Library::open(Some(&name), RTLD_NOW) }) else {
            continue;
        };
        // SAFETY: a symbol lookup has no side effects.
        let emulated = unsafe { lib.get::<*const ()>(b"vigilEmuVersion\0") }.is_ok();
        std::mem::forget(lib); // keep it loaded for cudarc
        return Some(if emulated {
            Driver::Emulated {
                library: PathBuf::from(name),
            }
        } else {
            Driver::Real { library: name }
        });
    }
    None
}

fn load_emulator() -> Result<Driver, EmuError> {
    let path = build(Variant::Driver)?;
    // SAFETY: the library is our own build; loading it only registers its symbols (its
    // static constructors do nothing with side effects beyond this process).
    let ours = unsafe { Library::open(Some(&path), RTLD_NOW | RTLD_GLOBAL) }.map_err(|e| {
        EmuError::Load {
            path: path.clone(),
            why: e.to_string(),
        }
    })?;
    // cudarc opens "libcuda.so" by name: it must get this library, not another one.
    // SAFETY: RTLD_NOLOAD only returns an already loaded library.
    let by_name = unsafe { Library::open(Some("libcuda.so"), RTLD_NOW | RTLD_NOLOAD) };
    // SAFETY: symbol lookups only.
    let same = by_name.as_ref().ok().and_then(|l| unsafe {
        let a = l.get::<*const ()>(b"cuInit\0").ok()?.into_raw();
        let b = ours.get::<*const ()>(b"cuInit\0").ok()?.into_raw();
        Some(a == b)
    });
    if same != Some(true) {
        return Err(EmuError::Load {
            path,
            why: "the dynamic loader does not resolve `libcuda.so` to it (SONAME match failed)"
                .into(),
        });
    }
    std::mem::forget(ours);
    if let Ok(l) = by_name {
        std::mem::forget(l);
    }
    Ok(Driver::Emulated { library: path })
}

/// The outcome of [`race_check`].
#[derive(Debug)]
pub struct RaceOutcome {
    /// The harness exited 0 and ThreadSanitizer reported nothing.
    pub clean: bool,
    /// Its stdout and stderr (the ThreadSanitizer reports, if any).
    pub output: String,
    /// The command that ran.
    pub command: String,
}

/// Build the race variant (ThreadSanitizer) if stale and run every kernel at small sizes
/// with one OS thread per CUDA thread; TSan reports any pair of accesses a missing barrier
/// leaves unordered. `filter` limits the run to kernels whose name contains it.
pub fn race_check(filter: Option<&str>) -> Result<RaceOutcome, EmuError> {
    let exe = build(Variant::Race)?;
    let mut cmd = Command::new(&exe);
    if let Some(f) = filter {
        cmd.arg(f);
    }
    // halt_on_error=0: report every race; exitcode=66: a report fails the run.
    const TSAN_OPTIONS: &str =
        "halt_on_error=0 exitcode=66 report_signal_unsafe=0 second_deadlock_stack=1";
    cmd.env("TSAN_OPTIONS", TSAN_OPTIONS);
    let run = |cmd: &mut Command| -> Result<(std::process::ExitStatus, String), EmuError> {
        let out = cmd
            .output()
            .map_err(|e| EmuError::Race(format!("{}: {e}", exe.display())))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok((out.status, text))
    };
    let (mut status, mut output) = run(&mut cmd)?;
    // ThreadSanitizer (GCC 12) cannot start under some high-entropy ASLR layouts: retry
    // with address randomisation off for this one process.
    if output.contains("unexpected memory mapping") {
        let mut again = Command::new("setarch");
        again.arg(std::env::consts::ARCH).arg("-R").arg(&exe);
        if let Some(f) = filter {
            again.arg(f);
        }
        again.env("TSAN_OPTIONS", TSAN_OPTIONS);
        (status, output) = run(&mut again)?;
        cmd = again;
    }
    Ok(RaceOutcome {
        clean: status.success() && !output.contains("ThreadSanitizer"),
        output,
        command: format!("{:?}", cmd),
    })
}
