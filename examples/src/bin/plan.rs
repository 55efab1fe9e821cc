//! Example: print the plan a model lowers to — the flat list of ops both backends walk,
//! with its buffers (values per stream, live ranges) and per-op FLOPs; `--costs` adds the
//! bytes each op moves per stream at a storage precision (the inputs of the GPU model).
//!
//! usage: `cargo run -p vigil-examples --bin plan -- MODEL.tflite [--costs] [--precision fp16]`

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use vigil_engine::{Model, Plan, Precision};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum PrecisionArg {
    Fp16,
    Fp32,
}

#[derive(Parser, Debug)]
#[command(about = "Print the plan (ops over buffers) a MoViNet stream model lowers to")]
struct Args {
    /// A MoViNet stream `.tflite` (e.g. ../shared/models/movinet_a0_stream_cattle7_dynamic.tflite).
    model: PathBuf,
    /// Also print each op's FLOPs and bytes moved per stream, and weight bytes per step.
    #[arg(long)]
    costs: bool,
    /// Storage precision the byte counts assume.
    #[arg(long, value_enum, default_value = "fp16")]
    precision: PrecisionArg,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let plan = match Model::load(&args.model).and_then(|m| Plan::lower(&m)) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("plan: {e}");
            return ExitCode::from(2);
        }
    };
    let mut out = plan.to_string();
    if args.costs {
        let precision = match args.precision {
            PrecisionArg::Fp16 => Precision::F16,
            PrecisionArg::Fp32 => Precision::F32,
        };
        out += &format!(
            "costs ({precision:?} storage; per stream except weights):\n  op  {:<14} {:<13} {:>9} {:>10} {:>10} {:>9} {:>9} {:>10}\n",
            "layer", "role", "MFLOP", "read KB", "write KB", "state r", "state w", "weights KB"
        );
        for (i, s) in plan.steps().iter().enumerate() {
            let c = s.op.cost(&plan, precision.bytes());
            out += &format!(
                "  {i:>3} {:<14} {:<13} {:>9.3} {:>10.1} {:>10.1} {:>9.1} {:>9.1} {:>10.1}\n",
                s.layer,
                s.role,
                c.flops / 1e6,
                c.act_read / 1e3,
                c.act_write / 1e3,
                c.state_read / 1e3,
                c.state_write / 1e3,
                c.weight_bytes / 1e3
            );
        }
    }
    // a closed pipe (`plan … | head`) is not an error
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    ExitCode::SUCCESS
}
