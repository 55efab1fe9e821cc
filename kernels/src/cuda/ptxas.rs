//! The static resource gate: ptxas's per-kernel resource report, read from NVRTC.
//!
//! Compiling to a CUBIN (`--gpu-architecture=sm_XY`) makes NVRTC run ptxas, the real SASS
//! assembler; with `--ptxas-options=-v` ptxas writes, per entry function, its registers,
//! static shared memory, stack frame and spill traffic into the NVRTC program log:
//!
//! ```text
//! ptxas info    : Compiling entry function 'pointwise_f16' for 'sm_80'
//! ptxas info    : Function properties for pointwise_f16
//! ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
//! ptxas info    : Used 70 registers, used 1 barriers, 10240 bytes smem, 424 bytes cmem[0]
//! ```
//!
//! Main items: [`resource_report`] (compile one arch and parse) → [`ResourceReport`]
//! (one [`KernelResources`] per kernel with its [`Occupancy`] at the launch block size),
//! [`parse_ptxas_log`], [`ResourceReport::violations`] (what the CI gate
//! `kernels/tests/ptxas_gate.rs` fails on: any spill, any stack frame, any kernel that
//! cannot be resident) and [`markdown_table`] (the table in BENCHMARKS.md). These are
//! compiler reports — no device is involved and nothing here is a measurement.

use std::path::Path;

use super::nvrtc::{self, KERNEL_NAMES};
use super::occupancy::{launch_block_threads, occupancy, ArchLimits, Occupancy};
use super::KernelError;

/// The NVRTC option that makes ptxas report resources.
pub const PTXAS_VERBOSE: &str = "--ptxas-options=-v";

/// What ptxas reported for one function compiled for one architecture.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelResources {
    pub name: String,
    /// `sm_XY`
    pub arch: String,
    /// True for a `__global__` entry; false for a non-inlined device function.
    pub entry: bool,
    pub registers: u32,
    pub barriers: u32,
    /// Static shared memory, bytes.
    pub shared_bytes: u32,
    /// Local-memory stack frame, bytes.
    pub stack_frame: u32,
    pub spill_stores: u32,
    pub spill_loads: u32,
    /// Stack including callees (ptxas prints it only when non-zero).
    pub cumulative_stack: u32,
}

impl KernelResources {
    /// Spills or local-memory stack, as a sentence; `None` when clean.
    pub fn local_memory_use(&self) -> Option<String> {
        if self.stack_frame == 0
            && self.spill_stores == 0
            && self.spill_loads == 0
            && self.cumulative_stack == 0
        {
            return None;
        }
        Some(format!(
            "{} bytes stack frame ({} cumulative), {} bytes spill stores, {} bytes spill loads \
             at {} registers",
            self.stack_frame,
            self.cumulative_stack,
            self.spill_stores,
            self.spill_loads,
            self.registers
        ))
    }
}

/// A kernel's resources plus its theoretical occupancy at its launch block size.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelReport {
    pub resources: KernelResources,
    /// `None` when the kernel has no known launch block size.
    pub occupancy: Option<Occupancy>,
}

/// ptxas's report for every kernel of the program, for one architecture.
#[derive(Debug, Clone)]
pub struct ResourceReport {
    pub arch: ArchLimits,
    /// Entry functions in [`KERNEL_NAMES`] order, then any others.
    pub kernels: Vec<KernelReport>,
    /// Non-inlined device functions ptxas reported (normally none).
    pub functions: Vec<KernelResources>,
    /// The options NVRTC was given.
    pub options: Vec<String>,
    /// NVRTC's whole log.
    pub log: String,
}

fn number_before(line: &str, unit: &str) -> Option<u32> {
    let head = &line[..line.find(unit)?];
    head.split(|c: char| !c.is_ascii_digit())
        .rfind(|s| !s.is_empty())?
        .parse()
        .ok()
}

fn quoted(line: &str, n: usize) -> Option<&str> {
    line.split('\'').nth(2 * n + 1)
}

