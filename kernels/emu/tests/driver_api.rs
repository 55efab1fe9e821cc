//! The emulated driver behaves like a CUDA driver where tests depend on it: its ABI
//! matches cudarc's, it identifies itself as an emulator, device work runs in stream order
//! only when the host synchronises, captures become graphs, modules are checked against
//! the host build, launch limits and bad pointers get the driver's error codes, and the
//! counters count what executed. Always on the emulator (these test the emulator).

mod common;
use common::*;

use std::ffi::{c_void, CStr};
use std::ptr;

use cudarc::driver::sys::{self, CUresult};
use cudarc::driver::{DevicePtr, DriverError, LaunchConfig, PushKernelArg};
use libloading::os::unix::{Library, RTLD_NOW};

fn emulator_symbol<T: Copy>(name: &[u8]) -> T {
    // SAFETY: the emulator is loaded (emulated_context); RTLD_NOLOAD (4) only finds it.
    unsafe {
        let lib = Library::open(Some("libcuda.so"), RTLD_NOW | 4).expect("emulator loaded");
        let sym = lib.get::<T>(name).expect("symbol");
        let f = *sym;
        std::mem::forget(lib);
        f
    }
}

#[test]
fn error_codes_and_struct_layout_match_cudarc() {
    let _ctx = emulated_context();
    for r in [
        CUresult::CUDA_SUCCESS,
        CUresult::CUDA_ERROR_INVALID_VALUE,
        CUresult::CUDA_ERROR_OUT_OF_MEMORY,
        CUresult::CUDA_ERROR_NOT_INITIALIZED,
        CUresult::CUDA_ERROR_INVALID_DEVICE,
        CUresult::CUDA_ERROR_INVALID_IMAGE,
        CUresult::CUDA_ERROR_INVALID_CONTEXT,
        CUresult::CUDA_ERROR_NO_BINARY_FOR_GPU,
        CUresult::CUDA_ERROR_INVALID_PTX,
        CUresult::CUDA_ERROR_UNSUPPORTED_PTX_VERSION,
        CUresult::CUDA_ERROR_INVALID_HANDLE,
        CUresult::CUDA_ERROR_ILLEGAL_STATE,
        CUresult::CUDA_ERROR_NOT_FOUND,
        CUresult::CUDA_ERROR_NOT_READY,
        CUresult::CUDA_ERROR_ILLEGAL_ADDRESS,
        CUresult::CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES,
        CUresult::CUDA_ERROR_NOT_SUPPORTED,
        CUresult::CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED,
        CUresult::CUDA_ERROR_STREAM_CAPTURE_INVALIDATED,
        CUresult::CUDA_ERROR_STREAM_CAPTURE_ISOLATION,
        CUresult::CUDA_ERROR_STREAM_CAPTURE_IMPLICIT,
        CUresult::CUDA_ERROR_CAPTURED_EVENT,
        CUresult::CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD,
        CUresult::CUDA_ERROR_UNKNOWN,
    ] {
        let e = DriverError(r);
        let name = e.error_name().expect("cuGetErrorName");
        assert_eq!(
            name.to_str().unwrap(),
            format!("{r:?}"),
            "code {}",
            r as u32
        );
        e.error_string().expect("cuGetErrorString");
    }

    let layout: unsafe extern "C" fn(*mut usize) = emulator_symbol(b"vigilEmuLayoutOfMemcpy2D\0");
    let mut got = [0usize; 17];
    // SAFETY: writes 17 usize.
    unsafe { layout(got.as_mut_ptr()) };
    use std::mem::offset_of;
    type M = sys::CUDA_MEMCPY2D;
    let want = [
        offset_of!(M, srcXInBytes),
        offset_of!(M, srcY),
        offset_of!(M, srcMemoryType),
        offset_of!(M, srcHost),
        offset_of!(M, srcDevice),
        offset_of!(M, srcArray),
        offset_of!(M, srcPitch),
        offset_of!(M, dstXInBytes),
        offset_of!(M, dstY),
        offset_of!(M, dstMemoryType),
        offset_of!(M, dstHost),
        offset_of!(M, dstDevice),
        offset_of!(M, dstArray),
        offset_of!(M, dstPitch),
        offset_of!(M, WidthInBytes),
        offset_of!(M, Height),
        std::mem::size_of::<M>(),
    ];
    assert_eq!(got, want, "CUDA_MEMCPY2D layout");

    let fields: unsafe extern "C" fn() -> *const std::ffi::c_char =
        emulator_symbol(b"vigilEmuCounterFields\0");
    // SAFETY: a static NUL-terminated string.
    let names = unsafe { CStr::from_ptr(fields()) }
        .to_str()
        .unwrap()
        .to_string();
    let names: Vec<&str> = names.split(',').filter(|s| !s.is_empty()).collect();
    assert_eq!(
        names,
        vigil_cuda_emu::COUNTER_FIELDS,
        "Counters field order"
    );
}

