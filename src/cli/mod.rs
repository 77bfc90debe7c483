//! The command line: argument parsing, and the wiring of config, custodians, files and
//! terminal to the jobs. PINs, passwords and shares never come from arguments.

mod args;
mod audit;
mod commands;
pub(crate) mod completions;
mod notify;
mod open;
mod output;
mod prompt;
mod report;
mod selfcheck;
mod service;
mod targets;
mod videos;

pub use args::Cli;

use clap::Parser;

/// Parses arguments, runs the command, and returns the process exit code. A failure prints
/// `offbox: error: MESSAGE` on standard error; with `--json`, then also one line
/// `{"error":{"kind":…,"retry":…,"hint":…,"message":…,"exit_code":…}}` on standard error
/// (standard output may carry data). A command line that does not parse exits 2 the same
/// way (`kind` `usage`).
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return report::usage_error(&e),
    };
    let json = cli.json;
    match commands::run(cli) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("offbox: error: {e}");
            if json {
                let report = crate::jobs::error_kind::ErrorReport::of(&e);
                eprintln!("{}", serde_json::json!({ "error": report }));
            }
            e.exit_code()
        }
    }
}
