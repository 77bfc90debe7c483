//! What is generated from the clap definitions themselves: shell completion scripts
//! (`offbox completions SHELL`, clap_complete) and the manual pages (clap_mangen; written
//! by `offbox::write_manpages`, which packaging/build-deb.sh runs through
//! examples/manpages.rs, so that the shipped command line has no packaging-only command).
//! Nothing here touches a config, a key or a target.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::args::Cli;
use crate::jobs::JobError;

/// The name every generated script and page uses for the program.
const BIN: &str = "offbox";

/// `completions` arguments.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to write the completion script for. Install it where the shell looks, for
    /// example `offbox completions bash > /etc/bash_completion.d/offbox` (the Debian
    /// package ships bash, zsh and fish scripts already).
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Writes the completion script for `args.shell` to standard output.
pub fn completions_cmd(args: CompletionsArgs) -> Result<(), JobError> {
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), BIN, &mut out);
    let mut stdout = io::stdout().lock();
    stdout
        .write_all(&out)
        .and_then(|()| stdout.flush())
        .map_err(|e| JobError::io("writing the completion script", e))
}

/// Writes `NAME.1` and one page per visible subcommand, at every depth, into `dir`;
/// returns the paths written. Subcommand pages are named by their full path
/// (`offbox-keys-init.1`), as git and cargo name theirs, and each lists its own subcommands.
pub(crate) fn write_manpages(dir: &Path, name: &str) -> Result<Vec<PathBuf>, JobError> {
    let mut root = Cli::command()
        .display_name(name.to_string())
        .bin_name(name.to_string())
        .disable_help_subcommand(true);
    // Building the root gives every subcommand its display name (offbox-keys-init) and its
    // bin name (offbox keys init) for the synopsis.
    root.build();
    let source = format!("{name} {}", env!("CARGO_PKG_VERSION"));
    let mut written = Vec::new();
    let mut stack = vec![root];
    while let Some(cmd) = stack.pop() {
        stack.extend(
            cmd.get_subcommands()
                .filter(|s| !s.is_hide_set())
                .cloned()
                .collect::<Vec<_>>(),
        );
        let man = clap_mangen::Man::new(cmd)
            .source(source.clone())
            .manual("offbox manual");
        let path = dir.join(man.get_filename());
        let mut page = Vec::new();
        man.render(&mut page)
            .and_then(|()| fs::write(&path, &page))
            .map_err(|e| JobError::io(format!("writing the manual page {}", path.display()), e))?;
        written.push(path);
    }
    written.sort();
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_visible_subcommand_gets_a_page() {
        let dir = tempfile::tempdir().unwrap();
        let pages = write_manpages(dir.path(), BIN).unwrap();
        let names: Vec<String> = pages
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for want in [
            "offbox.1",
            "offbox-run.1",
            "offbox-watch.1",
            "offbox-keys-init.1",
            "offbox-backup-create.1",
            "offbox-completions.1",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
        }
        assert!(!names
            .iter()
            .any(|n| n.contains("manpages") || n.contains("help")));
        let root = fs::read_to_string(dir.path().join("offbox.1")).unwrap();
        assert!(root.contains(".TH offbox 1"), "{root}");
        assert!(root.contains("offbox\\-keys(1)"), "{root}");
        let init = fs::read_to_string(dir.path().join("offbox-keys-init.1")).unwrap();
        assert!(init.contains("offbox keys init"), "{init}");
    }

    #[test]
    fn the_rescue_kit_pages_carry_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let pages = write_manpages(dir.path(), "offbox-rescue").unwrap();
        assert!(pages.contains(&dir.path().join("offbox-rescue-recover.1")));
        let page = fs::read_to_string(dir.path().join("offbox-rescue-recover.1")).unwrap();
        assert!(page.contains("offbox\\-rescue recover"), "{page}");
    }

    #[test]
    fn completion_scripts_name_the_subcommands() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), BIN, &mut out);
            let text = String::from_utf8(out).unwrap();
            for word in ["recover", "accept-host-key", "completions"] {
                assert!(text.contains(word), "{shell}: no {word}");
            }
            assert!(
                !text.contains("manpages"),
                "{shell}: the hidden command leaked"
            );
        }
    }
}