#[test]
fn the_device_says_it_is_an_emulator() {
    let ctx = emulated_context();
    let name = ctx.name().unwrap();
    assert_eq!(name, "Vigil CUDA emulator (CPU, not a GPU)");
    assert_eq!(ctx.compute_capability().unwrap(), (8, 0));
    assert!(ctx.total_mem().unwrap() >= 1 << 30);
    assert!(ctx.has_async_alloc(), "memory pools reported, like an A100");
    let a = |attr| ctx.attribute(attr).unwrap();
    use sys::CUdevice_attribute as A;
    assert_eq!(a(A::CU_DEVICE_ATTRIBUTE_WARP_SIZE), 32);
    assert_eq!(a(A::CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK), 1024);
    assert_eq!(
        a(A::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK),
        48 * 1024
    );
    assert!(vigil_cuda_emu::install().unwrap().is_emulated());
}

#[test]
fn device_work_runs_when_the_host_synchronises_and_not_before() {
    let ctx = emulated_context();
    let f = preprocess_f32(&ctx);
    let s = ctx.new_stream().unwrap();
    let n = 1000usize;
    let frames: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
    let d_frames = s.clone_htod(&frames).unwrap();
    let mut d_out = s.alloc_zeros::<f32>(n).unwrap();
    let nn = n as i64;
    let mut b = s.launch_builder(&f);
    b.arg(&d_frames).arg(&mut d_out).arg(&nn);
    // SAFETY: the arguments match preprocess_u8_f32; both buffers hold n elements.
    unsafe { b.launch(LaunchConfig::for_num_elems(n as u32)) }.unwrap();
    // SAFETY: pinned f32 host memory, fully written before it is read.
    let mut pinned = unsafe { ctx.alloc_pinned::<f32>(n) }.unwrap();
    pinned.as_mut_slice().unwrap().fill(-1.0);
    s.memcpy_dtoh(&d_out, pinned.as_mut_slice().unwrap())
        .unwrap();
    // A host read without synchronising sees what was there before: every time.
    assert!(
        pinned.as_slice().unwrap().iter().all(|&v| v == -1.0),
        "work ran before the host synchronised"
    );
    s.synchronize().unwrap();
    let got = pinned.as_slice().unwrap();
    for (i, &v) in got.iter().enumerate() {
        assert_eq!(v, frames[i] as f32 / 255.0, "element {i}");
    }
    let c = vigil_cuda_emu::stream_counters(s.cu_stream()).expect("stream counters");
    assert_eq!(c.eager_kernel_launches, 1);
    assert_eq!(c.htod_bytes, n as u64);
    assert_eq!(c.dtoh_bytes, 4 * n as u64);
    assert_eq!(c.graph_launches, 0);
}

#[test]
fn a_capture_becomes_a_graph_that_replays() {
    let ctx = emulated_context();
    let f = preprocess_f32(&ctx);
    let s = ctx.new_stream().unwrap();
    let n = 300usize;
    let mut d_frames = s.clone_htod(&vec![51u8; n]).unwrap();
    let mut d_out = s.alloc_zeros::<f32>(n).unwrap();
    s.synchronize().unwrap();
    let before = vigil_cuda_emu::stream_counters(s.cu_stream()).unwrap();
    s.begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
        .unwrap();
    s.memset_zeros(&mut d_out).unwrap();
    let nn = n as i64;
    let mut b = s.launch_builder(&f);
    b.arg(&d_frames).arg(&mut d_out).arg(&nn);
    // SAFETY: as above.
    unsafe { b.launch(LaunchConfig::for_num_elems(n as u32)) }.unwrap();
    let graph = s
        .end_capture(sys::CUgraphInstantiate_flags(0))
        .unwrap()
        .expect("a graph");
    s.synchronize().unwrap();
    assert_eq!(
        vigil_cuda_emu::stream_counters(s.cu_stream())
            .unwrap()
            .since(&before)
            .kernel_launches,
        0,
        "captured work must not run"
    );
    graph.launch().unwrap();
    assert_eq!(s.clone_dtoh(&d_out).unwrap()[7], 0.2);
    // The graph reads the buffers, not a snapshot: new inputs, same graph.
    s.memcpy_htod(&vec![255u8; n], &mut d_frames).unwrap();
    graph.launch().unwrap();
    assert_eq!(s.clone_dtoh(&d_out).unwrap()[7], 1.0);
    let c = vigil_cuda_emu::stream_counters(s.cu_stream())
        .unwrap()
        .since(&before);
    assert_eq!(c.graph_launches, 2);
    assert_eq!(c.graph_nodes, 4, "memset + kernel, twice");
    assert_eq!(c.graph_kernel_nodes, 2);
    assert_eq!(c.eager_kernel_launches, 0);
}

