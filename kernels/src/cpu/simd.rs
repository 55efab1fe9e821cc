//! [`F32Vec`]: the vector of f32 lanes the hand-written CPU kernels are generic over, with
//! one implementation per instruction-set level — [`F32x16`] (AVX-512 `__m512`), [`F32x8`]
//! (AVX2 `__m256`) and [`Portable8`] (an 8-lane array the compiler vectorizes for the
//! build target) — and [`activate`], the fused activation epilogue on a vector, one
//! instantiation per activation ([`with_act!`]).
//!
//! A vector value only exists inside a function compiled for its features (see
//! `vector_dispatch!`): creating one (`zero`, `splat`, loads) is `unsafe` and is only done
//! there, so arithmetic on an existing value is safe.

use crate::Activation;

/// A vector of `LANES` f32 values.
///
/// # Safety (for every `unsafe` method)
/// Call only inside code compiled for the implementation's target features, on a CPU
/// that has them; pointer arguments must be valid for the lanes read or written
/// (`LANES`, or `n` for the `_n` variants).
pub(crate) trait F32Vec: Copy {
    const LANES: usize;
    /// Vectors per row of a 6-row register tile that fits the register file (AVX-512's
    /// 32 registers: 4; 16 registers: 2).
    const TILE_VECTORS: usize;
    /// The same ISA's narrower vector (itself where there is none): AVX-512 CPUs that
    /// split 512-bit operations run 256-bit ones at twice the rate, which wins for
    /// 8-channel rows.
    type Half: F32Vec;
    unsafe fn zero() -> Self;
    unsafe fn splat(x: f32) -> Self;
    /// `LANES` values from `p` (unaligned).
    unsafe fn load(p: *const f32) -> Self;
    /// The first `n <= LANES` values from `p`; lanes past `n` are zero and not read.
    unsafe fn load_n(p: *const f32, n: usize) -> Self;
    /// `*p` in every lane.
    unsafe fn broadcast(p: *const f32) -> Self;
    /// `LANES` signed bytes from `p` (unaligned), each converted to f32 (exactly).
    unsafe fn load_i8(p: *const i8) -> Self;
    unsafe fn store(self, p: *mut f32);
    /// Writes the first `n <= LANES` lanes to `p`; nothing past them is touched.
    unsafe fn store_n(self, p: *mut f32, n: usize);
    /// `self * b + c` (fused where the ISA has FMA).
    fn mul_add(self, b: Self, c: Self) -> Self;
    fn add(self, b: Self) -> Self;
    fn mul(self, b: Self) -> Self;
    fn max(self, b: Self) -> Self;
    fn min(self, b: Self) -> Self;
}

/// Whether [`activate`] computes `act` on vectors (Swish needs `exp`: the kernels apply
/// it with [`Activation::apply_slice`] after storing).
pub(crate) fn vectorizes(act: Activation) -> bool {
    act != Activation::Swish
}

/// `act` as a const-generic code for [`activate`]: 1 relu, 2 relu6, 3 hard-swish, 0
/// none (and Swish, applied after the store: see [`vectorizes`]). Kernels instantiate
/// their epilogue once per code ([`with_act!`]), so it is a straight run of
/// instructions with no branch per vector.
pub(crate) fn act_code(act: Activation) -> u8 {
    match act {
        Activation::None | Activation::Swish => 0,
        Activation::Relu => 1,
        Activation::Relu6 => 2,
        Activation::HardSwish => 3,
    }
}

/// The activation of code `A` ([`act_code`]) on every lane.
///
/// # Safety
/// As [`F32Vec`]'s constructors: only inside code compiled for `V`'s features.
#[inline(always)]
pub(crate) unsafe fn activate<V: F32Vec, const A: u8>(v: V) -> V {
    // SAFETY: forwarded from this function's contract.
    unsafe {
        match A {
            1 => v.max(V::zero()),
            2 => v.max(V::zero()).min(V::splat(6.0)),
            3 => v.mul(
                v.add(V::splat(3.0))
                    .max(V::zero())
                    .min(V::splat(6.0))
                    .mul(V::splat(1.0 / 6.0)),
            ),
            _ => v,
        }
    }
}

/// `with_act!(act, f, [G..], (args..))` calls `f::<G.., A>(args..)` with
/// `A = act_code(act)`.
macro_rules! with_act {
    ($act:expr, $f:ident, [$($g:tt)*], ($($arg:expr),* $(,)?)) => {
        match $crate::cpu::simd::act_code($act) {
            1 => $f::<$($g)*, 1>($($arg),*),
            2 => $f::<$($g)*, 2>($($arg),*),
            3 => $f::<$($g)*, 3>($($arg),*),
            _ => $f::<$($g)*, 0>($($arg),*),
        }
    };
}
pub(crate) use with_act;

