//! Tests of the parallel restore's ordering and failure handling: files written by the
//! pool must be complete before their metadata, hard links and directories are finished,
//! and a writer's failure must publish nothing and leave nothing behind.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::payload::unpack::{ExtractReport, Staging, UnpackError, UnpackOptions};

const MTIME: u64 = 1_500_000_000;

/// Deterministic bytes for file `i` of `len` bytes.
fn content(i: usize, len: usize) -> Vec<u8> {
    let mut x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Builds tar streams entry by entry.
struct Tar(tar::Builder<Vec<u8>>);

impl Tar {
    fn new() -> Tar {
        Tar(tar::Builder::new(Vec::new()))
    }

    fn header(path: &str, kind: tar::EntryType, mode: u32, mtime: u64, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_path(path).unwrap();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(u64::from(nix::unistd::geteuid().as_raw()));
        h.set_gid(u64::from(nix::unistd::getegid().as_raw()));
        h.set_mtime(mtime);
        h.set_size(size);
        h
    }

    fn dir(&mut self, path: &str, mode: u32, mtime: u64) {
        let mut h = Self::header(path, tar::EntryType::Directory, mode, mtime, 0);
        h.set_cksum();
        self.0.append(&h, &[][..]).unwrap();
    }

    fn file(&mut self, path: &str, mode: u32, data: &[u8]) {
        let mut h = Self::header(
            path,
            tar::EntryType::Regular,
            mode,
            MTIME,
            data.len() as u64,
        );
        h.set_cksum();
        self.0.append(&h, data).unwrap();
    }

    fn link(&mut self, path: &str, target: &str) {
        let mut h = Self::header(path, tar::EntryType::Link, 0o644, MTIME, 0);
        h.set_link_name(target).unwrap();
        h.set_cksum();
        self.0.append(&h, &[][..]).unwrap();
    }

    fn done(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

fn restore(dest: &Path, tar: &[u8]) -> Result<(PathBuf, ExtractReport), UnpackError> {
    let st = Staging::create_with(dest, UnpackOptions::default())?;
    let (_, report) = st.extract(tar)?;
    Ok((st.commit()?, report))
}

#[test]
fn many_files_come_back_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = Tar::new();
    let mut expect = Vec::new();
    for i in 0..5000 {
        let path = format!("d{:02}/e{:02}/f{i:05}", i / 640, (i / 64) % 10);
        // Mostly small files, and every 500th one spans several chunks.
        let len = if i % 500 == 7 {
            3 * super::CHUNK + 12_345
        } else {
            (i * 37) % 9000
        };
        let data = content(i, len);
        t.file(&path, 0o640, &data);
        expect.push((path, data));
    }
    let (out, report) = restore(&dir.path().join("out"), &t.done()).unwrap();
    assert_eq!(report.entries, 5000);
    for (path, data) in expect {
        let p = out.join(&path);
        assert_eq!(fs::read(&p).unwrap(), data, "{path}");
        let m = fs::metadata(&p).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o640, "{path}");
        assert_eq!(m.mtime() as u64, MTIME, "{path}");
    }
}

#[test]
fn metadata_is_set_after_the_last_chunk() {
    // A read-only, multi-chunk file: its mode and mtime must be those of the archive,
    // which holds only if they were set after every chunk was written.
    let dir = tempfile::tempdir().unwrap();
    let data = content(1, 9 * super::CHUNK + 1);
    let mut t = Tar::new();
    t.file("big", 0o400, &data);
    for i in 0..200 {
        t.file(&format!("small/{i}"), 0o444, &content(i, 100));
    }
    let (out, _) = restore(&dir.path().join("out"), &t.done()).unwrap();
    let m = fs::metadata(out.join("big")).unwrap();
    assert_eq!(m.len(), data.len() as u64);
    assert_eq!(m.mode() & 0o7777, 0o400);
    assert_eq!(m.mtime() as u64, MTIME);
    assert_eq!(fs::read(out.join("big")).unwrap(), data);
}

#[test]
fn hard_link_to_a_file_still_being_written() {
    // The link's target is the last of many files (and a large one), so it is still in a
    // writer's queue when the link entry is read.
    let dir = tempfile::tempdir().unwrap();
    let mut t = Tar::new();
    for i in 0..2000 {
        t.file(&format!("many/{i:04}"), 0o644, &content(i, 4000));
    }
    let big = content(99, 5 * super::CHUNK + 3);
    t.file("many/target", 0o600, &big);
    t.link("other/link", "many/target");
    t.link("many/0000-link", "many/0000");
    let (out, _) = restore(&dir.path().join("out"), &t.done()).unwrap();
    let a = fs::metadata(out.join("many/target")).unwrap();
    let b = fs::metadata(out.join("other/link")).unwrap();
    assert_eq!(a.ino(), b.ino());
    assert_eq!(a.nlink(), 2);
    assert_eq!(fs::read(out.join("other/link")).unwrap(), big);
    assert_eq!(b.mode() & 0o7777, 0o600);
    assert_eq!(
        fs::read(out.join("many/0000-link")).unwrap(),
        content(0, 4000)
    );
}

#[test]
fn directory_metadata_survives_its_children() {
    // The directory entry comes first, as tar writes it; its mtime and (read-only) mode
    // must still be the archive's once thousands of children have been written into it.
    let dir = tempfile::tempdir().unwrap();
    let mut t = Tar::new();
    t.dir("vault", 0o555, 1_234_567_890);
    t.dir("vault/sub", 0o750, 1_111_111_111);
    for i in 0..3000 {
        t.file(&format!("vault/sub/{i}"), 0o600, &content(i, 700));
    }
    t.file("vault/large", 0o600, &content(7, 4 * super::CHUNK));
    t.link("vault/large-link", "vault/large");
    let (out, _) = restore(&dir.path().join("out"), &t.done()).unwrap();
    let v = fs::metadata(out.join("vault")).unwrap();
    assert_eq!(v.mtime(), 1_234_567_890);
    assert_eq!(v.mode() & 0o7777, 0o555);
    let s = fs::metadata(out.join("vault/sub")).unwrap();
    assert_eq!(s.mtime(), 1_111_111_111);
    assert_eq!(s.mode() & 0o7777, 0o750);
    assert_eq!(fs::read_dir(out.join("vault/sub")).unwrap().count(), 3000);
}

/// The names in `dir`.
fn names(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn a_full_file_system_fails_cleanly() {
    // A writer's ENOSPC must fail the restore with the entry named and the storage-full
    // kind, join every thread, publish nothing and remove the staging directory. Needs
    // root (a small tmpfs).
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to mount a small tmpfs");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "offbox-test"])
        .arg(&mnt)
        .status();
    if !mounted.is_ok_and(|s| s.success()) {
        eprintln!("skipped: cannot mount a tmpfs here");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mnt.clone());
    let mut t = Tar::new();
    for i in 0..300 {
        t.file(&format!("a/{i}"), 0o644, &content(i, 20_000));
    }
    t.file("b/big", 0o644, &content(1, 3 * super::CHUNK));
    for i in 0..300 {
        t.file(&format!("c/{i}"), 0o644, &content(i, 20_000));
    }
    let dest = mnt.join("out");
    let err = match restore(&dest, &t.done()) {
        Err(UnpackError::Extract(e)) => e,
        other => panic!("expected an extraction error, got {other:?}"),
    };
    assert_eq!(err.kind(), io::ErrorKind::StorageFull, "{err}");
    let text = err.to_string();
    assert!(text.contains("failed to unpack `"), "{text}");
    assert!(text.contains("free space"), "{text}");
    assert!(!dest.exists());
    assert!(names(&mnt).is_empty(), "left behind: {:?}", names(&mnt));
}

/// The byte comparison of in-flight paths agrees with `Path::starts_with` both ways on
/// checked paths: a path meets itself, its ancestors and what lies beneath it, never a
/// sibling that shares a prefix of its name.
#[test]
fn paths_meet_as_components_do() {
    use std::os::unix::ffi::OsStrExt;
    let paths = [
        "a", "ab", "a/b", "a/bc", "a/b/c", "b", "ab/c", "a/b c", "é/x",
    ];
    for x in paths {
        for y in paths {
            let (px, py) = (Path::new(x), Path::new(y));
            let want = px.starts_with(py) || py.starts_with(px);
            let got = super::paths_meet(px.as_os_str().as_bytes(), py.as_os_str().as_bytes());
            assert_eq!(got, want, "{x} and {y}");
        }
    }
}
