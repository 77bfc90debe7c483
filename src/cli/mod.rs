//! The command line: argument parsing, and the wiring of config, custodians, files and
//! terminal to the jobs. PINs, passwords and shares never come from arguments.

mod args;
mod commands;
mod open;
mod output;
mod report;
mod targets;

pub use args::Cli;

use clap::Parser;

/// Parses arguments, runs the command, and returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    match commands::run(cli) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("offbox: error: {e}");
            e.exit_code()
        }
    }
}
