//! Building the emulator from the project's sources, on demand, into `target/`.
//!
//! Inputs: the emulator's C++ (`kernels/emu/cpp`) and the kernel sources NVRTC compiles
//! (`kernels/cuda/*.cu`, `*.cuh`). The kernel registry is generated from the `.cu` files
//! (every `extern "C" __global__` definition), so a new kernel needs no emulator change.
//! A build lands in `<target>/vigil-cuda-emu/<variant>-<hash>/`, where the hash covers every
//! input file, the compiler and its flags, and the CPU (`-march=native`): a stale build is
//! never used, an up-to-date one is never rebuilt. Builds go to a temporary directory that
//! is renamed into place, so concurrent test processes cannot see a half-written library.
//!
//! Needs a C++20 `g++` (Debian 12: g++ 12, installed by `scripts/setup.sh`); the race
//! variant also needs ThreadSanitizer's runtime (`libtsan2`, a dependency of g++ 12).

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::EmuError;

/// What to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// `libcuda.so` (SONAME `libcuda.so`, plus a `libcuda.so.1` link): the emulated driver,
    /// CUDA threads on fibers, optimised for the host CPU; device sm_80 unless
    /// `VIGIL_EMU_SM` says otherwise (see [`Variant::sm`]).
    Driver,
    /// `vigil-emu-race`: every kernel at small sizes under ThreadSanitizer, one OS thread
    /// per CUDA thread (see `cpp/race_main.cpp`).
    Race,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Driver => "driver",
            Variant::Race => "race",
        }
    }

    /// The file the build produces.
    pub fn artifact(self) -> &'static str {
        match self {
            Variant::Driver => "libcuda.so",
            Variant::Race => "vigil-emu-race",
        }
    }

    fn sources(self) -> &'static [&'static str] {
        match self {
            Variant::Driver => &[
                "kernels.cpp",
                "driver.cpp",
                "queue.cpp",
                "image.cpp",
                "exec_fibers.cpp",
                "fiber.cpp",
                "memory.cpp",
                "report.cpp",
            ],
            Variant::Race => &[
                "kernels.cpp",
                "exec_threads.cpp",
                "race_main.cpp",
                "report.cpp",
            ],
        }
    }

    fn cflags(self, sm: u32) -> Vec<String> {
        let mut f: Vec<String> = [
            "-std=c++20",
            "-pthread",
            "-Wall",
            "-Wextra",
            "-Wno-unknown-pragmas", // #pragma unroll
            "-Wno-unused-parameter",
            "-ffp-contract=fast", // a*b+c fused, like NVRTC's default --fmad=true
        ]
        .map(String::from)
        .to_vec();
        // The kernels see the emulated device's architecture (sm_80: the tensor-core path).
        f.push(format!("-D__CUDA_ARCH__={}", sm * 10));
        f.push(format!("-DVIGIL_EMU_SM={sm}"));
        let extra: &[&str] = match self {
            Variant::Driver => &[
                "-O3",
                "-march=native",
                "-g1",
                "-fPIC",
                "-fvisibility=hidden",
                "-mtls-dialect=gnu2", // TLS descriptors: cheap thread-locals in a dlopen()ed library
            ],
            Variant::Race => &["-O1", "-g", "-fsanitize=thread", "-DVIGIL_EMU_OS_THREADS=1"],
        };
        f.extend(extra.iter().map(|s| s.to_string()));
        f
    }

    /// The compute capability (major*10+minor) of the emulated device: sm_80, or for the
    /// driver `$VIGIL_EMU_SM` (75 runs the kernels' pre-Ampere paths; 80, 86, 89, 90).
    pub fn sm(self) -> Result<u32, EmuError> {
        if self == Variant::Race {
            return Ok(80);
        }
        match std::env::var("VIGIL_EMU_SM") {
            Err(_) => Ok(80),
            Ok(v) => match v.trim().parse::<u32>() {
                Ok(sm @ (75 | 80 | 86 | 89 | 90)) => Ok(sm),
                _ => Err(EmuError::Build {
                    what: "VIGIL_EMU_SM".into(),
                    log: format!("{v:?} is not one of 75, 80, 86, 89, 90"),
                }),
            },
        }
    }
}

