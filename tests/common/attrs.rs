//! What the standard tools say about a tree's extended attributes, ACLs, capabilities and
//! allocation, normalised (relative paths, sorted) so that two trees compare as text.
//! Include with `#[path = "common/attrs.rs"] mod attrs;` next to `mod common;`.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Stdio};

/// Runs `cmd ARGS` in `cwd`; its stdout, after asserting success.
pub fn sh(cwd: &Path, cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd} cannot run ({e}): run tests/deps.sh"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} in {}: {}",
        cwd.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The blank-line-separated blocks of a listing, sorted (tools walk in directory order,
/// which differs between two trees with the same content).
fn sorted_blocks(text: &str) -> String {
    let mut blocks: Vec<&str> = text
        .split("\n\n")
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .collect();
    blocks.sort();
    blocks.join("\n\n")
}

/// `getfattr -h -R -d -m - -e hex .` in `dir`: every attribute of every entry, symlinks
/// not followed, values in hex.
pub fn getfattr(dir: &Path) -> String {
    sorted_blocks(&sh(
        dir,
        "getfattr",
        &["-h", "-R", "-d", "-m", "-", "-e", "hex", "."],
    ))
}

/// `getfacl -R -P -n .` in `dir`: every entry's ACL (owner, group, mode and extra
/// entries), numeric ids.
pub fn getfacl(dir: &Path) -> String {
    sorted_blocks(&sh(dir, "getfacl", &["-R", "-P", "-n", "."]))
}

/// `getcap -r .` in `dir`: the file capabilities, sorted.
pub fn getcap(dir: &Path) -> String {
    let mut lines: Vec<String> = sh(dir, "getcap", &["-r", "."])
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    lines.join("\n")
}

/// Allocated and apparent size of `file` in KiB (`du` and `du --apparent-size`).
pub fn du(file: &Path) -> (u64, u64) {
    let num = |args: &[&str]| -> u64 {
        let out = sh(Path::new("/"), "du", args);
        out.split_whitespace().next().unwrap().parse().unwrap()
    };
    let p = file.to_str().unwrap();
    (num(&["-k", p]), num(&["-k", "--apparent-size", p]))
}

/// A file of `size` bytes with `head` at the start, `tail` at the end and a hole between.
pub fn sparse_file(path: &Path, size: u64, head: &[u8], tail: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::create(path).unwrap();
    f.set_len(size).unwrap();
    f.write_all_at(head, 0).unwrap();
    f.write_all_at(tail, size - tail.len() as u64).unwrap();
}

/// The SHA-256 of a file, by `sha256sum`.
pub fn sha256(file: &Path) -> String {
    let out = sh(Path::new("/"), "sha256sum", &[file.to_str().unwrap()]);
    out.split_whitespace().next().unwrap().to_string()
}

/// True when two files have the same bytes (`cmp`, much faster than hashing a sparse GiB).
pub fn same_content(a: &Path, b: &Path) -> bool {
    Command::new("cmp")
        .args(["-s", a.to_str().unwrap(), b.to_str().unwrap()])
        .status()
        .unwrap()
        .success()
}
