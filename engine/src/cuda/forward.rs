//! [`enqueue`]: one step of the [`Plan`] on a CUDA stream — one exhaustive `match` over
//! its ops, each one kernel launch (`concat`: two strided 2-D device copies). Only
//! launches and device-to-device copies: graph-capturable. [`StepNodes`] counts what it
//! enqueued.

use vigil_kernels::cuda::cudarc::driver::{sys, CudaSlice, CudaStream, DevicePtr, DevicePtrMut};
use vigil_kernels::cuda::{CudaKernels, KernelError, Storage};

use super::device_model::DeviceWeights;
use super::workspace::{DeviceSlots, Workspace};
use crate::plan::{split_output, BufId, Op, Plan};

/// Graph nodes of one step: kernel launches and device copies (the same for every batch
/// size).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepNodes {
    pub kernels: usize,
    pub copies: usize,
}

/// Enqueue one step of `plan` for `n` streams on `s`: the inputs are already in
/// `ws.frames / slots / t`; the logits are left in the plan's logits buffer.
pub(super) fn enqueue<T: Storage>(
    k: &CudaKernels,
    s: &CudaStream,
    plan: &Plan,
    weights: &DeviceWeights<T>,
    ws: &mut Workspace<T>,
    state: &mut DeviceSlots<T>,
    n: usize,
) -> Result<StepNodes, KernelError> {
    let Workspace {
        frames,
        slots,
        t,
        bufs,
        ..
    } = ws;
    let mut nodes = StepNodes::default();
    for (i, step) in plan.steps().iter().enumerate() {
        let bad = |why: &str| KernelError::Shape {
            op: step.op.kernel(),
            detail: format!("plan op {i} ({}/{}): {why}", step.layer, step.role),
        };
        let (o, y) = split_output(bufs, step.op.output().0).ok_or_else(|| bad("no output"))?;
        let read = |x: BufId| o.get(x).ok_or_else(|| bad("reads its own output"));
        match step.op {
            Op::PreprocessU8 { len, .. } => k.preprocess_u8::<T>(s, frames, n, len, y)?,
            Op::Conv2d {
                x,
                ref geom,
                cin,
                cout,
                w,
                bias,
                act,
                ..
            } => k.conv2d::<T>(
                s,
                read(x)?,
                n,
                geom,
                cin,
                weights.storage(w)?,
                weights.f32(bias)?,
                cout,
                act,
                y,
            )?,
            Op::Pointwise {
                x,
                rows,
                k: kk,
                n: nn,
                w,
                bias,
                act,
                residual,
                gate,
                ..
            } => {
                let residual = match residual {
                    Some(r) => Some(read(r)? as &dyn DevicePtr<T>),
                    None => None,
                };
                let (x, w, bias) = (read(x)?, weights.storage(w)?, weights.f32(bias)?);
                match gate {
                    // the SE gate fused into the GEMM's A operand
                    Some(g) => k.pointwise_gated::<T>(
                        s,
                        x,
                        n * rows,
                        kk,
                        w,
                        nn,
                        bias,
                        act,
                        residual,
                        read(g.gate)?,
                        rows,
                        g.scale,
                        y,
                    )?,
                    None => k.pointwise::<T>(s, x, n * rows, kk, w, nn, bias, act, residual, y)?,
                }
            }
            Op::Depthwise2d {
                x,
                ref geom,
                c,
                w,
                bias,
                act,
                ..
            } => k.depthwise2d::<T>(
                s,
                read(x)?,
                n,
                geom,
                c,
                weights.storage(w)?,
                weights.f32(bias)?,
                act,
                y,
            )?,
            Op::AvgPool2d { x, ref geom, c, .. } => {
                k.avg_pool2d::<T>(s, read(x)?, n, geom, c, y)?
            }
            Op::TemporalCausal {
                x,
                pixels,
                c,
                kt,
                w,
                bias,
                act,
                buffer,
                ..
            } => {
                let ring = state
                    .buffers
                    .get_mut(buffer)
                    .ok_or_else(|| bad("no such stream buffer"))?;
                k.temporal_causal::<T>(
                    s,
                    read(x)?,
                    n,
                    pixels,
                    c,
                    kt,
                    weights.storage(w)?,
                    weights.f32(bias)?,
                    act,
                    slots,
                    t,
                    ring,
                    y,
                )?
            }
            Op::SpatialMean {
                x,
                pixels,
                c,
                scale,
                ..
            } => k.spatial_mean::<T>(s, read(x)?, n, pixels, c, weights.f32(scale)?, y)?,
            Op::CumulativePool { x, c, pool, .. } => {
                let sums = state
                    .pools
                    .get_mut(pool)
                    .ok_or_else(|| bad("no such cumulative pool"))?;
                k.cumulative_pool::<T>(s, read(x)?, n, c, slots, t, sums, y)?
            }
            Op::Concat {
                first,
                first_len,
                second,
                second_len,
                ..
            } => {
                let pitch = first_len + second_len;
                copy_rows(s, read(first)?, n, first_len, y, pitch, 0)?;
                copy_rows(s, read(second)?, n, second_len, y, pitch, first_len)?;
                nodes.copies += 2;
                continue;
            }
        }
        nodes.kernels += 1;
    }
    Ok(nodes)
}

/// `dst[r, off .. off + width] = src[r, 0 .. width]` for `rows` rows (row pitch of dst
/// `dst_pitch`, of src `width`), one strided device-to-device copy (graph-capturable).
fn copy_rows<T: Storage>(
    s: &CudaStream,
    src: &CudaSlice<T>,
    rows: usize,
    width: usize,
    dst: &mut CudaSlice<T>,
    dst_pitch: usize,
    off: usize,
) -> Result<(), KernelError> {
    let el = std::mem::size_of::<T>();
    if src.len() < rows * width || dst.len() < rows * dst_pitch || off + width > dst_pitch {
        return Err(KernelError::Shape {
            op: "copy_rows",
            detail: format!("rows={rows} width={width} pitch={dst_pitch} off={off}"),
        });
    }
    if rows == 0 || width == 0 {
        return Ok(());
    }
    let (sp, _gs) = src.device_ptr(s);
    let (dp, _gd) = dst.device_ptr_mut(s);
    let desc = sys::CUDA_MEMCPY2D {
        srcXInBytes: 0,
        srcY: 0,
        srcMemoryType: sys::CUmemorytype::CU_MEMORYTYPE_DEVICE,
        srcHost: std::ptr::null(),
        srcDevice: sp,
        srcArray: std::ptr::null_mut(),
        srcPitch: width * el,
        dstXInBytes: off * el,
        dstY: 0,
        dstMemoryType: sys::CUmemorytype::CU_MEMORYTYPE_DEVICE,
        dstHost: std::ptr::null_mut(),
        dstDevice: dp,
        dstArray: std::ptr::null_mut(),
        dstPitch: dst_pitch * el,
        WidthInBytes: width * el,
        Height: rows,
    };
    // SAFETY: both regions were bounds-checked above (rows x width elements of src,
    // rows x pitch of dst, with off + width <= pitch); `desc` outlives the call, which
    // only reads it to enqueue the copy on `s`.
    unsafe { sys::cuMemcpy2DAsync_v2(&desc, s.cu_stream()) }.result()?;
    Ok(())
}
