//! The fp32 register tile shared by the 1x1 GEMMs ([`super::pointwise`]) and the stem
//! convolution ([`super::conv2d`]): `R` rows x `NV` vectors of accumulators, started at
//! the bias ([`bias_tile`]), fed by rank-1 updates — one broadcast activation per row
//! times `NV` weight vectors per step of `k` ([`fma_tile`]) — and finished in registers
//! by activation and residual before one store ([`store_tile`]).
//!
//! Rows of activations are addressed as `a + i * lda + kk`, so the GEMM passes `lda = k`
//! and the stem passes `lda = stride * cin`: overlapping windows of one image row are
//! the rows of its implicit im2col matrix. [`tile_dispatch!`] turns a run-time
//! `(rows, vectors)` into the const-generic instantiation; [`F32Vec::TILE_VECTORS`]
//! is the widest tile row an ISA uses.

use super::simd::{activate, vectorizes, with_act, F32Vec};
use crate::Activation;

/// `cols` values from `p` (all `V::LANES` when `cols >= LANES`, else the first `cols`).
///
/// # Safety
/// Inside code compiled for `V`; `min(cols, LANES)` values readable at `p`.
#[inline(always)]
pub(crate) unsafe fn load_cols<V: F32Vec>(p: *const f32, cols: usize) -> V {
    // SAFETY: forwarded from this function's contract.
    unsafe {
        if cols >= V::LANES {
            V::load(p)
        } else {
            V::load_n(p, cols)
        }
    }
}

/// Store the first `cols` lanes of `v` at `p` (all of them when `cols >= LANES`).
///
/// # Safety
/// Inside code compiled for `V`; `min(cols, LANES)` values writable at `p`.
#[inline(always)]
pub(crate) unsafe fn store_cols<V: F32Vec>(v: V, p: *mut f32, cols: usize) {
    // SAFETY: forwarded from this function's contract.
    unsafe {
        if cols >= V::LANES {
            v.store(p)
        } else {
            v.store_n(p, cols)
        }
    }
}

/// Every row's accumulators set to the bias of the tile's `nc` columns (`bias[0..nc]`).
///
/// # Safety
/// Inside code compiled for `V`; `nc` values readable at `bias`, `NV = ceil(nc / LANES)`.
#[inline(always)]
pub(crate) unsafe fn bias_tile<V: F32Vec, const R: usize, const NV: usize>(
    bias: *const f32,
    nc: usize,
) -> [[V; NV]; R] {
    // SAFETY: vector v covers columns v*LANES.. of the nc (v*LANES < nc as NV = ceil);
    // inside code compiled for V.
    unsafe {
        let mut row = [V::zero(); NV];
        for (v, r) in row.iter_mut().enumerate() {
            *r = load_cols(bias.add(v * V::LANES), nc - v * V::LANES);
        }
        [row; R]
    }
}

/// `acc[i] += sum_kk a[i * lda + kk] * w[kk * ldw ..][NV vectors]` for `kk < k`.
///
/// # Safety
/// Inside code compiled for `V`; `a + i * lda + kk` readable for `i < R`, `kk < k`;
/// `NV * LANES` values readable at `w + kk * ldw` for `kk < k`.
#[inline(always)]
pub(crate) unsafe fn fma_tile<V: F32Vec, const R: usize, const NV: usize>(
    acc: &mut [[V; NV]; R],
    a: *const f32,
    lda: usize,
    k: usize,
    w: *const f32,
    ldw: usize,
) {
    // SAFETY: every offset is within the ranges of this function's contract.
    unsafe {
        for kk in 0..k {
            let mut wv = [V::zero(); NV];
            for (v, wr) in wv.iter_mut().enumerate() {
                *wr = V::load(w.add(kk * ldw + v * V::LANES));
            }
            for (i, row) in acc.iter_mut().enumerate() {
                let x = V::broadcast(a.add(i * lda + kk));
                for v in 0..NV {
                    row[v] = x.mul_add(wv[v], row[v]);
                }
            }
        }
    }
}

/// The epilogue: `y[i, 0..nc] = act(acc[i]) + residual[i, 0..nc]` (residual optional,
/// row stride `ldy` for both), activation and residual in registers; Swish, which has
/// no vector form here, is applied after the store.
///
/// # Safety
/// Inside code compiled for `V`; rows `i < R`, columns `< nc` of y (and of the residual)
/// valid, and y's written only by the caller; `NV = ceil(nc / LANES)`.
#[inline(always)]
pub(crate) unsafe fn store_tile<V: F32Vec, const R: usize, const NV: usize>(
    acc: &[[V; NV]; R],
    y: *mut f32,
    ldy: usize,
    nc: usize,
    act: Activation,
    residual: Option<*const f32>,
) {
    // One activation per instantiation, so that each is a straight run of code with the
    // accumulators' indices constant (and the accumulators in registers).
    // SAFETY: forwarded from this function's contract.
    unsafe {
        with_act!(
            act,
            store_act,
            [V, R, NV],
            (acc, y, ldy, nc, residual, vectorizes(act))
        );
    }
    if !vectorizes(act) {
        for i in 0..R {
            // SAFETY: row i's first nc values of y are the caller's (contract).
            let yrow = unsafe { std::slice::from_raw_parts_mut(y.add(i * ldy), nc) };
            act.apply_slice(yrow);
            if let Some(r) = residual {
                for (j, o) in yrow.iter_mut().enumerate() {
                    // SAFETY: row i, column j < nc of the residual (contract).
                    *o += unsafe { *r.add(i * ldy + j) };
                }
            }
        }
    }
}

