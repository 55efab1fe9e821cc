//! The emulated driver's memory checks catch what compute-sanitizer's memcheck would, and
//! make the test that hits them fail: a kernel writing past the end of an allocation (into
//! the guard page, or only into the red zone before it), a kernel handed a freed pointer,
//! a stream-ordered free that runs before a kernel on another stream still using the
//! memory (a missing cross-stream dependency), and host code touching freed pinned memory.
//!
//! Every case aborts the process it runs in, with a report naming the kernel or call, the
//! thread, the pointer and the allocation. So each runs in a child process — this test
//! binary re-executed with `VIGIL_EMU_MISUSE=<case>` — and the parent checks that the child
//! died by SIGABRT with the expected report. Always on the emulator.

mod common;
use common::*;

use std::ffi::c_void;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitCode};
use std::ptr;

use cudarc::driver::sys;
use cudarc::driver::{CudaFunction, CudaStream, DevicePtr};

/// (case, what the report must say)
const CASES: &[(&str, &[&str])] = &[
    (
        "kernel-writes-past-the-end",
        &[
            "invalid memory write at",
            "0 bytes past the end of allocation #",
            "by CUDA thread (0,0,0) of block (",
            "kernel preprocess_u8_f32",
        ],
    ),
    (
        "kernel-writes-into-the-red-zone",
        &[
            "kernel preprocess_u8_f32",
            "wrote up to 40 bytes past the end of allocation #",
            "400 bytes",
        ],
    ),
    (
        "kernel-gets-a-freed-pointer",
        &[
            "kernel preprocess_u8_f32, parameter #1 (a pointer)",
            "use after free",
            "freed by cuMemFreeAsync",
        ],
    ),
    (
        "free-on-another-stream-runs-first",
        &[
            "kernel preprocess_u8_f32",
            "use after free",
            "freed by cuMemFreeAsync (stream-ordered)",
        ],
    ),
    (
        "host-writes-freed-pinned-memory",
        &[
            "invalid memory write at",
            "use after free",
            "pinned host",
            "freed by cuMemFreeHost",
            "in host code",
        ],
    ),
];

