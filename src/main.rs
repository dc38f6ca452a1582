//! The `ferry` binary: flags → logging → the library's command → exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = ferry::cli::Cli::parse();
    ferry::telemetry::init();
    ferry::cli::run(cli)
}
