//! The `zrobot` binary: the command line, glue over the library crates.
//! `main` maps every error to a message and an exit code scripts can trust:
//! 0 ok, 1 a failure the robot reported (or a failed task), 2 a usage error,
//! 3 the robot could not be reached.

use std::process::ExitCode;

use clap::Parser;
use zrobot::cli;

/// See ARCHITECTURE.md: the store's writer frees what the async threads
/// allocate, which glibc's malloc serialises on its arena locks.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // clap exits with 2 on a usage error, and 0 for --help and --version.
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(cli.default_log_level())),
        )
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, not in a log file.
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(cli::context::EXIT_FAILURE);
        }
    };
    let outcome = runtime.block_on(cli::run(cli));
    // Never wait without bound for work left behind (a blocking read, a
    // clone that hangs): the command is over.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(cli::context::exit_code(&e))
        }
    }
}
