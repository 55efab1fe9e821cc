//! Batch invariance and session life cycle: a stream's logits do not depend on which
//! other streams share its batch; sessions open, reset, close and reuse slots cleanly.

mod common;
use common::*;

/// Issue 2 acceptance: arm wrestling in a batch of 17 streams fed different frames equals
/// the single-stream run (relative error <= 1e-5).
#[test]
fn arm_wrestling_in_a_batch_of_17_equals_single_stream() {
    let m = model(K600);
    let fx = fixture("k600__arm_wrestling_5fps.safetensors");
    let other = fixture("k600__carving_ice_172.safetensors");
    let mut single = engine(&m, 0);
    let alone = run_single(&mut single, &fx);

    let mut e = engine(&m, 0);
    let (_, worst) = batch_of_17(&mut e, &fx, &other, &alone, 1e-5);
    eprintln!("batch of 17: worst relative error {worst:.2e}");
}

/// Streams join and leave mid-run; a reused slot starts from zero state, and a reset
/// session replays exactly like a fresh one.
#[test]
fn sessions_join_leave_reset_and_reuse_slots() {
    let m = model(K600);
    let fx = fixture("k600__arm_wrestling_5fps.safetensors");
    let c = m.classes();
    let mut e = engine(&m, 2);
    let reference = run_single(&mut e, &fx);

    let a = e.open_session().unwrap();
    let b = e.open_session().unwrap();
    let mut out = vec![0.0; 2 * c];
    for i in 0..10 {
        e.step(&[a, b], &[fx.frame(i), fx.frame(i)], &mut out)
            .unwrap();
    }
    // close b; a new session takes its slot and must start from zero
    e.close_session(b).unwrap();
    let n = e.open_session().unwrap();
    assert_eq!(n.slot(), b.slot(), "the freed slot is reused");
    assert!(
        e.step(&[b], &[fx.frame(0)], &mut out[..c]).is_err(),
        "a closed session id stays invalid"
    );
    for i in 0..fx.len() {
        // n runs from frame 0 alongside a (which is at frame 10 + i)
        let ai = (10 + i).min(fx.len() - 1);
        e.step(&[n, a], &[fx.frame(i), fx.frame(ai)], &mut out)
            .unwrap();
        let err = rel_l2(&out[..c], &reference[i * c..(i + 1) * c]);
        assert!(err <= 1e-5, "reused slot, frame {i}: error {err:.3e}");
    }
    // reset a: it must replay like a fresh session
    e.reset_session(a).unwrap();
    for i in 0..5 {
        e.step(&[a], &[fx.frame(i)], &mut out[..c]).unwrap();
        let err = rel_l2(&out[..c], &reference[i * c..(i + 1) * c]);
        assert!(err <= 1e-5, "after reset, frame {i}: error {err:.3e}");
    }
    assert_eq!(e.session_count(), 2);
    // memory report: A0 carries ~0.67 M values per stream
    let bytes = e.state_bytes_per_session();
    assert!(
        (2_000_000..4_000_000).contains(&bytes),
        "state bytes per session {bytes}"
    );
}

#[test]
fn a_stream_may_appear_once_per_batch() {
    let m = model(K600);
    let fx = fixture("k600__arm_wrestling_5fps.safetensors");
    let mut e = engine(&m, 1);
    let a = e.open_session().unwrap();
    let mut out = vec![0.0; 2 * m.classes()];
    let err = e
        .step(&[a, a], &[fx.frame(0), fx.frame(1)], &mut out)
        .unwrap_err();
    assert!(err.to_string().contains("appears twice"), "{err}");
}

/// Issue 7: the max batch a scheduler should form is configurable; the CPU default stays
/// at 64 and a larger batch still runs.
#[test]
fn max_batch_defaults_to_the_device_and_can_be_raised() {
    use vigil_engine::{Engine, EngineConfig, DEFAULT_CPU_MAX_BATCH};
    let m = model(K600);
    assert_eq!(engine(&m, 1).max_batch(), DEFAULT_CPU_MAX_BATCH);
    let mut e = Engine::new(
        m.clone(),
        &EngineConfig {
            threads: 1,
            max_batch: 2,
            ..Default::default()
        },
    )
    .expect("engine");
    assert_eq!(e.max_batch(), 2);
    let fx = fixture("k600__arm_wrestling_5fps.safetensors");
    let s: Vec<_> = (0..3).map(|_| e.open_session().unwrap()).collect();
    let mut out = vec![0.0; 3 * m.classes()];
    e.step(&s, &[fx.frame(0); 3], &mut out)
        .expect("a batch above the cap still runs");
}