fn parse_error(arch: &str, why: String, log: &str) -> KernelError {
    KernelError::Compile {
        program: nvrtc::PROGRAM_NAME.into(),
        arch: arch.into(),
        status: format!("cannot read ptxas's resource report: {why}"),
        options: vec![PTXAS_VERBOSE.into()],
        log: log.into(),
    }
}

/// Parse the ptxas `-v` lines of an NVRTC log compiled for `arch` (`sm_XY`): one record
/// per function, entries flagged. Fails when a function's report is incomplete (a
/// format this parser does not know must not pass the gate silently).
pub fn parse_ptxas_log(log: &str, arch: &str) -> Result<Vec<KernelResources>, KernelError> {
    let mut out: Vec<KernelResources> = Vec::new();
    // index in `out` of the function the next properties / usage lines belong to
    let mut properties_of: Option<usize> = None;
    let mut usage_of: Option<usize> = None;
    let mut seen_usage: Vec<bool> = Vec::new();
    let index_of = |out: &mut Vec<KernelResources>, seen: &mut Vec<bool>, name: &str| match out
        .iter()
        .position(|k| k.name == name)
    {
        Some(i) => i,
        None => {
            out.push(KernelResources {
                name: name.to_string(),
                arch: arch.to_string(),
                ..Default::default()
            });
            seen.push(false);
            out.len() - 1
        }
    };
    for line in log.lines() {
        let line = line.trim_end();
        if line.contains("Compiling entry function") {
            let name = quoted(line, 0)
                .ok_or_else(|| parse_error(arch, format!("no kernel name in `{line}`"), log))?;
            let for_arch = quoted(line, 1).unwrap_or(arch);
            if for_arch != arch {
                return Err(parse_error(
                    arch,
                    format!("`{name}` was compiled for {for_arch}"),
                    log,
                ));
            }
            let i = index_of(&mut out, &mut seen_usage, name);
            out[i].entry = true;
            usage_of = Some(i);
            properties_of = Some(i);
        } else if let Some(rest) = line.split("Function properties for ").nth(1) {
            let i = index_of(&mut out, &mut seen_usage, rest.trim());
            properties_of = Some(i);
        } else if line.contains("bytes stack frame") {
            let i = properties_of
                .ok_or_else(|| parse_error(arch, format!("`{line}` names no function"), log))?;
            let k = &mut out[i];
            k.stack_frame = number_before(line, "bytes stack frame").unwrap_or(0);
            k.spill_stores = number_before(line, "bytes spill stores").unwrap_or(0);
            k.spill_loads = number_before(line, "bytes spill loads").unwrap_or(0);
        } else if line.contains("Used ") && line.contains(" registers") {
            let i = usage_of
                .ok_or_else(|| parse_error(arch, format!("`{line}` names no kernel"), log))?;
            let k = &mut out[i];
            k.registers = number_before(line, " registers")
                .ok_or_else(|| parse_error(arch, format!("no register count in `{line}`"), log))?;
            k.barriers = number_before(line, " barriers").unwrap_or(0);
            k.shared_bytes = number_before(line, " bytes smem").unwrap_or(0);
            k.cumulative_stack = number_before(line, " bytes cumulative stack size").unwrap_or(0);
            seen_usage[i] = true;
            usage_of = None;
        }
    }
    if let Some(k) = out
        .iter()
        .zip(&seen_usage)
        .find(|(k, seen)| k.entry && !**seen)
    {
        return Err(parse_error(
            arch,
            format!("no `Used N registers` line for `{}`", k.0.name),
            log,
        ));
    }
    Ok(out)
}

/// Compile every kernel for `arch` (`sm_80`, `sm_86`, `sm_89` or `sm_90`) with ptxas's
/// resource report on (plus `extra` NVRTC options), parse it and compute each kernel's
/// occupancy at its launch block size. Needs libnvrtc only.
pub fn resource_report(arch: &str, extra: &[&str]) -> Result<ResourceReport, KernelError> {
    nvrtc::nvrtc_available()?;
    let include = nvrtc::find_include_dir()?;
    resource_report_with(arch, &include, extra)
}