#[test]
fn what_a_capture_forbids_is_refused_and_invalidates_it() {
    let ctx = emulated_context();
    let s = ctx.new_stream().unwrap();
    let mut d = s.alloc_zeros::<u8>(64).unwrap();
    s.synchronize().unwrap();
    // Synchronising a capturing stream.
    s.begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
        .unwrap();
    assert_eq!(
        s.synchronize(),
        Err(DriverError(CUresult::CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED))
    );
    assert_eq!(
        s.end_capture(sys::CUgraphInstantiate_flags(0)).err(),
        Some(DriverError(CUresult::CUDA_ERROR_STREAM_CAPTURE_INVALIDATED))
    );
    // Pageable host memory in a captured copy.
    s.begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
        .unwrap();
    assert_eq!(
        s.memcpy_htod(&[1u8; 64], &mut d),
        Err(DriverError(CUresult::CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED))
    );
    assert!(s.end_capture(sys::CUgraphInstantiate_flags(0)).is_err());
    // A synchronous allocation by the capturing thread.
    s.begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
        .unwrap();
    let mut p: sys::CUdeviceptr = 0;
    // SAFETY: p is writable.
    let r = unsafe { sys::cuMemAlloc_v2(&mut p, 16) };
    assert_eq!(r, CUresult::CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
    assert!(s.end_capture(sys::CUgraphInstantiate_flags(0)).is_err());
    // The stream works normally afterwards.
    s.memset_zeros(&mut d).unwrap();
    assert_eq!(s.clone_dtoh(&d).unwrap(), vec![0u8; 64]);
}

#[test]
fn modules_must_match_the_host_build_and_the_device() {
    let ctx = emulated_context();
    let err = |src: &str| load(&ctx, src).err().map(|e| e.0);
    assert_eq!(
        err(&ptx("8.0", "sm_80", &[("no_such_kernel", &[".u64"], None)])),
        Some(CUresult::CUDA_ERROR_INVALID_IMAGE),
        "unknown kernel"
    );
    assert_eq!(
        err(&ptx(
            "8.0",
            "sm_80",
            &[("preprocess_u8_f32", &[".u64", ".u64"], None)]
        )),
        Some(CUresult::CUDA_ERROR_INVALID_IMAGE),
        "parameter list differs from the host build"
    );
    assert_eq!(
        err(&ptx(
            "8.0",
            "sm_80",
            &[("preprocess_u8_f32", &[".u64", ".u64", ".u32"], None)]
        )),
        Some(CUresult::CUDA_ERROR_INVALID_IMAGE),
        "parameter size differs from the host build"
    );
    assert_eq!(
        err(&ptx("8.0", "sm_90", &[PREPROCESS_F32])),
        Some(CUresult::CUDA_ERROR_INVALID_PTX),
        "newer target"
    );
    assert_eq!(
        err(&ptx("9.9", "sm_80", &[PREPROCESS_F32])),
        Some(CUresult::CUDA_ERROR_UNSUPPORTED_PTX_VERSION),
        "newer PTX ISA"
    );
    assert_eq!(
        err("not a module"),
        Some(CUresult::CUDA_ERROR_INVALID_IMAGE),
        "garbage"
    );
    let m = load(&ctx, &ptx("8.0", "sm_75", &[PREPROCESS_F32])).expect("older PTX targets JIT");
    assert_eq!(
        m.load_function("preprocess_u8_f16").err().map(|e| e.0),
        Some(CUresult::CUDA_ERROR_NOT_FOUND)
    );
}

#[test]
fn launches_are_checked_like_on_a_gpu() {
    let ctx = emulated_context();
    let s = ctx.new_stream().unwrap();
    let m = load(&ctx, &ptx("8.0", "sm_80", &[PREPROCESS_F32, POINTWISE_F16])).unwrap();
    let pre = m.load_function("preprocess_u8_f32").unwrap();
    let pw = m.load_function("pointwise_f16").unwrap();
    let frames = s.alloc_zeros::<u8>(16).unwrap();
    let out = s.alloc_zeros::<f32>(16).unwrap();
    let n = 16i64;
    let launch = |f: &cudarc::driver::CudaFunction,
                  grid: (u32, u32, u32),
                  block: (u32, u32, u32),
                  smem: u32| {
        let (fp, _g1) = frames.device_ptr(&s);
        let (op, _g2) = out.device_ptr(&s);
        let mut params: Vec<*mut c_void> = vec![
            &fp as *const _ as *mut c_void,
            &op as *const _ as *mut c_void,
            &n as *const _ as *mut c_void,
        ];
        // SAFETY: invalid configurations are rejected before anything reads the parameters.
        unsafe {
            sys::cuLaunchKernel(
                f.cu_function(),
                grid.0,
                grid.1,
                grid.2,
                block.0,
                block.1,
                block.2,
                smem,
                s.cu_stream(),
                params.as_mut_ptr(),
                ptr::null_mut(),
            )
        }
    };
    use CUresult::*;
    assert_eq!(
        launch(&pre, (1, 1, 1), (2048, 1, 1), 0),
        CUDA_ERROR_INVALID_VALUE,
        "block > 1024"
    );
    assert_eq!(
        launch(&pre, (1, 1, 1), (32, 32, 2), 0),
        CUDA_ERROR_INVALID_VALUE,
        "2048 threads"
    );
    assert_eq!(
        launch(&pre, (1, 70000, 1), (32, 1, 1), 0),
        CUDA_ERROR_INVALID_VALUE,
        "grid.y > 65535"
    );
    assert_eq!(
        launch(&pre, (0, 1, 1), (32, 1, 1), 0),
        CUDA_ERROR_INVALID_VALUE,
        "empty grid"
    );
    assert_eq!(
        launch(&pre, (1, 1, 1), (32, 1, 1), 64 * 1024),
        CUDA_ERROR_INVALID_VALUE,
        "64 KiB dynamic smem"
    );
    assert_eq!(
        launch(&pw, (1, 1, 1), (256, 1, 1), 0),
        CUDA_ERROR_INVALID_VALUE,
        "over __launch_bounds__(128)"
    );
    let mut v = 0i32;
    // SAFETY: v is writable.
    unsafe {
        sys::cuFuncGetAttribute(
            &mut v,
            sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK,
            pw.cu_function(),
        )
    }
    .result()
    .unwrap();
    assert_eq!(v, 128);
    assert_eq!(launch(&pre, (1, 1, 1), (32, 1, 1), 0), CUDA_SUCCESS);
    s.synchronize().unwrap();
    drop(out);
}

#[test]
fn bad_pointers_in_copies_are_the_drivers_errors() {
    let ctx = emulated_context();
    let s = ctx.new_stream().unwrap();
    let d = s.alloc_zeros::<u8>(100).unwrap();
    let (p, _g) = d.device_ptr(&s);
    let host = [0u8; 200];
    use CUresult::*;
    // SAFETY: every call below is rejected before it touches memory.
    unsafe {
        assert_eq!(
            sys::cuMemcpyHtoDAsync_v2(p, host.as_ptr() as _, 101, s.cu_stream()),
            CUDA_ERROR_INVALID_VALUE,
            "past the end"
        );
        assert_eq!(
            sys::cuMemcpyHtoDAsync_v2(p + 4096, host.as_ptr() as _, 1, s.cu_stream()),
            CUDA_ERROR_INVALID_VALUE,
            "outside"
        );
        assert_eq!(
            sys::cuMemsetD8Async(p + 50, 0, 51, s.cu_stream()),
            CUDA_ERROR_INVALID_VALUE,
            "memset past the end"
        );
        assert_eq!(
            sys::cuMemFreeAsync(p + 8, s.cu_stream()),
            CUDA_ERROR_INVALID_VALUE,
            "free inside"
        );
        assert_eq!(
            sys::cuMemcpyHtoDAsync_v2(p, host.as_ptr() as _, 100, s.cu_stream()),
            CUDA_SUCCESS
        );
    }
    s.synchronize().unwrap();
}

#[test]
fn a_stream_waits_for_another_streams_event() {
    let ctx = emulated_context();
    let a = ctx.new_stream().unwrap();
    let b = ctx.new_stream().unwrap();
    let mut d = a.alloc_zeros::<u8>(8).unwrap();
    a.synchronize().unwrap();
    a.memcpy_htod(&[9u8; 8], &mut d).unwrap();
    let ev = a.record_event(None).unwrap();
    b.wait(&ev).unwrap();
    let mut out = b.alloc_zeros::<u8>(8).unwrap();
    b.memcpy_dtod(&d, &mut out).unwrap();
    // Synchronising b alone runs a up to the event first.
    assert_eq!(b.clone_dtoh(&out).unwrap(), vec![9u8; 8]);
}
