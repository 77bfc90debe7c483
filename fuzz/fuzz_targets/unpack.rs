//! Fuzz target `unpack`: the restore path of a tar payload. A fuzzed tar stream is extracted
//! with `payload::unpack::Staging` (create, extract, and commit when extraction succeeded)
//! into a fresh destination, and then nothing may have appeared, changed or been linked
//! outside that destination.
//!
//! Layout of the per-process scratch directory (on /dev/shm when it exists, for speed; else
//! $TMPDIR; `OFFBOX_FUZZ_SCRATCH` overrides the base):
//!
//! ```text
//! offbox-fuzz-unpack-PID/
//!   box/            parent of the destination; holds only `out` after a run, or nothing
//!     out/          the destination
//!   sentinel/       files a hostile archive would like to reach through ../ or a link
//! ```
//!
//! After each run the scratch root must hold exactly `box` and `sentinel`, `box` at most
//! `out` (only when committed), and `sentinel` must be unchanged down to inode, link count,
//! mode, owner, times and content. The destination is then removed.
#![no_main]

use std::collections::BTreeSet;
use std::fs;
use std::io::Cursor;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use offbox::payload::unpack::Staging;

const PREFIX: &str = "offbox-fuzz-unpack-";

struct Scratch {
    root: PathBuf,
    parent: PathBuf,
    dest: PathBuf,
    sentinel: PathBuf,
    snapshot: Vec<String>,
}

/// Everything about a tree that an escape could change, one line per entry.
fn snapshot(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let m = fs::symlink_metadata(&d).expect("stat in the sentinel");
        let mut line = format!(
            "{} ino={} nlink={} mode={:o} uid={} gid={} size={} mtime={}.{} ctime={}.{}",
            d.display(),
            m.ino(),
            m.nlink(),
            m.mode(),
            m.uid(),
            m.gid(),
            m.size(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec()
        );
        if m.file_type().is_symlink() {
            line += &format!(" -> {}", fs::read_link(&d).expect("readlink").display());
        } else if m.is_file() {
            line += &format!(" data={:?}", fs::read(&d).expect("read"));
        } else if m.is_dir() {
            let mut names: Vec<_> = fs::read_dir(&d)
                .expect("list")
                .map(|e| e.expect("entry").path())
                .collect();
            names.sort();
            stack.extend(names);
        }
        out.push(line);
    }
    out
}

fn names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .expect("list the scratch directory")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
}

/// Removes scratch directories of processes that are gone (killed runs).
fn remove_stale(base: &Path) {
    let Ok(rd) = fs::read_dir(base) else { return };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix(PREFIX) {
            if !Path::new("/proc").join(pid).exists() {
                let _ = force_remove(&e.path());
            }
        }
    }
}

/// `remove_dir_all`, after making directories writable if a first try fails (an archive
/// may restore a directory with mode 0 when not running as root).
fn force_remove(path: &Path) -> std::io::Result<()> {
    if fs::remove_dir_all(path).is_ok() {
        return Ok(());
    }
    let mut stack = vec![path.to_path_buf()];
    while let Some(d) = stack.pop() {
        if fs::symlink_metadata(&d).is_ok_and(|m| m.is_dir()) {
            let _ = fs::set_permissions(&d, fs::Permissions::from_mode(0o700));
            if let Ok(rd) = fs::read_dir(&d) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        }
    }
    fs::remove_dir_all(path)
}

fn scratch() -> &'static Scratch {
    static SCRATCH: OnceLock<Scratch> = OnceLock::new();
    SCRATCH.get_or_init(|| {
        let base = std::env::var_os("OFFBOX_FUZZ_SCRATCH")
            .map(PathBuf::from)
            .or_else(|| Some(PathBuf::from("/dev/shm")).filter(|p| p.is_dir()))
            .unwrap_or_else(std::env::temp_dir);
        remove_stale(&base);
        let root = base.join(format!("{PREFIX}{}", std::process::id()));
        let _ = force_remove(&root);
        let parent = root.join("box");
        let sentinel = root.join("sentinel");
        fs::create_dir_all(&parent).expect("create the scratch directory");
        fs::create_dir_all(sentinel.join("dir")).expect("create the sentinel");
        fs::write(sentinel.join("secret"), b"sentinel: must never change").expect("sentinel file");
        fs::set_permissions(sentinel.join("secret"), fs::Permissions::from_mode(0o600))
            .expect("chmod");
        std::os::unix::fs::symlink("secret", sentinel.join("link")).expect("sentinel link");
        Scratch {
            dest: parent.join("out"),
            snapshot: snapshot(&sentinel),
            root,
            parent,
            sentinel,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let s = scratch();
    let staging = Staging::create(&s.dest).expect("a fresh destination is accepted");
    let staging_path = staging.path().to_path_buf();
    assert!(staging_path.starts_with(&s.parent));
    let committed = match staging.extract(Cursor::new(data)) {
        Ok(_) => {
            staging.commit().expect("publishing the restore");
            true
        }
        Err(_) => {
            drop(staging);
            false
        }
    };

    let root: Vec<_> = names(&s.root).into_iter().collect();
    assert_eq!(
        root,
        ["box", "sentinel"],
        "something appeared beside the destination's parent"
    );
    let in_box: Vec<_> = names(&s.parent).into_iter().collect();
    if committed {
        assert_eq!(in_box, ["out"], "something appeared beside the destination");
        assert!(fs::symlink_metadata(&s.dest).expect("destination").is_dir());
    } else {
        assert!(in_box.is_empty(), "a failed restore left {in_box:?}");
    }
    assert!(
        !staging_path.exists(),
        "the staging directory is still there"
    );
    assert!(
        snapshot(&s.sentinel) == s.snapshot,
        "the sentinel changed: a write escaped the destination"
    );

    if committed {
        force_remove(&s.dest).expect("remove the destination");
    }
});
