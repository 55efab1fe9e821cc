//! 1x1 convolutions as GEMMs with fused epilogues: [`pointwise`] (plain weights, the
//! `gemm` crate) and [`pointwise_packed`] on [`PackedWeights`] packed once at load time
//! for one instruction set and [`GemmPrecision`]: register tiles of 6 rows x 4 vectors
//! (AVX-512, fp32 FMAs or bf16 `vdpbf16ps`) or 6 x 2 (AVX2), one generic fp32 tile for
//! both vector widths, bias / activation / residual applied in registers.

use rayon::prelude::*;

use super::aligned::AlignedVec;
use super::gemv::{gemv_i8, Int8Weights, GEMV_MAX_ROWS};
use super::isa::vector_dispatch;
use super::simd::F32Vec;
use super::tasks::{for_each_task, task_rows, SendPtr, TASKS_PER_THREAD};
use super::tile::{bias_tile, fma_tile, store_tile, tile_dispatch};
use super::Isa;
use crate::{Activation, KernelError};

/// 1x1 convolution over all pixels of all streams as one GEMM with a fused epilogue:
/// `y[m, n] = act(sum_k x[m, k] * w[n, k] + bias[n]) + residual[m, n]`
/// with `x [M, K]`, `w [N, K]` (row-major, TFLite OHWI with H = W = 1), `y [M, N]`.
#[allow(clippy::too_many_arguments)]
pub fn pointwise(
    x: &[f32],
    m: usize,
    k: usize,
    w: &[f32],
    n: usize,
    bias: &[f32],
    act: Activation,
    residual: Option<&[f32]>,
    y: &mut [f32],
) {
    assert!(x.len() >= m * k && w.len() >= n * k && bias.len() >= n && y.len() >= m * n);
    if let Some(r) = residual {
        assert!(r.len() >= m * n);
    }
    if m == 0 || n == 0 {
        return;
    }
    // Tiles: row blocks for tall matrices (pixels), column blocks for short ones (the
    // head's dense layers run with M = batch).
    let rows = task_rows(m, 32).min(m);
    let row_tiles = m.div_ceil(rows);
    let col_tiles = if row_tiles >= rayon::current_num_threads() * 2 {
        1
    } else {
        (rayon::current_num_threads() * TASKS_PER_THREAD / row_tiles).clamp(1, n.div_ceil(64))
    };
    let cols = n.div_ceil(col_tiles);
    let col_tiles = n.div_ceil(cols);
    let yp = SendPtr(y.as_mut_ptr());
    (0..row_tiles * col_tiles).into_par_iter().for_each(|tile| {
        let (rt, ct) = (tile / col_tiles, tile % col_tiles);
        let (r0, c0) = (rt * rows, ct * cols);
        let (mr, nc) = (rows.min(m - r0), cols.min(n - c0));
        #[allow(clippy::redundant_locals)] // capture the Send wrapper, not its raw-pointer field
        let yp = yp;
        // Prefill the tile with bias (+ residual when no activation sits between).
        let fuse_residual = act == Activation::None;
        for i in 0..mr {
            // SAFETY: rows r0..r0+mr and columns c0..c0+nc of y belong to this tile only;
            // the asserts above keep them inside y.
            let yrow = unsafe { std::slice::from_raw_parts_mut(yp.0.add((r0 + i) * n + c0), nc) };
            yrow.copy_from_slice(&bias[c0..c0 + nc]);
            if let (true, Some(r)) = (fuse_residual, residual) {
                for (yv, &rv) in yrow.iter_mut().zip(&r[(r0 + i) * n + c0..][..nc]) {
                    *yv += rv;
                }
            }
        }
        // SAFETY: dst is this tile (rows stride n, unit column stride); lhs is rows
        // r0..r0+mr of x ([M, K] row-major); rhs is w^T restricted to columns c0..c0+nc
        // (element (kk, j) at w[(c0 + j) * k + kk]). All in bounds by the asserts above.
        unsafe {
            gemm::gemm(
                mr,
                nc,
                k,
                yp.0.add(r0 * n + c0),
                1,
                n as isize,
                true,
                x.as_ptr().add(r0 * k),
                1,
                k as isize,
                w.as_ptr().add(c0 * k),
                k as isize,
                1,
                1.0f32,
                1.0f32,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
        if !fuse_residual {
            for i in 0..mr {
                // SAFETY: as for the prefill: this tile's rows and columns only.
                let yrow =
                    unsafe { std::slice::from_raw_parts_mut(yp.0.add((r0 + i) * n + c0), nc) };
                act.apply_slice(yrow);
                if let Some(r) = residual {
                    for (yv, &rv) in yrow.iter_mut().zip(&r[(r0 + i) * n + c0..][..nc]) {
                        *yv += rv;
                    }
                }
            }
        }
    });
}

/// What the packed 1x1 GEMMs ([`pointwise_packed`]) multiply in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum GemmPrecision {
    /// fp32 inputs, fp32 accumulation: the float oracle's arithmetic (~1e-6 from it).
    #[default]
    F32,
    /// Weights packed as bf16, activations rounded to bf16 (round to nearest even) at
    /// the GEMM input, products summed in fp32 (`vdpbf16ps`). Needs AVX-512 BF16
    /// ([`Isa::has_bf16`]).
    Bf16,
}

impl GemmPrecision {
    pub fn name(self) -> &'static str {
        match self {
            GemmPrecision::F32 => "fp32",
            GemmPrecision::Bf16 => "bf16",
        }
    }
}