/// [`resource_report`] with an explicit include directory for `cuda_fp16.h`.
pub fn resource_report_with(
    arch: &str,
    include: &Path,
    extra: &[&str],
) -> Result<ResourceReport, KernelError> {
    let limits = ArchLimits::of(arch).ok_or_else(|| KernelError::Compile {
        program: nvrtc::PROGRAM_NAME.into(),
        arch: arch.into(),
        status: "the resource report knows the limits of sm_80, sm_86, sm_89 and sm_90 only".into(),
        options: Vec::new(),
        log: String::new(),
    })?;
    let mut options = vec![PTXAS_VERBOSE];
    options.extend_from_slice(extra);
    let compiled = nvrtc::compile_for_with(arch, include, &options)?;
    let parsed = parse_ptxas_log(&compiled.log, arch)?;
    let (mut entries, functions): (Vec<_>, Vec<_>) = parsed.into_iter().partition(|k| k.entry);
    let missing: Vec<&str> = KERNEL_NAMES
        .iter()
        .copied()
        .filter(|n| !entries.iter().any(|k| k.name == *n))
        .collect();
    if !missing.is_empty() {
        return Err(parse_error(
            arch,
            format!("ptxas reported nothing for {missing:?}"),
            &compiled.log,
        ));
    }
    let rank = |name: &str| {
        KERNEL_NAMES
            .iter()
            .position(|n| *n == name)
            .unwrap_or(usize::MAX)
    };
    entries.sort_by(|a, b| rank(&a.name).cmp(&rank(&b.name)).then(a.name.cmp(&b.name)));
    let kernels = entries
        .into_iter()
        .map(|r| KernelReport {
            occupancy: launch_block_threads(&r.name)
                .map(|t| occupancy(&limits, r.registers, r.shared_bytes, t)),
            resources: r,
        })
        .collect();
    Ok(ResourceReport {
        arch: limits,
        kernels,
        functions,
        options: compiled.options,
        log: compiled.log,
    })
}

impl ResourceReport {
    /// Everything the gate fails on, one line each naming kernel, arch and numbers:
    /// register spills or a local-memory stack frame (in a kernel or a device function),
    /// a kernel with no launch block size, a kernel that cannot be resident at its block.
    pub fn violations(&self) -> Vec<String> {
        let arch = self.arch.name();
        let mut v = Vec::new();
        for k in &self.kernels {
            let r = &k.resources;
            if let Some(what) = r.local_memory_use() {
                v.push(format!("{} on {arch}: {what}", r.name));
            }
            match &k.occupancy {
                None => v.push(format!(
                    "{} on {arch}: no launch block size known (add it to \
                     occupancy::launch_block_threads)",
                    r.name
                )),
                Some(o) if o.blocks_per_sm == 0 => v.push(format!(
                    "{} on {arch}: cannot be resident with {} threads per block \
                     ({} registers, {} bytes shared memory)",
                    r.name, o.block_threads, r.registers, r.shared_bytes
                )),
                Some(_) => {}
            }
        }
        for f in &self.functions {
            if let Some(what) = f.local_memory_use() {
                v.push(format!("device function {} on {arch}: {what}", f.name));
            }
        }
        v
    }
}

