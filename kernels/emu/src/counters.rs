//! [`Counters`]: what the emulated device executed — kernel launches, graph launches and
//! nodes, bytes copied host→device, device→host and device→device — read from the loaded
//! emulator (`vigilEmuCounters`, `vigilEmuStreamCounters`). Counted when work executes,
//! process-wide and per stream, so a test can assert the design of a step: one graph
//! launch, host→device bytes = frames + slot indices + frame counts, device→host bytes =
//! logits, and nothing else crossing the bus.

use std::ffi::c_void;

use cudarc::driver::sys::CUstream;
use libloading::os::unix::{Library, RTLD_NOW};

use crate::RTLD_NOLOAD;

/// Mirror of the C struct `vigil_emu::CountersSnapshot` (kernels/emu/cpp/counters.h): same
/// fields, same order (checked by the `counter_fields_match_the_emulator` test).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Kernels executed, eager and as graph nodes.
    pub kernel_launches: u64,
    /// Kernels executed from `cuLaunchKernel` outside a graph.
    pub eager_kernel_launches: u64,
    /// `cuGraphLaunch` executed.
    pub graph_launches: u64,
    /// Graph nodes executed (all kinds).
    pub graph_nodes: u64,
    /// Kernel nodes executed inside graphs.
    pub graph_kernel_nodes: u64,
    pub htod_copies: u64,
    pub htod_bytes: u64,
    pub dtoh_copies: u64,
    pub dtoh_bytes: u64,
    pub dtod_copies: u64,
    pub dtod_bytes: u64,
    pub memsets: u64,
    pub memset_bytes: u64,
    /// Kernel pointer arguments that point into pinned host memory (zero-copy traffic
    /// the copy counters would not see).
    pub host_memory_kernel_args: u64,
    /// Thread blocks executed.
    pub blocks: u64,
    /// CUDA threads executed.
    pub threads: u64,
    /// Host synchronisations (stream, event, context).
    pub synchronizations: u64,
    /// Device allocations made.
    pub allocations: u64,
    /// Device frees executed.
    pub frees: u64,
    /// Graphs instantiated.
    pub graphs_instantiated: u64,
}

/// The field names in declaration order (for the layout check against the C side).
pub const FIELDS: &[&str] = &[
    "kernel_launches",
    "eager_kernel_launches",
    "graph_launches",
    "graph_nodes",
    "graph_kernel_nodes",
    "htod_copies",
    "htod_bytes",
    "dtoh_copies",
    "dtoh_bytes",
    "dtod_copies",
    "dtod_bytes",
    "memsets",
    "memset_bytes",
    "host_memory_kernel_args",
    "blocks",
    "threads",
    "synchronizations",
    "allocations",
    "frees",
    "graphs_instantiated",
];

impl Counters {
    /// `self - earlier`, field by field (what happened in between).
    pub fn since(&self, earlier: &Counters) -> Counters {
        let (a, b) = (self.as_array(), earlier.as_array());
        let mut out = [0u64; FIELDS.len()];
        for i in 0..FIELDS.len() {
            out[i] = a[i].wrapping_sub(b[i]);
        }
        Counters::from_array(out)
    }

    fn as_array(&self) -> [u64; FIELDS.len()] {
        // SAFETY: Counters is repr(C) and consists of exactly FIELDS.len() u64 fields.
        unsafe { std::mem::transmute_copy(self) }
    }

    fn from_array(a: [u64; FIELDS.len()]) -> Counters {
        // SAFETY: as in as_array; every bit pattern is a valid u64.
        unsafe { std::mem::transmute_copy(&a) }
    }
}

type CountersFn = unsafe extern "C" fn(*mut Counters, usize);
type StreamCountersFn = unsafe extern "C" fn(CUstream, *mut Counters, usize) -> i32;
type ResetFn = unsafe extern "C" fn();

/// The emulator this process loaded (as libcuda), if any. Looks through the names cudarc
/// opens, without loading anything new.
pub(crate) fn loaded_emulator() -> Option<Library> {
    let names =
        std::iter::once("libcuda.so".to_string()).chain(cudarc::get_lib_name_candidates("cuda"));
    for name in names {
        // SAFETY: RTLD_NOLOAD only returns an already loaded library; nothing is initialised.
        let Ok(lib) = (unsafe { Library::open(Some(&name), RTLD_NOW | RTLD_NOLOAD) }) else {
            continue;
        };
        // SAFETY: looking up a symbol has no side effects.
        if unsafe { lib.get::<*const c_void>(b"vigilEmuVersion\0") }.is_ok() {
            return Some(lib);
        }
    }
    None
}

/// Process-wide counters of the loaded emulator; `None` with a real driver (or none).
pub fn counters() -> Option<Counters> {
    let lib = loaded_emulator()?;
    // SAFETY: the symbol is vigilEmuCounters(CountersSnapshot*, size_t), which writes at
    // most `size` bytes to a struct laid out like `Counters`.
    unsafe {
        let f = lib.get::<CountersFn>(b"vigilEmuCounters\0").ok()?;
        let mut c = Counters::default();
        f(&mut c, std::mem::size_of::<Counters>());
        Some(c)
    }
}

/// Counters of one stream (cudarc: `CudaStream::cu_stream()`); `None` with a real driver
/// or an unknown stream.
pub fn stream_counters(stream: CUstream) -> Option<Counters> {
    let lib = loaded_emulator()?;
    // SAFETY: vigilEmuStreamCounters(CUstream, CountersSnapshot*, size_t) validates the
    // handle and writes at most `size` bytes.
    unsafe {
        let f = lib
            .get::<StreamCountersFn>(b"vigilEmuStreamCounters\0")
            .ok()?;
        let mut c = Counters::default();
        (f(stream, &mut c, std::mem::size_of::<Counters>()) == 0).then_some(c)
    }
}

/// Zero every counter (process-wide and per stream). No-op with a real driver.
pub fn reset_counters() {
    if let Some(lib) = loaded_emulator() {
        // SAFETY: vigilEmuResetCounters takes no arguments.
        unsafe {
            if let Ok(f) = lib.get::<ResetFn>(b"vigilEmuResetCounters\0") {
                f();
            }
        }
    }
}