/// Weights of a 1x1 convolution packed once, at load time, for [`pointwise_packed`] on
/// one instruction set ([`Isa`]) and in one [`GemmPrecision`], 64-byte aligned:
/// - fp32: panels of [`panel_width`] output channels, each `[k, w]` row-major (`w` =
///   the panel's columns rounded up to whole vectors: the last panel is narrower),
///   zero-padded past `n`;
/// - bf16 (AVX-512 BF16): the same panels over pairs of `k`, `[ceil(k / 2), w]`, each
///   element one `u32` holding `bf16(w[j, 2q])` (low half) and `bf16(w[j, 2q + 1])`
///   (high half) — the operand layout of `vdpbf16ps`. GEMMs shallower than
///   [`BF16_MIN_K`] are packed in fp32 instead (rounding gains nothing there).
#[derive(Debug, Clone)]
pub struct PackedWeights {
    pub k: usize,
    pub n: usize,
    isa: Isa,
    data: Packed,
    /// the same weights as int8 x per-channel scale where that is exact
    /// ([`PackedWeights::attach_int8`]): GEMMs of up to [`GEMV_MAX_ROWS`] rows read these
    int8: Option<Int8Weights>,
}

#[derive(Debug, Clone)]
enum Packed {
    F32(AlignedVec<f32>),
    #[cfg(target_arch = "x86_64")]
    Bf16(AlignedVec<u32>),
}

/// Shallowest GEMM packed in bf16: below it, the bf16 kernel is no faster than fp32
/// (the activations' rounding and the epilogue dominate; measured in BENCHMARKS.md).
pub const BF16_MIN_K: usize = 32;

/// f32 lanes per vector at `isa` (the portable vector has 8).
fn lanes(isa: Isa) -> usize {
    if isa == Isa::Avx512 {
        16
    } else {
        8
    }
}

/// Output channels per packed panel at `isa`: one row of the register tile, [`MAX_NV`]
/// vectors of AVX-512 or two of AVX2 (6 rows x 2 vectors fill AVX2's 16 registers).
pub fn panel_width(isa: Isa) -> usize {
    if isa.clamp() == Isa::Avx512 {
        MAX_NV * 16
    } else {
        16
    }
}

/// Most vectors per tile row (AVX-512: 6 x 4 accumulators + 4 weights + 1 broadcast of
/// its 32 registers).
const MAX_NV: usize = 4;
/// Rows of the register tile.
const MR: usize = 6;

