//! `vigil` — the command-line front end of the Vigil streaming action-recognition engine.
//!
//! A thin shell: parse arguments ([`vigil_pipelines::cli::Cli`]), run them
//! ([`vigil_pipelines::cli::run`]), and map the outcome to an exit code: 0 ok, 2 for the
//! user's mistakes and failed streams (printed as `vigil: <what> — <hint>`), 3 for partial
//! results of `classify` (interrupted, or an input that ended early), 1 for internal
//! failures. Logs go to stderr; a closed stderr is ignored, never fatal.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use vigil_pipelines::cli::{self, say, Cli};
use vigil_pipelines::PipelineError;

/// stderr for the log: write errors (a closed pipe) are swallowed, not reported — the
/// subscriber's own error report would panic on the same closed stderr.
struct QuietStderr;

impl Write for QuietStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VIGIL_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| QuietStderr)
        .log_internal_errors(false)
        .init();

    let args = Cli::parse();
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            say(&format!("{e:#}"));
            ExitCode::from(1)
        }
    }
}

fn run(args: Cli) -> anyhow::Result<ExitCode> {
    match cli::run(args) {
        Ok(outcome) if outcome.failed_streams > 0 => Ok(ExitCode::from(2)),
        Ok(outcome) if outcome.partial => Ok(ExitCode::from(3)),
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
            say(&msg);
            Ok(ExitCode::from(2))
        }
        Err(e) => Err(anyhow::Error::new(e).context("internal error")),
    }
}
