//! The CUDA backend end to end on the three shared fixtures — fp32 mode relative L2 <=
//! 1e-4 per frame against the TFLite float oracle, fp16 <= 1e-2 per frame with top-1
//! agreement >= 99% — plus batch invariance (a stream inside a batch of 17 equals it
//! alone, with CUDA graphs and eagerly), a reused slot starting from zero state, and
//! streams joining and leaving between steps.
//!
//! They run on device 0 of whatever driver `vigil_cuda_emu::install` provides: a real GPU
//! when its driver loads, else the emulated driver (kernels/cuda on the CPU) — so every
//! CI run executes the whole CUDA backend. A device that cannot be set up is a failure.
#![cfg(feature = "cuda")]

mod common;
mod cuda_common;
use common::*;
use cuda_common::*;

use vigil_kernels::Precision;

const FIXTURES: [(&str, &str); 3] = [
    (K600, "k600__arm_wrestling_5fps.safetensors"),
    (K600, "k600__carving_ice_172.safetensors"),
    (CATTLE, "cattle7__carving_ice_172.safetensors"),
];

fn oracle_check(precision: Precision, bound: f64, top1: f64) {
    for (model_rel, fixture_name) in FIXTURES {
        let m = model(model_rel);
        let mut e = cuda_engine(&m, precision, true);
        let fx = fixture(fixture_name);
        let (oracle, c) = fx.logits("float_oracle").expect("oracle");
        let got = run_single(&mut e, &fx);
        let (mut worst, mut agree) = (0.0f64, 0usize);
        for i in 0..fx.len() {
            let (g, o) = (&got[i * c..(i + 1) * c], &oracle[i * c..(i + 1) * c]);
            let err = rel_l2(g, o);
            worst = worst.max(err);
            assert!(
                err <= bound,
                "{fixture_name} {precision:?} frame {i}: relative L2 {err:.3e} > {bound:e}"
            );
            agree += (argmax(g) == argmax(o)) as usize;
        }
        let rate = agree as f64 / fx.len() as f64;
        eprintln!(
            "{fixture_name} {precision:?} on {}: {} frames, worst rel L2 {worst:.2e}, top-1 agreement {:.1}%",
            e.device_name(),
            fx.len(),
            rate * 100.0
        );
        assert!(
            rate >= top1,
            "{fixture_name} {precision:?}: top-1 agreement {rate} < {top1}"
        );
    }
}

#[test]
fn cuda_fp32_matches_float_oracle() {
    oracle_check(Precision::F32, 1e-4, 1.0);
}

#[test]
fn cuda_fp16_matches_float_oracle() {
    oracle_check(Precision::F16, 1e-2, 0.99);
}

/// Arm wrestling as stream 5 of a batch of 17 (bucket 24: 7 padding rows on scratch slots
/// with graphs) equals the single-stream run over its first 20 frames (every stream
/// buffer's ring wraps several times; the emulated device runs a batch-of-17 step in about
/// a second, so the whole clip would cost CI a minute per path); then a closed session's
/// slot, reused, starts from zero state.
fn batch_of_17_then_reuse(graphs: bool) {
    let m = model(K600);
    let mut e = cuda_engine(&m, Precision::F32, graphs);
    let fx = fixture("k600__arm_wrestling_5fps.safetensors");
    let other = fixture("k600__carving_ice_172.safetensors");
    let c = m.classes();
    let alone = run_single(&mut e, &fx);
    let (sessions, worst) = batch_of_17_frames(&mut e, &fx, &other, &alone, 1e-5, 20);
    eprintln!(
        "batch of 17 on {} (graphs: {graphs}): worst relative error {worst:.2e}",
        e.device_name()
    );
    e.close_session(sessions[3]).unwrap();
    let fresh = e.open_session().unwrap();
    assert_eq!(fresh.slot(), sessions[3].slot(), "the freed slot is reused");
    let mut out = vec![0.0; c];
    for i in 0..5 {
        e.step(&[fresh], &[fx.frame(i)], &mut out).unwrap();
        let err = rel_l2(&out, &alone[i * c..(i + 1) * c]);
        assert!(err <= 1e-5, "reused slot, frame {i}: {err:.3e}");
    }
}

#[test]
fn cuda_batch_of_17_equals_single_stream_with_graphs() {
    batch_of_17_then_reuse(true);
}

#[test]
fn cuda_batch_of_17_equals_single_stream_eager() {
    batch_of_17_then_reuse(false);
}

/// Streams join and leave between steps (batches of 1, 2 and 3 in changing order), a
/// closed stream's slot is reused from zero, and a reset session replays like a new one.
#[test]
fn cuda_streams_join_and_leave_between_steps() {
    let m = model(K600);
    let fx = fixture("k600__arm_wrestling_5fps.safetensors");
    let other = fixture("k600__carving_ice_172.safetensors");
    let c = m.classes();
    let mut e = cuda_engine(&m, Precision::F32, true);
    let reference = run_single(&mut e, &fx);
    let steps = 20;
    let a = e.open_session().unwrap();
    let b = e.open_session().unwrap();
    let mut out = vec![0.0; 3 * c];
    for i in 0..10 {
        e.step(&[a, b], &[fx.frame(i), other.frame(i)], &mut out[..2 * c])
            .unwrap();
        let err = rel_l2(&out[..c], &reference[i * c..(i + 1) * c]);
        assert!(err <= 1e-5, "a, frame {i}: {err:.3e}");
    }
    // b leaves; n joins in b's slot and starts from zero; a goes on; then x joins too.
    e.close_session(b).unwrap();
    let n = e.open_session().unwrap();
    assert_eq!(n.slot(), b.slot(), "the freed slot is reused");
    let mut x = None;
    for i in 0..steps {
        let ai = 10 + i;
        if i == 5 {
            x = Some(e.open_session().unwrap());
        }
        let (ids, frames): (Vec<_>, Vec<&[u8]>) = match x {
            Some(x) if i % 2 == 0 => (
                vec![x, n, a],
                vec![other.frame(i), fx.frame(i), fx.frame(ai)],
            ),
            Some(x) => (
                vec![a, x, n],
                vec![fx.frame(ai), other.frame(i), fx.frame(i)],
            ),
            None => (vec![n, a], vec![fx.frame(i), fx.frame(ai)]),
        };
        let rows = ids.len();
        e.step(&ids, &frames, &mut out[..rows * c]).unwrap();
        let pos = |id| ids.iter().position(|&s| s == id).unwrap();
        let (pn, pa) = (pos(n), pos(a));
        let err_n = rel_l2(&out[pn * c..(pn + 1) * c], &reference[i * c..(i + 1) * c]);
        let err_a = rel_l2(&out[pa * c..(pa + 1) * c], &reference[ai * c..(ai + 1) * c]);
        assert!(err_n <= 1e-5, "reused slot, frame {i}: {err_n:.3e}");
        assert!(
            err_a <= 1e-5,
            "a, frame {ai} with batch {ids:?}: {err_a:.3e}"
        );
    }
    // a leaves, x stays; a reset session replays like a new one.
    e.close_session(a).unwrap();
    e.reset_session(n).unwrap();
    for i in 0..5 {
        e.step(&[n], &[fx.frame(i)], &mut out[..c]).unwrap();
        let err = rel_l2(&out[..c], &reference[i * c..(i + 1) * c]);
        assert!(err <= 1e-5, "after reset, frame {i}: {err:.3e}");
    }
    assert_eq!(e.session_count(), 2);
}