/// Where panel `p` of a `k`-deep matrix (`krows` packed rows: `k`, or `ceil(k / 2)`
/// pairs) sits: `(first column, columns, vectors, offset of its first element)`.
fn panel_at(p: usize, n: usize, krows: usize, width: usize, lanes: usize) -> Panel {
    let c0 = p * width;
    let nc = width.min(n - c0);
    let nv = nc.div_ceil(lanes);
    Panel {
        c0,
        nc,
        nv,
        offset: p * width * krows,
        stride: nv * lanes,
    }
}

#[derive(Debug, Clone, Copy)]
struct Panel {
    c0: usize,
    nc: usize,
    nv: usize,
    offset: usize,
    /// elements per packed row (`nv * lanes`)
    stride: usize,
}

impl PackedWeights {
    /// Pack `w [n, k]` (row-major, as [`pointwise`] takes it) in fp32 for
    /// [`Isa::active`].
    pub fn pack(w: &[f32], n: usize, k: usize) -> PackedWeights {
        PackedWeights::pack_f32(Isa::active(), w, n, k)
    }

    /// Pack `w [n, k]` for `isa` (clamped to the CPU) in `precision`; bf16 needs AVX-512
    /// BF16 at `isa` ([`Isa::has_bf16`]).
    pub fn pack_for(
        isa: Isa,
        precision: GemmPrecision,
        w: &[f32],
        n: usize,
        k: usize,
    ) -> Result<PackedWeights, KernelError> {
        let isa = isa.clamp();
        match precision {
            GemmPrecision::F32 => Ok(PackedWeights::pack_f32(isa, w, n, k)),
            GemmPrecision::Bf16 if isa.has_bf16() && k < BF16_MIN_K => {
                Ok(PackedWeights::pack_f32(isa, w, n, k))
            }
            #[cfg(target_arch = "x86_64")]
            GemmPrecision::Bf16 if isa.has_bf16() => Ok(PackedWeights::pack_bf16(w, n, k)),
            GemmPrecision::Bf16 => Err(KernelError::CpuFeature {
                what: "bf16 GEMMs",
                needs: "AVX-512 BF16",
                isa: isa.name(),
            }),
        }
    }

    fn pack_f32(isa: Isa, w: &[f32], n: usize, k: usize) -> PackedWeights {
        let isa = isa.clamp();
        let w = &w[..n * k];
        let (width, lanes) = (panel_width(isa), lanes(isa));
        let mut panels = AlignedVec::zeroed(n.div_ceil(width) * width * k);
        for p in 0..n.div_ceil(width) {
            let pn = panel_at(p, n, k, width, lanes);
            for j in 0..pn.nc {
                for kk in 0..k {
                    panels[pn.offset + kk * pn.stride + j] = w[(pn.c0 + j) * k + kk];
                }
            }
        }
        PackedWeights {
            k,
            n,
            isa,
            data: Packed::F32(panels),
            int8: None,
        }
    }

    #[cfg(target_arch = "x86_64")]
    fn pack_bf16(w: &[f32], n: usize, k: usize) -> PackedWeights {
        let (width, lanes, kp) = (panel_width(Isa::Avx512), 16, k.div_ceil(2));
        let bf = |v: f32| half::bf16::from_f32(v).to_bits() as u32;
        let mut pairs = AlignedVec::zeroed(n.div_ceil(width) * width * kp);
        for p in 0..n.div_ceil(width) {
            let pn = panel_at(p, n, kp, width, lanes);
            for j in 0..pn.nc {
                let row = &w[(pn.c0 + j) * k..(pn.c0 + j + 1) * k];
                for q in 0..kp {
                    let hi = row.get(2 * q + 1).map_or(0, |&v| bf(v));
                    pairs[pn.offset + q * pn.stride + j] = bf(row[2 * q]) | hi << 16;
                }
            }
        }
        PackedWeights {
            k,
            n,
            isa: Isa::Avx512,
            data: Packed::Bf16(pairs),
            int8: None,
        }
    }

