//! The emulated driver and NVRTC's real output: the PTX NVRTC emits for compute_80 (the
//! CUBIN for sm_80 is what `CudaKernels` loads; every GPU test runs it) loads, every
//! kernel's `.entry` matches the emulator's host build, and a kernel from it runs; a CUBIN
//! for sm_90 is refused the way an sm_80 GPU refuses it. Always on the emulator.

use vigil_kernels::cuda::cudarc::driver::sys::CUresult;
use vigil_kernels::cuda::cudarc::driver::{LaunchConfig, PushKernelArg};
use vigil_kernels::cuda::cudarc::nvrtc::Ptx;
use vigil_kernels::cuda::{self, nvrtc};

#[test]
fn nvrtc_ptx_loads_and_runs_and_a_newer_cubin_is_refused() {
    vigil_cuda_emu::install_emulator().unwrap_or_else(|e| panic!("{e}"));
    let ctx = cuda::open_context(0).expect("emulated device");
    let ptx = nvrtc::compile_cached("compute_80").expect("NVRTC compute_80");
    assert!(!ptx.is_cubin);
    let module = ctx
        .load_module(Ptx::from_binary(ptx.image.clone()))
        .expect("the emulator loads NVRTC's PTX");
    for name in nvrtc::KERNEL_NAMES {
        module
            .load_function(name)
            .unwrap_or_else(|e| panic!("{name} from the PTX: {e}"));
    }
    let f = module.load_function("preprocess_u8_f32").unwrap();
    let s = ctx.new_stream().unwrap();
    let frames: Vec<u8> = (0..=255).collect();
    let d_frames = s.clone_htod(&frames).unwrap();
    let mut d_out = s.alloc_zeros::<f32>(256).unwrap();
    let n = 256i64;
    let mut b = s.launch_builder(&f);
    b.arg(&d_frames).arg(&mut d_out).arg(&n);
    // SAFETY: the arguments match preprocess_u8_f32; both buffers hold 256 elements.
    unsafe { b.launch(LaunchConfig::for_num_elems(256)) }.unwrap();
    let out = s.clone_dtoh(&d_out).unwrap();
    assert!(out.iter().enumerate().all(|(i, &v)| v == i as f32 / 255.0));

    let sm90 = nvrtc::compile_cached("sm_90").expect("NVRTC sm_90");
    assert!(sm90.is_cubin);
    let err = ctx
        .load_module(Ptx::from_binary(sm90.image.clone()))
        .expect_err("an sm_90 CUBIN cannot run on an sm_80 device");
    assert_eq!(err.0, CUresult::CUDA_ERROR_NO_BINARY_FOR_GPU);
}
