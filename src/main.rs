//! The `offbox` binary: see `offbox --help`.
#![forbid(unsafe_code)]

fn main() {
    std::process::exit(offbox::cli::main());
}