    /// Also keep `w` (the matrix these were packed from) as int8 x per-channel scale, if
    /// every weight is exactly that ([`Int8Weights::exact`]): [`pointwise_packed`] then
    /// runs GEMMs of up to [`GEMV_MAX_ROWS`] rows — memory-bound, a quarter of the bytes —
    /// on them, in fp32 arithmetic whatever this packing's precision. Returns whether it
    /// did. For GEMMs whose rows are few (the head's dense layers, per stream).
    pub fn attach_int8(&mut self, w: &[f32]) -> bool {
        self.int8 = Int8Weights::exact(self.isa, w, self.n, self.k);
        self.int8.is_some()
    }

    /// The int8 form, if [`PackedWeights::attach_int8`] found one.
    pub fn int8(&self) -> Option<&Int8Weights> {
        self.int8.as_ref()
    }

    /// The instruction set these weights were packed for.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    pub fn precision(&self) -> GemmPrecision {
        match self.data {
            Packed::F32(_) => GemmPrecision::F32,
            #[cfg(target_arch = "x86_64")]
            Packed::Bf16(_) => GemmPrecision::Bf16,
        }
    }

    /// Bytes the packed weights occupy (with the int8 form, if attached).
    pub fn bytes(&self) -> usize {
        let int8 = self.int8.as_ref().map_or(0, Int8Weights::bytes);
        int8 + match &self.data {
            Packed::F32(v) => std::mem::size_of_val(&v[..]),
            #[cfg(target_arch = "x86_64")]
            Packed::Bf16(v) => std::mem::size_of_val(&v[..]),
        }
    }
}

/// [`pointwise`] with weights packed by [`PackedWeights`]: the same contract, computed
/// by a register-tiled kernel (6 rows x up to 4 vectors on AVX-512, 6 x 2 on AVX2) that
/// reads activations in place and applies bias, activation and residual in registers
/// before its one store. fp32 results equal [`pointwise`]'s up to float rounding
/// (fused multiply-adds); bf16 weights give bf16-rounded inputs' products summed in
/// fp32. GEMMs of up to [`GEMV_MAX_ROWS`] rows on weights with an int8 form attached
/// ([`PackedWeights::attach_int8`]) run [`gemv_i8`] instead, in fp32.
pub fn pointwise_packed(
    x: &[f32],
    m: usize,
    pw: &PackedWeights,
    bias: &[f32],
    act: Activation,
    residual: Option<&[f32]>,
    y: &mut [f32],
) {
    let (k, n) = (pw.k, pw.n);
    assert!(x.len() >= m * k && bias.len() >= n && y.len() >= m * n);
    if let Some(r) = residual {
        assert!(r.len() >= m * n);
    }
    if m == 0 || n == 0 {
        return;
    }
    if let Some(q) = pw.int8.as_ref().filter(|_| m <= GEMV_MAX_ROWS) {
        return gemv_i8(x, m, q, bias, act, residual, y);
    }
    let (width, lanes) = (panel_width(pw.isa), lanes(pw.isa));
    let g = Gemm {
        x,
        k,
        n,
        bias,
        act,
        residual,
        y: SendPtr(y.as_mut_ptr()),
        width,
        lanes,
    };
    let np = n.div_ceil(width);
    // row blocks (multiples of MR) for tall matrices, panel groups for short ones
    let threads = rayon::current_num_threads();
    let rows = if threads == 1 {
        m
    } else {
        (task_rows(m, 48).div_ceil(MR) * MR).min(m.div_ceil(MR) * MR)
    };
    let row_tiles = m.div_ceil(rows);
    let panel_tiles = if row_tiles >= threads * 2 {
        1
    } else {
        (threads * TASKS_PER_THREAD / row_tiles).clamp(1, np)
    };
    let per = np.div_ceil(panel_tiles);
    let panel_tiles = np.div_ceil(per);
    for_each_task(row_tiles * panel_tiles, |tile| {
        let (rt, pt) = (tile / panel_tiles, tile % panel_tiles);
        let rows = (rt * rows, ((rt + 1) * rows).min(m));
        let pans = (pt * per, ((pt + 1) * per).min(np));
        match &pw.data {
            // SAFETY: the asserts above keep every row and panel in bounds; this task
            // writes only rows `rows` x the columns of panels `pans` of y.
            Packed::F32(panels) => unsafe { panels_f32(pw.isa, &g, panels, rows, pans) },
            #[cfg(target_arch = "x86_64")]
            Packed::Bf16(pairs) => {
                // SAFETY: as above; bf16 weights exist only where `has_bf16` held.
                unsafe { bf16::panels(&g, pairs, rows, pans) }
            }
        }
    });
}

