//! Special files through a real backup and restore: FIFOs come back as FIFOs, device nodes
//! as device nodes (as root), setuid/setgid bits are stripped and reported, and leftovers
//! of a killed restore are removed and reported.

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use nix::unistd::mkfifo;

fn restore(sim: &common::Sim, archive: &Path, dest: &Path) -> String {
    let out = sim.run(&[
        "restore",
        archive.to_str().unwrap(),
        "--to",
        dest.to_str().unwrap(),
    ]);
    let err = common::stderr(&out);
    assert!(out.status.success(), "restore failed: {err}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("restore complete"),
        "{err}"
    );
    err
}

#[test]
fn fifos_devices_and_setid_files_restore_as_what_they_were() {
    let sim = common::Sim::new();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir(&src).unwrap();
    mkfifo(&src.join("pipe"), Mode::from_bits_truncate(0o600)).unwrap();
    fs::set_permissions(src.join("pipe"), fs::Permissions::from_mode(0o620)).unwrap();
    let device = mknod(
        &src.join("null"),
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o666),
        makedev(1, 3),
    )
    .is_ok();
    fs::write(src.join("tool"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(src.join("tool"), fs::Permissions::from_mode(0o4755)).unwrap();
    let archive = work.path().join("a.obx");
    sim.backup("system", &src, &archive);

    // A staging directory of a restore killed earlier sits beside the destination.
    let dest = work.path().join("out");
    let stale = work.path().join(".out.offbox-partial-00112233aabbccdd");
    fs::create_dir(&stale).unwrap();
    fs::write(stale.join("half-restored"), b"x").unwrap();

    let err = restore(&sim, &archive, &dest);
    let back = dest.join(src.strip_prefix("/").unwrap());
    let pipe = fs::symlink_metadata(back.join("pipe")).unwrap();
    assert!(pipe.file_type().is_fifo(), "{:?}", pipe.file_type());
    assert_eq!(pipe.mode() & 0o7777, 0o620);
    if device {
        let null = fs::symlink_metadata(back.join("null")).unwrap();
        assert!(null.file_type().is_char_device(), "{:?}", null.file_type());
        assert_eq!(null.rdev(), makedev(1, 3));
    }
    assert_eq!(
        fs::symlink_metadata(back.join("tool")).unwrap().mode() & 0o7777,
        0o755
    );
    assert!(
        err.contains("offbox: warning: setuid/setgid bits stripped from 1 file(s)"),
        "{err}"
    );
    assert!(err.contains("/tool"), "{err}");
    assert!(
        err.contains("offbox: warning: removed 1 leftover staging directory"),
        "{err}"
    );
    assert!(!stale.exists());

    // With --keep-setid the bit comes back, and nothing is said about stripping.
    let kept = work.path().join("kept");
    let out = sim.run(&[
        "restore",
        archive.to_str().unwrap(),
        "--to",
        kept.to_str().unwrap(),
        "--keep-setid",
    ]);
    let err = common::stderr(&out);
    assert!(out.status.success(), "{err}");
    let back = kept.join(src.strip_prefix("/").unwrap());
    assert_eq!(
        fs::symlink_metadata(back.join("tool")).unwrap().mode() & 0o7777,
        0o4755
    );
    assert!(!err.contains("stripped"), "{err}");
    fs::remove_dir_all(&kept).unwrap();
    assert_eq!(
        common::tree(work.path())
            .iter()
            .filter(|p| p.contains("offbox-partial"))
            .count(),
        0
    );
}
