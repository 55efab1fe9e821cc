//! The GELU family of transformer MLP activations, applied in place over a GEMM's output:
//! [`gelu_in_place`] with a [`Gelu`] variant (CLIP's `quick_gelu`, exact erf `gelu`, and
//! the tanh approximation). Rows are split across the caller's rayon pool.

use rayon::prelude::*;

use super::isa::simd_dispatch;
use super::mathfn::{erf, exp};
use super::tasks::task_rows;
use super::Isa;

/// A GELU-type activation, named as in Hugging Face configs' `hidden_act`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gelu {
    /// `quick_gelu`: `x * sigmoid(1.702 x)` (OpenAI CLIP, X-CLIP).
    Quick,
    /// `gelu`: `x/2 * (1 + erf(x/√2))`.
    Erf,
    /// `gelu_new` / `gelu_pytorch_tanh` / `gelu_fast`:
    /// `x/2 * (1 + tanh(√(2/π) (x + 0.044715 x³)))`.
    Tanh,
}

impl Gelu {
    /// The variant for a Hugging Face `hidden_act` name.
    pub fn from_hf_name(name: &str) -> Option<Gelu> {
        match name {
            "quick_gelu" => Some(Gelu::Quick),
            "gelu" => Some(Gelu::Erf),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Some(Gelu::Tanh),
            _ => None,
        }
    }

    /// Apply to one value (the reference the slice kernel is tested against).
    #[inline(always)]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Gelu::Quick => x / (1.0 + exp(-1.702 * x)),
            Gelu::Erf => 0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2)),
            Gelu::Tanh => {
                // tanh(u) = 1 - 2 / (e^{2u} + 1), so 1 + tanh(u) = 2 - 2 / (e^{2u} + 1)
                let u = 0.797_884_6 * (x + 0.044_715 * x * x * x);
                x * (1.0 - 1.0 / (exp(2.0 * u) + 1.0))
            }
        }
    }
}

simd_dispatch! {
    fn apply_rows(xs: &mut [f32], act: Gelu) {
        match act {
            Gelu::Quick => xs.iter_mut().for_each(|x| *x = Gelu::Quick.apply(*x)),
            Gelu::Erf => xs.iter_mut().for_each(|x| *x = Gelu::Erf.apply(*x)),
            Gelu::Tanh => xs.iter_mut().for_each(|x| *x = Gelu::Tanh.apply(*x)),
        }
    }
}

/// `xs[i] = act(xs[i])` for every element, split across the caller's pool.
pub fn gelu_in_place(xs: &mut [f32], act: Gelu) {
    let chunk = task_rows(xs.len(), 4096);
    xs.par_chunks_mut(chunk)
        .for_each(|c| apply_rows(Isa::active(), c, act));
}

#[cfg(test)]
mod tests {
    //! Against the float64 definitions, outputs computed in 1- and 3-thread pools.
    use super::*;
    use crate::cpu::test_util::*;

    fn reference(act: Gelu, x: f64) -> f64 {
        match act {
            Gelu::Quick => x / (1.0 + (-1.702 * x).exp()),
            // erf by its series; |x| <= 8 here and the terms are summed in f64
            Gelu::Erf => {
                let z = x / std::f64::consts::SQRT_2;
                let erf = if z.abs() > 5.0 {
                    z.signum()
                } else {
                    let (mut term, mut sum, mut n) = (z, z, 0.0);
                    while term.abs() > 1e-18 * sum.abs().max(1e-300) {
                        n += 1.0;
                        term *= -z * z / n;
                        sum += term / (2.0 * n + 1.0);
                    }
                    sum * 2.0 / std::f64::consts::PI.sqrt()
                };
                0.5 * x * (1.0 + erf)
            }
            Gelu::Tanh => {
                let u = (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x);
                0.5 * x * (1.0 + u.tanh())
            }
        }
    }

    #[test]
    fn gelu_matches_float64_definitions() {
        let mut r = Rng(11);
        for pool in pools() {
            for act in [Gelu::Quick, Gelu::Erf, Gelu::Tanh] {
                let x: Vec<f32> = (0..10_007).map(|_| r.next() * 8.0).collect();
                let mut y = x.clone();
                pool.install(|| gelu_in_place(&mut y, act));
                for (i, (&g, &xv)) in y.iter().zip(&x).enumerate() {
                    let want = reference(act, xv as f64);
                    assert!(
                        (g as f64 - want).abs() <= 1e-6 + 1e-6 * want.abs(),
                        "{act:?}({xv}) [{i}] = {g}, want {want}"
                    );
                }
            }
        }
        assert_eq!(Gelu::from_hf_name("quick_gelu"), Some(Gelu::Quick));
        assert_eq!(Gelu::from_hf_name("relu"), None);
    }
}