/// One GEMM call's operands, shared by its tasks (each writes a disjoint tile of `y`).
#[derive(Clone, Copy)]
struct Gemm<'a> {
    x: &'a [f32],
    k: usize,
    n: usize,
    bias: &'a [f32],
    act: Activation,
    residual: Option<&'a [f32]>,
    /// `[m, n]` output
    y: SendPtr,
    /// columns per panel and f32 lanes per vector
    width: usize,
    lanes: usize,
}

/// How the rows `r0..r1` split into micro-tiles of at most [`MR`] rows, as evenly as
/// possible (121 rows: 20 tiles of 6 and 5, not 20 of 6 and one of 1).
fn micro_tiles(r0: usize, r1: usize) -> impl Iterator<Item = (usize, usize)> {
    let count = r1 - r0;
    let tiles = count.div_ceil(MR);
    let (base, extra) = (count / tiles.max(1), count % tiles.max(1));
    (0..tiles).map(move |t| {
        let start = r0 + t * base + t.min(extra);
        (start, base + usize::from(t < extra))
    })
}

vector_dispatch! {
    /// Rows `rows` x panels `pans` of an fp32 packed GEMM.
    ///
    /// # Safety
    /// `g`'s slices hold `m * k` activations, `n` biases and (if any) `m * n` residuals
    /// for `m >= rows.1`; `panels` is `g`'s weights packed for this ISA; `g.y` points at
    /// `m * n` writable floats of which this call alone writes the tile.
    unsafe fn panels_f32<V>(g: &Gemm, panels: &[f32], rows: (usize, usize), pans: (usize, usize)) {
        for p in pans.0..pans.1 {
            let pn = panel_at(p, g.n, g.k, g.width, g.lanes);
            let w = panels[pn.offset..].as_ptr();
            for (r, mr) in micro_tiles(rows.0, rows.1) {
                // SAFETY: rows r..r+mr of x and the panel's k rows are in bounds (this
                // function's contract); the tile's outputs belong to this call.
                unsafe {
                    if V::LANES > 8 && pn.nc <= 8 {
                        // a narrow panel (n = 8 layers): half-width vectors, which
                        // AVX-512 CPUs that split 512-bit ops run at twice the rate
                        tile_dispatch!(mr, 1, 2, gemm_tile::<V::Half>(g, w, r, &pn));
                    } else {
                        tile_dispatch!(mr, pn.nv, V::TILE_VECTORS, gemm_tile::<V>(g, w, r, &pn));
                    }
                }
            }
        }
    }
}

/// One `R x NV` register tile of an fp32 GEMM: rows `r..r+R` of x times one panel.
///
/// # Safety
/// As [`panels_f32`], for rows `r..r + R` and panel `pn`; `NV = ceil(pn.nc / LANES)`.
#[inline(always)]
unsafe fn gemm_tile<V: F32Vec, const R: usize, const NV: usize>(
    g: &Gemm,
    w: *const f32,
    r: usize,
    pn: &Panel,
) {
    // SAFETY: x rows r..r+R (k each), the panel (k rows of pn.stride), bias columns
    // c0..c0+nc and y / residual rows r..r+R, columns c0..c0+nc are in bounds (contract).
    unsafe {
        let mut acc = bias_tile::<V, R, NV>(g.bias.as_ptr().add(pn.c0), pn.nc);
        fma_tile(&mut acc, g.x.as_ptr().add(r * g.k), g.k, g.k, w, pn.stride);
        finish(g, &acc, r, pn);
    }
}

