//! Branch-free float32 [`exp`] and [`erf`] that LLVM vectorizes inside the transformer
//! kernels' loops (the `f32::exp` of `std` calls libm one value at a time).
//!
//! `exp` is a Cody–Waite range reduction with the Cephes `expf` polynomial (≤ 2 ulp on
//! `[-87, 88]`, inputs clamped to that range); `erf` is Abramowitz & Stegun 7.1.26
//! (1.5e-7 in exact arithmetic, ≤ 5e-7 evaluated in float32), enough for `gelu(x) = x/2 (1 + erf(x/√2))` in float32.

const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;

/// `e^x`, clamped to the finite, normal range: `exp(x < -87.3) ≈ 1.2e-38`, not 0.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // max/min rather than clamp: the same for finite inputs, and it vectorizes
    #[allow(clippy::manual_clamp)]
    let x = x.max(-87.3).min(88.3);
    let n = (x * LOG2E + 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 0.166_666_65)
        * r
        + 0.5;
    let y = p * r * r + r + 1.0;
    // 2^n without a float-to-int conversion (Rust's saturating `as i32` does not
    // vectorize): n + 127 + 2^23 holds the biased exponent in its low mantissa bits
    let biased = n + (127.0 + 8_388_608.0);
    y * f32::from_bits(biased.to_bits() << 23)
}

/// The error function, `|erf(x) - exact| ≤ 5e-7`.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = ((((1.061_405_4 * t - 1.453_152) * t + 1.421_413_8) * t - 0.284_496_74) * t
        + 0.254_829_6)
        * t;
    let y = 1.0 - poly * exp(-a * a);
    if x < 0.0 {
        -y
    } else {
        y
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp() {
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = (x as f64).exp();
            let got = exp(x) as f64;
            assert!(
                ((got - want) / want).abs() <= 2.5e-7,
                "exp({x}) = {got}, want {want}"
            );
            x += 0.01237;
        }
        assert!(exp(-1e30) >= 0.0 && exp(-1e30) < 1e-37);
        assert!(exp(1e30).is_finite());
    }

    #[test]
    fn erf_matches_series() {
        // erf by its Maclaurin series in f64 (converges fast for |x| <= 3)
        let series = |x: f64| {
            let (mut term, mut sum, mut n) = (x, x, 0.0);
            while term.abs() > 1e-17 {
                n += 1.0;
                term *= -x * x / n;
                sum += term / (2.0 * n + 1.0);
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        };
        let mut x = -3.0f32;
        while x <= 3.0 {
            let want = series(x as f64);
            assert!(
                (erf(x) as f64 - want).abs() <= 5e-7, // 1.5e-7 + float32 evaluation
                "erf({x}) = {}, want {want}",
                erf(x)
            );
            x += 0.0173;
        }
        assert_eq!(erf(10.0), 1.0);
        assert_eq!(erf(-10.0), -1.0);
    }
}
