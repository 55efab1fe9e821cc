//! Shared helpers for the emulator's own tests: the emulated device (forced, even on a
//! machine with a GPU — these tests are about the emulator), and PTX images that declare
//! project kernels. The emulator runs the host-compiled kernel of that name; the PTX only
//! has to declare the entry and its parameters (the real NVRTC output is exercised by the
//! kernels crate's tests).
#![allow(dead_code)]

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaFunction, CudaModule};
use cudarc::nvrtc::Ptx;

/// The emulated device's primary context.
pub fn emulated_context() -> Arc<CudaContext> {
    vigil_cuda_emu::install_emulator().unwrap_or_else(|e| panic!("{e}"));
    let ctx = CudaContext::new(0).expect("emulated device 0");
    // One stream per test; no cross-stream event tracking (like the engine).
    // SAFETY: called before any buffer exists in this test's use of the context.
    unsafe { ctx.disable_event_tracking() };
    ctx
}

/// A PTX module (as NVRTC would emit it for `.target`) declaring `entries`, each
/// `(name, parameter types, .maxntid)`.
pub fn ptx(version: &str, target: &str, entries: &[(&str, &[&str], Option<u32>)]) -> String {
    let mut s = format!(".version {version}\n.target {target}\n.address_size 64\n\n");
    for (name, params, maxntid) in entries {
        s += &format!(".visible .entry {name}(\n");
        let list: Vec<String> = params
            .iter()
            .enumerate()
            .map(|(i, t)| format!("\t.param {t} {name}_param_{i}"))
            .collect();
        s += &list.join(",\n");
        s += "\n)\n";
        if let Some(m) = maxntid {
            s += &format!(".maxntid {m}, 1, 1\n");
        }
        s += "{\n\tret;\n}\n\n";
    }
    s
}

/// `preprocess_u8_f32(const u8* frames, float* out, long long n)`.
pub const PREPROCESS_F32: (&str, &[&str], Option<u32>) =
    ("preprocess_u8_f32", &[".u64", ".u64", ".u64"], None);

/// `pointwise_f16(x, w, bias, residual, gate, gate_scale, gate_p, y, M, N, K, act)`,
/// launch bounds 128.
pub const POINTWISE_F16: (&str, &[&str], Option<u32>) = (
    "pointwise_f16",
    &[
        ".u64", ".u64", ".u64", ".u64", ".u64", ".f32", ".u32", ".u64", ".u32", ".u32", ".u32",
        ".u32",
    ],
    Some(128),
);

/// Load `src` (PTX text) into `ctx`.
pub fn load(
    ctx: &Arc<CudaContext>,
    src: &str,
) -> Result<Arc<CudaModule>, cudarc::driver::DriverError> {
    ctx.load_module(Ptx::from_src(src))
}

/// The emulated `preprocess_u8_f32` kernel.
pub fn preprocess_f32(ctx: &Arc<CudaContext>) -> CudaFunction {
    let m = load(ctx, &ptx("8.0", "sm_80", &[PREPROCESS_F32])).expect("load");
    m.load_function("preprocess_u8_f32").expect("function")
}