/// Store a finished tile of rows `r..`, panel `pn`, through the epilogue.
///
/// # Safety
/// As [`store_tile`], for those rows and the panel's columns.
#[inline(always)]
unsafe fn finish<V: F32Vec, const R: usize, const NV: usize>(
    g: &Gemm,
    acc: &[[V; NV]; R],
    r: usize,
    pn: &Panel,
) {
    let at = r * g.n + pn.c0;
    // SAFETY: forwarded from this function's contract.
    unsafe {
        store_tile(
            acc,
            g.y.0.add(at),
            g.n,
            pn.nc,
            g.act,
            g.residual.map(|res| res.as_ptr().add(at)),
        );
    }
}

/// The bf16 GEMM (AVX-512 BF16): activations rounded to bf16 pairs once per task, then
/// `vdpbf16ps` register tiles over the packed pairs, with the fp32 epilogue.
#[cfg(target_arch = "x86_64")]
mod bf16 {
    use std::arch::x86_64::*;
    use std::cell::Cell;

    use super::{finish, micro_tiles, panel_at, Gemm, Panel, MAX_NV};
    use crate::cpu::simd::{mask16, F32x16};
    use crate::cpu::tile::{bias_tile, tile_dispatch};

    thread_local! {
        /// This thread's activations rounded to bf16 pairs (grown on first use, reused).
        static ROWS: Cell<Vec<u32>> = const { Cell::new(Vec::new()) };
    }

    /// Rows `rows` x panels `pans` of a bf16 packed GEMM.
    ///
    /// # Safety
    /// As `panels_f32`, with `pairs` packed by `PackedWeights::pack_bf16`, on a CPU with
    /// AVX-512 BF16.
    pub(super) unsafe fn panels(
        g: &Gemm,
        pairs: &[u32],
        rows: (usize, usize),
        pans: (usize, usize),
    ) {
        let kp = g.k.div_ceil(2);
        let mut a = ROWS.take();
        let need = (rows.1 - rows.0) * kp;
        if a.len() < need {
            a.resize(need, 0);
        }
        // SAFETY: the CPU has AVX-512 BF16 (caller); `a` holds `need` values.
        unsafe {
            round_rows(&g.x[rows.0 * g.k..rows.1 * g.k], g.k, &mut a[..need]);
            tiles(g, pairs, &a[..need], rows, pans);
        }
        ROWS.set(a);
    }

    /// `x` (rows of `k` floats) to bf16 pairs, rounded to nearest even: row i of `out`
    /// holds `ceil(k / 2)` pairs, the last one zero-padded when `k` is odd.
    ///
    /// # Safety
    /// The CPU has AVX-512 BF16; `out.len() == rows * ceil(k / 2)`.
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,avx512bf16")]
    unsafe fn round_rows(x: &[f32], k: usize, out: &mut [u32]) {
        let kp = k.div_ceil(2);
        let halves = out.as_mut_ptr() as *mut u16;
        for (i, row) in x.chunks_exact(k).enumerate() {
            let mut c = 0;
            while c < 2 * kp {
                let n = k.saturating_sub(c).min(16);
                // SAFETY: `n` floats of the row from c are in bounds; the masked store
                // writes min(16, 2kp - c) halves of out's row i (2kp halves long).
                unsafe {
                    let v = _mm512_maskz_loadu_ps(mask16(n), row.as_ptr().add(c));
                    let b = std::mem::transmute::<__m256bh, __m256i>(_mm512_cvtneps_pbh(v));
                    let keep = (2 * kp - c).min(16);
                    _mm256_mask_storeu_epi16(
                        halves.add(i * 2 * kp + c) as *mut i16,
                        mask16(keep),
                        b,
                    );
                }
                c += 16;
            }
        }
    }

