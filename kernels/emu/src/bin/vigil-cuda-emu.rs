//! `vigil-cuda-emu`: build the emulated CUDA driver and tell where it is (for
//! `scripts/emulated-gpu.sh`), or run the ThreadSanitizer race check by hand.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "The emulated CUDA driver of Vigil's tests (CPU emulation, never a GPU)")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the driver if stale and print the directory holding libcuda.so / libcuda.so.1
    /// (put it first on LD_LIBRARY_PATH to run any program on the emulator).
    LibDir,
    /// Build and run every kernel at small sizes under ThreadSanitizer.
    Race {
        /// Only kernels whose name contains this.
        filter: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::LibDir => match vigil_cuda_emu::build(vigil_cuda_emu::Variant::Driver) {
            Ok(lib) => {
                let dir = lib.parent().unwrap_or(&lib);
                println!("{}", dir.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("vigil-cuda-emu: {e}");
                ExitCode::from(2)
            }
        },
        Cmd::Race { filter } => match vigil_cuda_emu::race_check(filter.as_deref()) {
            Ok(r) => {
                print!("{}", r.output);
                if r.clean {
                    ExitCode::SUCCESS
                } else {
                    eprintln!("vigil-cuda-emu: the race check FAILED ({})", r.command);
                    ExitCode::from(1)
                }
            }
            Err(e) => {
                eprintln!("vigil-cuda-emu: {e}");
                ExitCode::from(2)
            }
        },
    }
}
