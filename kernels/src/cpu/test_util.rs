//! Test helpers shared by the CPU twins' tests: a seeded generator, a tolerance check,
//! 1- and 3-thread pools, every activation, a naive windowed reduction, and the ISA levels
//! a twin test runs (saying which it skipped).
#![allow(dead_code)]

use crate::cpu::Isa;
use crate::{Activation, Conv2dGeom};

pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next()).collect()
    }
}

pub fn close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-5 + 1e-5 * w.abs(),
            "{what}[{i}]: got {g}, want {w}"
        );
    }
}

pub fn pools() -> Vec<rayon::ThreadPool> {
    [1, 3]
        .iter()
        .map(|&n| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap()
        })
        .collect()
}

pub const ACTS: [Activation; 5] = [
    Activation::None,
    Activation::Relu,
    Activation::Relu6,
    Activation::HardSwish,
    Activation::Swish,
];

pub fn naive_window(
    x: &[f32],
    batch: usize,
    g: &Conv2dGeom,
    c: usize,
    tap: &dyn Fn(usize, usize, usize) -> f32,
    mean: bool,
) -> Vec<f32> {
    let mut y = vec![0.0; batch * g.out_pixels() * c];
    for b in 0..batch {
        for oy in 0..g.out_h {
            for ox in 0..g.out_w {
                for ch in 0..c {
                    let (mut a, mut n) = (0.0f64, 0);
                    for ky in 0..g.k_h {
                        for kx in 0..g.k_w {
                            let iy = (oy * g.stride + ky) as isize - g.pad_top as isize;
                            let ix = (ox * g.stride + kx) as isize - g.pad_left as isize;
                            if iy >= 0
                                && ix >= 0
                                && (iy as usize) < g.in_h
                                && (ix as usize) < g.in_w
                            {
                                let v =
                                    x[((b * g.in_h + iy as usize) * g.in_w + ix as usize) * c + ch];
                                a += (v * tap(ky, kx, ch)) as f64;
                                n += 1;
                            }
                        }
                    }
                    y[((b * g.out_h + oy) * g.out_w + ox) * c + ch] = if mean {
                        (a / n as f64) as f32
                    } else {
                        a as f32
                    };
                }
            }
        }
    }
    y
}

/// The instruction-set levels a twin test runs: every one this CPU supports (whatever
/// `VIGIL_CPU_ISA` says — each path is forced explicitly). For each level the CPU lacks,
/// says on stderr that `what` skipped it, so a run on a machine without AVX-512 shows
/// which paths it did not test.
pub fn isas_under_test(what: &str) -> Vec<Isa> {
    for isa in Isa::ALL.into_iter().filter(|i| !i.is_supported()) {
        eprintln!(
            "skipped: {what} at {isa} — this CPU has only {}",
            Isa::detected()
        );
    }
    Isa::supported().collect()
}