    /// # Safety
    /// As [`panels`]; `a` holds rows `rows` rounded by [`round_rows`].
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,avx512bf16")]
    unsafe fn tiles(
        g: &Gemm,
        pairs: &[u32],
        a: &[u32],
        rows: (usize, usize),
        pans: (usize, usize),
    ) {
        let kp = g.k.div_ceil(2);
        for p in pans.0..pans.1 {
            let pn = panel_at(p, g.n, kp, g.width, g.lanes);
            let w = pairs[pn.offset..].as_ptr();
            for (r, mr) in micro_tiles(rows.0, rows.1) {
                let ap = a[(r - rows.0) * kp..].as_ptr();
                // SAFETY: rows r..r+mr of `a` and the panel's kp rows are in bounds.
                unsafe { tile_dispatch!(mr, pn.nv, MAX_NV, tile(g, ap, w, r, &pn)) }
            }
        }
    }

    /// One `R x NV` tile: per pair of `k`, NV weight vectors and one broadcast pair per
    /// row, `vdpbf16ps` into fp32 accumulators.
    ///
    /// # Safety
    /// As [`tiles`], for rows `r..r + R` and panel `pn`.
    #[inline(always)]
    unsafe fn tile<const R: usize, const NV: usize>(
        g: &Gemm,
        a: *const u32,
        w: *const u32,
        r: usize,
        pn: &Panel,
    ) {
        let kp = g.k.div_ceil(2);
        // SAFETY: a rows i < R, pairs < kp and panel rows < kp, NV * 16 columns are in
        // bounds by the caller's contract; the CPU has AVX-512 BF16.
        unsafe {
            let mut acc = bias_tile::<F32x16, R, NV>(g.bias.as_ptr().add(pn.c0), pn.nc);
            for q in 0..kp {
                let mut wv: [__m512bh; NV] = [std::mem::zeroed(); NV];
                for (v, wr) in wv.iter_mut().enumerate() {
                    let pairs = _mm512_loadu_si512(w.add(q * pn.stride + v * 16) as *const _);
                    *wr = std::mem::transmute::<__m512i, __m512bh>(pairs);
                }
                for (i, row) in acc.iter_mut().enumerate() {
                    let pair = _mm512_set1_epi32(*a.add(i * kp + q) as i32);
                    let x = std::mem::transmute::<__m512i, __m512bh>(pair);
                    for v in 0..NV {
                        row[v] = F32x16(_mm512_dpbf16_ps(row[v].0, x, wv[v]));
                    }
                }
            }
            finish(g, &acc, r, pn);
        }
    }
}
#[cfg(test)]
mod tests {
    //! Against a naive GEMM, outputs poisoned with NaN, in 1- and 3-thread pools.
    use super::*;
    use crate::cpu::test_util::*;

    /// Every GEMM case both pointwise tests run: shapes from the model (tall, short,
    /// M = 1 dense layers) and odd ones, each activation, with and without a residual.
    #[allow(clippy::type_complexity)]
    fn gemm_cases(
        seed: u64,
        mut check: impl FnMut(
            &rayon::ThreadPool,
            usize,
            usize,
            usize,
            Activation,
            &[f32],
            &[f32],
            &[f32],
            Option<&[f32]>,
        ),
    ) {
        let mut r = Rng(seed);
        for pool in pools() {
            for &(m, k, n) in &[
                (1, 480, 2048),
                (3, 2048, 7),
                (7396, 8, 24),
                (130, 24, 8),
                (37, 5, 3),
                (1849, 80, 32),
                (36, 344, 104),
                (7, 33, 17),
            ] {
                for (ai, &act) in ACTS.iter().enumerate() {
                    let (x, w, bias) = (r.vec(m * k), r.vec(n * k), r.vec(n));
                    let res = (ai % 2 == 0).then(|| r.vec(m * n));
                    check(&pool, m, k, n, act, &x, &w, &bias, res.as_deref());
                }
            }
        }
    }