/// [`store_tile`] for activation code `A` ([`act_code`](super::simd::act_code));
/// `fuse_residual` false leaves the residual to the caller (after a scalar activation).
///
/// # Safety
/// As [`store_tile`].
#[inline(always)]
unsafe fn store_act<V: F32Vec, const R: usize, const NV: usize, const A: u8>(
    acc: &[[V; NV]; R],
    y: *mut f32,
    ldy: usize,
    nc: usize,
    residual: Option<*const f32>,
    fuse_residual: bool,
) {
    let last = nc - (NV - 1) * V::LANES;
    // SAFETY: element i*ldy + v*LANES and the lanes after it (all of them but in the
    // last vector, `last` there) are in row i, columns < nc: the caller's contract.
    unsafe {
        unroll!(R, i, {
            unroll!(NV, v, {
                let mut o = activate::<V, A>(acc[i][v]);
                let (at, cols) = (
                    i * ldy + v * V::LANES,
                    if v + 1 == NV { last } else { V::LANES },
                );
                if let (true, Some(r)) = (fuse_residual, residual) {
                    o = o.add(load_cols(r.add(at), cols));
                }
                store_cols(o, y.add(at), cols);
            });
        });
    }
}

/// Repeats `$body` with `$i` bound to each constant `0..$n` (`$n <= 6`, a const), so
/// arrays indexed by `$i` keep constant indices (registers, not a stack copy) where
/// the compiler would not unroll a loop this large on its own.
macro_rules! unroll {
    ($n:expr, $i:ident, $body:block) => {{
        if 0 < $n {
            let $i: usize = 0;
            $body
        }
        if 1 < $n {
            let $i: usize = 1;
            $body
        }
        if 2 < $n {
            let $i: usize = 2;
            $body
        }
        if 3 < $n {
            let $i: usize = 3;
            $body
        }
        if 4 < $n {
            let $i: usize = 4;
            $body
        }
        if 5 < $n {
            let $i: usize = 5;
            $body
        }
        const { assert!($n <= 6, "unroll! covers up to 6") };
    }};
}
use unroll;

/// `tile_dispatch!(rows, nv, max_nv, f::<Ts..>(args))` calls `f::<Ts.., R, NV>(args)`
/// for run-time `rows` in 1..=6 and `nv` in 1..=`max_nv` (a const: 2 or 4; larger
/// values take the largest), so each tile shape is its own unrolled instantiation and
/// an ISA whose tiles have two vectors per row compiles no wider ones.
macro_rules! tile_dispatch {
    ($rows:expr, $nv:expr, $max_nv:expr, $f:ident($($arg:expr),* $(,)?)) => {
        $crate::cpu::tile::tile_dispatch!($rows, $nv, $max_nv, $f::<>($($arg),*))
    };
    ($rows:expr, $nv:expr, $max_nv:expr, $f:ident::<$($g:ty),*>($($arg:expr),* $(,)?)) => {
        if $max_nv >= 4 {
            match $nv {
                1 => $crate::cpu::tile::tile_dispatch!(@rows $rows, 1, $f, [$($g),*], [$($arg),*]),
                2 => $crate::cpu::tile::tile_dispatch!(@rows $rows, 2, $f, [$($g),*], [$($arg),*]),
                3 => $crate::cpu::tile::tile_dispatch!(@rows $rows, 3, $f, [$($g),*], [$($arg),*]),
                _ => $crate::cpu::tile::tile_dispatch!(@rows $rows, 4, $f, [$($g),*], [$($arg),*]),
            }
        } else {
            match $nv {
                1 => $crate::cpu::tile::tile_dispatch!(@rows $rows, 1, $f, [$($g),*], [$($arg),*]),
                _ => $crate::cpu::tile::tile_dispatch!(@rows $rows, 2, $f, [$($g),*], [$($arg),*]),
            }
        }
    };
    (@rows $rows:expr, $nv:literal, $f:ident, [$($g:ty),*], [$($arg:expr),*]) => {
        match $rows {
            1 => $f::<$($g,)* 1, $nv>($($arg),*),
            2 => $f::<$($g,)* 2, $nv>($($arg),*),
            3 => $f::<$($g,)* 3, $nv>($($arg),*),
            4 => $f::<$($g,)* 4, $nv>($($arg),*),
            5 => $f::<$($g,)* 5, $nv>($($arg),*),
            _ => $f::<$($g,)* 6, $nv>($($arg),*),
        }
    };
}
pub(crate) use tile_dispatch;
