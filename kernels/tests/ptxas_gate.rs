//! The static resource gate (issue 7, point 6): every kernel compiled to real SASS for
//! sm_80, sm_86, sm_89 and sm_90 by NVRTC's ptxas, whose `-v` report must show no register
//! spill, no local-memory stack frame, and a launch block that can be resident. Needs
//! libnvrtc only (scripts/setup.sh installs it; no driver, no GPU), so it runs in CI.
//!
//! It FAILS naming kernel, arch and numbers. It skips, with a printed notice, only when
//! the environment was never set up (no loadable libnvrtc and no `VIGIL_CUDA_INCLUDE`);
//! after `scripts/setup.sh` a missing NVRTC is a failure.
//!
//! The per-kernel table (registers, shared memory, occupancy) is printed to stderr:
//! `cargo test -p vigil-kernels --test ptxas_gate -- --nocapture`; the same table comes
//! from `cargo run -p vigil-examples --bin ptxas_report` (what BENCHMARKS.md shows).

use vigil_kernels::cuda::nvrtc;
use vigil_kernels::cuda::occupancy::ARCHS;
use vigil_kernels::cuda::ptxas::{self, ResourceReport};

/// `true` when NVRTC is usable; `false` (skip) when the environment was never set up.
fn nvrtc_ready() -> bool {
    match nvrtc::nvrtc_available() {
        Ok(_) => true,
        Err(e) if std::env::var_os("VIGIL_CUDA_INCLUDE").is_some() => {
            panic!("VIGIL_CUDA_INCLUDE is set (setup ran) but NVRTC cannot be loaded: {e}")
        }
        Err(e) => {
            eprintln!("SKIP: libnvrtc cannot be loaded and setup has not run: {e}");
            false
        }
    }
}

/// One report per architecture, compiled in parallel (each compile is ~1-2 s of ptxas).
fn reports(extra: &[&str]) -> Vec<ResourceReport> {
    let names: Vec<String> = ARCHS.iter().map(|a| a.name()).collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = names
            .iter()
            .map(|arch| s.spawn(move || ptxas::resource_report(arch, extra)))
            .collect();
        handles
            .into_iter()
            .zip(&names)
            .map(|(h, arch)| match h.join() {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => panic!("{arch}: {e}"),
                Err(_) => panic!("{arch}: the compile thread panicked"),
            })
            .collect()
    })
}

#[test]
fn no_kernel_spills_or_uses_a_stack_frame() {
    if !nvrtc_ready() {
        return;
    }
    let reports = reports(&[]);
    eprintln!(
        "ptxas resource report (compiler output, not a measurement):\n{}",
        ptxas::markdown_table(&reports)
    );
    let violations: Vec<String> = reports.iter().flat_map(|r| r.violations()).collect();
    assert!(
        violations.is_empty(),
        "static resource gate: {} violation(s)\n  {}\n(options: {:?})",
        violations.len(),
        violations.join("\n  "),
        reports
            .first()
            .map(|r| r.options.clone())
            .unwrap_or_default()
    );
    for r in &reports {
        assert_eq!(
            r.kernels.len(),
            nvrtc::KERNEL_NAMES.len(),
            "{}: ptxas reported kernels that the program does not declare: {:?}",
            r.arch.name(),
            r.kernels
                .iter()
                .map(|k| k.resources.name.as_str())
                .collect::<Vec<_>>()
        );
    }
}

/// The gate must be able to fail: with the register budget forced down to ptxas's floor
/// (24 on sm_80), the kernels without `__launch_bounds__` spill, and the gate names them.
#[test]
fn gate_catches_a_forced_spill() {
    if !nvrtc_ready() {
        return;
    }
    let r = ptxas::resource_report("sm_80", &["--maxrregcount=24"]).expect("compile");
    let violations = r.violations();
    assert!(
        violations
            .iter()
            .any(|v| v.contains("sm_80") && v.contains("bytes spill stores")),
        "a forced spill went unnoticed; violations: {violations:?}"
    );
}
