//! Issue 2 acceptance: the CPU backend reproduces the TFLite float oracle on every frame
//! of the three shared fixtures (relative L2 <= 1e-4, same top-1).

mod common;
use common::*;

fn check(model_rel: &str, fixture_name: &str, threads: usize) {
    let m = model(model_rel);
    let fx = fixture(fixture_name);
    let (oracle, classes) = fx.logits("float_oracle").expect("float_oracle logits");
    assert_eq!(classes, m.classes());
    let mut e = engine(&m, threads);
    let got = run_single(&mut e, &fx);
    let mut worst = 0.0f64;
    for i in 0..fx.len() {
        let (g, o) = (
            &got[i * classes..(i + 1) * classes],
            &oracle[i * classes..(i + 1) * classes],
        );
        let err = rel_l2(g, o);
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