/// The per-kernel table of several reports (same kernels, one column group per arch):
/// block size, static shared memory, then registers and occupancy per arch, and local
/// memory (stack + spills) over all archs.
pub fn markdown_table(reports: &[ResourceReport]) -> String {
    let mut s = String::from("| kernel | block | smem B |");
    let mut rule = String::from("|---|---:|---:|");
    for r in reports {
        s += &format!(" {0} regs | {0} occupancy |", r.arch.name());
        rule += "---:|---|";
    }
    s += " stack / spills |\n";
    rule += "---|\n";
    s += &rule;
    let Some(first) = reports.first() else {
        return s;
    };
    for k in &first.kernels {
        let name = &k.resources.name;
        let block = k
            .occupancy
            .map_or("?".to_string(), |o| o.block_threads.to_string());
        let smem: Vec<String> = reports
            .iter()
            .filter_map(|r| r.kernels.iter().find(|k| &k.resources.name == name))
            .map(|k| k.resources.shared_bytes.to_string())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        s += &format!("| `{name}` | {block} | {} |", smem.join("/"));
        let mut local = 0u32;
        for r in reports {
            match r.kernels.iter().find(|k| &k.resources.name == name) {
                Some(k) => {
                    let res = &k.resources;
                    local += res.stack_frame + res.spill_stores + res.spill_loads;
                    let occ = k.occupancy.map_or("?".to_string(), |o| {
                        format!(
                            "{:.0}% ({} blk, {})",
                            o.fraction * 100.0,
                            o.blocks_per_sm,
                            o.limiter.name()
                        )
                    });
                    s += &format!(" {} | {occ} |", res.registers);
                }
                None => s += " – | – |",
            }
        }
        s += if local == 0 { " 0 |\n" } else { " **yes** |\n" };
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real NVRTC 12.9 output (sm_80, `-maxrregcount=24`), abridged: one spilling kernel,
    /// one clean kernel with shared memory, one clean kernel without.
    const LOG: &str = "\
ptxas warning : For profile sm_80 adjusting per thread register count of 16 to lower bound of 24
ptxas info    : Overriding maximum register limit 256 for 'channel_gate_f32' with  24 of maxrregcount option
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'channel_gate_f32' for 'sm_80'
ptxas info    : Function properties for channel_gate_f32
ptxas         .     16 bytes stack frame, 32 bytes spill stores, 24 bytes spill loads
ptxas info    : Used 24 registers, used 0 barriers, 16 bytes cumulative stack size, 384 bytes cmem[0]
ptxas info    : Compile time = 35.263 ms
ptxas info    : Compiling entry function 'pointwise_f16' for 'sm_80'
ptxas info    : Function properties for pointwise_f16
ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 70 registers, used 1 barriers, 10240 bytes smem, 424 bytes cmem[0], 8 bytes cmem[2]
ptxas info    : Compiling entry function 'preprocess_u8_f16' for 'sm_80'
ptxas info    : Function properties for preprocess_u8_f16
ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 14 registers, used 0 barriers, 376 bytes cmem[0]
";

    #[test]
    fn parses_real_ptxas_lines() {
        let k = parse_ptxas_log(LOG, "sm_80").expect("parse");
        assert_eq!(k.len(), 3);
        let spill = &k[0];
        assert_eq!(
            (spill.name.as_str(), spill.entry, spill.registers),
            ("channel_gate_f32", true, 24)
        );
        assert_eq!(
            (
                spill.stack_frame,
                spill.spill_stores,
                spill.spill_loads,
                spill.cumulative_stack
            ),
            (16, 32, 24, 16)
        );
        assert!(spill.local_memory_use().is_some());
        let pw = &k[1];
        assert_eq!((pw.registers, pw.barriers, pw.shared_bytes), (70, 1, 10240));
        assert_eq!(pw.local_memory_use(), None);
        assert_eq!((k[2].registers, k[2].shared_bytes), (14, 0));
    }

    #[test]
    fn non_entry_functions_are_kept_apart() {
        let log = "\
ptxas info    : Function properties for _Z6helperPf
ptxas         .     8 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Compiling entry function 'k_f32' for 'sm_90'
ptxas info    : Function properties for k_f32
ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 30 registers, used 0 barriers, 8 bytes cumulative stack size
";
        let k = parse_ptxas_log(log, "sm_90").expect("parse");
        assert_eq!(k.len(), 2);
        assert!(!k[0].entry && k[0].stack_frame == 8);
        assert!(k[1].entry && k[1].registers == 30 && k[1].cumulative_stack == 8);
        assert!(k[1].local_memory_use().is_some());
    }

    #[test]
    fn incomplete_or_foreign_reports_are_errors() {
        let truncated = "ptxas info    : Compiling entry function 'k_f32' for 'sm_80'\n";
        assert!(parse_ptxas_log(truncated, "sm_80").is_err());
        let other_arch = "ptxas info    : Compiling entry function 'k_f32' for 'sm_90'\n\
                          ptxas info    : Used 30 registers, used 0 barriers\n";
        assert!(parse_ptxas_log(other_arch, "sm_80").is_err());
    }
}
