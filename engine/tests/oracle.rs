//! Issue 2 acceptance: the CPU backend reproduces the TFLite float oracle on every frame
//! of the three shared fixtures (relative L2 <= 1e-4, same top-1) — at every instruction
//! set (`VIGIL_CPU_ISA=avx2 cargo test …` forces a lower one). Issue 10: bf16 within its
//! error bound on every fixture (skipped without AVX-512 BF16).

mod common;
use common::*;
use vigil_engine::{Engine, EngineConfig};

/// Frame by frame: index, the engine's logits, the oracle's, and their relative L2 error.
fn per_frame<'a>(
    got: &'a [f32],
    oracle: &'a [f32],
    classes: usize,
) -> impl Iterator<Item = (usize, &'a [f32], &'a [f32], f64)> {
    assert_eq!(
        got.len(),
        oracle.len(),
        "one row of logits per oracle frame"
    );
    got.chunks(classes)
        .zip(oracle.chunks(classes))
        .enumerate()
        .map(|(i, (g, o))| (i, g, o, rel_l2(g, o)))
}

fn check(model_rel: &str, fixture_name: &str, threads: usize) {
    let m = model(model_rel);
    let fx = fixture(fixture_name);
    let (oracle, classes) = fx.logits("float_oracle").expect("float_oracle logits");
    assert_eq!(classes, m.classes());
    let mut e = engine(&m, threads);
    let got = run_single(&mut e, &fx);
    let mut worst = 0.0f64;
    for (i, g, o, err) in per_frame(&got, oracle, classes) {
        worst = worst.max(err);
        assert!(
            err <= 1e-4,
            "{fixture_name} frame {i}: relative L2 error {err:.3e} > 1e-4"
        );
        assert_eq!(
            argmax(g),
            argmax(o),
            "{fixture_name} frame {i}: top-1 differs"
        );
    }
    eprintln!(
        "{fixture_name}: {} frames, worst relative L2 {worst:.2e}",
        fx.len()
    );
}

/// The head's dense layers run on their int8 weights (exact, so the oracle checks above
/// cover that path): both exports stored them as int8 per channel.
#[test]
fn head_dense_layers_keep_the_exports_int8_weights() {
    for (rel, want) in [
        (K600, &["head/dense1/w", "head/dense2/w"][..]),
        (CATTLE, &["head/dense1/w", "head/dense2/w"][..]),
    ] {
        let m = model(rel);
        let b = vigil_engine::cpu::CpuBackend::new(m, 1, 1).expect("cpu backend");
        let int8 = b.int8_weights();
        for w in want {
            assert!(int8.contains(w), "{rel}: {w} not int8 (int8: {int8:?})");
        }
    }
}

#[test]
fn k600_arm_wrestling_matches_float_oracle() {
    check(K600, "k600__arm_wrestling_5fps.safetensors", 0);
}

#[test]
fn k600_carving_ice_matches_float_oracle() {
    check(K600, "k600__carving_ice_172.safetensors", 0);
}

#[test]
fn cattle7_full_variant_matches_float_oracle() {
    check(CATTLE, "cattle7__carving_ice_172.safetensors", 0);
}

#[test]
fn single_thread_matches_float_oracle() {
    check(K600, "k600__arm_wrestling_5fps.safetensors", 1);
}

/// Issue 10: `--precision bf16` on the CPU (AVX-512 BF16) against the float oracle on
/// every shared fixture. bf16 rounds each 1x1 GEMM's inputs to 8 significant bits, so
/// logits move by ~1e-2 relative (measured worst 9.3e-3; bound 2e-2 per frame). A
/// top-1 may only differ where that error can explain it: the oracle's top-2 margin below
/// twice the frame's error times its logits' norm (cattle7 has frames whose margin is
/// 0.04% of the norm, far inside any bf16 error), and top-1 agreement must be >= 99% on
/// every fixture (the acceptance; measured: K600 100% and 100%, cattle7 130/131).
fn check_bf16(model_rel: &str, fixture_name: &str, min_agreement: f64) {
    use vigil_engine::ComputePrecision;
    use vigil_kernels::cpu::Isa;
    if !Isa::active().has_bf16() {
        eprintln!(
            "skipped: this CPU (at {}) has no AVX-512 BF16",
            Isa::active()
        );
        return;
    }
    let m = model(model_rel);
    let fx = fixture(fixture_name);
    let (oracle, classes) = fx.logits("float_oracle").expect("float_oracle logits");
    let mut e = Engine::new(
        m.clone(),
        &EngineConfig {
            threads: 2,
            precision: ComputePrecision::Bf16,
            ..Default::default()
        },
    )
    .expect("bf16 engine");
    assert!(e.device_name().contains("bf16"), "{}", e.device_name());
    let got = run_single(&mut e, &fx);
    let (mut worst, mut agree) = (0.0f64, 0usize);
    for (i, g, o, err) in per_frame(&got, oracle, classes) {
        worst = worst.max(err);
        assert!(
            err <= 2e-2,
            "{fixture_name} bf16 frame {i}: relative L2 {err:.3e} > 2e-2"
        );
        if argmax(g) == argmax(o) {
            agree += 1;
            continue;
        }
        let mut sorted: Vec<f32> = o.to_vec();
        sorted.sort_by(|a, b| b.total_cmp(a));
        let norm = o.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
        let margin = (sorted[0] - sorted[1]) as f64 / norm;
        assert!(
            margin < 2.0 * err,
            "{fixture_name} bf16 frame {i}: top-1 differs with a margin {margin:.2e} of the \
             logits' norm, more than twice the error {err:.2e} explains"
        );
    }
    let rate = agree as f64 / fx.len() as f64;
    eprintln!(
        "{fixture_name} bf16: {} frames, top-1 agreement {:.1}%, worst relative L2 {worst:.2e}",
        fx.len(),
        100.0 * rate
    );
    assert!(
        rate >= min_agreement,
        "{fixture_name} bf16: top-1 agreement {rate:.3} < {min_agreement}"
    );
}

#[test]
fn bf16_k600_carving_ice_matches_float_oracle_top1() {
    check_bf16(K600, "k600__carving_ice_172.safetensors", 0.99);
}

#[test]
fn bf16_k600_arm_wrestling_matches_float_oracle_top1() {
    check_bf16(K600, "k600__arm_wrestling_5fps.safetensors", 0.99);
}

#[test]
fn bf16_cattle7_matches_float_oracle_top1() {
    check_bf16(CATTLE, "cattle7__carving_ice_172.safetensors", 0.99);
}