/// The source tree the emulator is built from.
fn cpp_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("cpp")
}

fn cuda_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cuda");
    d.canonicalize().unwrap_or(d)
}

/// Where builds go: `$VIGIL_CUDA_EMU_DIR`, else `vigil-cuda-emu/` in the cargo target
/// directory this program runs from (the parent of the profile directory, which holds
/// cargo's `.cargo-lock`), else the workspace's `target/`.
pub fn build_root() -> PathBuf {
    if let Some(d) = std::env::var_os("VIGIL_CUDA_EMU_DIR") {
        return PathBuf::from(d);
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(profile) = exe.ancestors().find(|a| a.join(".cargo-lock").is_file()) {
            if let Some(target) = profile.parent() {
                return target.join("vigil-cuda-emu");
            }
        }
    }
    let ws = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    ws.canonicalize()
        .unwrap_or(ws)
        .join("target/vigil-cuda-emu")
}

fn compiler() -> String {
    std::env::var("CXX").unwrap_or_else(|_| "g++".to_string())
}

/// FNV-1a, 64 bits: a stable content hash for the build key.
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn add(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // separator, so ("ab", "c") and ("a", "bc") differ
        self.0 ^= 0xff;
        self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> EmuError {
    let what = what.into();
    move |source| EmuError::Io { what, source }
}

/// Every input file, sorted: (path, contents).
fn inputs() -> Result<Vec<(PathBuf, Vec<u8>)>, EmuError> {
    let mut files = Vec::new();
    let mut dirs = vec![cpp_dir(), cuda_dir()];
    while let Some(dir) = dirs.pop() {
        let rd = fs::read_dir(&dir).map_err(io_err(format!("read {}", dir.display())))?;
        for e in rd {
            let p = e.map_err(io_err(format!("read {}", dir.display())))?.path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                let bytes = fs::read(&p).map_err(io_err(format!("read {}", p.display())))?;
                files.push((p, bytes));
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The CPU model and feature flags (the driver build uses `-march=native`).
fn cpu_signature() -> String {
    let info = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    info.lines()
        .filter(|l| l.starts_with("model name") || l.starts_with("flags"))
        .take(2)
        .collect::<Vec<_>>()
        .join("\n")
}

fn compiler_version(cxx: &str) -> Result<String, EmuError> {
    let out = Command::new(cxx)
        .arg("--version")
        .output()
        .map_err(|e| EmuError::Compiler {
            cxx: cxx.to_string(),
            why: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(EmuError::Compiler {
            cxx: cxx.to_string(),
            why: format!("`{cxx} --version` failed"),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The `extern "C" __global__` kernels defined in one CUDA source (comments ignored).
pub fn kernel_names(src: &str) -> Vec<String> {
    let text = strip_comments(src);
    let mut out = Vec::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("__global__") {
        let before = rest[..i].trim_end();
        let after = &rest[i + "__global__".len()..];
        rest = after;
        if !before.ends_with("extern \"C\"") {
            continue;
        }
        let mut t = after.trim_start();
        let Some(r) = t.strip_prefix("void") else {
            continue;
        };
        t = r.trim_start();
        if let Some(r) = t.strip_prefix("__launch_bounds__") {
            let r = r.trim_start();
            let mut depth = 0usize;
            let mut end = None;
            for (j, c) in r.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            end = Some(j + 1);
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let Some(end) = end else { continue };
            t = r[end..].trim_start();
        }
        let name: String = t
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() && t[name.len()..].trim_start().starts_with('(') {
            out.push(name);
        }
    }
    out
}

fn strip_comments(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut chars = src.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '/' && chars.peek() == Some(&'/') {
            for n in chars.by_ref() {
                if n == '\n' {
                    out.push('\n');
                    break;
                }
            }
        } else if c == '/' && chars.peek() == Some(&'*') {
            chars.next();
            let mut prev = ' ';
            for n in chars.by_ref() {
                if prev == '*' && n == '/' {
                    break;
                }
                prev = n;
            }
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    out
}

/// The generated registry inputs: `kernel_sources.inc` and `kernel_list.inc`.
fn generated(files: &[(PathBuf, Vec<u8>)]) -> Result<(String, String), EmuError> {
    let mut sources = String::new();
    let mut list = String::new();
    let cuda = cuda_dir();
    for (path, bytes) in files {
        if path.parent() != Some(cuda.as_path())
            || path.extension().and_then(|e| e.to_str()) != Some("cu")
        {
            continue;
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let _ = writeln!(sources, "#include \"{name}\"");
        for k in kernel_names(&String::from_utf8_lossy(bytes)) {
            let _ = writeln!(list, "VIGIL_EMU_KERNEL({k})");
        }
    }
    if list.is_empty() {
        return Err(EmuError::Build {
            what: "kernel registry".into(),
            log: format!(
                "no extern \"C\" __global__ kernels found in {}",
                cuda.display()
            ),
        });
    }
    Ok((sources, list))
}

/// Build `variant` unless an up-to-date build exists; returns the path of its artifact.
pub fn build(variant: Variant) -> Result<PathBuf, EmuError> {
    let cxx = compiler();
    let version = compiler_version(&cxx)?;
    let files = inputs()?;
    let mut h = Fnv::new();
    let sm = variant.sm()?;
    h.add(variant.name().as_bytes());
    h.add(version.as_bytes());
    h.add(cxx.as_bytes());
    for f in variant.cflags(sm) {
        h.add(f.as_bytes());
    }
    if variant == Variant::Driver {
        h.add(cpu_signature().as_bytes());
    }
    for (path, bytes) in &files {
        h.add(
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
                .as_bytes(),
        );
        h.add(bytes);
    }
    let root = build_root();
    let out = root.join(format!("{}-sm{sm}-{:016x}", variant.name(), h.0));
    let artifact = out.join(variant.artifact());
    if artifact.is_file() {
        return Ok(artifact);
    }
    fs::create_dir_all(&root).map_err(io_err(format!("create {}", root.display())))?;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let tmp = root.join(format!(
        ".tmp-{}-{}-{nanos}",
        variant.name(),
        std::process::id()
    ));
    let result = build_into(variant, sm, &cxx, &files, &tmp);
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    // Another process may have finished the same build first: theirs is as good.
    if fs::rename(&tmp, &out).is_err() {
        let _ = fs::remove_dir_all(&tmp);
        if !artifact.is_file() {
            return Err(EmuError::Build {
                what: out.display().to_string(),
                log: "could not move the finished build into place".into(),
            });
        }
    }
    prune_stale(&root, &out, &format!("{}-sm{sm}-", variant.name()));
    Ok(artifact)
}

/// Remove older builds of the same variant (built from sources that have changed since),
/// so a working tree's target directory keeps one build per variant. A process still
/// using a removed library keeps its mapping; only the directory entries go.
fn prune_stale(root: &Path, keep: &Path, prefix: &str) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name();
        if p != keep && name.to_string_lossy().starts_with(prefix) {
            let _ = fs::remove_dir_all(&p);
        }
    }
}

fn run(cmd: &mut Command, what: &str) -> Result<(), EmuError> {
    let out = cmd.output().map_err(|e| EmuError::Build {
        what: what.to_string(),
        log: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(EmuError::Build {
            what: what.to_string(),
            log: format!(
                "{:?}\n{}{}",
                cmd,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        });
    }
    Ok(())
}

fn build_into(
    variant: Variant,
    sm: u32,
    cxx: &str,
    files: &[(PathBuf, Vec<u8>)],
    dir: &Path,
) -> Result<(), EmuError> {
    fs::create_dir_all(dir).map_err(io_err(format!("create {}", dir.display())))?;
    let (sources, list) = generated(files)?;
    let write = |name: &str, text: &str| {
        fs::write(dir.join(name), text)
            .map_err(io_err(format!("write {}", dir.join(name).display())))
    };
    write("kernel_sources.inc", &sources)?;
    write("kernel_list.inc", &list)?;
    write(
        "exports.map",
        "{\n  global: cu*; vigilEmu*;\n  local: *;\n};\n",
    )?;
    let (cpp, cuda) = (cpp_dir(), cuda_dir());
    let include = |c: &mut Command| {
        c.arg("-I").arg(cpp.join("include")); // cuda_fp16.h: the host shim, first
        c.arg("-I").arg(&cpp);
        c.arg("-I").arg(&cuda);
        c.arg("-I").arg(dir);
    };
    // Compile the translation units in parallel, then link.
    let objects: Vec<PathBuf> = variant
        .sources()
        .iter()
        .map(|s| dir.join(Path::new(s).with_extension("o")))
        .collect();
    let results: Vec<Result<(), EmuError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = variant
            .sources()
            .iter()
            .zip(&objects)
            .map(|(src, obj)| {
                let include = &include;
                let cpp = &cpp;
                scope.spawn(move || {
                    let mut c = Command::new(cxx);
                    c.args(variant.cflags(sm));
                    if *src == "kernels.cpp" {
                        // The kernels reinterpret __half rows as u32/uint4 (fine in CUDA).
                        c.arg("-fno-strict-aliasing");
                    }
                    include(&mut c);
                    c.arg("-c").arg(cpp.join(src)).arg("-o").arg(obj);
                    run(&mut c, &format!("compile {src}"))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(EmuError::Build {
                        what: "compile".into(),
                        log: "a compiler thread panicked".into(),
                    })
                })
            })
            .collect()
    });
    for r in results {
        r?;
    }
    let artifact = dir.join(variant.artifact());
    let mut link = Command::new(cxx);
    link.args(variant.cflags(sm));
    link.args(&objects);
    match variant {
        Variant::Driver => {
            link.args(["-shared", "-Wl,-soname,libcuda.so", "-Wl,-z,defs"]);
            link.arg(format!(
                "-Wl,--version-script={}",
                dir.join("exports.map").display()
            ));
        }
        Variant::Race => {}
    }
    link.arg("-o").arg(&artifact);
    run(&mut link, &format!("link {}", variant.artifact()))?;
    for o in &objects {
        let _ = fs::remove_file(o);
    }
    if variant == Variant::Driver {
        // For LD_LIBRARY_PATH users that open the versioned name.
        std::os::unix::fs::symlink("libcuda.so", dir.join("libcuda.so.1")).map_err(io_err(
            format!("link {}", dir.join("libcuda.so.1").display()),
        ))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_names_follow_extern_c_global_definitions() {
        let src = r#"
            // extern "C" __global__ void commented_out(int x) {}
            /* extern "C" __global__ void also_not(int) */
            template <typename T> __global__ void templated(T*) {}
            extern "C" __global__ void plain(const float* x, int n) {}
            extern "C" __global__ void __launch_bounds__(128, 2)
                bounded(int a) {}
            extern "C" __global__ void MACRO_ARGS(float) {}
        "#;
        assert_eq!(kernel_names(src), ["plain", "bounded", "MACRO_ARGS"]);
    }

    #[test]
    fn every_kernel_of_the_sources_is_found() {
        let files = inputs().expect("inputs");
        let (sources, list) = generated(&files).expect("generated");
        for name in ["pointwise.cu", "temporal.cu", "reduce.cu"] {
            assert!(sources.contains(name), "{sources}");
        }
        for k in [
            "pointwise_f16",
            "pointwise_f32",
            "temporal_causal_f16",
            "channel_gate_f32",
        ] {
            assert!(list.contains(&format!("VIGIL_EMU_KERNEL({k})")), "{list}");
        }
    }
}
