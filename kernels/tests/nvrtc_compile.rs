//! NVRTC compile check of every CUDA source — needs libnvrtc only (no driver, no GPU), so
//! it runs on CI. It FAILS on any compile error (printing NVRTC's log) and skips, with a
//! printed notice, only when libnvrtc itself cannot be loaded.
//!
//! Setup (no CUDA toolkit needed; see `vigil_kernels::cuda::nvrtc` for the lookup rules):
//! ```sh
//! python3 -m venv /opt/cuda-rt
//! /opt/cuda-rt/bin/pip install nvidia-cuda-nvrtc-cu12==12.9.86 nvidia-cuda-runtime-cu12==12.9.79
//! NV=$(/opt/cuda-rt/bin/python -c 'import nvidia, os; print(os.path.dirname(nvidia.__path__[0]))')/nvidia
//! export LD_LIBRARY_PATH="$NV/cuda_nvrtc/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
//! export VIGIL_CUDA_INCLUDE="$NV/cuda_runtime/include"   # optional: also found next to the nvrtc lib
//! cargo test -p vigil-kernels --test nvrtc_compile
//! ```

use vigil_kernels::cuda::nvrtc;

/// Targets CI checks: Ampere (A100), Ada (L4/L40), Hopper (H100), plus Turing to keep the
/// pre-Ampere fallback path of `pointwise_f16` compiling, and a PTX target.
const ARCHS: &[&str] = &["sm_75", "sm_80", "sm_86", "sm_89", "sm_90", "compute_80"];

#[test]
fn kernels_compile_with_nvrtc() {
    let version = match nvrtc::nvrtc_available() {
        Ok(v) => v,
        Err(e) => {
            eprintln!("SKIP: libnvrtc cannot be loaded: {e}");
            return;
        }
    };
    let include = match nvrtc::find_include_dir() {
        Ok(dir) => dir,
        Err(e) => panic!("NVRTC is present but cuda_fp16.h is not: {e}"),
    };
    eprintln!(
        "NVRTC {}.{}, include dir {}",
        version.0,
        version.1,
        include.display()
    );
    match nvrtc::nvrtc_check(ARCHS) {
        Ok(images) => {
            for c in &images {
                eprintln!(
                    "{}: {} bytes of {}; log: {}",
                    c.arch,
                    c.image.len(),
                    if c.is_cubin { "CUBIN" } else { "PTX" },
                    nvrtc::log_or_empty(&c.log)
                );
                assert!(!c.image.is_empty(), "{}: empty image", c.arch);
            }
        }
        Err(e) => panic!("NVRTC compile failed:\n{e}"),
    }
}

/// A source with an error must come back as `KernelError::Compile` with the log naming
/// the error (guards against a check that silently passes).
#[test]
fn nvrtc_reports_compile_errors_with_log() {
    if let Err(e) = nvrtc::nvrtc_available() {
        eprintln!("SKIP: libnvrtc cannot be loaded: {e}");
        return;
    }
    let err = nvrtc::compile_source(
        "extern \"C\" __global__ void broken_f32() { undefined_symbol(); }",
        "sm_80",
    )
    .expect_err("a broken source must not compile");
    let msg = err.to_string();
    assert!(
        msg.contains("undefined_symbol"),
        "log must name the error, got: {msg}"
    );
}

#[test]
fn target_selection_prefers_cubin() {
    if let Err(e) = nvrtc::nvrtc_available() {
        eprintln!("SKIP: libnvrtc cannot be loaded: {e}");
        return;
    }
    let archs = nvrtc::supported_archs().expect("supported archs");
    assert!(
        archs.contains(&80) && archs.contains(&90),
        "NVRTC archs {archs:?}"
    );
    assert_eq!(nvrtc::target_for(8, 0).expect("target"), "sm_80");
    assert_eq!(nvrtc::target_for(9, 0).expect("target"), "sm_90");
}
