//! Packing never follows a symlink swapped in while the backup runs: a thread exchanges
//! regular files with symlinks to a 0600 secret (renameat2 RENAME_EXCHANGE, atomic) in a
//! tight loop, and the secret's content must never appear in any archive's plaintext.

mod common;

use std::fs::{self, File};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use nix::fcntl::{renameat2, RenameFlags};
use offbox::payload::exclude::Excludes;
use offbox::payload::pack::pack;
use offbox::progress::Meter;

const SECRET: &[u8] = b"OFFBOX-SECRET-NEVER-IN-AN-ARCHIVE-51c2e8";
const PAIRS: usize = 32;

/// `src/f<i>` (a public regular file) and `src/l<i>` (a symlink to the secret), with the
/// secret outside `src`; returns (work dir, src).
fn make_tree() -> (tempfile::TempDir, PathBuf) {
    let work = tempfile::tempdir().unwrap();
    let secret = work.path().join("secret");
    fs::write(&secret, SECRET).unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    let src = work.path().join("src");
    fs::create_dir(&src).unwrap();
    for i in 0..PAIRS {
        fs::write(src.join(format!("f{i}")), format!("public file {i}\n")).unwrap();
        symlink(&secret, src.join(format!("l{i}"))).unwrap();
    }
    (work, src)
}

/// Swaps every `f<i>` with its `l<i>` until stopped; counts the exchanges.
struct Swapper {
    stop: Arc<AtomicBool>,
    swaps: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Swapper {
    /// Swaps the pairs `f<i>`/`l<i>` of [`make_tree`].
    fn start(src: &Path) -> Swapper {
        let names = (0..PAIRS)
            .map(|i| (format!("f{i}"), format!("l{i}")))
            .collect();
        Self::start_pairs(src, names)
    }

    fn start_pairs(src: &Path, names: Vec<(String, String)>) -> Swapper {
        let stop = Arc::new(AtomicBool::new(false));
        let swaps = Arc::new(AtomicU64::new(0));
        let dir = File::open(src).unwrap();
        let (s, n) = (stop.clone(), swaps.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                for (f, l) in &names {
                    renameat2(
                        &dir,
                        f.as_str(),
                        &dir,
                        l.as_str(),
                        RenameFlags::RENAME_EXCHANGE,
                    )
                    .expect("renameat2 RENAME_EXCHANGE");
                    n.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Swapper {
            stop,
            swaps,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        self.swaps.load(Ordering::Relaxed)
    }
}

impl Drop for Swapper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn packing_never_stores_the_target_of_a_swapped_symlink() {
    let (_work, src) = make_tree();
    let swapper = Swapper::start(&src);
    let excludes = Excludes::new(&[]);
    let (mut leaks, mut replaced) = (0, 0);
    for _ in 0..500 {
        let meter = Meter::default();
        let (tar, stats) = pack(std::slice::from_ref(&src), &excludes, Vec::new(), &meter).unwrap();
        if contains(&tar, SECRET) {
            leaks += 1;
        }
        replaced += stats
            .notices
            .iter()
            .filter(|n| n.what.starts_with("replaced while being backed up"))
            .count();
        // Every stream stays a readable tar.
        let mut ar = tar::Archive::new(&tar[..]);
        for e in ar.entries().unwrap() {
            e.unwrap();
        }
    }
    let swaps = swapper.stop();
    assert!(swaps > 1000, "the swap loop barely ran ({swaps} exchanges)");
    assert_eq!(leaks, 0, "the secret appeared in {leaks} of 500 archives");
    eprintln!("{swaps} exchanges, {replaced} files skipped as replaced, no leak");
}

/// A directory swapped for a symlink to a directory holding the secret is not entered.
#[test]
fn packing_never_enters_a_directory_swapped_for_a_symlink() {
    let (work, src) = make_tree();
    let vault = work.path().join("vault");
    fs::create_dir(&vault).unwrap();
    fs::set_permissions(&vault, fs::Permissions::from_mode(0o700)).unwrap();
    let mut pairs = Vec::new();
    for i in 0..PAIRS {
        fs::write(vault.join(format!("s{i}")), SECRET).unwrap();
        let d = src.join(format!("d{i}"));
        fs::create_dir(&d).unwrap();
        fs::write(d.join(format!("s{i}")), b"public\n").unwrap();
        symlink(&vault, src.join(format!("v{i}"))).unwrap();
        pairs.push((format!("d{i}"), format!("v{i}")));
    }
    let swapper = Swapper::start_pairs(&src, pairs);
    let excludes = Excludes::new(&[]);
    let mut leaks = 0;
    for _ in 0..500 {
        let meter = Meter::default();
        let (tar, _) = pack(std::slice::from_ref(&src), &excludes, Vec::new(), &meter).unwrap();
        if contains(&tar, SECRET) {
            leaks += 1;
        }
    }
    let swaps = swapper.stop();
    assert!(swaps > 1000, "the swap loop barely ran ({swaps} exchanges)");
    assert_eq!(
        leaks, 0,
        "the vault's content appeared in {leaks} of 500 archives"
    );
}

/// The same through the CLI: backups of a tree under the swap loop, decrypted, scanned.
#[test]
fn cli_backups_under_the_swap_loop_never_hold_the_secret() {
    let sim = common::Sim::new();
    let (work, src) = make_tree();
    let swapper = Swapper::start(&src);
    for i in 0..8 {
        let archive = work.path().join(format!("a{i}.obx"));
        sim.backup("system", &src, &archive);
        let out = sim
            .cmd(&["decrypt", archive.to_str().unwrap(), "--output", "-"])
            .stdout(Stdio::piped())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", common::stderr(&out));
        assert!(
            out.stdout.len() > 512,
            "decrypt gave no payload: {}",
            out.stdout.len()
        );
        assert!(
            !contains(&out.stdout, SECRET),
            "archive {i} holds the secret's content"
        );
    }
    swapper.stop();
}