    #[test]
    fn pointwise_matches_naive_gemm() {
        gemm_cases(7, |pool, m, k, n, act, x, w, bias, res| {
            let mut y = vec![f32::NAN; m * n];
            pool.install(|| pointwise(x, m, k, w, n, bias, act, res, &mut y));
            let mut want = vec![0.0; m * n];
            for i in 0..m {
                for j in 0..n {
                    let mut a = bias[j] as f64;
                    for kk in 0..k {
                        a += x[i * k + kk] as f64 * w[j * k + kk] as f64;
                    }
                    want[i * n + j] = act.apply(a as f32) + res.map_or(0.0, |r| r[i * n + j]);
                }
            }
            close(&y, &want, &format!("pointwise m{m} k{k} n{n} {act:?}"));
        });
    }

    #[test]
    fn pointwise_packed_matches_pointwise_on_every_isa() {
        for isa in isas_under_test("packed GEMM") {
            gemm_cases(17, |pool, m, k, n, act, x, w, bias, res| {
                let packed = PackedWeights::pack_for(isa, GemmPrecision::F32, w, n, k).unwrap();
                assert_eq!(packed.isa(), isa);
                let mut want = vec![f32::NAN; m * n];
                let mut got = vec![f32::NAN; m * n];
                pool.install(|| {
                    pointwise(x, m, k, w, n, bias, act, res, &mut want);
                    pointwise_packed(x, m, &packed, bias, act, res, &mut got);
                });
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    let tol = 1e-5 * (1.0 + (k as f32).sqrt()) * (1.0 + w.abs());
                    assert!(
                        (g - w).abs() <= tol,
                        "{isa} packed m{m} k{k} n{n} {act:?} [{i}]: {g} vs {w}"
                    );
                }
            });
        }
    }

    /// bf16 GEMM against a naive loop on inputs rounded to bf16 the same way (nearest
    /// even). Products of two bf16 values are exact in f32 and `vdpbf16ps` sums them in
    /// f32, so the only difference from the f64 reference is f32 accumulation: the same
    /// tolerance as the fp32 kernels. GEMMs shallower than BF16_MIN_K stay fp32.
    #[test]
    fn pointwise_packed_bf16_matches_naive_on_rounded_inputs() {
        if !Isa::detected().has_bf16() {
            eprintln!("skipped: this CPU lacks AVX-512 BF16 (bf16 GEMMs cannot run here)");
            return;
        }
        gemm_cases(23, |pool, m, k, n, act, x, w, bias, res| {
            let packed =
                PackedWeights::pack_for(Isa::Avx512, GemmPrecision::Bf16, w, n, k).unwrap();
            let bf16 = k >= BF16_MIN_K;
            assert_eq!(packed.precision() == GemmPrecision::Bf16, bf16, "k {k}");
            let round = |v: f32| {
                if bf16 {
                    half::bf16::from_f32(v).to_f32()
                } else {
                    v
                }
            };
            let mut got = vec![f32::NAN; m * n];
            pool.install(|| pointwise_packed(x, m, &packed, bias, act, res, &mut got));
            for i in 0..m {
                for j in 0..n {
                    let mut a = bias[j] as f64;
                    for kk in 0..k {
                        a += round(x[i * k + kk]) as f64 * round(w[j * k + kk]) as f64;
                    }
                    let want = act.apply(a as f32) + res.map_or(0.0, |r| r[i * n + j]);
                    let g = got[i * n + j];
                    let tol = 1e-5 * (1.0 + (k as f32).sqrt()) * (1.0 + want.abs());
                    assert!(
                        (g - want).abs() <= tol,
                        "bf16 m{m} k{k} n{n} {act:?} [{i}, {j}]: {g} vs {want}"
                    );
                }
            }
        });
    }

    #[test]
    fn bf16_packing_is_refused_without_avx512_bf16() {
        for isa in Isa::supported() {
            let (n, k) = (2, BF16_MIN_K);
            let r = PackedWeights::pack_for(isa, GemmPrecision::Bf16, &vec![1.0; n * k], n, k);
            match r {
                Ok(p) => assert!(isa.has_bf16() && p.precision() == GemmPrecision::Bf16),
                Err(e) => {
                    assert!(!isa.has_bf16());
                    assert!(e.to_string().contains("AVX-512 BF16"), "{e}");
                }
            }
        }
    }
}