/// Eight lanes in a plain array: the portable fallback ([`crate::cpu::Isa::Scalar`]).
#[derive(Clone, Copy)]
pub(crate) struct Portable8([f32; 8]);

impl F32Vec for Portable8 {
    const LANES: usize = 8;
    const TILE_VECTORS: usize = 2;
    type Half = Portable8;
    #[inline(always)]
    unsafe fn zero() -> Self {
        Portable8([0.0; 8])
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        Portable8([x; 8])
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: the caller guarantees 8 readable values at p.
        unsafe { Portable8(std::ptr::read_unaligned(p as *const [f32; 8])) }
    }
    #[inline(always)]
    unsafe fn load_n(p: *const f32, n: usize) -> Self {
        let mut v = [0.0; 8];
        // SAFETY: the caller guarantees n <= 8 readable values at p.
        unsafe { std::ptr::copy_nonoverlapping(p, v.as_mut_ptr(), n.min(8)) };
        Portable8(v)
    }
    #[inline(always)]
    unsafe fn broadcast(p: *const f32) -> Self {
        // SAFETY: the caller guarantees p is readable.
        unsafe { Portable8([*p; 8]) }
    }
    #[inline(always)]
    unsafe fn load_i8(p: *const i8) -> Self {
        // SAFETY: the caller guarantees 8 readable bytes at p.
        let q = unsafe { std::ptr::read_unaligned(p as *const [i8; 8]) };
        Portable8(q.map(f32::from))
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: the caller guarantees 8 writable values at p.
        unsafe { std::ptr::write_unaligned(p as *mut [f32; 8], self.0) }
    }
    #[inline(always)]
    unsafe fn store_n(self, p: *mut f32, n: usize) {
        // SAFETY: the caller guarantees n <= 8 writable values at p.
        unsafe { std::ptr::copy_nonoverlapping(self.0.as_ptr(), p, n.min(8)) }
    }
    #[inline(always)]
    fn mul_add(self, b: Self, c: Self) -> Self {
        Portable8(std::array::from_fn(|i| self.0[i] * b.0[i] + c.0[i]))
    }
    #[inline(always)]
    fn add(self, b: Self) -> Self {
        Portable8(std::array::from_fn(|i| self.0[i] + b.0[i]))
    }
    #[inline(always)]
    fn mul(self, b: Self) -> Self {
        Portable8(std::array::from_fn(|i| self.0[i] * b.0[i]))
    }
    #[inline(always)]
    fn max(self, b: Self) -> Self {
        Portable8(std::array::from_fn(|i| self.0[i].max(b.0[i])))
    }
    #[inline(always)]
    fn min(self, b: Self) -> Self {
        Portable8(std::array::from_fn(|i| self.0[i].min(b.0[i])))
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::{mask16, F32x16, F32x8};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::F32Vec;
    use std::arch::x86_64::*;

    /// Eight lanes in a `__m256` (AVX2 + FMA).
    #[derive(Clone, Copy)]
    pub(crate) struct F32x8(__m256);

    /// Mask of the first `n` of 8 lanes, for `maskload`/`maskstore`.
    #[inline(always)]
    unsafe fn mask8(n: usize) -> __m256i {
        // SAFETY: AVX2 is present (F32Vec's contract).
        unsafe {
            _mm256_cmpgt_epi32(
                _mm256_set1_epi32(n as i32),
                _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
            )
        }
    }

    impl F32Vec for F32x8 {
        const LANES: usize = 8;
        const TILE_VECTORS: usize = 2;
        type Half = F32x8;
        #[inline(always)]
        unsafe fn zero() -> Self {
            // SAFETY: the features are present (F32Vec contract).
            unsafe { F32x8(_mm256_setzero_ps()) }
        }
        #[inline(always)]
        unsafe fn splat(x: f32) -> Self {
            // SAFETY: the features are present (F32Vec contract).
            unsafe { F32x8(_mm256_set1_ps(x)) }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            // SAFETY: the features are present and the pointer is valid (F32Vec contract).
            unsafe { F32x8(_mm256_loadu_ps(p)) }
        }
        #[inline(always)]
        unsafe fn load_n(p: *const f32, n: usize) -> Self {
            // SAFETY: the features are present and the pointer is valid (F32Vec contract).
            unsafe { F32x8(_mm256_maskload_ps(p, mask8(n))) }
        }
        #[inline(always)]
        unsafe fn broadcast(p: *const f32) -> Self {
            // SAFETY: the features are present and the pointer is valid (F32Vec contract).
            unsafe { F32x8(_mm256_broadcast_ss(&*p)) }
        }
        #[inline(always)]
        unsafe fn load_i8(p: *const i8) -> Self {
            // SAFETY: the features are present and 8 bytes are readable (F32Vec contract).
            unsafe {
                F32x8(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(
                    p as *const __m128i,
                ))))
            }
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            // SAFETY: the features are present and the pointer is valid (F32Vec contract).
            unsafe { _mm256_storeu_ps(p, self.0) }
        }
        #[inline(always)]
        unsafe fn store_n(self, p: *mut f32, n: usize) {
            // SAFETY: the features are present and the pointer is valid (F32Vec contract).
            unsafe { _mm256_maskstore_ps(p, mask8(n), self.0) }
        }
        #[inline(always)]
        fn mul_add(self, b: Self, c: Self) -> Self {
            // SAFETY: a value exists only where its features are present.
            unsafe { F32x8(_mm256_fmadd_ps(self.0, b.0, c.0)) }
        }
        #[inline(always)]
        fn add(self, b: Self) -> Self {
            // SAFETY: a value exists only where its features are present.
            unsafe { F32x8(_mm256_add_ps(self.0, b.0)) }
        }
        #[inline(always)]
        fn mul(self, b: Self) -> Self {
            // SAFETY: a value exists only where its features are present.
            unsafe { F32x8(_mm256_mul_ps(self.0, b.0)) }
        }
        #[inline(always)]
        fn max(self, b: Self) -> Self {
            // SAFETY: a value exists only where its features are present.
            unsafe { F32x8(_mm256_max_ps(self.0, b.0)) }
        }
        #[inline(always)]
        fn min(self, b: Self) -> Self {
            // SAFETY: a value exists only where its features are present.
            unsafe { F32x8(_mm256_min_ps(self.0, b.0)) }
        }
    }

    /// Sixteen lanes in a `__m512` (AVX-512 F).
    #[derive(Clone, Copy)]
    #[repr(transparent)]
    pub(crate) struct F32x16(pub(crate) __m512);

    /// Mask of the first `n <= 16` lanes.
    #[inline(always)]
    pub(crate) fn mask16(n: usize) -> __mmask16 {
        ((1u32 << n.min(16)) - 1) as __mmask16
    }

    impl F32Vec for F32x16 {
        const LANES: usize = 16;
        const TILE_VECTORS: usize = 4;
        type Half = F32x8;
        #[inline(always)]
        unsafe fn zero() -> Self {
            // SAFETY: the features are present (F32Vec contract).
            unsafe { F32x16(_mm512_setzero_ps()) }
        }
        #[inline(always)]
        unsafe fn splat(x: f32) -> Self {
            // SAFETY: the features are present (F32Vec contract).
            unsafe { F32x16(_mm512_set1_ps(x)) }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            // SAFETY: the features are present and the pointer is valid (F32Vec contract).
            unsafe { F32x16(_mm512_loadu_ps(p)) }
        }
        #[inline(always)]
        unsafe fn load_n(p: *const f32, n: usize) -> Self {
            // SAFETY: the features are present and the pointer is valid (F32Vec contract).
            unsafe { F32x16(_mm512_maskz_loadu_ps(mask16(n), p)) }
        }
        #[inline(always)]
        unsafe fn broadcast(p: *const f32) -> Self {
            // SAFETY: the features are present and the pointer is valid (F32Vec contract).
            unsafe { F32x16(_mm512_set1_ps(*p)) }
        }
        #[inline(always)]
        unsafe fn load_i8(p: *const i8) -> Self {
            // SAFETY: the features are present and 16 bytes are readable (F32Vec contract).
            unsafe {
                F32x16(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(
                    p as *const __m128i,
                ))))
            }
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            // SAFETY: the features are present and the pointer is valid (F32Vec contract).
            unsafe { _mm512_storeu_ps(p, self.0) }
        }
        #[inline(always)]
        unsafe fn store_n(self, p: *mut f32, n: usize) {
            // SAFETY: the features are present and the pointer is valid (F32Vec contract).
            unsafe { _mm512_mask_storeu_ps(p, mask16(n), self.0) }
        }
        #[inline(always)]
        fn mul_add(self, b: Self, c: Self) -> Self {
            // SAFETY: a value exists only where its features are present.
            unsafe { F32x16(_mm512_fmadd_ps(self.0, b.0, c.0)) }
        }
        #[inline(always)]
        fn add(self, b: Self) -> Self {
            // SAFETY: a value exists only where its features are present.
            unsafe { F32x16(_mm512_add_ps(self.0, b.0)) }
        }
        #[inline(always)]
        fn mul(self, b: Self) -> Self {
            // SAFETY: a value exists only where its features are present.
            unsafe { F32x16(_mm512_mul_ps(self.0, b.0)) }
        }
        #[inline(always)]
        fn max(self, b: Self) -> Self {
            // SAFETY: a value exists only where its features are present.
            unsafe { F32x16(_mm512_max_ps(self.0, b.0)) }
        }
        #[inline(always)]
        fn min(self, b: Self) -> Self {
            // SAFETY: a value exists only where its features are present.
            unsafe { F32x16(_mm512_min_ps(self.0, b.0)) }
        }
    }
}
