//! Example: the static resource table of BENCHMARKS.md — ptxas's registers, static shared
//! memory, stack and spills per kernel (NVRTC `--ptxas-options=-v`, real SASS, no GPU) and
//! the theoretical occupancy at each kernel's launch block size, as markdown.
//!
//! These are compiler reports and calculator arithmetic, not measurements. Exits 1 when a
//! kernel spills, has a stack frame or cannot be resident (the rule of the CI gate
//! `kernels/tests/ptxas_gate.rs`), 2 on a usage or environment error.
//!
//! usage: `cargo run -p vigil-examples --bin ptxas_report -- [--arch sm_80]...
//!         [--nvrtc-option=--maxrregcount=32]...`

use std::process::ExitCode;

use clap::Parser;
use vigil_kernels::cuda::nvrtc;
use vigil_kernels::cuda::occupancy::ARCHS;
use vigil_kernels::cuda::ptxas;

#[derive(Parser, Debug)]
#[command(about = "ptxas resource report and theoretical occupancy per kernel, as markdown")]
struct Args {
    /// Architectures (sm_80, sm_86, sm_89, sm_90); default: all four.
    #[arg(long = "arch")]
    archs: Vec<String>,
    /// Extra NVRTC option for every compile, e.g. `--nvrtc-option=--maxrregcount=32`.
    #[arg(long = "nvrtc-option", allow_hyphen_values = true)]
    nvrtc_options: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let archs: Vec<String> = if args.archs.is_empty() {
        ARCHS.iter().map(|a| a.name()).collect()
    } else {
        args.archs.clone()
    };
    let extra: Vec<&str> = args.nvrtc_options.iter().map(String::as_str).collect();
    let version = match nvrtc::nvrtc_available() {
        Ok(v) => v,
        Err(e) => {
            eprintln!("ptxas_report: {e} — run `bash scripts/setup.sh && . target/vigil-env.sh`");
            return ExitCode::from(2);
        }
    };
    let mut reports = Vec::with_capacity(archs.len());
    for arch in &archs {
        match ptxas::resource_report(arch, &extra) {
            Ok(r) => reports.push(r),
            Err(e) => {
                eprintln!("ptxas_report: {arch}: {e} — use one of sm_80, sm_86, sm_89, sm_90");
                return ExitCode::from(2);
            }
        }
    }
    println!(
        "ptxas report from NVRTC {}.{} (`{}`{}); occupancy = theoretical, at the launch block size.\n",
        version.0,
        version.1,
        ptxas::PTXAS_VERBOSE,
        if extra.is_empty() {
            String::new()
        } else {
            format!(" {}", extra.join(" "))
        }
    );
    print!("{}", ptxas::markdown_table(&reports));
    let violations: Vec<String> = reports.iter().flat_map(|r| r.violations()).collect();
    if violations.is_empty() {
        println!("\nNo spills, no stack frames, every block can be resident.");
        ExitCode::SUCCESS
    } else {
        println!("\nGate violations:");
        for v in &violations {
            println!("- {v}");
        }
        ExitCode::FAILURE
    }
}
