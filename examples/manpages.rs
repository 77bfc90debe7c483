//! Writes offbox's manual pages, generated from its clap definitions, for the Debian
//! package: `cargo run --release --example manpages -- DIR [NAME]`. NAME (default offbox)
//! is the program name the pages give; the rescue kit's are `offbox-rescue`.
//! packaging/build-deb.sh runs it once per package.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(dir), name) = (args.next().map(PathBuf::from), args.next()) else {
        eprintln!("usage: manpages DIR [NAME]");
        return ExitCode::from(2);
    };
    let name = name.map_or_else(
        || "offbox".to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("manpages: {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    match offbox::write_manpages(&dir, &name) {
        Ok(pages) => {
            eprintln!("manpages: {} pages in {}", pages.len(), dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("manpages: {e}");
            ExitCode::FAILURE
        }
    }
}