fn main() -> ExitCode {
    if let Ok(case) = std::env::var("VIGIL_EMU_MISUSE") {
        child(&case);
        eprintln!("misuse case {case} ran to the end: it was NOT caught");
        return ExitCode::SUCCESS;
    }
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let exe = std::env::current_exe().expect("own path");
    let mut failed = 0;
    let mut ran = 0;
    println!(
        "\nrunning {} misuse cases, each in a child process",
        CASES.len()
    );
    for (case, expect) in CASES {
        if filter.as_deref().is_some_and(|f| !case.contains(f)) {
            continue;
        }
        ran += 1;
        // The child aborts on purpose: no core file for it.
        let out = Command::new("sh")
            .args(["-c", "ulimit -c 0; exec \"$0\""])
            .arg(&exe)
            .env("VIGIL_EMU_MISUSE", case)
            .output()
            .expect("run the child");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let missing: Vec<&&str> = expect.iter().filter(|e| !stderr.contains(**e)).collect();
        let aborted = out.status.signal() == Some(libc_sigabrt());
        if aborted && missing.is_empty() {
            println!("test sanitizer::{case} ... ok (aborted with the report)");
        } else {
            failed += 1;
            println!(
                "test sanitizer::{case} ... FAILED: status {:?}, aborted {aborted}, missing {missing:?}\n--- child stderr ---\n{stderr}",
                out.status
            );
        }
        if std::env::args().any(|a| a == "--nocapture") {
            println!("{stderr}");
        }
    }
    println!(
        "\ntest result: {}. {} passed; {failed} failed\n",
        if failed == 0 { "ok" } else { "FAILED" },
        ran - failed
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

const fn libc_sigabrt() -> i32 {
    6
}

/// Launch `f` = preprocess_u8_f32(frames, out, n) with raw pointers (the safe API would
/// refuse the deliberately wrong sizes).
fn launch_preprocess(s: &CudaStream, f: &CudaFunction, frames: u64, out: u64, n: i64) {
    let mut params: Vec<*mut c_void> = vec![
        &frames as *const u64 as *mut c_void,
        &out as *const u64 as *mut c_void,
        &n as *const i64 as *mut c_void,
    ];
    let blocks = (n as u32).div_ceil(256);
    // SAFETY: the parameter list matches the kernel; the pointers are deliberately bad,
    // which is what the emulator must catch.
    unsafe {
        sys::cuLaunchKernel(
            f.cu_function(),
            blocks,
            1,
            1,
            256,
            1,
            1,
            0,
            s.cu_stream(),
            params.as_mut_ptr(),
            ptr::null_mut(),
        )
    }
    .result()
    .expect("launch");
}

fn child(case: &str) {
    let ctx = emulated_context();
    let f = preprocess_f32(&ctx);
    let s = ctx.new_stream().unwrap();
    match case {
        "kernel-writes-past-the-end" => {
            // out holds 1024 floats; the kernel writes 8192.
            let frames = s.alloc_zeros::<u8>(8192).unwrap();
            let out = s.alloc_zeros::<f32>(1024).unwrap();
            let (fp, _a) = frames.device_ptr(&s);
            let (op, _b) = out.device_ptr(&s);
            launch_preprocess(&s, &f, fp, op, 8192);
            s.synchronize().unwrap();
        }
        "kernel-writes-into-the-red-zone" => {
            // 100 floats (400 bytes, 512 with CUDA's 256-byte rounding); 110 written: the
            // 40 extra bytes stay inside the allocation's pages, in its red zone.
            let frames = s.alloc_zeros::<u8>(110).unwrap();
            let out = s.alloc_zeros::<f32>(100).unwrap();
            let (fp, _a) = frames.device_ptr(&s);
            let (op, _b) = out.device_ptr(&s);
            launch_preprocess(&s, &f, fp, op, 110);
            s.synchronize().unwrap();
        }
        "kernel-gets-a-freed-pointer" => {
            let frames = s.alloc_zeros::<u8>(256).unwrap();
            let out = s.alloc_zeros::<f32>(256).unwrap();
            let (fp, _a) = frames.device_ptr(&s);
            let op = {
                let (op, _b) = out.device_ptr(&s);
                op
            };
            drop(out); // stream-ordered free
            s.synchronize().unwrap();
            launch_preprocess(&s, &f, fp, op, 256);
            s.synchronize().unwrap();
        }
        "free-on-another-stream-runs-first" => {
            // The kernel is queued on `s`, the free on `other` — with no event between
            // them. Synchronising `other` first frees the memory under the kernel.
            let other = ctx.new_stream().unwrap();
            let frames = s.alloc_zeros::<u8>(256).unwrap();
            let mut op: sys::CUdeviceptr = 0;
            // SAFETY: op is writable; the stream is valid.
            unsafe { sys::cuMemAllocAsync(&mut op, 1024, s.cu_stream()) }
                .result()
                .unwrap();
            s.synchronize().unwrap();
            let (fp, _a) = frames.device_ptr(&s);
            launch_preprocess(&s, &f, fp, op, 256);
            // SAFETY: op is a live allocation; freeing it while a kernel still needs it
            // is the bug under test.
            unsafe { sys::cuMemFreeAsync(op, other.cu_stream()) }
                .result()
                .unwrap();
            other.synchronize().unwrap();
            s.synchronize().unwrap();
        }
        "host-writes-freed-pinned-memory" => {
            let mut p: *mut c_void = ptr::null_mut();
            // SAFETY: p is writable; then the freed memory is written on purpose.
            unsafe {
                sys::cuMemHostAlloc(&mut p, 4096, 0).result().unwrap();
                sys::cuMemFreeHost(p).result().unwrap();
                std::ptr::write_volatile(p as *mut u32, 1);
            }
        }
        other => panic!("unknown misuse case {other}"),
    }
}
