//! Race mode: every kernel of kernels/cuda, in fp16 and fp32, at small sizes that span
//! several blocks, warps and shared-memory tiles, with one OS thread per CUDA thread
//! under ThreadSanitizer (`vigil_cuda_emu::race_check`, cases in
//! kernels/emu/cpp/race_main.cpp). `__syncthreads` and mma.sync are the only edges that
//! order threads, as on a GPU, so a missing barrier is reported as a data race and this
//! test fails with TSan's report. Needs g++ and libtsan (scripts/setup.sh); no GPU.

#[test]
fn every_kernel_is_race_free_under_threadsanitizer() {
    let r = vigil_cuda_emu::race_check(None).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        r.clean,
        "the race check failed ({}):\n{}",
        r.command, r.output
    );
    let ran = r.output.lines().filter(|l| l.ends_with(" ran")).count();
    assert!(ran >= 18, "only {ran} kernel launches ran:\n{}", r.output);
    eprintln!("{}", r.output.lines().last().unwrap_or_default());
}
