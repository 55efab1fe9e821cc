//! `vigil` — the command-line front end of the Vigil streaming action-recognition engine.
//!
//! A thin shell: parse arguments ([`vigil_pipelines::cli::Cli`]), run them
//! ([`vigil_pipelines::cli::run`]), and map the outcome to an exit code: 0 ok, 2 for the
//! user's mistakes (printed as `vigil: <what> — <hint>`), 1 for internal failures.

use std::process::ExitCode;

use clap::Parser;
use vigil_pipelines::cli::{self, Cli};
use vigil_pipelines::PipelineError;

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VIGIL_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    let args = Cli::parse();
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vigil: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(args: Cli) -> anyhow::Result<ExitCode> {
    match cli::run(args) {
        Ok(outcome) if outcome.failed_streams > 0 => Ok(ExitCode::from(2)),
        Ok(_) => Ok(ExitCode::SUCCESS),
        // the reader went away (`vigil … | head`): stop quietly, as Unix tools do
        Err(PipelineError::Output { source, .. })
            if source.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            Ok(ExitCode::SUCCESS)
        }
        Err(e) if e.is_user_error() => {
            // one line per error, whatever the wrapped message looks like
            let msg = e
                .to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            eprintln!("vigil: {msg}");
            Ok(ExitCode::from(2))
        }
        Err(e) => Err(anyhow::Error::new(e).context("internal error")),
    }
}
